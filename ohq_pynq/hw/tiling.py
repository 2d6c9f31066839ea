"""Splitting a layer that exceeds a core's memories into runs the core can hold.

The core streams activations row by row, so the height is never a limit; what can overflow is

* the weight memory (``MAX_WDEPTH`` words per lane) and the param memory (``MAX_TILES``): split
  the output channels — whole groups per run where one group fits, else output channels within
  a group (a groups=1 run on that group's input channels);
* the line buffer (``MAX_ROW_WORDS`` words per input row): split the output columns, each run
  reading the input columns its outputs need (with the halo) and the padding of its own edges.

Both splits are exact: every output element is computed by exactly one run with the same window,
weights and requantization. What it costs is real: each output-channel run streams the
activations again, and that is what the sim and the board measure. Splitting the *input*
channels is not exact (the core requantizes, it does not output partial sums), so a layer whose
single output tile is too deep is refused with a :class:`ConfigError`.

Pads that the core cannot express (pad >= kernel) are applied to the input in software first.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError
from .core_model import ConvLayer, CoreConfig, check_layer, geometry


@dataclass(frozen=True)
class Tile:
    """One run of the core: ``layer`` over input channels [cin0, cin1), input columns
    [x0, x1) (of the pre-padded input), producing output channels [cout0, cout1) at output
    columns [ox0, ox1)."""

    layer: ConvLayer
    cin0: int
    cin1: int
    cout0: int
    cout1: int
    x0: int
    x1: int
    ox0: int
    ox1: int


@dataclass(frozen=True)
class Plan:
    """Runs covering one layer: ``prepad`` (t, l, b, r) is zero padding applied in software."""

    layer: ConvLayer
    prepad: tuple
    tiles: tuple

    @property
    def runs(self) -> int:
        return len(self.tiles)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` items in ``parts`` nearly equal contiguous ranges."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def _refuse(layer: ConvLayer, core: CoreConfig, why: str):
    raise ConfigError(f"layer {layer.cin}->{layer.cout} k{layer.kernel} s{layer.stride} "
                      f"g{layer.groups} cannot run on the {core.bits}-bit core: {why}.")


def plan_layer(layer: ConvLayer, core: CoreConfig) -> Plan:
    """Runs of ``core`` that together compute ``layer`` exactly (see module docstring)."""
    k, s = layer.kernel, layer.stride
    if not 1 <= k <= min(core.max_k, core.lb_rows):
        _refuse(layer, core, f"kernel {k} is outside 1..{min(core.max_k, core.lb_rows)}")
    if s not in (1, 2):
        _refuse(layer, core, f"stride {s} is not 1 or 2")
    if layer.cin % layer.groups or layer.cout % layer.groups:
        _refuse(layer, core, f"groups {layer.groups} does not divide cin and cout")
    # Pads the core cannot express go into the input.
    core_pads = tuple(min(p, k - 1) for p in layer.pads)
    prepad = tuple(p - c for p, c in zip(layer.pads, core_pads))
    h = layer.h + prepad[0] + prepad[2]
    w = layer.w + prepad[1] + prepad[3]
    base = replace(layer, h=h, w=w, pads=core_pads)
    if base.oh < 1 or base.ow < 1:
        _refuse(layer, core, "the output map is empty")

    g_total, cin_g, cout_g = layer.groups, layer.cin_g, layer.cout_g
    k_w = min(k, w)

    def sub_layer(cin, cout, groups):
        return replace(base, cin=cin, cout=cout, groups=groups, w=k_w, pads=(core_pads[0], 0, core_pads[2], 0))

    def fits(cin, cout, groups) -> bool:
        """Weights and params fit, and a minimal-width row fits the line buffer."""
        geo = geometry(sub_layer(cin, cout, groups), core)
        return (geo.wpl <= core.max_wdepth and geo.ntiles <= core.max_tiles
                and geo.row_words <= core.max_row_words)

    # Channel units: (cin0, cin1, cout0, cout1, groups of the run).
    units: list[tuple[int, int, int, int, int]] = []
    if fits(layer.cin, layer.cout, g_total):
        units.append((0, layer.cin, 0, layer.cout, g_total))
    elif g_total > 1 and g_total == layer.cin == layer.cout:
        # Depthwise: runs of n channels (a multiple of the word, so each run packs densely).
        step = max(core.pe, core.ch)
        n = min(layer.cout, max(step, (layer.cout // step) * step))
        while n > step and not fits(n, n, n):
            n -= step
        if not fits(n, n, n):
            _refuse(layer, core, f"{n} depthwise channels do not fit the core's memories")
        for c0 in range(0, layer.cout, n):
            c1 = min(layer.cout, c0 + n)
            units.append((c0, c1, c0, c1, c1 - c0))
    else:
        ng = 0
        if g_total > 1:
            ng = g_total
            while ng >= 1 and not fits(ng * cin_g, ng * cout_g, ng):
                ng = ng - 1 if ng <= 8 else ng * 3 // 4
        if ng >= 1:
            for g0, g1 in _split(g_total, -(-g_total // ng)):
                units.append((g0 * cin_g, g1 * cin_g, g0 * cout_g, g1 * cout_g, g1 - g0))
        else:
            tiles_g = -(-cout_g // core.pe)
            t = tiles_g
            while t >= 1 and not fits(cin_g, min(cout_g, t * core.pe), 1):
                t = t - 1 if t <= 8 else t * 3 // 4
            if t < 1:
                chunks = -(-cin_g // core.ch)
                _refuse(layer, core, f"one output tile needs {k * k * chunks} weight words per lane "
                                     f"(the core has {core.max_wdepth}) or {chunks} words per pixel "
                                     "(input channels cannot be split exactly)")
            for g in range(g_total):
                for t0, t1 in _split(tiles_g, -(-tiles_g // t)):
                    c0, c1 = g * cout_g + t0 * core.pe, g * cout_g + min(cout_g, t1 * core.pe)
                    units.append((g * cin_g, (g + 1) * cin_g, c0, c1, 1))

    tiles = []
    for cin0, cin1, cout0, cout1, groups in units:
        cpp = geometry(sub_layer(cin1 - cin0, cout1 - cout0, groups), core).cpp
        wmax = core.max_row_words // cpp
        ow = base.ow
        if w <= wmax:
            col_ranges = [(0, ow)]
        else:
            per = (wmax - k) // s + 1
            col_ranges = _split(ow, -(-ow // per))
        for ox0, ox1 in col_ranges:
            if len(col_ranges) == 1:          # the whole row, as the layer is
                x0, x1, pl, pr = 0, w, core_pads[1], core_pads[3]
            else:
                lo = ox0 * s - core_pads[1]
                hi = (ox1 - 1) * s - core_pads[1] + k
                x0, x1 = max(0, lo), min(w, hi)
                pl, pr = x0 - lo, hi - x1
            sub = replace(base, cin=cin1 - cin0, cout=cout1 - cout0, groups=groups, w=x1 - x0,
                          pads=(core_pads[0], pl, core_pads[2], pr))
            assert sub.ow == ox1 - ox0 and sub.oh == base.oh, (sub, ox0, ox1)
            check_layer(sub, core)
            tiles.append(Tile(sub, cin0, cin1, cout0, cout1, x0, x1, ox0, ox1))
    return Plan(layer=layer, prepad=prepad, tiles=tuple(tiles))


def tile_inputs(plan: Plan, tile: Tile, x: np.ndarray, w: np.ndarray, bias, mult, shift):
    """Slices of the layer's tensors for one run: (x, w, bias, mult, shift).

    ``x`` is the (H, W, Cin) input of the layer *after* :func:`prepad_input`.
    """
    xs = x[:, tile.x0:tile.x1, tile.cin0:tile.cin1]
    sl = slice(tile.cout0, tile.cout1)
    return xs, w[sl], np.asarray(bias)[sl], np.asarray(mult)[sl], np.asarray(shift)[sl]


def prepad_input(plan: Plan, x: np.ndarray) -> np.ndarray:
    t, l, b, r = plan.prepad
    if not any(plan.prepad):
        return x
    return np.pad(x, ((t, b), (l, r), (0, 0)))


def run_plan(plan: Plan, x, w, bias, mult, shift, run_tile) -> tuple[np.ndarray, list]:
    """Execute ``plan`` with ``run_tile(tile, x, w, bias, mult, shift) -> (y, info)``; return the
    assembled (OH, OW, Cout) output and the list of per-run infos."""
    layer = plan.layer
    x = prepad_input(plan, np.asarray(x))
    w = np.asarray(w)
    oh = plan.tiles[0].layer.oh
    ow = max(t.ox1 for t in plan.tiles)
    y = np.zeros((oh, ow, layer.cout), dtype=np.int64)
    infos = []
    for tile in plan.tiles:
        yt, info = run_tile(tile, *tile_inputs(plan, tile, x, w, bias, mult, shift))
        y[:, tile.ox0:tile.ox1, tile.cout0:tile.cout1] = yt
        infos.append(info)
    return y, infos
