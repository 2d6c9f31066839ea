"""Numpy executor of an ONNX CNN graph: forward pass and reverse-mode gradient w.r.t. the input.

The path every on-board stage can rely on (armv7 boards have no onnxruntime). ``Engine(model)``
prepares the graph once; ``run`` evaluates it in micro-batches; ``forward`` returns chosen tensors
and a tape that ``backward`` turns into ``dL/dinput``. Initializers can be replaced per call
(``overrides``) without rebuilding anything. Convolutions use im2col + one BLAS GEMM (depthwise:
one multiply-add per kernel tap, no im2col); nothing loops over pixels in Python.

QuantizeLinear / DequantizeLinear follow opset 21 (per-tensor and per-axis, int8/uint8/int4/uint4,
round half to even, saturate) and match onnxruntime bit for bit. 4-bit tensors are held as
int8 / uint8 arrays with values in [-8, 7] / [0, 15]. In ``backward`` they pass gradients
straight through (zero where the quantizer saturates).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .errors import DataError, ModelError, UnsupportedOpError

# onnx elem type -> (numpy dtype used to hold it, qmin, qmax) for the quantized integer types.
_QTYPES = {
    TensorProto.INT8: (np.int8, -128, 127),
    TensorProto.UINT8: (np.uint8, 0, 255),
    TensorProto.INT4: (np.int8, -8, 7),
    TensorProto.UINT4: (np.uint8, 0, 15),
    TensorProto.INT16: (np.int16, -32768, 32767),
    TensorProto.UINT16: (np.uint16, 0, 65535),
}
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)

DEFAULT_MEMORY_BYTES = 128 << 20   # working-set budget for automatic micro-batching (bytes)


# ----------------------------------------------------------------------------------------- loading

def tensor_to_array(t: TensorProto) -> np.ndarray:
    """An initializer as numpy; INT4/UINT4 are unpacked to int8/uint8 (independent of onnx/ml_dtypes)."""
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        if t.HasField("raw_data") or t.raw_data:
            packed = np.frombuffer(t.raw_data, dtype=np.uint8)
        elif t.data_location == TensorProto.EXTERNAL:
            a = numpy_helper.to_array(t)
            return a.astype(np.int8 if t.data_type == TensorProto.INT4 else np.uint8)
        else:
            packed = np.asarray(t.int32_data, dtype=np.int64).astype(np.uint8)
        nib = np.empty(packed.size * 2, dtype=np.uint8)
        nib[0::2] = packed & 0x0F
        nib[1::2] = packed >> 4
        nib = nib[:n]
        if t.data_type == TensorProto.INT4:
            out = nib.astype(np.int8)
            out[out > 7] -= 16
        else:
            out = nib
        return out.reshape(tuple(t.dims))
    a = numpy_helper.to_array(t)
    if a.dtype.kind not in "biuf":      # e.g. ml_dtypes / custom element types
        a = a.astype(np.float32)
    return np.array(a)                  # own, writeable copy


def _load(model: Any) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        try:
            from .graph import load_model  # the lead's loader with clear errors, once present
        except ImportError:
            load_model = None
        if load_model is not None:
            return load_model(model)
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            return onnx.load(str(path))
        except Exception as err:  # noqa: BLE001 - any parse failure is a user-facing model error
            raise ModelError(f"{path} is not a readable ONNX model: {err}") from None
    raise ModelError(f"expected an ONNX model or a path, got {type(model).__name__}")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = a.t
        else:
            out[a.name] = onnx.helper.get_attribute_value(a)
    return out


@dataclass
class _Node:
    index: int
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    spec: "_Op"
    opset: int


@dataclass
class Tape:
    """What ``backward`` needs from one ``forward``: per executed node, the saved context."""

    entries: list[tuple[_Node, Any] | None]
    requires: set[str]
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    nbytes: int = 0


# ------------------------------------------------------------------------------------- op helpers

def _pair(v, default, n=2):
    if v is None:
        return (default,) * n
    return tuple(int(i) for i in v)


def _spatial(node: _Node, in_hw: tuple[int, int], kernel: tuple[int, int]):
    """(stride, dilation, pads top/left/bottom/right) for Conv / pooling, auto_pad resolved."""
    a = node.attrs
    stride = _pair(a.get("strides"), 1)
    dil = _pair(a.get("dilations"), 1)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        p = a.get("pads") or [0, 0, 0, 0]
        pads = (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        pb = []
        for i in range(2):
            out = -(-in_hw[i] // stride[i])
            total = max((out - 1) * stride[i] + (kernel[i] - 1) * dil[i] + 1 - in_hw[i], 0)
            small, big = total // 2, total - total // 2
            pb.append((big, small) if auto == "SAME_LOWER" else (small, big))
        pads = (pb[0][0], pb[1][0], pb[0][1], pb[1][1])
    return stride, dil, pads


def _windows(xp: np.ndarray, k, s, d, out) -> np.ndarray:
    """Read-only strided view (N, C, kh, kw, oh, ow) of a padded NCHW array."""
    n, c = xp.shape[:2]
    st = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, k[0], k[1], out[0], out[1]),
        (st[0], st[1], st[2] * d[0], st[3] * d[1], st[2] * s[0], st[3] * s[1]), writeable=False)


def _tap(i: int, j: int, s, d, out) -> tuple[slice, slice, slice, slice]:
    """Index of kernel tap (i, j) over all outputs in a padded NCHW array."""
    return (slice(None), slice(None),
            slice(i * d[0], i * d[0] + s[0] * (out[0] - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (out[1] - 1) + 1, s[1]))


def _pad(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    t, l, b, r = pads
    if not (t or l or b or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def _crop(xp: np.ndarray, pads, hw) -> np.ndarray:
    t, l = pads[0], pads[1]
    return xp[:, :, t:t + hw[0], l:l + hw[1]]


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _axes_arg(node: _Node, ins: list, pos: int, attr: str = "axes"):
    if len(ins) > pos and ins[pos] is not None:
        return [int(v) for v in np.asarray(ins[pos]).reshape(-1)]
    v = node.attrs.get(attr)
    return None if v is None else [int(i) for i in v]


# ------------------------------------------------------------------------------------------- ops

class _Op:
    """One operator: ``forward(node, ins, record) -> (outs, saved)`` and
    ``backward(node, saved, douts, need) -> dins`` (``need[i]``: input i wants a gradient)."""

    differentiable = True

    def forward(self, node, ins, record):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, node, saved, douts, need):  # pragma: no cover - interface
        raise NotImplementedError


class _Conv(_Op):
    def forward(self, node, ins, record):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        n, c, h, wd = x.shape
        m, cg, kh, kw = w.shape
        g = int(node.attrs.get("group", 1))
        if cg * g != c:
            raise ModelError(f"Conv {node.name!r}: weight expects {cg * g} input channels, got {c}")
        k = (kh, kw)
        s, d, pads = _spatial(node, (h, wd), k)
        oh = (h + pads[0] + pads[2] - (kh - 1) * d[0] - 1) // s[0] + 1
        ow = (wd + pads[1] + pads[3] - (kw - 1) * d[1] - 1) // s[1] + 1
        out = (oh, ow)
        if w.dtype != x.dtype:
            w = w.astype(x.dtype)
        scratch = 0
        if g == 1 and k == (1, 1) and s == (1, 1) and not any(pads):
            y = np.matmul(w.reshape(m, c), x.reshape(n, c, h * wd)).reshape(n, m, oh, ow)
        elif g == 1:
            xp = _pad(x, pads)
            win = _windows(xp, k, s, d, out)                      # (N,C,kh,kw,oh,ow)
            cols = win.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)
            y = (w.reshape(m, -1) @ cols).reshape(m, n, oh, ow)
            scratch = cols.nbytes + y.nbytes + (xp.nbytes if xp is not x else 0)
            del cols, win, xp
            y = np.ascontiguousarray(y.transpose(1, 0, 2, 3))
        elif cg == 1:                                             # depthwise (channel multiplier mg)
            mg = m // g
            xp = _pad(x, pads)
            wr = w.reshape(g, mg, kh, kw)
            y = np.zeros((n, g, mg, oh, ow), dtype=x.dtype)
            tmp = np.empty((n, g, oh, ow), dtype=x.dtype)
            for i in range(kh):
                for j in range(kw):
                    v = xp[_tap(i, j, s, d, out)]
                    for q in range(mg):
                        np.multiply(v, wr[None, :, q, i, j, None, None], out=tmp)
                        y[:, :, q] += tmp
            y = y.reshape(n, m, oh, ow)
        else:                                                     # grouped
            mg = m // g
            win = _windows(_pad(x, pads), k, s, d, out)
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
                    dxp[_tap(i, j, s, d, out)] += dcols[:, i, j].transpose(1, 0, 2, 3)
        elif cg == 1:
            mg = m // g
            dyr = dy.reshape(n, g, mg, out[0], out[1])
            wr = w.reshape(g, mg, kh, kw)
            for i in range(kh):
                for j in range(kw):
                    if mg == 1:
                        dxp[_tap(i, j, s, d, out)] += dyr[:, :, 0] * wr[None, :, 0, i, j, None, None]
                    else:
                        dxp[_tap(i, j, s, d, out)] += (
                            dyr * wr[None, :, :, i, j, None, None]).sum(axis=2)
        else:
            mg = m // g
            wt = w.reshape(g, mg, cg * kh * kw).transpose(0, 2, 1)
            dcols = np.matmul(wt, dy.reshape(n, g, mg, -1))   # (N,G,Cg*kh*kw,P)
            dcols = dcols.reshape(n, c, kh, kw, out[0], out[1])
            for i in range(kh):
                for j in range(kw):
                    dxp[_tap(i, j, s, d, out)] += dcols[:, :, i, j]
        res[0] = np.ascontiguousarray(_crop(dxp, pads, (h, wd)))
        return res


class _BatchNorm(_Op):
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


class _Unary(_Op):
    """Elementwise op given ``f(x, node) -> y`` and ``df(x, y, node) -> dy/dx`` (saved as needed)."""

    def __init__(self, f, df, save="x"):
        self.f, self.df, self.save = f, df, save

    def forward(self, node, ins, record):
        x = ins[0]
        y = self.f(x, node)
        saved = None
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


def _relu(x, node):
    return np.maximum(x, 0)


def _hardsigmoid(x, node):
    a, b = _hs_params(node)
    y = x * x.dtype.type(a)
    y += x.dtype.type(b)
    return np.clip(y, 0, 1, out=y)


def _hardsigmoid_d(x, y, node):
    a, b = _hs_params(node)
    v = x * a + b
    return ((v > 0) & (v < 1)).astype(x.dtype) * x.dtype.type(a)


def _hardswish(x, node):
    t = x * x.dtype.type(1 / 6)
    t += x.dtype.type(0.5)
    np.clip(t, 0, 1, out=t)
    t *= x
    return t


def _hardswish_d(x, y, node):
    g = x * x.dtype.type(1 / 3) + x.dtype.type(0.5)
    g[x < -3] = 0
    g[x > 3] = 1
    return g


def _sigmoid(x, node):
    # Stable in both tails; float32 in, float32 out.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class _Clip(_Op):
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
        y = x
        if lo is not None:
            y = np.maximum(y, np.asarray(lo, dtype=x.dtype))
        if hi is not None:
            y = np.minimum(y, np.asarray(hi, dtype=x.dtype))
        if y is x:
            y = x.copy()
        saved = None
        if record:
            mask = np.ones(x.shape, dtype=bool)
            if lo is not None:
                mask &= x >= np.asarray(lo, dtype=x.dtype)
            if hi is not None:
                mask &= x <= np.asarray(hi, dtype=x.dtype)
            saved = mask
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        return [douts[0] * saved if need[0] else None, None, None]


class _Binary(_Op):
    def __init__(self, kind):
        self.kind = kind

    def forward(self, node, ins, record):
        a, b = ins[0], ins[1]
        if self.kind == "Add":
            y = np.add(a, b)
        elif self.kind == "Sub":
            y = np.subtract(a, b)
        elif self.kind == "Mul":
            y = np.multiply(a, b)
        else:
            if a.dtype.kind in "iu" and b.dtype.kind in "iu":
                y = np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
            else:
                y = np.divide(a, b)
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
            da = _unbroadcast(g, sa) if need[0] else None
            db = _unbroadcast(g, sb) if need[1] else None
        elif self.kind == "Sub":
            da = _unbroadcast(g, sa) if need[0] else None
            db = _unbroadcast(-g, sb) if need[1] else None
        elif self.kind == "Mul":
            da = _unbroadcast(g * b, sa) if need[0] else None
            db = _unbroadcast(g * a, sb) if need[1] else None
        else:
            da = _unbroadcast(g / b, sa) if need[0] else None
            db = _unbroadcast(-g * y / b, sb) if need[1] else None
        return [da, db]


def _pool_geometry(node, x, k):
    n, c, h, w = x.shape
    s, d, pads = _spatial(node, (h, w), k)
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


class _MaxPool(_Op):
    def forward(self, node, ins, record):
        x = ins[0]
        if len(node.outputs) > 1 and node.outputs[1]:
            raise UnsupportedOpError([(node.name, "MaxPool with Indices output")])
        k = _pair(node.attrs["kernel_shape"], 1)
        s, d, _, full, out = _pool_geometry(node, x, k)
        xp = _pad(x, full, value=-np.inf)
        y = None
        idx = np.zeros(x.shape[:2] + out, dtype=np.uint8) if record else None
        t = 0
        for i in range(k[0]):
            for j in range(k[1]):
                v = xp[_tap(i, j, s, d, out)]
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

    def backward(self, node, saved, douts, need):
        idx, xshape, s, d, full, out, k = saved
        if not need[0]:
            return [None]
        dy = douts[0]
        n, c, h, w = xshape
        dxp = np.zeros((n, c, h + full[0] + full[2], w + full[1] + full[3]), dtype=dy.dtype)
        t = 0
        for i in range(k[0]):
            for j in range(k[1]):
                dxp[_tap(i, j, s, d, out)] += np.where(idx == t, dy, 0)
                t += 1
        return [np.ascontiguousarray(_crop(dxp, full, (h, w)))]


class _AveragePool(_Op):
    def forward(self, node, ins, record):
        x = ins[0]
        k = _pair(node.attrs["kernel_shape"], 1)
        s, d, pads, full, out = _pool_geometry(node, x, k)
        n, c, h, w = x.shape
        xp = _pad(x, full)
        y = np.zeros((n, c) + out, dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                y += xp[_tap(i, j, s, d, out)]
        # Divisor: window elements inside the image (count_include_pad=0) or inside image + pads.
        ones = np.zeros((1, 1, h + full[0] + full[2], w + full[1] + full[3]), dtype=x.dtype)
        if int(node.attrs.get("count_include_pad", 0)):
            ones[:, :, :h + pads[0] + pads[2], :w + pads[1] + pads[3]] = 1
        else:
            ones[:, :, full[0]:full[0] + h, full[1]:full[1] + w] = 1
        cnt = np.zeros((1, 1) + out, dtype=x.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                cnt += ones[_tap(i, j, s, d, out)]
        y /= np.maximum(cnt, 1)
        saved = (cnt, x.shape, s, d, full, out, k) if record else None
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        cnt, xshape, s, d, full, out, k = saved
        if not need[0]:
            return [None]
        dy = douts[0] / np.maximum(cnt, 1)
        n, c, h, w = xshape
        dxp = np.zeros((n, c, h + full[0] + full[2], w + full[1] + full[3]), dtype=dy.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                dxp[_tap(i, j, s, d, out)] += dy
        return [np.ascontiguousarray(_crop(dxp, full, (h, w)))]


class _GlobalAveragePool(_Op):
    def forward(self, node, ins, record):
        x = ins[0]
        axes = tuple(range(2, x.ndim))
        return [x.mean(axis=axes, keepdims=True, dtype=x.dtype)], (x.shape if record else None), 0

    def backward(self, node, saved, douts, need):
        if not need[0]:
            return [None]
        cnt = int(np.prod(saved[2:]))
        return [np.broadcast_to(douts[0] / cnt, saved).copy()]


class _ReduceMean(_Op):
    def forward(self, node, ins, record):
        x = ins[0]
        axes = _axes_arg(node, ins, 1)
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


class _ReshapeLike(_Op):
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
            axes = _axes_arg(node, ins, 1)
            if axes is None:
                axes = [i for i, n in enumerate(x.shape) if n == 1]
            y = np.squeeze(x, axis=tuple(a % x.ndim for a in axes))
        else:  # Unsqueeze
            axes = _axes_arg(node, ins, 1)
            nd = x.ndim + len(axes)
            y = np.expand_dims(x, tuple(sorted(a % nd for a in axes)))
        return [y], (np.shape(x) if record else None), 0

    def backward(self, node, saved, douts, need):
        res = [None] * 2
        if need[0]:
            res[0] = douts[0].reshape(saved)
        return res


class _Concat(_Op):
    def forward(self, node, ins, record):
        ax = int(node.attrs["axis"])
        y = np.concatenate([np.asarray(i) for i in ins], axis=ax)
        saved = ([np.shape(i)[ax] for i in ins], ax % y.ndim) if record else None
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        sizes, ax = saved
        parts = np.split(douts[0], np.cumsum(sizes)[:-1], axis=ax)
        return [p if nd else None for p, nd in zip(parts, need)]


class _Transpose(_Op):
    def forward(self, node, ins, record):
        x = ins[0]
        perm = node.attrs.get("perm")
        perm = list(range(x.ndim))[::-1] if perm is None else [int(p) for p in perm]
        return [np.ascontiguousarray(x.transpose(perm))], (perm if record else None), 0

    def backward(self, node, saved, douts, need):
        return [douts[0].transpose(np.argsort(saved)) if need[0] else None]


class _Gemm(_Op):
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


class _MatMul(_Op):
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
            res[0] = _unbroadcast(da, a2.shape).reshape(a.shape)
        if need[1]:
            db = np.matmul(np.swapaxes(a2, -1, -2).astype(g.dtype, copy=False), g2)
            res[1] = _unbroadcast(db, b2.shape).reshape(b.shape)
        return res


class _Softmax(_Op):
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


class _Gather(_Op):
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


class _Slice(_Op):
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


class _NonDiff(_Op):
    """Ops on shapes/integers: never on a gradient path (``backward`` raises if they are)."""

    differentiable = False

    def __init__(self, f):
        self.f = f

    def forward(self, node, ins, record):
        return self.f(node, ins), None, 0

    def backward(self, node, saved, douts, need):
        raise ModelError(f"cannot differentiate through {node.op} node {node.name!r}")


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


class _Quantize(_Op):
    """QuantizeLinear (opset 10-21): saturate(round_half_even(x / scale) + zero_point)."""

    def forward(self, node, ins, record):
        x, scale = ins[0], ins[1]
        zp = ins[2] if len(ins) > 2 else None
        if int(node.attrs.get("block_size", 0)):
            raise UnsupportedOpError([(node.name, "QuantizeLinear with block_size")])
        qtype = node.attrs["_qtype"]
        npdt, qmin, qmax = _QTYPES[qtype]
        ax = int(node.attrs.get("axis", 1))
        scale = np.asarray(scale, dtype=np.float32)
        shape = _axis_shape(x.ndim, ax, scale)
        q = np.rint(x.astype(np.float32, copy=False) / scale.reshape(shape))
        if zp is not None:
            q += np.asarray(zp, dtype=np.float32).reshape(shape)
        np.clip(q, qmin, qmax, out=q)
        y = q.astype(npdt)
        saved = None
        if record:
            inside = (q > qmin) & (q < qmax)
            saved = (scale.reshape(shape), inside)
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        scale, inside = saved
        if not need[0]:
            return [None] * 3
        return [douts[0] / scale * inside, None, None]


class _Dequantize(_Op):
    """DequantizeLinear (opset 10-21): (x - zero_point) * scale, in float32."""

    def forward(self, node, ins, record):
        x, scale = ins[0], ins[1]
        zp = ins[2] if len(ins) > 2 else None
        if int(node.attrs.get("block_size", 0)):
            raise UnsupportedOpError([(node.name, "DequantizeLinear with block_size")])
        scale = np.asarray(scale)
        ax = int(node.attrs.get("axis", 1))
        shape = _axis_shape(np.ndim(x), ax, scale)
        xi = np.asarray(x).astype(np.int32)
        if zp is not None:
            xi = xi - np.asarray(zp).astype(np.int32).reshape(shape)
        y = xi.astype(np.float32) * scale.astype(np.float32).reshape(shape)
        return [y], ((scale.astype(np.float32).reshape(shape)) if record else None), 0

    def backward(self, node, saved, douts, need):
        return [douts[0] * saved if need[0] else None, None, None]


def _axis_shape(ndim, axis, scale):
    if scale.size == 1 and scale.ndim <= 1:
        return ()
    shape = [1] * ndim
    shape[axis % ndim] = scale.size
    return tuple(shape)


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


OPS: dict[str, _Op] = {
    "Conv": _Conv(),
    "BatchNormalization": _BatchNorm(),
    "Relu": _Unary(_relu, lambda x, y, n: y > 0, save="mask"),
    "LeakyRelu": _Unary(
        lambda x, n: np.where(x >= 0, x, x * x.dtype.type(n.attrs.get("alpha", 0.01))),
        lambda x, y, n: np.where(x >= 0, 1, n.attrs.get("alpha", 0.01)).astype(x.dtype), save="mask"),
    "Clip": _Clip(),
    "HardSigmoid": _Unary(_hardsigmoid, _hardsigmoid_d, save="mask"),
    "HardSwish": _Unary(_hardswish, _hardswish_d, save="mask"),
    "Sigmoid": _Unary(_sigmoid, lambda x, y, n: y * (1 - y), save="mask"),
    "Tanh": _Unary(lambda x, n: np.tanh(x), lambda x, y, n: 1 - y * y, save="mask"),
    "Add": _Binary("Add"),
    "Sub": _Binary("Sub"),
    "Mul": _Binary("Mul"),
    "Div": _Binary("Div"),
    "MaxPool": _MaxPool(),
    "AveragePool": _AveragePool(),
    "GlobalAveragePool": _GlobalAveragePool(),
    "ReduceMean": _ReduceMean(),
    "Flatten": _ReshapeLike("Flatten"),
    "Reshape": _ReshapeLike("Reshape"),
    "Squeeze": _ReshapeLike("Squeeze"),
    "Unsqueeze": _ReshapeLike("Unsqueeze"),
    "Identity": _ReshapeLike("Identity"),
    "Dropout": _ReshapeLike("Identity"),
    "Concat": _Concat(),
    "Transpose": _Transpose(),
    "Gemm": _Gemm(),
    "MatMul": _MatMul(),
    "Softmax": _Softmax(),
    "LogSoftmax": _Softmax(log=True),
    "Gather": _Gather(),
    "Slice": _Slice(),
    "Shape": _NonDiff(_shape_op),
    "Cast": _NonDiff(_cast_op),
    "ConstantOfShape": _NonDiff(_constant_of_shape),
    "Constant": _NonDiff(_constant),
    "QuantizeLinear": _Quantize(),
    "DequantizeLinear": _Dequantize(),
}


# ---------------------------------------------------------------------------------------- engine

class Engine:
    """A prepared ONNX graph evaluated with numpy.

    ``dtype``: float type of the computation (float32; float64 for gradient checks).
    ``memory_bytes``: working-set budget used to pick the micro-batch size in :meth:`run`.
    ``keep_model``: keep the ``onnx.ModelProto`` as ``.model`` (False halves resident weights).
    """

    def __init__(self, model: Any, dtype=np.float32, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 keep_model: bool = True):
        model = _load(model)
        self.model = model if keep_model else None   # keep_model=False frees the proto's weights
        self.dtype = np.dtype(dtype)
        self.memory_bytes = int(memory_bytes)
        g = model.graph
        opset = 21
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                opset = int(imp.version)
        self.opset = opset
        self.elem_types: dict[str, int] = {}
        consts: dict[str, np.ndarray] = {}
        for t in g.initializer:
            a = tensor_to_array(t)
            if t.data_type in _FLOAT_TYPES:
                a = a.astype(self.dtype)
            consts[t.name] = a
            self.elem_types[t.name] = t.data_type
        init_names = set(consts)
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        if not self.input_names:
            raise ModelError("the model has no graph input (every input is an initializer)")
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in g.output]
        self.input_shapes = {}
        for i in g.input:
            if i.name in init_names:
                continue
            self.elem_types[i.name] = i.type.tensor_type.elem_type
            dims = i.type.tensor_type.shape.dim
            self.input_shapes[i.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.input_shape = self.input_shapes[self.input_name]

        # Nodes, checked and topologically ordered.
        unsupported, nodes = [], []
        for idx, nd in enumerate(g.node):
            name = nd.name or f"{nd.op_type}_{idx}"
            if nd.domain not in ("", "ai.onnx") or nd.op_type not in OPS:
                unsupported.append((name, nd.op_type if not nd.domain or nd.domain == "ai.onnx"
                                    else f"{nd.domain}.{nd.op_type}"))
                continue
            nodes.append(_Node(idx, name, nd.op_type, list(nd.input), list(nd.output),
                               _attrs(nd), OPS[nd.op_type], opset))
        if unsupported:
            raise UnsupportedOpError(unsupported)
        nodes = self._toposort(nodes, set(consts) | set(self.input_names))
        for nd in nodes:
            if nd.op == "Constant" and nd.attrs.get("value") is not None:
                self.elem_types[nd.outputs[0]] = nd.attrs["value"].data_type
        for nd in nodes:
            if nd.op == "QuantizeLinear":
                nd.attrs["_qtype"] = self._qtype(nd)

        # Fold nodes whose inputs are all constant (e.g. DequantizeLinear of weights); remember
        # them so per-call overrides of their inputs are re-propagated.
        const_names = set(consts)
        self._folded: list[_Node] = []
        runtime: list[_Node] = []
        for nd in nodes:
            if all((not i) or i in const_names for i in nd.inputs):
                outs, _, _ = _run_node(nd, [consts[i] if i else None for i in nd.inputs], False)
                for o, v in zip(nd.outputs, outs):
                    if o:
                        v = np.asarray(v)
                        if v.dtype.kind == "f" and v.dtype != self.dtype:
                            v = v.astype(self.dtype)
                        consts[o] = v
                        const_names.add(o)
                self._folded.append(nd)
            else:
                runtime.append(nd)
        self.consts = consts
        self.nodes = runtime
        self.producer = {o: nd for nd in runtime for o in nd.outputs if o}
        self._plans: dict[tuple, list[_Node]] = {}
        self._per_image: dict[tuple, int] = {}

    # ---------------------------------------------------------------------------------- graph
    @staticmethod
    def _toposort(nodes: list[_Node], available: set[str]) -> list[_Node]:
        avail = set(available) | {""}
        pending = list(nodes)
        out: list[_Node] = []
        while pending:
            rest = []
            for nd in pending:
                if all(i in avail for i in nd.inputs):
                    out.append(nd)
                    avail.update(nd.outputs)
                else:
                    rest.append(nd)
            if len(rest) == len(pending):
                missing = sorted({i for nd in rest for i in nd.inputs if i not in avail})
                raise ModelError(f"the graph is not computable: tensor(s) {missing[:5]} have no producer")
            pending = rest
        return out

    def _qtype(self, nd: _Node) -> int:
        if "output_dtype" in nd.attrs and int(nd.attrs["output_dtype"]):
            t = int(nd.attrs["output_dtype"])
        elif len(nd.inputs) > 2 and nd.inputs[2]:
            t = self.elem_types.get(nd.inputs[2], TensorProto.UINT8)
        else:
            t = TensorProto.UINT8
        if t not in _QTYPES:
            raise UnsupportedOpError([(nd.name, f"QuantizeLinear to {TensorProto.DataType.Name(t)}")])
        return t

    def _plan(self, wanted: tuple[str, ...]) -> list[_Node]:
        """Nodes needed to compute ``wanted``, in execution order."""
        plan = self._plans.get(wanted)
        if plan is not None:
            return plan
        need = set(wanted)
        keep: list[_Node] = []
        for nd in reversed(self.nodes):
            if any(o in need for o in nd.outputs):
                keep.append(nd)
                need.update(i for i in nd.inputs if i)
        plan = keep[::-1]
        self._plans[wanted] = plan
        return plan

    def tensor_names(self) -> list[str]:
        """Every tensor the graph computes at run time (node outputs), in execution order."""
        return [o for nd in self.nodes for o in nd.outputs if o]

    def nodes_of_type(self, op: str) -> list[_Node]:
        return [nd for nd in self.nodes if nd.op == op]

    # -------------------------------------------------------------------------------- forward
    def _consts_with(self, overrides: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if not overrides:
            return self.consts
        env = dict(self.consts)
        for k, v in overrides.items():
            if k not in env:
                raise ModelError(f"override {k!r} is not an initializer (or constant) of the model")
            v = np.asarray(v)
            if v.dtype.kind == "f":
                v = v.astype(self.dtype, copy=False)
            env[k] = v
        changed = set(overrides)
        for nd in self._folded:
            if any(i in changed for i in nd.inputs) and not all(o in overrides for o in nd.outputs):
                outs, _, _ = _run_node(nd, [env[i] if i else None for i in nd.inputs], False)
                for o, v in zip(nd.outputs, outs):
                    if o:
                        env[o] = np.asarray(v).astype(self.dtype) if np.asarray(v).dtype.kind == "f" else v
                        changed.add(o)
        return env

    def _feeds(self, x) -> dict[str, np.ndarray]:
        if isinstance(x, Mapping):
            feeds = dict(x)
        else:
            feeds = {self.input_name: x}
        for name in self.input_names:
            if name not in feeds:
                raise DataError(f"no value given for model input {name!r}")
        out = {}
        for k, v in feeds.items():
            v = np.asarray(v)
            if v.dtype.kind == "f" or self.elem_types.get(k) in _FLOAT_TYPES:
                v = v.astype(self.dtype, copy=False)
            out[k] = v
        return out

    def forward(self, x, outputs: Iterable[str] | None = None, *,
                overrides: Mapping[str, np.ndarray] | None = None, record: bool = True,
                keep: Iterable[str] | None = None):
        """Evaluate the graph on one batch.

        Returns ``(values, tape)``: ``values`` maps each name in ``outputs`` (default: the graph
        outputs) plus ``keep`` to its array; ``tape`` (None unless ``record``) feeds
        :meth:`backward`. Only the nodes needed for the requested tensors run.
        """
        wanted = list(outputs) if outputs is not None else list(self.output_names)
        if keep:
            wanted += [k for k in keep if k not in wanted]
        return self._forward(self._feeds(x), wanted, self._consts_with(overrides), record)

    def _forward(self, feeds, wanted, env, record):
        values: dict[str, np.ndarray] = {}
        for w in wanted:
            if w not in self.producer and w not in env and w not in feeds:
                raise ModelError(f"tensor {w!r} does not exist in the model")
        plan = self._plan(tuple(wanted))
        const_ids = {id(v) for v in env.values()}
        # reference counts so intermediates are freed as soon as possible
        refs: dict[str, int] = {}
        for nd in plan:
            for i in nd.inputs:
                if i:
                    refs[i] = refs.get(i, 0) + 1
        wanted_set = set(wanted)
        live: dict[str, np.ndarray] = dict(feeds)
        requires = set(feeds) if record else set()
        entries: list = []
        tape_bytes = 0
        peak = live_bytes = sum(v.nbytes for v in feeds.values())
        for nd in plan:
            ins = []
            for i in nd.inputs:
                if not i:
                    ins.append(None)
                elif i in live:
                    ins.append(live[i])
                else:
                    ins.append(env[i])
            grad_node = record and nd.spec.differentiable and any(i in requires for i in nd.inputs)
            outs, saved, scratch = _run_node(nd, ins, grad_node)
            del ins
            for o, v in zip(nd.outputs, outs):
                if o:
                    live[o] = v
                    live_bytes += getattr(v, "nbytes", 0)
            if grad_node:
                entries.append((nd, saved))
                tape_bytes += _nbytes(saved, const_ids)
                for o, v in zip(nd.outputs, outs):
                    if o and (np.asarray(v).dtype.kind == "f" or nd.op == "QuantizeLinear"):
                        requires.add(o)
            peak = max(peak, live_bytes + tape_bytes + scratch)
            for i in nd.inputs:
                if i and i in refs:
                    refs[i] -= 1
                    if refs[i] == 0 and i in live and i not in wanted_set and i not in feeds:
                        live_bytes -= getattr(live[i], "nbytes", 0)
                        del live[i]
            for o in nd.outputs:
                if o and o not in refs and o not in wanted_set and o in live:
                    live_bytes -= getattr(live[o], "nbytes", 0)
                    del live[o]
        for w in wanted:
            values[w] = live[w] if w in live else (feeds[w] if w in feeds else env[w])
        self.last_peak_bytes = peak
        tape = None
        if record:
            tape = Tape(entries, requires, self.input_name, feeds[self.input_name].shape,
                        feeds[self.input_name].dtype, tape_bytes)
        return values, tape

    def backward(self, tape: Tape, grads: Mapping[str, np.ndarray], wrt: str | None = None) -> np.ndarray:
        """Reverse-mode gradient: given ``dL/dt`` for some tensors ``t`` computed by the
        ``forward`` that produced ``tape``, return ``dL/d(input)`` (or ``wrt``). Frees the tape."""
        wrt = wrt or tape.input_name
        acc: dict[str, np.ndarray] = {}
        for k, g in grads.items():
            if g is None:
                continue
            acc[k] = np.asarray(g, dtype=tape.input_dtype if tape.input_dtype.kind == "f" else self.dtype)
        for pos in range(len(tape.entries) - 1, -1, -1):
            entry = tape.entries[pos]
            tape.entries[pos] = None          # free what this node saved
            if entry is None:
                continue
            nd, saved = entry
            douts = [acc.pop(o, None) if o else None for o in nd.outputs]
            if douts[0] is None:          # only first outputs carry gradients in this op set
                continue
            need = [bool(i) and i in tape.requires for i in nd.inputs]
            dins = nd.spec.backward(nd, saved, douts, need)
            del saved, entry
            for i, d, nd_i in zip(nd.inputs, dins, need):
                if d is None or not nd_i:
                    continue
                if i in acc:
                    acc[i] = acc[i] + d
                else:
                    acc[i] = d
        tape.entries.clear()
        g = acc.get(wrt)
        if g is None:
            return np.zeros(tape.input_shape, dtype=tape.input_dtype)
        return np.ascontiguousarray(g).reshape(tape.input_shape)

    # ---------------------------------------------------------------------------- batched run
    def bytes_per_image(self, x_shape: tuple[int, ...], outputs: Iterable[str] | None = None,
                        record: bool = False) -> int:
        """Peak working-set bytes of one image through the graph (measured once per shape)."""
        key = (tuple(x_shape[1:]), tuple(outputs or ()), record)
        if key not in self._per_image:
            probe = np.zeros((1,) + tuple(x_shape[1:]), dtype=self.dtype)
            self.forward(probe, outputs, record=record)
            self._per_image[key] = max(int(self.last_peak_bytes), 1)
        return self._per_image[key]

    def auto_batch(self, x_shape, outputs=None, record=False, memory_bytes=None) -> int:
        """Largest micro-batch whose estimated working set fits ``memory_bytes`` (at least 1)."""
        budget = self.memory_bytes if memory_bytes is None else int(memory_bytes)
        return max(1, budget // self.bytes_per_image(x_shape, outputs, record))

    def run(self, x, outputs: Iterable[str] | None = None, batch_size: int | None = None, *,
            overrides: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Evaluate in micro-batches of ``batch_size`` images (default: fit ``memory_bytes``);
        returns name -> array concatenated along the batch axis."""
        feeds = self._feeds(x)
        outputs = list(outputs) if outputs is not None else list(self.output_names)
        n = feeds[self.input_name].shape[0] if feeds[self.input_name].ndim else 1
        if batch_size is None:
            try:
                batch_size = self.auto_batch(feeds[self.input_name].shape, outputs) if n > 1 else 1
            except (ValueError, IndexError, ModelError):   # graph hard-codes its batch size: run it whole
                batch_size = n
        batch_size = max(1, int(batch_size))
        env = self._consts_with(overrides)
        if n <= batch_size:
            return self._forward(feeds, outputs, env, False)[0]
        parts: dict[str, list] = {o: [] for o in outputs}
        for s in range(0, n, batch_size):
            chunk = {k: (v[s:s + batch_size] if v.ndim and v.shape[0] == n else v)
                     for k, v in feeds.items()}
            vals, _ = self._forward(chunk, outputs, env, False)
            for o in outputs:
                parts[o].append(vals[o])
            del vals
        return {o: (np.concatenate(p, axis=0) if np.ndim(p[0]) else p[0]) for o, p in parts.items()}


# numpy's complaints about shapes/values a malformed graph feeds a node (not MemoryError).
_NODE_ERRORS = (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError)


def _run_node(nd, ins, grad):
    """``nd.spec.forward`` with numpy shape/value errors turned into one ModelError naming the node."""
    try:
        return nd.spec.forward(nd, ins, grad)
    except _NODE_ERRORS as err:
        shapes = ", ".join("-" if v is None else str(tuple(np.shape(v))) for v in ins)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"node {nd.name!r} ({nd.op}) cannot run on inputs of shape {shapes}: "
                         f"{first}") from err


def _nbytes(obj, skip_ids=frozenset()) -> int:
    """Bytes held by arrays in a (nested) tape entry, not counting the model's constants."""
    if isinstance(obj, np.ndarray):
        return 0 if id(obj) in skip_ids else int(obj.nbytes)
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o, skip_ids) for o in obj)
    return 0
