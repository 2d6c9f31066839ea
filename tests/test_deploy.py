"""ohq_pynq.deploy: the integer network on the (simulated) cores equals the QDQ model."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import build_small_cnn
from ohq_pynq.deploy import Deployment, verify
from ohq_pynq.hw.accelerator import conv_layer, make_accelerator
from ohq_pynq.hw.sim import accumulate
from ohq_pynq.models import model_path, split_path
from ohq_pynq.data import load_data
from ohq_pynq.quant import calibrate, predict, prepare, quantize
from ohq_pynq.runtime import make_executor


@pytest.fixture(scope="module")
def digits():
    xc, _ = load_data(split_path("calib"), limit=128)
    xt, yt = load_data(split_path("test"), limit=100)
    return xc, xt, yt


NEAR_TIE = 1e-6     # relative distance of an exact requantized value to a k + 0.5 boundary


def record_layers(accelerator, records: list):
    """Wrap ``accelerator.run_layer`` to record, per call, the layer name, the core's integer
    output and the exact requantized value (acc + bias) * mult / 2^shift of every output."""
    run_layer = accelerator.run_layer

    def spy(layer, bits, x_q, w_q, requant):
        y, m = run_layer(layer, bits, x_q, w_q, requant)
        acc = accumulate(np.asarray(x_q, np.int64), np.asarray(w_q, np.int64),
                         conv_layer(layer, requant)) + requant.bias
        records.append((layer.name, y, acc * requant.mult / np.exp2(requant.shift.astype(np.float64))))
        return y, m

    accelerator.run_layer = spy


@pytest.mark.parametrize("model", ["digits_resnet_bn", "digits_mbv3_bn"])
def test_mixed_deployment_matches_qdq(model, digits):
    """The integer pipeline on the cores equals the QDQ model as the numpy engine runs it, bit for
    bit, except where the two round one value differently. The core requantizes the exact integer
    product (acc + bias) * mult / 2^shift and rounds half up; the QDQ model computes that value in
    float32, from scales stored in float32 (s_x * s_w / s_out equals mult / 2^shift only to float32
    precision), and rounds half to even. So an exact value within ~1e-7 (relative) of a k + 0.5
    boundary may come out one code apart, and that code travels on to the logits.

    Checked per image: the first layer whose integer output differs from the QDQ model's
    quantized tensor differs by one code, only at such near ties; an image with no such layer
    has exactly the QDQ model's logits."""
    xc, xt, yt = digits
    net = prepare(model_path(model))
    ranges = calibrate(net, xc)
    rng = np.random.default_rng(0)
    bits = {n: int(rng.choice([4, 8])) for n in net.layer_names}
    q = quantize(net, bits, ranges)
    acc = make_accelerator("sim", board="zcu104")
    dep = Deployment(q, acc)
    records: list = []
    record_layers(acc, records)
    logits, stats = dep.run(xt)
    qdq_model = q.to_onnx()
    qdq = make_executor(qdq_model, executor="numpy")
    # where the QDQ model holds each core output: the next layer's input codes (direct edges) or
    # the layer's int8 output codes (float-out edges)
    codes = {n: (f"{lq.edge.direct_to}.input_q" if lq.edge.direct_to else f"{n}.output_q")
             for n, lq in q.layers.items()}
    flipped = 0
    for i in range(len(xt)):
        ref = qdq.run(xt[i:i + 1], outputs=[qdq.output_names[0]] + list(codes.values()))
        for name, y, exact in records[i * len(net.layers):(i + 1) * len(net.layers)]:
            r = ref[codes[name]][0]
            r = r.transpose(1, 2, 0) if r.ndim == 3 else r.reshape(y.shape)
            diff = y - r.astype(np.int64)
            if diff.any():
                gap = np.abs(exact - np.floor(exact) - 0.5) / np.maximum(1.0, np.abs(exact))
                assert np.abs(diff).max() == 1 and np.all(gap[diff != 0] <= NEAR_TIE), (i, name)
                flipped += 1
                break
        else:
            np.testing.assert_array_equal(logits[i], ref[qdq.output_names[0]][0], err_msg=f"image {i}")
    assert flipped <= 0.1 * len(xt)
    # onnxruntime's float kernels sum in another order (more values flip); top-1 still agrees
    v = verify(logits, predict(qdq_model, xt, executor="onnxruntime"), yt)
    assert v["top1_agreement_vs_qdq"] >= 0.99
    per = stats.per_image()
    assert per["images"] == len(xt) and per["accelerator_seconds"] > 0 and per["joules"] > 0
    assert set(per["layers"]) == set(net.layer_names)


def test_layer_inputs_bit_exact(digits):
    """Every layer's integer input in deployment equals the QDQ model's quantized input."""
    xc, xt, _ = digits
    net = prepare(model_path("digits_resnet_bn"))
    q = quantize(net, 4, calibrate(net, xc))
    acc = make_accelerator("sim", board="pynq-z2")
    captured = {}
    run_layer = acc.run_layer

    def spy(layer, bits, x_q, w_q, requant):
        captured[layer.name] = np.array(x_q)
        assert bits == 4
        return run_layer(layer, bits, x_q, w_q, requant)

    acc.run_layer = spy
    dep = Deployment(q, acc)
    _, stats = dep.run(xt[:2])
    assert stats.per_image()["joules"] is None           # PYNQ-Z2: no power rails
    last = make_executor(q.to_onnx(), executor="numpy").run(
        xt[1:2], outputs=[f"{n}.input_q" for n in net.layer_names])
    for layer in net.layers:
        ref = last[f"{layer.name}.input_q"][0]
        ref = ref.transpose(1, 2, 0) if ref.ndim == 3 else ref.reshape(1, 1, -1)
        np.testing.assert_array_equal(captured[layer.name], ref.astype(np.int64), err_msg=layer.name)
    # direct edges: ReLU fused and integers handed straight to the next core
    assert any(p.direct_to for p in dep.plans.values()) and any(p.relu_node for p in dep.plans.values())


def test_small_cnn_float_ops_on_arm():
    net = prepare(build_small_cnn(batchnorm=True))
    x = np.random.default_rng(2).normal(size=(8, 1, 16, 16)).astype(np.float32)
    q = quantize(net, 8, calibrate(net, x))
    logits, _ = Deployment(q, make_accelerator("sim")).run(x)
    qdq = predict(q.to_onnx(), x, executor="numpy")
    assert verify(logits, qdq)["top1_agreement_vs_qdq"] == 1.0


@pytest.mark.parametrize("bits", [8, 4])
def test_fused_relu6_deployment_equals_the_qdq_model(bits):
    """Conv -> Clip(0, 6) -> Conv: the core's ReLU and clamp to the next layer's largest code
    (<= 6) give exactly the QDQ model's Clip -> QuantizeLinear codes, on every image."""
    import qdq_patterns

    net = prepare(qdq_patterns.clip_relu6())
    x = np.random.default_rng(4).normal(size=(8,) + net.input_shape).astype(np.float32) * 8
    q = quantize(net, bits, calibrate(net, x))
    dep = Deployment(q, make_accelerator("sim"))
    assert any(p.relu_node and "clip" in p.relu_node for p in dep.plans.values())
    logits, _ = dep.run(x)
    np.testing.assert_array_equal(logits, predict(q.to_onnx(), x, executor="numpy"))


def test_deployment_frees_each_activation_after_its_last_reader(digits):
    """The ARM holds one image's live activations only: every tensor is dropped right after its
    last reader ran (a residual branch lives until its Add), and the engine keeps no float weight
    of a layer that runs on a core. The logits equal those of a walk that keeps everything."""
    xc, xt, _ = digits
    net = prepare(model_path("digits_resnet_bn"))
    q = quantize(net, 8, calibrate(net, xc))
    dep = Deployment(q, make_accelerator("sim", board="zcu104"))
    for layer in net.layers:
        with pytest.raises(Exception):
            dep.engine.constant(layer.weight)
    freed_at: dict[str, int] = {}
    for k, (_, _, done) in enumerate(dep._steps):
        for t in done:
            assert t not in freed_at, t                   # freed once
            freed_at[t] = k
    for k, (kind, what, _) in enumerate(dep._steps):    # never freed before a later reader
        reads = [what.layer.input] if kind == "layer" else [i for i in what.inputs if i]
        assert all(freed_at.get(t, k) >= k for t in reads), (k, reads)
    live = dep._run_image(xt[:1].copy(), _fresh_stats(dep))
    assert set(live) == set(dep.engine.output_names)     # everything else was freed
    everything = sum(np.prod(v) * 4 for v in _activation_shapes(net).values())
    assert 0 < dep.peak_live_bytes < 0.5 * everything
    logits, _ = dep.run(xt[:3])
    kept = Deployment(q, make_accelerator("sim", board="zcu104"))
    kept._steps = [(kind, what, []) for kind, what, _ in kept._steps]    # frees nothing
    ref, _ = kept.run(xt[:3])
    np.testing.assert_array_equal(logits, ref)
    assert kept.peak_live_bytes > dep.peak_live_bytes


def _fresh_stats(dep):
    from ohq_pynq.deploy import DeployStats, LayerCost, _board_clock
    return DeployStats(layers={n: LayerCost() for n in dep.plans}, clock=_board_clock(dep.accelerator))


def _activation_shapes(net) -> dict:
    """Per-image shape of every tensor the float network computes (from shape inference)."""
    out = {}
    for vi in net.model.graph.value_info:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim][1:]
        if dims and all(dims):
            out[vi.name] = dims
    return out


# -- the closed loop: deployment's end-to-end time is measured, not summed -------------------
class StepClock:
    """A clock that advances 1 ms per reading: deterministic host time."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1e-3
        return self.t


def test_board_clock_replaces_accelerator_calls_and_scales_arm_time():
    from ohq_pynq.closed_loop import BoardClock

    clock = BoardClock(arm_scale=10.0, clock=StepClock())       # made at t = 1 ms
    # 4 ms of host time pass (readings at 2..5 ms); 1 ms of it was a call the board does in 7 us.
    for _ in range(3):
        clock.clock()
    clock.add_call(1e-3, 7e-6)
    assert clock.now() == pytest.approx(10 * (5e-3 - 1e-3 - 1e-3) + 7e-6)
    assert clock.arm(2e-3) == pytest.approx(2e-2)


def _deployment(digits, model, board, **sim):
    xc, xt, _ = digits
    net = prepare(model_path(model))
    q = quantize(net, {n: 4 if i % 2 else 8 for i, n in enumerate(net.layer_names)}, calibrate(net, xc))
    return net, Deployment(q, make_accelerator("sim", board=board, **sim)), xt[:6]


def test_end_to_end_is_the_board_clock_per_image_not_the_per_layer_sum(digits):
    """Without ARM time (arm_time off) the board clock is exactly the sum of the cores' calls
    (core + overheads); with ARM time the ARM ops between the cores (residual Add, pooling) and
    the quantize/dequantize at the cores' edges come on top, timed by kind."""
    net, dep, x = _deployment(digits, "digits_resnet_bn", "pynq-z2", arm_time="off")
    _, stats = dep.run(x)
    per = stats.per_image()
    cores = sum(v["seconds"] for v in per["layers"].values())
    assert per["end_to_end_seconds"] == pytest.approx(cores, rel=1e-9)
    assert per["accelerator_seconds"] == pytest.approx(cores)
    for v in per["layers"].values():
        assert v["seconds"] > v["core_seconds"] > 0                 # overheads on top of the counter
    assert sum(per["arm_ops"].values()) == 0 and sum(per["arm_edges"].values()) == 0

    net, dep, x = _deployment(digits, "digits_resnet_bn", "pynq-z2", arm_time="measured")
    _, stats = dep.run(x)
    per = stats.per_image()
    cores = sum(v["seconds"] for v in per["layers"].values())
    arm_ops, arm_edges = sum(per["arm_ops"].values()), sum(per["arm_edges"].values())
    assert {"Add", "Flatten"} <= set(per["arm_ops"]) and arm_ops > 0 and arm_edges > 0
    assert set(per["arm_edges"]) == set(net.layer_names)
    # Measured on the clock: everything timed by kind is inside it, and something more (the
    # deployment's own Python) too.
    assert per["end_to_end_seconds"] > cores + arm_ops + arm_edges


def test_end_to_end_on_the_pynq_backend_is_the_wall_clock(digits, tmp_path):
    """On the board (here the fake pynq) the clock is the wall clock: arm_scale 1 and each
    call's board seconds are its measured time (without an energy replay)."""
    from ohq_pynq.hw.fake_pynq import FakePynq, write_overlay
    from ohq_pynq.hw.overlay import OverlayAccelerator
    import time

    xc, xt, _ = digits
    net = prepare(model_path("digits_mbv3_bn"))
    q = quantize(net, 8, calibrate(net, xc))
    bit = write_overlay(tmp_path, "pynq-z2")
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bit, pynq_module=FakePynq(board="pynq-z2"))
    t0 = time.perf_counter()
    _, stats = Deployment(q, acc).run(xt[:2])
    wall = time.perf_counter() - t0
    per = stats.per_image()
    assert 0 < 2 * per["end_to_end_seconds"] <= wall
    assert 2 * per["end_to_end_seconds"] == pytest.approx(stats.host_seconds, rel=0.05)
    for v in per["layers"].values():
        assert v["seconds"] > v["core_seconds"] > 0
    acc.close()
