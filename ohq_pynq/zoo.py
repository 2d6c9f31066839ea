"""ResNet-18 and MobileNetV3-Small as ONNX graphs with random weights (numpy + onnx.helper, no torch).

The layouts match torchvision's architectures and the node structure (names, ops, attributes) that
``torch.onnx.export`` with the TorchScript exporter (opset 17) writes for them: with BatchNorm kept
(``BatchNormalization`` nodes after bias-free convs) or folded (convs with bias). Weights are
He-initialised (fan-out, as torchvision), BatchNorm statistics random but plausible (positive
variances); the kept and folded variants of one seed compute the same function. Input ``input`` is
float32 [N, 3, R, R] with a symbolic batch dim ``N``, output ``logits`` is [N, num_classes], as for
the bundled reference models. Used by tests and benchmarks to exercise 224x224-scale layer shapes;
the accuracy of these random nets is meaningless.

Checked against torchvision 0.28's models exported by torch 2.13: identical node names, op types,
attributes and wiring. Differences: folded convs' initializers are named "<module>.weight/.bias"
(the exporter writes "onnx::Conv_<n>"), and no initializer is deduplicated (the exporter shares
equal tensors through Identity nodes).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ConfigError

OPSET = 17          # what the TorchScript exporter is asked for
IR_VERSION = 8      # what the TorchScript exporter writes for opset 17


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never 10 % below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class _Builder:
    """Accumulates nodes and initializers of one graph; tensor names follow the TorchScript exporter."""

    def __init__(self, batchnorm: str, seed: int, bn_eps: float, bn_momentum: float):
        if batchnorm not in ("kept", "folded"):
            raise ConfigError(f"batchnorm must be 'kept' or 'folded', not {batchnorm!r}.")
        self.kept = batchnorm == "kept"
        self.rng = np.random.default_rng(seed)
        self.eps = bn_eps
        self.momentum = 1.0 - bn_momentum    # ONNX momentum = 1 - PyTorch momentum
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, scope: str, inputs: list[str], **attrs) -> str:
        """Add node ``{scope}/{op}`` and return its output name ``{scope}/{op}_output_0``."""
        name = f"{scope}/{op}"
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv_bn(self, x: str, conv: str, bn: str | None, cin: int, cout: int, k: int,
                stride: int = 1, groups: int = 1) -> str:
        """Conv (kxk, pad (k-1)//2, no bias) + BatchNorm ``bn`` kept or folded into the conv.

        ``conv`` and ``bn`` are the PyTorch module paths ("layer1.0.conv1"), from which the node
        scopes ("/layer1/layer1.0/conv1") and initializer names ("layer1.0.conv1.weight") derive.
        With ``bn=None`` the conv is a plain conv with bias (e.g. SE's fc1/fc2).
        """
        fan_out = cout * k * k // groups
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_out), (cout, cin // groups, k, k))
        p = (k - 1) // 2
        attrs = dict(dilations=[1, 1], group=groups, kernel_shape=[k, k], pads=[p, p, p, p],
                     strides=[stride, stride])
        if bn is None:
            b = self.rng.normal(0.0, 0.01, cout)
            ins = [x, self._init(f"{conv}.weight", w), self._init(f"{conv}.bias", b)]
            return self.node("Conv", _scope(conv), ins, **attrs)
        gamma = self.rng.uniform(0.5, 1.0, cout)
        beta = self.rng.normal(0.0, 0.1, cout)
        mean = self.rng.normal(0.0, 0.1, cout)
        var = self.rng.uniform(0.5, 2.0, cout)
        if self.kept:
            y = self.node("Conv", _scope(conv), [x, self._init(f"{conv}.weight", w)], **attrs)
            ins = [y] + [self._init(f"{bn}.{n}", a) for n, a in
                         (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
            return self.node("BatchNormalization", _scope(bn), ins, epsilon=self.eps,
                             momentum=self.momentum, training_mode=0)
        scale = gamma / np.sqrt(var + self.eps)
        ins = [x, self._init(f"{conv}.weight", w * scale[:, None, None, None]),
               self._init(f"{conv}.bias", beta - mean * scale)]
        return self.node("Conv", _scope(conv), ins, **attrs)

    def gemm(self, x: str, module: str, cin: int, cout: int) -> str:
        """Linear layer (torchvision init: weight N(0, 0.01), bias 0) as Gemm with transB=1."""
        w = self.rng.normal(0.0, 0.01, (cout, cin))
        ins = [x, self._init(f"{module}.weight", w), self._init(f"{module}.bias", np.zeros(cout))]
        return self.node("Gemm", _scope(module), ins, alpha=1.0, beta=1.0, transB=1)

    def model(self, resolution: int, num_classes: int, doc: str) -> onnx.ModelProto:
        """Wrap the nodes into a model; the last node's output becomes ``logits``."""
        self.nodes[-1].output[0] = "logits"
        graph = helper.make_graph(
            self.nodes, "main_graph",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, resolution, resolution])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
            initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="ohq_pynq.zoo", doc_string=doc)
        model.ir_version = IR_VERSION
        return model


def _scope(module: str) -> str:
    """PyTorch module path -> TorchScript exporter scope: "layer1.0.conv1" -> "/layer1/layer1.0/conv1"."""
    parts = module.split(".")
    # Scopes repeat the dotted path at numbered children: features.1.block.0.0 ->
    # /features/features.1/block/block.0/block.0.0 ; layer1.0.conv1 -> /layer1/layer1.0/conv1
    scopes, stack = [], []
    for part in parts:
        if part.isdigit() and stack:
            stack[-1] = stack[-1] + "." + part
            scopes.append(stack[-1])
        else:
            stack.append(part)
            scopes.append(part)
    return "/" + "/".join(scopes)


def _check_args(resolution: int, num_classes: int, minimum: int) -> None:
    if not isinstance(resolution, (int, np.integer)) or resolution < minimum:
        raise ConfigError(f"resolution must be an integer of at least {minimum} pixels, not {resolution!r}.")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, not {num_classes!r}.")


def resnet18(resolution: int = 224, num_classes: int = 1000, batchnorm: str = "kept",
             seed: int = 0) -> onnx.ModelProto:
    """torchvision ResNet-18 (11.69 M parameters at 1000 classes) for [N, 3, R, R] input."""
    _check_args(resolution, num_classes, 32)
    b = _Builder(batchnorm, seed, bn_eps=1e-5, bn_momentum=0.1)
    x = b.conv_bn("input", "conv1", "bn1", 3, 64, 7, stride=2)
    x = b.node("Relu", "/relu", [x])
    x = b.node("MaxPool", "/maxpool", [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[3, 3],
               pads=[1, 1, 1, 1], strides=[2, 2])
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for i in range(2):
            stride = 2 if (stage > 1 and i == 0) else 1
            m = f"layer{stage}.{i}"
            y = b.conv_bn(x, f"{m}.conv1", f"{m}.bn1", cin, cout, 3, stride)
            y = b.node("Relu", f"{_scope(m)}/relu", [y])
            y = b.conv_bn(y, f"{m}.conv2", f"{m}.bn2", cout, cout, 3)
            identity = x
            if stride != 1 or cin != cout:
                identity = b.conv_bn(x, f"{m}.downsample.0", f"{m}.downsample.1", cin, cout, 1, stride)
            y = b.node("Add", _scope(m), [y, identity])
            x = b.node("Relu", f"{_scope(m)}/relu_1", [y])
            cin = cout
    x = b.node("GlobalAveragePool", "/avgpool", [x])
    x = b.node("Flatten", "", [x], axis=1)
    b.gemm(x, "fc", 512, num_classes)
    return b.model(resolution, num_classes,
                   f"ResNet-18 layout, random weights (seed {seed}), BatchNorm {batchnorm}")


# torchvision mobilenet_v3_small: (cin, kernel, expanded, cout, SE, activation, stride)
MBV3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]


def mobilenet_v3_small(resolution: int = 224, num_classes: int = 1000, batchnorm: str = "kept",
                       seed: int = 0) -> onnx.ModelProto:
    """torchvision MobileNetV3-Small (2.54 M parameters at 1000 classes) for [N, 3, R, R] input."""
    _check_args(resolution, num_classes, 32)
    b = _Builder(batchnorm, seed, bn_eps=1e-3, bn_momentum=0.01)

    def cba(x, module, cin, cout, k, stride=1, groups=1, act="HS"):
        """torchvision Conv2dNormActivation at ``module``: .0 conv, .1 BN, .2 activation."""
        y = b.conv_bn(x, f"{module}.0", f"{module}.1", cin, cout, k, stride, groups)
        if act is None:
            return y
        op = "HardSwish" if act == "HS" else "Relu"
        return b.node(op, _scope(f"{module}.2"), [y])

    x = cba("input", "features.0", 3, 16, 3, stride=2)
    for i, (cin, k, exp, cout, se, act, stride) in enumerate(MBV3_SMALL, start=1):
        m, j = f"features.{i}.block", 0
        y = x
        if exp != cin:
            y = cba(y, f"{m}.{j}", cin, exp, 1, act=act)
            j += 1
        y = cba(y, f"{m}.{j}", exp, exp, k, stride, groups=exp, act=act)
        j += 1
        if se:
            s, sq = _scope(f"{m}.{j}"), _make_divisible(exp // 4, 8)
            z = b.node("GlobalAveragePool", f"{s}/avgpool", [y])
            z = b.conv_bn(z, f"{m}.{j}.fc1", None, exp, sq, 1)
            z = b.node("Relu", f"{s}/activation", [z])
            z = b.conv_bn(z, f"{m}.{j}.fc2", None, sq, exp, 1)
            z = b.node("HardSigmoid", f"{s}/scale_activation", [z], alpha=1.0 / 6.0)
            y = b.node("Mul", s, [z, y])
            j += 1
        y = cba(y, f"{m}.{j}", exp, cout, 1, act=None)
        if stride == 1 and cin == cout:
            y = b.node("Add", _scope(f"features.{i}"), [y, x])
        x = y
    last = 6 * MBV3_SMALL[-1][3]
    x = cba(x, f"features.{len(MBV3_SMALL) + 1}", MBV3_SMALL[-1][3], last, 1)
    x = b.node("GlobalAveragePool", "/avgpool", [x])
    x = b.node("Flatten", "", [x], axis=1)
    x = b.gemm(x, "classifier.0", last, 1024)
    x = b.node("HardSwish", "/classifier/classifier.1", [x])
    b.gemm(x, "classifier.3", 1024, num_classes)
    return b.model(resolution, num_classes,
                   f"MobileNetV3-Small layout, random weights (seed {seed}), BatchNorm {batchnorm}")


ZOO = {"resnet18": resnet18, "mobilenet_v3_small": mobilenet_v3_small}


def build(name: str, **kwargs) -> onnx.ModelProto:
    """Build a zoo model by name ("resnet18" or "mobilenet_v3_small"); kwargs as the builders."""
    if name not in ZOO:
        raise ConfigError(f"unknown zoo model {name!r}; choose one of {', '.join(ZOO)}.")
    return ZOO[name](**kwargs)
