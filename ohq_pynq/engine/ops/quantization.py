"""QuantizeLinear / DequantizeLinear (opset 10-21): per tensor and per axis, int8/uint8/int4/
uint4/int16/uint16, round half to even, saturate — bit-exact with onnxruntime. 4-bit values are
held as int8 / uint8 arrays in [-8, 7] / [0, 15]. Gradients pass straight through (zero where the
quantizer saturates)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ...errors import UnsupportedOpError
from .base import Op

# onnx elem type -> (numpy dtype used to hold it, qmin, qmax) for the quantized integer types.
QTYPES = {
    TensorProto.INT8: (np.int8, -128, 127),
    TensorProto.UINT8: (np.uint8, 0, 255),
    TensorProto.INT4: (np.int8, -8, 7),
    TensorProto.UINT4: (np.uint8, 0, 15),
    TensorProto.INT16: (np.int16, -32768, 32767),
    TensorProto.UINT16: (np.uint16, 0, 65535),
}


class QuantizeLinear(Op):
    """QuantizeLinear (opset 10-21): saturate(round_half_even(x / scale) + zero_point)."""

    def forward(self, node, ins, record):
        x, scale = ins[0], ins[1]
        zp = ins[2] if len(ins) > 2 else None
        if int(node.attrs.get("block_size", 0)):
            raise UnsupportedOpError([(node.name, "QuantizeLinear with block_size")])
        qtype = node.attrs["_qtype"]
        npdt, qmin, qmax = QTYPES[qtype]
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


class DequantizeLinear(Op):
    """DequantizeLinear (opset 10-21): (x - zero_point) * scale, in float32; integer inputs
    (int4-int32) and float8 inputs (exact float values after loading)."""

    def forward(self, node, ins, record):
        x, scale = ins[0], ins[1]
        zp = ins[2] if len(ins) > 2 else None
        if int(node.attrs.get("block_size", 0)):
            raise UnsupportedOpError([(node.name, "DequantizeLinear with block_size")])
        ax = int(node.attrs.get("axis", 1))
        y = dequantize(x, scale, zp, ax)
        saved = None
        if record:
            scale = np.asarray(scale)
            saved = scale.astype(np.float32).reshape(_axis_shape(np.ndim(x), ax, scale))
        return [y], saved, 0

    def backward(self, node, saved, douts, need):
        return [douts[0] * saved if need[0] else None, None, None]


def dequantize(x, scale, zero_point=None, axis: int = 1) -> np.ndarray:
    """``(x - zero_point) * scale`` in float32, per tensor or along ``axis`` (per-axis scale)."""
    scale = np.asarray(scale)
    shape = _axis_shape(np.ndim(x), axis, scale)
    x = np.asarray(x)
    if x.dtype.kind == "f":     # float8 input (decoded to exact float32 values on load)
        xf = x.astype(np.float32)
        if zero_point is not None:
            xf = xf - np.asarray(zero_point).astype(np.float32).reshape(shape)
        return xf * scale.astype(np.float32).reshape(shape)
    xi = x.astype(np.int32)
    if zero_point is not None:
        xi = xi - np.asarray(zero_point).astype(np.int32).reshape(shape)
    return xi.astype(np.float32) * scale.astype(np.float32).reshape(shape)


def _axis_shape(ndim, axis, scale):
    if scale.size == 1 and scale.ndim <= 1:
        return ()
    shape = [1] * ndim
    shape[axis % ndim] = scale.size
    return tuple(shape)


# Each class is named after the ONNX op it implements.
OPS: dict[str, Op] = {cls.__name__: cls() for cls in (QuantizeLinear, DequantizeLinear)}
