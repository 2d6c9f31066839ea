"""Convolution, BatchNormalization (inference form), Gemm and MatMul: forward and input gradient."""
from __future__ import annotations

import numpy as np

from ...errors import ModelError
from .base import Op, crop, pad_nchw, spatial, tap, unbroadcast, windows


class Conv(Op):
    def forward(self, node, ins, record):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        n, c, h, wd = x.shape
        m, cg, kh, kw = w.shape
        g = int(node.attrs.get("group", 1))
        if cg * g != c:
            raise ModelError(f"Conv {node.name!r}: weight expects {cg * g} input channels, got {c}")
        k = (kh, kw)
        s, d, pads = spatial(node, (h, wd), k)
        oh = (h + pads[0] + pads[2] - (kh - 1) * d[0] - 1) // s[0] + 1
        ow = (wd + pads[1] + pads[3] - (kw - 1) * d[1] - 1) // s[1] + 1
        out = (oh, ow)
        if w.dtype != x.dtype:
            w = w.astype(x.dtype)
        scratch = 0
        if g == 1 and k == (1, 1) and s == (1, 1) and not any(pads):
            y = np.matmul(w.reshape(m, c), x.reshape(n, c, h * wd)).reshape(n, m, oh, ow)
        elif g == 1:
            xp = pad_nchw(x, pads)
            win = windows(xp, k, s, d, out)                      # (N,C,kh,kw,oh,ow)
            cols = win.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)
            y = (w.reshape(m, -1) @ cols).reshape(m, n, oh, ow)
            scratch = cols.nbytes + y.nbytes + (xp.nbytes if xp is not x else 0)
            del cols, win, xp
            y = np.ascontiguousarray(y.transpose(1, 0, 2, 3))
        elif cg == 1:                                             # depthwise (channel multiplier mg)
            mg = m // g
            xp = pad_nchw(x, pads)
            wr = w.reshape(g, mg, kh, kw)
            y = np.zeros((n, g, mg, oh, ow), dtype=x.dtype)
            tmp = np.empty((n, g, oh, ow), dtype=x.dtype)
            for i in range(kh):
                for j in range(kw):
                    v = xp[tap(i, j, s, d, out)]
                    for q in range(mg):
                        np.multiply(v, wr[None, :, q, i, j, None, None], out=tmp)
                        y[:, :, q] += tmp
            y = y.reshape(n, m, oh, ow)
        else:                                                     # grouped
            mg = m // g
            win = windows(pad_nchw(x, pads), k, s, d, out)
            cols = win.reshape(n, g, cg * kh * kw, oh * ow)
            scratch = cols.nbytes
            y = np.matmul(w.reshape(g, mg, cg * kh * kw), cols).reshape(n, m, oh, ow)
        if b is not None:
            y += b.astype(y.dtype, copy=False).reshape(1, m, 1, 1)
        saved = (w, x.shape, s, d, pads, out, g) if record else None
        return [y], saved, scratch

    def backward(self, node, saved, douts, need):
        w, xshape, s, d, pads, out, g = saved
        dy = douts[0]
        res = [None] * 3
        if not need[0] or dy is None:
            return res
        n, c, h, wd = xshape
        m, cg, kh, kw = w.shape
        k = (kh, kw)
        w = w.astype(dy.dtype, copy=False)
        if g == 1 and k == (1, 1) and s == (1, 1) and not any(pads):
            res[0] = np.matmul(w.reshape(m, c).T, dy.reshape(n, m, -1)).reshape(xshape)
            return res
        hp, wp = h + pads[0] + pads[2], wd + pads[1] + pads[3]
        dxp = np.zeros((n, c, hp, wp), dtype=dy.dtype)
        if g == 1:
            dy2 = dy.transpose(1, 0, 2, 3).reshape(m, -1)
            dcols = (w.reshape(m, -1).T @ dy2).reshape(c, kh, kw, n, out[0], out[1])
            for i in range(kh):
                for j in range(kw):
                    dxp[tap(i, j, s, d, out)] += dcols[:, i, j].transpose(1, 0, 2, 3)
        elif cg == 1:
            mg = m // g
            dyr = dy.reshape(n, g, mg, out[0], out[1])
            wr = w.reshape(g, mg, kh, kw)
            for i in range(kh):
                for j in range(kw):
                    if mg == 1:
                        dxp[tap(i, j, s, d, out)] += dyr[:, :, 0] * wr[None, :, 0, i, j, None, None]
                    else:
                        dxp[tap(i, j, s, d, out)] += (
                            dyr * wr[None, :, :, i, j, None, None]).sum(axis=2)
        else:
            mg = m // g
            wt = w.reshape(g, mg, cg * kh * kw).transpose(0, 2, 1)
            dcols = np.matmul(wt, dy.reshape(n, g, mg, -1))   # (N,G,Cg*kh*kw,P)
            dcols = dcols.reshape(n, c, kh, kw, out[0], out[1])
            for i in range(kh):
                for j in range(kw):
                    dxp[tap(i, j, s, d, out)] += dcols[:, :, i, j]
        res[0] = np.ascontiguousarray(crop(dxp, pads, (h, wd)))
        return res


class BatchNormalization(Op):
    """Inference form: y = (x - mean) / sqrt(var + eps) * scale + bias (running statistics)."""

    def forward(self, node, ins, record):
        x, scale, bias, mean, var = ins[:5]
        eps = float(node.attrs.get("epsilon", 1e-5))
        dt = x.dtype
        a = (scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
        b = bias.astype(np.float64) - mean.astype(np.float64) * a
        shape = (1, -1) + (1,) * (x.ndim - 2)
        a = a.astype(dt).reshape(shape)
        y = x * a
        y += b.astype(dt).reshape(shape)
        return [y], (a if record else None), 0

    def backward(self, node, saved, douts, need):
        return [douts[0] * saved if need[0] else None] + [None] * 4


class Gemm(Op):
    def forward(self, node, ins, record):
        a, b = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        ta, tb = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
        alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        dt = a.dtype if a.dtype.kind == "f" else b.dtype
        a2 = a.T if ta else a
        b2 = (b.T if tb else b).astype(dt, copy=False)
        y = a2 @ b2
        if alpha != 1.0:
            y *= dt.type(alpha)
        if c is not None:
            y += (c * dt.type(beta)).astype(dt, copy=False) if beta != 1.0 else c.astype(dt, copy=False)
        saved = (a, b, ta, tb, alpha) if record else None
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        a, b, ta, tb, alpha = saved
        g = douts[0] * alpha if alpha != 1.0 else douts[0]
        res = [None, None, None]
        b2 = (b.T if tb else b).astype(g.dtype, copy=False)
        a2 = (a.T if ta else a).astype(g.dtype, copy=False)
        if need[0]:
            da2 = g @ b2.T
            res[0] = da2.T if ta else da2
        if need[1]:
            db2 = a2.T @ g
            res[1] = db2.T if tb else db2
        return res


class MatMul(Op):
    def forward(self, node, ins, record):
        a, b = ins[0], ins[1]
        dt = a.dtype if a.dtype.kind == "f" else b.dtype
        y = np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))
        return [y], ((a, b) if record else None), 0

    def backward(self, node, saved, douts, need):
        a, b = saved
        g = douts[0]
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        res = [None, None]
        if need[0]:
            da = np.matmul(g2, np.swapaxes(b2, -1, -2).astype(g.dtype, copy=False))
            res[0] = unbroadcast(da, a2.shape).reshape(a.shape)
        if need[1]:
            db = np.matmul(np.swapaxes(a2, -1, -2).astype(g.dtype, copy=False), g2)
            res[1] = unbroadcast(db, b2.shape).reshape(b.shape)
        return res


# Each class is named after the ONNX op it implements.
OPS: dict[str, Op] = {cls.__name__: cls() for cls in (Conv, BatchNormalization, Gemm, MatMul)}
