"""``distill MODEL --out data.npz``: synthetic calibration images from the model's BN statistics."""
from __future__ import annotations

import sys

from .common import add_model_argument, show_progress

HELP = "distil calibration images from a model's BatchNorm statistics (ZeroQ), written as .npz"


def add_arguments(p) -> None:
    from .. import distill as d

    add_model_argument(p)
    p.add_argument("--num", type=int, default=d.DEFAULT_NUM, help="images to make (default %(default)s)")
    p.add_argument("--iters", type=int, default=d.DEFAULT_ITERS,
                   help="Adam steps per micro-batch at --resolution (default %(default)s)")
    p.add_argument("--resolution", type=int, default=d.DEFAULT_RESOLUTION,
                   help="pixels to optimise at before resizing to the model input; 0 = full "
                        "resolution (default %(default)s; ignored unless fully convolutional)")
    p.add_argument("--refine", type=int, default=d.DEFAULT_REFINE,
                   help="Adam steps at full resolution after resizing (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.DEFAULT_LR, help="Adam step size (default %(default)s)")
    p.add_argument("--micro-batch", type=int, default=d.DEFAULT_MICRO_BATCH,
                   help="images optimised together; bounds memory (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--calib", metavar="DATA",
                   help="use these calibration images (.npz or image folder) instead of distilling")
    p.add_argument("--out", required=True, help="output .npz (array x, float32 N×C×H×W)")


def run(args) -> int:
    import numpy as np

    from .. import distill as d
    from ..engine import Engine
    from ..fileio import atomic_write
    from ..onnx_loader import load_model
    from ..runtime import release_memory

    model = load_model(args.model, args.input_shape)
    engine = Engine(model, keep_model=False)
    del model
    release_memory()              # the checked/shape-inferred protos are garbage now
    if args.calib:
        from ..data import load_data

        x, _ = load_data(args.calib, tuple(engine.input_shape[1:]), limit=args.num)
        x = np.ascontiguousarray(x, dtype=np.float32)
        atomic_write(args.out, lambda f: np.savez(f, x=x))
        print(f"wrote {len(x)} calibration images from {args.calib} to {args.out}")
        return 0
    if not d.bn_targets(engine):
        from ..errors import DataError

        raise DataError(d.FOLDED_BN_MESSAGE)
    bar = None
    if show_progress():
        from tqdm import tqdm

        mbs = -(-args.num // args.micro_batch)
        bar = tqdm(total=mbs * (args.iters + args.refine), desc="distill", unit="step",
                   file=sys.stderr, dynamic_ncols=True)

    def steps(loss: float) -> None:
        if bar is not None:
            bar.set_postfix_str(f"BN loss {loss:.4g}", refresh=False)
            bar.update(1)
    try:
        res = d.distill(None, num=args.num, iters=args.iters, resolution=args.resolution or None,
                        refine=args.refine, lr=args.lr, micro_batch=args.micro_batch,
                        seed=args.seed, on_step=steps, engine=engine)
    finally:
        if bar is not None:
            bar.close()
    atomic_write(args.out, lambda f: np.savez(f, x=res.x))
    print(f"wrote {len(res.x)} distilled images {res.x.shape[1:]} to {args.out}: BN loss "
          f"{res.loss_initial:.4g} -> {res.loss_final:.4g} (optimised at {res.resolution} px)")
    return 0
