"""ohq_pynq.normalize: import rewrites on small onnx.helper graphs (the rewritten graph computes
what the original computes, per image, at any batch size), the onnx wheel's light model-zoo
models (opset 9, ConstantOfShape weights, Sum, Dropout, LRN, Softmax), and torch fixed-batch
exports (skipped without torch)."""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ohq_pynq import normalize
from ohq_pynq.engine import Engine
from ohq_pynq.errors import ModelError, UnsupportedOpError
from ohq_pynq.graph import load_network
from ohq_pynq.onnx_loader import load_model
from ohq_pynq.quant import QDQ_OPSETS

F = TensorProto.FLOAT
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def model_of(nodes, x_shape, y_shape, inits=(), opset=21):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, list(x_shape))],
                          [helper.make_tensor_value_info("y", F, y_shape)], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 21 else 7
    return m


def arr(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def fixed_batch_cnn(batch=1, opset=21, allowzero=0, minus_one=True):
    """Conv -> Relu -> Reshape to [batch, -1] (or [batch, K]) -> Gemm: a fixed-batch export."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32)
    shape = [batch, -1] if minus_one else [batch, 4 * 6 * 6]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"], allowzero=allowzero),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return model_of(nodes, (batch, 3, 6, 6), [batch, 5],
                    [arr("w", w), arr("fc", fc), arr("shape", np.array(shape, np.int64))], opset)


def per_image_reference(model, x):
    """The original fixed-batch model run image by image (batch 1) in onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


# ------------------------------------------------------------------------------------ batch

@pytest.mark.parametrize("allowzero,minus_one", [(0, True), (1, True), (1, False), (0, False)])
def test_free_batch_rewrites_reshape_and_io(allowzero, minus_one):
    m = fixed_batch_cnn(allowzero=allowzero, minus_one=minus_one)
    before = m.SerializeToString()
    freed, batch = normalize.free_batch(m)
    assert batch == 1 and m.SerializeToString() == before        # the caller's model is untouched
    assert freed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert freed.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(1).standard_normal((3, 3, 6, 6)).astype(np.float32)
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(freed.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, per_image_reference(m, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Engine(freed).run(x)["y"], got, rtol=1e-5, atol=1e-5)


def test_free_batch_fixed_n_and_symbolic():
    m = fixed_batch_cnn(batch=4)
    freed, batch = normalize.free_batch(m)
    assert batch == 4
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    ref = Engine(m).run(np.concatenate([x, x]))["y"][:2]          # the file's own batch of 4
    np.testing.assert_allclose(Engine(freed).run(x)["y"], ref, rtol=1e-5, atol=1e-5)
    again, none = normalize.free_batch(freed)
    assert none is None and again.graph.node[2].input[1] == freed.graph.node[2].input[1]


def test_free_batch_follows_reshape_chains_and_squeeze():
    """Channel shuffle (Reshape -> Transpose -> Reshape, each hard-coding 1) and an axis-less
    Squeeze that would drop the batch at batch 1."""
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["b", "s2"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["d"]),
             helper.make_node("Squeeze", ["d"], ["y"])]
    m = model_of(nodes, (1, 4, 3, 3), [1, 4], [arr("s1", np.array([1, 2, 2, 3, 3], np.int64)),
                                               arr("s2", np.array([1, 4, 3, 3], np.int64))])
    net = load_network(m)
    assert net.input_batch == 1
    x = np.random.default_rng(3).standard_normal((1, 4, 3, 3)).astype(np.float32)
    x3 = np.concatenate([x, 2 * x, -x])
    y = Engine(net.model).run(x3)[net.output_name]
    ref = Engine(m).run(x)["y"]
    assert y.shape == (3, 4)
    np.testing.assert_allclose(y, np.stack([ref, 2 * ref, -ref]), rtol=1e-6, atol=1e-6)  # file: (4,)


# -------------------------------------------------------------------- folding and clean-up

def test_fold_constants_uses_engine_ops_and_static_shapes():
    """ConstantOfShape weights, Constant nodes, and Shape -> Gather of static dims fold; the
    batch entry of a Shape stays a run-time value."""
    nodes = [helper.make_node("Constant", [], ["wshape"], value=arr("v", np.array([2, 3, 1, 1], np.int64))),
             helper.make_node("ConstantOfShape", ["wshape"], ["w"],
                              value=helper.make_tensor("f", F, [1], [0.5])),
             helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Shape", ["c"], ["sh"]),
             helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
             helper.make_node("Gather", ["sh", "i1"], ["ch"], axis=0),
             helper.make_node("Mul", ["ch", "two"], ["ch2"]),
             helper.make_node("Concat", ["n", "minus1"], ["tshape"], axis=0),
             helper.make_node("Reshape", ["c", "tshape"], ["r"]),
             helper.make_node("Cast", ["ch2"], ["k"], to=F),
             helper.make_node("Mul", ["r", "k"], ["y"])]
    inits = [arr("i0", np.array([0], np.int64)), arr("i1", np.array(1, np.int64)),
             arr("two", np.array(2, np.int64)), arr("minus1", np.array([-1], np.int64))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", F, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 4)).astype(np.float32)
    ref = Engine(m).run(x)["y"]
    folded = normalize.fold_constants(onnx.load_from_string(m.SerializeToString()))
    ops = [n.op_type for n in folded.graph.node]
    assert "ConstantOfShape" not in ops and "Constant" not in ops and "Cast" not in ops
    assert ops.count("Gather") == 1 and "Shape" in ops                # the batch stays symbolic
    w = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}["w"]
    assert w.shape == (2, 3, 1, 1) and np.all(w == 0.5)
    np.testing.assert_allclose(Engine(folded).run(x)["y"], ref)


def test_fold_constants_keeps_scalar_constants_0d():
    """A scalar Constant (TorchScript's Gather index for the batch entry of a Shape, as in
    torchvision's ShuffleNetV2 channel shuffle) folds to a 0-D initializer: a 1-D one would make
    the Gather output 1-D and the Unsqueeze -> Concat of the Reshape target rank 2."""
    nodes = [helper.make_node("Constant", [], ["i0"], value=arr("v", np.array(0, np.int64))),
             helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["tshape"], axis=0),
             helper.make_node("Reshape", ["x", "tshape"], ["y"])]
    inits = [arr("ax", np.array([0], np.int64)), arr("minus1", np.array([-1], np.int64))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", F, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    folded = normalize.fold_constants(onnx.load_from_string(m.SerializeToString()))
    i0 = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}["i0"]
    assert i0.shape == ()
    normalize.infer_shapes(folded, strict=True)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(Engine(folded).run(x)["y"], x.reshape(2, -1))


def test_sum_to_add_and_drop_noops_keep_names():
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Identity", ["a"], ["b"]),
             helper.make_node("Dropout", ["b"], ["c"], ratio=0.3),
             helper.make_node("Sum", ["a", "b", "c", "x"], ["s"], name="sum"),
             helper.make_node("Sum", ["s"], ["t"]),
             helper.make_node("Identity", ["t"], ["y"])]
    m = model_of(nodes, ("N", 3, 4, 4), ["N", 3, 4, 4], opset=13)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32)
    ref = Engine(m).run(x)["y"]
    out, _ = normalize.normalize(onnx.load_from_string(m.SerializeToString()))
    ops = [n.op_type for n in out.graph.node]
    assert ops == ["Relu", "Add", "Add", "Add"]
    assert out.graph.node[-1].name == "sum" and out.graph.node[-1].output[0] == "y"
    assert [o.name for o in out.graph.output] == ["y"]
    np.testing.assert_allclose(Engine(out).run(x)["y"], ref, rtol=1e-6)
    assert normalize.default_opset(out) == normalize.TARGET_OPSET


def test_dropout_with_used_mask_stays():
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Cast", ["mask"], ["m"], to=F),
             helper.make_node("Mul", ["d", "m"], ["y"])]
    m = model_of(nodes, ("N", 2), ["N", 2], opset=13)
    out = normalize.drop_noops(onnx.load_from_string(m.SerializeToString()))
    assert [n.op_type for n in out.graph.node] == ["Dropout", "Cast", "Mul"]
    x = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(Engine(out).run(x)["y"], x)        # inference mask: all ones


def test_old_opset_converted_and_too_old_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = model_of(nodes, (1, 3), [1, 3], opset=8)
    assert normalize.default_opset(load_model(m)) == normalize.TARGET_OPSET == QDQ_OPSETS[0]
    for opset in (13, 17, 21):
        m2 = model_of(nodes, (1, 3), [1, 3], opset=opset)
        assert normalize.default_opset(load_model(m2)) == opset            # read as it is
    with pytest.raises(ModelError, match=r"opset 5; ohq-pynq reads opset 7 and newer"):
        normalize.convert_opset(model_of(nodes, (1, 3), [1, 3], opset=5), "m.onnx")


def test_conversion_failure_is_one_line(monkeypatch):
    from onnx import version_converter

    def broken(model, target):
        raise RuntimeError("adapter missing\nC++ trace line 1\nline 2")
    monkeypatch.setattr(version_converter, "convert_version", broken)
    m = model_of([helper.make_node("Relu", ["x"], ["y"])], (1, 3), [1, 3], opset=9)
    with pytest.raises(ModelError) as err:
        normalize.convert_opset(m, "m.onnx")
    assert str(err.value) == "m.onnx: cannot convert ONNX opset 9 to 13: adapter missing"


def test_unsupported_ops_grouped_at_import():
    nodes = [helper.make_node("Celu", ["x"], ["a"], name="n2"),
             helper.make_node("Celu", ["a"], ["b"], name="n6"),
             helper.make_node("Einsum", ["b"], ["y"], name="n9", equation="ij->ij")]
    with pytest.raises(UnsupportedOpError) as err:
        load_network(model_of(nodes, (1, 3), [1, 3]))
    assert str(err.value) == "unsupported operators: Celu ×2 (n2, n6), Einsum ×1 (n9)"


# ------------------------------------------------------------------------ real models in

LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT, "light_*.onnx")))
FAST_LIGHT = ("squeezenet", "shufflenet", "inception_v1", "resnet50", "densenet121")


@pytest.mark.parametrize("path", [p for p in LIGHT_MODELS if any(k in p for k in FAST_LIGHT)],
                         ids=lambda p: os.path.basename(p)[6:-5])
def test_light_models_load_run_and_match(path):
    """The onnx wheel's model-zoo files (opset 9, batch fixed to 1): the normalised graph at
    batch 2 gives, in onnxruntime, the file's reference output per image; the engine's logits
    (the Softmax input) match onnxruntime's. (Their weights are constants, so the logits are
    ~1e9 and equal to float32 rounding: the Softmax of them is not comparable across kernels.)"""
    ort = pytest.importorskip("onnxruntime")
    net = load_network(path)
    assert net.input_batch == 1 and len(net.layers) > 20
    ops = [nd.op_type for nd in net.model.graph.node]
    assert not set(ops) & {"ConstantOfShape", "Sum", "Dropout", "Identity"}
    shape = (1,) + net.input_shape
    n = int(np.prod(shape))
    x = (np.arange(n).reshape(shape) / n).astype(np.float32)     # the backend runner's input
    x2 = np.concatenate([x, x[:, :, ::-1]])
    expected = numpy_helper.to_array(onnx.load_tensor(path[:-5] + "_output_0.pb"))
    softmax = [nd for nd in net.model.graph.node if nd.op_type == "Softmax"]   # DenseNet: none
    logits = softmax[-1].input[0] if softmax else net.output_name
    model = onnx.load_from_string(net.model.SerializeToString())
    if softmax:
        model.graph.output.append(helper.make_empty_tensor_value_info(logits))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    ref_y, ref_logits = ort.InferenceSession(model.SerializeToString(), so, providers=[
        "CPUExecutionProvider"]).run([net.output_name, logits], {net.input_name: x2})
    np.testing.assert_allclose(ref_y[:1], expected, rtol=1e-3, atol=1e-6)
    got = Engine(net.model, keep_model=False).run(x2, outputs=[logits, net.output_name])
    assert got[net.output_name].shape == (2,) + expected.shape[1:]
    assert np.abs(got[logits] - ref_logits).max() <= 1e-5 * np.abs(ref_logits).max()
    if softmax:
        np.testing.assert_allclose(got[net.output_name].reshape(2, -1).sum(axis=1), 1, atol=1e-5)


def test_light_squeezenet_random_weights_engine_matches_onnxruntime():
    """The light files' weights are constants; with random weights the normalised graph still
    runs identically on the engine and in onnxruntime, at a batch other than the file's."""
    ort = pytest.importorskip("onnxruntime")
    net = load_network(os.path.join(LIGHT, "light_squeezenet.onnx"))
    rng = np.random.default_rng(6)
    model = net.model
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.ndim == 4:
            fan_in = int(np.prod(a.shape[1:]))
            t.CopyFrom(numpy_helper.from_array(
                (rng.standard_normal(a.shape) * np.sqrt(2 / fan_in)).astype(np.float32), t.name))
    x = rng.random((3,) + net.input_shape, dtype=np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(model.SerializeToString(), so,
                               providers=["CPUExecutionProvider"]).run(None, {net.input_name: x})[0]
    got = Engine(model).run(x)[net.output_name]
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.ptp(ref) > 1e-3                                         # not a constant output


def test_torch_fixed_batch_exports(tmp_path):
    """``torch.onnx.export`` defaults (batch fixed to 1), both exporters, and a batch of 4:
    the batch-free graph gives, per image, what the file gives."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = nn.functional.silu(self.c2(x))
            x = nn.functional.max_pool2d(x, 2)
            return torch.softmax(self.fc(x.view(x.size(0), -1)), dim=1)

    torch.manual_seed(0)
    module = Net().eval()
    x = np.random.default_rng(7).standard_normal((5, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    for dynamo, batch in ((False, 1), (True, 1), (False, 4)):
        path = tmp_path / f"net_{dynamo}_{batch}.onnx"
        torch.onnx.export(module, torch.randn(batch, 3, 16, 16), str(path), dynamo=dynamo)
        before = path.read_bytes()
        net = load_network(str(path))
        assert net.input_batch == batch and path.read_bytes() == before
        y = Engine(net.model).run(x)[net.output_name]
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5, err_msg=f"dynamo={dynamo} batch={batch}")


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_light_models_quantize_on_the_numpy_engine(name):
    """BN folding, calibration and QDQ export on the normalised graph (Softmax head kept in
    float): the QDQ model runs on the engine at any batch and keeps every layer."""
    from ohq_pynq.quant import calibrate, prepare, quantize

    net = prepare(os.path.join(LIGHT, f"light_{name}.onnx"))
    assert not net.batchnorm_nodes
    x = np.random.default_rng(8).random((2,) + net.input_shape, dtype=np.float32)
    ranges = calibrate(net, x, executor="numpy")
    qnet = quantize(net, {n: 8 for n in net.layer_names}, ranges)
    qdq = qnet.to_onnx()
    ops = [n.op_type for n in qdq.graph.node]
    assert "Softmax" in ops[-3:] and ops.count("DequantizeLinear") >= 2 * len(net.layers)
    y = Engine(qdq).run(np.concatenate([x, x[:1]]))[qdq.graph.output[0].name]
    assert y.shape[0] == 3 and np.allclose(y.reshape(3, -1).sum(axis=1), 1, atol=1e-4)


def test_folded_scalar_constants_stay_scalars():
    """ShuffleNetV2's channel shuffle (TorchScript export): Gather(Shape(x), Constant scalar) ->
    Unsqueeze -> Concat -> Reshape. Folding the Constant must keep it 0-d: a 1-element vector
    makes the Gather output rank 1, the Unsqueeze rank 2, and shape inference of the Concat
    fails ("All inputs to Concat must have same rank")."""
    ort = pytest.importorskip("onnxruntime")
    scalar = helper.make_tensor("v", TensorProto.INT64, [], [0])
    nodes = [helper.make_node("Constant", [], ["zero"], value=scalar),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = model_of(nodes, ("B", 4, 2, 2), ["B", 2, 2, 2, 2],
                     [arr("axes", np.array([0], np.int64)), arr("rest", np.array([2, 2, 2, 2], np.int64))],
                     opset=17)
    folded = normalize.fold_constants(onnx.ModelProto.FromString(model.SerializeToString()))
    assert [list(t.dims) for t in folded.graph.initializer if t.name == "zero"] == [[]]
    out, _ = normalize.normalize(model)
    normalize.infer_shapes(out, strict=True)
    x = np.random.default_rng(0).standard_normal((3, 4, 2, 2)).astype(np.float32)
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x.reshape(3, 2, 2, 2, 2))


def _dim_of(nodes, tensor, axis, tag):
    """Nodes computing Unsqueeze(Gather(Shape(tensor), axis)) (TorchScript's x.size(axis))."""
    nodes += [helper.make_node("Shape", [tensor], [f"{tag}_s"]),
              helper.make_node("Constant", [], [f"{tag}_i"],
                               value=helper.make_tensor("v", TensorProto.INT64, [], [axis])),
              helper.make_node("Gather", [f"{tag}_s", f"{tag}_i"], [f"{tag}_g"], axis=0),
              helper.make_node("Unsqueeze", [f"{tag}_g", "axes0"], [f"{tag}_u"])]
    return f"{tag}_u"


def test_torchscript_channel_shuffle_reshapes_get_static_shapes():
    """ShuffleNetV2 as TorchScript exports it with a dynamic batch: x.view(x.size(0), 2, c/2, h, w)
    -> transpose -> x.view(x.size(0), -1, h, w), the sizes read from Shape at run time. Shape
    inference cannot follow those Reshapes, so the next conv had no spatial size (0 MACs).
    The batch entry becomes "copy dim 0", the other sizes fold, and the graph still computes
    what the file does."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], kernel_shape=[1, 1])]
    n = _dim_of(nodes, "c", 0, "a")
    h, w = _dim_of(nodes, "c", 2, "ah"), _dim_of(nodes, "c", 3, "aw")
    nodes += [helper.make_node("Concat", [n, "two", "half", h, w], ["shape1"], axis=0),
              helper.make_node("Reshape", ["c", "shape1"], ["r1"]),
              helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 2, 1, 3, 4])]
    n2 = _dim_of(nodes, "t", 0, "b")
    h2, w2 = _dim_of(nodes, "t", 3, "bh"), _dim_of(nodes, "t", 4, "bw")
    nodes += [helper.make_node("Concat", [n2, "minus1", h2, w2], ["shape2"], axis=0),
              helper.make_node("Reshape", ["t", "shape2"], ["r2"]),
              helper.make_node("Conv", ["r2", "w2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    inits = [arr("w1", rng.standard_normal((8, 3, 1, 1)).astype(np.float32)),
             arr("w2", rng.standard_normal((4, 8, 3, 3)).astype(np.float32)),
             arr("axes0", np.array([0], np.int64)), arr("two", np.array([2], np.int64)),
             arr("half", np.array([4], np.int64)), arr("minus1", np.array([-1], np.int64))]
    model = model_of(nodes, ("B", 3, 5, 5), ["B", 4, 5, 5], inits, opset=17)
    net = load_network(model)
    assert net.layers[1].in_hw == (5, 5) and net.layers[1].macs == 4 * 8 * 9 * 25
    assert not any(nd.op_type == "Shape" for nd in net.model.graph.node)
    x = rng.standard_normal((3, 3, 5, 5)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(net.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
