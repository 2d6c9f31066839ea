"""ohq_pynq.graph: layer table, edges, constant weights, and the errors of models whose layers
cannot be described (the loading checks: test_onnx_loader.py)."""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import build_small_cnn
from ohq_pynq.errors import ModelError
from ohq_pynq.graph import load_network


def test_small_cnn_layers(small_cnn):
    net = load_network(small_cnn)
    assert net.layer_names == ["conv1", "dw", "pw", "se_fc", "fc"]
    assert net.input_shape == (1, 16, 16)
    conv1, dw, pw, se, fc = net.layers
    assert (conv1.cin, conv1.cout, conv1.kernel, conv1.in_hw, conv1.out_hw) == (1, 8, (3, 3), (16, 16), (16, 16))
    assert conv1.macs == 16 * 16 * 8 * 1 * 9 and conv1.params == 8 * 9
    assert dw.depthwise and dw.groups == 8 and dw.stride == (2, 2) and dw.out_hw == (8, 8)
    assert dw.macs == 8 * 8 * 8 * 9
    assert se.in_hw == (1, 1) and se.params == 16 * 16 + 16
    assert fc.op == "Gemm" and (fc.cin, fc.cout) == (16, 10) and fc.macs == 160
    assert net.weight(fc).shape == (10, 16, 1, 1)
    # edges go through BN/ReLU/HardSwish/GAP/Mul/Flatten
    assert dw.producers == ["conv1"] and conv1.consumers == ["dw"]
    assert se.producers == ["pw"]
    assert fc.producers == ["pw", "se_fc"]
    assert sorted(pw.consumers) == ["fc", "se_fc"]
    assert len(net.batchnorm_nodes) == 3
    assert net.total_macs == sum(l.macs for l in net.layers)


def test_input_model_never_modified(small_cnn):
    before = small_cnn.SerializeToString()
    load_network(small_cnn, input_shape="1,16,16")
    assert small_cnn.SerializeToString() == before


def test_load_from_path_and_describe(tmp_path, small_cnn_folded):
    p = tmp_path / "m.onnx"
    onnx.save(small_cnn_folded, p)
    net = load_network(str(p))
    d = net.describe()
    assert d["source"] == str(p) and d["batchnorm"] == 0 and len(d["layers"]) == 5
    assert net.bias("conv1").shape == (8,)


def test_matmul_and_gemm_without_transb():
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(12, 6)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(6, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="g"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w1, w2])
    net = load_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    g_layer, mm = net.layers
    assert (g_layer.cin, g_layer.cout, g_layer.weight_transposed) == (12, 6, True)
    assert (mm.op, mm.cin, mm.cout, mm.macs) == ("MatMul", 6, 4, 24)
    np.testing.assert_array_equal(net.weight(mm)[:, :, 0, 0], numpy_helper.to_array(w2).T)
    assert mm.producers == ["g"]


@pytest.mark.parametrize("shape", ["1,16,16", (1, 16, 16), "1x1x16x16"])
def test_parse_and_fix_dynamic_shape(shape):
    m = build_small_cnn()
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    with pytest.raises(ModelError, match="--input-shape"):
        load_network(m)
    net = load_network(m, input_shape=shape)
    assert net.input_shape == (1, 16, 16) and net.layers[0].out_hw == (16, 16)


def test_non_constant_weight():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8]),
                                       helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])])
    with pytest.raises(ModelError, match="2 inputs"):
        load_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    # weight computed at run time from the single input
    nodes = [helper.make_node("ReduceMean", ["x"], ["s"], keepdims=0),
             helper.make_node("Mul", ["wsrc", "s"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3])]
    wsrc = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "wsrc")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [wsrc])
    with pytest.raises(ModelError, match="not a constant"):
        load_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    # a weight computed from constants only is folded at import: a constant weight
    nodes = [helper.make_node("Relu", ["wsrc"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [wsrc])
    net = load_network(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert net.layer_names == ["c"] and net.weight("c").shape == (4, 2, 3, 3)


# --- real exports: the bundled reference models and the 224x224 layouts -------------------------
from ohq_pynq.models import list_models, model_info, model_path  # noqa: E402


@pytest.mark.parametrize("name", list_models())
def test_reference_models(name):
    info = model_info(name)
    net = load_network(model_path(name))
    assert net.input_shape == tuple(info["input_shape"][1:])
    assert net.total_macs == info["macs"]
    # BN-kept exports add no parameters to the quantizable layers beyond conv weights (+fc bias)
    assert net.total_params <= info["params"]
    assert len(net.layers) == (13 if "resnet" in name else 34)
    assert (len(net.batchnorm_nodes) > 0) == (info["batchnorm"] == "kept")
    first, last = net.layers[0], net.layers[-1]
    assert first.producers == [] and last.consumers == [] and last.cout == 100
    assert all(l.producers for l in net.layers[1:])          # every later layer is reached from one
    if "mbv3" in name:
        assert any(l.depthwise for l in net.layers) and any(l.kernel == (5, 5) for l in net.layers)


@pytest.mark.parametrize("arch,layers,macs,params", [
    # torchvision: ResNet-18 11,689,512 parameters of which 9,600 are BN scale/shift (4,800 channels);
    # folding turns those channels into conv biases (+4,800)
    ("resnet18", 21, 1_814_073_344, {"kept": 11_679_912, "folded": 11_684_712}),
    ("mobilenet_v3_small", 54, 56_510_400, {"kept": 2_530_744, "folded": 2_536_800})])
@pytest.mark.parametrize("bn", ["kept", "folded"])
def test_224_layouts(arch, layers, macs, params, bn):
    from ohq_pynq import zoo
    net = load_network(zoo.build(arch, resolution=224, batchnorm=bn))
    assert len(net.layers) == layers and net.input_shape == (3, 224, 224)
    assert net.total_macs == macs and net.total_params == params[bn]
    assert net.layers[-1].op == "Gemm" and net.layers[-1].cout == 1000
    assert (len(net.batchnorm_nodes) > 0) == (bn == "kept")
