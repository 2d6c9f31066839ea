"""ohq_pynq.quant: integer parameters, QDQ export (int8/int4) and evaluation metrics."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import build_small_cnn
from ohq_pynq.errors import ConfigError, DataError
from ohq_pynq.quant import (activation_range, calibrate, compare, kl_divergence, nonnegative_tensors,
                            predict, prepare, quantize, quantize_weight)
from ohq_pynq.runtime import make_executor


@pytest.fixture(scope="module")
def net():
    return prepare(build_small_cnn(batchnorm=True))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(48, 1, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def ranges(net, images):
    return calibrate(net, images)


def conv2d_int(x, w, stride, pad, groups):
    """Plain integer convolution (int64), N C H W / O I/g kh kw — the test's own reference."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, oh, ow), dtype=np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i:i + stride * oh:stride, j:j + stride * ow:stride]
                y[:, oc] += np.einsum("nchw,c->nhw", patch.astype(np.int64), w[oc, :, i, j].astype(np.int64))
    return y


def test_quantize_weight_narrow_range():
    w = np.random.default_rng(1).normal(size=(6, 3, 3, 3)).astype(np.float32)
    for bits, qmax in ((8, 127), (4, 7)):
        q, s = quantize_weight(w, bits)
        assert q.dtype == np.int8 and q.min() >= -qmax and q.max() <= qmax
        assert np.all(np.abs(q).reshape(6, -1).max(axis=1) == qmax)  # each channel uses the full range
        assert np.abs(q * s.reshape(-1, 1, 1, 1) - w).max() <= s.max() / 2 + 1e-6
    q, s = quantize_weight(np.zeros((2, 4), np.float32), 8)
    assert np.all(q == 0) and np.all(s == 1)


def test_activation_ranges():
    assert activation_range(4, True) == (-8, 7) and activation_range(4, False) == (0, 15)
    assert activation_range(8, True) == (-128, 127) and activation_range(8, False) == (0, 255)


def test_signedness_follows_relu(net):
    unsigned = nonnegative_tensors(net)
    signs = {l.name: l.input not in unsigned for l in net.layers}
    # image in: signed; after ReLU: unsigned; GAP(HardSwish) and Mul(…): signed
    assert signs == {"conv1": True, "dw": False, "pw": False, "se_fc": True, "fc": True}


def test_bn_folded_before_quantization(net):
    assert not net.batchnorm_nodes and net.source  # folded
    assert net.layer_names == ["conv1", "dw", "pw", "se_fc", "fc"]


@pytest.mark.parametrize("bits", [8, 4])
def test_layer_output_equals_integer_reference(net, ranges, images, bits):
    """The QDQ model's conv output == (integer conv of quantized input and weights + int bias) · scales."""
    q = quantize(net, bits, ranges)
    model = q.to_onnx()
    for name in ("conv1", "dw"):
        layer, lq = net.layer(name), q.layers[name]
        ex = make_executor(model, executor="onnxruntime")
        out = ex.run(images[:4], outputs=[layer.input, layer.output])
        qmin, qmax = lq.act_qrange
        x_q = np.clip(np.rint(out[layer.input] / np.float32(lq.act_scale)), qmin, qmax).astype(np.int64)
        acc = conv2d_int(x_q, lq.weight_q, layer.stride[0], layer.pads[0], layer.groups)
        acc = acc + lq.bias_q.reshape(1, -1, 1, 1)
        expect = acc * (np.float32(lq.act_scale) * lq.weight_scale).reshape(1, -1, 1, 1)
        np.testing.assert_allclose(out[layer.output], expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())


def test_qdq_export_types_and_opset(net, ranges):
    bits = {"conv1": 8, "dw": 4, "pw": 4, "se_fc": 8, "fc": 4}
    model = quantize(net, bits, ranges).to_onnx()
    onnx.checker.check_model(model)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21
    types = {t.name: t.data_type for t in model.graph.initializer}
    T = onnx.TensorProto
    assert types["dw.weight_q"] == T.INT4 and types["conv1.weight_q"] == T.INT8
    assert types["dw.input_zero_point"] == T.UINT4      # after ReLU
    assert types["fc.input_zero_point"] == T.INT4       # signed
    assert types["conv1.input_zero_point"] == T.INT8
    assert types["dw.bias_q"] == T.INT32
    q_nodes = {n.name for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert {n for n in q_nodes if n.endswith("/QuantizeInput")} == {f"{l}/QuantizeInput" for l in bits}
    # float-out edges only where the output does not go straight into one other layer
    assert {n for n in q_nodes if n.endswith("/QuantizeOutput")} == {
        "pw/QuantizeOutput", "se_fc/QuantizeOutput", "fc/QuantizeOutput"}
    assert types["pw.output_zero_point"] == T.INT8
    assert model.graph.output[0].name == "logits"


def test_output_edges(net):
    from ohq_pynq.quant import calibration_tensors, output_edges
    edges = output_edges(net)
    assert edges["conv1"].relu_node is not None and edges["conv1"].direct_to == "dw"
    assert edges["dw"].direct_to == "pw"
    assert edges["pw"].relu_node is None and edges["pw"].direct_to is None   # HardSwish on the ARM
    assert edges["fc"].tensor == "logits" and edges["fc"].direct_to is None
    tensors = calibration_tensors(net)
    assert {"logits", edges["pw"].tensor, edges["se_fc"].tensor} <= set(tensors)
    assert set(tensors) == {l.input for l in net.layers} | {"logits", edges["pw"].tensor, edges["se_fc"].tensor}


def test_mixed_config_file_and_errors(net, ranges, tmp_path):
    from ohq_pynq.bitconfig import save_config
    cfg = tmp_path / "config.json"
    save_config(cfg, {n: 4 for n in net.layer_names} | {"conv1": 8}, note="hand-made")
    q = quantize(net, str(cfg), ranges)
    assert q.weight_bits["conv1"] == 8 and q.weight_bits["fc"] == 4
    assert q.model_bytes() < quantize(net, 8, ranges).model_bytes()
    save_config(cfg, {"nope": 4})
    with pytest.raises(ConfigError, match="nope"):
        quantize(net, str(cfg), ranges)
    with pytest.raises(ConfigError, match="not supported"):
        quantize(net, 3, ranges)


def test_accuracy_ordering_w8_w4(net, ranges, images):
    ref = predict(net.model, images)
    kl = {}
    for w, a in ((8, 8), (4, 8), (4, 4)):
        out = predict(quantize(net, w, ranges, act_bits=a).to_onnx(), images)
        kl[(w, a)] = compare(out, None, ref)["kl"]
    assert kl[(8, 8)] < kl[(4, 8)] < kl[(4, 4)]
    assert kl[(8, 8)] < 1e-3


def test_percentile_clips_tighter(net, images, ranges):
    pr = calibrate(net, images, method="percentile", percentile=99.0)
    for t, r in pr.items():
        assert 0 < r.clip <= ranges[t].absmax + 1e-6
    assert any(r.clip < ranges[t].absmax * 0.9 for t, r in pr.items())
    with pytest.raises(ConfigError):
        calibrate(net, images, method="kmeans")


def test_calibrate_rejects_bad_images(net):
    with pytest.raises(DataError, match="shape"):
        calibrate(net, np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(DataError, match="NaN"):
        calibrate(net, np.full((2, 1, 16, 16), np.nan, np.float32))


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 5))
    assert kl_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(a, a + rng.normal(size=a.shape)) > 0
    r = compare(a, y=a.argmax(1), reference=a)
    assert r == {"images": 20, "accuracy": 1.0, "top1_agreement": 1.0, "kl": pytest.approx(0, abs=1e-12)}
