"""ohq_pynq.engine against ONNX's own backend node tests (shipped in the onnx wheel under
onnx/backend/test/data/node/<case>/: model.onnx + test_data_set_0/{input,output}_*.pb).

Every case whose nodes are all in the engine's op table (default domain, tensor inputs/outputs
only) runs on the engine and must match the reference outputs with the backend tests' own
tolerance (rtol 1e-3, atol 1e-7). The cases the engine does not cover on purpose are listed
in EXPECTED_FAILURES with the reason; they are strict xfails, so one that starts passing must
be taken off the list.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import onnx
import pytest

from ohq_pynq.engine import OPS, Engine
from ohq_pynq.onnx_loader import tensor_to_array

NODE_TESTS = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")

# regex on the case name -> why the engine does not implement it
EXPECTED_FAILURES = {
    r"test_(averagepool|maxpool)_(1d|3d)_.*": "1-D / 3-D pooling: the engine runs 2-D CNNs (N, C, H, W)",
    r"test_causal_conv_.*": "1-D convolution: the engine runs 2-D CNNs (N, C, H, W)",
    r"test_cast(like)?_(e8m0_)?FLOAT(16)?_to_FLOAT8\w*": "Cast to float8 with saturation (numpy / "
                                                       "ml_dtypes overflow to inf / NaN): no CNN "
                                                       "inference graph casts to float8",
    r"test_(de)?quantizelinear_blocked.*": "block-wise (block_size) quantization: ohq-pynq quantizes "
                                          "per tensor / per channel",
    r"test_quantizelinear_(e4m3fn|e5m2|float4e2m1|int2|uint2)": "QuantizeLinear to float8 / float4 / "
                                                               "int2 is refused (the cores are int4 / int8)",
    r"test_resize_.*cubic.*": "Resize cubic: CNNs resize nearest or linear",
    r"test_resize_.*antialias": "Resize antialias (a downsampling filter): not in CNN inference graphs",
    r"test_resize_tf_crop_and_resize.*": "Resize tf_crop_and_resize (TensorFlow detection heads)",
    r"test_training_dropout(_default)?(_mask)?": "Dropout in training mode is random; inference graphs have none",
    r"test_constant": "a graph without inputs: the engine needs an input to run",
}
RTOL, ATOL = 1e-3, 1e-7


def _case_files(path):
    data = os.path.join(path, "test_data_set_0")

    def ordered(kind):
        files = glob.glob(os.path.join(data, f"{kind}_*.pb"))
        return sorted(files, key=lambda p: int(re.search(r"_(\d+)\.pb$", p).group(1)))
    return ordered("input"), ordered("output")


def _cases():
    cases = []
    for path in sorted(glob.glob(os.path.join(NODE_TESTS, "*", "model.onnx"))):
        model = onnx.load(path)
        g = model.graph
        if any(n.domain not in ("", "ai.onnx") or n.op_type not in OPS for n in g.node):
            continue
        if any(v.type.WhichOneof("value") != "tensor_type" for v in list(g.input) + list(g.output)):
            continue
        name = os.path.basename(os.path.dirname(path))
        reason = next((r for pat, r in EXPECTED_FAILURES.items() if re.fullmatch(pat, name)), None)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        cases.append(pytest.param(name, id=name, marks=marks))
    return cases


CASES = _cases()


def test_every_op_in_the_table_is_covered():
    """The node tests cover the op table (ops without a node test of their own are named)."""
    covered = set()
    for p in CASES:
        model = onnx.load(os.path.join(NODE_TESTS, p.values[0], "model.onnx"))
        covered |= {n.op_type for n in model.graph.node}
    assert len(CASES) > 450
    assert set(OPS) - covered <= {"Upsample"}, sorted(set(OPS) - covered)


@pytest.mark.parametrize("case", CASES)
def test_node(case):
    path = os.path.join(NODE_TESTS, case)
    model = onnx.load(os.path.join(path, "model.onnx"))
    inputs, outputs = _case_files(path)
    ins = [tensor_to_array(onnx.load_tensor(p)) for p in inputs]
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    dtype = np.float64 if any(a.dtype == np.float64 for a in ins) else np.float32
    values, _ = Engine(model, dtype=dtype).forward(dict(zip(names, ins)), record=False)
    for out, ref_file in zip(model.graph.output, outputs):
        expected = tensor_to_array(onnx.load_tensor(ref_file))
        got = np.asarray(values[out.name])
        assert got.shape == expected.shape, (out.name, got.shape, expected.shape)
        if expected.dtype.kind == "f" or got.dtype.kind == "f":
            np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64),
                                       rtol=RTOL, atol=ATOL, err_msg=out.name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=out.name)
