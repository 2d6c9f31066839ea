"""Allocation quality: the ILP's config vs random feasible configs and a greedy allocation.

Issue 5 target: at 75 % of the all-int8 latency, the ILP's config is more accurate than ≥ 95 % of
200 random configs that meet the same latency budget, and is compared with a greedy allocation.

Per model (ResNet and MobileNetV3 references, BN kept) the pipeline's inputs are rebuilt: 32
distilled images (seed 0), int8 ranges calibrated on them, MQE sensitivity (the default: int4
rounding of the layer's weights and input) on them; per board a simulator OQA profile
(``make_accelerator("sim", board)``). Then, under the latency budget:

* ``ilp``          ``ilp.solve`` with the defaults (β = γ = 0.5) — what the pipeline deploys;
* ``ilp_sens``     β = 1, γ = 0 (minimise sensitivity only; the budget alone bounds latency);
* ``ilp_exact``    β = γ = 0.5 on exact (layer alone at int4) sensitivities instead of MQE;
* ``greedy``       from all-int8, repeatedly drop to 4 bits the layer with the largest
                   latency-saved / MQE-sensitivity ratio until the budget holds;
* ``random``       200 distinct configs drawn uniformly among those meeting the budget (all
                   2^L configs enumerated when L ≤ 20, else uniform random bits with rejection).

Accuracy: top-1 on the first 1000 images of the bundled test split (onnxruntime, QDQ model).
"beats" = fraction of random configs strictly less accurate than the ILP's; "beats (≥lat)" the
same among the random configs whose latency is at least the ILP's (those spend as much budget).

When the budget cannot be met (all-int4 is slower than 75 % of all-int8: layers the int4 core
does not speed up), the budget becomes the midpoint between all-int4 and all-int8 (rounded up to
0.01), and that is recorded.

Prints a table and writes ``bench/results/allocation.json``. About 5-8 minutes on 2 cores.

    /work/venv/bin/python bench/allocation.py [--boards zcu104 pynq-z2] [--random 200] [--images 1000]
"""
from __future__ import annotations

import argparse
import itertools
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohq_pynq.distill import distill  # noqa: E402
from ohq_pynq.fileio import write_json  # noqa: E402
from ohq_pynq.hw.accelerator import make_accelerator  # noqa: E402
from ohq_pynq.ilp import make_problem, solve  # noqa: E402
from ohq_pynq.models import load_split, model_path  # noqa: E402
from ohq_pynq.mqe import sensitivity  # noqa: E402
from ohq_pynq.oqa import profile_network  # noqa: E402
from ohq_pynq.quant import calibrate, predict, prepare, quantize  # noqa: E402

TARGET_PERCENTILE = 0.95
BUDGET = 0.75
MODELS = ("digits_resnet_bn", "digits_mbv3_bn")
ENUMERATE_MAX_LAYERS = 20


class Evaluator:
    """Test accuracy of a bit config of one model, cached by config."""

    def __init__(self, net, ranges, x, y, executor):
        self.net, self.ranges, self.x, self.y, self.executor = net, ranges, x, y, executor
        self.cache: dict[tuple, float] = {}
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, bits: dict[str, int]) -> float:
        key = tuple(bits[n] for n in self.net.layer_names)
        if key not in self.cache:
            t0 = time.perf_counter()
            logits = predict(quantize(self.net, bits, self.ranges).to_onnx(), self.x, executor=self.executor)
            self.cache[key] = float(np.mean(logits.argmax(axis=-1) == self.y))
            self.seconds += time.perf_counter() - t0
            self.calls += 1
        return self.cache[key]


def latency_table(problem) -> np.ndarray:
    """(layers, 2) seconds at [4, 8] bits."""
    t = problem.table("latency")
    return t[:, [problem.bits.index(4), problem.bits.index(8)]]


def random_feasible(problem, limit: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Up to ``n`` distinct configs (rows of 0 = 4 bits / 1 = 8 bits), uniform among those with
    latency ≤ limit."""
    lat = latency_table(problem)
    L = len(problem.names)
    if L <= ENUMERATE_MAX_LAYERS:
        allc = np.array(list(itertools.product((0, 1), repeat=L)), dtype=np.int8)
        tot = (lat[np.arange(L), allc]).sum(axis=1)
        feas = allc[tot <= limit * (1 + 1e-9)]
        k = min(n, len(feas))
        pick = feas[rng.choice(len(feas), size=k, replace=False)]
        return pick, {"method": "enumerated", "space": int(len(allc)), "feasible": int(len(feas)),
                      "feasible_fraction": len(feas) / len(allc)}
    seen, out, tries, accepted = set(), [], 0, 0
    while len(out) < n and tries < 10_000_000:
        c = rng.integers(0, 2, size=(4096, L), dtype=np.int8)
        tries += len(c)
        ok = c[(lat[np.arange(L), c]).sum(axis=1) <= limit * (1 + 1e-9)]
        accepted += len(ok)
        for row in ok:
            t = row.tobytes()
            if t not in seen:
                seen.add(t)
                out.append(row)
                if len(out) == n:
                    break
    return np.array(out), {"method": "rejection", "space": 2 ** L, "tries": tries,
                           "feasible_fraction": accepted / tries}


def greedy(problem, sens: dict[str, float], limit: float) -> np.ndarray:
    lat = latency_table(problem)
    L = len(problem.names)
    c = np.ones(L, dtype=np.int8)
    saved = lat[:, 1] - lat[:, 0]
    s = np.array([sens[n] for n in problem.names])
    while lat[np.arange(L), c].sum() > limit * (1 + 1e-9):
        cand = [i for i in range(L) if c[i] == 1 and saved[i] > 0]
        if not cand:
            break
        i = max(cand, key=lambda i: saved[i] / s[i] if s[i] > 0 else math.inf)
        c[i] = 0
    return c


def to_bits(problem, c) -> dict[str, int]:
    return {n: (8 if v else 4) for n, v in zip(problem.names, c)}


def from_bits(problem, bits) -> np.ndarray:
    return np.array([1 if bits[n] == 8 else 0 for n in problem.names], dtype=np.int8)


def run_case(name: str, board: str, ctx: dict, evaluate: Evaluator, n_random: int, seed: int) -> dict:
    acc = make_accelerator("sim", board=board)
    try:
        prof = profile_network(str(model_path(name)), acc, repeats=1, seed=seed)
    finally:
        acc.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = make_problem({"layers": ctx["mqe"]}, prof)
        problem_exact = make_problem({"layers": ctx["exact"]}, prof)
    lat = latency_table(problem)
    L = len(problem.names)
    t8, t4 = lat[:, 1].sum(), lat[:, 0].sum()
    budget, note = BUDGET, None
    if t4 > BUDGET * t8:
        budget = math.ceil(100 * (1 + t4 / t8) / 2) / 100
        note = (f"{BUDGET} of all-int8 latency is infeasible (all-int4 = {t4 / t8:.3f}); "
                f"budget set to the midpoint {budget}")
    limit = budget * t8

    configs = {}
    t0 = time.perf_counter()
    configs["ilp"] = from_bits(problem, solve(problem, latency=str(budget)).bits)
    ilp_seconds = time.perf_counter() - t0
    configs["ilp_sens"] = from_bits(problem, solve(problem, latency=str(budget), beta=1.0, gamma=0.0).bits)
    configs["ilp_exact"] = from_bits(problem, solve(problem_exact, latency=str(budget)).bits)
    configs["greedy"] = greedy(problem, ctx["mqe"], limit)
    configs["all_int8"] = np.ones(L, dtype=np.int8)
    configs["all_int4"] = np.zeros(L, dtype=np.int8)

    def describe(c):
        return {"accuracy": evaluate(to_bits(problem, c)),
                "latency_ratio": float(lat[np.arange(L), c].sum() / t8),
                "int4_layers": int((c == 0).sum()),
                "mqe_total": float(sum(ctx["mqe"][n] for n, v in zip(problem.names, c) if v == 0)),
                "feasible": bool(lat[np.arange(L), c].sum() <= limit * (1 + 1e-9))}

    res = {k: describe(c) for k, c in configs.items()}
    rnd, how = random_feasible(problem, limit, n_random, np.random.default_rng(seed))
    r_acc = np.array([evaluate(to_bits(problem, c)) for c in rnd])
    r_lat = np.array([lat[np.arange(L), c].sum() / t8 for c in rnd])
    ilp_acc, ilp_lat = res["ilp"]["accuracy"], res["ilp"]["latency_ratio"]
    tight = r_lat >= ilp_lat - 1e-12

    def beats(a, pool):
        return None if len(pool) == 0 else float(np.mean(pool < a))

    random = {"n": int(len(rnd)), **how,
              "accuracy": {"min": float(r_acc.min()), "median": float(np.median(r_acc)),
                           "p95": float(np.percentile(r_acc, 95)), "max": float(r_acc.max()),
                           "mean": float(r_acc.mean())},
              "latency_ratio": {"min": float(r_lat.min()), "median": float(np.median(r_lat)),
                                "max": float(r_lat.max())},
              "n_at_least_ilp_latency": int(tight.sum()),
              "accuracies": r_acc.tolist(), "latency_ratios": r_lat.tolist()}
    for k in ("ilp", "ilp_sens", "ilp_exact", "greedy"):
        res[k]["beats_random"] = beats(res[k]["accuracy"], r_acc)
        res[k]["beats_or_ties_random"] = float(np.mean(r_acc <= res[k]["accuracy"]))
    res["ilp"]["beats_random_at_least_ilp_latency"] = beats(ilp_acc, r_acc[tight])
    no_speedup = [n for n, (a4, a8) in zip(problem.names, lat) if a4 >= 0.98 * a8]
    return {"model": name, "board": board, "layers": L, "budget": budget, "budget_note": note,
            "all_int4_latency_ratio": float(t4 / t8), "all_int8_seconds": float(t8),
            "layers_without_int4_speedup": no_speedup,
            "ilp_solve_seconds": round(ilp_seconds, 4), "configs": res, "random": random,
            "bits": {k: to_bits(problem, c) for k, c in configs.items() if k not in ("all_int8", "all_int4")},
            "meets_target": res["ilp"]["beats_random"] >= TARGET_PERCENTILE}


def prepare_model(name: str, images: int, executor: str, seed: int) -> dict:
    t0 = time.perf_counter()
    net = prepare(str(model_path(name)))
    x = distill(str(model_path(name)), num=32, seed=seed).x
    ranges = calibrate(net, x, executor=executor)
    mqe = sensitivity(net, x, ranges, estimator="mqe", executor=executor)["layers"]
    exact = sensitivity(net, x, ranges, estimator="exact", executor=executor)["layers"]
    xt, yt = load_split("test")
    ev = Evaluator(net, ranges, xt[:images], yt[:images], executor)
    fp32 = float(np.mean(predict(net.model, xt[:images], executor=executor).argmax(-1) == yt[:images]))
    return {"net": net, "mqe": mqe, "exact": exact, "evaluate": ev, "fp32": fp32,
            "prepare_seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--boards", nargs="*", default=["zcu104", "pynq-z2"])
    ap.add_argument("--random", type=int, default=200)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--executor", default="onnxruntime", choices=["onnxruntime", "numpy", "auto"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "allocation.json"))
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    rows, fp32 = [], {}
    for name in args.models:
        print(f"{name}: distil, calibrate, sensitivity ...", flush=True)
        ctx = prepare_model(name, args.images, args.executor, args.seed)
        fp32[name] = ctx["fp32"]
        for board in args.boards:
            t0 = time.perf_counter()
            row = run_case(name, board, ctx, ctx["evaluate"], args.random, args.seed)
            row["fp32_accuracy"] = ctx["fp32"]
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(f"  {board}: {row['seconds']} s", flush=True)

    print(f"\nTop-1 accuracy on {args.images} test images; latency as a fraction of all-int8 (simulator); "
          f"{args.random} random feasible configs")
    head = (f"{'model':<17}{'board':<9}{'budget':>7}{'fp32':>7}{'int8':>7}{'int4':>7} │{'ILP':>7}{'lat':>6}"
            f"{'beats':>7}{'≥lat':>7} │{'greedy':>7}{'lat':>6} │{'rnd med':>8}{'rnd max':>8} │"
            f"{'ILPβ1γ0':>8}{'ILPexact':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        c = r["configs"]
        tight = c["ilp"]["beats_random_at_least_ilp_latency"]
        print(f"{r['model']:<17}{r['board']:<9}{r['budget']:>7.2f}{r['fp32_accuracy']:>7.3f}"
              f"{c['all_int8']['accuracy']:>7.3f}{c['all_int4']['accuracy']:>7.3f} │"
              f"{c['ilp']['accuracy']:>7.3f}{c['ilp']['latency_ratio']:>6.3f}{100 * c['ilp']['beats_random']:>6.1f}%"
              f"{'-' if tight is None else f'{100 * tight:.1f}%':>7} │"
              f"{c['greedy']['accuracy']:>7.3f}{c['greedy']['latency_ratio']:>6.3f} │"
              f"{r['random']['accuracy']['median']:>8.3f}{r['random']['accuracy']['max']:>8.3f} │"
              f"{c['ilp_sens']['accuracy']:>8.3f}{c['ilp_exact']['accuracy']:>9.3f}")
    for r in rows:
        if r["budget_note"]:
            print(f"note: {r['model']} on {r['board']}: {r['budget_note']}")
        if r["random"]["n"] < args.random:
            print(f"note: {r['model']} on {r['board']}: only {r['random']['n']} distinct feasible configs exist")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")

    write_json(args.out, {
        "target_beats_random": TARGET_PERCENTILE, "budget": BUDGET, "images": args.images,
        "random": args.random, "seed": args.seed, "executor": args.executor,
        "sensitivity": "MQE (default: int4 rounding perturbation) on 32 distilled images; ranges calibrated on them",
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "total_seconds": round(total, 1),
        "all_meet_target": all(r["meets_target"] for r in rows),
        "rows": rows,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
