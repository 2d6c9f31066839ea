"""``run [MODEL]``: the whole OHQ job — distil, profile, sensitivity, solve, deploy, verify."""
from __future__ import annotations

from .common import add_executor_argument, format_table, print_json, show_progress

HELP = "the main job: distil -> profile -> sensitivity -> solve -> deploy -> verify, with a report"


def add_arguments(p) -> None:
    from .. import distill, mqe
    from ..pipeline import DEFAULT_LATENCY_BUDGET, Settings

    d = Settings()                # every default below is the pipeline's (and its stages')
    p.add_argument("model", nargs="?",
                   help="ONNX model (default: the bundled digits ResNet on the simulator)")
    p.add_argument("--input-shape", metavar="C,H,W", help="fix a dynamic input shape, e.g. 3,224,224")
    p.add_argument("--backend", choices=("sim", "pynq"), default=d.backend,
                   help="sim: cycle-true simulator of the cores (default %(default)s); pynq: the "
                        "overlay on this board")
    p.add_argument("--board", help="board profile: pynq-z2, ultra96v2, zcu104, kv260 "
                                   "(default: simulator pynq-z2 / detected on a board)")
    p.add_argument("--no-overheads", action="store_true",
                   help="sim: the bare cores, without what a board adds around them (DMA set-up, "
                        "cache maintenance, register programming, polling, the ARM's numpy work)")
    p.add_argument("--arm-time", choices=("measured", "off"), default=d.arm_time,
                   help="sim: time the driver's numpy packing on this CPU, scaled to the board's "
                        "ARM core (default %(default)s; off: deterministic)")
    p.add_argument("--overlay", metavar="BIT", help="pynq: the bitstream (default overlays/<board>/ohq.bit)")
    p.add_argument("--calib", metavar="DATA", help="calibration images instead of distilled data "
                                                   "(required for BN-folded models)")
    p.add_argument("--eval-data", metavar="DATA", help="images (+labels) for the final check "
                                                       "(default: bundled test set / the calibration data)")
    p.add_argument("--eval-images", type=int, default=d.eval_images, metavar="N",
                   help="images run through the integer deployment (default %(default)s)")
    p.add_argument("--num", type=int, default=d.num_images, metavar="N",
                   help="distilled images (default %(default)s)")
    p.add_argument("--iters", type=int, default=d.distill_iters, metavar="N",
                   help=f"distillation iterations (default {distill.DEFAULT_ITERS})")
    for metric, example in (("latency", "2.5ms"), ("size", "1.2MB"), ("energy", "30mJ")):
        # latency: None when not given, so the default budget can give way where it is infeasible
        default = None if metric == "latency" else getattr(d, f"{metric}_budget")
        p.add_argument(f"--{metric}-budget", default=default, metavar="B",
                       help=f"{metric} budget: fraction of all-int8 (0.75, 75%%) or absolute ({example})"
                            + (f"; default {DEFAULT_LATENCY_BUDGET}, or the smallest feasible latency "
                               f"where {DEFAULT_LATENCY_BUDGET} is not" if metric == "latency" else ""))
    p.add_argument("--no-latency-budget", action="store_true", help="drop the default latency budget")
    p.add_argument("--beta", type=float, default=d.beta, help="weight of sensitivity (default %(default)s)")
    p.add_argument("--gamma", type=float, default=d.gamma,
                   help="weight of hardware cost (default %(default)s: the budget alone bounds it and "
                        "breaks ties; the paper's objective is --beta 0.5 --gamma 0.5)")
    p.add_argument("--hw-metric", default=d.hw_metric,
                   help="hardware cost: latency, energy or a share 0..1 (default %(default)s)")
    p.add_argument("--candidates", type=int, default=d.candidates, metavar="K",
                   help="re-rank the K best ILP solutions by the quantized network's KL on the data "
                        "(default %(default)s; 1 = the ILP optimum)")
    p.add_argument("--compare-random", type=int, default=d.compare_random, metavar="N",
                   help="also measure N random configurations at the same budget and plot them in the "
                        "report (default %(default)s = off; each costs one pass over the data)")
    p.add_argument("--estimator", choices=mqe.ESTIMATORS, default=d.estimator,
                   help="sensitivity estimator (default %(default)s)")
    p.add_argument("--repeats", type=int, default=d.repeats,
                   help="OQA repeats per layer x bits (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument("--out", default=d.out, metavar="DIR", help="artefact folder (default %(default)s)")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_executor_argument(p, d.executor)


def settings_from_args(args):
    from ..pipeline import DEFAULT_LATENCY_BUDGET, Settings

    latency = DEFAULT_LATENCY_BUDGET if args.latency_budget is None else args.latency_budget
    return Settings(model=args.model, out=args.out, backend=args.backend, board=args.board,
                    overlay=args.overlay, overheads=not args.no_overheads, arm_time=args.arm_time,
                    calib=args.calib, eval_data=args.eval_data, input_shape=args.input_shape,
                    num_images=args.num, distill_iters=args.iters,
                    latency_budget=None if args.no_latency_budget else latency,
                    latency_budget_given=args.latency_budget is not None,
                    size_budget=args.size_budget, energy_budget=args.energy_budget,
                    beta=args.beta, gamma=args.gamma, hw_metric=args.hw_metric,
                    candidates=args.candidates, compare_random=args.compare_random,
                    estimator=args.estimator, repeats=args.repeats, eval_images=args.eval_images,
                    seed=args.seed, executor=args.executor, force=args.force,
                    progress=show_progress() and not args.json)


def run(args) -> int:
    import sys

    from ..pipeline import run as run_pipeline

    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    summary = run_pipeline(settings_from_args(args), log=log)
    if args.json:
        print_json(summary)
    else:
        print(summary_text(summary))
    return 0


def _ms(v) -> str:
    return "-" if v is None else f"{1e3 * v:.4f}"


def _mj(v) -> str:
    return "-" if v is None else f"{1e3 * v:.4f}"


def gap_text(loop: dict) -> str:
    """Predicted vs measured end to end, and what the gap is made of (one or two lines)."""
    g = loop["gap"]
    rel = loop.get("gap_relative")
    ops = ", ".join(f"{op} {_ms(v)}" for op, v in list(loop.get("arm_ops", {}).items())[:4])
    text = (f"end to end per image: measured {_ms(loop['measured_seconds'])} ms, predicted "
            f"{_ms(loop['predicted_seconds'])} ms by the profile"
            + (f" ({100 * rel:+.1f} %)" if rel is not None else "")
            + f"; the gap: ARM ops between cores {_ms(g['arm_ops_between_cores'])} ms"
            + (f" ({ops})" if ops else "")
            + f", ARM quantize/dequantize at the cores {_ms(g['arm_quantize_dequantize'])} ms, "
              f"per-layer differences {_ms(g['per_layer_difference'])} ms, the rest "
              f"{_ms(g['unattributed'])} ms")
    split = loop.get("predicted_split") or {}
    if split.get("overhead_fraction") is not None:
        cats = ", ".join(f"{k} {_ms(v)}" for k, v in sorted(split["overheads"].items(), key=lambda kv: -kv[1]))
        text += (f"\nboard overheads are {100 * split['overhead_fraction']:.1f} % of the predicted "
                 f"latency (cores {_ms(split['core_seconds'])} ms; {cats} ms)")
    return text


def summary_text(summary: dict) -> str:
    """The terminal table: per layer, totals vs all-int8/all-int4, size and fidelity."""
    rows = [[r["name"], r["bits"], f"{r['sensitivity']:.4g}", _ms(r["predicted_seconds"]),
             _ms(r["measured_seconds"]), _ms(r.get("arm_seconds")), _mj(r["predicted_joules"]),
             _mj(r["measured_joules"])]
            for r in summary["layers"]]
    loop = summary.get("closed_loop")
    if loop:
        rows.append(["ARM ops between cores", "", "", "-", _ms(loop["gap"]["arm_ops_between_cores"]),
                     "", "", ""])
    lines = [format_table(["layer", "bits", "sensitivity", "pred ms", "meas ms", "ARM ms", "pred mJ",
                           "meas mJ"], rows, align="lrrrrrrr"), ""]
    t = summary["totals"]
    tot = [["chosen", _ms(t["chosen"]["seconds"]), _ms(t["measured_seconds"]), _mj(t["chosen"]["joules"]),
            _mj(t["measured_joules"]), f"{t['chosen']['bytes']:,.0f}"],
           ["all int8", _ms(t["int8"]["seconds"]), "", _mj(t["int8"]["joules"]), "", f"{t['int8']['bytes']:,.0f}"],
           ["all int4", _ms(t["int4"]["seconds"]), "", _mj(t["int4"]["joules"]), "", f"{t['int4']['bytes']:,.0f}"]]
    lines.append(format_table(["total", "pred ms", "meas ms", "pred mJ", "meas mJ", "weight bytes"], tot,
                              align="lrrrrr"))
    v = t.get("vs_all_int8") or {}
    f = summary["fidelity"]
    parts = [f"latency {100 * (1 - v['latency']):.1f} % below all-int8" if v.get("latency") else None,
             f"size {100 * v['size']:.1f} % of all-int8" if v.get("size") else None,
             f"top-1 agreement with fp32 {100 * f['top1_agreement_vs_fp32']:.2f} %",
             f"KL {f['kl']:.4g}",
             f"with the QDQ model {100 * f['top1_agreement_vs_qdq']:.2f} %"]
    if "accuracy" in f:
        parts.append(f"accuracy {100 * f['accuracy']:.2f} % (fp32 {100 * f['accuracy_fp32']:.2f} %, "
                     f"int8 {100 * f['accuracy_int8']:.2f} %)")
    lines.append("")
    lines.append("; ".join(p for p in parts if p) + f" on {summary['eval_images']} images")
    search = summary.get("search") or {}
    cands = search.get("candidates") or []
    if len(cands) > 1:
        chosen = next(c for c in cands if c.get("chosen"))
        lines.append(f"search: ILP candidate {chosen['rank']} of {len(cands)} kept, least KL vs fp32 on the "
                     f"{search.get('images')} data images ({chosen['kl']:.4g}; ILP optimum {cands[0]['kl']:.4g})")
    rnd = search.get("random")
    if rnd and rnd.get("beats_kl") is not None:
        lines.append(f"vs {rnd['n']} random configurations at the same budget: lower KL than "
                     f"{100 * rnd['beats_kl']:.1f} %, higher top-1 agreement than "
                     f"{100 * rnd['beats_top1_agreement']:.1f} % (report.html)")
    if loop:
        lines.append(gap_text(loop))
    relaxed = summary.get("latency_budget_relaxed")
    if relaxed:
        lines.append(f"latency budget: {relaxed['used']} of all-int8, the smallest feasible (the default "
                     f"{relaxed['requested']} is infeasible on this hardware)")
    return "\n".join(lines)
