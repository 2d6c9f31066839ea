"""What every op module builds on: the prepared :class:`Node`, the :class:`Op` interface, and
the geometry helpers (padding, strided windows, broadcasting) that several op kinds share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ModelError


@dataclass
class Node:
    """One prepared graph node: the ONNX node's fields, its attributes decoded, the op that
    implements it (``spec``) and the model's default-domain opset."""

    index: int
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    spec: "Op"
    opset: int


class Op:
    """One operator: ``forward(node, ins, record) -> (outs, saved, scratch)`` and
    ``backward(node, saved, douts, need) -> dins``.

    ``ins``/``outs``: arrays in the node's input/output order (None for an omitted optional
    input); ``saved``: what ``backward`` needs (None unless ``record``); ``scratch``: bytes of
    temporary memory beyond the outputs (for the micro-batch estimate); ``need[i]``: input i
    wants a gradient. ``douts`` holds None for outputs no gradient reached; ops whose later
    outputs carry gradients (Split) set ``multi_output_grad``, the others are skipped when their
    first output has none."""

    differentiable = True
    multi_output_grad = False

    def forward(self, node, ins, record):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, node, saved, douts, need):  # pragma: no cover - interface
        raise NotImplementedError


class Inputs(list):
    """The input list the engine passes to ``Op.forward``; ``donated`` holds the positions of
    inputs whose arrays die at this node and that nothing else refers to: the op may overwrite
    them (and return one as its output). Plain lists (ops called directly) donate nothing."""

    donated: frozenset = frozenset()


def donated(ins, k: int) -> bool:
    """Whether ``Op.forward`` may overwrite input ``k``."""
    return k in getattr(ins, "donated", ())


class NonDifferentiable(Op):
    """Ops on shapes/integers: never on a gradient path (``backward`` raises if they are)."""

    differentiable = False

    def __init__(self, f):
        self.f = f

    def forward(self, node, ins, record):
        return self.f(node, ins), None, 0

    def backward(self, node, saved, douts, need):
        raise ModelError(f"cannot differentiate through {node.op} node {node.name!r}")


# ----------------------------------------------------------------------------- helpers shared by ops

def pair(v, default, n=2):
    if v is None:
        return (default,) * n
    return tuple(int(i) for i in v)


def spatial(node: Node, in_hw: tuple[int, int], kernel: tuple[int, int]):
    """(stride, dilation, pads top/left/bottom/right) for Conv / pooling, auto_pad resolved."""
    a = node.attrs
    stride = pair(a.get("strides"), 1)
    dil = pair(a.get("dilations"), 1)
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


def windows(xp: np.ndarray, k, s, d, out) -> np.ndarray:
    """Read-only strided view (N, C, kh, kw, oh, ow) of a padded NCHW array."""
    n, c = xp.shape[:2]
    st = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, k[0], k[1], out[0], out[1]),
        (st[0], st[1], st[2] * d[0], st[3] * d[1], st[2] * s[0], st[3] * s[1]), writeable=False)


def tap(i: int, j: int, s, d, out) -> tuple[slice, slice, slice, slice]:
    """Index of kernel tap (i, j) over all outputs in a padded NCHW array."""
    return (slice(None), slice(None),
            slice(i * d[0], i * d[0] + s[0] * (out[0] - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (out[1] - 1) + 1, s[1]))


def pad_nchw(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    t, l, b, r = pads
    if not (t or l or b or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def crop(xp: np.ndarray, pads, hw) -> np.ndarray:
    t, l = pads[0], pads[1]
    return xp[:, :, t:t + hw[0], l:l + hw[1]]


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
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


def axes_arg(node: Node, ins: list, pos: int, attr: str = "axes"):
    if len(ins) > pos and ins[pos] is not None:
        return [int(v) for v in np.asarray(ins[pos]).reshape(-1)]
    v = node.attrs.get(attr)
    return None if v is None else [int(i) for i in v]
