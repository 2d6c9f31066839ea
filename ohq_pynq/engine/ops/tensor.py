"""Ops that move or select data without arithmetic (reshapes, Concat, Transpose, Gather, Slice;
Identity and inference-time Dropout) and the shape/constant ops that are never on a gradient
path (Shape, Cast, ConstantOfShape, Constant)."""
from __future__ import annotations

import numpy as np
import onnx

from ...errors import UnsupportedOpError
from ...onnx_loader import tensor_to_array
from .base import NonDifferentiable, Op, axes_arg


class ReshapeLike(Op):
    """Flatten / Reshape / Squeeze / Unsqueeze / Identity: same data, new shape."""

    def __init__(self, kind):
        self.kind = kind

    def forward(self, node, ins, record):
        x = ins[0]
        k = self.kind
        if k == "Identity":
            y = x
        elif k == "Flatten":
            ax = int(node.attrs.get("axis", 1)) % (x.ndim + 1) if x.ndim else 0
            y = x.reshape(int(np.prod(x.shape[:ax])), int(np.prod(x.shape[ax:])))
        elif k == "Reshape":
            shape = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
            if not int(node.attrs.get("allowzero", 0)):
                shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            y = x.reshape(shape)
        elif k == "Squeeze":
            axes = axes_arg(node, ins, 1)
            if axes is None:
                axes = [i for i, n in enumerate(x.shape) if n == 1]
            y = np.squeeze(x, axis=tuple(a % x.ndim for a in axes))
        else:  # Unsqueeze
            axes = axes_arg(node, ins, 1)
            nd = x.ndim + len(axes)
            y = np.expand_dims(x, tuple(sorted(a % nd for a in axes)))
        return [y], (np.shape(x) if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 2
        if need[0]:
            res[0] = douts[0].reshape(saved)
        return res


class Concat(Op):
    def forward(self, node, ins, record):
        ax = int(node.attrs["axis"])
        y = np.concatenate([np.asarray(i) for i in ins], axis=ax)
        saved = ([np.shape(i)[ax] for i in ins], ax % y.ndim) if record else None
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        sizes, ax = saved
        parts = np.split(douts[0], np.cumsum(sizes)[:-1], axis=ax)
        return [p if nd else None for p, nd in zip(parts, need)]


class Transpose(Op):
    def forward(self, node, ins, record):
        x = ins[0]
        perm = node.attrs.get("perm")
        perm = list(range(x.ndim))[::-1] if perm is None else [int(p) for p in perm]
        return [np.ascontiguousarray(x.transpose(perm))], (perm if record else None), 0

    def backward(self, node, saved, douts, need):
        return [douts[0].transpose(np.argsort(saved)) if need[0] else None]


class Gather(Op):
    def forward(self, node, ins, record):
        x, idx = np.asarray(ins[0]), np.asarray(ins[1]).astype(np.int64)
        ax = int(node.attrs.get("axis", 0)) % max(x.ndim, 1)
        idx = np.where(idx < 0, idx + x.shape[ax], idx)
        y = np.take(x, idx, axis=ax)
        return [y], ((x.shape, idx, ax) if record else None), 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None, None]
        shape, idx, ax = saved
        g = douts[0]
        dx = np.zeros(shape, dtype=g.dtype)
        gm = np.moveaxis(g, list(range(ax, ax + idx.ndim)), list(range(idx.ndim)))
        dxm = np.moveaxis(dx, ax, 0)
        np.add.at(dxm, idx, gm)
        return [dx, None]


class Slice(Op):
    def forward(self, node, ins, record):
        x = ins[0]
        if len(ins) > 1:
            starts = np.asarray(ins[1]).reshape(-1)
            ends = np.asarray(ins[2]).reshape(-1)
            axes = np.asarray(ins[3]).reshape(-1) if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
            steps = np.asarray(ins[4]).reshape(-1) if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), int)
        else:
            starts, ends = node.attrs["starts"], node.attrs["ends"]
            axes = node.attrs.get("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = int(ax) % x.ndim
            n = x.shape[ax]
            st, en, sp = int(st), int(en), int(sp)
            st = max(min(st, n), -n - 1) if abs(st) < 2 ** 62 else (n if st > 0 else -n - 1)
            en = max(min(en, n), -n - 1) if abs(en) < 2 ** 62 else (n if en > 0 else (-n - 1 if sp < 0 else 0))
            if sp < 0 and en < -n:
                en = None
            sl[ax] = slice(st, en, sp)
        sl = tuple(sl)
        return [np.array(x[sl])], ((np.shape(x), sl) if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 5
        if need[0]:
            shape, sl = saved
            dx = np.zeros(shape, dtype=douts[0].dtype)
            dx[sl] = douts[0]
            res[0] = dx
        return res


def _shape_op(node, ins):
    shape = np.array(np.shape(ins[0]), dtype=np.int64)
    st = int(node.attrs.get("start", 0))
    en = node.attrs.get("end")
    return [shape[st:en if en is None else int(en)]]


def _cast_op(node, ins):
    to = int(node.attrs["to"])
    dt = onnx.helper.tensor_dtype_to_np_dtype(to)
    return [np.asarray(ins[0]).astype(dt)]


def _constant_of_shape(node, ins):
    v = node.attrs.get("value")
    val = tensor_to_array(v).reshape(-1)[0] if v is not None else np.float32(0)
    return [np.full([int(i) for i in np.asarray(ins[0]).reshape(-1)], val, dtype=np.asarray(val).dtype)]


def _constant(node, ins):
    a = node.attrs
    if "value" in a:
        return [tensor_to_array(a["value"])]
    if "value_float" in a:
        return [np.array(a["value_float"], dtype=np.float32)]
    if "value_floats" in a:
        return [np.array(a["value_floats"], dtype=np.float32)]
    if "value_int" in a:
        return [np.array(a["value_int"], dtype=np.int64)]
    if "value_ints" in a:
        return [np.array(a["value_ints"], dtype=np.int64)]
    raise UnsupportedOpError([(node.name, "Constant (sparse/string value)")])


OPS: dict[str, Op] = {
    "Flatten": ReshapeLike("Flatten"),
    "Reshape": ReshapeLike("Reshape"),
    "Squeeze": ReshapeLike("Squeeze"),
    "Unsqueeze": ReshapeLike("Unsqueeze"),
    "Identity": ReshapeLike("Identity"),
    "Dropout": ReshapeLike("Identity"),
    "Concat": Concat(),
    "Transpose": Transpose(),
    "Gather": Gather(),
    "Slice": Slice(),
    "Shape": NonDifferentiable(_shape_op),
    "Cast": NonDifferentiable(_cast_op),
    "ConstantOfShape": NonDifferentiable(_constant_of_shape),
    "Constant": NonDifferentiable(_constant),
}
