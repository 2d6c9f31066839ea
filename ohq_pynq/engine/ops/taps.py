"""Stride-phase flat layout for window ops (depthwise conv, pooling): every kernel tap becomes
one contiguous slice, so a tap costs one numpy call over a long inner loop and no Python loop
runs over channels or pixels.

The zero-padded input ``xp`` (pads t, l, b, r) of a window op with stride ``s`` and dilation ``d``
is split into ``s_h * s_w`` phase images ``xp[pi::s_h, pj::s_w]``, each stored flat (row width
``wq``) per (image, channel). Output pixel (oh, ow) sits at flat position ``q = oh * wq + ow`` of
an output *grid* of width ``wq``; kernel tap (i, j) reads phase ((i*d_h) % s_h, (j*d_w) % s_w) at
``q + offset(i, j)``. Grid columns ``ow >= out_w`` are padding (their values are discarded; a
gradient scattered through the grid must hold zeros there).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class TapGrid:
    """Geometry of one window op on one input size: phases, per-tap offsets, copy plans."""

    def __init__(self, in_hw, pads, k, s, d, out_hw):
        h, w = in_hw
        t, l, b, r = pads
        self.in_hw, self.out_hw, self.k = tuple(in_hw), tuple(out_hw), tuple(k)
        self.s = s
        hp, wp = h + t + b, w + l + r
        self.hq, self.wq = -(-hp // s[0]), -(-wp // s[1])      # phase image size (rows, row width)
        oh, ow = out_hw
        self.L = oh * self.wq                                  # flat length of the output grid
        self.phases = [(pi, pj) for pi in range(s[0]) for pj in range(s[1])]
        self.taps = []                                          # (i, j, phase index, flat offset)
        max_off = 0
        for i in range(k[0]):
            for j in range(k[1]):
                ri, rj = i * d[0], j * d[1]
                off = (ri // s[0]) * self.wq + rj // s[1]
                self.taps.append((i, j, (ri % s[0]) * s[1] + rj % s[1], off))
                max_off = max(max_off, off)
        # flat length per phase: the phase image, or what the last tap reads past the grid
        self.length = max(self.hq * self.wq, self.L + max_off)
        # per phase: rows/cols of the phase image that hold input pixels, and the first input
        # row/col they hold ((y + t) = pi + s * r)
        self.plans = []
        for pi, pj in self.phases:
            r0, y0, nr = self._span(pi, t, h, s[0])
            c0, x0, nc = self._span(pj, l, w, s[1])
            self.plans.append((r0, nr, y0, c0, nc, x0))

    @staticmethod
    def _span(phase, pad, size, stride):
        """(first phase row, first input row, count) of input rows landing in this phase."""
        r0 = max(0, -(-(pad - phase) // stride))
        y0 = phase + stride * r0 - pad
        n = max(0, -(-(size - y0) // stride)) if y0 < size else 0
        return r0, y0, n

    def buffers(self, n: int, c: int, dtype) -> np.ndarray:
        """Zeroed phase buffers (phases, n, c, length)."""
        return np.zeros((len(self.phases), n, c, self.length), dtype=dtype)

    def _phase_image(self, bufs, p, n):
        return bufs[p, :n, :, :self.hq * self.wq].reshape(n, bufs.shape[2], self.hq, self.wq)

    def scatter(self, x: np.ndarray, bufs: np.ndarray) -> None:
        """Write ``x`` (n, c, h, w) into the phase buffers' interiors (borders stay as they are)."""
        n = x.shape[0]
        sh, sw = self.s
        for p, (r0, nr, y0, c0, nc, x0) in enumerate(self.plans):
            if nr and nc:
                self._phase_image(bufs, p, n)[:, :, r0:r0 + nr, c0:c0 + nc] = \
                    x[:, :, y0:y0 + sh * (nr - 1) + 1:sh, x0:x0 + sw * (nc - 1) + 1:sw]

    def gather(self, bufs: np.ndarray, out: np.ndarray) -> None:
        """Inverse of :meth:`scatter`: the phase interiors into ``out`` (n, c, h, w)."""
        n = out.shape[0]
        sh, sw = self.s
        for p, (r0, nr, y0, c0, nc, x0) in enumerate(self.plans):
            if nr and nc:
                out[:, :, y0:y0 + sh * (nr - 1) + 1:sh, x0:x0 + sw * (nc - 1) + 1:sw] = \
                    self._phase_image(bufs, p, n)[:, :, r0:r0 + nr, c0:c0 + nc]

    # channels-last phase buffers (phases, n, length, c): for many channels on small images,
    # where one tap is then one long contiguous run of (position, channel) values
    def buffers_cl(self, n: int, c: int, dtype) -> np.ndarray:
        return np.zeros((len(self.phases), n, self.length, c), dtype=dtype)

    def _phase_image_cl(self, bufs, p, n):
        return bufs[p, :n, :self.hq * self.wq].reshape(n, self.hq, self.wq, bufs.shape[3])

    def scatter_cl(self, x: np.ndarray, bufs: np.ndarray) -> None:
        """:meth:`scatter` into channels-last buffers (x is NCHW)."""
        n = x.shape[0]
        sh, sw = self.s
        xt = x.transpose(0, 2, 3, 1)
        for p, (r0, nr, y0, c0, nc, x0) in enumerate(self.plans):
            if nr and nc:
                self._phase_image_cl(bufs, p, n)[:, r0:r0 + nr, c0:c0 + nc] = \
                    xt[:, y0:y0 + sh * (nr - 1) + 1:sh, x0:x0 + sw * (nc - 1) + 1:sw]

    def gather_cl(self, bufs: np.ndarray, out: np.ndarray) -> None:
        """:meth:`gather` from channels-last buffers into NCHW ``out``."""
        n = out.shape[0]
        sh, sw = self.s
        ot = out.transpose(0, 2, 3, 1)
        for p, (r0, nr, y0, c0, nc, x0) in enumerate(self.plans):
            if nr and nc:
                ot[:, y0:y0 + sh * (nr - 1) + 1:sh, x0:x0 + sw * (nc - 1) + 1:sw] = \
                    self._phase_image_cl(bufs, p, n)[:, r0:r0 + nr, c0:c0 + nc]

    def grid_view_cl(self, flat: np.ndarray) -> np.ndarray:
        """(n, >= L, c) channels-last grid -> (n, out_h, out_w, c) view of the valid outputs."""
        oh, ow = self.out_hw
        return flat[:, :self.L].reshape((flat.shape[0], oh, self.wq) + flat.shape[2:])[:, :, :ow]

    def grid_view(self, flat: np.ndarray) -> np.ndarray:
        """(..., >= L) flat grid -> (..., out_h, out_w) view of the valid outputs."""
        oh, ow = self.out_hw
        return flat[..., :self.L].reshape(flat.shape[:-1] + (oh, self.wq))[..., :ow]


@lru_cache(maxsize=512)
def tap_grid(in_hw, pads, k, s, d, out_hw) -> TapGrid:
    """The (shared, read-only) TapGrid of one geometry; all arguments are tuples of ints."""
    return TapGrid(tuple(in_hw), tuple(pads), tuple(k), tuple(s), tuple(d), tuple(out_hw))
