"""Convolution, BatchNormalization (inference form), Gemm and MatMul: forward and input gradient."""
from __future__ import annotations

import numpy as np

from ...errors import ModelError
from .base import Op, donated, spatial, unbroadcast
from .convolution import DEFAULT_SCRATCH_BYTES, conv2d, conv2d_input_grad


class Conv(Op):
    """2-D convolution (any group, stride, dilation, pads); the kernels are in :mod:`.convolution`.
    Temporary buffers stay within ``node.attrs["_scratch_bytes"]`` (set by the engine)."""

    def forward(self, node, ins, record):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        if x.ndim != 4:
            raise ModelError(f"Conv {node.name!r}: only 2-D convolutions (NCHW input) are supported")
        n, c, h, wd = x.shape
        m, cg, kh, kw = w.shape
        g = int(node.attrs.get("group", 1))
        if cg * g != c:
            raise ModelError(f"Conv {node.name!r}: weight expects {cg * g} input channels, got {c}")
        s, d, pads = spatial(node, (h, wd), (kh, kw))
        if w.dtype != x.dtype:
            w = w.astype(x.dtype)
        limit = node.attrs.get("_scratch_bytes", DEFAULT_SCRATCH_BYTES)
        y, scratch = conv2d(x, w, s, d, pads, g, limit)
        if b is not None:
            y += b.astype(y.dtype, copy=False).reshape(1, m, 1, 1)
        saved = (w, x.shape, s, d, pads, g, limit) if record else None
        return [y], saved, scratch

    def backward(self, node, saved, douts, need):
        w, xshape, s, d, pads, g, limit = saved
        dy = douts[0]
        res = [None] * 3
        if not need[0] or dy is None:
            return res
        w = w.astype(dy.dtype, copy=False)
        res[0] = conv2d_input_grad(dy, w, xshape, s, d, pads, g, limit)[0]
        return res


class BatchNormalization(Op):
    """Inference form: y = (x - mean) / sqrt(var + eps) * scale + bias (running statistics), as
    y = x * a + b with a, b computed in float64 once per parameter set (cached on the node).

    Training form (opset >= 14 ``training_mode=1``, or older opsets asking for the statistics
    outputs): batch statistics, and the updated running mean / variance as outputs 2 and 3
    (opset < 14 also the batch mean / variance as outputs 4 and 5). In inference form the
    optional outputs, if named, are the running statistics unchanged."""

    def training(self, node) -> bool:
        if node.opset >= 14:
            return bool(int(node.attrs.get("training_mode", 0)))
        return len(node.outputs) > 1 and any(node.outputs[1:])

    def affine(self, node, ins, dt):
        params = ins[1:5]
        cached = node.attrs.get("_bn_affine")
        if cached is not None and cached[2] == dt and all(p is q for p, q in zip(cached[0], params)):
            return cached[1]
        scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        eps = float(node.attrs.get("epsilon", 1e-5))
        a = scale / np.sqrt(var + eps)
        b = bias - mean * a
        ab = (a.astype(dt), b.astype(dt))
        node.attrs["_bn_affine"] = (tuple(params), ab, dt)      # keeps the parameter arrays alive
        return ab

    def forward(self, node, ins, record):
        x = ins[0]
        if self.training(node):
            eps = float(node.attrs.get("epsilon", 1e-5))
            return self.forward_training(node, x, *ins[1:5], eps, record)
        a, b = self.affine(node, ins, x.dtype)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        a, b = a.reshape(shape), b.reshape(shape)
        if donated(ins, 0) and x.dtype.kind == "f":
            y = x
            y *= a
        else:
            y = x * a
        y += b
        mean, var = ins[3], ins[4]
        outs = [y] + [mean, var, mean, var][:max(len(node.outputs) - 1, 0)]
        return outs, (("inference", a) if record else None), 0

    def forward_training(self, node, x, scale, bias, mean, var, eps, record):
        momentum = float(node.attrs.get("momentum", 0.9))
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mu = x.mean(axis=axes)
        sigma2 = x.var(axis=axes)
        inv = 1 / np.sqrt(sigma2 + eps)
        xhat = (x - mu.reshape(shape)) * inv.reshape(shape).astype(x.dtype)
        y = xhat * scale.reshape(shape).astype(x.dtype) + bias.reshape(shape).astype(x.dtype)
        run_mean = (mean * momentum + mu * (1 - momentum)).astype(mean.dtype)
        run_var = (var * momentum + sigma2 * (1 - momentum)).astype(var.dtype)
        outs = [y, run_mean, run_var, mu.astype(mean.dtype), sigma2.astype(var.dtype)]
        saved = ("training", (xhat, (scale * inv).reshape(shape).astype(x.dtype), axes)) if record else None
        return outs[:max(len(node.outputs), 1)], saved, 0

    def backward(self, node, saved, douts, need):
        res = [None] * 5
        if not need[0]:
            return res
        kind, ctx = saved
        g = douts[0]
        if kind == "inference":
            res[0] = g * ctx
            return res
        xhat, a, axes = ctx          # batch statistics depend on x too
        m = g.size // g.shape[1]
        res[0] = a * (g - g.mean(axis=axes, keepdims=True)
                      - xhat * (g * xhat).sum(axis=axes, keepdims=True) / m)
        return res


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
