"""ohq_pynq.deploy: the integer network on the (simulated) cores equals the QDQ model."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import build_small_cnn
from ohq_pynq.deploy import Deployment, verify
from ohq_pynq.hw.accelerator import make_accelerator
from ohq_pynq.models import model_path, split_path
from ohq_pynq.data import load_data
from ohq_pynq.quant import calibrate, predict, prepare, quantize
from ohq_pynq.runtime import make_executor


@pytest.fixture(scope="module")
def digits():
    xc, _ = load_data(split_path("calib"), limit=128)
    xt, yt = load_data(split_path("test"), limit=100)
    return xc, xt, yt


@pytest.mark.parametrize("model", ["digits_resnet_bn", "digits_mbv3_bn"])
def test_mixed_deployment_matches_qdq(model, digits):
    xc, xt, yt = digits
    net = prepare(model_path(model))
    ranges = calibrate(net, xc)
    rng = np.random.default_rng(0)
    bits = {n: int(rng.choice([4, 8])) for n in net.layer_names}
    q = quantize(net, bits, ranges)
    dep = Deployment(q, make_accelerator("sim", board="zcu104"))
    logits, stats = dep.run(xt)
    qdq = predict(q.to_onnx(), xt, executor="onnxruntime")
    v = verify(logits, qdq, yt)
    assert v["top1_agreement_vs_qdq"] >= 0.99
    # the integer pipeline equals the QDQ simulation but for rare fixed-point rounding ties
    assert np.mean(np.abs(logits - qdq) > 1e-5) < 0.005
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
