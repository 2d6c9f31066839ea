"""Max / average pooling (pads, dilation, ceil mode), global average pooling and ReduceMean:
forward and input gradient."""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError
from .base import Op, axes_arg, crop, pad_nchw, pair, spatial, tap


def _pool_geometry(node, x, k):
    n, c, h, w = x.shape
    s, d, pads = spatial(node, (h, w), k)
    ceil = int(node.attrs.get("ceil_mode", 0))
    out, extra = [], []
    for i in range(2):
        span = (h, w)[i] + pads[i] + pads[i + 2] - ((k[i] - 1) * d[i] + 1)
        o = (-(-span // s[i]) if ceil else span // s[i]) + 1
        if ceil and (o - 1) * s[i] >= (h, w)[i] + pads[i]:
            o -= 1
        need = (o - 1) * s[i] + (k[i] - 1) * d[i] + 1 - ((h, w)[i] + pads[i] + pads[i + 2])
        out.append(o)
        extra.append(max(need, 0))
    full = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    return s, d, pads, full, tuple(out)


class _WindowPool(Op):
    """Input gradient shared by MaxPool and AveragePool. ``forward`` saves ``(context, x shape,
    strides, dilations, full pads, output size, kernel)``; :meth:`tap_gradient` says, from the
    context, what output gradient flows back through kernel tap t (taps in row-major order)."""

    def tap_gradient(self, context, dy):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, node, saved, douts, need):
        context, xshape, s, d, full, out, k = saved
        if not need[0]:
            return [None]
        grad_of_tap = self.tap_gradient(context, douts[0])
        n, c, h, w = xshape
        dxp = np.zeros((n, c, h + full[0] + full[2], w + full[1] + full[3]), dtype=douts[0].dtype)
        t = 0
        for i in range(k[0]):
            for j in range(k[1]):
                dxp[tap(i, j, s, d, out)] += grad_of_tap(t)
                t += 1
        return [np.ascontiguousarray(crop(dxp, full, (h, w)))]

class MaxPool(_WindowPool):
    def forward(self, node, ins, record):
        x = ins[0]
        if len(node.outputs) > 1 and node.outputs[1]:
            raise UnsupportedOpError([(node.name, "MaxPool with Indices output")])
        k = pair(node.attrs["kernel_shape"], 1)
        s, d, _, full, out = _pool_geometry(node, x, k)
        xp = pad_nchw(x, full, value=-np.inf)
        y = None
        idx = np.zeros(x.shape[:2] + out, dtype=np.uint8) if record else None
        t = 0
        for i in range(k[0]):
            for j in range(k[1]):
                v = xp[tap(i, j, s, d, out)]
                if y is None:
                    y = v.copy()
                else:
                    if record:
                        better = v > y
                        idx[better] = t
                        np.copyto(y, v, where=better)
                    else:
                        np.maximum(y, v, out=y)
                t += 1
        saved = (idx, x.shape, s, d, full, out, k) if record else None
        return [y], saved, 0

    def tap_gradient(self, idx, dy):
        return lambda t: np.where(idx == t, dy, 0)      # idx: the tap that held each maximum


class AveragePool(_WindowPool):
    def forward(self, node, ins, record):
        x = ins[0]
        k = pair(node.attrs["kernel_shape"], 1)
        s, d, pads, full, out = _pool_geometry(node, x, k)
        n, c, h, w = x.shape
        xp = pad_nchw(x, full)
        y = np.zeros((n, c) + out, dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                y += xp[tap(i, j, s, d, out)]
        # Divisor: window elements inside the image (count_include_pad=0) or inside image + pads.
        ones = np.zeros((1, 1, h + full[0] + full[2], w + full[1] + full[3]), dtype=x.dtype)
        if int(node.attrs.get("count_include_pad", 0)):
            ones[:, :, :h + pads[0] + pads[2], :w + pads[1] + pads[3]] = 1
        else:
            ones[:, :, full[0]:full[0] + h, full[1]:full[1] + w] = 1
        cnt = np.zeros((1, 1) + out, dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                cnt += ones[tap(i, j, s, d, out)]
        y /= np.maximum(cnt, 1)
        saved = (cnt, x.shape, s, d, full, out, k) if record else None
        return [y], saved, 0

    def tap_gradient(self, cnt, dy):
        share = dy / np.maximum(cnt, 1)                 # cnt: the divisor of each window
        return lambda t: share


class GlobalAveragePool(Op):
    def forward(self, node, ins, record):
        x = ins[0]
        axes = tuple(range(2, x.ndim))
        return [x.mean(axis=axes, keepdims=True, dtype=x.dtype)], (x.shape if record else None), 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        cnt = int(np.prod(saved[2:]))
        return [np.broadcast_to(douts[0] / cnt, saved).copy()]


class ReduceMean(Op):
    def forward(self, node, ins, record):
        x = ins[0]
        axes = axes_arg(node, ins, 1)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if int(node.attrs.get("noop_with_empty_axes", 0)):
                return [x.copy()], ((x.shape, None, keep) if record else None), 0
            axes = list(range(x.ndim))
        axes = tuple(a % x.ndim for a in axes)
        y = x.mean(axis=axes, keepdims=keep, dtype=x.dtype)
        return [np.asarray(y)], ((x.shape, axes, keep) if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 2
        if not need[0]:
            return res
        shape, axes, keep = saved
        g = douts[0]
        if axes is None:
            res[0] = g
            return res
        cnt = int(np.prod([shape[a] for a in axes]))
        if not keep:
            g = np.expand_dims(g, axes)
        res[0] = np.broadcast_to(g / cnt, shape).copy()
        return res


# Each class is named after the ONNX op it implements.
OPS: dict[str, Op] = {cls.__name__: cls() for cls in (MaxPool, AveragePool, GlobalAveragePool, ReduceMean)}
