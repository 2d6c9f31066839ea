"""Numpy executor of an ONNX CNN graph: forward pass and reverse-mode gradient w.r.t. the input.

The path every on-board stage can rely on (armv7 boards have no onnxruntime). ``Engine(model)``
prepares the graph once; ``run`` evaluates it in micro-batches; ``forward`` returns chosen tensors
and a tape that ``backward`` turns into ``dL/dinput``. Initializers can be replaced per call
(``overrides``) without rebuilding anything. Convolutions use im2col + BLAS GEMM per image
(Winograd F(2x2, 3x3) for 3x3 stride-1 layers; depthwise: one multiply and one add per kernel
tap on a stride-phase flat layout), tiled so temporaries stay within ``memory_bytes / 8``;
nothing loops over pixels or channels in Python.

QuantizeLinear / DequantizeLinear follow opset 21 (per-tensor and per-axis, int8/uint8/int4/uint4,
round half to even, saturate) and match onnxruntime bit for bit. 4-bit tensors are held as
int8 / uint8 arrays with values in [-8, 7] / [0, 15]. In ``backward`` they pass gradients
straight through (zero where the quantizer saturates).

Layout: :mod:`.executor` (the :class:`Engine`: preparation, forward, backward, micro-batching) and
:mod:`.ops` (the op table, one module per kind of op).
"""
from __future__ import annotations

from .executor import DEFAULT_MEMORY_BYTES, Engine, Tape, unsupported_nodes
from .ops import OPS, Node

SUPPORTED_OPS = frozenset(OPS)   # ONNX op types (default domain) the engine executes

__all__ = ["DEFAULT_MEMORY_BYTES", "Engine", "Node", "OPS", "SUPPORTED_OPS", "Tape", "unsupported_nodes"]
