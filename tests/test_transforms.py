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


def test_copy_model_copies_only_the_kept_initializers():
    from ohq_pynq.transforms import copy_model
    model = build_small_cnn(batchnorm=True)
    assert copy_model(model).SerializeToString() == model.SerializeToString()
    names = [t.name for t in model.graph.initializer]
    drop = set(names[::2])
    part = copy_model(model, keep=lambda n: n not in drop)
    assert [t.name for t in part.graph.initializer] == [n for n in names if n not in drop]
    del part.graph.initializer[:]
    ref = onnx_copy(model)
    del ref.graph.initializer[:]
    assert part.SerializeToString() == ref.SerializeToString()     # everything else identical


def onnx_copy(model):
    import onnx
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def test_fold_batchnorm_keeps_a_weight_another_node_still_reads():
    """The weights of a folded Conv -> BN pair are not copied (the folded ones replace them),
    unless another node reads them too."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    c = 3
    w = numpy_helper.from_array(rng.normal(size=(c, c, 1, 1)).astype(np.float32), "w")
    bn = [numpy_helper.from_array(v.astype(np.float32), f"bn{k}")
          for k, v in enumerate([rng.random(c) + 0.5, rng.normal(size=c), rng.normal(size=c), rng.random(c) + 0.5])]
    nodes = [helper.make_node("Conv", ["input", "w"], ["a"], name="c1"),
             helper.make_node("BatchNormalization", ["a", "bn0", "bn1", "bn2", "bn3"], ["b"], name="bn"),
             helper.make_node("Conv", ["b", "w"], ["out"], name="c2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w] + bn)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folded = fold_batchnorm(model)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Conv"]
    assert [t.name for t in folded.graph.initializer] == ["w", "c1.weight_folded", "c1.bias_folded"]
    x = rng.normal(size=(1, c, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run(folded, x), run(model, x), rtol=1e-4, atol=1e-5)
