"""Bit allocation ILP: optimality (brute force, scipy.milp), budgets, infeasibility, ties, Pareto, CLI."""
from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest

from ohq_pynq import ilp
from ohq_pynq.bitconfig import load_config
from ohq_pynq.errors import ConfigError, InfeasibleError
from ohq_pynq.budgets import Budget, format_quantity
from ohq_pynq.ilp import cost_table, make_problem, solve
from ohq_pynq.pareto import pareto_frontier, plot_frontier
from ohq_pynq.profile import profile_from_mapping, save_profile

TOL = 1 + ilp.REL_TOL


def random_instance(rng, n, bits=(4, 8), energy=True, weight_bytes=True, placeholder=False):
    """Random sensitivity + profile: lower widths are usually (not always) cheaper."""
    bits = tuple(sorted(bits))
    top = max(bits)
    layers, sens = {}, {}
    for i in range(n):
        t_top = rng.uniform(1e-4, 2e-3)
        w_top = int(rng.integers(500, 200_000))
        per, s = {}, {}
        for b in bits:
            f = b / top
            speed = rng.uniform(0.35, 1.05) if b < top else 1.0   # some layers gain nothing from int4
            entry = {"cycles": t_top * speed * 1e8, "seconds": t_top * speed, "bytes": int(w_top * f) + 100,
                     "joules": t_top * speed * rng.uniform(1.0, 3.0) if energy else None}
            if weight_bytes:
                entry["weight_bytes"] = max(1, int(w_top * f))
            per[b] = entry
            s[str(b)] = 0.0 if b == 8 else float(rng.exponential() * (top / b - 0.5))
        layers[f"layer{i}"] = per
        sens[f"layer{i}"] = s
    profile = profile_from_mapping(layers, {"board": "test"}, placeholder=placeholder)
    return {"schema": 1, "estimator": "mqe", "layers": sens}, profile


def brute_force(problem, cost, limits, ties=()):
    """Exhaustive minimum of Σ cost over all assignments meeting ``limits`` (None if none)."""
    n, m = cost.shape
    choices = np.array(list(itertools.product(range(m), repeat=n)), dtype=np.int64)
    rows = np.arange(n)
    ok = np.ones(len(choices), dtype=bool)
    for metric, limit in limits.items():
        totals = problem.table(metric)[rows, choices].sum(axis=1)
        ok &= totals <= limit * TOL
    idx = {name: i for i, name in enumerate(problem.names)}
    for group in ties:
        first = idx[group[0]]
        for other in group[1:]:
            ok &= choices[:, first] == choices[:, idx[other]]
    if not ok.any():
        return None
    values = cost[rows, choices[ok]].sum(axis=1)
    best = int(np.argmin(values))
    return float(values[best]), choices[ok][best]


def budgets_between(problem, rng, metrics):
    """Random relative budgets between the all-lowest and all-reference totals."""
    out = {}
    lowest = problem.uniform(min(problem.bits))
    ref = problem.uniform(problem.reference_bits)
    for metric in metrics:
        lo = problem.total(metric, lowest) / problem.total(metric, ref)
        out[metric] = Budget.fraction(rng.uniform(min(lo, 1.0) * 0.97, 1.0))   # a few infeasible
    return out


def limits_of(problem, budgets):
    ref = problem.uniform(problem.reference_bits)
    return {k: (b.value * problem.total(k, ref) if b.relative else b.value) for k, b in budgets.items()}


def assert_within(problem, alloc, limits):
    choice = problem.choice_of(alloc.bits)
    for metric, limit in limits.items():
        assert problem.total(metric, choice) <= limit * TOL, metric


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# --------------------------------------------------------------------------------- optimality
def test_ilp_matches_brute_force_on_random_instances():
    rng = np.random.default_rng(1234)
    cases = 0
    for trial in range(36):
        bits = (4, 8) if trial % 4 else (2, 4, 8)
        n = int(rng.integers(2, 15 if len(bits) == 2 else 9))
        sens, prof = random_instance(rng, n, bits)
        problem = make_problem(sens, prof, bits)
        metrics = [m for m in ("size", "latency", "energy") if rng.random() < 0.6]
        budgets = budgets_between(problem, rng, metrics)
        beta, gamma = float(rng.uniform(0, 1)), float(rng.uniform(0.05, 1))
        hw = ["latency", "energy", 0.3][trial % 3]
        cost = cost_table(problem, beta, gamma, hw)
        limits = limits_of(problem, budgets)
        expected = brute_force(problem, cost, limits)
        if expected is None:
            with pytest.raises(InfeasibleError):
                solve(problem, beta=beta, gamma=gamma, hw_metric=hw, **budgets)
            continue
        alloc = solve(problem, beta=beta, gamma=gamma, hw_metric=hw, **budgets)
        assert alloc.objective == pytest.approx(expected[0], rel=1e-7, abs=1e-9)
        assert_within(problem, alloc, limits)
        cases += 1
    assert cases >= 25


def test_ilp_matches_scipy_milp_on_larger_instances():
    from scipy.optimize import Bounds, LinearConstraint, milp

    rng = np.random.default_rng(99)
    for trial in range(6):
        bits = (4, 8) if trial % 2 else (2, 4, 8)
        n = int(rng.integers(30, 70))
        sens, prof = random_instance(rng, n, bits)
        problem = make_problem(sens, prof, bits)
        budgets = budgets_between(problem, rng, ["size", "latency", "energy"][: 1 + trial % 3])
        cost = cost_table(problem)
        limits = limits_of(problem, budgets)
        m = len(bits)
        A_eq = np.kron(np.eye(n), np.ones((1, m)))
        cons = [LinearConstraint(A_eq, 1, 1)]
        for metric, limit in limits.items():
            cons.append(LinearConstraint(problem.table(metric).ravel()[None, :] / limit, -np.inf, TOL))
        ref = milp(cost.ravel(), constraints=cons, integrality=np.ones(n * m), bounds=Bounds(0, 1),
                   options={"mip_rel_gap": 0})
        if ref.status == 2:          # infeasible
            with pytest.raises(InfeasibleError):
                solve(problem, **budgets)
            continue
        assert ref.status == 0
        alloc = solve(problem, **budgets)
        assert alloc.objective == pytest.approx(ref.fun, rel=1e-6, abs=1e-9)
        assert_within(problem, alloc, limits)


def test_without_budgets_each_layer_takes_its_cheapest_width():
    sens, prof = random_instance(np.random.default_rng(5), 12)
    problem = make_problem(sens, prof)
    cost = cost_table(problem, 0.3, 0.7)
    alloc = solve(problem, beta=0.3, gamma=0.7)
    assert [alloc.bits[n] for n in problem.names] == [problem.bits[k] for k in np.argmin(cost, axis=1)]
    assert alloc.objective == pytest.approx(cost.min(axis=1).sum())


def test_hw_metric_selects_latency_or_energy():
    # layer a: int4 is faster but costs more energy; layer b: the opposite.
    layers = {"a": {4: dict(cycles=1, seconds=1.0, joules=3.0, bytes=1), 8: dict(cycles=2, seconds=2.0, joules=1.0, bytes=2)},
              "b": {4: dict(cycles=2, seconds=2.0, joules=1.0, bytes=1), 8: dict(cycles=1, seconds=1.0, joules=3.0, bytes=2)}}
    problem = make_problem({"layers": {"a": 0.0, "b": 0.0}}, profile_from_mapping(layers))
    assert solve(problem, beta=0, gamma=1, hw_metric="latency").bits == {"a": 4, "b": 8}
    assert solve(problem, beta=0, gamma=1, hw_metric="energy").bits == {"a": 8, "b": 4}


def test_cost_table_is_normalised():
    sens, prof = random_instance(np.random.default_rng(7), 20, (2, 4, 8))
    problem = make_problem(sens, prof, (2, 4, 8))
    for beta, gamma, hw in ((0.5, 0.5, "latency"), (1.0, 0.0, "latency"), (0.2, 0.8, 0.5)):
        cost = cost_table(problem, beta, gamma, hw)
        assert cost.min() >= 0 and cost.max() <= beta + gamma + 1e-12
        assert cost.max(axis=1).sum() <= beta + gamma + 1e-9     # worst-case totals are 1 each


# ------------------------------------------------------------------------------------- budgets
def test_budget_equal_to_an_attainable_total_is_met_exactly():
    rng = np.random.default_rng(11)
    sens, prof = random_instance(rng, 14)
    problem = make_problem(sens, prof)
    for _ in range(5):
        choice = rng.integers(0, 2, size=14)
        for metric in ("latency", "size", "energy"):
            limit = problem.total(metric, choice)
            alloc = solve(problem, **{metric: Budget.absolute(limit)})
            got = problem.total(metric, problem.choice_of(alloc.bits))
            assert got <= limit * TOL
            expected = brute_force(problem, cost_table(problem), {metric: limit})
            assert alloc.objective == pytest.approx(expected[0], rel=1e-7)


def test_totals_and_references_are_reported():
    sens, prof = random_instance(np.random.default_rng(3), 9)
    problem = make_problem(sens, prof)
    mid = {m: 0.5 + 0.5 * problem.total(m, problem.uniform(4)) / problem.total(m, problem.uniform(8))
           for m in ("latency", "size", "energy")}
    alloc = solve(problem, latency=f"{mid['latency']:.3f}", size=f"{100 * mid['size']:.1f}%",
                  energy=Budget.fraction(mid["energy"]))
    choice = problem.choice_of(alloc.bits)
    assert alloc.totals.seconds == problem.total("latency", choice)
    assert alloc.totals.size_bytes == problem.total("size", choice)
    assert alloc.reference.seconds == pytest.approx(problem.seconds[:, 1].sum())
    assert alloc.lowest.size_bytes == pytest.approx(problem.size_bytes[:, 0].sum())
    assert alloc.ratio("latency") <= float(f"{mid['latency']:.3f}") * TOL
    assert alloc.budgets["size"]["relative"]
    assert alloc.budgets["size"]["value"] == pytest.approx(mid["size"], abs=1e-3)
    meta = alloc.metadata()
    json.dumps(meta, allow_nan=False)
    assert meta["vs_all_int8"]["latency"] == pytest.approx(alloc.ratio("latency"))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"latency": Budget.fraction(-0.5)}, "> 0"),
    ({"latency": Budget.fraction(float("nan"))}, "> 0"),
    ({"size": Budget.absolute(float("inf"))}, "> 0"),
    ({"size": Budget.absolute(0.0)}, "> 0"),
    ({"latency": 0.75}, "Budget"),
    ({"beta": -1.0}, "beta"),
    ({"gamma": float("nan")}, "gamma"),
    ({"beta": 0.0, "gamma": 0.0}, "both 0"),
    ({"hw_metric": "power"}, "hardware metric"),
    ({"hw_metric": 1.5}, "between 0 and 1"),
    ({"ties": [["layer0", "nope"]]}, "not in the model"),
])
def test_invalid_settings_are_config_errors(kwargs, fragment):
    sens, prof = random_instance(np.random.default_rng(0), 4)
    problem = make_problem(sens, prof)
    with pytest.raises(ConfigError, match=fragment) as err:
        solve(problem, **kwargs)
    assert not isinstance(err.value, InfeasibleError)


def test_energy_budget_without_power_rails_is_a_config_error():
    sens, prof = random_instance(np.random.default_rng(0), 4, energy=False)
    problem = make_problem(sens, prof)
    assert problem.joules is None
    with pytest.raises(ConfigError, match="no power rails"):
        solve(problem, energy="0.9")
    with pytest.raises(ConfigError, match="no power rails"):
        solve(problem, hw_metric="energy")
    alloc = solve(problem, latency="0.9")          # everything else copes with joules = null
    assert alloc.totals.joules is None and alloc.ratio("energy") is None
    sens, prof = random_instance(np.random.default_rng(0), 4, weight_bytes=False)
    with pytest.raises(ConfigError, match="weight_bytes"):
        solve(make_problem(sens, prof), size="0.9")


# -------------------------------------------------------------------------------- infeasibility
def test_infeasible_single_budget_states_the_true_minimum():
    rng = np.random.default_rng(21)
    for trial in range(6):
        sens, prof = random_instance(rng, 10)
        problem = make_problem(sens, prof)
        metric = ("latency", "size", "energy")[trial % 3]
        ref = problem.total(metric, problem.uniform(8))
        true_min = brute_force(problem, problem.table(metric), {})[0]
        given = 0.9 * true_min / ref
        budget = Budget.fraction(given) if trial % 2 else Budget.absolute(given * ref)
        with pytest.raises(InfeasibleError) as err:
            solve(problem, **{metric: budget})
        info = err.value.minimums[metric]
        assert info["minimum_absolute"] == pytest.approx(true_min, rel=1e-9)
        msg = str(err.value)
        assert msg.startswith(f"{metric} budget ") and "the smallest feasible is" in msg
        stated = info["minimum_stated"]
        assert f"{stated:.4g}" in msg or format_quantity(stated, metric) in msg
        # the stated (rounded-up) value is feasible; anything clearly below the minimum is not
        ok = solve(problem, **{metric: Budget(stated, budget.relative)})
        assert_within(problem, ok, {metric: stated * (ref if budget.relative else 1)})
        below = info["minimum"] * (1 - 1e-6)
        with pytest.raises(InfeasibleError):
            solve(problem, **{metric: Budget(below, budget.relative)})


def test_infeasible_message_names_all_lowest():
    sens, prof = random_instance(np.random.default_rng(2), 6)
    problem = make_problem(sens, prof)
    lo = problem.total("size", problem.uniform(4)) / problem.total("size", problem.uniform(8))
    with pytest.raises(InfeasibleError, match=r"size budget 0\.3 of all-int8 is infeasible; the smallest "
                                              r"feasible is .* \(all layers at 4 bits\)") as err:
        solve(problem, size="0.3")
    assert err.value.minimums["size"]["minimum"] == pytest.approx(lo)


def test_jointly_infeasible_budgets_state_minimum_with_others_kept():
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(40):
        sens, prof = random_instance(rng, 9)
        problem = make_problem(sens, prof)
        budgets = budgets_between(problem, rng, ["latency", "size"])
        limits = limits_of(problem, budgets)
        if brute_force(problem, cost_table(problem), limits) is not None:
            continue
        with pytest.raises(InfeasibleError) as err:
            solve(problem, **budgets)
        mins = err.value.minimums
        assert mins
        for metric, info in mins.items():
            others = {k: v for k, v in limits.items() if k != metric}
            if info["others_kept"]:
                expected = brute_force(problem, problem.table(metric), others)
            else:
                expected = brute_force(problem, problem.table(metric), {})
            assert info["minimum_absolute"] == pytest.approx(expected[0], rel=1e-9)
            keep = {k: v for k, v in budgets.items() if k != metric} if info["others_kept"] else {}
            solve(problem, **keep, **{metric: Budget(info["minimum_stated"], True)})
            checked += 1
    assert checked >= 3


def test_two_conflicting_budgets_each_state_their_minimum():
    # Each layer: int4 halves size but doubles latency; int8 the opposite; energy favours neither.
    layers = {f"l{i}": {4: dict(cycles=2, seconds=2.0, joules=1.0, weight_bytes=1, bytes=1),
                        8: dict(cycles=1, seconds=1.0, joules=1.0, weight_bytes=2, bytes=2)} for i in range(4)}
    problem = make_problem({"layers": {f"l{i}": 0.1 for i in range(4)}}, profile_from_mapping(layers))
    with pytest.raises(InfeasibleError) as err:
        solve(problem, latency=Budget.absolute(4.0), size=Budget.absolute(4.0))
    mins = err.value.minimums
    assert mins["latency"]["minimum_absolute"] == 8.0 and mins["size"]["minimum_absolute"] == 8.0
    assert "with the size budget kept" in str(err.value)


def test_three_budgets_that_conflict_pairwise_ask_to_relax_two():
    # one layer, three widths: each width meets exactly one of the three budgets
    metric_at = {2: (1.0, 5.0, 5.0), 4: (5.0, 1.0, 5.0), 8: (5.0, 5.0, 1.0)}   # latency, size, energy
    layers = {"l": {b: dict(cycles=1, seconds=t, weight_bytes=int(w), joules=e, bytes=1)
                    for b, (t, w, e) in metric_at.items()}}
    problem = make_problem({"layers": {"l": {"2": 1.0, "4": 0.5}}}, profile_from_mapping(layers), (2, 4, 8))
    for metric in ("latency", "size", "energy"):
        solve(problem, **{metric: Budget.absolute(2.0)})        # each alone is feasible
    with pytest.raises(InfeasibleError, match="relax at least two") as err:
        solve(problem, latency=Budget.absolute(2.0), size=Budget.absolute(2.0), energy=Budget.absolute(2.0))
    assert err.value.minimums == {}


# ------------------------------------------------------------------------------------------ ties
def test_ties_are_respected_and_optimal():
    rng = np.random.default_rng(17)
    for _ in range(8):
        sens, prof = random_instance(rng, 11)
        problem = make_problem(sens, prof)
        names = problem.names
        perm = rng.permutation(len(names))
        ties = [[names[k] for k in perm[:3]], [names[k] for k in perm[3:5]], [names[perm[2]], names[perm[6]]]]
        budgets = budgets_between(problem, rng, ["latency"])
        limits = limits_of(problem, budgets)
        expected = brute_force(problem, cost_table(problem), limits, ties)
        if expected is None:
            with pytest.raises(InfeasibleError):
                solve(problem, ties=ties, **budgets)
            continue
        alloc = solve(problem, ties=ties, **budgets)
        assert alloc.objective == pytest.approx(expected[0], rel=1e-7)
        for group in ties:
            assert len({alloc.bits[n] for n in group}) == 1
        # overlapping groups merge: perm[0..2] and perm[6] all share one width
        assert alloc.bits[names[perm[0]]] == alloc.bits[names[perm[6]]]


def test_infeasible_with_ties_reports_tied_minimum():
    # a is slower at 4 bits (it can happen on a real core), b faster: only a split meets 2 s.
    layers = {"a": {4: dict(cycles=3, seconds=3.0, joules=None, weight_bytes=1, bytes=1),
                    8: dict(cycles=1, seconds=1.0, joules=None, weight_bytes=2, bytes=1)},
              "b": {4: dict(cycles=1, seconds=1.0, joules=None, weight_bytes=1, bytes=1),
                    8: dict(cycles=3, seconds=3.0, joules=None, weight_bytes=2, bytes=1)}}
    problem = make_problem({"layers": {"a": 1.0, "b": 1.0}}, profile_from_mapping(layers))
    assert solve(problem, latency=Budget.absolute(2.0)).bits == {"a": 8, "b": 4}
    with pytest.raises(InfeasibleError) as err:
        solve(problem, latency=Budget.absolute(2.0), ties=[["a", "b"]])
    assert err.value.minimums["latency"]["minimum_absolute"] == 4.0
    assert "latency budget 2 s is infeasible; the smallest feasible is 4 s" in str(err.value)


def test_mismatched_layers_and_placeholder_warning():
    sens, prof = random_instance(np.random.default_rng(0), 3, placeholder=True)
    with pytest.warns(UserWarning, match="placeholder"):
        make_problem(sens, prof)
    sens["layers"]["ghost"] = {"4": 1.0}
    del sens["layers"]["layer0"]
    with pytest.raises(ConfigError, match="different layers") as err:
        quiet(make_problem, sens, prof)
    assert "'ghost'" in str(err.value) and "'layer0'" in str(err.value)
    sens, prof = random_instance(np.random.default_rng(0), 3, bits=(4, 8))
    with pytest.raises(ConfigError, match="at \\[2\\] bits"):
        make_problem({"layers": {n: {"2": 1, "4": 1} for n in prof.layers}}, prof, (2, 4, 8))


# ---------------------------------------------------------------------------------------- Pareto
def test_pareto_frontier_is_exact_and_nondominated(tmp_path):
    rng = np.random.default_rng(31)
    sens, prof = random_instance(rng, 10)
    problem = make_problem(sens, prof)
    frontier = pareto_frontier(problem, "latency", points=25)
    pts = frontier.points
    assert len(pts) >= 3
    costs = [p.cost for p in pts]
    sens_tot = [p.sensitivity for p in pts]
    assert costs == sorted(costs) and sens_tot == sorted(sens_tot, reverse=True)
    assert len({tuple(sorted(p.bits.items())) for p in pts}) == len(pts)
    # endpoints: the cheapest assignment, and the all-int8 one at zero sensitivity
    lowest = brute_force(problem, problem.table("latency"), {})[0]
    assert pts[0].cost == pytest.approx(lowest)
    assert pts[-1].sensitivity == 0.0 and pts[-1].ratio == pytest.approx(1.0)
    # each point is the least-sensitive assignment within its latency (brute force)
    for p in pts:
        best = brute_force(problem, problem.sensitivity, {"latency": p.cost})
        assert p.sensitivity == pytest.approx(best[0], rel=1e-9, abs=1e-12)
    chosen = solve(problem, latency="0.8")
    png = tmp_path / "pareto.png"
    plot_frontier(frontier, png, chosen=chosen)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_pareto_keeps_other_budgets_and_handles_conflicts():
    sens, prof = random_instance(np.random.default_rng(4), 8)
    problem = make_problem(sens, prof)
    f = pareto_frontier(problem, "latency", points=10, size="0.8")
    limit = 0.8 * problem.total("size", problem.uniform(8))
    assert f.points and all(problem.total("size", problem.choice_of(p.bits)) <= limit * TOL for p in f.points)
    assert pareto_frontier(problem, "latency", points=5, size="0.01").points == []
    with pytest.raises(ConfigError):
        pareto_frontier(problem, "latency", points=1)


# ------------------------------------------------------------------------------------------- CLI
def write_inputs(tmp_path, n=8, energy=True, seed=0):
    sens, prof = random_instance(np.random.default_rng(seed), n, energy=energy)
    flat = {"schema": 1, "estimator": "mqe", "layers": {k: v["4"] for k, v in sens["layers"].items()}}
    (tmp_path / "s.json").write_text(json.dumps(flat))
    save_profile(tmp_path / "p.json", prof)
    return tmp_path / "s.json", tmp_path / "p.json"


def test_cli_solve_end_to_end(tmp_path, capsys):
    from ohq_pynq.cli import main

    s, p = write_inputs(tmp_path)
    out, png = tmp_path / "config.json", tmp_path / "pareto.png"
    rc = main(["solve", "--sensitivity", str(s), "--profile", str(p), "--latency-budget", "0.75",
               "--size-budget", "0.8x", "--energy-budget", "95%", "--tie", "layer0,layer1",
               "--pareto", str(png), "--pareto-points", "8", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "chosen" in text and "all-int8" in text and "budget" in text
    bits = load_config(out)
    assert set(bits) == {f"layer{i}" for i in range(8)} and set(bits.values()) <= {4, 8}
    assert bits["layer0"] == bits["layer1"]
    meta = json.loads(out.read_text())
    assert meta["vs_all_int8"]["latency"] <= 0.75 * TOL and meta["vs_all_int8"]["size"] <= 0.8 * TOL
    assert meta["vs_all_int8"]["energy"] <= 0.95 * TOL
    assert meta["budgets"]["latency"] == {**meta["budgets"]["latency"], "value": 0.75, "relative": True}
    assert meta["estimator"] == "mqe" and meta["profile_placeholder"] is False
    assert png.read_bytes()[:4] == b"\x89PNG" and meta["pareto"]["points"]
    # the same problem solved in-process gives the same bits
    problem = make_problem(s, p)
    again = solve(problem, latency="0.75", size="0.8x", energy="95%", ties=[["layer0", "layer1"]])
    assert again.bits == bits


def test_cli_solve_errors(tmp_path, capsys):
    from ohq_pynq.cli import main

    s, p = write_inputs(tmp_path, energy=False)
    out = tmp_path / "c.json"
    assert main(["solve", "--sensitivity", str(s), "--profile", str(p), "--latency-budget", "0.2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: latency budget 0.2 of all-int8 is infeasible; the smallest feasible is")
    assert main(["solve", "--sensitivity", str(s), "--profile", str(p), "--energy-budget", "30mJ",
                 "--out", str(out)]) == 2
    assert "no power rails" in capsys.readouterr().err
    assert main(["solve", "--sensitivity", str(s), "--profile", str(p), "--latency-budget", "3",
                 "--out", str(out)]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert not out.exists()


def test_cli_solve_with_placeholder_profile_from_model(tmp_path, capsys):
    from ohq_pynq.cli import main
    from ohq_pynq.graph import load_network
    from ohq_pynq.models import MODELS_DIR

    model = MODELS_DIR / "digits_resnet_folded.onnx"
    names = [layer.name for layer in load_network(model).layers]
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"schema": 1, "estimator": "exact",
                             "layers": {n: 0.01 * (i + 1) for i, n in enumerate(names)}}))
    out = tmp_path / "c.json"
    assert main(["solve", "--sensitivity", str(s), "--model", str(model), "--size-budget", "0.8",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "placeholder" in captured.err
    meta = json.loads(out.read_text())
    assert meta["profile_placeholder"] is True and list(meta["layers"]) == names
    assert meta["vs_all_int8"]["size"] <= 0.8 * TOL


# ------------------------------------------------------------- default objective and top-k
def lexicographic_order(problem, primary, secondary, limits):
    """All feasible assignments sorted by (Σ primary, Σ secondary): brute force."""
    n, m = primary.shape
    choices = np.array(list(itertools.product(range(m), repeat=n)), dtype=np.int64)
    rows = np.arange(n)
    ok = np.ones(len(choices), dtype=bool)
    for metric, limit in limits.items():
        ok &= problem.table(metric)[rows, choices].sum(axis=1) <= limit * TOL
    choices = choices[ok]
    p = primary[rows, choices].sum(axis=1)
    s = secondary[rows, choices].sum(axis=1) if secondary is not None else np.zeros(len(p))
    order = np.lexsort((s, p))
    return choices[order], p[order], s[order]


def test_default_objective_is_min_sensitivity_then_latency():
    """Default: the least Σ S the budgets allow, and among equal Σ S the least latency."""
    assert (ilp.DEFAULT_BETA, ilp.DEFAULT_GAMMA) == (1.0, 0.0)
    rng = np.random.default_rng(2024)
    checked = 0
    for trial in range(20):
        sens, prof = random_instance(rng, int(rng.integers(3, 11)))
        if trial % 2:           # zero sensitivity on some layers: ties that only latency breaks
            for name in list(sens["layers"])[::2]:
                sens["layers"][name]["4"] = 0.0
        problem = make_problem(sens, prof)
        budgets = budgets_between(problem, rng, ["latency"])
        limits = limits_of(problem, budgets)
        order = lexicographic_order(problem, ilp.normalise(problem.sensitivity),
                                    ilp.normalise(problem.seconds), limits)
        if not len(order[0]):
            continue
        alloc = solve(problem, **budgets)
        choice = problem.choice_of(alloc.bits)
        assert problem.total("sensitivity", choice) == pytest.approx(problem.total("sensitivity", order[0][0]),
                                                                     rel=1e-9, abs=1e-12)
        assert problem.total("latency", choice) == pytest.approx(problem.total("latency", order[0][0]), rel=1e-7)
        assert alloc.tie_break == "hardware" and alloc.objective_form() == "min sensitivity, then latency"
        checked += 1
    assert checked >= 12


def test_default_objective_spends_the_budget_the_paper_weights_may_not():
    # b saves as much latency as a at a twentieth of the sensitivity: β = γ = 0.5 takes it to 4
    # bits although the budget (all-int8) does not ask for it; the default keeps every layer at 8.
    layers = {n: {4: dict(cycles=1, seconds=0.5, bytes=1), 8: dict(cycles=2, seconds=1.0, bytes=2)} for n in "ab"}
    problem = make_problem({"layers": {"a": 0.2, "b": 0.01}}, profile_from_mapping(layers))
    assert solve(problem, latency="1.0").bits == {"a": 8, "b": 8}
    paper = solve(problem, latency="1.0", beta=ilp.PAPER_BETA, gamma=ilp.PAPER_GAMMA)
    assert paper.bits == {"a": 8, "b": 4} and paper.ratio("latency") == pytest.approx(0.75)
    assert paper.tie_break is None and paper.objective_form() == "min 0.5·sensitivity + 0.5·latency"
    # a budget that binds: the default spends it on the least sensitive layer
    assert solve(problem, latency="0.75").bits == {"a": 8, "b": 4}


@pytest.mark.parametrize("weighted", [False, True])
def test_solve_ranked_enumerates_the_k_best_in_order(weighted):
    rng = np.random.default_rng(77 + weighted)
    for trial in range(10):
        bits = (4, 8) if trial % 3 else (2, 4, 8)
        sens, prof = random_instance(rng, int(rng.integers(3, 8 if len(bits) == 2 else 6)), bits)
        problem = make_problem(sens, prof, bits)
        budgets = budgets_between(problem, rng, ["latency", "size"][: 1 + trial % 2])
        limits = limits_of(problem, budgets)
        kw = dict(beta=0.4, gamma=0.6) if weighted else {}
        primary = cost_table(problem, **kw) if weighted else ilp.normalise(problem.sensitivity)
        secondary = None if weighted else ilp.normalise(problem.seconds)
        choices, p, s = lexicographic_order(problem, primary, secondary, limits)
        k = 6
        if not len(choices):
            with pytest.raises(InfeasibleError):
                ilp.solve_ranked(problem, k, **kw, **budgets)
            continue
        ranked = ilp.solve_ranked(problem, k, **kw, **budgets)
        assert len(ranked) == min(k, len(choices))
        assert [a.rank for a in ranked] == list(range(1, len(ranked) + 1))
        keys = {tuple(problem.choice_of(a.bits)) for a in ranked}
        assert len(keys) == len(ranked)                                    # no-good cuts: distinct
        got = [(a.objective, problem.total("latency", problem.choice_of(a.bits))) for a in ranked]
        for r, (obj, _) in enumerate(got):
            assert obj == pytest.approx(p[r], rel=1e-7, abs=1e-10)        # the r-th best objective
        for a in ranked:
            assert_within(problem, a, limits)
        assert ranked[0].bits == solve(problem, **kw, **budgets).bits


def test_solve_ranked_stops_when_the_space_is_exhausted_and_respects_ties():
    sens, prof = random_instance(np.random.default_rng(8), 3)
    problem = make_problem(sens, prof)
    assert len(ilp.solve_ranked(problem, 20)) == 8                     # 2^3 assignments
    tied = ilp.solve_ranked(problem, 20, ties=[["layer0", "layer2"]])
    assert len(tied) == 4 and all(a.bits["layer0"] == a.bits["layer2"] for a in tied)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="candidates"):
            ilp.solve_ranked(problem, bad)
