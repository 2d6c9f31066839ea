"""The engine's op table: ONNX op type -> :class:`~ohq_pynq.engine.ops.base.Op`.

One module per kind of op, each with its own ``OPS`` dict: ``linear`` (Conv, BatchNormalization,
Gemm, MatMul), ``elementwise`` (activations, arithmetic, Softmax), ``pooling`` (pooling and
reductions), ``tensor`` (reshapes, slicing, shape and constant ops), ``quantization``
(QuantizeLinear / DequantizeLinear). Helpers without ops: ``base`` (Node, Op, shared geometry),
``convolution`` (the conv kernels: im2col GEMM, Winograd, depthwise) and ``taps`` (the
stride-phase flat layout of window ops). To add an op, implement ``forward`` (and ``backward``, or
derive from ``NonDifferentiable``) in the module of its kind and list it in that module's
``OPS``; graph import accepts exactly the ops this table holds.
"""
from __future__ import annotations

from . import elementwise, linear, pooling, quantization, tensor
from .base import Node, NonDifferentiable, Op

OPS: dict[str, Op] = {**linear.OPS, **elementwise.OPS, **pooling.OPS, **tensor.OPS,
                      **quantization.OPS}

__all__ = ["OPS", "Node", "Op", "NonDifferentiable"]
