"""ohq_pynq.engine against onnxruntime: forward per op case and per model (the bundled
reference models, zoo layouts), QuantizeLinear/DequantizeLinear bit for bit, overrides."""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest

from engine_cases import (CASES, QT, init, input_shape, qdq_case, qdq_weight_conv_case, rel_err, rnd,
                          small_cnn)
from ohq_pynq import zoo
from ohq_pynq.engine import Engine

ort = pytest.importorskip("onnxruntime")


def ort_run(model, feeds, outputs=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_onnxruntime(case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    model = CASES[case](rng)
    onnx.checker.check_model(model)
    x = rnd(rng, *input_shape(model), scale=2.0)
    ref = ort_run(model, {"x": x})[0]
    got = Engine(model).run(x)["y"]
    assert got.shape == ref.shape
    assert got.dtype == np.float32
    assert rel_err(got, ref) <= 1e-5


@pytest.mark.parametrize("qname", sorted(QT))
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize_bit_exact(qname, per_axis):
    model, x, _, _ = qdq_case(qname, per_axis)
    _, _, qmin, qmax = QT[qname]
    vals = Engine(model).run(x, outputs=["q", "y"])
    if qname in ("int8", "uint8"):
        q_ref, y_ref = ort_run(model, {"x": x})
        assert np.array_equal(vals["q"].astype(np.int32), np.asarray(q_ref).astype(np.int32))
    else:   # onnxruntime's python API cannot return 4-bit tensors; y = (q - zp) * s pins q down
        (y_ref,) = ort_run(model, {"x": x}, ["y"])
    assert vals["q"].min() >= qmin and vals["q"].max() <= qmax
    assert np.array_equal(vals["y"], y_ref)              # bit-exact float32


@pytest.mark.parametrize("qname", ["int4", "uint4", "int8", "uint8"])
def test_qdq_weight_initializer_conv(qname):
    model, x, _ = qdq_weight_conv_case(qname)
    ref = ort_run(model, {"x": x})[0]
    got = Engine(model).run(x)["y"]
    assert rel_err(got, ref) <= 1e-5


def test_override_equals_onnxruntime_with_the_initializer_replaced():
    rng = np.random.default_rng(3)
    model = small_cnn(rng)
    x = rnd(rng, 10, 1, 12, 12)
    zero = Engine(model).run(x, outputs=["y"], overrides={"w2": np.zeros((12, 8, 3, 3), np.float32)})
    m2 = onnx.ModelProto()
    m2.CopyFrom(model)
    for t in m2.graph.initializer:
        if t.name == "w2":
            t.CopyFrom(init("w2", np.zeros((12, 8, 3, 3), np.float32)))
    assert rel_err(zero["y"], ort_run(m2, {"x": x})[0]) <= 1e-5


# ----------------------------------------------------------------------- reference models

REF_DIR = os.path.join(os.path.dirname(__file__), "..", "ohq_pynq", "models")
REF_MODELS = sorted(glob.glob(os.path.join(REF_DIR, "*.onnx")))


@pytest.mark.parametrize("path", REF_MODELS, ids=[os.path.basename(p) for p in REF_MODELS])
def test_reference_models_match_onnxruntime(path):
    model = onnx.load(path)
    eng = Engine(model)
    shape = [d if d else 4 for d in eng.input_shape]
    shape[0] = 4
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    ref = ort_run(model, {eng.input_name: x})
    got = eng.run(x)
    for name, r in zip(eng.output_names, ref):
        assert rel_err(got[name], r) <= 1e-4


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("bn", ["kept", "folded"])
def test_zoo_layouts_match_onnxruntime(arch, bn):
    model = getattr(zoo, arch)(resolution=64, batchnorm=bn, seed=0)
    eng = Engine(model)
    shape = [2] + [d for d in eng.input_shape[1:]]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ref = ort_run(model, {eng.input_name: x})
    got = eng.run(x)
    for name, r in zip(eng.output_names, ref):
        assert rel_err(got[name], r) <= 1e-4
