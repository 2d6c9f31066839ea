"""Write ohq_pynq/hw/boards.json and bench/results/synth.json: per board the part, PL clock,
stream width and the int4/int8 core sizes chosen from the yosys estimates in
vivado/build/synth_estimate.json (`make boards`).

For each board, every pair (int8 candidate, int4 candidate) synthesised for the board's family
and stream width is checked against the part: both cores plus the DMA/interconnect allowance
must stay within ``LIMIT`` of every resource (LUT, FF, DSP48, BRAM36), and the int4 core must do
at least twice the int8 core's MACs per cycle (:data:`MIN_INT4_GAIN`: otherwise int4 buys bytes
but no cycles, and the search has nothing to trade). Among the pairs that qualify, the one with
the largest product of the two cores' MACs per cycle is taken (ties: the lower peak use), i.e.
the part is filled as far as both widths can grow together. A candidate's
logic (LUT, FF, DSP) comes from its own run; its BRAM may come from another run with the same
lanes (PE, SIMD) and memories (BRAM does not depend on BITS or the multipliers), so one run of a
smaller-memory variant serves every width.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

VIVADO = Path(__file__).resolve().parents[1]
ROOT = VIVADO.parent
OUT = ROOT / "ohq_pynq" / "hw" / "boards.json"
RESULTS = ROOT / "bench" / "results" / "synth.json"
# Two AXI DMAs (simple mode) + SmartConnect/interconnect + concat: allowance, not measured.
OVERHEAD = {"lut": 6000, "ff": 9000, "dsp": 0, "bram36": 8}
# Cores + allowance within 90 % of every resource: the allowance is the DMA/interconnect's
# ~10-15 % of a PYNQ-Z2 (6k of 53k LUTs), the last 10 % is placement/timing headroom.
LIMIT = 0.90
MIN_INT4_GAIN = 2           # int4 MACs per cycle >= 2 x int8's (two int4 products per multiplier)
MEM_KEYS = ("MAX_ROW_WORDS", "MAX_WDEPTH", "MAX_TILES")

BOARDS = {
    "pynq-z2": dict(part="xc7z020clg400-1", board_part="tul.com.tw:pynq-z2:part0:1.0", ps="zynq",
                    family="xc7", fclk_hz=100_000_000, bus_bytes=8,
                    resources={"lut": 53200, "ff": 106400, "dsp": 220, "bram36": 140}),
    "ultra96v2": dict(part="xczu3eg-sbva484-1-i", board_part="avnet.com:ultra96v2:part0:1.2", ps="zynq_ultra",
                      family="xcup", fclk_hz=150_000_000, bus_bytes=16,
                      resources={"lut": 70560, "ff": 141120, "dsp": 360, "bram36": 216}),
    "zcu104": dict(part="xczu7ev-ffvc1156-2-e", board_part="xilinx.com:zcu104:part0:1.1", ps="zynq_ultra",
                   family="xcup", fclk_hz=150_000_000, bus_bytes=16,
                   resources={"lut": 230400, "ff": 460800, "dsp": 1728, "bram36": 312}),
    "kv260": dict(part="xck26-sfvc784-2LV-c", board_part="xilinx.com:kv260_som:part0:1.4", ps="zynq_ultra",
                  family="xcup", fclk_hz=150_000_000, bus_bytes=16,
                  resources={"lut": 117120, "ff": 234240, "dsp": 1248, "bram36": 144}),
}


def candidates(est: list[dict], family: str, bus: int, bits: int) -> list[dict]:
    """Synthesised configurations of ``bits`` for ``family``/``bus``, plus the same logic with the
    memories of any other run of the same lanes (BRAM from that run)."""
    mine = [e for e in est if not e["name"].startswith("mul_") and e["family"] == family
            and e["BUS_BYTES"] == bus]
    out = []
    for e in mine:
        if e["BITS"] != bits:
            continue
        for m in mine:
            if (m["PE"], m["SIMD"]) != (e["PE"], e["SIMD"]):
                continue
            if m is not e and any(m[k] == e[k] for k in MEM_KEYS):
                continue          # only whole other memory sets
            out.append({"logic": e, "mem": m,
                        "name": e["name"] if m is e else f"{e['name']}+mem:{m['name']}"})
    uniq = {c["name"]: c for c in out}
    return list(uniq.values())


def use_of(pair, b) -> dict:
    total = dict(OVERHEAD)
    for c in pair:
        for k in ("lut", "ff", "dsp"):
            total[k] += c["logic"][k]
        total["bram36"] += c["mem"]["bram36"]
    return {k: round(total[k] / b["resources"][k], 3) for k in total}


def macs(c) -> int:
    e = c["logic"]
    return e["PE"] * e["SIMD"] * (8 // e["BITS"])


def core_entry(c, bits: int) -> dict:
    e, m = c["logic"], c["mem"]
    return {"pe": e["PE"], "simd": e["SIMD"], "bus_bytes": e["BUS_BYTES"], "max_k": 7, "lb_rows": 8,
            "max_row_words": m["MAX_ROW_WORDS"], "max_wdepth": m["MAX_WDEPTH"],
            "max_tiles": m["MAX_TILES"], "lut_muls": e.get("LUT_MULS", 1 if bits == 4 else 0),
            "synth": c["name"],
            "estimate": {"lut": e["lut"], "ff": e["ff"], "dsp": e["dsp"], "bram36": m["bram36"]}}


def choose(est: list[dict], b: dict):
    """The best fitting (int8, int4) pair for board ``b`` and every pair considered."""
    c8 = candidates(est, b["family"], b["bus_bytes"], 8)
    c4 = candidates(est, b["family"], b["bus_bytes"], 4)
    tried, best = [], None
    for a in c8:
        for q in c4:
            use = use_of((a, q), b)
            fits = all(v <= LIMIT for v in use.values()) and macs(q) >= MIN_INT4_GAIN * macs(a)
            key = (math.log(macs(a)) + math.log(macs(q)), -max(use.values()))
            tried.append({"int8": a["name"], "int4": q["name"], "use": use, "fits": fits,
                          "macs_per_cycle": {"8": macs(a), "4": macs(q)}})
            if fits and (best is None or key > best[0]):
                best = (key, a, q, use)
    return best, tried


def main() -> int:
    est = json.loads((VIVADO / "build" / "synth_estimate.json").read_text())
    old = json.loads(OUT.read_text()) if OUT.exists() else {"boards": {}}
    out = {"note": ("Core sizes per board, chosen from yosys synth_xilinx estimates "
                    "(vivado/tools/synth_estimate.py) by vivado/tools/make_boards.py; fclk_hz is "
                    "the target clock, not yet confirmed by Vivado timing."),
           "boards": {}}
    report = {"tool": "yosys synth_xilinx (vivado/tools/synth_estimate.py)", "limit": LIMIT,
              "dma_allowance": OVERHEAD, "configs": est, "boards": {}}
    ok = True
    for board, b in BOARDS.items():
        best, tried = choose(est, b)
        info = {k: v for k, v in b.items() if k != "family"}
        if best is None:
            prev = old["boards"].get(board)
            if prev is None:
                print(f"{board:10s} no synthesised pair fits", file=sys.stderr)
                ok = False
                continue
            # Nothing synthesised for this board's family/width fits (or ran): keep the entry.
            out["boards"][board] = prev | {"estimate_source": prev.get("estimate_source", "RTL 1.0 estimates, not re-measured")}
            report["boards"][board] = {"chosen": None, "kept": "previous boards.json entry",
                                       "kept_cores": {bits: f"PE {c['pe']} x SIMD {c['simd']}"
                                                      for bits, c in prev["cores"].items()},
                                       "kept_use": prev.get("estimated_use"), "tried": tried}
            print(f"{board:10s} kept the previous entry (no synthesised pair fits)")
            continue
        _, a, q, use = best
        cores = {"8": core_entry(a, 8), "4": core_entry(q, 4)}
        out["boards"][board] = info | {"cores": cores, "estimated_use": use, "fits": True,
                                       "estimate_source": "yosys synth_xilinx of this RTL"}
        report["boards"][board] = {"part": b["part"], "resources": b["resources"],
                                   "chosen": {"8": a["name"], "4": q["name"]}, "use": use,
                                   "macs_per_cycle": {"8": macs(a), "4": macs(q)}, "tried": tried}
        print(f"{board:10s} int8 {a['name']:34s} int4 {q['name']:34s} "
              + " ".join(f"{k}={100 * v:4.1f}%" for k, v in use.items()))
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} and {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
