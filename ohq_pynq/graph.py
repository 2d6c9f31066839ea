"""ONNX model import: the ordered quantizable layers of a CNN and how they connect.

``load_network(model)`` loads the model with :func:`ohq_pynq.onnx_loader.load_model` (checks,
shape inference) and returns a :class:`Network` whose ``layers`` are the quantizable ops (Conv
incl. grouped/depthwise, Gemm, MatMul with a constant weight) in topological order, each
described by a :class:`Layer`. All other ops are kept as they are and executed by the engine (or
onnxruntime). Problems are raised as one :class:`~ohq_pynq.errors.ModelError` naming what to
fix; the input model is never modified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .engine.ops.quantization import dequantize
from .errors import ConfigError, ModelError
from .onnx_loader import load_model_and_batch, node_attributes, real_inputs, tensor_to_array


@dataclass
class Layer:
    """One quantizable layer. Spatial sizes are (height, width); Gemm/MatMul are 1×1 convs on 1×1."""

    name: str                 # unique node name (generated as "<op>_<index>" when the export left it empty)
    op: str                   # "Conv", "Gemm" or "MatMul"
    index: int                # position among the quantizable layers (topological order)
    input: str                # activation tensor name consumed
    output: str               # tensor name produced
    weight: str               # initializer name of the weight
    bias: str | None          # initializer name of the bias, or None
    cin: int                  # input channels (features for Gemm/MatMul)
    cout: int                 # output channels (features)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]      # top, left, bottom, right (pixels)
    dilation: tuple[int, int]
    groups: int
    in_hw: tuple[int, int]    # input feature-map height, width (pixels)
    out_hw: tuple[int, int]   # output feature-map height, width (pixels)
    macs: int                 # multiply-accumulates per image
    params: int               # weight (+ bias) element count
    weight_transposed: bool = False   # Gemm transB=0 / MatMul: weight stored as (cin, cout)
    producers: list[str] = field(default_factory=list)  # quantizable layers whose output reaches this input
    consumers: list[str] = field(default_factory=list)  # quantizable layers this output reaches

    @property
    def depthwise(self) -> bool:
        return self.op == "Conv" and self.groups > 1 and self.groups == self.cin == self.cout

    def weight_bytes(self, bits: int) -> int:
        """Bytes of the quantized weights at ``bits`` (packed) plus int32 bias per output channel."""
        weights = self.cout * (self.cin // self.groups) * self.kernel[0] * self.kernel[1]
        return (weights * bits + 7) // 8 + 4 * self.cout


QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
CACHED_CONSTANT_ELEMENTS = 4096   # Network.constant caches initializers up to this many elements
# Ops through which a non-negative tensor stays non-negative (used to find unsigned activations).
SIGN_PRESERVING_OPS = frozenset({
    "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape",
    "Identity", "Squeeze", "Unsqueeze", "Transpose",
})


class Network:
    """A checked, shape-inferred ONNX model and its ordered quantizable layers.

    ``model`` is a private copy (the caller's model is never modified). ``input_shape`` is the
    per-image shape (C, H, W) or (features,), without the batch dimension.
    """

    def __init__(self, model, layers: list[Layer], input_name: str, input_shape: tuple[int, ...],
                 output_name: str, source: str):
        self.model = model
        self.layers = layers
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self.output_name = output_name
        self.source = source
        self.input_batch: int | None = None   # batch size the file fixed (None: symbolic); set by load_network
        self._by_name = {layer.name: layer for layer in layers}
        self._initializers = {t.name: t for t in model.graph.initializer}
        self._constant_nodes = {n.output[0]: n for n in model.graph.node
                                if n.op_type in ("Constant", "DequantizeLinear")}
        self._cache: dict[str, np.ndarray] = {}

    # -- lookup ---------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(f"no quantizable layer named {name!r} in {self.source}") from None

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def is_constant(self, tensor: str) -> bool:
        if tensor in self._initializers:
            return True
        node = self._constant_nodes.get(tensor)
        return node is not None and (node.op_type == "Constant"
                                     or all(self.is_constant(i) for i in node.input if i))

    def constant(self, tensor: str) -> np.ndarray:
        """The value of an initializer, Constant output or DequantizeLinear of constants (cached
        when small: a weight is decoded from the model on each call, so it is held once, in the
        model, rather than twice)."""
        if tensor not in self._cache:
            if tensor in self._initializers:
                value = tensor_to_array(self._initializers[tensor])
                if value.size > CACHED_CONSTANT_ELEMENTS:
                    return value
            else:
                node = self._constant_nodes[tensor]
                if node.op_type == "Constant":
                    value = tensor_to_array(node_attributes(node)["value"])
                else:
                    ins = [self.constant(i) if i else None for i in node.input]
                    value = dequantize(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                                       int(node_attributes(node).get("axis", 1)))
            self._cache[tensor] = value
        return self._cache[tensor]

    def weight(self, layer: Layer | str) -> np.ndarray:
        """Float weight of a layer in conv layout (cout, cin/groups, kh, kw); FC as (cout, cin, 1, 1)."""
        layer = self.layer(layer) if isinstance(layer, str) else layer
        w = np.asarray(self.constant(layer.weight), dtype=np.float32)
        if layer.op == "Conv":
            return w
        if layer.weight_transposed:
            w = w.T
        return w.reshape(layer.cout, layer.cin, 1, 1)

    def bias(self, layer: Layer | str) -> np.ndarray:
        """Float bias (cout,) of a layer; zeros when the layer has none."""
        layer = self.layer(layer) if isinstance(layer, str) else layer
        if layer.bias is None:
            return np.zeros(layer.cout, dtype=np.float32)
        return np.asarray(self.constant(layer.bias), dtype=np.float32).reshape(layer.cout)

    # -- summaries ------------------------------------------------------------------------
    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def batchnorm_nodes(self) -> list:
        return [n for n in self.model.graph.node if n.op_type == "BatchNormalization"]

    def describe(self) -> dict:
        """A JSON-ready summary: input, output, totals and one row per layer."""
        return {
            "source": self.source,
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "output": self.output_name,
            "batchnorm": len(self.batchnorm_nodes),
            "macs": self.total_macs,
            "params": self.total_params,
            "layers": [_layer_row(layer) for layer in self.layers],
        }


def _layer_row(layer: Layer) -> dict:
    return {
        "name": layer.name, "op": layer.op, "cin": layer.cin, "cout": layer.cout,
        "kernel": list(layer.kernel), "stride": list(layer.stride), "pads": list(layer.pads),
        "groups": layer.groups, "in_hw": list(layer.in_hw), "out_hw": list(layer.out_hw),
        "macs": layer.macs, "params": layer.params,
        "producers": layer.producers, "consumers": layer.consumers,
    }


# ----------------------------------------------------------------------------------------------
# Building the layer table
# ----------------------------------------------------------------------------------------------
def load_network(model, input_shape=None, take: bool = False) -> Network:
    """Load ``model`` (path or ``ModelProto``) and describe its quantizable layers. ``take``: the
    ``ModelProto`` is handed over (rewritten in place, not copied)."""
    proto, batch = load_model_and_batch(model, input_shape, take=take)
    source = str(model) if not hasattr(model, "graph") else (model.graph.name or "<ModelProto>")
    net = _build_network(proto, source)
    net.input_batch = batch
    return net


def _shape_map(proto) -> dict[str, list]:
    """Tensor name → list of dims (int, or None where symbolic/unknown)."""
    shapes = {}
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in proto.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _build_network(proto, source: str) -> Network:
    graph = proto.graph
    shapes = _shape_map(proto)
    inp = real_inputs(proto)[0]
    input_shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)[1:]
    if len(graph.output) != 1:
        raise ModelError(f"{source} has {len(graph.output)} outputs; ohq-pynq needs one (the logits)")
    constants = {t.name for t in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    producer = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node

    # A DequantizeLinear of constants (a QDQ model's weights) is a constant too.
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in constants for i in node.input if i):
            constants.add(node.output[0])

    def resolve_constant(tensor: str) -> str | None:
        """Follow Identity nodes back to a constant tensor; None if computed at run time."""
        seen = 0
        while tensor not in constants:
            node = producer.get(tensor)
            if node is None or node.op_type != "Identity" or seen > 16:
                return None
            tensor, seen = node.input[0], seen + 1
        return tensor

    names_used: set[str] = set()
    layers: list[Layer] = []
    layer_of_node: dict[int, Layer] = {}
    for idx, node in enumerate(graph.node):
        if node.op_type not in QUANTIZABLE_OPS:
            continue
        if node.op_type == "MatMul":
            weight = resolve_constant(node.input[1])
            if weight is None or len(shapes.get(weight, [])) != 2:
                continue  # activation x activation MatMul: executed in float, not quantized
        else:
            weight = resolve_constant(node.input[1])
            if weight is None:
                raise ModelError(f"{source}: the weight of {node.op_type} {node.name or '#' + str(idx)!r} "
                                 f"(input {node.input[1]!r}) is not a constant; ohq-pynq quantizes "
                                 f"only layers with constant weights")
        name = node.name or f"{node.op_type}_{idx}"
        base, k = name, 1
        while name in names_used:
            name, k = f"{base}_{k}", k + 1
        names_used.add(name)
        layer = _describe_layer(node, name, len(layers), weight, resolve_constant, shapes, source)
        layers.append(layer)
        layer_of_node[id(node)] = layer

    _link_layers(graph, layers, layer_of_node, producer, constants)
    return Network(proto, layers, inp.name, input_shape, graph.output[0].name, source)


def _describe_layer(node, name, index, weight, resolve_constant, shapes, source) -> Layer:
    a = node_attributes(node)
    wshape = shapes.get(weight)
    x_shape = shapes.get(node.input[0]) or []
    y_shape = shapes.get(node.output[0]) or []
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = resolve_constant(node.input[2])
        if bias is None:
            raise ModelError(f"{source}: the bias of {node.op_type} {name!r} is not a constant")
    if node.op_type == "Conv":
        if wshape is None or len(wshape) != 4:
            raise ModelError(f"{source}: Conv {name!r} is not 2-D (weight shape {wshape}); "
                             f"only 2-D convolutions are supported")
        if len(x_shape) != 4:
            raise ModelError(f"{source}: Conv {name!r} input has shape {x_shape}, expected N,C,H,W")
        cout, cin_g, kh, kw = (int(d) for d in wshape)
        groups = int(a.get("group", 1))
        stride = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        in_hw = (int(x_shape[2] or 0), int(x_shape[3] or 0))
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for i in range(2):
                out = -(-in_hw[i] // stride[i])
                total = max(0, (out - 1) * stride[i] + (dil[i] * (wshape[2 + i] - 1) + 1) - in_hw[i])
                pads.append((total // 2, total - total // 2) if auto_pad == "SAME_UPPER"
                            else (total - total // 2, total // 2))
            pad4 = (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
        elif auto_pad == "VALID":
            pad4 = (0, 0, 0, 0)
        else:
            p = tuple(int(v) for v in a.get("pads", (0, 0, 0, 0)))
            pad4 = (p[0], p[1], p[2], p[3])
        if len(y_shape) == 4 and y_shape[2] and y_shape[3]:
            out_hw = (int(y_shape[2]), int(y_shape[3]))
        else:
            out_hw = tuple((in_hw[i] + pad4[i] + pad4[i + 2] - dil[i] * ((kh, kw)[i] - 1) - 1)
                           // stride[i] + 1 for i in range(2))
        cin = cin_g * groups
        macs = out_hw[0] * out_hw[1] * cout * cin_g * kh * kw
        params = math.prod(wshape) + (cout if bias else 0)
        return Layer(name, "Conv", index, node.input[0], node.output[0], weight, bias, cin, cout,
                     (kh, kw), stride, pad4, dil, groups, in_hw, out_hw, macs, params)
    # Gemm / MatMul: a fully-connected layer, i.e. a 1x1 conv on a 1x1 map.
    if wshape is None or len(wshape) != 2:
        raise ModelError(f"{source}: {node.op_type} {name!r} weight has shape {wshape}, expected 2-D")
    transposed = True
    if node.op_type == "Gemm":
        if int(a.get("transA", 0)):
            raise ModelError(f"{source}: Gemm {name!r} uses transA=1, which is not supported")
        if float(a.get("alpha", 1.0)) != 1.0 or (bias and float(a.get("beta", 1.0)) != 1.0):
            raise ModelError(f"{source}: Gemm {name!r} has alpha/beta != 1, which is not supported")
        transposed = not int(a.get("transB", 0))
    cin, cout = (int(wshape[0]), int(wshape[1])) if transposed else (int(wshape[1]), int(wshape[0]))
    if bias is not None and math.prod(shapes.get(bias) or [0]) != cout:
        raise ModelError(f"{source}: {node.op_type} {name!r} bias has shape {shapes.get(bias)}, "
                         f"expected ({cout},)")
    rows = 1
    for d in x_shape[1:-1]:
        rows *= int(d or 1)
    params = cin * cout + (cout if bias else 0)
    return Layer(name, node.op_type, index, node.input[0], node.output[0], weight, bias, cin, cout,
                 (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, (1, 1), (1, 1), rows * cin * cout, params,
                 weight_transposed=transposed)


def _link_layers(graph, layers, layer_of_node, producer, constants) -> None:
    """Fill producers/consumers: quantizable layers connected through non-quantizable ops."""
    by_output = {layer.output: layer for layer in layers}
    for layer in layers:
        found: list[str] = []
        stack, seen = [layer.input], set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in constants:
                continue
            seen.add(tensor)
            if tensor in by_output:
                if by_output[tensor].name not in found:
                    found.append(by_output[tensor].name)
                continue
            node = producer.get(tensor)
            if node is not None:
                stack.extend(i for i in node.input if i)
        layer.producers = sorted(found, key=lambda n: next(x.index for x in layers if x.name == n))
    index = {layer.name: layer for layer in layers}
    for layer in layers:
        for p in layer.producers:
            index[p].consumers.append(layer.name)
