"""Activations (ReLU family, sigmoids, HardSwish, Tanh, Clip), binary arithmetic with
broadcasting, Softmax / LogSoftmax: forward and input gradient."""
from __future__ import annotations

import numpy as np

from .base import Op, donated, unbroadcast


class Unary(Op):
    """Elementwise op given ``f(x, node, inplace) -> y`` and ``df(x, y, node) -> dy/dx`` (saved
    as needed). With ``inplace`` (the engine donated x) f may overwrite x and return it; a
    ``save="mask"`` derivative is then computed from y, so it must depend on y alone
    (``mask_from_y``), otherwise x is copied first."""

    def __init__(self, f, df, save="x", mask_from_y=False):
        self.f, self.df, self.save, self.mask_from_y = f, df, save, mask_from_y

    def forward(self, node, ins, record):
        x = ins[0]
        inplace = donated(ins, 0) and x.dtype.kind == "f"
        saved = None
        if record and self.save == "mask" and not self.mask_from_y:
            saved = self.df(x, None, node)           # from x, before f may overwrite it
            y = self.f(x, node, inplace)
        else:
            y = self.f(x, node, inplace and not (record and self.save == "x"))
            if record:
                saved = self.save_ctx(x, y, node)
        return [y], saved, 0

    def save_ctx(self, x, y, node):
        if self.save == "mask":
            return self.df(x, y, node)   # a small derivative array (bool / float)
        return (x if self.save == "x" else None, y if self.save == "y" else None)

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        if self.save == "mask":
            return [douts[0] * saved]
        x, y = saved
        return [douts[0] * self.df(x, y, node)]


def _hs_params(node):
    return float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))


def _relu(x, node, inplace):
    return np.maximum(x, x.dtype.type(0), out=x if inplace else None)


def _hardsigmoid(x, node, inplace):
    a, b = _hs_params(node)
    y = np.multiply(x, x.dtype.type(a), out=x if inplace else None)
    y += x.dtype.type(b)
    return np.clip(y, 0, 1, out=y)


def _hardsigmoid_d(x, y, node):
    """alpha where 0 < y < 1 (y = the output), else 0; as float of the input's dtype."""
    a, _ = _hs_params(node)
    inside = np.greater(y, 0)
    inside &= y < 1
    return np.multiply(inside, y.dtype.type(a), dtype=y.dtype)


def _hardswish(x, node, inplace):
    t = x * x.dtype.type(1 / 6)
    t += x.dtype.type(0.5)
    np.clip(t, 0, 1, out=t)
    t *= x
    return t


def _hardswish_d(x, y, node):
    """d/dx x * clip(x/6 + 1/2, 0, 1) = 0 below -3, 1 above 3, x/3 + 1/2 in between (plain
    arithmetic on masks: masked assignment is much slower)."""
    dt = x.dtype.type
    g = x * dt(1 / 3)
    g += dt(0.5)
    mask = np.less_equal(np.abs(x), dt(3))
    g *= mask
    np.greater(x, dt(3), out=mask)
    g += mask
    return g


def _sigmoid(x, node, inplace=False):
    # Stable in both tails; float32 in, float32 out.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Clip(Op):
    def bounds(self, node, ins):
        lo = hi = None
        if len(ins) > 1 and ins[1] is not None:
            lo = ins[1]
        elif "min" in node.attrs and node.opset < 11:
            lo = node.attrs["min"]
        if len(ins) > 2 and ins[2] is not None:
            hi = ins[2]
        elif "max" in node.attrs and node.opset < 11:
            hi = node.attrs["max"]
        return lo, hi

    def forward(self, node, ins, record):
        x = ins[0]
        lo, hi = self.bounds(node, ins)
        lo = None if lo is None else np.asarray(lo, dtype=x.dtype)
        hi = None if hi is None else np.asarray(hi, dtype=x.dtype)
        saved = None
        if record:                                   # from x, before it may be overwritten
            mask = np.ones(x.shape, dtype=bool)
            if lo is not None:
                mask &= x >= lo
            if hi is not None:
                mask &= x <= hi
            saved = mask
        out = x if donated(ins, 0) else None
        if lo is None and hi is None:
            y = x if out is not None else x.copy()
        else:
            y = np.clip(x, lo, hi, out=out)
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        return [douts[0] * saved if need[0] else None, None, None]


class Binary(Op):
    def __init__(self, kind):
        self.kind = kind

    UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}

    def _out(self, ins, record):
        """A donated float operand of the result's shape and dtype to write into (not one that
        ``record`` keeps for the gradient), else None."""
        a, b = ins[0], ins[1]
        for k, v in ((0, a), (1, b)):
            if not donated(ins, k) or v.dtype.kind != "f":
                continue
            if record and (self.kind == "Mul" or (self.kind == "Div" and k == 1)):
                continue
            if (np.result_type(a, b) == v.dtype
                    and np.broadcast_shapes(np.shape(a), np.shape(b)) == v.shape):
                return v
        return None

    def forward(self, node, ins, record):
        a, b = ins[0], ins[1]
        if self.kind != "Div" or a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
            y = self.UFUNCS[self.kind](a, b, out=self._out(ins, record))
        else:
            y = np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
        if isinstance(y, np.ndarray) and y.dtype != a.dtype and a.dtype.kind == "f" and y.dtype.kind == "f":
            y = y.astype(a.dtype)
        saved = None
        if record:
            keep_a = self.kind in ("Mul",)
            keep_b = self.kind in ("Mul", "Div")
            saved = (np.shape(a), np.shape(b), a if keep_a else None, b if keep_b else None,
                     y if self.kind == "Div" else None)
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        sa, sb, a, b, y = saved
        g = douts[0]
        da = db = None
        if self.kind == "Add":
            da = unbroadcast(g, sa) if need[0] else None
            db = unbroadcast(g, sb) if need[1] else None
        elif self.kind == "Sub":
            da = unbroadcast(g, sa) if need[0] else None
            db = unbroadcast(-g, sb) if need[1] else None
        elif self.kind == "Mul":
            da = unbroadcast(g * b, sa) if need[0] else None
            db = unbroadcast(g * a, sb) if need[1] else None
        else:
            da = unbroadcast(g / b, sa) if need[0] else None
            db = unbroadcast(-g * y / b, sb) if need[1] else None
        return [da, db]


class Softmax(Op):
    def __init__(self, log=False):
        self.log = log

    def _axis(self, node, x):
        default = -1 if node.opset >= 13 else 1
        return int(node.attrs.get("axis", default)) % x.ndim

    def forward(self, node, ins, record):
        x = ins[0]
        ax = self._axis(node, x)
        shape = x.shape
        if node.opset < 13:   # old semantics: coerce to 2-D at axis
            x = x.reshape(int(np.prod(shape[:ax])), -1)
            ax = 1
        else:
            x = x.reshape(shape)
        z = x - x.max(axis=ax, keepdims=True)
        if self.log:
            y = z - np.log(np.exp(z).sum(axis=ax, keepdims=True))
        else:
            e = np.exp(z)
            y = e / e.sum(axis=ax, keepdims=True)
        saved = (y, ax, shape) if record else None
        return [y.reshape(shape)], saved, 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        y, ax, shape = saved
        g = douts[0].reshape(y.shape)
        if self.log:
            dx = g - np.exp(y) * g.sum(axis=ax, keepdims=True)
        else:
            dx = y * (g - (g * y).sum(axis=ax, keepdims=True))
        return [dx.reshape(shape)]


OPS: dict[str, Op] = {
    "Relu": Unary(_relu, lambda x, y, n: y > 0, save="mask", mask_from_y=True),
    "LeakyRelu": Unary(
        lambda x, n, inplace: np.where(x >= 0, x, x * x.dtype.type(n.attrs.get("alpha", 0.01))),
        lambda x, y, n: np.where(x >= 0, 1, n.attrs.get("alpha", 0.01)).astype(x.dtype), save="mask"),
    "Clip": Clip(),
    "HardSigmoid": Unary(_hardsigmoid, _hardsigmoid_d, save="mask", mask_from_y=True),
    "HardSwish": Unary(_hardswish, _hardswish_d, save="mask"),
    "Sigmoid": Unary(_sigmoid, lambda x, y, n: y * (1 - y), save="mask", mask_from_y=True),
    "Tanh": Unary(lambda x, n, inplace: np.tanh(x), lambda x, y, n: 1 - y * y, save="mask",
                  mask_from_y=True),
    "Add": Binary("Add"),
    "Sub": Binary("Sub"),
    "Mul": Binary("Mul"),
    "Div": Binary("Div"),
    "Softmax": Softmax(),
    "LogSoftmax": Softmax(log=True),
}
