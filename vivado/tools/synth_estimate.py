"""Resource estimate of ohq_conv configurations with yosys `synth_xilinx` (`make synth-estimate`).

For each configuration: synthesise for 7-series (xc7) or UltraScale+ (xcup), count LUTs
(LUT1..LUT6 incl. LUT-RAM/SRL cells), flip-flops, DSP48 slices and block RAMs (RAMB36 = 1,
RAMB18 = 0.5), print a table and write vivado/build/synth_estimate.json. yosys' mapping is
not Vivado's; treat the figures as estimates (typically within ~20-30% for LUTs).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VIVADO = Path(__file__).resolve().parents[1]
RTL = VIVADO / "rtl"
SOURCES = ["ohq_conv.v", "ohq_conv_engine.v", "ohq_gearbox.v", "ohq_out_packer.v",
           "ohq_mul_word.v"]

# name -> (family, parameters): the per-board candidates of ohq_pynq/hw/boards.json.
# LUT_MULS: 0 one product per DSP48, 1 LUT shift-add multipliers, 2 (int4) two products per DSP48.
M1K = dict(MAX_ROW_WORDS=1024, MAX_WDEPTH=1024, MAX_TILES=256)      # 8 x 1024-word line buffer
M512 = dict(MAX_ROW_WORDS=512, MAX_WDEPTH=512, MAX_TILES=128)
CONFIGS = {
    # PYNQ-Z2 (xc7z020, 64-bit HP port)
    "z7_int8_pe8_simd8": ("xc7", dict(BITS=8, PE=8, SIMD=8, BUS_BYTES=8, LUT_MULS=0, **M1K)),
    "z7_int4_pe8_simd8_dsp2": ("xc7", dict(BITS=4, PE=8, SIMD=8, BUS_BYTES=8, LUT_MULS=2, **M1K)),
    "z7_int4_pe8_simd8_lut": ("xc7", dict(BITS=4, PE=8, SIMD=8, BUS_BYTES=8, LUT_MULS=1, **M1K)),
    "z7_int8_pe4_simd8": ("xc7", dict(BITS=8, PE=4, SIMD=8, BUS_BYTES=8, LUT_MULS=0, **M1K)),
    # Ultra96-V2 (xczu3eg), KV260 (xck26), ZCU104 (xczu7ev): 128-bit HP ports
    "zu_int8_pe8_simd8": ("xcup", dict(BITS=8, PE=8, SIMD=8, BUS_BYTES=16, LUT_MULS=0, **M1K)),
    "zu_int4_pe8_simd8_dsp2": ("xcup", dict(BITS=4, PE=8, SIMD=8, BUS_BYTES=16, LUT_MULS=2, **M1K)),
    "zu_int8_pe8_simd16": ("xcup", dict(BITS=8, PE=8, SIMD=16, BUS_BYTES=16, LUT_MULS=0, **M1K)),
    "zu_int4_pe8_simd16_dsp2": ("xcup", dict(BITS=4, PE=8, SIMD=16, BUS_BYTES=16, LUT_MULS=2, **M1K)),
    "zu_int8_pe16_simd16": ("xcup", dict(BITS=8, PE=16, SIMD=16, BUS_BYTES=16, LUT_MULS=0, **M1K)),
    "zu_int4_pe16_simd16_dsp2": ("xcup", dict(BITS=4, PE=16, SIMD=16, BUS_BYTES=16, LUT_MULS=2, **M1K)),
    "zu_int8_pe8_simd16_m512": ("xcup", dict(BITS=8, PE=8, SIMD=16, BUS_BYTES=16, LUT_MULS=0, **M512)),
    "zu_int4_pe16_simd16_dsp2_m512": ("xcup", dict(BITS=4, PE=16, SIMD=16, BUS_BYTES=16, LUT_MULS=2, **M512)),
}


# The MAC array of one lane alone (rtl/ohq_mul_word.v: one word's products), per multiplier
# style: seconds to synthesise, so the multiplier choice is measured even where a whole core
# does not finish on a busy machine.
MUL_CONFIGS = {
    f"mul_{fam}_int{b}_ch{ch}_{style}": (fam, dict(BITS=b, CH=ch, LUT_MULS=m))
    for fam in ("xc7", "xcup")
    for b, ch, style, m in ((8, 8, "dsp", 0), (8, 8, "lut", 1), (4, 16, "dsp", 0),
                            (4, 16, "lut", 1), (4, 16, "dsp2", 2))
}


def yosys_script(family: str, params: dict, depth: bool = False) -> str:
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    reads = "; ".join(f"read_verilog -I{RTL} {RTL / s}" for s in SOURCES)
    # ltp -noff: the longest path of mapped cells (LUTs, carry chains, muxes, DSPs) between
    # registers/memories: the logic depth that sets Fmax, as far as yosys can tell without timing.
    ltp = "; tee -q -o {ltp} ltp -noff" if depth else ""
    return (f"{reads}; chparam {chparam} ohq_conv; synth_xilinx -top ohq_conv -family {family} "
            f"-flatten; tee -q -o {{stat}} stat{ltp}")


def parse_stat(text: str) -> dict:
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\d+)\s+(\$?\w+)\s*$|^\s+(\$?\w+)\s+(\d+)\s*$", text, re.M):
        if m.group(1):
            cells[m.group(2)] = cells.get(m.group(2), 0) + int(m.group(1))
        else:
            cells[m.group(3)] = cells.get(m.group(3), 0) + int(m.group(4))
    lut = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lutram = sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")))
    ff = sum(v for k, v in cells.items() if re.fullmatch(r"FD[CPRS]E?(_1)?", k))
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP48"))
    bram = sum(v for k, v in cells.items() if k.startswith("RAMB36")) + \
        0.5 * sum(v for k, v in cells.items() if k.startswith("RAMB18"))
    return {"lut": lut + lutram, "lutram_cells": lutram, "ff": ff, "dsp": dsp, "bram36": bram,
            "carry": sum(v for k, v in cells.items() if k.startswith("CARRY")), "cells": cells}


def mul_script(family: str, params: dict) -> str:
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    return (f"read_verilog {RTL / 'ohq_mul_word.v'}; chparam {chparam} ohq_mul_word; "
            f"synth_xilinx -top ohq_mul_word -family {family} -flatten; tee -q -o {{stat}} stat; "
            "tee -q -o {ltp} ltp -noff")


def run(name: str, family: str, params: dict, depth: bool = False) -> dict:
    t0 = time.time()
    mul = name.startswith("mul_")
    depth = depth or mul
    with tempfile.TemporaryDirectory() as tmp:
        stat, ltp = Path(tmp) / "stat.txt", Path(tmp) / "ltp.txt"
        script = (mul_script(family, params) if mul else yosys_script(family, params, depth)).format(
            stat=stat, ltp=ltp)
        proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True, check=False)
        if proc.returncode or not stat.exists():
            raise SystemExit(f"yosys failed for {name}:\n{proc.stderr[-2000:]}")
        text = stat.read_text()
        extra = {}
        if depth and ltp.exists():
            m = re.search(r"length=(\d+)", ltp.read_text())
            extra["logic_depth_cells"] = int(m.group(1)) if m else None
    idx = text.rfind("=== ohq_mul_word ===" if mul else "=== ohq_conv ===")
    res = parse_stat(text[idx:] if idx >= 0 else text)
    return {"name": name, "family": family, **params, **res, **extra, "seconds": round(time.time() - t0)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="substring filter on configuration names")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--depth", action="store_true", help="also report the logic depth (ltp)")
    parser.add_argument("--out", type=Path, default=VIVADO / "build" / "synth_estimate.json")
    args = parser.parse_args(argv)
    if shutil.which("yosys") is None:
        print("yosys is not installed (apt install yosys)", file=sys.stderr)
        return 1
    configs = {**CONFIGS, **MUL_CONFIGS}
    todo = [(n, *c) for n, c in configs.items() if not args.only or args.only in n]
    with ThreadPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(lambda t: run(*t, depth=args.depth), todo))
    print(f"{'config':30s} {'LUT':>7s} {'FF':>7s} {'DSP':>5s} {'BRAM36':>6s} {'CARRY':>6s} {'depth':>5s}")
    for r in rows:
        print(f"{r['name']:30s} {r['lut']:7d} {r['ff']:7d} {r['dsp']:5d} {r['bram36']:6.1f} "
              f"{r['carry']:6d} {r.get('logic_depth_cells', '-')!s:>5s}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    merged = {r["name"]: r for r in old}
    merged.update({r["name"]: r for r in rows})
    args.out.write_text(json.dumps(list(merged.values()), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
