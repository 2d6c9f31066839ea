"""hw/buffers.py: the driver's shared and per-run DMA buffers."""
from __future__ import annotations

import numpy as np

from ohq_pynq.hw.buffers import BufferPool


def test_per_run_buffers_are_kept_within_the_bound_least_recently_used_first():
    released = []
    pool = BufferPool(lambda n: np.zeros(n, np.uint8), released.append, resident_bytes=100)
    a, b = pool.run(40, "a"), pool.run(40, "b")
    assert pool.run(40, "a") is a                      # the same run: the same buffer
    c = pool.run(40, "c")                              # 120 > 100: b (least recent) goes
    assert [x is b for x in released] == [True] and pool.run(40, "a") is a and c is not a
    assert pool.run(50, "a") is not a and released[-1] is a      # a new size: a new buffer
    big = pool.run(200, "big")                         # above the bound: the shared one
    assert big is pool.shared("in", 200) and pool.run(200, None) is big
    held = pool.all()
    pool.clear()
    assert all(any(h is r for r in released) for h in held) and pool.all() == []
