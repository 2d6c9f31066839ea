"""A slice of the corpus of real CNNs (tools/build_corpus.py) through the command line, stage by
stage (tools/corpus_check.py): inspect, quantize 8/4, default onnxruntime session vs fp32,
onnxruntime's own int8 quantizer as a yardstick, ``run --calib`` on the simulator, deployment vs
QDQ. ``bench/models.py`` runs the whole matrix.

Needs torch, torchvision and timm (skipped without them); the files are built once (seeded random
weights) at a reduced resolution and cached in ``$OHQ_CORPUS_CACHE`` (default
``~/.cache/ohq-pynq/corpus``). Stages that fail today are ``xfail(strict=True)`` with the measured
reason: fixing one turns the suite red until its mark is removed.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_corpus as corpus  # noqa: E402
import corpus_check as checker  # noqa: E402

RESOLUTION = 64
CACHE = Path(os.environ.get("OHQ_CORPUS_CACHE", corpus.DEFAULT_CACHE))

# (model, export): every exporter, and the families resnet, mobilenet, squeezenet, zoo (light).
SLICE = [
    ("resnet18", "default"),                 # dynamo exporter, fixed batch 1
    ("mobilenet_v3_small", "bn"),            # BatchNorm kept, HardSwish / SE
    ("squeezenet1_1", "torchscript"),        # TorchScript exporter, dynamic batch, Concat
    ("light_squeezenet", "zoo"),             # onnx wheel's model-zoo file, opset 7
]

# (model, export, stage) -> the reason it fails today (measured; see docs/corpus_failures.md).
XFAIL: dict = {
    ("mobilenet_v3_small", "bn", "ort8"):
        "int8 QDQ vs fp32 max |Δ| 9.0 % of the fp32 output range (limit 5 %; onnxruntime's own "
        "int8 quantizer: 10.7 %): int8 rounding noise accumulated over a random-weight net whose "
        "logits span 0.35",
}


@functools.lru_cache(maxsize=None)
def _result(name: str, kind: str, work: str) -> checker.Result:
    if kind == "zoo":
        path = next(p for p in corpus.light_models() if p.stem == name)
    else:
        path = corpus.corpus_file(CACHE, RESOLUTION, name, kind)
        err = corpus.export_error(CACHE, RESOLUTION, name, kind)
        if err:
            pytest.fail(f"export failed: {err}")
    return checker.check(path, Path(work) / f"{name}.{kind}")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return str(tmp_path_factory.mktemp("corpus"))


def _cases():
    for name, kind in SLICE:
        for stage in checker.STAGES:
            reason = XFAIL.get((name, kind, stage))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, kind, stage, marks=marks, id=f"{name}.{kind}-{stage}")


@pytest.mark.parametrize("name, kind, stage", list(_cases()))
def test_corpus_stage(name, kind, stage, work):
    st = _result(name, kind, work).stages[stage]
    assert st.ok is True, f"{stage}: {st.reason}"


def test_checker_fails_a_bad_file(tmp_path):
    """The checker is not a rubber stamp: a file the product refuses fails at inspect with the
    product's one-line error, and nothing after it is reached."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    g = helper.make_graph([helper.make_node("Einsum", ["x"], ["y"], equation="nchw->nchw")], "g", [x], [y])
    path = tmp_path / "einsum.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    res = checker.check(path, tmp_path / "w")
    assert res.stages["inspect"].ok is False
    assert "Einsum" in res.stages["inspect"].reason
    assert all(res.stages[s].ok is None for s in checker.STAGES[1:])
