"""``sensitivity MODEL --data DATA --out sensitivity.json``: per-layer sensitivity (MQE or exact)."""
from __future__ import annotations

from .common import add_executor_argument, add_model_argument, format_table, show_progress

HELP = "per-layer accuracy sensitivity by mask-guided estimation (MQE) or the exact int4 estimator"


def add_arguments(p) -> None:
    from .. import mqe

    add_model_argument(p)
    p.add_argument("--data", required=True, metavar="DATA",
                   help="images to measure on (distilled .npz or calibration images)")
    p.add_argument("--estimator", choices=mqe.ESTIMATORS, default=mqe.DEFAULT_ESTIMATOR,
                   help="mqe: mask alpha of a layer's int8 weights; exact: the layer alone at int4 "
                        "(default %(default)s)")
    p.add_argument("--alpha", type=float, default=mqe.DEFAULT_ALPHA,
                   help="MQE masking ratio (default %(default)s)")
    p.add_argument("--structured", action="store_true",
                   help="MQE: mask whole input channels instead of individual weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=64, metavar="N",
                   help="use at most N images (default %(default)s)")
    p.add_argument("--out", required=True, help="output sensitivity.json")
    add_executor_argument(p)


def run(args) -> int:
    from ..data import load_data
    from ..mqe import sensitivity
    from ..quant import calibrate, prepare
    from ..sensitivity import save_sensitivity

    net = prepare(args.model, args.input_shape)
    x, _ = load_data(args.data, net.input_shape, limit=args.limit)
    ranges = calibrate(net, x, executor=args.executor)
    result = sensitivity(net, x, ranges, estimator=args.estimator, alpha=args.alpha,
                         structured=args.structured, seed=args.seed, executor=args.executor,
                         progress=show_progress())
    result["model"] = str(args.model)
    save_sensitivity(args.out, result)
    rows = sorted(result["layers"].items(), key=lambda kv: -kv[1])
    print(format_table(["layer", f"sensitivity ({args.estimator}, nats)"], [[k, v] for k, v in rows]))
    print(f"wrote {args.out} ({len(rows)} layers, {len(x)} images, {result['seconds']:.1f} s)")
    return 0
