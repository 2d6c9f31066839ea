"""ohq_pynq.distill and the ``distill`` command: BN loss + gradient, >= 10x loss reduction,
reduced-resolution path, determinism, folded-BN error, CLI output."""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest

from ohq_pynq import distill as d
from ohq_pynq.cli import main
from ohq_pynq.engine import Engine
from ohq_pynq.errors import DataError

from conftest import build_small_cnn  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def calibrated():
    """The small BN-kept CNN with running statistics measured on smooth images."""
    model = build_small_cnn(batchnorm=True, seed=3, hw=16)
    return d.calibrate_bn_statistics(model, d.pink_noise_images(64, 1, 16, 16, seed=1))


def test_bn_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 5, 2))
    t = d.BNTarget("bn", "a", rng.standard_normal(4), rng.uniform(0.5, 2.0, 4))
    loss, grads = d.bn_loss({"a": a}, [t], grad=True)
    mu, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    expected = np.mean((mu - t.mean) ** 2) + np.mean((np.sqrt(var) - t.std) ** 2)
    assert loss == pytest.approx(expected, rel=1e-9)
    for idx in rng.choice(a.size, 12, replace=False):
        ap, am = a.copy(), a.copy()
        ap.flat[idx] += 1e-6
        am.flat[idx] -= 1e-6
        num = (d.bn_loss({"a": ap}, [t]) - d.bn_loss({"a": am}, [t])) / 2e-6
        assert grads["a"].flat[idx] == pytest.approx(num, rel=1e-5, abs=1e-9)


def test_calibrated_statistics_match_the_calibration_batch(calibrated):
    eng = Engine(calibrated)
    x = d.pink_noise_images(64, 1, 16, 16, seed=1)
    assert d.evaluate_loss(eng, x, d.bn_targets(eng), micro_batch=64) < 1e-6


def test_distillation_lowers_bn_loss_tenfold(calibrated):
    res = d.distill(calibrated, num=16, iters=60, resolution=None, micro_batch=8, seed=0)
    assert res.x.shape == (16, 1, 16, 16) and res.x.dtype == np.float32
    assert np.all(np.isfinite(res.x))
    assert res.resolution == 16
    assert res.loss_final * 10 <= res.loss_initial, (res.loss_initial, res.loss_final)
    assert len(res.history) == 60 and res.history[-1] < res.history[0]


def test_reduced_resolution_then_refine(calibrated):
    res = d.distill(calibrated, num=8, iters=40, resolution=8, refine=10, micro_batch=8, seed=1)
    assert res.resolution == 8
    assert res.x.shape == (8, 1, 16, 16)
    assert len(res.history) == 50
    assert res.loss_final * 5 <= res.loss_initial, (res.loss_initial, res.loss_final)


def test_seeded_and_deterministic(calibrated):
    a = d.distill(calibrated, num=4, iters=5, resolution=None, micro_batch=2, seed=7)
    b = d.distill(calibrated, num=4, iters=5, resolution=None, micro_batch=2, seed=7)
    c = d.distill(calibrated, num=4, iters=5, resolution=None, micro_batch=2, seed=8)
    assert np.array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_not_fully_convolutional_model_stays_at_full_resolution():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
             helper.make_node("Flatten", ["n"], ["f"]),
             helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")]
    inits += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in
              (("g", np.ones(4)), ("b", np.zeros(4)), ("m", np.zeros(4)), ("v", np.ones(4)))]
    inits.append(numpy_helper.from_array(rng.standard_normal((3, 4 * 12 * 12)).astype(np.float32), "fw"))
    g = helper.make_graph(nodes, "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    res = d.distill(m, num=2, iters=2, resolution=8)
    assert res.resolution == 12 and res.x.shape == (2, 1, 12, 12)


def test_resize_bilinear():
    x = np.full((1, 2, 4, 4), 3.0, np.float32)
    assert np.allclose(d.resize_bilinear(x, (9, 7)), 3.0)
    ramp = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4).repeat(2, axis=2)
    up = d.resize_bilinear(ramp, (2, 8))[0, 0, 0]
    # half-pixel centres (torch align_corners=False): 0, .25, .75, 1.25, ... clamped at the ends
    np.testing.assert_allclose(up, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])


def test_folded_bn_without_calib_is_one_clear_error(tmp_path, capsys):
    folded = build_small_cnn(batchnorm=False)
    with pytest.raises(DataError) as err:
        d.distill(folded)
    msg = str(err.value)
    assert "--calib" in msg and "TrainingMode.PRESERVE" in msg and "do_constant_folding=False" in msg
    path = tmp_path / "folded.onnx"
    onnx.save(folded, str(path))
    out = tmp_path / "d.npz"
    assert main(["distill", str(path), "--out", str(out)]) == 2
    err_text = capsys.readouterr().err.strip()
    assert err_text.startswith("error: ") and "--calib" in err_text and len(err_text.splitlines()) == 1
    assert not out.exists()


def test_cli_distill_and_calib(tmp_path, calibrated, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(calibrated, str(path))
    out = tmp_path / "sub" / "data.npz"
    rc = main(["distill", str(path), "--num", "5", "--iters", "3", "--refine", "1",
               "--resolution", "8", "--micro-batch", "4", "--seed", "2", "--out", str(out)])
    assert rc == 0
    with np.load(out) as f:
        x = f["x"]
    assert x.shape == (5, 1, 16, 16) and x.dtype == np.float32
    assert "BN loss" in capsys.readouterr().out
    assert not [p for p in os.listdir(out.parent) if p.endswith(".tmp")]
    # --calib: the user's images (first --num) instead of distillation, for folded models
    calib = tmp_path / "calib.npz"
    imgs = d.pink_noise_images(7, 1, 16, 16, seed=4)
    np.savez(calib, x=imgs)
    folded = tmp_path / "folded.onnx"
    onnx.save(build_small_cnn(batchnorm=False), str(folded))
    out2 = tmp_path / "c.npz"
    assert main(["distill", str(folded), "--calib", str(calib), "--num", "5", "--out", str(out2)]) == 0
    with np.load(out2) as f:
        np.testing.assert_array_equal(f["x"], imgs[:5])


REF = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "ohq_pynq", "models",
                                                "*.onnx")))


@pytest.mark.parametrize("path", REF, ids=[os.path.basename(p) for p in REF])
def test_reference_models(path):
    """BN-kept reference models: >= 10x lower BN loss; folded ones: the clear error."""
    eng = Engine(path)
    if not d.bn_targets(eng):
        with pytest.raises(DataError, match="--calib"):
            d.distill(path, engine=eng)
        return
    res = d.distill(path, num=8, iters=60, resolution=None, micro_batch=8, seed=0, engine=eng)
    assert res.loss_final * 10 <= res.loss_initial, (res.loss_initial, res.loss_final)
