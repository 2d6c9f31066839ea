"""Pareto frontier of hardware cost vs total sensitivity, by sweeping one budget through the ILP.

The swept metric (latency by default; size or energy) takes N budgets evenly spaced from its
smallest feasible total to its all-widest total. At each budget B the ILP minimises
Ŝ + ε·Ĥ (ε = 1e-3, Ŝ/Ĥ normalised as in :mod:`ohq_pynq.ilp`) subject to metric ≤ B and any
other budgets: a weighted sum with positive weights, so every solution is Pareto-optimal, and ε
only breaks ties in sensitivity towards cheaper hardware. Identical assignments are merged and
dominated points dropped. :func:`plot_frontier` draws the staircase to a PNG (matplotlib's Agg
canvas, imported lazily, no global backend switch).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .errors import ConfigError
from .budgets import METRICS, Budget, format_quantity
from .ilp import Allocation, IlpSolver, Problem, budget_limits, minimum_total, normalise

EPSILON = 1e-3
DEFAULT_POINTS = 20           # budgets swept


@dataclass
class ParetoPoint:
    """One frontier point: the swept metric's total (bytes / seconds / joules) and ΣS."""

    budget: float                 # absolute budget of the sweep that found it
    cost: float                   # achieved total of the swept metric
    ratio: float                  # cost / all-reference (all-int8) total
    sensitivity: float            # total sensitivity Σ S[i, b_i]
    bits: dict[str, int] = field(repr=False)


@dataclass
class Frontier:
    """Frontier points by ascending cost (and descending sensitivity)."""

    metric: str
    points: list[ParetoPoint]
    reference_total: float        # all-int8 total of the metric
    reference_bits: int
    sweeps: int                   # budgets tried

    def to_json(self) -> dict:
        return {"metric": self.metric, "reference_total": self.reference_total,
                "reference_bits": self.reference_bits, "sweeps": self.sweeps,
                "points": [{"budget": p.budget, "cost": p.cost, "ratio": p.ratio,
                            "sensitivity": p.sensitivity, "bits": p.bits} for p in self.points]}


def pareto_frontier(problem: Problem, metric: str = "latency", points: int = DEFAULT_POINTS, *,
                    size: Budget | str | None = None, latency: Budget | str | None = None,
                    energy: Budget | str | None = None, ties: Iterable[Iterable[str]] = ()) -> Frontier:
    """Sweep ``metric``'s budget over ``points`` values and return the non-dominated assignments.

    Budgets on the *other* metrics stay in force; one given for ``metric`` itself is replaced by
    the sweep. Never raises :class:`~ohq_pynq.errors.InfeasibleError`: if the other budgets
    conflict, the frontier is empty.
    """
    if metric not in METRICS:
        raise ConfigError(f"cannot sweep {metric!r}; choose from {', '.join(METRICS)}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ConfigError(f"a Pareto sweep needs at least 2 points, got {points!r}")
    table = problem.table(metric)
    budgets = {"size": size, "latency": latency, "energy": energy}
    budgets[metric] = None
    limits, _ = budget_limits(problem, budgets)
    model = IlpSolver(problem, ties)
    ref_total = problem.total(metric, problem.uniform(problem.reference_bits))
    found = minimum_total(problem, metric, limits, model)
    if found is None:
        return Frontier(metric, [], ref_total, problem.reference_bits, 0)
    low = found[0]
    high = math.fsum(np.max(table, axis=1).tolist())
    cost = normalise(problem.sensitivity) + EPSILON * normalise(table)
    seen: dict[tuple, ParetoPoint] = {}
    for b in np.linspace(low, high, points):
        b = float(max(b, low))
        choice = model.solve(cost, {**limits, metric: b}) if b > 0 else None
        if choice is None:
            continue
        key = tuple(choice.tolist())
        if key in seen:
            continue
        total = problem.total(metric, choice)
        seen[key] = ParetoPoint(budget=b, cost=total, ratio=total / ref_total if ref_total else math.nan,
                                sensitivity=problem.total("sensitivity", choice),
                                bits={n: int(problem.bits[k]) for n, k in zip(problem.names, choice)})
    pts = sorted(seen.values(), key=lambda p: (p.cost, p.sensitivity))
    frontier = [p for p in pts
                if not any(q is not p and q.cost <= p.cost and q.sensitivity <= p.sensitivity
                           and (q.cost < p.cost or q.sensitivity < p.sensitivity) for q in pts)]
    return Frontier(metric, frontier, ref_total, problem.reference_bits, points)


def plot_frontier(frontier: Frontier, path: str | os.PathLike, chosen: Allocation | None = None,
                  title: str | None = None) -> str:
    """Draw the frontier (x: metric as a fraction of all-int8, y: total sensitivity) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ref = frontier.reference_total
    x = [p.ratio for p in frontier.points]
    y = [p.sensitivity for p in frontier.points]
    if x:
        ax.plot(x, y, drawstyle="steps-post", color="tab:blue", lw=1.2, alpha=0.6)
        ax.plot(x, y, "o", color="tab:blue", ms=5, label=f"Pareto frontier ({len(x)} points)")
    if chosen is not None:
        cx = chosen.ratio(frontier.metric)
        if cx is not None:
            ax.plot([cx], [chosen.totals.sensitivity], "*", color="tab:red", ms=16, zorder=5,
                    label=f"chosen (β={chosen.beta:g}, γ={chosen.gamma:g})")
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    unit = format_quantity(ref, frontier.metric)
    ax.set_xlabel(f"{frontier.metric} / all-int{frontier.reference_bits} (1.0 = {unit})")
    ax.set_ylabel("total sensitivity Σ S (KL)")
    ax.set_title(title or f"bit allocation: {frontier.metric} vs sensitivity")
    ax.grid(True, alpha=0.3)
    if x or chosen is not None:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)
