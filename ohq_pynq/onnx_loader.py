"""ONNX in: reading and checking a model file, and its tensors and node attributes as numpy /
Python values.

The one place that reads ONNX for the rest of the package: the graph import
(:mod:`ohq_pynq.graph`), the numpy engine (:mod:`ohq_pynq.engine`) and the onnxruntime executor
all load through :func:`load_model` / :func:`model_proto`, which also apply the import
rewrites of :mod:`ohq_pynq.normalize`. Every problem is one
:class:`~ohq_pynq.errors.ModelError` sentence naming what to fix; the caller's model is never
modified.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper

from .errors import ConfigError, ModelError, UnsupportedOpError

# Refuse models whose weights alone exceed this (bytes): boards have 0.5-4 GiB.
MAX_MODEL_BYTES = 2 << 30


def load_model(model, input_shape=None):
    """Read and check an ONNX model; return a private, shape-inferred ``onnx.ModelProto``.

    ``model`` is a path or a ``ModelProto`` (copied, never modified). ``input_shape`` fixes a
    dynamic input: the per-image dims (e.g. ``(3, 224, 224)``) or the full shape with batch;
    a string ``"3,224,224"`` is accepted too. Raises :class:`ModelError` with one sentence.
    """
    return load_model_and_batch(model, input_shape)[0]


def load_model_and_batch(model, input_shape=None, take: bool = False) -> tuple[onnx.ModelProto, int | None]:
    """:func:`load_model`, and the batch size the file fixed (None when it was symbolic): the
    model is normalised by :func:`ohq_pynq.normalize.normalize` (opset >= 13, batch made symbolic,
    constants folded, no-ops dropped) before shape inference. ``take``: a ``ModelProto`` the caller
    hands over — its own rewrite of a model this function already loaded and checked — is
    rewritten in place, neither copied nor checked again."""
    from .normalize import infer_shapes, normalize   # here: normalize imports the engine

    proto, source = _read_proto(model, take)
    if not take:
        _check_size(proto, source)
        _check_initializers(proto, source)
        # The checker gets the graph with its large float weights declared as typed inputs: a
        # whole model would reach it serialized and parsed again (two more copies of every
        # weight); the weights' types, sizes and values are what _check_initializers checked.
        from .normalize import weight_free_skeleton
        try:
            onnx.checker.check_model(weight_free_skeleton(proto))
        except Exception as err:  # onnx.checker.ValidationError and C++ errors surface variously
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{source} fails the ONNX checker: {first}") from None
    _check_ops(proto)
    _fix_input_shape(proto, source, input_shape)
    proto, batch = normalize(proto, source)
    try:
        infer_shapes(proto, strict=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{source}: shape inference failed: {first}") from None
    return proto, batch


def model_proto(model: Any) -> onnx.ModelProto:
    """``model`` itself when it is a ``ModelProto`` (neither copied nor checked: the caller built
    it); a path is read and checked with :func:`load_model`."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise ModelError(f"expected an ONNX model or a path, got {type(model).__name__}")


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


def _read_proto(model, take: bool = False):
    if hasattr(model, "graph") and hasattr(model, "SerializeToString"):
        if take:
            return model, (model.graph.name or "<ModelProto>")
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto, (model.graph.name or "<ModelProto>")
    path = Path(model)
    source = str(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path} is empty, not an ONNX model")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path} is {size / 2**30:.1f} GiB; models above "
                         f"{MAX_MODEL_BYTES / 2**30:.0f} GiB do not fit a PYNQ board")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())    # the file's bytes are freed on return
    except (DecodeError, RuntimeWarning, ValueError) as err:
        raise ModelError(f"{path} is not an ONNX model or is truncated "
                         f"(protobuf parse failed: {err})") from None
    if not proto.graph.node or proto.ir_version <= 0:
        raise ModelError(f"{path} is not an ONNX model (no graph nodes or IR version)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as err:
            raise ModelError(f"{path}: cannot read its external weight data: {err}") from None
    return proto, source


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _check_size(proto, source: str) -> None:
    """Cap work before anything is decoded: declared initializer sizes vs the board's memory."""
    total = 0
    for t in proto.graph.initializer:
        if any(d < 0 for d in t.dims):
            raise ModelError(f"{source}: initializer {t.name!r} has a negative dimension {list(t.dims)}")
        total += _numel(t.dims) * 4
        if total > MAX_MODEL_BYTES:
            raise ModelError(f"{source}: weights declare more than {MAX_MODEL_BYTES / 2**30:.0f} GiB "
                             f"(initializer {t.name!r} has dims {list(t.dims)})")


def _element_type(data_type: int):
    """numpy dtype of an ONNX element type, or None when ohq-pynq cannot use it."""
    if data_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
        return None
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except Exception:  # unknown enum value (KeyError / ValueError variously)
        return None
    return dtype if dtype.kind in "biufc" or data_type in (
        onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ,
        onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ) else None


def _check_initializers(proto, source: str) -> None:
    """Every initializer (and Constant value) has a numeric type, exactly as many stored elements
    as its dims declare, and (floats) finite values: checked before anything decodes them."""
    T = onnx.TensorProto
    tensors = [(t, f"initializer {t.name!r}") for t in proto.graph.initializer]
    for n in proto.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tensors.append((a.t, f"Constant {n.name or n.output[0]!r}"))
    for t, what in tensors:
        if t.data_location == T.EXTERNAL and not t.raw_data:
            continue  # not loaded (a ModelProto given in memory): the checker/loader handles it
        dtype = _element_type(t.data_type)
        name = T.DataType.Name(t.data_type) if t.data_type in T.DataType.values() else str(t.data_type)
        if dtype is None:
            raise ModelError(f"{source}: {what} has element type {name}, which is not a numeric "
                             f"tensor type ohq-pynq can use")
        numel = _numel(t.dims)
        nibbles = t.data_type in (T.INT4, T.UINT4)
        if t.raw_data:
            want = (numel + 1) // 2 if nibbles else numel * dtype.itemsize
            have = len(t.raw_data)
        else:
            want = (numel + 1) // 2 if nibbles else numel * (2 if dtype.kind == "c" else 1)
            have = (len(t.float_data) + len(t.int32_data) + len(t.int64_data) + len(t.double_data)
                    + len(t.uint64_data))
        if have != want:
            raise ModelError(f"{source}: {what} declares dims {list(t.dims)} ({numel} {name} "
                             f"elements) but stores {have} {'bytes' if t.raw_data else 'values'} "
                             f"instead of {want}; the file is damaged or was written incorrectly")
        if dtype.kind == "f" and t.data_type in (T.FLOAT, T.DOUBLE, T.FLOAT16):
            if t.raw_data:
                flat = np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<"))
            elif t.data_type == T.FLOAT16:
                flat = np.asarray(t.int32_data, dtype=np.uint16).view(np.float16)
            else:
                flat = np.asarray(t.double_data if t.data_type == T.DOUBLE else t.float_data)
            for s in range(0, flat.size, 1 << 22):   # bounded temporary memory
                if not np.isfinite(flat[s:s + (1 << 22)]).all():
                    raise ModelError(f"{source}: {what} contains NaN or infinite values")


def _check_ops(proto) -> None:
    """Every node is an op the numpy engine executes (all offenders listed at once)."""
    from .engine import unsupported_nodes   # here, not at the top: the engine imports this module

    bad = unsupported_nodes(proto.graph.node)
    if bad:
        raise UnsupportedOpError(bad)


def parse_shape(text) -> tuple[int, ...]:
    """``"3,224,224"`` / ``"1x3x224x224"`` / a sequence → tuple of positive ints."""
    if isinstance(text, str):
        parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    else:
        parts = list(text)
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"input shape {text!r} is not a list of integers like 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"input shape {text!r} must be positive integers like 3,224,224")
    return dims


def real_inputs(proto) -> list:
    """The graph inputs that are not initializers (the data the model is fed)."""
    inits = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def _fix_input_shape(proto, source: str, input_shape) -> None:
    """Require one input with fixed per-image dims; a symbolic batch dim stays symbolic."""
    inputs = real_inputs(proto)
    if len(inputs) != 1:
        raise ModelError(f"{source} has {len(inputs)} inputs "
                         f"({', '.join(i.name for i in inputs) or 'none'}); ohq-pynq needs exactly one image input")
    inp = inputs[0]
    ttype = inp.type.tensor_type
    if not ttype.HasField("shape"):
        if input_shape is None:
            raise ModelError(f"{source}: input {inp.name!r} has no shape; pass --input-shape C,H,W")
        ttype.shape.dim.add()
    dims = ttype.shape.dim
    if input_shape is not None:
        shape = parse_shape(input_shape)
        if len(shape) == len(dims) - 1 or not len(dims):
            shape = (None,) + shape if len(dims) else shape
        if len(dims) and len(shape) != len(dims):
            raise ModelError(f"{source}: --input-shape {input_shape} has {len(shape)} dims but input "
                             f"{inp.name!r} has {len(dims)} (give C,H,W or N,C,H,W)")
        del dims[:]
        for i, d in enumerate(shape):
            dim = dims.add()
            if d is None:
                dim.dim_param = "N"
            else:
                dim.dim_value = d
    per_image = list(dims)[1:]
    if not per_image or any(not d.HasField("dim_value") or d.dim_value <= 0 for d in per_image):
        shown = ",".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
                         for d in dims)
        raise ModelError(f"{source}: input {inp.name!r} has a dynamic or missing shape [{shown}]; "
                         f"pass --input-shape C,H,W (e.g. --input-shape 3,224,224)")
    if _numel(d.dim_value for d in per_image) > 64 * 2**20:
        raise ModelError(f"{source}: input {inp.name!r} of per-image shape "
                         f"{[d.dim_value for d in per_image]} is too large for a board")
