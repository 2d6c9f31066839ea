"""Max / average pooling (pads, dilation, ceil mode, MaxPool indices), global average / max
pooling, ReduceMean and local response normalisation (LRN): forward and input gradient."""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError
from .base import Op, axes_arg, crop, pad_nchw, pair, spatial, tap
from .taps import tap_grid

POOL_CHUNK_BYTES = 2 << 20    # window pools work on chunks of images of about this size (cache)


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
    """Input gradient of AveragePool. ``forward`` saves ``(context, x shape, strides, dilations,
    full pads, output size, kernel)``; :meth:`tap_gradient` says, from the context, what output
    gradient flows back through kernel tap t (taps in row-major order)."""

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

class MaxPool(Op):
    """Max over each window on the stride-phase flat layout (:mod:`.taps`, padding = -inf): one
    ``maximum`` per kernel tap. With ``record`` it also keeps which tap held each maximum (the
    first one on ties, uint8) for the gradient, which routes ``dy`` back through that tap."""

    def forward(self, node, ins, record):
        x = ins[0]
        if x.ndim != 4:
            raise UnsupportedOpError([(node.name, f"MaxPool on {x.ndim - 2}-D data")])
        indices = len(node.outputs) > 1 and bool(node.outputs[1])
        k = pair(node.attrs["kernel_shape"], 1)
        s, d, _, full, out = _pool_geometry(node, x, k)
        n, c, h, w = x.shape
        grid = tap_grid((h, w), tuple(full), tuple(k), tuple(s), tuple(d), tuple(out))
        keep_idx = record or indices                   # the Indices output needs the argmax tap too
        if len(grid.taps) > 255 and keep_idx:
            raise UnsupportedOpError([(node.name, "MaxPool gradient with more than 255 taps")])
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        per_image = (len(grid.phases) * grid.length + 2 * grid.L) * c * x.itemsize
        nb = max(1, min(n, max(POOL_CHUNK_BYTES, per_image) // per_image))
        bufs = np.full((len(grid.phases), nb, c, grid.length), lowest, dtype=x.dtype)
        acc_buf = np.empty((nb, c, grid.L), dtype=x.dtype)
        y = np.empty((n, c) + out, dtype=x.dtype)
        idx = None
        if keep_idx:    # masked numpy ops (where=) are slow: plain bool / uint8 arithmetic instead
            idx = np.empty((n, c, grid.L), dtype=np.uint8)
            hit = np.empty((nb, c, grid.L), dtype=bool)
            step = np.empty((nb, c, grid.L), dtype=np.uint8)
        for n0 in range(0, n, nb):
            b = min(nb, n - n0)
            grid.scatter(x[n0:n0 + b], bufs)
            acc = acc_buf[:b]
            for t, (_, _, p, off) in enumerate(grid.taps):
                src = bufs[p, :b, :, off:off + grid.L]
                if t == 0:
                    acc[...] = src
                else:
                    np.maximum(acc, src, out=acc)
            if keep_idx:
                # the first tap holding the maximum: taps in reverse, idx <- t where src == max
                # (idx + (t - idx) * hit, in wrapping uint8 arithmetic)
                ib, hb, sb = idx[n0:n0 + b], hit[:b], step[:b]
                for t in range(len(grid.taps) - 1, -1, -1):
                    _, _, p, off = grid.taps[t]
                    np.equal(bufs[p, :b, :, off:off + grid.L], acc, out=hb)
                    if t == len(grid.taps) - 1:
                        np.multiply(hb, np.uint8(t), out=ib)
                        continue
                    np.subtract(np.uint8(t), ib, out=sb)
                    np.multiply(sb, hb, out=sb)
                    ib += sb
            y[n0:n0 + b] = grid.grid_view(acc)
        scratch = bufs.nbytes + acc_buf.nbytes + (hit.nbytes + step.nbytes if keep_idx else 0)
        saved = (idx, grid, x.shape, x.dtype) if record else None
        if indices:
            return [y, self.flat_indices(node, grid, idx, x.shape, s, d, full, out)], saved, scratch
        return [y], saved, scratch

    @staticmethod
    def flat_indices(node, grid, idx, xshape, s, d, full, out):
        """ONNX MaxPool ``Indices``: the flat position of each maximum in the unpadded input,
        row-major (storage_order 0) or column-major within each image plane (1)."""
        n, c, h, w = xshape
        t = grid.grid_view(idx).astype(np.int64)              # (n, c, out_h, out_w) argmax tap
        ij = np.array([tp[:2] for tp in grid.taps], dtype=np.int64)
        ti, tj = ij[t, 0], ij[t, 1]
        rows = np.arange(out[0]).reshape(-1, 1) * s[0] - full[0] + ti * d[0]
        cols = np.arange(out[1]).reshape(1, -1) * s[1] - full[1] + tj * d[1]
        plane = (np.arange(n).reshape(-1, 1, 1, 1) * c + np.arange(c).reshape(1, -1, 1, 1)) * h * w
        if int(node.attrs.get("storage_order", 0)):
            return plane + cols * h + rows
        return plane + rows * w + cols

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        idx, grid, xshape, _ = saved
        dy = douts[0]
        n, c = xshape[:2]
        per_image = (len(grid.phases) * grid.length + 2 * grid.L) * c * dy.itemsize
        nb = max(1, min(n, max(POOL_CHUNK_BYTES, per_image) // per_image))
        dyg_buf = np.zeros((nb, c, grid.L), dtype=dy.dtype)   # zeros in the grid's padding columns
        share_buf = np.empty_like(dyg_buf)
        hit_buf = np.empty((nb, c, grid.L), dtype=bool)
        acc = grid.buffers(nb, c, dy.dtype)
        dx = np.empty(xshape, dtype=dy.dtype)
        for n0 in range(0, n, nb):
            b = min(nb, n - n0)
            dyg, share, hit = dyg_buf[:b], share_buf[:b], hit_buf[:b]
            grid.grid_view(dyg)[...] = dy[n0:n0 + b]
            if n0:
                acc[...] = 0
            for t, (_, _, p, off) in enumerate(grid.taps):
                np.equal(idx[n0:n0 + b], np.uint8(t), out=hit)
                np.multiply(dyg, hit, out=share)
                acc[p, :b, :, off:off + grid.L] += share
            grid.gather(acc[:, :b], dx[n0:n0 + b])
        return [dx]


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
        n, c = x.shape[:2]
        cnt = int(np.prod(x.shape[2:]))
        flat = x.reshape(n, c, cnt)                   # a sum over one axis: pairwise, in x's dtype
        y = np.add.reduce(flat, axis=2, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
        y *= y.dtype.type(1 / cnt)
        y = y.astype(x.dtype, copy=False).reshape((n, c) + (1,) * (x.ndim - 2))
        return [y], (x.shape if record else None), 0

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


class GlobalMaxPool(Op):
    def forward(self, node, ins, record):
        x = ins[0]
        axes = tuple(range(2, x.ndim))
        return [x.max(axis=axes, keepdims=True)], (x if record else None), 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        x = saved
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        arg = flat.argmax(axis=2)                       # first maximum of each plane
        dx = np.zeros(flat.shape, dtype=douts[0].dtype)
        np.put_along_axis(dx, arg[..., None], douts[0].reshape(arg.shape + (1,)), axis=2)
        return [dx.reshape(x.shape)]


class LRN(Op):
    """y = x / (bias + alpha / size * sum of x^2 over ``size`` neighbouring channels) ** beta."""

    @staticmethod
    def window_sum(v, size, lo, hi):
        """Sum over channels c-lo .. c+hi (zero outside) of an (N, C, ...) array."""
        c = v.shape[1]
        pad = [(0, 0)] * v.ndim
        pad[1] = (lo, hi)
        vp = np.pad(v, pad)
        total = vp[:, 0:c].copy()
        for k in range(1, size):
            total += vp[:, k:k + c]
        return total

    def forward(self, node, ins, record):
        x = ins[0]
        a = node.attrs
        size = int(a["size"])
        alpha, beta, bias = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        d = self.window_sum(x * x, size, lo, hi)
        d *= x.dtype.type(alpha / size)
        d += x.dtype.type(bias)
        y = x * d ** x.dtype.type(-beta)
        return [y], ((x, d) if record else None), 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        x, d = saved
        a = node.attrs
        size = int(a["size"])
        alpha, beta = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75))
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        g = douts[0]
        u = g * x * d ** (-beta - 1)
        t = self.window_sum(u, size, hi, lo)            # transposed window
        return [g * d ** -beta - (2 * alpha * beta / size) * x * t]


# Each class is named after the ONNX op it implements.
OPS: dict[str, Op] = {cls.__name__: cls() for cls in (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
                                                   ReduceMean, LRN)}
