"""Import normalisation: the rewrites that turn the ONNX files users bring into the graph form the
layer table, the engine and the quantizer expect. numpy (and onnx) only, so it runs on armv7.

:func:`normalize` applies, in order:

1. :func:`convert_opset`: opsets 7-12 are converted to :data:`TARGET_OPSET` (13) with
   ``onnx.version_converter``; 13 and newer are read as they are.
2. The image input's batch dimension, if the export fixed it (``torch.onnx.export`` with a
   ``(1, 3, 224, 224)`` example), becomes symbolic (graph input and output dim 0).
3. :func:`fold_constants`: nodes whose inputs are all constant (ConstantOfShape weights,
   Constant nodes, Shape of statically known dims and the arithmetic on it) become initializers,
   computed by the engine's own op implementations. Quantize/DequantizeLinear are kept (a QDQ
   model's weights stay recognisable). The batch is symbolic by now, so it is not baked in.
4. :func:`sum_to_add` then :func:`drop_noops`: ``Sum`` becomes a chain of ``Add``; Identity and
   inference Dropout are removed (tensor names of the graph outputs are kept).
5. Reshape shape constants that hard-code the fixed batch on batch-carrying tensors, and
   axis-less Squeezes that would drop it, are rewritten (steps 2, 3 and 5 are
   :func:`free_batch`).

Every function works on the ``ModelProto`` it is given (callers pass a private copy) and returns
it; :func:`free_batch` copies unless ``inplace``. A final Softmax / LogSoftmax stays in the graph:
it is not a quantizable layer and runs on the ARM in float.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .engine.ops import OPS, Node
from .errors import ModelError
from .onnx_loader import node_attributes, tensor_to_array
from .transforms import drop_unused_initializers

# Default-domain opset older models are converted to: the QDQ export's lowest opset
# (quant.QDQ_OPSETS[0]: per-axis DequantizeLinear, Softmax on one axis, Squeeze/Unsqueeze axes
# as inputs). Newer models keep their opset, which the QDQ export keeps where it can.
TARGET_OPSET = 13
MIN_OPSET = 7              # oldest opset accepted (onnx.version_converter's adapters start here)
BATCH_PARAM = "N"          # name of the symbolic batch dimension
NOOP_OPS = ("Identity", "Dropout")
NOT_FOLDED = frozenset({"QuantizeLinear", "DequantizeLinear"})


def normalize(model: onnx.ModelProto, source: str = "<model>") -> tuple[onnx.ModelProto, int | None]:
    """All import rewrites, in place. Returns ``(model, original_batch)``: the batch size the
    file fixed (None when it was already symbolic)."""
    model = convert_opset(model, source)
    batch = _free_input_batch(model)
    fold_constants(model)
    batch_reshapes(model)
    sum_to_add(model)
    drop_noops(model)
    if batch is not None:
        _rewrite_batch_constants(model, batch)
    drop_unused_initializers(model)
    drop_initializer_inputs(model)
    return model, batch


def drop_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove the graph-input entries of initializers (IR 3 files list every weight as an
    input; onnxruntime then treats them as overridable and warns per weight). IR >= 4 only."""
    if model.ir_version < 4:
        return model
    inits = {t.name for t in model.graph.initializer}
    inputs = model.graph.input
    for k in range(len(inputs) - 1, -1, -1):
        if inputs[k].name in inits:
            del inputs[k]
    return model


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain (ai.onnx) opset version (1 when it imports none)."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def convert_opset(model: onnx.ModelProto, source: str = "<model>") -> onnx.ModelProto:
    """``model`` at :data:`TARGET_OPSET` (newer opsets are left as they are), converted in place
    without copying its weights; a one-line :class:`ModelError` when the opset is older than
    :data:`MIN_OPSET` or the conversion fails."""
    opset = default_opset(model)
    if opset >= TARGET_OPSET:
        return model
    if opset < MIN_OPSET:
        raise ModelError(f"{source} uses ONNX opset {opset}; ohq-pynq reads opset {MIN_OPSET} and "
                         f"newer (re-export the model with a newer exporter)")
    from onnx import version_converter

    # Convert a weight-free skeleton (large weights declared as typed inputs: no adapter needs
    # their values) and put its nodes back around the original weights, which are never copied.
    skeleton, large = _skeleton(model)
    try:
        converted = version_converter.convert_version(skeleton, TARGET_OPSET)
    except Exception as err:  # noqa: BLE001 - the converter raises RuntimeError/ValueError/C++ errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{source}: cannot convert ONNX opset {opset} to {TARGET_OPSET}: {first}") from None
    g, cg = model.graph, converted.graph
    del g.node[:]
    g.node.extend(cg.node)
    for k in range(len(g.initializer) - 1, -1, -1):
        if g.initializer[k].name not in large:
            del g.initializer[k]
    g.initializer.extend(cg.initializer)
    declared = {i.name for i in g.input}
    inputs = [i for i in cg.input if i.name not in large or i.name in declared]
    del g.input[:]
    g.input.extend(inputs)
    del g.output[:]
    g.output.extend(cg.output)
    del g.value_info[:]
    del model.opset_import[:]
    model.opset_import.extend(converted.opset_import)
    # the lowest IR version the new opset needs (older onnxruntime releases refuse newer IRs)
    model.ir_version = max(model.ir_version, converted.ir_version,
                           helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
    return model


def weight_free_skeleton(model) -> onnx.ModelProto:
    """``model`` without its large float initializers, which are declared as graph inputs of
    their type and shape instead (what the ONNX checker and shape inference need of them)."""
    return _skeleton(model)[0]


def _skeleton(model) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of ``model`` without its large float initializers (declared as graph inputs of
    their type and shape instead), and the names of those initializers."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    g, sg = model.graph, skeleton.graph
    sg.name = g.name
    sg.node.extend(g.node)
    sg.input.extend(g.input)
    sg.output.extend(g.output)
    declared = {i.name for i in g.input}
    large = set()
    for t in g.initializer:
        numel = int(np.prod(t.dims)) if len(t.dims) else 1
        if numel <= 4096 or t.data_type in (TensorProto.INT64, TensorProto.INT32):
            sg.initializer.append(t)
        else:
            large.add(t.name)
            if t.name not in declared:
                sg.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return skeleton, large


# ----------------------------------------------------------------------------------------------
# Batch dimension
# ----------------------------------------------------------------------------------------------
def free_batch(model: onnx.ModelProto, inplace: bool = False) -> tuple[onnx.ModelProto, int | None]:
    """Make a fixed batch dimension symbolic. Returns ``(model, original_batch)``;
    ``original_batch`` is None (and the graph unchanged) when the batch was not fixed.

    Rewrites the image input's dim 0 and every graph output's dim 0 that equals it to
    :data:`BATCH_PARAM`, folds constant subgraphs (:func:`fold_constants`), and replaces a
    leading ``original_batch`` in Reshape shape constants applied to batch-carrying tensors by
    0 ("copy the input's dim"), axis-less Squeezes by explicit axes. value_info is dropped
    (shape inference re-creates it). ``model`` is copied unless ``inplace``."""
    if not inplace:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    batch = _free_input_batch(model)
    if batch is not None:
        fold_constants(model)
        _rewrite_batch_constants(model, batch)
    return model, batch


def _image_input(model):
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    return real[0] if real else None


def _free_input_batch(model) -> int | None:
    inp = _image_input(model)
    if inp is None or not inp.type.tensor_type.HasField("shape"):
        return None
    dims = inp.type.tensor_type.shape.dim
    if not len(dims) or not dims[0].HasField("dim_value") or dims[0].dim_value <= 0:
        return None
    batch = int(dims[0].dim_value)
    dims[0].dim_param = BATCH_PARAM          # clears dim_value (a oneof)
    for out in model.graph.output:
        t = out.type.tensor_type
        if t.HasField("shape") and len(t.shape.dim) and t.shape.dim[0].HasField("dim_value") \
                and t.shape.dim[0].dim_value == batch:
            t.shape.dim[0].dim_param = BATCH_PARAM
    del model.graph.value_info[:]
    return batch


def infer_shapes(model: onnx.ModelProto, strict: bool = False, store: bool = True) -> onnx.ModelProto:
    """Run ONNX shape inference without copying the weights: on a skeleton of the graph whose
    large float initializers are declared as typed inputs instead (shape inference only needs
    their shapes), then store the inferred value_info and output types into ``model``.
    ``strict`` raises on any inference error (type checks and data propagation on). With
    ``store=False`` ``model`` is left alone; the weight-free inferred graph is returned."""
    skeleton, _ = _skeleton(model)
    skeleton.ir_version = max(model.ir_version, 4)
    skeleton.graph.value_info.extend(model.graph.value_info)
    inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=strict, strict_mode=strict,
                                                 data_prop=True)
    if not store:
        return inferred
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    for out, inf in zip(model.graph.output, inferred.graph.output):
        out.type.CopyFrom(inf.type)
    return model


def _inferred_dims(model) -> dict[str, list]:
    """Tensor name -> dims (int, a dim_param string, or None) from non-strict shape inference
    (stale value_info is dropped first)."""
    del model.graph.value_info[:]
    try:
        inferred = infer_shapes(model, store=False)
    except Exception:  # noqa: BLE001 - shapes are a hint here; strict inference runs later
        inferred = model
    out = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                            for d in t.shape.dim]
    return out


def _rewrite_batch_constants(model, batch: int) -> None:
    """Reshape targets and axis-less Squeezes that hard-code the batch, on batch-carrying
    tensors (dim 0 symbolic after the input was freed)."""
    for _ in range(256):            # each pass frees the Reshapes that follow the freed ones
        if not _rewrite_batch_pass(model, batch):
            break
    del model.graph.value_info[:]


def _rewrite_batch_pass(model, batch: int) -> bool:
    graph = model.graph
    dims = _inferred_dims(model)
    changed = False
    inits = {t.name: t for t in graph.initializer}
    opset = default_opset(model)
    for node in graph.node:
        x_dims = dims.get(node.input[0]) if node.input else None
        if not x_dims or isinstance(x_dims[0], int):
            continue                            # not carrying the (now symbolic) batch
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in inits:
            shape = tensor_to_array(inits[node.input[1]]).astype(np.int64).reshape(-1)
            if not shape.size or shape[0] != batch:
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            new = shape.copy()
            if not allowzero:
                new[0] = 0                      # "copy dim 0 of the input"
            elif -1 not in shape[1:]:
                new[0] = -1
            else:                               # [B, -1] with allowzero: spell the -1 out
                per_image = x_dims[1:]
                known = int(np.prod([v for v in shape[1:] if v != -1]))
                if not all(isinstance(d, int) for d in per_image) or known <= 0 \
                        or int(np.prod(per_image)) % known:
                    continue
                new[1:][shape[1:] == -1] = int(np.prod(per_image)) // known
                new[0] = -1
            name = f"{node.input[1]}.batch_free"
            if name not in inits:
                t = numpy_helper.from_array(new, name)
                graph.initializer.append(t)
                inits[name] = t
            node.input[1] = name
            changed = True
        elif node.op_type == "Squeeze" and not _squeeze_axes_given(node):
            changed = True
            axes = [i for i, d in enumerate(x_dims) if d == 1]
            if opset >= 13:
                name = f"{node.name or node.output[0]}.axes"
                graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), name))
                if len(node.input) < 2:
                    node.input.append(name)
                else:
                    node.input[1] = name
            else:
                node.attribute.append(helper.make_attribute("axes", axes))
    return changed


def _squeeze_axes_given(node) -> bool:
    return (len(node.input) > 1 and bool(node.input[1])) or any(a.name == "axes" for a in node.attribute)


# ----------------------------------------------------------------------------------------------
# Constant folding
# ----------------------------------------------------------------------------------------------
def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node whose inputs are all constant by initializers holding its outputs,
    computed with the engine's op table; Constant nodes become initializers. ``Shape`` of a
    tensor whose dims are static (and Gather/Slice of the static part of a partly symbolic shape)
    folds too. In place; returns ``model``."""
    graph = model.graph
    opset = default_opset(model)
    init_by_name = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}       # small decoded constants (shape vectors, scalars)
    partial: dict[str, list] = {}            # Shape outputs with symbolic entries: dims (int | None)
    dims = None                              # inferred shapes, computed on first Shape node

    def const(name):
        if name in values:
            return values[name]
        if name in init_by_name:
            v = tensor_to_array(init_by_name[name])
            if v.size <= 4096:
                values[name] = v
            return v
        return None

    def is_const(name):
        return not name or name in values or name in init_by_name

    kept, new_inits, folded = [], [], False
    for idx, node in enumerate(graph.node):
        outs = None
        if node.domain in ("", "ai.onnx") and node.op_type in OPS and node.op_type not in NOT_FOLDED \
                and node.op_type != "Shape" and all(is_const(i) for i in node.input) \
                and not _has_subgraph(node):
            outs = _evaluate(node, idx, [const(i) if i else None for i in node.input], opset)
        elif node.op_type == "Shape" and node.domain in ("", "ai.onnx"):
            if dims is None:
                dims = _inferred_dims(model)
            shape = _shape_value(node, dims.get(node.input[0]))
            if shape is not None and all(isinstance(d, int) for d in shape):
                outs = [np.array(shape, dtype=np.int64)]
            elif shape is not None:
                partial[node.output[0]] = shape
        elif node.op_type in ("Gather", "Slice") and node.input[0] in partial \
                and all(is_const(i) for i in node.input[1:]):
            got = _index_partial(node, partial[node.input[0]], [const(i) if i else None for i in node.input])
            if got is not None and all(isinstance(d, int) for d in got):
                outs = [np.array(got, dtype=np.int64).reshape(() if node.op_type == "Gather"
                                                             and np.ndim(const(node.input[1])) == 0 else -1)]
            elif got is not None and node.op_type == "Slice":
                partial[node.output[0]] = got
        if outs is None:
            kept.append(node)
            continue
        folded = True
        for name, v in zip(node.output, outs):
            if name:
                v = np.asarray(v)
                if v.size <= 4096:
                    values[name] = v
                t = graph.initializer.add()       # written in place: no copy of large weights
                t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(v).reshape(v.shape), name))  # keeps 0-d
                init_by_name[name] = t
                new_inits.append(t)
                del v
        del outs
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
        outputs = {o.name for o in graph.output}
        # A graph output that became constant keeps a producer (an Identity of the initializer).
        for t in new_inits:
            if t.name in outputs:
                t.name = f"{t.name}.constant"
                graph.node.append(helper.make_node("Identity", [t.name], [t.name[:-len(".constant")]]))
        drop_unused_initializers(model)
    return model


def batch_reshapes(model: onnx.ModelProto, max_passes: int = 256) -> onnx.ModelProto:
    """Reshape targets built at run time from the input's batch (TorchScript's ``x.view(x.size(0),
    ...)``: ``Concat(Unsqueeze(Gather(Shape(t), 0)), constants)``, e.g. ShuffleNetV2's channel
    shuffle) become constants ``[0, constants]`` ("copy dim 0") where ``t`` and the reshaped
    tensor share the symbolic batch dim; the shape arithmetic left unused is removed. Shape
    inference cannot follow such a Reshape (the layers after it had no spatial size, 0 MACs), so
    each pass folds the shape arithmetic that became static and frees the next ones. In place."""
    for _ in range(max_passes):
        if not _batch_reshape_pass(model):
            break
        fold_constants(model)        # the shapes after the freed Reshapes are known now
    return model


def _batch_reshape_pass(model) -> bool:
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    dims = None
    changed = False
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in inits \
                or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        cat = producer.get(node.input[1])
        if cat is None or cat.op_type != "Concat" or not cat.input:
            continue
        head = _batch_of(cat.input[0], producer, inits)
        rest = [tensor_to_array(inits[i]).astype(np.int64).reshape(-1) if i in inits else None
                for i in cat.input[1:]]
        if head is None or any(r is None for r in rest):
            continue
        if dims is None:
            dims = _inferred_dims(model)
        src, x = dims.get(head), dims.get(node.input[0])
        if not src or not x or not isinstance(src[0], str) or x[0] != src[0]:
            continue
        name = f"{node.name or node.output[0]}.shape"
        graph.initializer.append(numpy_helper.from_array(
            np.concatenate([np.zeros(1, np.int64)] + rest), name))
        node.input[1] = name
        changed = True
    if changed:
        _drop_dead_shape_nodes(model)
    return changed


def _batch_of(name, producer, inits):
    """``t`` if ``name`` is ``Unsqueeze(Gather(Shape(t), 0), axes=[0])``, else None."""
    u = producer.get(name)
    if u is None or u.op_type != "Unsqueeze":
        return None
    axes = [list(a.ints) for a in u.attribute if a.name == "axes"]
    if len(u.input) > 1 and u.input[1] in inits:
        axes = [tensor_to_array(inits[u.input[1]]).reshape(-1).tolist()]
    if axes != [[0]]:
        return None
    g = producer.get(u.input[0])
    if g is None or g.op_type != "Gather" or any(a.name == "axis" and a.i != 0 for a in g.attribute) \
            or g.input[1] not in inits or tensor_to_array(inits[g.input[1]]).shape != () \
            or int(tensor_to_array(inits[g.input[1]])) != 0:
        return None
    sh = producer.get(g.input[0])
    if sh is None or sh.op_type != "Shape" or any(a.name == "start" and a.i != 0 for a in sh.attribute):
        return None
    return sh.input[0]


SHAPE_ARITHMETIC = frozenset({"Shape", "Gather", "Unsqueeze", "Concat", "Cast", "Squeeze", "Slice",
                              "Div", "Mul", "Add", "Sub"})


def _drop_dead_shape_nodes(model) -> None:
    """Remove shape-arithmetic nodes whose outputs nothing reads (to a fixed point)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [k for k, n in enumerate(graph.node) if n.op_type in SHAPE_ARITHMETIC
                and not any(o in used for o in n.output if o)]
        if not dead:
            return
        for k in reversed(dead):
            del graph.node[k]


def _has_subgraph(node) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _evaluate(node, idx, ins, opset):
    nd = Node(idx, node.name or f"{node.op_type}_{idx}", node.op_type, list(node.input),
              list(node.output), node_attributes(node), OPS[node.op_type], opset)
    try:
        outs, _, _ = nd.spec.forward(nd, ins, False)
    except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"constant node {nd.name!r} ({nd.op}) cannot be computed: {first}") from None
    return outs


def _shape_value(node, dims):
    if dims is None:
        return None
    a = {x.name: x.i for x in node.attribute}
    n = len(dims)
    start, end = a.get("start", 0), a.get("end", n)
    start = max(0, min(n, start + n if start < 0 else start))
    end = max(0, min(n, end + n if end < 0 else end))
    return [d if isinstance(d, int) else None for d in dims[start:end]]


def _index_partial(node, shape, ins):
    """Gather (axis 0) / Slice (axis 0) of a partly known shape vector; None if not foldable."""
    try:
        if node.op_type == "Gather":
            if any(a.name == "axis" and a.i != 0 for a in node.attribute):
                return None
            idx = np.asarray(ins[1]).reshape(-1)
            return [shape[int(i)] for i in idx]
        if len(ins) < 3 or ins[1] is None or ins[2] is None:
            return None
        if len(ins) > 3 and ins[3] is not None and any(int(a) not in (0, -1) for a in np.asarray(ins[3]).reshape(-1)):
            return None
        step = int(np.asarray(ins[4]).reshape(-1)[0]) if len(ins) > 4 and ins[4] is not None else 1
        st, en = int(np.asarray(ins[1]).reshape(-1)[0]), int(np.asarray(ins[2]).reshape(-1)[0])
        n = len(shape)
        st, en = max(min(st, n), -n - 1), max(min(en, n), -n - 1)
        return list(shape[slice(st, en, step)])
    except (IndexError, ValueError, TypeError):
        return None


# ----------------------------------------------------------------------------------------------
# Sum and no-ops
# ----------------------------------------------------------------------------------------------
def sum_to_add(model: onnx.ModelProto) -> onnx.ModelProto:
    """``Sum(a, b, c, ...)`` becomes ``Add(Add(a, b), c) ...`` (a one-input Sum an Identity).
    The last Add keeps the Sum's name and output tensor. In place; returns ``model``."""
    graph = model.graph
    if not any(n.op_type == "Sum" for n in graph.node):
        return model
    nodes = []
    for node in graph.node:
        if node.op_type != "Sum" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        ins, out, name = list(node.input), node.output[0], node.name or node.output[0]
        if len(ins) == 1:
            nodes.append(helper.make_node("Identity", ins, [out], name=name))
            continue
        acc = ins[0]
        for k, b in enumerate(ins[1:], start=1):
            last = k == len(ins) - 1
            dst = out if last else f"{out}/sum{k}"
            nodes.append(helper.make_node("Add", [acc, b], [dst], name=name if last else f"{name}/add{k}"))
            acc = dst
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def drop_noops(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Identity and inference Dropout nodes (a Dropout whose mask is used, or in training
    mode, stays). Consumers read the no-op's input instead; where the no-op wrote a graph
    output, its producer writes that output name. In place; returns ``model``."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input} | set(inits)
    graph_outputs = [o.name for o in graph.output]
    alias: dict[str, str] = {}

    def resolve(name):
        while name in alias:
            name = alias[name]
        return name

    used = {i for n in graph.node for i in n.input}
    keep = []
    removed_to_output = []
    for node in graph.node:
        if node.op_type in NOOP_OPS and node.domain in ("", "ai.onnx") and node.input and node.input[0] \
                and _is_inference_noop(node, used, inits):
            src, dst = resolve(node.input[0]), node.output[0]
            if dst in graph_outputs:
                removed_to_output.append((node, src, dst))
            else:
                alias[dst] = src
                continue
        keep.append(node)
    for node in keep:
        for k, i in enumerate(node.input):
            if i in alias:
                node.input[k] = resolve(i)
    # No-ops writing graph outputs: rename the producer's output instead, when possible.
    final = list(keep)
    renamed: dict[str, str] = {}
    for node, src, dst in removed_to_output:
        src = renamed.get(src, src)
        if src in graph_inputs or src in graph_outputs or sum(1 for n in final if src in n.output) != 1:
            continue                                  # keep this node (input -> output passthrough)
        for n in final:
            for k, o in enumerate(n.output):
                if o == src:
                    n.output[k] = dst
            for k, i in enumerate(n.input):
                if i == src:
                    n.input[k] = dst
        renamed[src] = dst
        final.remove(node)
    if len(final) != len(graph.node):
        del graph.node[:]
        graph.node.extend(final)
        del graph.value_info[:]
    return model


def _is_inference_noop(node, used, inits) -> bool:
    """Identity, or a Dropout whose mask nobody reads, outside training mode."""
    if node.op_type == "Identity":
        return True
    if len(node.output) > 1 and node.output[1] and node.output[1] in used:
        return False                      # the mask is consumed
    if any(a.name == "is_test" and a.i == 0 for a in node.attribute):
        return False                      # opset < 7 training form
    if len(node.input) > 2 and node.input[2]:
        mode = inits.get(node.input[2])
        return mode is not None and not bool(np.asarray(tensor_to_array(mode)).reshape(-1)[0])
    return True
