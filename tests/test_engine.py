"""ohq_pynq.engine, on numpy alone (what armv7 boards without onnxruntime rely on): input
gradients == central finite differences for every op case, QuantizeLinear/DequantizeLinear as
opset 21 defines them (int8/uint8/int4/uint4, per tensor and per axis), int4 weights through a
QDQ conv, overrides, micro-batching, walking the graph, unsupported ops. The comparisons with
onnxruntime are in test_engine_vs_onnxruntime.py."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_cases import (CASES, QT, init, input_shape, make_model, qdq_case, qdq_weight_conv_case,
                          rel_err, rnd, small_cnn)
from ohq_pynq.engine import Engine
from ohq_pynq.errors import ModelError, UnsupportedOpError
from ohq_pynq.onnx_loader import tensor_to_array

F = TensorProto.FLOAT


@pytest.mark.parametrize("case", sorted(CASES))
def test_input_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(1000 + sorted(CASES).index(case))
    model = CASES[case](rng)
    eng = Engine(model, dtype=np.float64)
    x = rng.standard_normal(input_shape(model)) * 2.0
    vals, _ = eng.forward(x, record=False)
    r = rng.standard_normal(vals["y"].shape)            # L = sum(r * y)

    def loss(xx):
        return float(np.sum(r * eng.forward(xx, record=False)[0]["y"]))

    vals, tape = eng.forward(x)
    dx = eng.backward(tape, {"y": r})
    assert dx.shape == x.shape
    assert not tape.entries                               # backward frees the tape
    flat = rng.choice(x.size, size=min(x.size, 40), replace=False)
    eps = 1e-6
    num = np.empty(flat.size)
    for k, idx in enumerate(flat):
        xp, xm = x.copy(), x.copy()
        xp.flat[idx] += eps
        xm.flat[idx] -= eps
        num[k] = (loss(xp) - loss(xm)) / (2 * eps)
    ana = dx.reshape(-1)[flat]
    scale = max(np.max(np.abs(num)), 1e-3)
    # kinks (relu/clip/maxpool ties) are measure-zero for random float64 inputs
    assert np.max(np.abs(ana - num)) / scale < 1e-5, (ana, num)


# ----------------------------------------------------------------- QuantizeLinear / Dequantize

@pytest.mark.parametrize("qname", sorted(QT))
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize_follow_opset21(qname, per_axis):
    """q = saturate(round_half_even(x / scale) + zero_point), y = (q - zero_point) * scale."""
    model, x, scale, zp = qdq_case(qname, per_axis)
    _, _, qmin, qmax = QT[qname]
    shape = (1, -1, 1, 1) if per_axis else ()
    s = np.asarray(scale, np.float32).reshape(shape)
    z = np.asarray(zp).reshape(shape)
    q_ref = np.clip(np.rint(x / s) + z.astype(np.float32), qmin, qmax)
    y_ref = (q_ref - z.astype(np.float32)) * s
    vals = Engine(model).run(x, outputs=["q", "y"])
    assert vals["q"].dtype == QT[qname][1]
    np.testing.assert_array_equal(vals["q"].astype(np.int64), q_ref.astype(np.int64))
    assert np.array_equal(vals["y"], y_ref.astype(np.float32))          # bit-exact float32
    r = (x / s)[0, :, 0]                              # the tie row: exact halves round to even
    q0 = vals["q"][0, :, 0].astype(np.int64)
    half = (r - np.floor(r) == 0.5) & (q0 > qmin) & (q0 < qmax)
    assert half.any() and np.all((q0 - np.broadcast_to(z, x.shape)[0, :, 0])[half] % 2 == 0)
    assert vals["q"][1, :, 1].min() == qmax and vals["q"][1, :, 2].max() == qmin


@pytest.mark.parametrize("qname", ["int4", "uint4", "int8", "uint8"])
def test_qdq_weight_initializer_conv_equals_the_float_computation(qname):
    """Integer weights -> DequantizeLinear(axis 0) -> Conv on the quantized input, against a
    direct convolution of the dequantized values."""
    model, x, wq = qdq_weight_conv_case(qname)
    inits = {t.name: tensor_to_array(t) for t in model.graph.initializer}
    assert np.array_equal(inits["wq"].astype(np.int64), wq)
    _, _, qmin, qmax = QT[qname]
    xd = np.clip(np.rint(x / np.float32(0.25)), qmin, qmax).astype(np.float32) * np.float32(0.25)
    w = ((wq - inits["wz"].astype(np.int64).reshape(-1, 1, 1, 1)).astype(np.float32)
         * inits["ws"].reshape(-1, 1, 1, 1))
    xp = np.pad(xd, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + 6, j:j + 6], w[:, :, i, j])
              for i in range(3) for j in range(3)) + inits["b"].reshape(1, -1, 1, 1)
    assert rel_err(Engine(model).run(x)["y"], ref) <= 1e-5


# ---------------------------------------------------------------------------- engine features

def test_intermediates_overrides_and_microbatching():
    rng = np.random.default_rng(3)
    model = small_cnn(rng)
    eng = Engine(model)
    x = rnd(rng, 10, 1, 12, 12)
    full = eng.run(x, outputs=["c1", "c2", "y"], batch_size=64)
    micro = eng.run(x, outputs=["c1", "c2", "y"], batch_size=3)
    for k in full:
        np.testing.assert_allclose(micro[k], full[k], rtol=1e-5, atol=1e-5)
    assert full["c1"].shape == (10, 8, 12, 12) and full["c2"].shape == (10, 12, 6, 6)
    # auto batch size under a tiny memory budget still gives the same answer
    tiny = Engine(model, memory_bytes=1)
    np.testing.assert_allclose(tiny.run(x)["y"], full["y"], rtol=1e-5, atol=1e-5)
    # overrides: zeroing w2 leaves c2 == 0 and changes y; does not touch the engine afterwards
    zero = eng.run(x, outputs=["c2", "y"], overrides={"w2": np.zeros((12, 8, 3, 3), np.float32)})
    assert np.all(zero["c2"] == 0)
    assert not np.allclose(zero["y"], full["y"])
    np.testing.assert_allclose(eng.run(x)["y"], full["y"], rtol=1e-6, atol=1e-6)


def test_walking_the_graph_node_by_node_equals_run():
    rng = np.random.default_rng(4)
    model = small_cnn(rng)
    eng = Engine(model)
    x = rnd(rng, 2, 1, 12, 12)
    values = {eng.input_name: x}
    for nd in eng.graph_nodes():
        values.update(eng.evaluate(nd, values))
    np.testing.assert_array_equal(values["y"], eng.run(x)["y"])
    assert [nd.op for nd in eng.nodes_of_type("Relu")] == ["Relu", "Relu"]
    np.testing.assert_array_equal(eng.constant("w2"), numpy_helper.to_array(
        next(t for t in model.graph.initializer if t.name == "w2")))
    with pytest.raises(ModelError, match="not an initializer"):
        eng.constant("c1")


def aliasing_model(rng):
    """Tensors used twice, an Identity alias, a Reshape view, an SE-style broadcast Mul, BN and
    activations: what in-place (donated) ops must not clobber."""
    c = 4
    nodes = [helper.make_node("Conv", ["x", "w1"], ["t"], pads=[1, 1, 1, 1]),
             helper.make_node("Identity", ["t"], ["t_alias"]),
             helper.make_node("Relu", ["t"], ["r"]),                      # t still needed below
             helper.make_node("Add", ["t_alias", "r"], ["s"]),
             helper.make_node("BatchNormalization", ["s", "g", "be", "m", "v"], ["n"]),
             helper.make_node("HardSwish", ["n"], ["h"]),
             helper.make_node("Reshape", ["h", "shp"], ["hv"]),               # a view of h
             helper.make_node("Relu", ["hv"], ["hr"]),
             helper.make_node("GlobalAveragePool", ["h"], ["gap"]),
             helper.make_node("HardSigmoid", ["gap"], ["sg"], alpha=1 / 6, beta=0.5),
             helper.make_node("Reshape", ["hr", "shp_back"], ["hb"]),
             helper.make_node("Mul", ["sg", "hb"], ["se"]),
             helper.make_node("Clip", ["se", "lo", "hi"], ["cl"]),
             helper.make_node("Sub", ["cl", "h"], ["y"])]
    inits = [init("w1", rnd(rng, c, 2, 3, 3, scale=0.5)), init("g", 1 + 0.1 * rnd(rng, c)),
             init("be", rnd(rng, c)), init("m", rnd(rng, c)), init("v", 1 + np.abs(rnd(rng, c))),
             init("shp", np.array([0, c, -1], np.int64)), init("shp_back", np.array([0, c, 5, 5], np.int64)),
             init("lo", np.float32(-1.0)), init("hi", np.float32(2.0))]
    return make_model(nodes, (3, 2, 5, 5), inits)


def test_in_place_ops_never_clobber_live_tensors():
    """Every tensor equals the node-by-node evaluation (plain input lists: nothing donated),
    whichever tensors are requested, with and without a tape."""
    rng = np.random.default_rng(21)
    model = aliasing_model(rng)
    x = rnd(rng, 3, 2, 5, 5, scale=2.0)
    eng = Engine(model)
    ref = {eng.input_name: x}
    for nd in eng.graph_nodes():
        ref.update(eng.evaluate(nd, ref))
    names = ["t", "r", "s", "n", "h", "hr", "gap", "sg", "se", "cl", "y"]
    np.testing.assert_array_equal(eng.run(x)["y"], ref["y"])
    for keep in (["t", "n"], ["h", "se"], names):                       # some tensors requested
        for record in (False, True):
            vals, tape = eng.forward(x, outputs=["y"], keep=keep, record=record)
            for k in vals:
                np.testing.assert_array_equal(vals[k], ref[k], err_msg=k)
            if record:
                assert np.all(np.isfinite(eng.backward(tape, {"y": np.ones_like(vals["y"])})))
    # the float64 gradient of the same graph agrees with finite differences
    eng64 = Engine(model, dtype=np.float64)
    x64 = x.astype(np.float64)
    r = rng.standard_normal(ref["y"].shape)
    _, tape = eng64.forward(x64)
    dx = eng64.backward(tape, {"y": r})
    for idx in rng.choice(x.size, 10, replace=False):
        xp, xm = x64.copy(), x64.copy()
        xp.flat[idx] += 1e-6
        xm.flat[idx] -= 1e-6
        num = (np.sum(r * eng64.forward(xp, record=False)[0]["y"])
               - np.sum(r * eng64.forward(xm, record=False)[0]["y"])) / 2e-6
        assert abs(num - dx.flat[idx]) < 1e-5 * max(1.0, np.abs(dx).max())


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_last_peak_bytes_is_honest(arch):
    """The engine's working-set estimate (live tensors + tape + op scratch) against the peak of
    numpy allocations that tracemalloc sees during the same forward."""
    import tracemalloc

    from ohq_pynq import zoo
    model = getattr(zoo, arch)(resolution=64, batchnorm="kept", seed=0)
    eng = Engine(model, memory_bytes=8 << 20)          # 1 MB of scratch: convs are tiled
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    bn_inputs = [nd.inputs[0] for nd in eng.nodes_of_type("BatchNormalization")]
    for outputs, record in ((None, False), (bn_inputs, True)):
        eng.forward(x, outputs, record=record)
        tracemalloc.start()
        vals, tape = eng.forward(x, outputs, record=record)
        traced = tracemalloc.get_traced_memory()[1] + x.nbytes     # the input is counted too
        tracemalloc.stop()
        del vals, tape
        # + numpy's own ufunc iteration buffers (up to ~100 KB per call, any array size)
        assert traced <= 1.05 * eng.last_peak_bytes + (256 << 10), (record, traced, eng.last_peak_bytes)
        assert eng.last_peak_bytes <= 2 * traced


def test_override_propagates_through_folded_dequantize():
    rng = np.random.default_rng(5)
    wq = rng.integers(-8, 8, (4, 2, 1, 1))
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"])]
    inits = [helper.make_tensor("wq", TensorProto.INT4, list(wq.shape), wq.reshape(-1).tolist()),
             init("ws", np.full(4, 0.5, np.float32))]
    eng = Engine(make_model(nodes, (1, 2, 3, 3), inits))
    x = rnd(rng, 1, 2, 3, 3)
    base = eng.run(x)["y"]
    doubled = eng.run(x, overrides={"ws": np.full(4, 1.0, np.float32)})["y"]
    np.testing.assert_allclose(doubled, 2 * base, rtol=1e-6)


def test_large_integer_weights_are_dequantized_per_pass_and_freed():
    """A QDQ model's weight codes (>= LAZY_DEQUANTIZE_ELEMENTS) stay integer in the engine: the
    float weight is made when the Conv needs it and dropped after it (no float copy held), the
    outputs equal the folded evaluation bit for bit, and overrides of the codes or of the
    dequantized weight itself still apply."""
    from ohq_pynq.engine.executor import LAZY_DEQUANTIZE_ELEMENTS
    rng = np.random.default_rng(6)
    wq = rng.integers(-127, 128, (32, 16, 3, 3)).astype(np.int8)
    assert wq.size >= LAZY_DEQUANTIZE_ELEMENTS
    ws = (rng.random(32) * 0.01 + 0.001).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    model = make_model(nodes, (None, 16, 6, 6), [init("wq", wq), init("ws", ws)])
    eng = Engine(model)
    assert "w" not in eng._consts and eng._consts["wq"].dtype == np.int8
    x = rnd(rng, 3, 16, 6, 6)
    y = eng.run(x)["y"]
    w = (wq.astype(np.float32) * ws.reshape(-1, 1, 1, 1)).astype(np.float32)
    np.testing.assert_array_equal(eng.constant("w"), w)
    folded = Engine(make_model([nodes[1]], (None, 16, 6, 6), [init("w", w)]))
    np.testing.assert_array_equal(y, folded.run(x)["y"])
    assert eng.bytes_per_image(x.shape) == folded.bytes_per_image(x.shape)    # same micro-batches
    vals, _ = eng.forward(x, record=False)
    assert set(vals) == {"y"}                                     # the float weight did not stay
    zero = eng.run(x, overrides={"wq": np.zeros_like(wq)})["y"]
    assert np.all(zero == 0)
    np.testing.assert_array_equal(eng.run(x, overrides={"w": 2 * w})["y"],
                                  folded.run(x, overrides={"w": 2 * w})["y"])
    np.testing.assert_array_equal(eng.run(x)["y"], y)


def test_streamed_outputs_equal_run_and_are_not_held():
    """run(consume=...) hands over every requested tensor of every micro-batch (the same
    micro-batches, so the same values as run()) and holds none of them until the end: the
    working set is that of the last output alone."""
    rng = np.random.default_rng(7)
    model = small_cnn(rng)
    eng = Engine(model)
    x = rnd(rng, 10, 1, 12, 12)
    names = ["c1", "c2", "y"]
    full = eng.run(x, outputs=names, batch_size=4)
    got: dict[str, list] = {n: [] for n in names}
    assert eng.run(x, outputs=names, batch_size=4,
                   consume=lambda n, v: got[n].append(np.array(v))) == {}
    for n in names:
        assert [len(v) for v in got[n]] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(got[n]), full[n])
    eng.forward(x[:4], outputs=names, record=False)
    held = eng.last_peak_bytes
    eng._forward(eng._feeds(x[:4]), names, eng._consts, False, lambda n, v: None)
    assert eng.last_peak_bytes < held
    kept = []                                   # a consumer may keep what it was given
    eng.run(x[:4], outputs=["c1"], consume=lambda n, v: kept.append(v))
    np.testing.assert_array_equal(kept[0], full["c1"][:4])


def test_unsupported_ops_are_grouped_on_one_line():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Einsum", ["a"], ["b"], name="e1", equation="nchw->nchw"),
             helper.make_node("Celu", ["b"], ["c"], name="n2"),
             helper.make_node("Celu", ["c"], ["d"], name="n6"),
             helper.make_node("Celu", ["d"], ["e"], name="n7"),
             helper.make_node("Celu", ["e"], ["y"], name="n8")]
    model = make_model(nodes, (1, 3, 4, 4))
    with pytest.raises(UnsupportedOpError) as err:
        Engine(model)
    assert err.value.nodes == [("e1", "Einsum"), ("n2", "Celu"), ("n6", "Celu"), ("n7", "Celu"),
                               ("n8", "Celu")]
    assert str(err.value) == "unsupported operators: Einsum ×1 (e1), Celu ×4 (n2, n6, n7, ...)"


def test_backward_through_network_matches_finite_differences_float32_run():
    """Whole small CNN: gradient of a BN-input statistic, and the float32 path agrees."""
    rng = np.random.default_rng(9)
    model = small_cnn(rng)
    eng64 = Engine(model, dtype=np.float64)
    x = rng.standard_normal((2, 1, 12, 12))
    vals, tape = eng64.forward(x, outputs=["c2"], keep=["c1"])
    g1, g2 = rng.standard_normal(vals["c1"].shape), rng.standard_normal(vals["c2"].shape)
    dx = eng64.backward(tape, {"c1": g1, "c2": g2})

    def loss(xx):
        v, _ = eng64.forward(xx, outputs=["c1", "c2"], record=False)
        return float(np.sum(g1 * v["c1"]) + np.sum(g2 * v["c2"]))

    for idx in rng.choice(x.size, 15, replace=False):
        xp, xm = x.copy(), x.copy()
        xp.flat[idx] += 1e-6
        xm.flat[idx] -= 1e-6
        assert abs((loss(xp) - loss(xm)) / 2e-6 - dx.flat[idx]) < 1e-5 * max(1, np.abs(dx).max())
    eng32 = Engine(model)
    _, tape32 = eng32.forward(x.astype(np.float32), outputs=["c2"], keep=["c1"])
    dx32 = eng32.backward(tape32, {"c1": g1.astype(np.float32), "c2": g2.astype(np.float32)})
    assert dx32.dtype == np.float32
    assert rel_err(dx32, dx) < 1e-4


def test_erf_matches_math_erf_to_double_precision():
    import math

    from ohq_pynq.engine.ops.elementwise import erf

    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 2.4999999, 2.5, 2.5000001, -30, 30]])
    ref = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - ref)) < 2e-15


def _two_input_model(first_dims, second_dims):
    """y = x * s (s broadcast per image): inputs declared in the order given."""
    g = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "g",
                          [helper.make_tensor_value_info("s", F, second_dims),
                           helper.make_tensor_value_info("x", F, first_dims)],
                          [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def test_run_dict_batches_every_batched_input():
    """The batch comes from the inputs declared with a symbolic first dim, not from the first
    input; unbatched inputs are passed whole to every micro-batch."""
    rng = np.random.default_rng(11)
    x = rnd(rng, 7, 3, 4, 4)
    per_image = rnd(rng, 7, 3, 1, 1)
    eng = Engine(_two_input_model(["N", 3, 4, 4], ["N", 3, 1, 1]))
    np.testing.assert_allclose(eng.run({"x": x, "s": per_image}, batch_size=3)["y"], x * per_image)
    np.testing.assert_allclose(eng.run({"x": x, "s": per_image})["y"], x * per_image)
    shared = rnd(rng, 1, 3, 1, 1)                      # a fixed-size input listed first
    eng = Engine(_two_input_model(["N", 3, 4, 4], [1, 3, 1, 1]))
    np.testing.assert_allclose(eng.run({"s": shared, "x": x}, batch_size=2)["y"], x * shared)
    from ohq_pynq.errors import DataError
    eng = Engine(_two_input_model(["N", 3, 4, 4], ["N", 3, 1, 1]))
    with pytest.raises(DataError, match="different numbers of images"):
        eng.run({"x": x, "s": per_image[:5]})


def test_run_in_chunks_of_a_fixed_batch():
    """A graph that hard-codes batch 2 (Reshape [2, -1]) runs 6 images as 3 chunks of 2."""
    rng = np.random.default_rng(12)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "sh"], ["y"])]
    m = make_model(nodes, (2, 3, 2, 2), [init("sh", np.array([2, -1], np.int64))])
    x = rnd(rng, 6, 3, 2, 2)
    np.testing.assert_allclose(Engine(m).run(x)["y"], np.maximum(x, 0).reshape(6, -1))


def test_missing_optional_output_is_a_model_error():
    nodes = [helper.make_node("Relu", ["x"], ["y", "extra"])]   # an output the op never computes
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 2])],
                          [helper.make_tensor_value_info("y", F, None),
                           helper.make_tensor_value_info("extra", F, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(ModelError, match="does not compute its optional output 'extra'"):
        Engine(m).run(np.ones((1, 2), np.float32), outputs=["y", "extra"])
