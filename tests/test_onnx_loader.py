"""ohq_pynq.onnx_loader: one clear error for each kind of bad model file, the op set the engine
executes, model_proto, and the decoding of initializers."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ohq_pynq.engine import OPS, SUPPORTED_OPS, Engine
from ohq_pynq.errors import ConfigError, ModelError, UnsupportedOpError
from ohq_pynq.onnx_loader import load_model, model_proto, parse_shape, tensor_to_array


def test_parse_shape_errors():
    assert parse_shape("3, 224, 224") == (3, 224, 224)
    for bad in ["a,b", "0,3", ""]:
        with pytest.raises(ConfigError):
            parse_shape(bad)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a file"):
        load_model(tmp_path)


def test_not_onnx_and_truncated(tmp_path, small_cnn):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(junk)
    text = tmp_path / "text.onnx"
    text.write_text("hello, I am not a model\n")
    with pytest.raises(ModelError):
        load_model(text)
    data = small_cnn.SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated|not an ONNX|checker"):
        load_model(trunc)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_model(empty)


def test_checker_failure(small_cnn):
    m = copy.deepcopy(small_cnn)
    m.graph.node[1].input[0] = "does_not_exist"
    with pytest.raises(ModelError, match="checker"):
        load_model(m)


def test_unsupported_ops_all_listed(small_cnn):
    m = copy.deepcopy(small_cnn)
    m.graph.node[2].op_type = "Softsign"      # relu1
    m.graph.node[5].op_type = "Shrink"        # relu2
    with pytest.raises(UnsupportedOpError) as info:
        load_model(m)
    assert info.value.nodes == [("relu1", "Softsign"), ("relu2", "Shrink")]
    assert str(info.value) == "unsupported operators: Softsign ×1 (relu1), Shrink ×1 (relu2)"


def test_huge_declared_initializer(small_cnn):
    m = copy.deepcopy(small_cnn)
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])
    with pytest.raises(ModelError, match="GiB"):
        load_model(m)


def test_load_accepts_exactly_the_engine_op_table(small_cnn):
    assert SUPPORTED_OPS == frozenset(OPS)
    m = copy.deepcopy(small_cnn)
    m.graph.node[2].op_type = "LeakyRelu"     # relu1: executed by the engine, so accepted
    out = m.graph.output[0].name
    m.graph.node[-1].output[0] = "fc_out"
    m.graph.node.append(helper.make_node("Softmax", ["fc_out"], [out], name="softmax", axis=-1))
    proto = load_model(m)
    assert [n.op_type for n in proto.graph.node].count("Softmax") == 1
    Engine(proto).run(np.zeros((1, 1, 16, 16), np.float32))


def test_unnamed_nodes_are_named_like_the_engine_names_them(small_cnn):
    m = copy.deepcopy(small_cnn)
    m.graph.node[2].name = ""
    m.graph.node[2].op_type = "Softsign"
    with pytest.raises(UnsupportedOpError) as info:
        load_model(m)
    assert info.value.nodes == [("Softsign_2", "Softsign")]


def test_model_proto_uses_a_proto_as_given_and_loads_a_path(tmp_path, small_cnn):
    assert model_proto(small_cnn) is small_cnn
    path = tmp_path / "m.onnx"
    onnx.save(small_cnn, path)
    loaded = model_proto(str(path))
    assert loaded is not small_cnn and loaded.graph.value_info     # checked and shape-inferred
    with pytest.raises(ModelError, match="not found"):
        model_proto(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="expected an ONNX model"):
        model_proto(42)


def test_int4_initializer_unpacking_odd_count():
    vals = np.array([-8, -1, 0, 3, 7], dtype=np.int64)
    t = helper.make_tensor("w", TensorProto.INT4, [5], vals.tolist())
    a = tensor_to_array(t)
    assert a.dtype == np.int8 and np.array_equal(a, vals)
    raw = helper.make_tensor("w", TensorProto.UINT4, [3], bytes([0x9F, 0x0C]), raw=True)
    assert np.array_equal(tensor_to_array(raw), [15, 9, 12])
