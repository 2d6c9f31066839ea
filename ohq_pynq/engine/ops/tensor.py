"""Ops that move or select data (reshapes, Concat, Split, Transpose, Gather, Slice, Pad,
Resize / Upsample; Identity and inference-time Dropout) and the shape/constant ops that are never
on a gradient path (Shape, Cast, ConstantOfShape, Constant)."""
from __future__ import annotations

import numpy as np
import onnx

from ...errors import ModelError, UnsupportedOpError
from ...onnx_loader import tensor_to_array
from .base import NonDifferentiable, Op, axes_arg


def _text(v, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def _scatter_along(g: np.ndarray, src: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Adjoint of ``np.take(x, src, axis)`` for entries ``src >= 0`` (x has length ``n``)."""
    shape = list(g.shape)
    shape[axis] = n
    dx = np.zeros(shape, dtype=g.dtype)
    dxm, gm = np.moveaxis(dx, axis, 0), np.moveaxis(g, axis, 0)
    valid = src >= 0
    np.add.at(dxm, src[valid], gm[valid])
    return dx


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
            if x.ndim == 0:
                raise ModelError(f"Flatten {node.name!r}: input is a scalar")
            ax = int(node.attrs.get("axis", 1))
            ax = ax + x.ndim if ax < 0 else ax
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


class Dropout(Op):
    """Inference Dropout: the data unchanged and an all-true mask. Training mode with a non-zero
    ratio is random and refused."""

    def forward(self, node, ins, record):
        x = ins[0]
        ratio = float(np.asarray(ins[1])) if len(ins) > 1 and ins[1] is not None \
            else float(node.attrs.get("ratio", 0.5))
        training = len(ins) > 2 and ins[2] is not None and bool(np.asarray(ins[2]))
        if training and ratio > 0:
            raise UnsupportedOpError([(node.name, "Dropout (training mode)")])
        outs = [x]
        if len(node.outputs) > 1 and node.outputs[1]:
            outs.append(np.ones(np.shape(x), dtype=bool))
        return outs, None, 0

    def backward(self, node, saved, douts, need):
        return [douts[0] if need[0] else None, None, None]


class Split(Op):
    """Split along ``axis`` by the ``split`` input (opset 13+) / attribute, or into equal parts
    (``num_outputs`` / number of outputs; the last part may be smaller)."""

    multi_output_grad = True

    def forward(self, node, ins, record):
        x = ins[0]
        ax = int(node.attrs.get("axis", 0)) % x.ndim
        n = x.shape[ax]
        if len(ins) > 1 and ins[1] is not None:
            sizes = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
        elif node.attrs.get("split") is not None:
            sizes = [int(v) for v in node.attrs["split"]]
        else:
            parts = int(node.attrs.get("num_outputs", len(node.outputs)))
            step = -(-n // parts)
            sizes = [min(step, n - i * step) for i in range(parts)]
        if sum(sizes) != n or any(v < 0 for v in sizes):
            raise ModelError(f"Split {node.name!r}: sizes {sizes} do not add up to {n} along axis {ax}")
        outs = np.split(x, np.cumsum(sizes)[:-1], axis=ax)
        return [np.ascontiguousarray(o) for o in outs], ((x.shape, ax, sizes) if record else None), 0

    def backward(self, node, saved, douts, need):
        shape, ax, sizes = saved
        if not need[0]:
            return [None, None]
        dt = next(d.dtype for d in douts if d is not None)
        parts = []
        for d, size in zip(douts, sizes):
            if d is None:                   # an output nothing differentiable used
                zshape = list(shape)
                zshape[ax] = size
                d = np.zeros(zshape, dtype=dt)
            parts.append(d)
        return [np.concatenate(parts, axis=ax), None]


class Pad(Op):
    """Pad (constant / reflect / edge / wrap; negative pads crop), pads as attribute (opset < 11)
    or input, optional ``axes`` input (opset 18)."""

    def forward(self, node, ins, record):
        x = ins[0]
        mode = _text(node.attrs.get("mode"), "constant")
        if node.opset < 11:
            pads, value, axes = list(node.attrs.get("pads", [])), node.attrs.get("value", 0.0), None
        else:
            pads = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
            value = ins[2] if len(ins) > 2 and ins[2] is not None and np.size(ins[2]) else 0
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else None
        r = x.ndim
        axes = list(range(r)) if axes is None else [int(a) % r for a in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise ModelError(f"Pad {node.name!r}: {len(pads)} pads for {len(axes)} axes")
        if mode not in ("constant", "reflect", "edge", "wrap"):
            raise UnsupportedOpError([(node.name, f"Pad mode {mode}")])
        value = np.asarray(value).reshape(-1)[0] if np.size(value) else 0
        y = x
        maps = []
        for ax, b, e in zip(axes, pads[:len(axes)], pads[len(axes):]):
            b, e = int(b), int(e)
            if b == 0 and e == 0:
                continue
            n = y.shape[ax]
            src = np.arange(n)[max(-b, 0):n - max(-e, 0)]
            b, e = max(b, 0), max(e, 0)
            if mode == "constant":
                src = np.concatenate([np.full(b, -1), src, np.full(e, -1)])
            else:
                if src.size == 0:
                    raise ModelError(f"Pad {node.name!r}: cannot {mode}-pad an empty axis")
                src = np.pad(src, (b, e), mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
            y = np.take(y, np.maximum(src, 0), axis=ax)
            if mode == "constant" and (b or e):
                shape = [1] * y.ndim
                shape[ax] = src.size
                y = np.where((src < 0).reshape(shape), np.asarray(value, dtype=y.dtype), y)
            maps.append((ax, src, n))
        if y is x:
            y = x.copy()
        return [y], (maps if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 4
        if need[0]:
            g = douts[0]
            for ax, src, n in reversed(saved):
                g = _scatter_along(g, src, n, ax)
            res[0] = g
        return res


def _source_coordinates(mode: str, out_n: int, in_n: int, scale: float) -> np.ndarray:
    """Input coordinate of each output position along one axis (ONNX Resize
    ``coordinate_transformation_mode``)."""
    o = np.arange(out_n, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_n / (scale * in_n)
        offset = in_n / 2 * (1 - adjustment)
        return offset + (o + 0.5) / scale - 0.5
    resized = scale * in_n              # the resized length before rounding, as ONNX defines it
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if resized > 1 else np.zeros(out_n)
    if mode == "align_corners":
        return o * (in_n - 1) / (resized - 1) if resized != 1 else np.zeros(out_n)
    if mode == "asymmetric":
        return o / scale
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise KeyError(mode)


def _nearest_index(xo: np.ndarray, mode: str, in_n: int) -> np.ndarray:
    if mode == "round_prefer_floor":
        i = np.ceil(xo - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(xo + 0.5)
    elif mode == "floor":
        i = np.floor(xo)
    elif mode == "ceil":
        i = np.ceil(xo)
    else:
        raise KeyError(mode)
    return np.clip(i, 0, in_n - 1).astype(np.int64)


class Resize(Op):
    """Resize (opset 10+) and Upsample (opset 7-9): nearest or (multi)linear, separable per axis,
    every coordinate transformation except tf_crop_and_resize; no cubic, no antialias."""

    def __init__(self, upsample=False):
        self.upsample = upsample

    def _plan(self, node, ins, x):
        a = node.attrs
        r = x.ndim
        if self.upsample:
            scales = a.get("scales") if node.opset < 9 else np.asarray(ins[1]).reshape(-1)
            coord, nearest, sizes, axes = "asymmetric", "floor", None, list(range(r))
            mode = _text(a.get("mode"), "nearest")
        else:
            mode = _text(a.get("mode"), "nearest")
            if node.opset < 11:
                scales, sizes = np.asarray(ins[1]).reshape(-1), None
                coord, nearest = "asymmetric", "floor"
            else:
                scales = ins[2] if len(ins) > 2 and ins[2] is not None and np.size(ins[2]) else None
                sizes = ins[3] if len(ins) > 3 and ins[3] is not None and np.size(ins[3]) else None
                coord = _text(a.get("coordinate_transformation_mode"), "half_pixel")
                nearest = _text(a.get("nearest_mode"), "round_prefer_floor")
            axes = [int(v) % r for v in a.get("axes", range(r))]
            if int(a.get("antialias", 0)):
                raise UnsupportedOpError([(node.name, "Resize with antialias")])
        if mode == "bilinear":
            mode = "linear"
        if mode not in ("nearest", "linear"):
            raise UnsupportedOpError([(node.name, f"Resize mode {mode}")])
        if coord == "tf_crop_and_resize":
            raise UnsupportedOpError([(node.name, "Resize tf_crop_and_resize")])
        in_shape = [x.shape[i] for i in axes]
        if sizes is not None:
            sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
            policy = _text(a.get("keep_aspect_ratio_policy"), "stretch")
            if policy == "stretch":
                scl = [s / n for s, n in zip(sizes, in_shape)]
                out = sizes
            else:
                pick = min if policy == "not_larger" else max
                f = pick(s / n for s, n in zip(sizes, in_shape))
                scl = [f] * len(axes)
                out = [int(np.floor(f * n + 0.5)) for n in in_shape]
        else:
            scl = [float(v) for v in np.asarray(scales).reshape(-1)]
            if len(scl) != len(axes):
                raise ModelError(f"{node.op} {node.name!r}: {len(scl)} scales for a {r}-D input")
            out = [int(np.floor(n * s)) for n, s in zip(in_shape, scl)]
        plan = []
        for ax, n, m, sc in zip(axes, in_shape, out, scl):
            if n == m and sc == 1.0:
                continue
            xo = _source_coordinates(coord, m, n, sc)
            if mode == "nearest":
                plan.append((ax, n, _nearest_index(xo, nearest, n), None, None))
            else:
                xo = np.clip(xo, 0, n - 1)
                i0 = np.floor(xo).astype(np.int64)
                i1 = np.minimum(i0 + 1, n - 1)
                w1 = xo - i0
                plan.append((ax, n, i0, i1, w1))
        return plan

    def forward(self, node, ins, record):
        x = ins[0]
        plan = self._plan(node, ins, x)
        y = x
        for ax, n, i0, i1, w1 in plan:
            if i1 is None:
                y = np.take(y, i0, axis=ax)
            else:
                shape = [1] * y.ndim
                shape[ax] = i0.size
                w = w1.reshape(shape).astype(y.dtype)
                y0 = np.take(y, i0, axis=ax)
                y = y0 + (np.take(y, i1, axis=ax) - y0) * w
        if y is x:
            y = x.copy()
        return [y], (plan if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 4
        if need[0]:
            g = douts[0]
            for ax, n, i0, i1, w1 in reversed(saved):
                if i1 is None:
                    g = _scatter_along(g, i0, n, ax)
                else:
                    shape = [1] * g.ndim
                    shape[ax] = i0.size
                    w = w1.reshape(shape).astype(g.dtype)
                    g = _scatter_along(g * (1 - w), i0, n, ax) + _scatter_along(g * w, i1, n, ax)
            res[0] = g
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
    "Dropout": Dropout(),
    "Concat": Concat(),
    "Split": Split(),
    "Pad": Pad(),
    "Resize": Resize(),
    "Upsample": Resize(upsample=True),
    "Transpose": Transpose(),
    "Gather": Gather(),
    "Slice": Slice(),
    "Shape": NonDifferentiable(_shape_op),
    "Cast": NonDifferentiable(_cast_op),
    "ConstantOfShape": NonDifferentiable(_constant_of_shape),
    "Constant": NonDifferentiable(_constant),
}
