"""``solve --sensitivity S.json --profile P.json [budgets] --out config.json``: bit allocation by ILP.

Budget rule (see :meth:`ohq_pynq.budgets.Budget.parse`): ``0.75``, ``0.75x`` or ``75%`` is a fraction
of the all-int8 total; a number with a unit (``2.5ms``, ``1.2MB``, ``30mJ``) is absolute; a bare
number above 1 is refused as ambiguous.
"""
from __future__ import annotations

import sys
import warnings

from .common import add_executor_argument, format_table

HELP = "choose bits per layer by ILP under size/latency/energy budgets (writes config.json)"


def add_arguments(p) -> None:
    from .. import candidates, ilp, pareto

    p.add_argument("--sensitivity", required=True, metavar="S.json", help="sensitivity.json from `sensitivity`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--profile", metavar="P.json", help="profile.json from `profile` (measured costs)")
    src.add_argument("--model", metavar="MODEL",
                     help="no profile yet: estimate the costs of this ONNX model with the simulator "
                          "(a placeholder, not a measurement)")
    p.add_argument("--input-shape", metavar="C,H,W", help="with --model: fix a dynamic input shape")
    p.add_argument("--board", help="with --model: the board whose cores the simulator models "
                                   "(default: the simulator's pynq-z2)")
    for metric, example in (("size", "1.2MB"), ("latency", "2.5ms"), ("energy", "30mJ")):
        p.add_argument(f"--{metric}-budget", metavar="B",
                       help=f"{metric} budget: fraction of all-int8 (0.75, 0.75x, 75%%) or absolute ({example})")
    p.add_argument("--beta", type=float, default=ilp.DEFAULT_BETA,
                   help="weight of normalised sensitivity (default %(default)s)")
    p.add_argument("--gamma", type=float, default=ilp.DEFAULT_GAMMA,
                   help="weight of normalised hardware cost (default %(default)s: the budgets alone bound "
                        "it and it breaks ties; the paper's objective is --beta 0.5 --gamma 0.5)")
    p.add_argument("--hw-metric", default=ilp.DEFAULT_HW_METRIC, metavar="M",
                   help="hardware cost in the objective: latency, energy, or an energy share 0..1 "
                        "(default %(default)s)")
    p.add_argument("--bits", default=",".join(map(str, ilp.DEFAULT_BITS)), metavar="B1,B2",
                   help="candidate bit-widths (default %(default)s)")
    p.add_argument("--latency-estimate", default=ilp.DEFAULT_LATENCY_ESTIMATE, metavar="E",
                   help="per-layer latency from the profile: median, p90, or spread:K (median + K x "
                        "spread) for a conservative plan on noisy hardware (default %(default)s)")
    p.add_argument("--tie", action="append", default=[], metavar="L1,L2,...",
                   help="layers that must share a bit-width (repeatable)")
    p.add_argument("--pareto", metavar="PNG", help="also sweep a budget and plot the Pareto frontier here")
    p.add_argument("--pareto-metric", choices=("latency", "size", "energy"), default="latency",
                   help="budget swept for --pareto (default latency)")
    p.add_argument("--pareto-points", type=int, default=pareto.DEFAULT_POINTS, metavar="N",
                   help="sweep points (default %(default)s)")
    p.add_argument("--rerank", metavar="MODEL",
                   help="re-rank the --candidates best ILP solutions by this ONNX model's quantized KL "
                        "vs fp32 on --data, and keep the least")
    p.add_argument("--data", metavar="DATA", help="with --rerank: images (.npz or folder), e.g. distilled.npz")
    p.add_argument("--candidates", type=int, default=candidates.DEFAULT_CANDIDATES, metavar="K",
                   help="with --rerank: ILP solutions measured (default %(default)s)")
    add_executor_argument(p)
    p.add_argument("--out", required=True, metavar="config.json", help="output bit-width config")


def _parse_bits(text: str) -> list[int]:
    from ..errors import ConfigError

    try:
        bits = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--bits {text!r} must be comma-separated integers, e.g. 4,8") from None
    return bits


def run(args) -> int:
    from ..bitconfig import save_config
    from ..errors import ConfigError
    from ..fileio import file_sha256
    from ..budgets import format_quantity
    from ..ilp import make_problem, solve
    from ..profile import load_profile
    from ..sensitivity import load_sensitivity

    bits = _parse_bits(args.bits)
    if args.profile:
        profile = load_profile(args.profile)
    else:
        from ..graph import load_network
        from ..oqa import simulated_profile

        profile = simulated_profile(load_network(args.model, args.input_shape), bits, board=args.board)
    sens = load_sensitivity(args.sensitivity, bits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = make_problem(sens, profile, bits, latency=args.latency_estimate)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    ties = [[t.strip() for t in group.split(",") if t.strip()] for group in args.tie]
    budgets = {"size": args.size_budget, "latency": args.latency_budget, "energy": args.energy_budget}
    objective = dict(beta=args.beta, gamma=args.gamma, ties=ties, hw_metric=args.hw_metric)
    rows = None
    if args.rerank:
        alloc, rows = _rerank(args, problem, objective, budgets)
    else:
        if args.data:
            raise ConfigError("--data is for --rerank MODEL")
        alloc = solve(problem, **objective, **budgets)

    meta = alloc.metadata()
    if rows is not None:
        from ..candidates import RERANK_METRIC
        meta["search"] = {"rerank_metric": RERANK_METRIC, "rerank_model": str(args.rerank),
                          "data": str(args.data), "chosen_rank": alloc.rank,
                          "candidates": [{k: v for k, v in r.items() if k != "bits"} for r in rows]}
    meta["sensitivity_file"] = str(args.sensitivity)
    meta["sensitivity_sha256"] = file_sha256(args.sensitivity)
    meta["estimator"] = problem.sensitivity_meta.get("estimator")
    if args.profile:
        meta["profile_file"] = str(args.profile)
        meta["profile_sha256"] = file_sha256(args.profile)
    meta["profile_placeholder"] = problem.placeholder
    meta["hardware"] = problem.hardware
    meta["ties"] = ties

    frontier = None
    if args.pareto:
        from ..pareto import pareto_frontier, plot_frontier

        others = {k: v for k, v in budgets.items() if k != args.pareto_metric}
        frontier = pareto_frontier(problem, args.pareto_metric, args.pareto_points, ties=ties, **others)
        plot_frontier(frontier, args.pareto, chosen=alloc)
        meta["pareto"] = {"png": str(args.pareto), **frontier.to_json()}
        for p in meta["pareto"]["points"]:
            del p["bits"]
    save_config(args.out, alloc.bits, **meta)

    ref, low = alloc.reference_bits, alloc.lowest_bits

    def row(label, totals):
        cells = [label]
        for metric in ("size", "latency", "energy"):
            v = totals.get(metric)
            r = totals.get(metric) / alloc.reference.get(metric) if v is not None and alloc.reference.get(metric) else None
            cells.append("n/a" if v is None else f"{format_quantity(v, metric)} ({r:.3f}x)")
        cells.append(f"{totals.sensitivity:.4g}")
        return cells

    rows = [row(f"all-int{ref}", alloc.reference), row(f"all-int{low}", alloc.lowest), row("chosen", alloc.totals)]
    brow = ["budget"]
    for metric in ("size", "latency", "energy"):
        b = alloc.budgets.get(metric)
        brow.append("-" if b is None else f"{format_quantity(b['absolute'], metric)} "
                                          f"({b['absolute'] / alloc.reference.get(metric):.3f}x)")
    brow.append("")
    rows.append(brow)
    print(format_table(["", "size (weights)", "latency", "energy", "Σ sensitivity"], rows, align="lrrrr"))
    counts = ", ".join(f"{n} at {b} bits" for b, n in sorted(meta["layers_per_bits"].items(), key=lambda kv: int(kv[0])))
    print(f"{len(alloc.bits)} layers: {counts}; objective {alloc.objective:.4g} "
          f"(beta {alloc.beta:g}, gamma {alloc.gamma:g})")
    if frontier is not None:
        print(f"Pareto frontier: {len(frontier.points)} points over {frontier.sweeps} {frontier.metric} budgets "
              f"-> {args.pareto}")
    if rows is not None:
        print(f"re-ranked by KL vs fp32 on {args.data}: kept ILP candidate {alloc.rank} of {len(rows)}")
    print(f"wrote {args.out}")
    return 0


def _rerank(args, problem, objective, budgets):
    """The ``--candidates`` best ILP solutions, measured as quantized networks on ``--data``."""
    from ..candidates import ConfigScorer, rerank
    from ..data import load_data
    from ..errors import ConfigError
    from ..ilp import solve_ranked
    from ..quant import calibrate, prepare

    if not args.data:
        raise ConfigError("--rerank MODEL needs --data DATA (e.g. the run's distilled.npz)")
    net = prepare(args.rerank, args.input_shape)
    if sorted(net.layer_names) != sorted(problem.names):
        raise ConfigError(f"--rerank model {args.rerank} has other layers than the profile and sensitivity")
    x, _ = load_data(args.data, net.input_shape)
    ranges = calibrate(net, x, executor=args.executor)
    ranked = solve_ranked(problem, args.candidates, **objective, **budgets)
    return rerank(ranked, ConfigScorer(net, x, ranges, executor=args.executor),
                  lambda line: print(line, file=sys.stderr))
