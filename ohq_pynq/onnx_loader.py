"""ONNX in: reading a model, and its tensors and node attributes as numpy / Python values.

The one place that decodes ONNX protos for the rest of the package (the graph import in
:mod:`ohq_pynq.graph` and the numpy engine in :mod:`ohq_pynq.engine` both use it).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


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


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes by name as Python values; tensor attributes stay ``TensorProto``."""
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = a.t
        else:
            out[a.name] = onnx.helper.get_attribute_value(a)
    return out
