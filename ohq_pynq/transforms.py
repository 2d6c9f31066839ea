"""Graph rewrites applied before quantization (on private copies; inputs are never modified).

``fold_batchnorm``: Conv → BatchNormalization (inference form) becomes one Conv with scaled
weights and a bias, as the integer cores execute it. BatchNormalizations that do not directly
follow a Conv used only by them are left in place (the engine executes them in float).
"""
from __future__ import annotations

import numpy as np


def fold_batchnorm(proto):
    """Return a copy of ``proto`` with every foldable Conv→BatchNormalization pair merged.

    The Conv keeps its node name (layer names stay stable) and takes over the BN's output
    tensor name, so everything downstream is untouched.
    """
    from onnx import numpy_helper

    # Copy everything but the weights of the Conv -> BN pairs that will be folded: the folded
    # weights replace them, so a full copy would hold every conv weight twice at the peak.
    folded_away = _foldable_weights(proto)
    model = copy_model(proto, keep=lambda name: name not in folded_away)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inits.update({t.name: t for t in proto.graph.initializer if t.name in folded_away})
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    producer = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}

    def const(name):
        return numpy_helper.to_array(inits[name]).astype(np.float64) if name in inits else None

    drop = []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 and any(bn.output[1:]):
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or conv.input[1] not in inits:
            continue
        if len(consumers.get(conv.output[0], [])) != 1 or conv.output[0] in graph_outputs:
            continue
        params = [const(n) for n in bn.input[1:5]]
        if any(p is None for p in params):
            continue
        gamma, beta, mean, var = params
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        w = const(conv.input[1])
        b = const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
        if b is None:
            continue
        w_new = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        b_new = ((b - mean) * scale + beta).astype(np.float32)
        w_name, b_name = f"{conv.name or conv.output[0]}.weight_folded", f"{conv.name or conv.output[0]}.bias_folded"
        graph.initializer.extend([numpy_helper.from_array(w_new, w_name),
                                  numpy_helper.from_array(b_new, b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        drop.append(bn)
    for bn in drop:
        graph.node.remove(bn)
    held = {t.name for t in graph.initializer}
    used = {i for n in graph.node for i in n.input}
    for t in proto.graph.initializer:        # a skipped weight still read (not folded after all)
        if t.name in folded_away and t.name in used and t.name not in held:
            graph.initializer.add().CopyFrom(t)
    drop_unused_initializers(model)
    # Value info for the removed intermediate tensors is stale; shape inference re-creates it.
    del graph.value_info[:]
    return model


def _foldable_weights(proto) -> set[str]:
    """Initializer names only Conv -> BN pairs read (the conv weight/bias and BN parameters)
    that :func:`fold_batchnorm` replaces; used to skip copying them."""
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for i in node.input:
            uses[i] = uses.get(i, 0) + 1
    producer = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name for t in proto.graph.initializer}
    graph_outputs = {o.name for o in proto.graph.output}
    names: set[str] = set()
    for bn in proto.graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 and any(bn.output[1:]):
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or conv.input[1] not in inits:
            continue
        if uses.get(conv.output[0], 0) != 1 or conv.output[0] in graph_outputs:
            continue
        if not all(n in inits for n in bn.input[1:5]):
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        cands = [conv.input[1]] + ([conv.input[2]] if len(conv.input) > 2 and conv.input[2] else [])
        names.update(n for n in cands + list(bn.input[1:5]) if uses.get(n, 0) == 1
                     and n not in graph_outputs)
    return names


def copy_model(proto, keep=None):
    """A copy of ``proto`` holding only the initializers whose name ``keep(name)`` accepts (all
    when ``keep`` is None): the rest is never copied, so a rewrite that replaces large weights
    needs no second copy of them."""
    import onnx

    model = onnx.ModelProto()
    _copy_fields(proto, model, skip="graph")
    _copy_fields(proto.graph, model.graph, skip="initializer")
    for t in proto.graph.initializer:
        if keep is None or keep(t.name):
            model.graph.initializer.add().CopyFrom(t)
    return model


def _copy_fields(src, dst, skip: str) -> None:
    """Copy every set field of protobuf message ``src`` into ``dst`` except ``skip``."""
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        target = getattr(dst, fd.name)
        if fd.label == fd.LABEL_REPEATED:
            target.extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def drop_unused_initializers(model) -> None:
    """Remove initializers (and their graph-input entries) that no node or output uses."""
    used = {i for n in model.graph.node for i in n.input}
    used |= {o.name for o in model.graph.output}
    inits = model.graph.initializer
    dropped = set()
    for k in range(len(inits) - 1, -1, -1):      # in place: large weights are never copied
        if inits[k].name not in used:
            dropped.add(inits[k].name)
            del inits[k]
    inputs = model.graph.input
    for k in range(len(inputs) - 1, -1, -1):
        if inputs[k].name in dropped:
            del inputs[k]
