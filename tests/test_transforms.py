"""ohq_pynq.transforms.fold_batchnorm: same outputs, no BN left, layer names kept."""
import numpy as np
import onnxruntime as ort

from conftest import build_small_cnn
from ohq_pynq.transforms import fold_batchnorm


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def test_fold_batchnorm_equivalent():
    model = build_small_cnn(batchnorm=True)
    before = model.SerializeToString()
    folded = fold_batchnorm(model)
    assert model.SerializeToString() == before
    assert not [n for n in folded.graph.node if n.op_type == "BatchNormalization"]
    assert [n.name for n in folded.graph.node if n.op_type == "Conv"] == ["conv1", "dw", "pw", "se_fc"]
    x = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(run(folded, x), run(model, x), rtol=1e-4, atol=1e-5)


def test_bn_not_after_conv_is_kept():
    """A BN fed by the graph input, and one whose conv output has a second consumer, stay."""
    from onnx import TensorProto, helper, numpy_helper
    c = 2
    p = [numpy_helper.from_array(np.full(c, v, np.float32), f"p{v}") for v in (1, 2)]
    w = numpy_helper.from_array(np.ones((c, c, 1, 1), np.float32), "w")
    nodes = [helper.make_node("BatchNormalization", ["x", "p1", "p2", "p1", "p2"], ["b0"], name="bn_in"),
             helper.make_node("Conv", ["b0", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "p1", "p2", "p1", "p2"], ["b1"], name="bn_shared"),
             helper.make_node("Add", ["b1", "c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 4, 4])], p + [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    folded = fold_batchnorm(model)
    assert [n.name for n in folded.graph.node] == ["bn_in", "conv", "bn_shared", ""]
    x = np.random.default_rng(1).normal(size=(1, c, 4, 4)).astype(np.float32)
    s = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"])
    s0 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(None, {"x": x})[0], s0.run(None, {"x": x})[0])
