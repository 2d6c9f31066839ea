"""Benchmark: the Python cycle model against the RTL cycle counters on every row of the RTL
cycle table (vivado/cycles_reference.json, else vivado/build/cycles.json).

    python bench/cycle_model.py [--table PATH]

Prints one line per row (RTL cycles, model cycles, error) and the max / mean absolute error;
writes bench/results/cycle_model.json with, per row, the MAC-roof utilisation and the distance
to the layer's bound (the larger of the MAC roof and the input stream's beats). Target: every row exact (the model reproduces the
counter); the exit status is 2 if any row is off by more than 3 %.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohq_pynq.hw import core_model as cm  # noqa: E402
from ohq_pynq.hw import cycle_model  # noqa: E402
from ohq_pynq.hw.tiling import plan_layer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cycle_model.json")
    args = parser.parse_args(argv)
    path = args.table or cycle_model.reference_table_path()
    if path is None:
        print("no RTL cycle table (run `make -C vivado cycles-reference`)", file=sys.stderr)
        return 1
    rows = cycle_model.load_reference_rows(path)
    out_rows = []
    t0 = time.perf_counter()
    print(f"{'layer':28s} {'bits':>4s} {'rtl':>9s} {'model':>9s} {'err %':>7s}  load/compute/stall/drain")
    for row in rows:
        layer, core = cycle_model.row_layer_core(row)
        # The layer's runs as the driver plans them (a Cin=3 stem runs as im2col, ...).
        parts = [cycle_model.breakdown(t.layer, core) for t in plan_layer(layer, core).tiles]
        b = cycle_model.CycleBreakdown(
            cycles=sum(p.cycles for p in parts), setup=sum(p.setup for p in parts),
            load=sum(p.load for p in parts), compute=sum(p.compute for p in parts),
            stall=sum(p.stall for p in parts), drain=sum(p.drain for p in parts),
            roof=sum(p.roof for p in parts))
        rtl = int(row["rtl_cycles"])
        err = (b.cycles - rtl) / rtl
        # Bounds: the MAC roof (every lane busy every cycle) and the input stream (one beat a
        # cycle: what an FC layer, all weights and no reuse, cannot beat).
        stream = sum(cm.geometry(t.layer, core).in_beats for t in plan_layer(layer, core).tiles)
        out_rows.append({"name": row.get("name", ""), "bits": core.bits, "pe": core.pe,
                         "simd": core.simd, "bus_bytes": core.bus_bytes, "kernel": layer.kernel,
                         "stride": layer.stride, "cin": layer.cin, "cout": layer.cout, "h": layer.h,
                         "w": layer.w, "groups": layer.groups, "rtl_cycles": rtl,
                         "model_cycles": b.cycles, "error": err, "load": b.load,
                         "compute": b.compute, "stall": b.stall, "drain": b.drain,
                         "roof_cycles": b.roof, "utilisation": b.roof / rtl,
                         "stream_cycles": stream, "over_bound": rtl / max(b.roof, stream) - 1})
        print(f"{row.get('name', '')[:28]:28s} {core.bits:4d} {rtl:9d} {b.cycles:9d} {100 * err:+7.2f}  "
              f"{b.load}/{b.compute}/{b.stall}/{b.drain}")
    errs = [abs(r["error"]) for r in out_rows]
    table = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    summary = {"table": str(table), "rows": len(out_rows), "max_abs_error": max(errs, default=0.0),
               "mean_abs_error": sum(errs) / len(errs) if errs else 0.0,
               "within_3_percent": sum(e <= 0.03 for e in errs),
               "exact": sum(r["model_cycles"] == r["rtl_cycles"] for r in out_rows),
               "model_seconds": time.perf_counter() - t0}
    print(f"{summary['rows']} rows: max |error| {100 * summary['max_abs_error']:.2f} %, mean "
          f"{100 * summary['mean_abs_error']:.2f} %, {summary['exact']} exact, "
          f"{summary['within_3_percent']} within 3 %")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": out_rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if summary["within_3_percent"] == summary["rows"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
