"""ILP solve time on a ResNet-50-sized problem (54 layers × {4, 8}, three budgets) and a 20-point
Pareto sweep. Targets (issue 5): solve ≤ 0.5 s, sweep ≤ 5 s.

Layer shapes are ResNet-50 v1.5 at 224×224 (conv1, 16 bottlenecks, 4 downsamples, fc = 54 layers),
costs from the simulator's profile of those shapes on PYNQ-Z2 (``oqa.simulated_profile``, energy from
its model), sensitivities seeded random (exponential). Prints a
table and writes ``bench/results/ilp.json``.

    /work/venv/bin/python bench/ilp.py [--repeats 20] [--points 20]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohq_pynq.errors import InfeasibleError  # noqa: E402
from ohq_pynq.fileio import write_json  # noqa: E402
from ohq_pynq.graph import Layer  # noqa: E402
from ohq_pynq.ilp import make_problem, solve  # noqa: E402
from ohq_pynq.pareto import pareto_frontier  # noqa: E402
from ohq_pynq.oqa import simulated_profile  # noqa: E402

TARGET_SOLVE_S = 0.5
TARGET_SWEEP_S = 5.0


def _conv(name, index, cin, cout, k, stride, in_hw, groups=1, op="Conv"):
    out_hw = (in_hw + 2 * (k // 2) - k) // stride + 1
    macs = out_hw * out_hw * cout * (cin // groups) * k * k
    return Layer(name=name, op=op, index=index, input=f"{name}.in", output=f"{name}.out", weight=f"{name}.w",
                 bias=f"{name}.b", cin=cin, cout=cout, kernel=(k, k), stride=(stride, stride),
                 pads=(k // 2,) * 4, dilation=(1, 1), groups=groups, in_hw=(in_hw, in_hw),
                 out_hw=(out_hw, out_hw), macs=macs, params=cout * (cin // groups) * k * k + cout)


def resnet50_layers() -> list[Layer]:
    """The 54 quantizable layers of ResNet-50 v1.5 at 224×224."""
    layers = [_conv("conv1", 0, 3, 64, 7, 2, 224)]
    hw, cin = 56, 64                                   # after the 3×3/2 max-pool
    for stage, (mid, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
        out = mid * 4
        for blk in range(blocks):
            s = stride if blk == 0 else 1
            pre = f"layer{stage}.{blk}"
            layers.append(_conv(f"{pre}.conv1", len(layers), cin, mid, 1, 1, hw))
            layers.append(_conv(f"{pre}.conv2", len(layers), mid, mid, 3, s, hw))
            new_hw = layers[-1].out_hw[0]
            layers.append(_conv(f"{pre}.conv3", len(layers), mid, out, 1, 1, new_hw))
            if blk == 0:
                layers.append(_conv(f"{pre}.downsample", len(layers), cin, out, 1, s, hw))
            cin, hw = out, new_hw
    layers.append(_conv("fc", len(layers), 2048, 1000, 1, 1, 1, op="Gemm"))
    return layers


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ilp.json"))
    args = ap.parse_args(argv)

    layers = resnet50_layers()
    assert len(layers) == 54, len(layers)
    rng = np.random.default_rng(0)
    sens = {"schema": 1, "estimator": "synthetic",
            "layers": {l.name: float(rng.exponential(0.05)) for l in layers}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the placeholder-profile warning
        profile = simulated_profile(layers)
        problem = make_problem(sens, profile)
    budgets = {"latency": "0.75", "size": "0.7", "energy": "0.8"}

    solve(problem, **budgets)                    # warm-up: cvxopt import, GLPK load
    alloc, t_solve = timed(lambda: solve(problem, **budgets), args.repeats)
    frontier, t_sweep = timed(lambda: pareto_frontier(problem, "latency", args.points,
                                                      size=budgets["size"], energy=budgets["energy"]),
                              max(3, args.repeats // 5))

    def infeasible():
        try:
            solve(problem, latency="0.3", size="0.7", energy="0.8")
        except InfeasibleError as err:
            return str(err)
        raise AssertionError("expected an infeasible budget")

    message, t_infeasible = timed(infeasible, max(3, args.repeats // 5))
    ties = [[l.name for l in layers if l.name.startswith(f"layer{s}.")] for s in (1, 4)]
    _, t_ties = timed(lambda: solve(problem, ties=ties, **budgets), max(3, args.repeats // 5))

    med_solve, med_sweep = statistics.median(t_solve), statistics.median(t_sweep)
    results = {
        "problem": {"layers": len(layers), "bits": list(problem.bits), "budgets": budgets,
                    "profile": "simulated (pynq-z2, shapes only)", "sensitivity": "seeded exponential"},
        "solve_seconds": {"median": med_solve, "max": max(t_solve), "repeats": len(t_solve),
                          "target": TARGET_SOLVE_S, "meets_target": med_solve <= TARGET_SOLVE_S},
        "pareto_seconds": {"median": med_sweep, "max": max(t_sweep), "points": args.points,
                           "frontier_points": len(frontier.points), "target": TARGET_SWEEP_S,
                           "meets_target": med_sweep <= TARGET_SWEEP_S},
        "infeasible_explain_seconds": statistics.median(t_infeasible),
        "tied_solve_seconds": statistics.median(t_ties),
        "chosen": {"layers_at_4": sum(1 for b in alloc.bits.values() if b == 4),
                   "latency_vs_int8": alloc.ratio("latency"), "size_vs_int8": alloc.ratio("size"),
                   "energy_vs_int8": alloc.ratio("energy"), "objective": alloc.objective},
        "infeasible_message": message,
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "processor": platform.processor()},
    }
    print(f"ResNet-50-sized ILP: {len(layers)} layers x {list(problem.bits)}, budgets {budgets}")
    print(f"  solve          median {med_solve * 1e3:8.1f} ms  max {max(t_solve) * 1e3:8.1f} ms  "
          f"(target <= {TARGET_SOLVE_S * 1e3:.0f} ms)  {'OK' if med_solve <= TARGET_SOLVE_S else 'MISSED'}")
    print(f"  pareto x{args.points:<3d}   median {med_sweep * 1e3:8.1f} ms  max {max(t_sweep) * 1e3:8.1f} ms  "
          f"(target <= {TARGET_SWEEP_S:.0f} s)  {'OK' if med_sweep <= TARGET_SWEEP_S else 'MISSED'}"
          f"  -> {len(frontier.points)} frontier points")
    print(f"  infeasible + explanation  {results['infeasible_explain_seconds'] * 1e3:8.1f} ms")
    print(f"  solve with 2 tie groups   {results['tied_solve_seconds'] * 1e3:8.1f} ms")
    c = results["chosen"]
    print(f"  chosen: {c['layers_at_4']}/54 layers at 4 bits; latency {c['latency_vs_int8']:.3f}x, "
          f"size {c['size_vs_int8']:.3f}x, energy {c['energy_vs_int8']:.3f}x of all-int8")
    print(f"  infeasible example: {message}")
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
