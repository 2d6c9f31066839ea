"""ohq_pynq.candidates: random configs at a budget, re-ranking by measured KL, the scorer."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ohq_pynq import candidates, ilp
from ohq_pynq.candidates import ConfigScorer, compare_random, random_configs, rerank
from ohq_pynq.errors import ConfigError
from ohq_pynq.ilp import budget_limits, make_problem, solve_ranked
from ohq_pynq.profile import profile_from_mapping


def instance(n, seed=0, speed=(0.4, 0.9)):
    rng = np.random.default_rng(seed)
    layers, sens = {}, {}
    for i in range(n):
        t8 = rng.uniform(1e-4, 1e-3)
        layers[f"l{i}"] = {8: dict(cycles=1, seconds=t8, bytes=2, weight_bytes=200),
                           4: dict(cycles=1, seconds=t8 * rng.uniform(*speed), bytes=1, weight_bytes=100)}
        sens[f"l{i}"] = float(rng.exponential())
    return make_problem({"layers": sens}, profile_from_mapping(layers))


def feasible_set(problem, limits):
    L = len(problem.names)
    out = set()
    for c in itertools.product(range(2), repeat=L):
        c = np.array(c)
        if all(problem.total(m, c) <= v * (1 + ilp.REL_TOL) for m, v in limits.items()):
            out.add(tuple(c))
    return out


def test_random_configs_are_distinct_feasible_and_cover_the_feasible_set():
    problem = instance(6)
    limits, _ = budget_limits(problem, {"latency": "0.8", "size": "0.9"})
    allowed = feasible_set(problem, limits)
    got, info = random_configs(problem, limits, 1000, np.random.default_rng(1))
    keys = [tuple(r) for r in got]
    assert len(set(keys)) == len(keys) == len(allowed)          # all of them, each once
    assert set(keys) == allowed and info["uniform"] == len(allowed)
    excluded = next(iter(allowed))
    again, _ = random_configs(problem, limits, 1000, np.random.default_rng(1), exclude=[np.array(excluded)])
    assert excluded not in {tuple(r) for r in again} and len(again) == len(allowed) - 1


def test_random_configs_are_uniform_over_the_feasible_set():
    problem = instance(5, seed=3)
    limits, _ = budget_limits(problem, {"latency": "0.85"})
    allowed = sorted(feasible_set(problem, limits))
    counts = dict.fromkeys(allowed, 0)
    rng = np.random.default_rng(0)
    for _ in range(600):
        first, _ = random_configs(problem, limits, 1, rng)
        counts[tuple(first[0])] += 1
    expected = 600 / len(allowed)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 3 * len(allowed)         # far from a biased sampler (mean of chi2 = dof)


def test_tight_budget_falls_back_to_biased_draws_and_ties_hold(monkeypatch):
    monkeypatch.setattr(candidates, "UNIFORM_DRAWS", 4096)
    problem = instance(40, seed=2)
    lo = problem.total("latency", problem.uniform(4)) / problem.total("latency", problem.uniform(8))
    limits, _ = budget_limits(problem, {"latency": f"{lo + 0.03:.4f}"})
    got, info = random_configs(problem, limits, 20, np.random.default_rng(0), ties=[["l0", "l1", "l7"]])
    assert len(got) == 20 and info["biased"] > 0 and info["feasible_fraction"] < 1e-3
    for c in got:
        assert problem.total("latency", c) <= limits["latency"] * (1 + ilp.REL_TOL)
        assert c[0] == c[1] == c[7]
    with pytest.raises(ConfigError):
        random_configs(problem, limits, -1, np.random.default_rng(0))


def test_rerank_keeps_the_least_kl_and_logs_each_candidate():
    problem = instance(6, seed=4)
    ranked = solve_ranked(problem, 5, latency="0.8")
    kl = {tuple(sorted(a.bits.items())): v for a, v in zip(ranked, [0.3, 0.1, 0.2, 0.1, 0.5])}
    lines = []
    chosen, rows = rerank(ranked, lambda bits: {"kl": kl[tuple(sorted(bits.items()))], "top1_agreement": 1.0,
                                                "seconds": 0.0}, lines.append)
    assert chosen.rank == 2                     # least KL; rank 4 ties it and loses on ILP order
    assert [r["chosen"] for r in rows] == [False, True, False, False, False]
    assert [r["kl"] for r in rows] == [0.3, 0.1, 0.2, 0.1, 0.5]
    assert len(lines) == 5 and lines[0].startswith("solve: candidate 1/5: ILP rank 1")
    with pytest.raises(ConfigError):
        rerank([], lambda b: {})


def test_compare_random_counts_what_the_chosen_beats():
    problem = instance(7, seed=5)
    limits, _ = budget_limits(problem, {"latency": "0.8"})
    chosen = solve_ranked(problem, 1, latency="0.8")[0]

    def score(bits):                 # fake fidelity: KL = number of int4 layers / 10
        n4 = sum(b == 4 for b in bits.values())
        return {"kl": n4 / 10, "top1_agreement": 1 - n4 / 10, "seconds": 0.0}

    res = compare_random(problem, limits, 15, score, chosen.bits, seed=3)
    assert res["n"] == 15 and len(res["points"]) == 15
    kl = np.array([p["kl"] for p in res["points"]])
    assert res["beats_kl"] == pytest.approx(np.mean(kl > res["chosen"]["kl"]))
    assert res["chosen"]["latency_ratio"] == pytest.approx(chosen.ratio("latency"))
    assert all(p["latency_ratio"] <= 0.8 * (1 + 1e-9) for p in res["points"])


def test_config_scorer_on_the_numpy_engine():
    from ohq_pynq.models import load_split, model_path
    from ohq_pynq.quant import calibrate, prepare

    net = prepare(str(model_path("digits_resnet_bn")))
    x = load_split("calib")[0][:6]
    ranges = calibrate(net, x, executor="numpy")
    scorer = ConfigScorer(net, x, ranges, executor="numpy")
    int8 = scorer({n: 8 for n in net.layer_names})
    int4 = scorer({n: 4 for n in net.layer_names})
    assert 0 <= int8["kl"] < int4["kl"] and 0 <= int4["top1_agreement"] <= int8["top1_agreement"] <= 1
    assert len(scorer.cache) == 2 and scorer({n: 8 for n in net.layer_names})["kl"] == int8["kl"]
