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
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
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
    drop_unused_initializers(model)
    # Value info for the removed intermediate tensors is stale; shape inference re-creates it.
    del graph.value_info[:]
    return model


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
