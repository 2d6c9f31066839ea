"""Re-measure tests/data/rtl_cycles_spotcheck.json on the RTL (after an RTL change).

Each row is one layer on one core configuration; the layers of a configuration run back to back
under Icarus + cocotb (vivado/tb/cycles_tb.py, outputs checked bit-exactly) and the row's
``rtl_cycles`` / ``mac_active_cycles`` are replaced by the fresh CYCLES / MAC_ACTIVE counters.
The layers themselves are kept, so the file stays a fixed set of random shapes.

    python vivado/tools/spotcheck.py [--only BITS_PE_SIMD_BUS]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VIVADO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(VIVADO / "tools"), str(VIVADO / "tb"), str(VIVADO.parent)]

from ohq_pynq.hw import cycle_model  # noqa: E402
from cycles import simulate  # noqa: E402

PATH = VIVADO.parent / "tests" / "data" / "rtl_cycles_spotcheck.json"
CORE_KEYS = ("bits", "pe", "simd", "bus_bytes", "max_row_words", "max_wdepth", "max_tiles")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="one configuration, e.g. 8_8_8_8")
    parser.add_argument("--source", default=None, help="new text of the file's 'source' field")
    args = parser.parse_args(argv)
    data = json.loads(PATH.read_text())
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(data["rows"]):
        groups.setdefault(tuple(r[k] for k in CORE_KEYS), []).append(i)
    bad = 0
    for key, idx in groups.items():
        tag = "_".join(str(v) for v in key[:4])
        if args.only and tag != args.only:
            continue
        params = dict(BITS=key[0], PE=key[1], SIMD=key[2], BUS_BYTES=key[3], MAX_ROW_WORDS=key[4],
                      MAX_WDEPTH=key[5], MAX_TILES=key[6])
        layers = [cycle_model.row_layer_core(data["rows"][i])[0] for i in idx]
        measured = simulate(f"spot_{tag}", params, layers)
        if measured is None:
            print(f"{tag}: simulation failed", file=sys.stderr)
            return 1
        for i, cnt, layer in zip(idx, measured, layers):
            row = data["rows"][i]
            row["rtl_cycles"], row["mac_active_cycles"] = cnt["CYCLES"], cnt["MAC_ACTIVE"]
            _, core = cycle_model.row_layer_core(row)
            model = cycle_model.cycles(layer, core)
            bad += model != cnt["CYCLES"]
            if model != cnt["CYCLES"]:
                print(f"{tag}: model {model} != rtl {cnt['CYCLES']} for {layer}", file=sys.stderr)
        print(f"{tag}: {len(idx)} layers re-measured", file=sys.stderr)
    if args.source:
        data["source"] = args.source
    PATH.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0 if bad == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
