"""Benchmark: OQA on the simulator for ResNet-18 and MobileNetV3-Small 224 layouts (wall time,
no cache), and the predicted all-int8 vs all-int4 latency (and energy where modelled) per board.

    python bench/oqa.py [--boards pynq-z2,ultra96v2,zcu104,kv260]

Writes bench/results/oqa.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohq_pynq import zoo  # noqa: E402
from ohq_pynq.hw.sim import SimAccelerator  # noqa: E402
from ohq_pynq.oqa import profile_network  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="pynq-z2,ultra96v2,zcu104,kv260")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "oqa.json")
    args = parser.parse_args(argv)
    models = {"resnet18": zoo.resnet18(224), "mobilenet_v3_small": zoo.mobilenet_v3_small(224)}
    results = []
    print(f"{'model':20s} {'board':10s} {'layers':>6s} {'oqa s':>7s} {'int8 ms':>9s} {'int4 ms':>9s} "
          f"{'speedup':>7s} {'int8 mJ':>9s} {'int4 mJ':>9s} {'runs':>6s}")
    for mname, model in models.items():
        for board in args.boards.split(","):
            acc = SimAccelerator(board)
            t0 = time.perf_counter()
            prof = profile_network(model, acc, bits=(4, 8), cache=None)
            wall = time.perf_counter() - t0
            tot = {}
            for b in (4, 8):
                costs = [c[b] for c in prof.layers.values()]
                joules = None if any(c.joules is None for c in costs) else sum(c.joules for c in costs)
                tot[b] = {"seconds": sum(c.seconds for c in costs),
                          "cycles": sum(c.cycles for c in costs), "joules": joules,
                          "bytes": sum(c.bytes for c in costs),
                          "weight_bytes": sum(c.weight_bytes for c in costs),
                          "runs": sum(c.extra.get("runs", 1) for c in costs)}
            row = {"model": mname, "board": board, "layers": len(prof.layers), "oqa_wall_seconds": wall,
                   "int8": tot[8], "int4": tot[4], "speedup_int4": tot[8]["seconds"] / tot[4]["seconds"],
                   "hardware": prof.hardware}
            results.append(row)
            mj = lambda j: f"{1e3 * j:9.2f}" if j is not None else f"{'n/a':>9s}"  # noqa: E731
            print(f"{mname:20s} {board:10s} {row['layers']:6d} {wall:7.2f} {1e3 * tot[8]['seconds']:9.2f} "
                  f"{1e3 * tot[4]['seconds']:9.2f} {row['speedup_int4']:7.2f} {mj(tot[8]['joules'])} "
                  f"{mj(tot[4]['joules'])} {tot[8]['runs']:6d}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
