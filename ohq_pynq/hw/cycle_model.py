"""Cycle model of the ohq_conv core: what its CYCLES counter reads for one run.

Derived from the RTL schedule (``vivado/rtl/ohq_conv_engine.v``), at the granularity of rows
(line-buffer modes) or weight rows (weight streaming). These are the *core's* cycles from start
to done with an ideal stream; what a board adds around a run (DMA set-up, cache maintenance,
register writes, ARM-side work) is a separate quantity added on top.

1. **Setup** (:func:`setup_cycles`): start accepted, six derived-size stages and, for grouped
   layers other than depthwise only, two 16-step restoring divisions (cin/groups, cout/groups)
   before them (``groups == 1`` takes cin and cout as the quotients, ``groups == cin == cout``
   1 and 1).
2. **Stream**: the gearbox turns stream beats (``bus_bytes``) into words — 8-byte param records,
   then ``simd``-byte weight and activation words — at most one word and one beat per cycle, so
   ``n`` words of ``b`` bytes take ``max(n, ceil(b / stream_bytes))`` cycles.
3. **Line-buffer modes** (dense/grouped, and depthwise): params and weights are stored before
   compute may start; activation rows go into the line buffer and overlap compute. Output row
   ``oy`` issues its MAC steps (one per cycle) once input rows up to ``oy*stride - pad_t + K - 1``
   are written; the writer may not overwrite a word the current output row still reads. Event
   recurrence over rows: ``row_end[r] = max(natural stream time, row_end[r-1] + row cost,
   unblocked + words left)``, ``issue[oy] = max(issue[oy-1] + ops_row, row_end[need(oy)-1] + 1)``.
   Depthwise steps come in groups of ``K*K`` (one per output-pixel group and tile); unloading a
   group's ``pe*ch`` accumulators takes ``unload_words`` cycles, so a group costs
   ``max(K*K, unload_words)``.
4. **Weight streaming** (small maps, ``geometry(...).ws``): params, then all activations, then
   the weights tile by tile; tiles are the outer loop, and a tile's first output pixel issues each
   step as soon as the weight row it reads has arrived.
5. **Output limit**: one result word per (pixel, tile) or depthwise word; the packer takes at most
   one word and emits one beat per cycle.
6. **Drain**: pipeline (6 front stages, unload, 5 requantization stages), FIFO, packer, tlast,
   done. Done also waits for the stream's last *beat* (not its last word): input rows no output
   reads (stride 2, unread bottom rows) can end a run, a cycle after that beat.

Everything is in clock cycles of the core (``seconds = cycles / fclk``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core_model import PARAM_RECORD_BYTES, ConvLayer, CoreConfig, Geometry, geometry

SETUP = 6           # start accepted -> ST_RUN: 6 setup stages (groups == 1, or depthwise)
DIV_STEPS = 16      # other grouped layers: the restoring divisions cin/groups, cout/groups first
GEARBOX_LAT = 1     # first beat accepted one cycle into ST_RUN
ISSUE_LAT = 2       # weights done -> C_RUN -> first issue
ROW_LAT = 1         # row written -> rows_written compared -> issue
WROW_LAT = 1        # weight streaming: weight row written -> its first step issues
DRAIN = 16          # dense: last issue -> 6 stages, unload, 5 requant stages, FIFO, packer, done
DRAIN_DW = 14       # depthwise: last issue -> snapshot at stage 4 ... done, plus the last word's index


@dataclass(frozen=True)
class CycleBreakdown:
    """Where a run's cycles go: total plus its components (all in cycles)."""

    cycles: int
    setup: int
    load: int            # stream time before the first MAC step could issue
    compute: int         # MAC steps issued (== the MAC_ACTIVE counter)
    stall: int           # cycles from the first to the last MAC step with nothing issued
    drain: int
    roof: float          # MACs / (PE * SIMD * pack): the ideal

    @property
    def utilisation(self) -> float:
        return self.roof / self.cycles if self.cycles else 0.0


def setup_cycles(layer: ConvLayer) -> int:
    """Cycles from start accepted to ST_RUN: the divisions only for grouped layers that are
    neither dense nor depthwise (``1 < groups`` and not ``groups == cin == cout``)."""
    divides = layer.groups > 1 and not (layer.groups == layer.cin == layer.cout)
    return SETUP + (DIV_STEPS if divides else 0)


def cycles(layer: ConvLayer, core: CoreConfig, stream_bytes: int | None = None) -> int:
    """Modelled CYCLES counter of one run of ``layer`` on ``core`` (cycles)."""
    return breakdown(layer, core, stream_bytes).cycles


def _out_cycles(lanes: int, out_bits: int, beat_bits: int) -> int:
    """Packer cycles of one result word of ``lanes`` outputs."""
    return max(1, -(-lanes * out_bits // beat_bits))


def breakdown(layer: ConvLayer, core: CoreConfig, stream_bytes: int | None = None) -> CycleBreakdown:
    """Modelled cycles of one run with components; ``stream_bytes`` is the input stream's
    sustained bytes per cycle (default: the bus width, i.e. an ideal DMA)."""
    geo = geometry(layer, core)
    bus = min(core.bus_bytes, stream_bytes or core.bus_bytes)
    if geo.ws:
        return _weight_streaming(layer, core, geo, bus)
    return _line_buffer(layer, core, geo, bus)


def _packer_tail(words: list[tuple[int, int, bool]], fill0: int, beat_bits: int) -> int:
    """Cycles from the last result word reaching the output FIFO to the last beat, beyond the
    one beat a lone word needs: a cycle-level run of the packer (``rtl/ohq_out_packer.v``) over
    the final words ``(arrival cycle, bits, ends a pixel)``, starting from ``fill0`` bits held."""
    t = words[0][0]
    fill, flushing, last_emit, i = fill0 % beat_bits, False, t, 0
    while True:
        emit = fill >= beat_bits
        fill_e = fill - beat_bits if emit else fill
        if emit:
            last_emit = t
        if i < len(words) and words[i][0] <= t and not flushing and fill_e < beat_bits:
            _, bits, pix_end = words[i]
            fill = fill_e + bits
            if pix_end:
                fill = -(-fill // 8) * 8
            i += 1
            if i == len(words):
                fill = -(-fill // beat_bits) * beat_bits
                flushing = True
        else:
            fill = fill_e
        if flushing and fill == 0:
            return last_emit - (words[-1][0] + 1)
        if fill < beat_bits and i < len(words) and words[i][0] > t + 1:
            t = words[i][0]              # idle until the next word arrives
        else:
            t += 1


def _words_after_last_beat(simd: int, bus: int, in_bytes: int) -> int:
    """Activation words the gearbox (``rtl/ohq_gearbox.v``) still hands out after accepting the
    stream's last beat, in a steady stream: 1 when a word spans whole beats (``simd >= bus``);
    otherwise a beat is taken at a fill of ``max(simd, 8)`` bytes with a word leaving, so the
    buffer then holds ``8 - simd + bus`` bytes, less the last beat's zero padding."""
    if simd >= bus:
        return 1
    pad = -in_bytes % bus
    return (max(simd, 8) - simd + bus - pad) // simd


def _stream_time(t0: int, words: int, nbytes: int, bus: int) -> int:
    return t0 + max(words, -(-nbytes // bus))


def _line_buffer(layer: ConvLayer, core: CoreConfig, geo: Geometry, bus: int) -> CycleBreakdown:
    simd = core.simd
    k, s = layer.kernel, layer.stride
    h, oh, ow = layer.h, layer.oh, layer.ow
    kk = k * k
    setup = setup_cycles(layer)
    t0 = setup + GEARBOX_LAT              # edge before the first word can be taken
    words_pw = geo.n_rec + geo.weight_words
    bytes_pw = PARAM_RECORD_BYTES * geo.n_rec + simd * geo.weight_words
    t_wlast = _stream_time(t0, words_pw, bytes_pw, bus)
    rw = geo.row_words
    cpw = max(1, -(-simd // bus))         # cycles per activation word when the stream is steady
    row_cost = rw * cpw
    beat_bits = 8 * core.bus_bytes
    ob = layer.out_bits

    if geo.depthwise:
        j, tiles = geo.group_pixels, geo.tiles_g
        groups_row = -(-ow // j)
        # Output words per group (valid words only) and their packer cycles.
        rq, wpl_rq = core.rq, core.ch // core.rq
        last_words = -(-(layer.cin - (geo.cpp - 1) * core.ch) // rq)
        px_words = (geo.cpp - 1) * wpl_rq + last_words
        px_out = sum(_out_cycles(min(rq, layer.cin - (w * rq)), ob, beat_bits)
                     for w in range(px_words))
        if j > 1:
            grp_out = j * px_out
        else:
            grp_out = px_out / tiles
        per_group = max(kk, core.unload_words, grp_out)
        ops_row = int(round(groups_row * tiles * per_group))
        if core.unload_words > kk:      # the final group's unload is part of the drain
            ops_last = core.unload_words - kk
        else:
            ops_last = 0
        # The final group's valid words, by unload index (lane-major, rq outputs a word).
        if j > 1:
            lanes = [(jj * geo.cpp + c, c) for jj in range(ow - (groups_row - 1) * j)
                     for c in range(geo.cpp)]
        else:
            lanes = [(i, (tiles - 1) * core.pe + i) for i in range(geo.cpp - (tiles - 1) * core.pe)]
        tail = []
        for lane, word in lanes:
            for wi in range(wpl_rq):
                nv = min(rq, layer.cin - word * core.ch - wi * rq)
                if nv > 0:
                    tail.append((lane * wpl_rq + wi, nv * ob, word == geo.cpp - 1 and nv < rq + 1
                                 and word * core.ch + wi * rq + rq >= layer.cin))
        u_end = tail[-1][0]
        before = geo.out_bytes * 8 - sum(-(-b // 8) * 8 if pe_ else b for _, b, pe_ in tail)
        drain = DRAIN_DW + u_end + _packer_tail(tail, before, beat_bits)
    else:
        kkc = kk * geo.chunks_g
        cout_g = layer.cout_g
        last_lanes = cout_g - (geo.tiles_g - 1) * core.pe
        out_px = layer.groups * ((geo.tiles_g - 1) * _out_cycles(core.pe, ob, beat_bits)
                                 + _out_cycles(last_lanes, ob, beat_bits))
        per_out = max(geo.ntiles * kkc, out_px)
        ops_row = ow * per_out
        ops_last = 0
        # The last pixel's result words (one per tile), kkc steps apart.
        sizes = [min(core.pe, cout_g - t * core.pe) * ob for t in range(geo.tiles_g)] * layer.groups
        step = max(kkc, out_px // max(1, len(sizes)))
        tail = [(i * step, b, i == len(sizes) - 1) for i, b in enumerate(sizes)]
        before = geo.out_bytes * 8 - -(-sum(sizes) // 8) * 8
        drain = DRAIN + _packer_tail(tail, before, beat_bits)

    row_end = [0] * h
    last_issue = [0] * oh
    cap = core.lb_words
    pt = layer.pads[0]
    state = {"next": 0}

    def write_rows_upto(r_max: int):
        r = state["next"]
        while r <= r_max:
            natural = _stream_time(t0, words_pw + (r + 1) * rw, bytes_pw + simd * rw * (r + 1), bus)
            end = natural
            if r > 0:
                end = max(end, row_end[r - 1] + row_cost)
            # The row's last word needs low_lin = iy0(oy) * rw >= (r + 1) * rw - cap.
            over = (r + 1) * rw - cap
            if over > 0:
                oy_need = max(0, -(-(-(-over // rw) + pt) // s))    # first oy with iy0*rw >= over
                if oy_need > 0:
                    oy_prev = min(oy_need - 1, oh - 1)
                    low_prev = (oy_prev * s - pt) * rw
                    left = (r + 1) * rw - (low_prev + cap)          # words blocked until then
                    # Unblocked the cycle after that row's last issue, with a full gearbox
                    # (a word ready at once), then one word per ``cpw`` cycles.
                    end = max(end, last_issue[oy_prev] + 1 + (max(1, left) - 1) * cpw)
            row_end[r] = end
            r += 1
        state["next"] = r

    first_issue = None
    prev_end = None
    for oy in range(oh):
        need = min(h, oy * s - pt + k)
        write_rows_upto(need - 1)
        start = row_end[need - 1] + ROW_LAT if need > 0 else t_wlast + ISSUE_LAT
        start = max(start, t_wlast + ISSUE_LAT, prev_end + 1 if prev_end is not None else 0)
        if first_issue is None:
            first_issue = start
        last_issue[oy] = start + ops_row - 1
        prev_end = last_issue[oy]
    write_rows_upto(h - 1)
    end_compute = prev_end - ops_last
    # Done waits for the last *beat* (in_done), not the last word: input rows no output reads
    # (stride 2, bottom rows) can end the run, one cycle after the beat that words trail.
    stream_end = row_end[h - 1] + 1 - _words_after_last_beat(simd, bus, geo.in_bytes)
    total = max(end_compute + drain, stream_end)
    return CycleBreakdown(cycles=int(total), setup=setup, load=first_issue - 1 - setup,
                          compute=geo.mac_steps, stall=end_compute - first_issue + 1 - geo.mac_steps,
                          drain=int(total - end_compute), roof=geo.roof_cycles)


def _weight_streaming(layer: ConvLayer, core: CoreConfig, geo: Geometry, bus: int) -> CycleBreakdown:
    simd, pe = core.simd, core.pe
    setup = setup_cycles(layer)
    t0 = setup + GEARBOX_LAT
    act_words = layer.h * geo.row_words
    words = geo.n_rec + act_words
    nbytes = PARAM_RECORD_BYTES * geo.n_rec + simd * act_words
    t_act = _stream_time(t0, words, nbytes, bus)
    kkc = layer.kernel ** 2 * geo.chunks_g
    pixels = layer.oh * layer.ow
    beat_bits = 8 * core.bus_bytes
    cur = t_act + ISSUE_LAT
    first_issue = None
    for g in range(layer.groups):
        for t in range(geo.tiles_g):
            lanes = min(pe, layer.cout_g - t * pe)
            per_out = max(kkc, _out_cycles(lanes, layer.out_bits, beat_bits))
            # The tile's weight rows gate its first pixel: step r issues at
            # max(previous + 1, row r arrived + WROW_LAT) = r + max(cur, max_{j<=r} arrival_j - j).
            r = np.arange(1, kkc + 1, dtype=np.int64)
            arrive = t0 + np.maximum(words + r * lanes, -(-(nbytes + r * simd * lanes) // bus)) + WROW_LAT
            gate = int((arrive - (r - 1)).max())
            if first_issue is None:
                first_issue = max(cur, int(arrive[0]))
            cur = kkc + max(cur, gate)
            words += kkc * lanes
            nbytes += kkc * simd * lanes
            cur += per_out - kkc + (pixels - 1) * per_out
    end_compute = cur - 1
    # The last tile's final words (one per output pixel, per_out apart), byte-aligned each.
    lanes = min(pe, layer.cout_g - (geo.tiles_g - 1) * pe)
    nb = -(-lanes * layer.out_bits // 8) * 8
    n = min(4, pixels)
    tail = [(i * per_out, lanes * layer.out_bits, True) for i in range(n)]
    total = end_compute + DRAIN + _packer_tail(tail, geo.out_bytes * 8 - n * nb, beat_bits)
    return CycleBreakdown(cycles=int(total), setup=setup, load=first_issue - 1 - setup,
                          compute=geo.mac_steps, stall=end_compute - first_issue + 1 - geo.mac_steps,
                          drain=int(total - end_compute), roof=geo.roof_cycles)


def reference_table_path() -> Path | None:
    """The RTL cycle table if present: ``vivado/cycles_reference.json`` or ``vivado/build/cycles.json``."""
    root = Path(__file__).resolve().parents[2] / "vivado"
    for p in (root / "cycles_reference.json", root / "build" / "cycles.json"):
        if p.is_file():
            return p
    return None


def load_reference_rows(path: str | Path | None = None) -> list[dict]:
    """Rows of the RTL cycle table: shape keys, core keys (bits, pe, simd, bus_bytes), rtl_cycles."""
    path = Path(path) if path else reference_table_path()
    if path is None:
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = data.get("rows", data) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict) and "rtl_cycles" in r]


def row_layer_core(row: dict, default_core: CoreConfig | None = None) -> tuple[ConvLayer, CoreConfig]:
    """The (layer, core) of one table row (missing core keys from ``default_core``)."""
    k = int(row.get("kernel", 1))
    pad = row.get("pads", row.get("pad", (k - 1) // 2))
    pads = tuple(int(p) for p in pad) if isinstance(pad, (list, tuple)) else (int(pad),) * 4
    layer = ConvLayer(cin=int(row["cin"]), cout=int(row["cout"]), h=int(row["h"]), w=int(row["w"]),
                      kernel=k, stride=int(row.get("stride", 1)), pads=pads,
                      groups=int(row.get("groups", 1)), in_signed=bool(row.get("in_signed", True)),
                      out_bits=int(row.get("out_bits", 8)),
                      out_signed=bool(row.get("out_signed", True)), relu=bool(row.get("relu", False)))
    d = default_core or CoreConfig()
    core_obj = row.get("core", row)
    core = CoreConfig(bits=int(core_obj.get("bits", row.get("bits", d.bits))),
                      pe=int(core_obj.get("pe", d.pe)), simd=int(core_obj.get("simd", d.simd)),
                      bus_bytes=int(core_obj.get("bus_bytes", d.bus_bytes)),
                      max_k=int(core_obj.get("max_k", d.max_k)),
                      lb_rows=int(core_obj.get("lb_rows", d.lb_rows)),
                      max_row_words=int(core_obj.get("max_row_words", d.max_row_words)),
                      max_wdepth=int(core_obj.get("max_wdepth", d.max_wdepth)),
                      max_tiles=int(core_obj.get("max_tiles", d.max_tiles)))
    return layer, core
