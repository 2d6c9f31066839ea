"""Bit-width allocation by integer linear programming (OHQ stage 4), solved with GLPK via cvxopt.

For layers i and candidate bit-widths b (any set; {4, 8} by default) the ILP picks binary
x[i,b] with Σ_b x[i,b] = 1 and minimises Σ cost[i,b]·x[i,b], where

    cost[i,b] = β·Ŝ[i,b] + γ·Ĥ[i,b]                      (β = 1, γ = 0 by default)
    Ŝ[i,b]   = S[i,b] / Σ_j max_b' S[j,b']               sensitivity; S = 0 at 8 bits (the reference)
    Ĥ[i,b]   = (1-λ)·T[i,b] / Σ_j max_b' T[j,b']  +  λ·E[i,b] / Σ_j max_b' E[j,b']

T is the profiled latency (seconds), E the profiled energy (joules) and λ the energy share of
the hardware term: 0 ("latency", the default), 1 ("energy") or anything between (a blend).
Each term is divided by its *network total* at the worst choice per layer (for hardware usually
all-int8; for sensitivity usually all-int4), so every entry lies in [0, 1] and the objective reads
"β × fraction of the worst-case total sensitivity + γ × fraction of the worst-case latency":
β = γ trades 1 % of total sensitivity for 1 % of total latency, independent of layer count.
(Per-layer offsets do not change the optimum, since every layer picks exactly one width.)

The default objective is lexicographic: minimise sensitivity (β = 1, γ = 0) under the budgets,
then, among the assignments of equal sensitivity, the hardware cost Ĥ (a second ILP with the
first optimum as a constraint). The budget alone bounds the hardware, so the solver spends it
wherever accuracy gains. The paper's weighted sum (β = γ = 0.5, ``PAPER_BETA``/``PAPER_GAMMA``)
stays available: with γ > 0 the solver may stop *below* a budget when the latency saved is
worth the sensitivity. :func:`solve_ranked` enumerates the k best assignments in objective order
(no-good cuts: each found assignment is excluded by one linear row before the next solve), so
that a caller can re-rank them by a measured quantity (:mod:`ohq_pynq.candidates`).

Budgets, in any combination, bound network totals Σ_i metric[i,b]·x[i,b]: model size (bytes of
packed weights + bias, ``weight_bytes`` in the profile), latency (seconds) and energy (joules).
A :class:`Budget` is absolute, or a fraction of the all-reference-bits network (all-int8 with the
default candidates). A total meets a budget B when total ≤ B·(1 + 1e-9) (float round-off only).
Tie groups (layers that must share a width) are merged into one variable set before solving.

When no assignment meets the budgets, :class:`~ohq_pynq.errors.InfeasibleError` states, for each
budget, the smallest value that would be feasible with the other budgets kept (each such value is
itself an ILP optimum), rounded up to 4 significant digits so that the stated number is feasible.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from .budgets import BASE_UNIT, METRICS, Budget, example_unit, format_quantity
from .errors import ConfigError, InfeasibleError, OhqError
from .profile import Profile, load_profile
from .sensitivity import REFERENCE_BITS, load_sensitivity

DEFAULT_BITS = (4, 8)
DEFAULT_BETA = 1.0              # weight of normalised sensitivity
DEFAULT_GAMMA = 0.0             # weight of normalised hardware cost: 0 = the budget alone bounds it
PAPER_BETA = PAPER_GAMMA = 0.5  # the paper's weighted objective (an option: --beta 0.5 --gamma 0.5)
DEFAULT_HW_METRIC = "latency"   # hardware cost in the objective
DEFAULT_LATENCY_ESTIMATE = "median"
REL_TOL = 1e-9              # a total meets budget B when total <= B * (1 + REL_TOL)

def _ceil_sig(x: float, digits: int = 4) -> float:
    """``x`` rounded up to ``digits`` significant digits (so a stated minimum stays feasible)."""
    if x <= 0 or not math.isfinite(x):
        return x
    quantum = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.ceil(x / quantum - 1e-7) * quantum:.{digits}g}")


# --------------------------------------------------------------------------------------- problem
@dataclass
class Totals:
    """Network totals of one assignment: bytes of weights, seconds, joules (None: no rails), ΣS."""

    size_bytes: float | None
    seconds: float
    joules: float | None
    sensitivity: float

    def get(self, metric: str) -> float | None:
        return {"size": self.size_bytes, "latency": self.seconds, "energy": self.joules,
                "sensitivity": self.sensitivity}[metric]

    def to_json(self) -> dict:
        return {"size_bytes": self.size_bytes, "seconds": self.seconds, "joules": self.joules,
                "sensitivity": self.sensitivity}


@dataclass
class Problem:
    """Per-layer, per-bit-width tables (rows: layers in profile order; columns: ``bits``)."""

    names: list[str]
    bits: tuple[int, ...]
    sensitivity: np.ndarray            # (layers, bits), ≥ 0
    seconds: np.ndarray                # (layers, bits)
    joules: np.ndarray | None          # (layers, bits), None without power rails
    size_bytes: np.ndarray | None      # (layers, bits), None if the profile lacks weight_bytes
    placeholder: bool = False
    sensitivity_meta: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)

    @property
    def reference_bits(self) -> int:
        """Width that relative budgets refer to: 8 when a candidate, else the widest candidate."""
        return REFERENCE_BITS if REFERENCE_BITS in self.bits else max(self.bits)

    def table(self, metric: str) -> np.ndarray:
        """The (layers, bits) table of ``metric``; ConfigError when the profile cannot provide it."""
        if metric == "latency":
            return self.seconds
        if metric == "sensitivity":
            return self.sensitivity
        if metric == "energy":
            if self.joules is None:
                raise ConfigError("the profile has no energy (joules are null: this board has no power "
                                  "rails), so an energy budget or energy objective cannot be used")
            return self.joules
        if metric == "size":
            if self.size_bytes is None:
                raise ConfigError("the profile has no 'weight_bytes', so a size budget cannot be used")
            return self.size_bytes
        raise ConfigError(f"unknown metric {metric!r}; choose from size, latency, energy")

    def choice_of(self, assignment: Mapping[str, int]) -> np.ndarray:
        """Column index per layer for ``{name: bits}``."""
        col = {b: k for k, b in enumerate(self.bits)}
        try:
            return np.array([col[int(assignment[n])] for n in self.names], dtype=np.int64)
        except KeyError as err:
            raise ConfigError(f"assignment lacks layer or uses a non-candidate width: {err}") from None

    def total(self, metric: str, choice: np.ndarray) -> float:
        """Σ_i table[i, choice[i]], summed exactly (``math.fsum``)."""
        t = self.table(metric)
        return math.fsum(t[np.arange(len(self.names)), choice].tolist())

    def totals(self, choice: np.ndarray) -> Totals:
        return Totals(size_bytes=None if self.size_bytes is None else self.total("size", choice),
                      seconds=self.total("latency", choice),
                      joules=None if self.joules is None else self.total("energy", choice),
                      sensitivity=self.total("sensitivity", choice))

    def uniform(self, bits: int) -> np.ndarray:
        return np.full(len(self.names), self.bits.index(bits), dtype=np.int64)


def make_problem(sensitivity, profile: Profile | str | os.PathLike,
                 bits: Iterable[int] = DEFAULT_BITS,
                 latency: str | float = DEFAULT_LATENCY_ESTIMATE) -> Problem:
    """Join a sensitivity file/mapping with a profile for the candidate ``bits``.

    ``latency`` picks the per-layer seconds the ILP uses: ``"median"`` (default), ``"p90"``
    (the 90th percentile OQA stores) or ``"spread:K"`` (median + K x spread): the conservative
    choices keep a latency budget on noisy hardware (see :meth:`ohq_pynq.profile.BitCost.latency`).

    Both must cover exactly the same layers (ConfigError otherwise). A placeholder profile emits a
    ``UserWarning``: its costs are estimates, not measurements.
    """
    bits = tuple(sorted({int(b) for b in bits}))
    if len(bits) < 2 or min(bits) <= 0:
        raise ConfigError(f"candidate bit-widths {list(bits)} must be at least two positive widths, e.g. 4,8")
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    if isinstance(sensitivity, tuple) and len(sensitivity) == 2:
        sens, meta = sensitivity
    else:
        sens, meta = load_sensitivity(sensitivity, bits)
    names = list(profile.layers)
    missing = [n for n in names if n not in sens]
    extra = [n for n in sens if n not in profile.layers]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no sensitivity for {_some(missing)}")
        if extra:
            parts.append(f"no profile for {_some(extra)}")
        raise ConfigError("the sensitivity and profile files describe different layers "
                          f"({'; '.join(parts)}); were they made from the same model?")
    for n in names:
        lacking = [b for b in bits if b not in profile.layers[n]]
        if lacking:
            raise ConfigError(f"the profile has no measurement of layer {n!r} at {lacking} bits; "
                              f"profile bit-widths: {list(profile.bits)}")
    cost = [[profile.layers[n][b] for b in bits] for n in names]
    seconds = np.array([[c.latency(latency) for c in row] for row in cost], dtype=np.float64)
    joules = (np.array([[c.joules for c in row] for row in cost], dtype=np.float64)
              if all(c.joules is not None for row in cost for c in row) else None)
    size = (np.array([[c.weight_bytes for c in row] for row in cost], dtype=np.float64)
            if all(c.weight_bytes is not None for row in cost for c in row) else None)
    S = np.array([[sens[n][b] for b in bits] for n in names], dtype=np.float64)
    if profile.placeholder:
        warnings.warn("the profile is a placeholder: the simulator's estimate from layer shapes, not a "
                      "measurement on the board; run `python -m ohq_pynq profile` for measured costs",
                      UserWarning, stacklevel=2)
    hardware = dict(profile.hardware)
    if latency != "median":
        hardware["latency_estimate"] = str(latency)
    return Problem(names=names, bits=bits, sensitivity=S, seconds=seconds, joules=joules, size_bytes=size,
                   placeholder=profile.placeholder, sensitivity_meta=dict(meta),
                   hardware=hardware)


def _some(names: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


# ---------------------------------------------------------------------------------------- result
@dataclass
class Allocation:
    """The ILP's answer: bits per layer, objective value, totals, and reference totals."""

    bits: dict[str, int]
    objective: float
    totals: Totals
    reference: Totals            # all layers at the reference width (all-int8)
    lowest: Totals               # all layers at the lowest candidate width
    reference_bits: int
    lowest_bits: int
    budgets: dict[str, dict]     # metric -> {"value", "relative", "absolute"}
    beta: float
    gamma: float
    energy_share: float
    status: str = "optimal"
    rank: int = 1                # 1 = the ILP optimum, 2 = the next best (solve_ranked), ...
    tie_break: str | None = None # second objective: "hardware" (γ = 0), "sensitivity" (β = 0), None

    @property
    def int8(self) -> Totals:
        return self.reference

    def ratio(self, metric: str) -> float | None:
        """This assignment's total over the all-reference total (e.g. latency vs all-int8)."""
        a, r = self.totals.get(metric), self.reference.get(metric)
        if a is None or r is None or r == 0:
            return None
        return a / r

    def objective_form(self) -> str:
        """The objective in words, e.g. "min sensitivity, then latency" or "0.5·S + 0.5·latency"."""
        hw = {0.0: "latency", 1.0: "energy"}.get(self.energy_share, f"latency/energy {self.energy_share:g}")
        if self.tie_break == "hardware":
            return f"min sensitivity, then {hw}"
        if self.tie_break == "sensitivity":
            return f"min {hw}, then sensitivity"
        return f"min {self.beta:g}·sensitivity + {self.gamma:g}·{hw}"

    def metadata(self) -> dict:
        """Metadata for ``config.json`` (``bitconfig.save_config(path, bits, **metadata)``)."""
        counts = {str(b): sum(1 for v in self.bits.values() if v == b) for b in sorted(set(self.bits.values()))}
        return {
            "solver": "ohq_pynq.ilp (cvxopt.glpk.ilp)",
            "beta": self.beta, "gamma": self.gamma, "energy_share": self.energy_share,
            "objective_form": self.objective_form(),
            "ilp_rank": self.rank,
            "budgets": self.budgets,
            "objective": self.objective,
            "layers_per_bits": counts,
            "predicted": self.totals.to_json(),
            f"all_int{self.reference_bits}": self.reference.to_json(),
            f"all_int{self.lowest_bits}": self.lowest.to_json(),
            f"vs_all_int{self.reference_bits}": {m: self.ratio(m) for m in METRICS},
        }


# ------------------------------------------------------------------------------------------ GLPK
def _import_glpk():
    try:
        from cvxopt import glpk, matrix, spmatrix
    except ImportError:
        raise OhqError("the ILP needs cvxopt with GLPK: `pip install cvxopt` (on armv7 PYNQ boards: "
                       "`sudo apt install python3-cvxopt`)") from None
    return glpk, matrix, spmatrix


def _glpk_binary(c: np.ndarray, G: np.ndarray, h: np.ndarray, groups: int, m: int) -> np.ndarray | None:
    """Minimise c·x over binary x (groups × m, one 1 per group) with G·x ≤ h; None if infeasible."""
    glpk, matrix, spmatrix = _import_glpk()
    n = groups * m
    if G.shape[0] == 0:          # GLPK wants at least one inequality: Σx ≤ groups is implied anyway
        G, h = np.ones((1, n)), np.array([float(groups)])
    r, k = np.nonzero(G)
    Gs = spmatrix(G[r, k].tolist(), r.tolist(), k.tolist(), (G.shape[0], n))
    rows = np.repeat(np.arange(groups), m)
    A = spmatrix(1.0, rows.tolist(), list(range(n)), (groups, n))
    args = (matrix(c.astype(float).tolist(), (n, 1), "d"), Gs, matrix(h.astype(float).tolist(), (len(h), 1), "d"),
            A, matrix(1.0, (groups, 1)), set(), set(range(n)))
    opts = {"msg_lev": "GLP_MSG_OFF"}
    try:
        status, x = glpk.ilp(*args, options=opts)
    except TypeError:            # old cvxopt without the options keyword
        saved = dict(glpk.options)
        glpk.options.update(opts)
        try:
            status, x = glpk.ilp(*args)
        finally:
            glpk.options.clear()
            glpk.options.update(saved)
    if status == "optimal":
        xs = np.array(x, dtype=np.float64).reshape(groups, m)
        return np.argmax(xs, axis=1).astype(np.int64)
    if status in ("infeasible problem", "LP relaxation is primal infeasible"):
        return None
    raise OhqError(f"GLPK could not solve the bit-allocation ILP (status: {status})")


class IlpSolver:
    """The ILP of one :class:`Problem` with its tie groups merged into one variable set each;
    :meth:`solve` minimises any cost table under budgets given as absolute totals."""

    def __init__(self, problem: Problem, ties: Iterable[Iterable[str]] = ()):
        self.p = problem
        n = len(problem.names)
        index = {name: i for i, name in enumerate(problem.names)}
        parent = list(range(n))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for group in ties or ():
            members = list(group)
            unknown = [g for g in members if g not in index]
            if unknown:
                raise ConfigError(f"tie group names layer(s) not in the model: {_some(unknown)}")
            for a in members[1:]:
                parent[find(index[a])] = find(index[members[0]])
        roots: dict[int, int] = {}
        self.group_of = np.array([roots.setdefault(find(i), len(roots)) for i in range(n)], dtype=np.int64)
        self.groups = len(roots)
        self.m = len(problem.bits)

    def group_table(self, table: np.ndarray) -> np.ndarray:
        out = np.zeros((self.groups, self.m))
        np.add.at(out, self.group_of, table)
        return out

    def expand(self, gchoice: np.ndarray) -> np.ndarray:
        return gchoice[self.group_of]

    def group_choice(self, choice: np.ndarray) -> np.ndarray:
        """Column per tie group of a per-layer ``choice`` (the choice of the group's first layer)."""
        first = np.full(self.groups, -1, dtype=np.int64)
        for i in range(len(self.group_of) - 1, -1, -1):
            first[self.group_of[i]] = i
        return np.asarray(choice, dtype=np.int64)[first]

    def _no_good(self, choice: np.ndarray) -> np.ndarray:
        """The row of the cut Σ x[g, choice_g] ≤ groups − 1: excludes exactly this assignment."""
        row = np.zeros(self.groups * self.m)
        row[np.arange(self.groups) * self.m + self.group_choice(choice)] = 1.0
        return row

    def solve(self, cost: np.ndarray, limits: Mapping[str, float], exclude: Iterable[np.ndarray] = (),
              tie_break: np.ndarray | None = None) -> np.ndarray | None:
        """Minimise Σ cost (layers × bits) s.t. total(metric) ≤ limit·(1+REL_TOL) for each limit.

        ``exclude``: per-layer choices the answer must differ from (no-good cuts). ``tie_break``:
        a second cost table minimised among the assignments of optimal Σ cost (lexicographic)."""
        metrics = list(limits)
        c = self.group_table(cost).ravel()
        rows, rhs = [], []
        for metric in metrics:
            limit = limits[metric]
            rows.append(self.group_table(self.p.table(metric)).ravel() / limit)   # scaled to O(1)
            rhs.append(1.0 + REL_TOL)
        for choice in exclude:
            rows.append(self._no_good(choice))
            rhs.append(self.groups - 1.0)
        G = np.array(rows) if rows else np.zeros((0, self.groups * self.m))
        h = np.array(rhs)
        choice = self._solve_exact(c, G, h, metrics, limits)
        if choice is None or tie_break is None:
            return choice
        best = float(c @ self._onehot(choice))
        slack = 1e-9 * abs(best) + 1e-12
        G2 = np.vstack([G, c[None, :]]) if len(G) else c[None, :]
        second = self._solve_exact(self.group_table(tie_break).ravel(), G2, np.append(h, best + slack),
                                   metrics, limits)
        if second is None or float(c @ self._onehot(second)) > best + 1e-7 * abs(best) + 1e-12:
            return choice        # GLPK's tolerances: keep the first optimum
        return second

    def _onehot(self, choice: np.ndarray) -> np.ndarray:
        x = np.zeros(self.groups * self.m)
        x[np.arange(self.groups) * self.m + self.group_choice(choice)] = 1.0
        return x

    def _solve_exact(self, c, G, h, metrics, limits) -> np.ndarray | None:
        """GLPK on (c, G, h); the budget rows (the first ``len(metrics)``) are tightened until the
        answer meets every budget exactly (GLPK's tolerances may admit a hair over)."""
        h = h.copy()
        for _ in range(8):
            g = _glpk_binary(c, G, h, self.groups, self.m)
            if g is None:
                return None
            choice = self.expand(g)
            over = [(k, self.p.total(mt, choice) / limits[mt] - (1.0 + REL_TOL)) for k, mt in enumerate(metrics)]
            over = [(k, v) for k, v in over if v > 0]
            if not over:
                return choice
            for k, v in over:
                h[k] -= v + 1e-12
        return None


def normalise(table: np.ndarray) -> np.ndarray:
    """table / Σ_i max_b table[i, b]; all zeros stays zero."""
    denom = float(np.max(table, axis=1).sum())
    return table / denom if denom > 0 else np.zeros_like(table)


def _energy_share(hw_metric: str | float) -> float:
    if hw_metric == "latency":
        return 0.0
    if hw_metric == "energy":
        return 1.0
    try:
        share = float(hw_metric)
    except (TypeError, ValueError):
        raise ConfigError(f"hardware metric {hw_metric!r} must be 'latency', 'energy' or an energy share "
                          f"between 0 and 1") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"energy share {share} of the hardware cost must be between 0 and 1")
    return share


def cost_table(problem: Problem, beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
               hw_metric: str | float = DEFAULT_HW_METRIC) -> np.ndarray:
    """cost[i,b] = β·Ŝ[i,b] + γ·Ĥ[i,b] (see the module docstring)."""
    for name, v in (("beta", beta), ("gamma", gamma)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
    if beta == 0 and gamma == 0:
        raise ConfigError("beta and gamma are both 0: the objective would ignore sensitivity and hardware cost")
    share = _energy_share(hw_metric)
    hw = np.zeros_like(problem.seconds)
    if share < 1:
        hw += (1 - share) * normalise(problem.seconds)
    if share > 0:
        hw += share * normalise(problem.table("energy"))
    return beta * normalise(problem.sensitivity) + gamma * hw


def budget_limits(problem: Problem, budgets: Mapping[str, Budget | str | None]) -> tuple[dict, dict]:
    """Budgets (``Budget`` or command-line strings, None: no budget) resolved against the
    problem's all-int8 totals: absolute limits per metric (bytes, seconds, joules) and their
    description for the result metadata."""
    limits, described = {}, {}
    ref = problem.uniform(problem.reference_bits)
    for metric, budget in budgets.items():
        if budget is None:
            continue
        if metric not in METRICS:
            raise ConfigError(f"unknown budget {metric!r}; choose from {', '.join(METRICS)}")
        if isinstance(budget, str):
            budget = Budget.parse(budget, metric)
        if not isinstance(budget, Budget):
            raise ConfigError(f"{metric} budget {budget!r} must be a Budget (Budget.fraction(0.75) or "
                              f"Budget.absolute(...)) or a string such as '0.75' or '2.5{example_unit(metric)}'")
        v = budget.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{metric} budget {v!r} must be a finite number > 0")
        problem.table(metric)              # ConfigError if the profile lacks this metric
        absolute = v * problem.total(metric, ref) if budget.relative else float(v)
        if not absolute > 0:
            raise ConfigError(f"{metric} budget cannot be relative: the all-int{problem.reference_bits} "
                              f"{metric} in the profile is 0")
        limits[metric] = absolute
        described[metric] = {"value": float(v), "relative": budget.relative, "absolute": absolute,
                             "unit": BASE_UNIT[metric]}
    return limits, described


def tie_break_table(problem: Problem, beta: float, gamma: float,
                    hw_metric: str | float = DEFAULT_HW_METRIC) -> np.ndarray | None:
    """The second, lexicographic objective: the hardware cost Ĥ when γ = 0 (sensitivity only), the
    sensitivity Ŝ when β = 0; None for a weighted sum (both weights > 0)."""
    if gamma == 0:
        return cost_table(problem, 0.0, 1.0, hw_metric)
    if beta == 0:
        return normalise(problem.sensitivity)
    return None


def solve(problem: Problem, *, beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
          size: Budget | str | None = None, latency: Budget | str | None = None,
          energy: Budget | str | None = None, ties: Iterable[Iterable[str]] = (),
          hw_metric: str | float = DEFAULT_HW_METRIC) -> Allocation:
    """Choose bits per layer minimising β·Ŝ + γ·Ĥ under the given budgets (any combination);
    with γ = 0 (the default) ties in Ŝ go to the least Ĥ.

    ``ties``: groups of layer names that must share a width. ``hw_metric``: "latency" (default),
    "energy", or the energy share λ ∈ [0, 1] of a latency/energy blend. Raises
    :class:`InfeasibleError` (stating the smallest feasible budgets) or :class:`ConfigError`.
    """
    return solve_ranked(problem, 1, beta=beta, gamma=gamma, size=size, latency=latency,
                        energy=energy, ties=ties, hw_metric=hw_metric)[0]


def solve_ranked(problem: Problem, k: int, *, beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
                 size: Budget | str | None = None, latency: Budget | str | None = None,
                 energy: Budget | str | None = None, ties: Iterable[Iterable[str]] = (),
                 hw_metric: str | float = DEFAULT_HW_METRIC) -> list[Allocation]:
    """The ``k`` best assignments in objective order (fewer if fewer meet the budgets): the
    optimum of :func:`solve`, then each next one with the ones found excluded by no-good cuts.
    ``Allocation.rank`` is 1 for the optimum. Raises :class:`InfeasibleError` like :func:`solve`."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"the number of ILP candidates must be an integer >= 1, got {k!r}")
    cost = cost_table(problem, beta, gamma, hw_metric)
    second = tie_break_table(problem, beta, gamma, hw_metric)
    limits, described = budget_limits(problem, {"size": size, "latency": latency, "energy": energy})
    model = IlpSolver(problem, ties)
    found: list[np.ndarray] = []
    for _ in range(k):
        choice = model.solve(cost, limits, exclude=found, tie_break=second)
        if choice is None:
            break
        found.append(choice)
    if not found:
        raise _infeasible(problem, model, limits, described)
    share = _energy_share(hw_metric)
    tie = None if second is None else ("hardware" if gamma == 0 else "sensitivity")
    return [_allocation(problem, c, cost, described, beta, gamma, share, rank=r + 1, tie_break=tie)
            for r, c in enumerate(found)]


def _allocation(problem, choice, cost, described, beta, gamma, share, rank=1, tie_break=None) -> Allocation:
    lowest = min(problem.bits)
    return Allocation(
        bits={n: int(problem.bits[k]) for n, k in zip(problem.names, choice)},
        objective=math.fsum(cost[np.arange(len(choice)), choice].tolist()),
        totals=problem.totals(choice),
        reference=problem.totals(problem.uniform(problem.reference_bits)),
        lowest=problem.totals(problem.uniform(lowest)),
        reference_bits=problem.reference_bits, lowest_bits=lowest,
        budgets=described, beta=float(beta), gamma=float(gamma), energy_share=share,
        rank=rank, tie_break=tie_break)


def minimum_total(problem: Problem, metric: str, limits: Mapping[str, float] | None = None,
                  ties: Iterable[Iterable[str]] = ()) -> tuple[float, np.ndarray] | None:
    """Smallest achievable total of ``metric`` under absolute ``limits`` (None if they conflict)."""
    model = ties if isinstance(ties, IlpSolver) else IlpSolver(problem, ties)
    choice = model.solve(problem.table(metric), dict(limits or {}))
    if choice is None:
        return None
    return problem.total(metric, choice), choice


def _state(metric: str, info: dict, absolute: float, ref_bits: int) -> str:
    """A budget value in the units it was given: fraction of all-int8, or an absolute quantity."""
    if info["relative"]:
        return f"{absolute / (info['absolute'] / info['value']):.4g} of all-int{ref_bits}"
    return format_quantity(absolute, metric)


def _infeasible(problem: Problem, model: IlpSolver, limits: dict, described: dict) -> InfeasibleError:
    ref_bits = problem.reference_bits
    lowest = min(problem.bits)
    metrics = list(limits)
    minimums = {}
    for metric in metrics:
        others = {k: v for k, v in limits.items() if k != metric}
        found = minimum_total(problem, metric, others, model)
        if found is not None:
            minimums[metric] = found
    if not minimums:     # no budget can be met even with all others kept: look at each alone
        for metric in metrics:
            value, choice = minimum_total(problem, metric, {}, model)
            if value > limits[metric] * (1 + REL_TOL):
                minimums[metric] = (value, choice)
        alone = True
    else:
        alone = False
    parts, err_min = [], {}
    for metric, (value, choice) in minimums.items():
        info = described[metric]
        scale = info["absolute"] / info["value"] if info["relative"] else 1.0
        shown = _ceil_sig(value / scale)
        err_min[metric] = {"given": info["value"], "relative": info["relative"], "minimum": value / scale,
                           "minimum_stated": shown, "minimum_absolute": value,
                           "others_kept": not alone}
        low = int(np.sum(choice == problem.bits.index(lowest)))
        how = (f"all layers at {lowest} bits" if low == len(choice)
               else f"{low} of {len(choice)} layers at {lowest} bits")
        given = _state(metric, info, info["absolute"], ref_bits)
        stated = (f"{shown:.4g} of all-int{ref_bits}" if info["relative"]
                  else format_quantity(shown, metric))
        keep = [k for k in metrics if k != metric]
        if keep and not alone and value <= minimum_total(problem, metric, {}, model)[0] * (1 + REL_TOL):
            keep = []            # the other budgets do not bind: this budget is infeasible on its own
        if alone and keep:
            with_ = " even alone"
        elif keep:
            with_ = f" with the {' and '.join(keep)} budget{'s' if len(keep) > 1 else ''} kept"
        else:
            with_ = ""
        parts.append(f"{metric} budget {given} is infeasible{with_}; the smallest feasible is {stated} ({how})")
    if parts:
        message = "; alternatively, ".join(parts) if not alone else "; and ".join(parts)
    else:
        shown = []
        for metric in metrics:
            value, _ = minimum_total(problem, metric, {}, model)
            shown.append(f"{metric} {_state(metric, described[metric], value, ref_bits)}")
        message = (f"no bit-width assignment meets the {', '.join(metrics)} budgets together, although each "
                   f"alone is feasible (smallest alone: {', '.join(shown)}); relax at least two of them")
    err = InfeasibleError(message)
    err.minimums = err_min
    return err
