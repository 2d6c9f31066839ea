"""``sensitivity MODEL --data DATA --out sensitivity.json``: per-layer sensitivity (MQE or exact)."""
from __future__ import annotations

from .common import add_executor_argument, add_model_argument, format_table, show_progress

HELP = "per-layer accuracy sensitivity by MQE (one int8 model, perturbed per layer) or the exact int4 estimator"


def add_arguments(p) -> None:
    from .. import mqe

    add_model_argument(p)
    p.add_argument("--data", required=True, metavar="DATA",
                   help="images to measure on (distilled .npz or calibration images)")
    p.add_argument("--estimator", choices=mqe.ESTIMATORS, default=mqe.DEFAULT_ESTIMATOR,
                   help="mqe: perturb each layer of one int8 model as int4 would (one pass per layer); "
                        "exact: the layer alone at int4, a new model per layer (default %(default)s)")
    p.add_argument("--perturbation", choices=mqe.PERTURBATIONS, default=mqe.DEFAULT_PERTURBATION,
                   help="MQE: rounding = the layer's int4 weight rounding; mask = zero a random "
                        "fraction --alpha of its int8 weights, the paper (default %(default)s)")
    p.add_argument("--alpha", type=_alpha, default=mqe.DEFAULT_ALPHA,
                   help="MQE mask fraction, or 'matched' to the layer's int4 rounding noise "
                        "(default %(default)s)")
    p.add_argument("--weights-only", action="store_true",
                   help="MQE: leave the layer's input activations at int8 (with --perturbation mask: the "
                        "paper's MQE)")
    p.add_argument("--structured", action="store_true",
                   help="MQE mask: whole input channels instead of individual weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=64, metavar="N",
                   help="use at most N images (default %(default)s)")
    p.add_argument("--out", required=True, help="output sensitivity.json")
    add_executor_argument(p)


def _alpha(text: str):
    import argparse

    if text == "matched":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a fraction nor 'matched'") from None


def run(args) -> int:
    from ..data import load_data
    from ..mqe import sensitivity
    from ..quant import calibrate, prepare
    from ..sensitivity import save_sensitivity

    net = prepare(args.model, args.input_shape)
    x, _ = load_data(args.data, net.input_shape, limit=args.limit)
    ranges = calibrate(net, x, executor=args.executor)
    result = sensitivity(net, x, ranges, estimator=args.estimator, perturbation=args.perturbation,
                         alpha=args.alpha, structured=args.structured, activations=not args.weights_only,
                         seed=args.seed, executor=args.executor, progress=show_progress())
    result["model"] = str(args.model)
    save_sensitivity(args.out, result)
    rows = sorted(result["layers"].items(), key=lambda kv: -kv[1])
    print(format_table(["layer", f"sensitivity ({args.estimator}, nats)"], [[k, v] for k, v in rows]))
    print(f"wrote {args.out} ({len(rows)} layers, {len(x)} images, {result['seconds']:.1f} s)")
    return 0
