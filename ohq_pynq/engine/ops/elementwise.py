"""Activations (ReLU family, sigmoids, HardSwish, Tanh, Clip, PRelu, Elu/Selu, Softplus, Mish,
Gelu), math functions (Exp, Log, Sqrt, Pow, Erf, Abs, Neg, Reciprocal), binary and variadic
arithmetic with broadcasting (Add/Sub/Mul/Div, Sum/Mean/Max/Min), Softmax / LogSoftmax: forward
and input gradient."""
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



_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


def erf(x) -> np.ndarray:
    """The error function in float64, accurate to ~1e-15 (numpy has none and scipy is not on
    every board): a positive-term power series for |x| < 2.5, the erfc continued fraction beyond."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    small = a < 2.5
    if small.any():
        s = a[small]
        s2 = s * s
        term, total = s.copy(), s.copy()
        for n in range(1, 120):         # erf(s) = 2/sqrt(pi) e^-s^2 sum 2^n s^(2n+1) / (2n+1)!!
            term *= 2 * s2 / (2 * n + 1)
            total += term
            if n > 8 and np.all(term <= 1e-17 * total):
                break
        out[small] = _TWO_OVER_SQRT_PI * np.exp(-s2) * total
    if not small.all():
        b = a[~small]
        f = b.copy()                    # erfc(b) = e^-b^2 / sqrt(pi) / (b + (1/2)/(b + 1/(b + ...)))
        for k in range(60, 0, -1):
            f = b + (k / 2) / f
        out[~small] = 1.0 - np.exp(-b * b) / (np.sqrt(np.pi) * f)
    return np.copysign(out, x)


def _softplus(x, node=None, inplace=False):
    return np.logaddexp(x.dtype.type(0), x)


def _mish(x, node, inplace=False):
    return x * np.tanh(_softplus(x))


def _mish_d(x, y, node):
    t = np.tanh(_softplus(x))
    return t + x * (1 - t * t) * _sigmoid(x, None)


_GELU_C = np.sqrt(2 / np.pi)


def _gelu_tanh(node) -> bool:
    v = node.attrs.get("approximate", b"none")
    return (v.decode() if isinstance(v, bytes) else v) == "tanh"


def _gelu(x, node, inplace=False):
    if _gelu_tanh(node):
        t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
        return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)
    return (0.5 * x * (1 + erf(x / np.sqrt(2)))).astype(x.dtype, copy=False)


def _gelu_d(x, y, node):
    if _gelu_tanh(node):
        t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x)
    return 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def _elu(x, node, inplace=False):
    a = x.dtype.type(node.attrs.get("alpha", 1.0))
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


def _elu_d(x, y, node):
    a = node.attrs.get("alpha", 1.0)
    return np.where(x > 0, 1, a * np.exp(np.minimum(x, 0))).astype(x.dtype)


_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _selu(x, node, inplace=False):
    a = node.attrs.get("alpha", _SELU_ALPHA)
    g = node.attrs.get("gamma", _SELU_GAMMA)
    return (g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))).astype(x.dtype)


def _selu_d(x, y, node):
    a = node.attrs.get("alpha", _SELU_ALPHA)
    g = node.attrs.get("gamma", _SELU_GAMMA)
    return (g * np.where(x > 0, 1, a * np.exp(np.minimum(x, 0)))).astype(x.dtype)


class Pow(Op):
    """x ** p with broadcasting; the result has the type of x (as ONNX says)."""

    def forward(self, node, ins, record):
        a, b = np.asarray(ins[0]), np.asarray(ins[1])
        if a.dtype.kind == "f":
            y = np.power(a, b.astype(a.dtype))
        else:
            y = np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
        return [y], ((a, b, y) if record else None), 0

    def backward(self, node, saved, douts, need):
        a, b, y = saved
        g = douts[0]
        da = db = None
        if need[0]:
            bb = b.astype(g.dtype)
            da = unbroadcast(g * bb * np.power(a, bb - 1), a.shape)
        if need[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                db = unbroadcast(np.where(a > 0, g * y * np.log(np.where(a > 0, a, 1)), 0), b.shape)
        return [da, db]


class PRelu(Op):
    """y = x if x >= 0 else slope * x; slope broadcasts to x (per channel in CNNs)."""

    def forward(self, node, ins, record):
        x, slope = ins[0], np.asarray(ins[1]).astype(ins[0].dtype, copy=False)
        if slope.ndim == 1 and x.ndim > 2 and slope.size == x.shape[1] and slope.size != x.shape[-1]:
            slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))    # opset < 7 style per-channel
        y = np.where(x < 0, x * slope, x)
        return [y], ((x, slope, np.shape(ins[1])) if record else None), 0

    def backward(self, node, saved, douts, need):
        x, slope, sshape = saved
        g = douts[0]
        neg = x < 0
        dx = g * np.where(neg, slope, 1) if need[0] else None
        ds = None
        if need[1]:
            ds = unbroadcast(np.where(neg, g * x, 0), slope.shape).reshape(sshape)
        return [dx, ds]


class Variadic(Op):
    """Sum / Mean / Max / Min of any number of inputs, with multidirectional broadcasting.
    Max/Min send the gradient to the first input holding the extreme value."""

    def __init__(self, kind):
        self.kind = kind

    def forward(self, node, ins, record):
        ins = [np.asarray(v) for v in ins]
        y = ins[0]
        for v in ins[1:]:
            if self.kind in ("Sum", "Mean"):
                y = y + v
            elif self.kind == "Max":
                y = np.maximum(y, v)
            else:
                y = np.minimum(y, v)
        if self.kind == "Mean":
            y = y / y.dtype.type(len(ins)) if y.dtype.kind == "f" else y // len(ins)
        y = np.asarray(y, dtype=np.result_type(*ins))
        if len(ins) == 1:
            y = y.copy()
        saved = None
        if record:
            saved = ([v.shape for v in ins], ins if self.kind in ("Max", "Min") else None, y)
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        shapes, ins, y = saved
        g = douts[0]
        if self.kind == "Sum":
            return [unbroadcast(g, s) if nd else None for s, nd in zip(shapes, need)]
        if self.kind == "Mean":
            return [unbroadcast(g / len(shapes), s) if nd else None for s, nd in zip(shapes, need)]
        free = np.ones(y.shape, dtype=bool)
        res = []
        for v, s, nd in zip(ins, shapes, need):
            hit = free & (np.broadcast_to(v, y.shape) == y)
            free &= ~hit
            res.append(unbroadcast(np.where(hit, g, 0), s) if nd else None)
        return res


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
    "PRelu": PRelu(),
    "Elu": Unary(_elu, _elu_d, save="mask"),
    "Selu": Unary(_selu, _selu_d, save="mask"),
    "Softplus": Unary(_softplus, lambda x, y, n: _sigmoid(x, None), save="mask"),
    "Mish": Unary(_mish, _mish_d, save="mask"),
    "Gelu": Unary(_gelu, _gelu_d, save="mask"),
    "Exp": Unary(lambda x, n, inplace: np.exp(x), lambda x, y, n: y, save="y"),
    "Log": Unary(lambda x, n, inplace: np.log(x), lambda x, y, n: 1 / x, save="x"),
    "Sqrt": Unary(lambda x, n, inplace: np.sqrt(x), lambda x, y, n: 0.5 / y, save="y"),
    "Erf": Unary(lambda x, n, inplace: erf(x).astype(x.dtype),
                 lambda x, y, n: (_TWO_OVER_SQRT_PI * np.exp(-x * x)).astype(x.dtype), save="mask"),
    "Abs": Unary(lambda x, n, inplace: np.abs(x), lambda x, y, n: np.sign(x).astype(x.dtype), save="mask"),
    "Neg": Unary(lambda x, n, inplace: np.negative(x), lambda x, y, n: np.full(x.shape, -1, x.dtype),
                 save="mask"),
    "Reciprocal": Unary(lambda x, n, inplace: np.reciprocal(x), lambda x, y, n: -y * y, save="y"),
    "Pow": Pow(),
    "Sum": Variadic("Sum"),
    "Mean": Variadic("Mean"),
    "Max": Variadic("Max"),
    "Min": Variadic("Min"),
}
