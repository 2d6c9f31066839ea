"""Executors: what runs a float or QDQ ONNX model — onnxruntime where it is installed, else the
numpy engine. (Not to be confused with the accelerator *backend*, sim or pynq, in :mod:`.hw`.)

``make_executor(model, executor="auto")`` returns an object with ``run(x_or_feeds, outputs=None,
batch_size=None, overrides=None) -> {name: array}``, ``input_name``, ``output_names`` and
``name`` ("numpy" or "onnxruntime"). "auto" picks onnxruntime when it imports (armv7 boards have
no wheel) and the numpy engine otherwise; the environment variable
``OHQ_PYNQ_EXECUTOR=numpy|onnxruntime`` overrides "auto". Both executors take
``overrides={initializer: array}`` and intermediate tensor names as outputs.
"""
from __future__ import annotations

import importlib
import os
import re
import warnings
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from .engine import DEFAULT_MEMORY_BYTES, Engine
from .errors import ConfigError, DataError, ModelError
from .onnx_loader import model_proto

EXECUTORS = ("auto", "numpy", "onnxruntime")
ENV_VAR = "OHQ_PYNQ_EXECUTOR"


def _onnxruntime():
    """The onnxruntime module, or None when it is not installed (or hidden)."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        return None


def resolve_executor(executor: str = "auto") -> str:
    """'numpy' or 'onnxruntime' for a requested executor ("auto" honours ``OHQ_PYNQ_EXECUTOR``)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if executor == "auto":
        forced = os.environ.get(ENV_VAR, "").strip().lower()
        if forced:
            if forced not in ("numpy", "onnxruntime"):
                raise ConfigError(f"{ENV_VAR}={forced!r} is not valid: use numpy or onnxruntime")
            executor = forced
        else:
            return "onnxruntime" if _onnxruntime() is not None else "numpy"
    if executor == "onnxruntime" and _onnxruntime() is None:
        raise ConfigError("onnxruntime is not installed on this machine: use the numpy executor "
                          f"(--executor numpy or {ENV_VAR}=numpy)")
    return executor


class NumpyExecutor:
    """The numpy :class:`~ohq_pynq.engine.Engine` behind the executor interface (it takes any
    initializer as an override without rebuilding anything)."""

    name = "numpy"

    def __init__(self, model: Any, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.engine = Engine(model, memory_bytes=memory_bytes)
        self.model = self.engine.model
        self.input_name = self.engine.input_name
        self.input_names = list(self.engine.input_names)
        self.output_names = list(self.engine.output_names)
        self.input_shape = self.engine.input_shape

    def run(self, x, outputs: Iterable[str] | None = None, batch_size: int | None = None, *,
            overrides: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        return self.engine.run(x, outputs, batch_size, overrides=overrides)

    def stream(self, x, outputs: Iterable[str], consume, batch_size: int | None = None) -> None:
        """``consume(name, array)`` for each of ``outputs`` per micro-batch, as it is computed
        (see :meth:`~ohq_pynq.engine.Engine.run`): memory is one micro-batch's working set."""
        self.engine.run(x, outputs, batch_size, consume=consume)


def stream_outputs(runner, x, outputs: Iterable[str], consume, batch_size: int | None = None) -> None:
    """Hand ``consume(name, array)`` the requested tensors of ``x``: streamed by the numpy engine
    (micro-batch by micro-batch, never all held at once), from one ``run`` on other executors."""
    if hasattr(runner, "stream"):
        runner.stream(x, outputs, consume, batch_size)
        return
    for name, value in runner.run(x, outputs=list(outputs), batch_size=batch_size).items():
        consume(name, value)


class OnnxruntimeExecutor:
    """onnxruntime CPU session(s), one per set of extra (intermediate) outputs.

    ``threads``: intra-op threads (small by default: boards have 2–4 cores and share them).
    ``qdq_fusion``: let onnxruntime fuse QDQ pairs into integer kernels (QLinearConv); off by
    default so results equal the numpy engine's float simulation of the QDQ graph.
    ``overridable``: initializers that ``run(overrides=...)`` will replace. They are declared
    graph inputs too, so one session serves every call (onnxruntime treats such an initializer as
    a default that a feed replaces); an initializer overridden without being declared here is
    added once, on first use. 4-bit initializers cannot be fed from numpy: overriding one builds
    a session with the value written into the model, for that call.
    """

    name = "onnxruntime"

    def __init__(self, model: Any, threads: int | None = None, qdq_fusion: bool = False,
                 batch_size: int = 32, overridable: Iterable[str] = ()):
        self.ort = _onnxruntime()
        if self.ort is None:
            raise ConfigError("onnxruntime is not installed on this machine: use the numpy executor")
        self.model = model_proto(model)
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.qdq_fusion = qdq_fusion
        self.default_batch = batch_size
        g = self.model.graph
        self._initializers = {t.name: t for t in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in self._initializers]
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in g.output]
        dims = next(i for i in g.input if i.name == self.input_name).type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.overridable: set[str] = set()
        self._declare(overridable)
        self._sessions: dict[tuple, Any] = {}
        self._types: dict[str, onnx.TypeProto] | None = None

    def _declare(self, names: Iterable[str]) -> None:
        for name in names:
            t = self._initializers.get(name)
            if t is None:
                raise ConfigError(f"override {name!r} is not an initializer of the model")
            if t.data_type not in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
                self.overridable.add(name)

    def _options(self):
        """The session options of every session: few threads, quiet, QDQ kept as float
        arithmetic unless ``qdq_fusion``; with overridable initializers only the basic graph
        optimisations (Q/DQ propagation mishandles scales that are graph inputs)."""
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 4       # fatal only: its errors reach the user as one line (GuardedExecutor)
        if not self.qdq_fusion:
            so.add_session_config_entry("session.disable_quant_qdq", "1")
        if self.overridable:
            so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        return so

    def _value_types(self) -> dict[str, onnx.TypeProto]:
        if self._types is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model)
            except Exception:  # noqa: BLE001 - inference is only used to type extra outputs
                inferred = self.model
            self._types = {v.name: v.type for v in inferred.graph.value_info}
        return self._types

    def _session(self, extra: tuple[str, ...], baked: Mapping[str, np.ndarray] | None = None):
        """The session with graph outputs + ``extra`` and the overridable initializers as inputs
        (cached); with ``baked`` (4-bit overrides) a one-off session with those values written in."""
        key = (extra, frozenset(self.overridable))
        if key in self._sessions and not baked:
            return self._sessions[key]
        m = self.model
        if extra or self.overridable or baked:
            m = onnx.ModelProto()
            m.CopyFrom(self.model)
            types = self._value_types()
            for name in extra:
                vi = onnx.ValueInfoProto(name=name)
                if name in types:
                    vi.type.CopyFrom(types[name])
                else:
                    vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
                m.graph.output.append(vi)
            for name in sorted(self.overridable):
                t = self._initializers[name]
                m.graph.input.append(onnx.helper.make_tensor_value_info(name, t.data_type, list(t.dims)))
            if baked:
                _replace_initializers(m, baked)
        sess = self.ort.InferenceSession(m.SerializeToString(), self._options(),
                                         providers=["CPUExecutionProvider"])
        if not baked:
            self._sessions[key] = sess
        return sess

    def run(self, x, outputs: Iterable[str] | None = None, batch_size: int | None = None, *,
            overrides: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        feeds = dict(x) if isinstance(x, Mapping) else {self.input_name: x}
        for name in self.input_names:
            if name not in feeds:
                raise DataError(f"no value given for model input {name!r}")
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f"
                 else np.asarray(v) for k, v in feeds.items()}
        outputs = list(outputs) if outputs is not None else list(self.output_names)
        extra = tuple(o for o in outputs if o not in self.output_names)
        overrides = dict(overrides or {})
        self._declare(n for n in overrides if n not in self.overridable)
        baked = {n: v for n, v in overrides.items() if n not in self.overridable}
        fed = {n: np.asarray(v).astype(onnx.helper.tensor_dtype_to_np_dtype(
            self._initializers[n].data_type), copy=False) for n, v in overrides.items() if n not in baked}
        sess = self._session(extra, baked)
        n = feeds[self.input_name].shape[0]
        bs = max(1, int(batch_size or self.default_batch))
        parts: dict[str, list] = {o: [] for o in outputs}
        for s in range(0, max(n, 1), bs):
            chunk = {k: (v[s:s + bs] if v.ndim and v.shape[0] == n else v) for k, v in feeds.items()}
            for o, v in zip(outputs, sess.run(outputs, {**chunk, **fed})):
                parts[o].append(np.asarray(v))
        return {o: (np.concatenate(p, axis=0) if len(p) > 1 else p[0]) for o, p in parts.items()}


def _replace_initializers(model: onnx.ModelProto, overrides: Mapping[str, np.ndarray]) -> None:
    from onnx import numpy_helper

    by_name = {t.name: t for t in model.graph.initializer}
    for name, value in overrides.items():
        old = by_name.get(name)
        if old is None:
            raise ConfigError(f"override {name!r} is not an initializer of the model")
        value = np.asarray(value)
        if old.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            new = onnx.helper.make_tensor(name, old.data_type, list(value.shape),
                                          value.reshape(-1).astype(np.int64).tolist())
        else:
            dt = onnx.helper.tensor_dtype_to_np_dtype(old.data_type)
            new = numpy_helper.from_array(value.astype(dt), name)
        old.CopyFrom(new)


def make_executor(model: Any, executor: str = "auto", *, threads: int | None = None,
                  memory_bytes: int = DEFAULT_MEMORY_BYTES, qdq_fusion: bool = False,
                  overridable: Iterable[str] = ()):
    """An executor for ``model`` (ModelProto or path): see the module docstring. ``overridable``
    names the initializers later calls will override (onnxruntime prepares for them once).
    onnxruntime comes wrapped in a :class:`GuardedExecutor` (fixed batch, one-line errors, numpy
    fallback)."""
    chosen = resolve_executor(executor)
    if chosen == "onnxruntime":
        return GuardedExecutor(OnnxruntimeExecutor(model, threads=threads, qdq_fusion=qdq_fusion,
                                                   overridable=overridable),
                               fallback=executor == "auto", memory_bytes=memory_bytes)
    return NumpyExecutor(model, memory_bytes=memory_bytes)


def is_onnxruntime_error(err: BaseException) -> bool:
    """True for the exceptions onnxruntime raises (its pybind11 classes, e.g. ``Fail``,
    ``InvalidArgument``, ``RuntimeException``, ``NotImplemented``)."""
    return type(err).__module__.startswith("onnxruntime")


def onnxruntime_message(err: BaseException) -> str:
    """The first line of an onnxruntime error without its ``[ONNXRuntimeError] : 2 : CODE :``
    prefix, at most 200 characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text)
    return text if len(text) <= 200 else text[:197] + "..."


def onnxruntime_fallback_warning(err: BaseException) -> None:
    """One ``warning`` that onnxruntime rejected a model and the numpy engine takes over."""
    warnings.warn(f"onnxruntime cannot run this model ({onnxruntime_message(err)}); "
                  f"using the numpy engine", RuntimeWarning, stacklevel=3)


class GuardedExecutor:
    """An :class:`OnnxruntimeExecutor` made safe for users' models.

    * A batch dimension the model fixes (``torch.onnx.export`` defaults: 1) is honoured: images
      go through in chunks of that size, the last one padded with zeros and trimmed again.
    * When onnxruntime rejects the model or an input (creating the session or running it) and the
      executor was chosen automatically (``fallback``), the numpy engine takes over with one
      warning; when onnxruntime was asked for explicitly, a one-line :class:`ModelError`.
    Other attributes (``input_name``, ``output_names``, ``model`` ...) are the wrapped executor's.
    """

    def __init__(self, executor: OnnxruntimeExecutor, fallback: bool, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.inner = executor
        self.fallback = fallback
        self.memory_bytes = memory_bytes

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        """The executor running the model now: "onnxruntime", or "numpy" after a fallback."""
        return self.inner.name

    def run(self, x, outputs: Iterable[str] | None = None, batch_size: int | None = None, *,
            overrides: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if self.inner.name != "onnxruntime":
            return self.inner.run(x, outputs, batch_size, overrides=overrides)
        try:
            return self._run_fixed_batch(x, outputs, batch_size, overrides)
        except Exception as err:  # noqa: BLE001 - only onnxruntime's own errors are handled
            if not is_onnxruntime_error(err):
                raise
            if not self.fallback:
                raise ModelError(f"onnxruntime cannot run this model: {onnxruntime_message(err)} "
                                 f"(the numpy executor may: --executor numpy)") from None
            onnxruntime_fallback_warning(err)
            self.inner = NumpyExecutor(self.inner.model, memory_bytes=self.memory_bytes)
            return self.inner.run(x, outputs, batch_size, overrides=overrides)

    def _run_fixed_batch(self, x, outputs, batch_size, overrides):
        fixed = self.inner.input_shape[0] if self.inner.input_shape else None
        if isinstance(x, Mapping) or not isinstance(fixed, int) or fixed <= 0:
            return self.inner.run(x, outputs, batch_size, overrides=overrides)
        x = np.asarray(x)
        n = x.shape[0] if x.ndim else 0
        if n == fixed:
            return self.inner.run(x, outputs, fixed, overrides=overrides)
        padded = -(-n // fixed) * fixed
        if padded != n:
            x = np.concatenate([x, np.zeros((padded - n,) + x.shape[1:], dtype=x.dtype)])
        out = self.inner.run(x, outputs, fixed, overrides=overrides)
        return {k: (v[:n] if np.ndim(v) and v.shape[0] == padded else v) for k, v in out.items()}


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so the
    next stage starts from a small resident set on a 0.5-4 GiB board."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):     # not glibc (musl, macOS): nothing to trim
        pass
