"""Small float CNNs, one per graph pattern that onnxruntime's optimiser rewrites once the model is
quantized (QDQ): each puts one op between a layer's output and the next layer's QuantizeLinear,
or Q/DQ around an op ORT has an integer kernel for.

``PATTERNS`` maps a pattern name to a builder ``() -> onnx.ModelProto`` (input ``input``
(N, 4, 8, 8), output ``logits`` (N, 6)); tests quantize each at 8, 4 and mixed bits and open the
result in a default onnxruntime session. Seeded: the same graph every call.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CIN, HW, CLASSES = 4, 8, 6


class _Builder:
    def __init__(self, seed: int = 0, opset: int = 17):
        self.rng = np.random.default_rng(seed)
        self.inits: list = []
        self.nodes: list = []
        self.opset = opset
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def init(self, name: str, value, dtype=np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        name = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_y"], name=name, **attrs))
        return f"{name}_y"

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1,
             bias: bool = True) -> str:
        name = self.name("conv")
        w = self.rng.normal(0, np.sqrt(2.0 / (cin // group * k * k)), (cout, cin // group, k, k))
        ins = [x, self.init(f"{name}.weight", w)]
        if bias:
            ins.append(self.init(f"{name}.bias", self.rng.normal(0, 0.1, cout)))
        self.nodes.append(helper.make_node("Conv", ins, [f"{name}_y"], name=name, kernel_shape=[k, k],
                                           pads=[k // 2] * 4, strides=[stride, stride], group=group))
        return f"{name}_y"

    def relu6(self, x: str) -> str:
        """ReLU6 as torch.onnx.export writes it: Clip with min/max inputs (opset >= 11)."""
        if self.opset < 11:
            return self.node("Clip", [x], min=0.0, max=6.0)
        lo = self.init(self.name("clip_min"), np.float32(0))
        hi = self.init(self.name("clip_max"), np.float32(6))
        return self.node("Clip", [x, lo, hi])

    def head(self, x: str, c: int, op: str = "Gemm") -> str:
        """GlobalAveragePool -> Flatten -> Gemm (or MatMul + Add) to the logits."""
        x = self.node("GlobalAveragePool", [x])
        x = self.node("Flatten", [x])
        return self.fc(x, c, op)

    def fc(self, x: str, c: int, op: str = "Gemm", out: str = "logits") -> str:
        name = self.name("fc")
        w = self.rng.normal(0, 0.5, (CLASSES, c))
        b = self.init(f"{name}.bias", self.rng.normal(0, 0.1, CLASSES))
        if op == "Gemm":
            self.nodes.append(helper.make_node("Gemm", [x, self.init(f"{name}.weight", w), b], [out],
                                               name=name, transB=1))
        elif op == "GemmT":
            self.nodes.append(helper.make_node("Gemm", [x, self.init(f"{name}.weight", w.T), b], [out],
                                               name=name))
        else:   # MatMul with a (cin, cout) weight, bias as a separate Add
            self.nodes.append(helper.make_node("MatMul", [x, self.init(f"{name}.weight", w.T)],
                                               [f"{name}_mm"], name=name))
            self.nodes.append(helper.make_node("Add", [f"{name}_mm", b], [out], name=f"{name}_bias"))
        return out

    def model(self, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", CIN, HW, HW])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def clip_relu6() -> onnx.ModelProto:
    """MobileNetV2: Conv -> Clip(0, 6) -> depthwise Conv -> Clip -> 1x1 Conv (Clip before Q)."""
    b = _Builder(1)
    x = b.relu6(b.conv("input", CIN, 8))
    x = b.relu6(b.conv(x, 8, 8, group=8))
    x = b.conv(x, 8, 8, k=1)
    b.head(x, 8)
    return b.model("clip_relu6")


def clip_relu6_opset9() -> onnx.ModelProto:
    """ReLU6 as an old exporter writes it: Clip with min/max attributes (opset < 11)."""
    b = _Builder(2, opset=9)
    x = b.relu6(b.conv("input", CIN, 8))
    x = b.relu6(b.conv(x, 8, 8, k=1))
    b.head(x, 8)
    return b.model("clip_relu6_opset9")


def clip_narrow() -> onnx.ModelProto:
    """A Clip whose range is narrower than the next layer's quantization range (not redundant)."""
    b = _Builder(3)
    x = b.conv("input", CIN, 8)
    lo, hi = b.init("clip_lo", np.float32(-0.5)), b.init("clip_hi", np.float32(0.5))
    x = b.node("Clip", [x, lo, hi])
    x = b.relu6(b.conv(x, 8, 8))
    b.head(x, 8)
    return b.model("clip_narrow")


def relu() -> onnx.ModelProto:
    """Conv -> Relu -> Conv (Relu before Q), and a Relu output used twice (Q -> DQ -> Q -> DQ)."""
    b = _Builder(4)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    y = b.node("Relu", [b.conv(x, 8, 8)])
    z = b.conv(y, 8, 8, k=1)
    s = b.node("Add", [y, z])          # y feeds a layer and an Add: float-out edge then the layer's Q
    b.head(s, 8)
    return b.model("relu")


def maxpool() -> onnx.ModelProto:
    """DQ -> MaxPool -> Q (ORT drops the Q/DQ when the scales match)."""
    b = _Builder(5)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Relu", [b.conv(x, 8, 8)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    x = b.conv(x, 8, 8, k=1)
    b.head(x, 8)
    return b.model("maxpool")


def averagepool() -> onnx.ModelProto:
    """DQ -> AveragePool -> Q and DQ -> GlobalAveragePool -> (Flatten) -> Q (QLinearAveragePool)."""
    b = _Builder(6)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    x = b.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.conv(x, 8, 8)
    b.head(x, 8)
    return b.model("averagepool")


def residual_add() -> onnx.ModelProto:
    """MobileNetV2 inverted residual: DQ -> Add <- DQ -> Q (QLinearAdd)."""
    b = _Builder(7)
    x = b.conv("input", CIN, 8)
    y = b.relu6(b.conv(x, 8, 16, k=1))
    y = b.relu6(b.conv(y, 16, 16, group=16))
    y = b.conv(y, 16, 8, k=1)
    s = b.node("Add", [x, y])
    t = b.relu6(b.conv(s, 8, 8, k=1))
    b.head(t, 8)
    return b.model("residual_add")


def concat() -> onnx.ModelProto:
    """Two branches -> Concat -> Conv (QLinearConcat)."""
    b = _Builder(8)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    p = b.node("Relu", [b.conv(x, 8, 4, k=1)])
    q = b.node("Relu", [b.conv(x, 8, 4)])
    c = b.node("Concat", [p, q], axis=1)
    y = b.conv(c, 8, 8, k=1)
    b.head(y, 8)
    return b.model("concat")


def reshape_ops() -> onnx.ModelProto:
    """DQ -> Reshape / Transpose / Squeeze / Unsqueeze / Flatten -> Q before the classifier."""
    b = _Builder(9)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    x = b.conv(x, 8, 8, stride=2)                                   # (N, 8, 4, 4) signed
    x = b.node("Transpose", [x], perm=[0, 1, 3, 2])
    shape = b.init("shape", np.array([0, 8, 1, 16]), np.int64)
    x = b.node("Reshape", [x, shape])                               # (N, 8, 1, 16)
    x = b.node("Squeeze", [x, b.init("axes2", np.array([2]), np.int64)])        # (N, 8, 16)
    x = b.node("Unsqueeze", [x, b.init("axes3", np.array([3]), np.int64)])      # (N, 8, 16, 1)
    x = b.node("Flatten", [x])                                      # (N, 128)
    b.fc(x, 128)
    return b.model("reshape_ops")


def gap_squeeze_matmul() -> onnx.ModelProto:
    """GlobalAveragePool -> Squeeze -> MatMul (+ Add): DQ -> MatMul with per-channel int4 weights."""
    b = _Builder(10)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Squeeze", [x, b.init("axes23", np.array([2, 3]), np.int64)])
    b.fc(x, 8, op="MatMul")
    return b.model("gap_squeeze_matmul")


def gemm_transposed() -> onnx.ModelProto:
    """Gemm with transB=0 (weight (cin, cout)), fed by a float-out Relu; the logits are a layer output."""
    b = _Builder(11)
    x = b.node("Relu", [b.conv("input", CIN, 8)])
    b.head(x, 8, op="GemmT")
    return b.model("gemm_transposed")


def sigmoid_mul() -> onnx.ModelProto:
    """Squeeze-excitation: DQ -> Sigmoid -> Q, HardSwish, DQ -> Mul <- Sigmoid (QLinearSigmoid/Mul)."""
    b = _Builder(12)
    x = b.node("HardSwish", [b.conv("input", CIN, 8)])
    g = b.node("GlobalAveragePool", [x])
    g = b.node("Relu", [b.conv(g, 8, 4, k=1)])
    g = b.node("Sigmoid", [b.conv(g, 4, 8, k=1)])
    s = b.node("Mul", [x, g])
    y = b.node("Sigmoid", [b.conv(s, 8, 8, k=1)])
    y = b.conv(y, 8, 8, k=1)
    b.head(y, 8)
    return b.model("sigmoid_mul")


def no_bias_strided() -> onnx.ModelProto:
    """Bias-free and strided convolutions, a depthwise stack, Relu straight into the next layer."""
    b = _Builder(13)
    x = b.node("Relu", [b.conv("input", CIN, 8, bias=False, stride=2)])
    x = b.node("Relu", [b.conv(x, 8, 8, group=8, bias=False)])
    x = b.node("Relu", [b.conv(x, 8, 8, group=8)])
    x = b.conv(x, 8, 8, k=1, bias=False)
    b.head(x, 8)
    return b.model("no_bias_strided")


PATTERNS: dict[str, Callable[[], onnx.ModelProto]] = {
    f.__name__: f for f in (clip_relu6, clip_relu6_opset9, clip_narrow, relu, maxpool, averagepool,
                            residual_add, concat, reshape_ops, gap_squeeze_matmul, gemm_transposed,
                            sigmoid_mul, no_bias_strided)
}
