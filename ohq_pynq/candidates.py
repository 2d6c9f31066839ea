"""Bit configurations measured on data: re-ranking the ILP's best few, and random ones for comparison.

Per-layer sensitivities are not additive: the ILP's Σ S ranks two assignments of similar total
in an order the quantized network need not follow. :func:`rerank` therefore runs each of the
ILP's ``k`` best assignments (:func:`ohq_pynq.ilp.solve_ranked`) as the real quantized network
(:func:`ohq_pynq.quant.quantize`, on the executor MQE uses: numpy engine or onnxruntime) over
the distilled data and keeps the one closest to the float model: the least
``KL(softmax(f_fp32(x)) ‖ softmax(f_q(x)))`` (nats, mean over images), ties to the better ILP
rank. :func:`compare_random` measures ``N`` random assignments that meet the same budgets the
same way, so a report can show where the chosen point lies among them.

Random assignments are uniform over the feasible set (each layer, or tie group, picks each
candidate width with equal probability; draws over a budget are rejected; distinct draws only).
Where a tight budget makes that too rare (fewer than ``n`` found in ``UNIFORM_DRAWS`` draws), the
rest come from draws whose chance of the lowest width is itself uniform in [0, 1] per draw, which
reach the tight end of the feasible set; the info records how many came from each.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

import numpy as np

from .errors import ConfigError
from .ilp import REL_TOL, Allocation, IlpSolver, Problem

DEFAULT_CANDIDATES = 8          # ILP solutions re-ranked by the measured KL (1 = the ILP optimum alone)
DEFAULT_COMPARE_RANDOM = 0      # random configurations measured for the report (0 = off; costly on a board)
RERANK_METRIC = "kl_vs_fp32"    # what re-ranking minimises, as recorded in config.json
UNIFORM_DRAWS = 200_000         # uniform draws tried before the biased ones
BATCH = 2048                    # draws checked at once


class ConfigScorer:
    """Fidelity of bit configurations of one BN-folded network on images ``x`` (cached per config):
    ``{"kl": KL(fp32 ‖ quantized) in nats, "top1_agreement": fraction, "seconds": s}``."""

    def __init__(self, network, x: np.ndarray, ranges, executor: str = "auto",
                 reference_logits: np.ndarray | None = None):
        from .quant import predict

        self.network, self.x, self.ranges, self.executor = network, x, ranges, executor
        self.reference = (predict(network.model, x, executor=executor) if reference_logits is None
                          else np.asarray(reference_logits))
        self.cache: dict[tuple, dict] = {}

    def __call__(self, bits: Mapping[str, int]) -> dict:
        from .quant import kl_divergence, predict, quantize

        key = tuple(int(bits[n]) for n in self.network.layer_names)
        if key not in self.cache:
            t0 = time.perf_counter()
            logits = predict(quantize(self.network, dict(bits), self.ranges).to_onnx(), self.x,
                             executor=self.executor)
            self.cache[key] = {"kl": kl_divergence(self.reference, logits),
                               "top1_agreement": float(np.mean(logits.argmax(-1) == self.reference.argmax(-1))),
                               "seconds": round(time.perf_counter() - t0, 3)}
        return dict(self.cache[key])


def _row(alloc: Allocation) -> dict:
    low = sum(1 for b in alloc.bits.values() if b == alloc.lowest_bits)
    return {"rank": alloc.rank, "objective": alloc.objective, "sensitivity": alloc.totals.sensitivity,
            "latency_ratio": alloc.ratio("latency"), "size_ratio": alloc.ratio("size"),
            "energy_ratio": alloc.ratio("energy"), f"int{alloc.lowest_bits}_layers": low}


def rerank(allocations: list[Allocation], scorer: Callable[[Mapping[str, int]], dict],
           log: Callable[[str], None] | None = None) -> tuple[Allocation, list[dict]]:
    """The allocation of least measured KL among ``allocations`` (ILP order breaks ties) and one
    row per candidate (rank, objective, Σ S, ratios vs all-int8, kl, top1_agreement, chosen, bits);
    ``log`` gets one progress line per candidate."""
    if not allocations:
        raise ConfigError("no ILP candidates to re-rank")
    rows = []
    for k, alloc in enumerate(allocations):
        fid = scorer(alloc.bits)
        row = {**_row(alloc), "kl": fid["kl"], "top1_agreement": fid["top1_agreement"], "chosen": False,
               "bits": dict(alloc.bits)}
        rows.append(row)
        if log is not None:
            lat = row["latency_ratio"]
            log(f"solve: candidate {k + 1}/{len(allocations)}: ILP rank {alloc.rank}, Σ sensitivity "
                f"{row['sensitivity']:.4g}" + ("" if lat is None else f", latency {lat:.3f} of all-int8")
                + f", KL {fid['kl']:.4g} on the data ({fid['seconds']:.1f} s)")
    best = min(range(len(rows)), key=lambda i: (rows[i]["kl"], i))
    rows[best]["chosen"] = True
    return allocations[best], rows


def random_configs(problem: Problem, limits: Mapping[str, float], n: int, rng: np.random.Generator,
                   ties: Iterable[Iterable[str]] = (), exclude: Iterable[np.ndarray] = ()) -> tuple[np.ndarray, dict]:
    """Up to ``n`` distinct random assignments (rows of column indices into ``problem.bits``) whose
    totals meet the absolute ``limits`` (see the module docstring), none equal to one of ``exclude``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"the number of random configurations must be an integer >= 0, got {n!r}")
    model = IlpSolver(problem, ties)
    L, G, m = len(problem.names), model.groups, model.m
    rows = np.arange(L)
    tables = [(problem.table(metric), float(limit) * (1 + REL_TOL)) for metric, limit in limits.items()]
    seen = {np.asarray(c, dtype=np.int64).tobytes() for c in exclude}
    out: list[np.ndarray] = []
    info = {"uniform": 0, "biased": 0, "uniform_draws": 0, "uniform_feasible": 0, "biased_draws": 0}

    def take(draws: np.ndarray, kind: str) -> None:
        c = draws[:, model.group_of]
        ok = np.ones(len(c), dtype=bool)
        for table, limit in tables:
            ok &= table[rows, c].sum(axis=1) <= limit
        if kind == "uniform":
            info["uniform_feasible"] += int(ok.sum())
        for row in c[ok]:
            key = row.tobytes()
            if key not in seen and len(out) < n:
                seen.add(key)
                out.append(row)
                info[kind] += 1

    while len(out) < n and info["uniform_draws"] < UNIFORM_DRAWS:
        take(rng.integers(0, m, size=(BATCH, G)), "uniform")
        info["uniform_draws"] += BATCH
    while len(out) < n and info["biased_draws"] < UNIFORM_DRAWS:
        p_low = rng.uniform(0.0, 1.0, size=(BATCH, 1))
        low = rng.uniform(size=(BATCH, G)) < p_low
        other = rng.integers(1, m, size=(BATCH, G)) if m > 1 else np.zeros((BATCH, G), dtype=np.int64)
        take(np.where(low, 0, other), "biased")
        info["biased_draws"] += BATCH
    info["feasible_fraction"] = (info["uniform_feasible"] / info["uniform_draws"]
                                 if info["uniform_draws"] else None)
    return (np.array(out, dtype=np.int64).reshape(len(out), L), info)


def compare_random(problem: Problem, limits: Mapping[str, float], n: int,
                   scorer: Callable[[Mapping[str, int]], dict], chosen: Mapping[str, int], seed: int = 0,
                   ties: Iterable[Iterable[str]] = (), log: Callable[[str], None] | None = None) -> dict:
    """``n`` random assignments meeting ``limits`` measured like the chosen one: per point the
    latency vs all-int8, KL and top-1 agreement; and the fractions of them the chosen beats."""
    configs, info = random_configs(problem, limits, n, np.random.default_rng(seed), ties,
                                   exclude=[problem.choice_of(chosen)])
    ref = problem.total("latency", problem.uniform(problem.reference_bits))
    points = []
    t0 = time.perf_counter()
    for j, c in enumerate(configs):
        bits = {name: int(problem.bits[k]) for name, k in zip(problem.names, c)}
        fid = scorer(bits)
        points.append({"latency_ratio": problem.total("latency", c) / ref, "kl": fid["kl"],
                       "top1_agreement": fid["top1_agreement"]})
        if log is not None and ((j + 1) % 10 == 0 or j + 1 == len(configs)):
            log(f"solve: random configuration {j + 1}/{len(configs)} measured "
                f"({time.perf_counter() - t0:.1f} s)")
    mine = scorer(chosen)
    kl = np.array([p["kl"] for p in points])
    agree = np.array([p["top1_agreement"] for p in points])
    return {"n": len(points), "requested": n, "seed": seed, **info, "points": points,
            "chosen": {"latency_ratio": problem.total("latency", problem.choice_of(chosen)) / ref,
                       "kl": mine["kl"], "top1_agreement": mine["top1_agreement"]},
            "beats_kl": float(np.mean(kl > mine["kl"])) if len(kl) else None,
            "beats_top1_agreement": float(np.mean(agree < mine["top1_agreement"])) if len(agree) else None,
            "ties_or_beats_top1_agreement": float(np.mean(agree <= mine["top1_agreement"])) if len(agree) else None}
