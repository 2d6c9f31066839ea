"""Shared fixtures: small ONNX graphs built with onnx.helper (deterministic, no files needed)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def build_small_cnn(batchnorm: bool = True, seed: int = 0, hw: int = 16, classes: int = 10,
                    opset: int = 17) -> onnx.ModelProto:
    """conv3x3-BN-ReLU → depthwise3x3/2-BN-ReLU → 1x1 conv (signed out) + residual-free SE-style
    Mul → GlobalAveragePool → Flatten → Gemm. Covers Conv, grouped Conv, BN, Relu, HardSwish,
    HardSigmoid, Mul, GAP, Flatten, Gemm."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def bn(x, c, name):
        if not batchnorm:
            return x
        out = f"{name}_out"
        nodes.append(helper.make_node(
            "BatchNormalization",
            [x, init(f"{name}.g", rng.uniform(0.5, 1.5, c)), init(f"{name}.b", rng.normal(0, 0.1, c)),
             init(f"{name}.m", rng.normal(0, 0.1, c)), init(f"{name}.v", rng.uniform(0.5, 2, c))],
            [out], name=name, epsilon=1e-5))
        return out

    def conv(x, cin, cout, k, name, stride=1, group=1, bias=True):
        w = init(f"{name}.weight", rng.normal(0, np.sqrt(2.0 / (cin // group * k * k)), (cout, cin // group, k, k)))
        ins = [x, w] + ([init(f"{name}.bias", rng.normal(0, 0.1, cout))] if bias else [])
        nodes.append(helper.make_node("Conv", ins, [f"{name}_y"], name=name, kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[stride, stride], group=group))
        return f"{name}_y"

    x = conv("input", 1, 8, 3, "conv1", bias=not batchnorm)
    x = bn(x, 8, "bn1")
    nodes.append(helper.make_node("Relu", [x], ["r1"], name="relu1"))
    x = conv("r1", 8, 8, 3, "dw", stride=2, group=8, bias=not batchnorm)
    x = bn(x, 8, "bn2")
    nodes.append(helper.make_node("Relu", [x], ["r2"], name="relu2"))
    x = conv("r2", 8, 16, 1, "pw", bias=not batchnorm)
    x = bn(x, 16, "bn3")
    nodes.append(helper.make_node("HardSwish", [x], ["hs"], name="hswish"))
    nodes.append(helper.make_node("GlobalAveragePool", ["hs"], ["se_pool"], name="se_pool"))
    se = conv("se_pool", 16, 16, 1, "se_fc")
    nodes.append(helper.make_node("HardSigmoid", [se], ["se_gate"], name="se_gate", alpha=1 / 6, beta=0.5))
    nodes.append(helper.make_node("Mul", ["hs", "se_gate"], ["se_out"], name="se_mul"))
    nodes.append(helper.make_node("GlobalAveragePool", ["se_out"], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    nodes.append(helper.make_node("Gemm", ["flat", init("fc.weight", rng.normal(0, 0.3, (classes, 16))),
                                           init("fc.bias", rng.normal(0, 0.1, classes))],
                                  ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, hw, hw])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def small_cnn() -> onnx.ModelProto:
    return build_small_cnn(batchnorm=True)


@pytest.fixture
def small_cnn_folded() -> onnx.ModelProto:
    return build_small_cnn(batchnorm=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
