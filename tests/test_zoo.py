"""ohq_pynq.zoo: ResNet-18 / MobileNetV3-Small layouts built in memory with onnx.helper."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ohq_pynq import zoo
from ohq_pynq.errors import ConfigError

ort = pytest.importorskip("onnxruntime")

BUILDERS = {"resnet18": zoo.resnet18, "mobilenet_v3_small": zoo.mobilenet_v3_small}
# torchvision's parameter counts (weights + biases + BN affine, not running statistics)
PARAMS = {"resnet18": 11_689_512, "mobilenet_v3_small": 2_542_856}
# node counts of torchvision's models exported by torch.onnx.export (TorchScript, opset 17),
# Identity nodes left out: BN kept / folded
NODES = {"resnet18": (69, 49), "mobilenet_v3_small": (156, 122)}
OPS = {
    "resnet18": {"Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"},
    "mobilenet_v3_small": {"Conv", "Relu", "HardSwish", "HardSigmoid", "Mul", "Add",
                           "GlobalAveragePool", "Flatten", "Gemm"},
}
RES = 64   # small resolution keeps onnxruntime runs fast; shapes of 224 are checked separately


@pytest.fixture(scope="module")
def built():
    return {(name, bn): fn(resolution=RES, batchnorm=bn, seed=3)
            for name, fn in BUILDERS.items() for bn in ("kept", "folded")}


def _params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer
               if not t.name.endswith(("running_mean", "running_var")))


def _bn_channels(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name.endswith("running_mean"))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("bn", ["kept", "folded"])
def test_checker_passes(built, name, bn):
    onnx.checker.check_model(built[(name, bn)], full_check=True)


@pytest.mark.parametrize("name", BUILDERS)
def test_parameter_counts_match_torchvision(built, name):
    kept, folded = built[(name, "kept")], built[(name, "folded")]
    assert _params(kept) == PARAMS[name]
    # folding drops the BN scale (absorbed into the weights) and keeps its shift as the conv bias
    assert _params(folded) == PARAMS[name] - _bn_channels(kept)
    assert round(PARAMS[name] / 1e6, 2) == {"resnet18": 11.69, "mobilenet_v3_small": 2.54}[name]


@pytest.mark.parametrize("name", BUILDERS)
def test_op_types_and_node_counts(built, name):
    kept, folded = built[(name, "kept")], built[(name, "folded")]
    assert {n.op_type for n in kept.graph.node} == OPS[name] | {"BatchNormalization"}
    assert {n.op_type for n in folded.graph.node} == OPS[name]
    assert (len(kept.graph.node), len(folded.graph.node)) == NODES[name]
    names = [n.name for n in kept.graph.node]
    assert len(set(names)) == len(names) and all(names)
    # every BN follows a bias-free conv; in the folded graph every conv has a bias
    producer = {o: n for n in kept.graph.node for o in n.output}
    for n in kept.graph.node:
        if n.op_type == "BatchNormalization":
            conv = producer[n.input[0]]
            assert conv.op_type == "Conv" and len(conv.input) == 2
    assert all(len(n.input) == 3 for n in folded.graph.node if n.op_type == "Conv")


def test_resnet18_layout():
    m = zoo.resnet18(resolution=RES, batchnorm="folded")
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 20 and sum(n.op_type == "Gemm" for n in m.graph.node) == 1
    attrs = {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in convs}
    assert attrs["/conv1/Conv"]["kernel_shape"] == [7, 7] and attrs["/conv1/Conv"]["strides"] == [2, 2]
    downs = [k for k in attrs if "downsample" in k]
    assert downs == [f"/layer{i}/layer{i}.0/downsample/downsample.0/Conv" for i in (2, 3, 4)]
    assert all(attrs[k]["kernel_shape"] == [1, 1] and attrs[k]["strides"] == [2, 2] for k in downs)
    assert sum(n.op_type == "Add" for n in m.graph.node) == 8


def test_mobilenet_v3_small_layout():
    m = zoo.mobilenet_v3_small(resolution=RES, batchnorm="folded")
    inits = {t.name: t for t in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 52 and sum(n.op_type == "Gemm" for n in m.graph.node) == 2
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs}
    depthwise = [n for n in convs if groups[n.name] > 1]
    assert len(depthwise) == 11
    kernels = Counter(tuple(inits[n.input[1]].dims[2:]) for n in depthwise)
    assert kernels == {(3, 3): 3, (5, 5): 8}
    for n in depthwise:   # group == channels, one input channel per group
        w = inits[n.input[1]].dims
        assert groups[n.name] == w[0] and w[1] == 1
    assert sum(n.op_type == "Mul" for n in m.graph.node) == 9          # SE blocks
    assert sum(n.op_type == "Add" for n in m.graph.node) == 6          # residuals
    assert sum(n.op_type == "HardSigmoid" for n in m.graph.node) == 9


@pytest.mark.parametrize("name", BUILDERS)
def test_onnxruntime_runs_and_bn_folding_is_exact(built, name):
    x = np.random.default_rng(0).normal(size=(2, 3, RES, RES)).astype(np.float32)
    kept = _run(built[(name, "kept")], x)
    folded = _run(built[(name, "folded")], x)
    assert kept.shape == (2, 1000) and np.isfinite(kept).all()
    assert np.abs(kept).max() > 1e-4                    # a real signal reaches the classifier
    assert not np.allclose(kept[0], kept[1])            # ... and depends on the input
    np.testing.assert_allclose(folded, kept, rtol=1e-3, atol=1e-5 * np.abs(kept).max())


def test_io_convention_and_224_shapes():
    m = zoo.resnet18(num_classes=10, seed=1)
    (inp,), (out,) = m.graph.input, m.graph.output
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert out.name == "logits" and [d.dim_value for d in out.type.tensor_type.shape.dim[1:]] == [10]
    assert m.opset_import[0].version == zoo.OPSET and m.ir_version == zoo.IR_VERSION
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    assert shapes["/maxpool/MaxPool_output_0"] == ["N", 64, 56, 56]
    assert shapes["/layer4/layer4.1/relu_1/Relu_output_0"] == ["N", 512, 7, 7]
    m = zoo.mobilenet_v3_small(num_classes=10)
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    assert shapes["/features/features.12/features.12.2/HardSwish_output_0"] == ["N", 576, 7, 7]


def test_seeded_and_deterministic():
    a = zoo.mobilenet_v3_small(resolution=32, seed=5)
    b = zoo.build("mobilenet_v3_small", resolution=32, seed=5)
    c = zoo.mobilenet_v3_small(resolution=32, seed=6)
    assert a.SerializeToString() == b.SerializeToString()
    wa = numpy_helper.to_array(a.graph.initializer[0])
    wc = numpy_helper.to_array(c.graph.initializer[0])
    assert wa.shape == wc.shape and not np.array_equal(wa, wc)
    # He (fan-out) init of the stem conv: std sqrt(2 / (16*3*3))
    assert abs(wa.std() - np.sqrt(2 / 144)) < 0.05
    var = [numpy_helper.to_array(t) for t in a.graph.initializer if t.name.endswith("running_var")]
    assert var and all((v > 0).all() for v in var)


@pytest.mark.parametrize("kwargs", [dict(batchnorm="fused"), dict(resolution=16),
                                    dict(resolution=64.0), dict(num_classes=0)])
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        zoo.resnet18(**kwargs)
    with pytest.raises(ConfigError):
        zoo.mobilenet_v3_small(**kwargs)


def test_build_unknown_name():
    with pytest.raises(ConfigError, match="resnet18"):
        zoo.build("vgg16")
