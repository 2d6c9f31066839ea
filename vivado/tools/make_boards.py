"""Write ohq_pynq/hw/boards.json: per board the part, PL clock, stream width and the int4/int8
core sizes chosen from the yosys estimates in vivado/build/synth_estimate.json (`make boards`).
Checks each board's pair of cores (+ DMA/interconnect allowance) fits the part's resources."""
from __future__ import annotations

import json
import sys
from pathlib import Path

VIVADO = Path(__file__).resolve().parents[1]
OUT = VIVADO.parent / "ohq_pynq" / "hw" / "boards.json"
# Two AXI DMAs (simple mode) + SmartConnect/interconnect + concat: allowance, not measured.
OVERHEAD = {"lut": 6000, "ff": 9000, "dsp": 0, "bram36": 8}
LIMIT = 0.80   # keep every resource below 80% for placement and timing headroom

BOARDS = {
    "pynq-z2": dict(part="xc7z020clg400-1", board_part="tul.com.tw:pynq-z2:part0:1.0", ps="zynq",
                    fclk_hz=100_000_000, bus_bytes=8,
                    resources={"lut": 53200, "ff": 106400, "dsp": 220, "bram36": 140},
                    cores={"8": "z7_int8_pe8_simd8", "4": "z7_int4_pe8_simd8"}),
    "ultra96v2": dict(part="xczu3eg-sbva484-1-i", board_part="avnet.com:ultra96v2:part0:1.2", ps="zynq_ultra",
                      fclk_hz=150_000_000, bus_bytes=16,
                      resources={"lut": 70560, "ff": 141120, "dsp": 360, "bram36": 216},
                      cores={"8": "zu_int8_pe8_simd16", "4": "zu_int4_pe8_simd16"}),
    "zcu104": dict(part="xczu7ev-ffvc1156-2-e", board_part="xilinx.com:zcu104:part0:1.1", ps="zynq_ultra",
                   fclk_hz=150_000_000, bus_bytes=16,
                   resources={"lut": 230400, "ff": 460800, "dsp": 1728, "bram36": 312},
                   cores={"8": "zu_int8_pe16_simd16", "4": "zu_int4_pe16_simd16"}),
    "kv260": dict(part="xck26-sfvc784-2LV-c", board_part="xilinx.com:kv260_som:part0:1.4", ps="zynq_ultra",
                  fclk_hz=150_000_000, bus_bytes=16,
                  resources={"lut": 117120, "ff": 234240, "dsp": 1248, "bram36": 144},
                  cores={"8": "zu_int8_pe8_simd16_m512", "4": ("zu_int4_pe8_simd16", "zu_int8_pe8_simd16_m512")}),
}


def main() -> int:
    est = {r["name"]: r for r in json.loads((VIVADO / "build" / "synth_estimate.json").read_text())}
    out = {"note": ("Core sizes per board, chosen from yosys synth_xilinx estimates "
                    "(vivado/tools/synth_estimate.py); fclk_hz is the target clock, not yet "
                    "confirmed by Vivado timing. Written by vivado/tools/make_boards.py."),
           "boards": {}}
    ok = True
    for board, b in BOARDS.items():
        total = dict(OVERHEAD)
        cores = {}
        for bits, name in b["cores"].items():
            # (logic from one configuration, memories from another) when a variant was only
            # synthesised at one bit width: BRAM depends on the memories, not the bits.
            logic, mem = (name, name) if isinstance(name, str) else name
            e, m = est[logic], est[mem]
            cores[bits] = {"pe": e["PE"], "simd": e["SIMD"], "bus_bytes": e["BUS_BYTES"], "max_k": 7,
                           "lb_rows": 8, "max_row_words": m["MAX_ROW_WORDS"],
                           "max_wdepth": m["MAX_WDEPTH"], "max_tiles": m["MAX_TILES"],
                           "lut_muls": 1 if int(bits) == 4 else 0,
                           "estimate": {"lut": e["lut"], "ff": e["ff"], "dsp": e["dsp"],
                                        "bram36": m["bram36"]}}
            for k in ("lut", "ff", "dsp", "bram36"):
                total[k] += cores[bits]["estimate"][k]
        use = {k: round(total[k] / b["resources"][k], 3) for k in total}
        fits = all(v <= LIMIT for v in use.values())
        ok &= fits
        out["boards"][board] = {k: v for k, v in b.items() if k not in ("cores",)} | {
            "cores": cores, "estimated_use": use, "fits": fits}
        print(f"{board:10s} " + " ".join(f"{k}={100 * v:4.1f}%" for k, v in use.items())
              + ("" if fits else "  OVER LIMIT"))
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
