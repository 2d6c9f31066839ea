"""Mutations of the bundled ONNX models for the robustness fuzz tests (tests/test_robustness_models.py).

``mutate(data, rng, ops)`` applies the named mutation operators (``OPS``) one after another to a
serialized model and returns the mutated bytes (``static_batch`` first gives the fixed-batch form
``torch.onnx.export`` writes by default); structural operators parse the model, change one
thing (a dim, an edge, a type, an opset, a name...) and serialize it again. Every operator is
deterministic given ``rng``.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

HUGE = (1 << 31) - 1


def _model(data: bytes) -> onnx.ModelProto | None:
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except Exception:
        return None
    return m


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))] if len(seq) else None


# ------------------------------------------------------------------------------- byte level
def flip_bytes(data: bytes, rng) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 16))):
        b[int(rng.integers(len(b)))] = int(rng.integers(256))
    return bytes(b)


def truncate(data: bytes, rng) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def garbage(data: bytes, rng) -> bytes:
    return rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()


def splice(data: bytes, rng) -> bytes:
    """Copy a random slice of the file over another place (protobuf-shaped garbage)."""
    n = len(data)
    a, b = sorted(int(v) for v in rng.integers(0, n, 2))
    at = int(rng.integers(0, n))
    return data[:at] + data[a:b] + data[at + (b - a):]


# ------------------------------------------------------------------------------- structural
def init_dims(m, rng):
    t = _pick(rng, m.graph.initializer)
    if t is None:
        return
    kind = int(rng.integers(5))
    dims = list(t.dims)
    if kind == 0:
        dims = [HUGE] * max(1, len(dims))
    elif kind == 1 and dims:
        dims[int(rng.integers(len(dims)))] = 0
    elif kind == 2:
        dims = dims + [int(rng.integers(1, 4))]
    elif kind == 3 and dims:
        dims = dims[:-1]
    else:
        dims = [int(d) * int(rng.integers(2, 1 << 20)) for d in dims] or [1 << 30]
    del t.dims[:]
    t.dims.extend(dims)


def input_dims(m, rng):
    inp = m.graph.input[0]
    shape = inp.type.tensor_type.shape
    kind = int(rng.integers(6))
    dims = shape.dim
    if kind == 0 and len(dims) > 1:
        dims[int(rng.integers(1, len(dims)))].dim_value = 0
    elif kind == 1 and len(dims) > 1:
        dims[int(rng.integers(1, len(dims)))].dim_value = HUGE
    elif kind == 2 and len(dims) > 1:
        del dims[-1]                                # N,C,H: non-4-D conv input
    elif kind == 3:
        dims.add().dim_value = 3                    # 5-D
    elif kind == 4 and len(dims) > 1:
        d = dims[int(rng.integers(1, len(dims)))]
        d.dim_param = "dyn"
    else:
        inp.type.tensor_type.elem_type = int(_pick(rng, [TensorProto.INT64, TensorProto.STRING,
                                                         TensorProto.DOUBLE, TensorProto.UINT8]))


def cycle(m, rng):
    nodes = m.graph.node
    if len(nodes) < 2:
        return
    i = int(rng.integers(0, len(nodes) - 1))
    j = int(rng.integers(i, len(nodes)))
    if nodes[i].input:
        k = int(rng.integers(len(nodes[i].input)))
        nodes[i].input[k] = nodes[j].output[0]     # j >= i: an edge backwards (or a self loop)


def drop_initializer(m, rng):
    if m.graph.initializer:
        del m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]


def mistype_initializer(m, rng):
    t = _pick(rng, m.graph.initializer)
    if t is not None:
        t.data_type = int(_pick(rng, [TensorProto.INT64, TensorProto.DOUBLE, TensorProto.STRING,
                                      TensorProto.UINT8, TensorProto.FLOAT16, TensorProto.BOOL, 0, 99]))


def truncate_raw_data(m, rng):
    t = _pick(rng, [t for t in m.graph.initializer if t.raw_data])
    if t is not None:
        t.raw_data = t.raw_data[:int(rng.integers(0, len(t.raw_data)))]


def opset(m, rng):
    kind = int(rng.integers(4))
    if kind == 0:
        m.opset_import[0].version = int(_pick(rng, [1, 5, 6, 9]))
    elif kind == 1:
        m.opset_import[0].version = int(_pick(rng, [99, 10000, HUGE]))
    elif kind == 2:
        del m.opset_import[:]
    else:
        m.ir_version = int(_pick(rng, [1, 2, 3, 99]))


def duplicate_names(m, rng):
    kind = int(rng.integers(4))
    nodes = m.graph.node
    if kind == 0 and len(nodes) > 1:
        a, b = (int(v) for v in rng.choice(len(nodes), 2, replace=False))
        nodes[a].name = nodes[b].name
    elif kind == 1 and len(nodes) > 1:
        a, b = (int(v) for v in rng.choice(len(nodes), 2, replace=False))
        nodes[a].output[0] = nodes[b].output[0]     # two producers of one tensor
    elif kind == 2 and m.graph.initializer:
        t = _pick(rng, m.graph.initializer)
        dup = m.graph.initializer.add()
        dup.CopyFrom(t)
    else:
        dup = m.graph.input.add()
        dup.CopyFrom(m.graph.input[0])


def non4d_conv(m, rng):
    """Make a Conv's input or weight non-4-D."""
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    node = _pick(rng, convs)
    if node is None:
        return
    if rng.integers(2):
        flat = node.input[0] + "_fuzz_flat"
        idx = list(m.graph.node).index(node)
        m.graph.node.insert(idx, helper.make_node("Flatten", [node.input[0]], [flat],
                                                  name="fuzz_flatten"))
        node.input[0] = flat
    else:
        w = next((t for t in m.graph.initializer if t.name == node.input[1]), None)
        if w is not None and len(w.dims) == 4:
            dims = list(w.dims)
            del w.dims[:]
            w.dims.extend([dims[0], dims[1] * dims[2], dims[3]] if rng.integers(2)
                          else dims + [1])


def attributes(m, rng):
    node = _pick(rng, [n for n in m.graph.node if n.attribute])
    if node is None:
        return
    a = _pick(rng, node.attribute)
    bad = int(_pick(rng, [0, -1, -7, 3, HUGE, 1 << 40]))
    if a.type == onnx.AttributeProto.INTS:
        if a.ints and rng.integers(2):
            a.ints[int(rng.integers(len(a.ints)))] = bad
        else:
            del a.ints[:]
            a.ints.extend([bad] * int(rng.integers(0, 6)))
    elif a.type == onnx.AttributeProto.INT:
        a.i = bad
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = float(_pick(rng, [float("nan"), float("inf"), -1.0, 0.0, 1e30]))
    else:
        a.type = onnx.AttributeProto.INT


def drop_node(m, rng):
    if len(m.graph.node) > 1:
        del m.graph.node[int(rng.integers(len(m.graph.node)))]


def rewire(m, rng):
    """Feed a node from a random other tensor (shape mismatches, dangling edges)."""
    node = _pick(rng, m.graph.node)
    if node is None or not node.input:
        return
    names = [o for n in m.graph.node for o in n.output] + [t.name for t in m.graph.initializer]
    names += ["", "no_such_tensor"]
    node.input[int(rng.integers(len(node.input)))] = _pick(rng, names)


def op_type(m, rng):
    node = _pick(rng, m.graph.node)
    if node is not None:
        node.op_type = _pick(rng, ["Conv", "Gemm", "MatMul", "Relu", "Add", "Reshape", "Concat",
                                   "MaxPool", "Transpose", "Squeeze", "FancyOp"])


def outputs(m, rng):
    kind = int(rng.integers(3))
    if kind == 0:
        del m.graph.output[:]
    elif kind == 1:
        dup = m.graph.output.add()
        dup.CopyFrom(m.graph.output[0])
        dup.name = m.graph.node[0].output[0]
    else:
        m.graph.output[0].name = "nowhere"


def huge_weight_data(m, rng):
    """An initializer whose declared dims match a huge size, with real data missing."""
    t = _pick(rng, m.graph.initializer)
    if t is None:
        return
    del t.dims[:]
    t.dims.extend([1 << 16, 1 << 16])


# ------------------------------------------------------------------------------- static batch
def static_batch(data: bytes, batch: int, reshape: bool = False) -> bytes:
    """The model as ``torch.onnx.export`` writes it from a ``(batch, ...)`` example: dim 0 of the
    input and of every output fixed to ``batch``; with ``reshape`` also every ``Flatten`` spelled as
    a ``Reshape`` to the constant ``[batch, -1]`` (``x.view(x.size(0), -1)`` after constant
    folding), so the batch is baked into the graph itself."""
    m = _model(data)
    if m is None:
        return data
    for vi in list(m.graph.input[:1]) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_value = batch
    del m.graph.value_info[:]
    if reshape:
        for k, node in enumerate(m.graph.node):
            if node.op_type == "Flatten":
                shape = f"{node.name or node.output[0]}_fixed_shape"
                m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([batch, -1], np.int64), shape))
                new = helper.make_node("Reshape", [node.input[0], shape], list(node.output), name=node.name)
                m.graph.node[k].CopyFrom(new)
    return m.SerializeToString()


BYTE_OPS = {"flip_bytes": flip_bytes, "truncate": truncate, "garbage": garbage, "splice": splice}
STRUCT_OPS = {f.__name__: f for f in (init_dims, input_dims, cycle, drop_initializer,
                                      mistype_initializer, truncate_raw_data, opset, duplicate_names,
                                      non4d_conv, attributes, drop_node, rewire, op_type, outputs,
                                      huge_weight_data)}
OPS = {**BYTE_OPS, **STRUCT_OPS}


def mutate(data: bytes, seed: int, ops) -> bytes:
    rng = np.random.default_rng(seed)
    for name in ops:
        if name in BYTE_OPS:
            data = BYTE_OPS[name](data, rng)
            continue
        m = _model(data)
        if m is None or not m.graph.node or not m.graph.input:
            continue
        try:
            STRUCT_OPS[name](m, rng)
        except (IndexError, ValueError, TypeError):
            continue          # the operator does not apply to this (already mutated) model
        data = m.SerializeToString()
    return data
