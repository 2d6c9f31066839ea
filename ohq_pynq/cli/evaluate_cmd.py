"""``evaluate MODEL --data DATA [--reference FP32.onnx]``: accuracy and fidelity."""
from __future__ import annotations

from .common import add_executor_argument, add_model_argument, print_json

HELP = "accuracy (when DATA has labels) and top-1 agreement / KL against a reference model"


def add_arguments(p) -> None:
    add_model_argument(p)
    p.add_argument("--data", required=True, metavar="DATA",
                   help=".npz with x (and optional labels y) or a folder of images")
    p.add_argument("--reference", metavar="FP32.onnx",
                   help="reference model for top-1 agreement and KL(reference || model)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_executor_argument(p)


def run(args) -> int:
    from ..data import load_data
    from ..errors import DataError
    from ..graph import load_network
    from ..quant import compare, predict

    net = load_network(args.model, args.input_shape)
    x, y = load_data(args.data, net.input_shape, limit=args.limit)
    logits = predict(net.model, x, executor=args.executor)
    ref = None
    if args.reference:
        ref_net = load_network(args.reference, args.input_shape)
        ref = predict(ref_net.model, x, executor=args.executor)
    if y is None and ref is None:
        raise DataError(f"{args.data} has no labels (y); give --reference FP32.onnx to measure "
                        f"agreement instead")
    result = compare(logits, y, ref)
    if args.json:
        print_json(result)
        return 0
    parts = [f"{result['images']} images"]
    if "accuracy" in result:
        parts.append(f"accuracy {100 * result['accuracy']:.2f}%")
    if "top1_agreement" in result:
        parts.append(f"top-1 agreement {100 * result['top1_agreement']:.2f}%")
        parts.append(f"KL {result['kl']:.5f}")
    print(", ".join(parts))
    return 0
