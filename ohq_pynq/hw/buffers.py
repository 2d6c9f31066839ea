"""The driver's DMA buffers, as the overlay driver keeps them and the simulator mirrors them.

* one shared buffer per (kind, bytes): ``shared("out", n)``;
* one input buffer per run of a deployed layer (``run(n, key)``, ``key`` naming the weight tensor
  and the run), so the run's weight words stay resident between images
  (``core_model.StreamPacker(out=)`` writes them once), up to :data:`RESIDENT_BYTES` in all,
  least recently used freed first; beyond that, or without a key, the shared input buffer.

``allocate(nbytes)`` makes a buffer (``pynq.allocate`` on a board, ``np.zeros`` in the
simulator) and ``release(buf)`` frees one.
"""
from __future__ import annotations

from collections import OrderedDict

RESIDENT_BYTES = 32 << 20   # bytes per core: the per-run input buffers, weights resident


class BufferPool:
    """Shared and per-run DMA buffers (see the module doc); ``resident_bytes`` bounds the
    per-run ones (bytes)."""

    def __init__(self, allocate, release=lambda buf: None, resident_bytes: int = RESIDENT_BYTES):
        self.allocate, self.release, self.resident_bytes = allocate, release, int(resident_bytes)
        self._shared: dict[tuple[str, int], object] = {}
        self._runs: "OrderedDict[object, object]" = OrderedDict()   # key -> input buffer
        self._run_bytes = 0

    def shared(self, kind: str, nbytes: int):
        buf = self._shared.get((kind, nbytes))
        if buf is None:
            buf = self._shared[(kind, nbytes)] = self.allocate(nbytes)
        return buf

    def run(self, nbytes: int, key=None):
        """The input buffer of the run ``key`` (``nbytes`` long)."""
        if key is None or nbytes > self.resident_bytes:
            return self.shared("in", nbytes)
        buf = self._runs.pop(key, None)
        if buf is not None and buf.size != nbytes:
            self._drop(buf)
            buf = None
        if buf is None:
            while self._runs and self._run_bytes + nbytes > self.resident_bytes:
                self._drop(self._runs.popitem(last=False)[1])
            buf = self.allocate(nbytes)
            self._run_bytes += nbytes
        self._runs[key] = buf
        return buf

    def _drop(self, buf) -> None:
        self._run_bytes -= buf.size
        self.release(buf)

    def all(self) -> list:
        """Every buffer held (shared and per run)."""
        return list(self._shared.values()) + list(self._runs.values())

    def clear(self) -> None:
        """Release every buffer."""
        for buf in self.all():
            self.release(buf)
        self._shared.clear()
        self._runs.clear()
        self._run_bytes = 0
