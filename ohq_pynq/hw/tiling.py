"""Splitting a layer that exceeds a core's memories into runs the core can hold.

The core streams activations row by row, so the height is never a limit; what can overflow is

* the weight memory (``MAX_WDEPTH`` words per lane) and the param memory (``MAX_TILES``): split
  the output channels — whole groups per run where one group fits, else output channels within
  a group (a groups=1 run on that group's input channels);
* the line buffer (``LB_ROWS * MAX_ROW_WORDS`` words; the ``kernel`` rows an output row reads
  must fit together): split the output columns, each run reading the input columns its outputs
  need (with the halo) and the padding of its own edges.

Both splits are exact: every output element is computed by exactly one run with the same window,
weights and requantization. What it costs is real: each output-channel run streams the
activations again, and that is what the sim and the board measure.

* the weight memory even for one output tile (a fully connected layer 9216 -> 4096 needs 1152
  words per lane at int8): split the *input* channels, on a 1x1 output map only (FC layers, and
  convs whose window covers the whole input). The core writes requantized values, never int32
  partial sums, but on a 1x1 map every output channel has exactly one accumulator and bias,
  mult and shift are per channel, so the core can read a partial sum out exactly, digit by digit
  (*digit runs*): a run at ``mult 1, shift s`` writes ``round(p / 2^s)`` as int8, the next run
  subtracts ``digit << s`` through the bias and reads the residual at ``s - 7``, down to shift 0
  (``shifts_for`` gives the shifts from the worst-case |p| of the chunk). The last chunk runs
  with the layer's own requantization and ``bias + sum of the other chunks' partial sums``
  (int32 wrap-around, as the accumulator), so the core writes the layer's exact outputs; the ARM
  only adds integers between runs. Each digit run streams its chunk's weights again: the cost
  (e.g. 5 runs, 1.33x the weight stream of AlexNet's fc6 at int8) is what the sim and the board
  measure. Spatial layers too deep for one tile are refused with a :class:`ConfigError`.

Pads that the core cannot express (pad >= kernel) are applied to the input in software first.

Two exact rewrites make layers fit the lanes before any split (``Plan.lowering``):

* ``"im2col"``: a dense KxK layer whose input channels fill less than one word (a stem with
  Cin = 3) folds its kernel taps into the SIMD lanes: the driver lays out each output pixel's
  window as ``K*K*Cin`` channels (order ky, kx, c) and the core runs a 1x1 conv on the output
  map. Taken when the cycle model says it is faster.
* ``"subsample"``: a strided 1x1 layer reads only every ``stride``-th row and column, so the
  driver streams just those and the core runs it at stride 1 (a quarter of the stream).

And one split for speed, not fit (``Plan.lowering == "dwsplit"``): a depthwise layer whose words
per pixel (``cpp``) fill the lanes badly (88 int8 channels = 11 words on 8 lanes: two tiles,
the second 3/8 full) runs as two channel ranges that each pack the lanes well (64 + 24 channels:
8 words, one full tile; 3 words, 2 pixels a step), when the cycle model says the two runs plus
``SPLIT_RUN_ALLOWANCE`` are faster than one.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError
from . import cycle_model
from .core_model import (ConvLayer, CoreConfig, check_layer, depthwise_mode, geometry,
                         max_row_words, param_rows, wrap_int32)


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
    digit_shift: int = -1     # >= 0: a digit run of a partial sum (mult 1 at this shift, see module doc)


@dataclass(frozen=True)
class Plan:
    """Runs covering one layer: ``prepad`` (t, l, b, r) is zero padding applied in software."""

    layer: ConvLayer
    prepad: tuple
    tiles: tuple
    lowering: str = ""        # "", "im2col", "subsample" or "dwsplit" (module docstring)

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


# Cycles charged per extra run when deciding a speed split ("dwsplit"): the register writes and
# DMA start of one more run (~20 AXI4-Lite writes and two DMA programmings, a few microseconds
# from a compiled driver). An allowance, not a measurement: the board overhead model should set it.
SPLIT_RUN_ALLOWANCE = 256


def _refuse(layer: ConvLayer, core: CoreConfig, why: str):
    raise ConfigError(f"layer {layer.cin}->{layer.cout} k{layer.kernel} s{layer.stride} "
                      f"g{layer.groups} cannot run on the {core.bits}-bit core: {why}.")


def _fits(layer: ConvLayer, core: CoreConfig, tiled: bool = False) -> bool:
    """``layer`` runs on ``core`` in one run, or (``tiled``) as some plan of runs."""
    try:
        (_plan if tiled else check_layer)(layer, core)
        return True
    except ConfigError:
        return False


def lowered_layer(layer: ConvLayer, lowering: str) -> ConvLayer:
    """The layer the core runs for ``lowering`` of ``layer`` (pads applied in software)."""
    if lowering == "im2col":
        k = layer.kernel
        return replace(layer, cin=k * k * layer.cin, h=layer.oh, w=layer.ow, kernel=1, stride=1,
                       pads=(0, 0, 0, 0))
    if lowering == "subsample":
        return replace(layer, h=layer.oh, w=layer.ow, stride=1)
    return layer


def choose_lowering(layer: ConvLayer, core: CoreConfig) -> str:
    """The rewrite (module docstring) the core runs ``layer`` with: "" if none helps."""
    if layer.groups == 1 and layer.kernel == 1 and layer.stride > 1 and not any(layer.pads):
        return "subsample"
    if layer.groups == 1 and layer.kernel > 1 and layer.cin < core.ch:
        low = lowered_layer(layer, "im2col")
        if _fits(low, core) and _fits(layer, core) and \
                cycle_model.cycles(low, core) < cycle_model.cycles(layer, core):
            return "im2col"
        if not _fits(layer, core) and _fits(low, core, tiled=True):
            return "im2col"      # e.g. an 11x11 stem beyond max_k, its weights tiled or not
    return ""


@functools.lru_cache(maxsize=4096)
def plan_layer(layer: ConvLayer, core: CoreConfig) -> Plan:
    """Runs of ``core`` that together compute ``layer`` exactly (see module docstring); a pure
    function of the two (frozen) descriptions, cached: a driver plans each layer once."""
    lowering = choose_lowering(layer, core)
    if lowering:
        inner = _plan(lowered_layer(layer, lowering), core)
        return Plan(layer=layer, prepad=(0, 0, 0, 0), tiles=inner.tiles, lowering=lowering)
    plan = _plan(layer, core)
    if depthwise_mode(layer, core) and plan.runs == 1:
        return _depthwise_split(layer, core, plan)
    return plan


def _channel_range(plan: Plan, c0: int) -> tuple:
    """``plan``'s tiles (of a depthwise sub-layer) moved to channels starting at ``c0``."""
    return tuple(replace(t, cin0=t.cin0 + c0, cin1=t.cin1 + c0, cout0=t.cout0 + c0,
                         cout1=t.cout1 + c0) for t in plan.tiles)


def _depthwise_split(layer: ConvLayer, core: CoreConfig, plan: Plan) -> Plan:
    """``plan`` or, if faster by the cycle model (+ ``SPLIT_RUN_ALLOWANCE``), the layer as two
    depthwise runs over channels [0, n) and [n, cin), n a whole number of words chosen so that
    each part fills the lanes (whole tiles of ``pe`` words, or a divisor of ``pe`` words)."""
    ch, pe = core.ch, core.pe
    cpp = -(-layer.cin // ch)
    if cpp < 2:
        return plan
    best = (cycle_model.cycles(plan.tiles[0].layer, core), None)
    # First part: n1 words that pack exactly (multiple of pe, or a divisor of pe).
    cands = {m * pe for m in range(1, cpp // pe + 1)} | {d for d in range(1, pe + 1) if pe % d == 0}
    for n1 in sorted(c for c in cands if 0 < c < cpp):
        n = n1 * ch
        parts = [replace(layer, cin=n, cout=n, groups=n),
                 replace(layer, cin=layer.cin - n, cout=layer.cout - n, groups=layer.cout - n)]
        if not all(_fits(p, core) and depthwise_mode(p, core) for p in parts):
            continue
        total = sum(cycle_model.cycles(p, core) for p in parts) + SPLIT_RUN_ALLOWANCE
        if total < best[0]:
            best = (total, n)
    if best[1] is None:
        return plan
    n = best[1]
    lo = _plan(replace(layer, cin=n, cout=n, groups=n), core)
    hi = _plan(replace(layer, cin=layer.cin - n, cout=layer.cout - n, groups=layer.cout - n), core)
    if lo.runs != 1 or hi.runs != 1 or lo.prepad != plan.prepad or hi.prepad != plan.prepad:
        return plan
    return Plan(layer=layer, prepad=plan.prepad, tiles=lo.tiles + _channel_range(hi, n),
                lowering="dwsplit")


def _plan(layer: ConvLayer, core: CoreConfig) -> Plan:
    k, s = layer.kernel, layer.stride
    if not 1 <= k <= core.max_k:
        _refuse(layer, core, f"kernel {k} is outside 1..{core.max_k}")
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
        sub = sub_layer(cin, cout, groups)
        geo = geometry(sub, core)
        return (geo.wpl <= core.max_wdepth and param_rows(geo, core) <= core.max_tiles
                and geo.row_words <= max_row_words(sub, core))

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
                return _plan_input_split(layer, base, prepad, core)
            for g in range(g_total):
                for t0, t1 in _split(tiles_g, -(-tiles_g // t)):
                    c0, c1 = g * cout_g + t0 * core.pe, g * cout_g + min(cout_g, t1 * core.pe)
                    units.append((g * cin_g, (g + 1) * cin_g, c0, c1, 1))

    tiles = []
    for cin0, cin1, cout0, cout1, groups in units:
        sub0 = sub_layer(cin1 - cin0, cout1 - cout0, groups)
        wmax = max_row_words(sub0, core) // geometry(sub0, core).cpp
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


DIGIT_BITS = 7     # bits a digit run adds below the previous one (int8 output, round half up)


def partial_sum_bound(layer: ConvLayer, cin: int, bits: int) -> int:
    """Largest |sum of x * w| over ``cin`` input channels of ``layer``'s window at ``bits``."""
    x_max = (1 << bits) - 1 if not layer.in_signed else 1 << (bits - 1)
    w_max = (1 << (bits - 1)) - 1
    return layer.kernel * layer.kernel * cin * x_max * w_max


def shifts_for(bound: int) -> list[int]:
    """Shifts of the digit runs that read a partial sum |p| <= ``bound`` out exactly: the first
    ``s0`` has ``bound <= 127 * 2^s0`` (its rounded digit fits int8), each next is 7 lower (the
    residual is within half of the previous step), the last 0."""
    s0 = 0
    while bound > 127 * (1 << s0):
        s0 += 1
    shifts = [s0]
    while shifts[-1] > 0:
        shifts.append(max(0, shifts[-1] - DIGIT_BITS))
    return shifts


def _plan_input_split(layer: ConvLayer, base: ConvLayer, prepad: tuple, core: CoreConfig) -> Plan:
    """Runs over input-channel chunks of a 1x1-output layer (module docstring: digit runs)."""
    k = layer.kernel
    if layer.groups != 1 or base.oh != 1 or base.ow != 1:
        chunks = -(-layer.cin_g // core.ch)
        _refuse(layer, core, f"one output tile needs {k * k * chunks} weight words per lane "
                             f"(the core has {core.max_wdepth}); input channels are split only on a "
                             "1x1 output map")
    per_lane = core.max_wdepth // (k * k)             # words of one tile's window per lane
    cmax = per_lane * core.ch                         # input channels of the largest chunk
    if cmax < 1:
        _refuse(layer, core, f"a {k}x{k} window of one word per lane exceeds {core.max_wdepth} words")
    # The last (requantizing) chunk is the largest; the others are read out by digit runs.
    last = (layer.cin - cmax, layer.cin)
    others = [(c0, min(c0 + cmax, last[0])) for c0 in range(0, last[0], cmax)]
    digit_layer = replace(base, relu=False, out_bits=8, out_signed=True)
    tiles_g = -(-layer.cout // core.pe)
    tiles = []
    for t0, t1 in _split(tiles_g, tiles_g):           # one PE tile per run (its window fills the lanes)
        c0, c1 = t0 * core.pe, min(layer.cout, t1 * core.pe)
        for cin0, cin1 in others:
            sub = replace(digit_layer, cin=cin1 - cin0, cout=c1 - c0)
            check_layer(sub, core)
            for s in shifts_for(partial_sum_bound(layer, cin1 - cin0, core.bits)):
                tiles.append(Tile(sub, cin0, cin1, c0, c1, 0, base.w, 0, 1, digit_shift=s))
        sub = replace(base, cin=last[1] - last[0], cout=c1 - c0)
        check_layer(sub, core)
        tiles.append(Tile(sub, last[0], last[1], c0, c1, 0, base.w, 0, 1))
    return Plan(layer=layer, prepad=prepad, tiles=tuple(tiles))


def tile_inputs(plan: Plan, tile: Tile, x: np.ndarray, w: np.ndarray, bias, mult, shift):
    """Slices of the layer's tensors for one run: (x, w, bias, mult, shift).

    ``x`` is the input *after* :func:`prepad_input`, ``w`` the weights after
    :func:`lower_weights`.
    """
    xs = x[:, tile.x0:tile.x1, tile.cin0:tile.cin1]
    sl = slice(tile.cout0, tile.cout1)
    ws = w[sl, tile.cin0:tile.cin1] if plan.layer.groups == 1 else w[sl]
    return xs, ws, np.asarray(bias)[sl], np.asarray(mult)[sl], np.asarray(shift)[sl]


def prepad_input(plan: Plan, x: np.ndarray) -> np.ndarray:
    """The (H, W, Cin) input as the plan's runs read it: software padding, then the lowering."""
    layer = plan.layer
    if plan.lowering == "subsample":
        s = layer.stride
        return x[::s, ::s][:layer.oh, :layer.ow]
    if plan.lowering == "im2col":
        k, s = layer.kernel, layer.stride
        pt, pl, pb, pr = layer.pads
        xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
        sy, sx, sc = xp.strides
        cols = np.lib.stride_tricks.as_strided(
            xp, shape=(layer.oh, layer.ow, k, k, layer.cin), strides=(sy * s, sx * s, sy, sx, sc),
            writeable=False)
        return cols.reshape(layer.oh, layer.ow, k * k * layer.cin)
    t, l, b, r = plan.prepad
    if not any(plan.prepad):
        return x
    return np.pad(x, ((t, b), (l, r), (0, 0)))


def lower_weights(plan: Plan, w: np.ndarray) -> np.ndarray:
    """(Cout, Cin/groups, K, K) weights as the plan's runs take them (im2col: (ky, kx, c) order)."""
    w = np.asarray(w)
    if plan.lowering == "im2col":
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1, 1, 1)
    return w


def run_plan(plan: Plan, x, w, bias, mult, shift, run_tile) -> tuple[np.ndarray, list]:
    """Execute ``plan`` with ``run_tile(tile, x, w, bias, mult, shift) -> (y, info)``; return the
    assembled (OH, OW, Cout) output and the list of per-run infos."""
    layer = plan.layer
    x = prepad_input(plan, np.asarray(x))
    w = lower_weights(plan, w)
    oh = plan.tiles[0].layer.oh
    ow = max(t.ox1 for t in plan.tiles)
    one = plan.tiles[0]
    if len(plan.tiles) == 1 and one.digit_shift < 0 and one.cout1 - one.cout0 == layer.cout \
            and one.ox0 == 0 and one.ox1 == ow:          # one run: its output is the layer's
        yt, info = run_tile(one, *tile_inputs(plan, one, x, w, bias, mult, shift))
        return yt, [info]
    y = np.zeros((oh, ow, layer.cout), dtype=np.int64)
    infos = []
    done = np.zeros(layer.cout, dtype=np.int64)      # input-split: partial sums read out so far
    digits = np.zeros(layer.cout, dtype=np.int64)    # the chunk being read out, digits so far
    for tile in plan.tiles:
        xt, wt, bt, mt, st = tile_inputs(plan, tile, x, w, bias, mult, shift)
        sl = slice(tile.cout0, tile.cout1)
        if tile.digit_shift >= 0:                    # a digit run: mult 1, bias -digits so far
            n = tile.cout1 - tile.cout0
            bt = wrap_int32(-digits[sl])
            mt, st = np.ones(n, dtype=np.int64), np.full(n, tile.digit_shift, dtype=np.int64)
            yt, info = run_tile(tile, xt, wt, bt, mt, st)
            digits[sl] += np.asarray(yt, dtype=np.int64).reshape(n) << tile.digit_shift
            if tile.digit_shift == 0:                # the chunk's partial sum is exact now
                done[sl] += digits[sl]
                digits[sl] = 0
        else:
            if tile.cin1 - tile.cin0 < w.shape[1]:  # the last chunk: bias + the other chunks
                bt = wrap_int32(np.asarray(bt, dtype=np.int64) + done[sl])
            yt, info = run_tile(tile, xt, wt, bt, mt, st)
            y[:, tile.ox0:tile.ox1, tile.cout0:tile.cout1] = yt
        infos.append(info)
    return y, infos


def plan_cycles(layer: ConvLayer, core: CoreConfig, stream_bytes: int | None = None) -> int:
    """Modelled core cycles of ``layer`` as the driver runs it: the sum over its plan's runs."""
    return sum(cycle_model.cycles(t.layer, core, stream_bytes) for t in plan_layer(layer, core).tiles)
