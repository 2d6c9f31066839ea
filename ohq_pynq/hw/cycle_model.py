"""Cycle model of the ohq_conv core: what its CYCLES counter reads for one run.

Derived from the RTL schedule (``vivado/rtl/ohq_conv_engine.v``), at the granularity of rows:

1. **Setup** (``SETUP`` cycles): start accepted, two 16-step restoring divisions (cin/groups,
   cout/groups), six derived-size stages.
2. **Load**: the gearbox turns stream beats (``bus_bytes``) into words — 8-byte param records,
   then ``simd``-byte weight and activation words — at most one word and one beat per cycle, so a
   word costs ``max(1, word_bytes / stream_bytes)`` cycles. All params and weights are stored
   before compute may start.
3. **Activations and compute overlap**: activation rows go into a circular line buffer of
   ``lb_rows`` rows; output row ``oy`` issues ``OW * ntiles * K^2 * chunks_g`` MAC steps (one per
   cycle) once input rows up to ``oy*stride - pad_t + K - 1`` are written; the writer may not
   overwrite a row the current output row still reads. This is an event recurrence over rows:
   ``row_end[r] = max(natural stream time, row_end[r-1] + row cost, row allowed + row cost)``,
   ``issue[oy] = max(issue[oy-1] + ops_row, row_end[need(oy)-1] + 1)``.
4. **Output limit**: one result word of ``PE`` outputs per (pixel, tile); the packer emits one
   beat per cycle, so a word costs ``max(K^2 * chunks_g, ceil(word_bits / beat_bits))`` cycles.
5. **Drain** (``DRAIN`` cycles): 7 pipeline stages, FIFO, packer, tlast, done.

The integer constants were read off the RTL; :data:`FIT` holds what the fit against the RTL's
cycle table (``vivado/cycles_reference.json``, see ``bench/cycle_model.py``) changes. Everything
is in clock cycles of the core (``seconds = cycles / fclk``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .core_model import PARAM_RECORD_BYTES, ConvLayer, CoreConfig, geometry

SETUP = 22          # start accepted -> ST_RUN (16 division steps + 6 setup stages)
GEARBOX_LAT = 1     # first beat accepted one cycle into ST_RUN
ISSUE_LAT = 2       # weights done -> C_RUN -> first issue
ROW_LAT = 1         # row written -> rows_written compared -> issue
DRAIN = 11          # last issue -> 7 stages, FIFO push, packer accept, beat, tlast, done (RTL-checked)

# Additive corrections from the fit against the RTL table (cycles); zero until fitted.
FIT = {"offset": 0.0}


@dataclass(frozen=True)
class CycleBreakdown:
    """Where a run's cycles go: total plus its components (all in cycles)."""

    cycles: int
    setup: int
    load: int            # params + weights streamed before the first MAC step could issue
    compute: int         # MAC steps issued (== the MAC_ACTIVE counter)
    stall: int           # cycles from the first to the last MAC step with nothing issued
    drain: int
    roof: float          # MACs / (PE * SIMD * pack): the ideal

    @property
    def utilisation(self) -> float:
        return self.roof / self.cycles if self.cycles else 0.0


def cycles(layer: ConvLayer, core: CoreConfig, stream_bytes: int | None = None) -> int:
    """Modelled CYCLES counter of one run of ``layer`` on ``core`` (cycles)."""
    return breakdown(layer, core, stream_bytes).cycles


def breakdown(layer: ConvLayer, core: CoreConfig, stream_bytes: int | None = None) -> CycleBreakdown:
    """Modelled cycles of one run with components; ``stream_bytes`` is the input stream's
    sustained bytes per cycle (default: the bus width, i.e. an ideal DMA)."""
    geo = geometry(layer, core)
    bus = min(core.bus_bytes, stream_bytes or core.bus_bytes)
    pe, simd = core.pe, core.simd
    k, s = layer.kernel, layer.stride
    h, oh, ow = layer.h, layer.oh, layer.ow
    kkc = k * k * geo.chunks_g

    t0 = SETUP + GEARBOX_LAT              # edge before the first word can be taken
    n_rec = geo.ntiles * pe
    n_w = pe * geo.wpl
    words_pw = n_rec + n_w
    bytes_pw = PARAM_RECORD_BYTES * n_rec + simd * n_w
    t_wlast = t0 + max(words_pw, -(-bytes_pw // bus))
    rw = geo.row_words
    cpw = max(1, -(-simd // bus))         # cycles per activation word when the stream is steady
    row_cost = rw * cpw

    # Output limit: a result word (pixel x tile) carries its valid lanes only; the packer takes
    # at most one word and emits one beat per cycle. The FIFO smooths over a pixel.
    beat_bits = 8 * core.bus_bytes
    cout_g = layer.cout if geo.depthwise else layer.cout_g
    groups = 1 if geo.depthwise else layer.groups
    last_lanes = cout_g - (geo.tiles_g - 1) * pe
    word_cyc = lambda lanes: max(1, -(-lanes * layer.out_bits // beat_bits))  # noqa: E731
    out_px = groups * ((geo.tiles_g - 1) * word_cyc(pe) + word_cyc(last_lanes))
    ops_row = ow * max(geo.ntiles * kkc, out_px)

    row_end = [0] * h
    last_issue = [0] * oh
    lb = core.lb_rows
    pt = layer.pads[0]
    state = {"next": 0}

    def write_rows_upto(r_max: int, final: bool = False):
        r = state["next"]
        while r <= r_max:
            natural = t0 + max(words_pw + (r + 1) * rw, -(-(bytes_pw + simd * rw * (r + 1)) // bus))
            end = natural
            if r > 0:
                end = max(end, row_end[r - 1] + row_cost)
            q = r - lb + pt
            if q >= 0:
                oy_free = min(q // s, oh - 1)
                end = max(end, last_issue[oy_free] + row_cost)
            row_end[r] = end
            r += 1
        state["next"] = r

    issue = t_wlast + ISSUE_LAT
    first_issue = None
    prev_end = None
    for oy in range(oh):
        need = min(h, oy * s - pt + k)
        write_rows_upto(need - 1)
        start = row_end[need - 1] + ROW_LAT if need > 0 else issue
        start = max(start, issue if prev_end is None else prev_end + 1, t_wlast + ISSUE_LAT)
        if first_issue is None:
            first_issue = start
        last_issue[oy] = start + ops_row - 1
        prev_end = last_issue[oy]
    write_rows_upto(h - 1)
    end_compute = prev_end
    done = max(end_compute + DRAIN, row_end[h - 1] + 1)
    total = int(round(done + FIT.get("offset", 0.0)))
    compute = geo.mac_steps
    return CycleBreakdown(cycles=total, setup=SETUP, load=first_issue - 1 - SETUP,
                          compute=compute, stall=end_compute - first_issue + 1 - compute,
                          drain=total - end_compute, roof=geo.roof_cycles)


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
