"""ohq_pynq.runtime: executor choice, env override, numpy fallback without onnxruntime, and both
executors agreeing (float and QDQ models, intermediate outputs, overrides)."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ohq_pynq import runtime
from ohq_pynq.errors import ConfigError
from ohq_pynq.runtime import make_executor, resolve_executor

from engine_cases import small_cnn  # tests/ is on sys.path under pytest

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def model():
    return small_cnn(np.random.default_rng(21))


@pytest.fixture
def x():
    return np.random.default_rng(22).standard_normal((6, 1, 12, 12)).astype(np.float32)


def test_auto_prefers_onnxruntime(model, monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    ex = make_executor(model)
    assert ex.name == "onnxruntime"
    assert ex.input_name == "x" and ex.output_names == ["y"]


def test_auto_falls_back_to_numpy_without_onnxruntime(model, x, monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import now raises ImportError
    ex = make_executor(model)
    assert ex.name == "numpy"
    assert ex.run(x)["y"].shape == (6, 10)
    with pytest.raises(ConfigError, match="onnxruntime is not installed"):
        make_executor(model, executor="onnxruntime")


@pytest.mark.parametrize("forced", ["numpy", "onnxruntime"])
def test_env_var_forces_executor(model, monkeypatch, forced):
    monkeypatch.setenv(runtime.ENV_VAR, forced)
    assert make_executor(model).name == forced
    assert make_executor(model, executor="numpy").name == "numpy"   # explicit choice wins


def test_bad_choices_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="unknown executor"):
        resolve_executor("tensorrt")
    monkeypatch.setenv(runtime.ENV_VAR, "gpu")
    with pytest.raises(ConfigError, match="OHQ_PYNQ_EXECUTOR"):
        resolve_executor("auto")


def test_executors_agree_with_intermediates_overrides_and_batches(model, x):
    a = make_executor(model, executor="numpy")
    b = make_executor(model, executor="onnxruntime", threads=1)
    outs = ["c1", "n2", "y"]
    ra = a.run(x, outputs=outs, batch_size=4)
    rb = b.run(x, outputs=outs, batch_size=4)
    for k in outs:
        assert ra[k].shape == rb[k].shape
        np.testing.assert_allclose(ra[k], rb[k], rtol=1e-4, atol=1e-4)
    w2 = np.random.default_rng(0).standard_normal((12, 8, 3, 3)).astype(np.float32)
    oa = a.run(x, overrides={"w2": w2})["y"]
    ob = b.run(x, overrides={"w2": w2})["y"]
    np.testing.assert_allclose(oa, ob, rtol=1e-4, atol=1e-4)
    assert not np.allclose(oa, ra["y"], atol=1e-3)
    # the cached default session is untouched by the override
    np.testing.assert_allclose(b.run(x, batch_size=4)["y"], rb["y"], rtol=1e-5, atol=1e-5)


def _qdq_model(bits: int):
    rng = np.random.default_rng(bits)
    et = TensorProto.INT4 if bits == 4 else TensorProto.INT8
    qmax = 7 if bits == 4 else 127
    wq = rng.integers(-qmax - 1, qmax + 1, (6, 3, 3, 3))
    nodes = [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "as", "az"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
             helper.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    inits = [helper.make_tensor("wq", et, list(wq.shape), wq.reshape(-1).tolist()),
             numpy_helper.from_array(rng.uniform(0.01, 0.05, 6).astype(np.float32), "ws"),
             numpy_helper.from_array(np.float32(0.05 if bits == 8 else 0.4), "as"),
             helper.make_tensor("az", et, [], [0]),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("bits", [4, 8])
def test_qdq_model_agrees_between_executors(bits):
    m = _qdq_model(bits)
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    ya = make_executor(m, executor="numpy").run(x)["y"]
    yb = make_executor(m, executor="onnxruntime").run(x)["y"]
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)
    # an int4 weight override goes through both executors the same way
    wq = np.zeros((6, 3, 3, 3), np.int64)
    wq[:, :, 1, 1] = 1
    za = make_executor(m, executor="numpy").run(x, overrides={"wq": wq})["y"]
    zb = make_executor(m, executor="onnxruntime").run(x, overrides={"wq": wq})["y"]
    np.testing.assert_allclose(za, zb, rtol=1e-5, atol=1e-5)
    assert not np.allclose(za, ya)


def test_overrides_reuse_one_onnxruntime_session(model, x, monkeypatch):
    """Overriding initializers feeds them to one session; it is not rebuilt per call."""
    built = []                                   # one entry per session onnxruntime builds
    monkeypatch.setattr(ort, "InferenceSession",
                        lambda *a, real=ort.InferenceSession, **k: built.append(1) or real(*a, **k))
    ex = make_executor(model, executor="onnxruntime", overridable=["w2"])
    ref = make_executor(model, executor="numpy")
    rng = np.random.default_rng(3)
    for _ in range(3):
        w2 = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
        np.testing.assert_allclose(ex.run(x, overrides={"w2": w2})["y"],
                                   ref.run(x, overrides={"w2": w2})["y"], rtol=1e-4, atol=1e-4)
    assert len(built) == 1
    ex.run(x, overrides={"fw": np.zeros((10, 12), np.float32)})   # not declared: added once
    ex.run(x, overrides={"fw": np.ones((10, 12), np.float32)})
    assert len(built) == 2
    with pytest.raises(ConfigError, match="not an initializer"):
        ex.run(x, overrides={"c1": np.zeros(1, np.float32)})


def _fixed_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = batch
    return m


@pytest.mark.parametrize("batch", [1, 4])
def test_fixed_batch_model_runs_in_chunks_of_its_batch(model, x, batch):
    """torch.onnx.export fixes the batch (1): onnxruntime refuses any other, so images go
    through in chunks of that size (the last padded and trimmed), intermediates included."""
    fixed = _fixed_batch(model, batch)
    ref = make_executor(model, executor="numpy").run(x, outputs=["y", "c2"])
    ex = make_executor(fixed, executor="onnxruntime")
    out = ex.run(x, outputs=["y", "c2"])                 # 6 images: not a multiple of 4
    assert out["y"].shape == (6, 10) and out["c2"].shape == (6, 12, 6, 6)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ex.run(x[:batch])["y"], ref["y"][:batch], rtol=1e-5, atol=1e-5)


def _failing_onnxruntime(monkeypatch):
    """onnxruntime raising its own exception type (as on a graph it cannot load)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    def fail(self, *args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Load model failed: some kernel is missing\n"
                   "  second line of detail")
    monkeypatch.setattr(runtime.OnnxruntimeExecutor, "run", fail)


def test_onnxruntime_error_falls_back_to_numpy_when_chosen_automatically(model, x, monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    _failing_onnxruntime(monkeypatch)
    ex = make_executor(model)
    with pytest.warns(RuntimeWarning, match=r"^onnxruntime cannot run this model \(Load model failed: "
                                            r"some kernel is missing\); using the numpy engine$"):
        y = ex.run(x)["y"]
    assert ex.name == "numpy"
    np.testing.assert_array_equal(y, make_executor(model, executor="numpy").run(x)["y"])


def test_onnxruntime_error_is_one_line_when_asked_for(model, x, monkeypatch):
    from ohq_pynq.errors import ModelError
    _failing_onnxruntime(monkeypatch)
    with pytest.raises(ModelError) as err:
        make_executor(model, executor="onnxruntime").run(x)
    assert str(err.value) == ("onnxruntime cannot run this model: Load model failed: some kernel is "
                              "missing (the numpy executor may: --executor numpy)")
