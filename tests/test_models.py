"""ohq_pynq.models: the bundled reference models and data splits load and reproduce their accuracy."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from ohq_pynq import models
from ohq_pynq.errors import ConfigError

ort = pytest.importorskip("onnxruntime")

EXPECTED = {"digits_resnet_bn", "digits_resnet_folded", "digits_mbv3_bn", "digits_mbv3_folded",
            "digits_mbv3_dynamo"}


@pytest.fixture(scope="module")
def test_split():
    return models.load_split("test")


def _session(name: str):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(models.model_path(name)), so, providers=["CPUExecutionProvider"])


def _logits(name: str, x: np.ndarray) -> np.ndarray:
    sess = _session(name)
    return np.concatenate([sess.run(["logits"], {"input": x[i:i + 500]})[0] for i in range(0, len(x), 500)])


def test_catalogue_lists_every_file_and_stays_small():
    assert set(models.list_models()) == EXPECTED
    files = [p for p in models.MODELS_DIR.iterdir() if p.suffix in (".onnx", ".npz", ".json")]
    assert {p.stem for p in files if p.suffix == ".onnx"} == EXPECTED
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    assert models.DEFAULT_MODEL in EXPECTED
    assert models.model_path("digits_resnet_bn.onnx") == models.model_path("digits_resnet_bn")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_passes_checker_with_io_convention(name):
    m = onnx.load(str(models.model_path(name)))
    onnx.checker.check_model(m, full_check=True)
    info = models.model_info(name)
    (inp,), (out,) = m.graph.input, m.graph.output
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 32]
    assert out.name == "logits" and out.type.tensor_type.shape.dim[1].dim_value == info["classes"] == 100
    assert info["input_shape"] == ["N", 1, 32, 32]
    ops = {n.op_type for n in m.graph.node}
    assert ("BatchNormalization" in ops) == (info["batchnorm"] == "kept")
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17
    if info["arch"] == "mbv3":
        assert {"HardSwish", "HardSigmoid", "Mul"} <= ops
        convs = [n for n in m.graph.node if n.op_type == "Conv"]
        groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs]
        assert sum(g > 1 for g in groups) >= 7                      # depthwise convs
    else:
        assert {"MaxPool", "Add", "GlobalAveragePool", "Gemm"} <= ops
    quantizable = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in m.graph.node)
    assert quantizable >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_reproduces_recorded_accuracy(name, test_split):
    x, y = test_split
    info = models.model_info(name)
    correct = int((_logits(name, x).argmax(1) == y).sum())
    # exact on the machine that recorded it; one image of slack for another CPU's float kernels
    assert abs(correct - info["ort_correct"]) <= 1
    assert info["ort_accuracy"] == pytest.approx(info["ort_correct"] / len(y), abs=1e-6)
    assert abs(info["ort_accuracy"] - info["torch_accuracy"]) <= 2 / len(y)
    assert info["ort_accuracy"] >= 0.85


@pytest.mark.parametrize("arch", ["resnet", "mbv3"])
def test_bn_kept_and_folded_exports_agree(arch, test_split):
    x = test_split[0][:200]
    kept = _logits(f"digits_{arch}_bn", x)
    for variant in ["folded"] + (["dynamo"] if arch == "mbv3" else []):
        other = _logits(f"digits_{arch}_{variant}", x)
        np.testing.assert_allclose(other, kept, atol=1e-3 * np.abs(kept).max(), rtol=1e-3)


def test_data_splits():
    info = models.dataset_info()
    for split in ("test", "calib"):
        x, y = models.load_split(split)
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.ndim == 4 and x.shape[1:] == (1, 32, 32) and len(x) == len(y) == info[split]["n"]
        assert y.min() >= 0 and y.max() < info["classes"]
        assert len(np.unique(y)) >= 90                    # nearly every class is represented
        assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2   # normalised
    assert models.load_split("test")[0].shape[0] >= 1000
    assert 100 <= models.load_split("calib")[0].shape[0] <= 1000
    assert not np.array_equal(models.load_split("test")[0][:10], models.load_split("calib")[0][:10])


def test_unknown_names_raise_config_error():
    with pytest.raises(ConfigError, match="digits_resnet_bn"):
        models.model_path("resnet50")
    with pytest.raises(ConfigError):
        models.load_split("train")
