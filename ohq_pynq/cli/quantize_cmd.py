"""``quantize MODEL --bits ... --calib DATA --out Q.onnx``: export a QDQ model."""
from __future__ import annotations

from .common import add_executor_argument, add_model_argument, show_progress

HELP = "quantize a model (uniform or per-layer bits) and export a QDQ ONNX model"


def add_arguments(p) -> None:
    from .. import quant

    add_model_argument(p)
    p.add_argument("--bits", required=True, metavar="8|4|CONFIG.json",
                   help="weight bits for every layer, or a config.json mapping layer -> bits")
    p.add_argument("--act-bits", metavar="8|4|CONFIG.json",
                   help="activation bits (default: each layer's weight bits)")
    p.add_argument("--calib", required=True, metavar="DATA",
                   help="calibration images: .npz with x (N,C,H,W) or a folder of images")
    p.add_argument("--num-calib", type=int, default=256, metavar="N",
                   help="use at most N calibration images (default %(default)s)")
    p.add_argument("--method", choices=quant.CALIBRATION_METHODS, default=quant.DEFAULT_METHOD,
                   help="8-bit activation range: max |x| or a percentile of |x| (default %(default)s); "
                        "4-bit inputs always get their own L2.5-optimal range")
    p.add_argument("--percentile", type=float, default=quant.DEFAULT_PERCENTILE,
                   help="with --method percentile: the percentile of |x| mapped to the largest code "
                        "(default %(default)s)")
    p.add_argument("--out", required=True, help="output QDQ .onnx path")
    add_executor_argument(p)


def run(args) -> int:
    from ..bitconfig import resolve_bits
    from ..data import load_data
    from ..fileio import atomic_write
    from ..quant import calibrate, prepare, quantize

    net = prepare(args.model, args.input_shape)
    bits = resolve_bits(args.bits, net.layer_names)  # fail before the slow part
    act_bits = resolve_bits(args.act_bits, net.layer_names) if args.act_bits else None
    x, _ = load_data(args.calib, net.input_shape, limit=args.num_calib)
    ranges = calibrate(net, x, method=args.method, percentile=args.percentile,
                       executor=args.executor, progress=show_progress())
    qnet = quantize(net, bits, ranges, act_bits=act_bits)
    model = qnet.to_onnx()
    atomic_write(args.out, lambda f: f.write(model.SerializeToString()))
    bits = qnet.weight_bits  # as resolved above
    counts = {b: sum(1 for v in bits.values() if v == b) for b in sorted(set(bits.values()))}
    print(f"wrote {args.out}: {len(bits)} layers ("
          + ", ".join(f"{n} at {b} bits" for b, n in counts.items())
          + f"), {qnet.model_bytes():,} weight bytes, calibrated on {len(x)} images")
    return 0
