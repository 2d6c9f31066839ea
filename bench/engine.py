"""Numpy engine vs onnxruntime: max relative error and speed, forward and input gradient.

Models: the bundled reference models and the ResNet-18 / MobileNetV3-Small 224x224 layouts
(random weights, BN kept and folded). Prints a table and writes ``bench/results/engine.json``.

    python bench/engine.py [--batch 8] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx

from ohq_pynq import zoo
from ohq_pynq.engine import Engine
from ohq_pynq.runtime import make_executor

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parent.parent / "ohq_pynq" / "models"


def best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_model(name: str, model: onnx.ModelProto, batch: int, repeats: int, threads: int) -> dict:
    eng = Engine(model)
    shape = [batch] + [d or 1 for d in eng.input_shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ort_ex = make_executor(model, executor="onnxruntime", threads=threads)
    ref = ort_ex.run(x, batch_size=batch)
    got = eng.run(x, batch_size=batch)
    err = max(float(np.max(np.abs(got[k] - ref[k])) / max(np.max(np.abs(ref[k])), 1e-12))
              for k in ref)
    t_np = best_of(lambda: eng.run(x, batch_size=batch), repeats)
    t_ort = best_of(lambda: ort_ex.run(x, batch_size=batch), repeats)

    def fwd_bwd():
        vals, tape = eng.forward(x)
        eng.backward(tape, {k: np.ones_like(v) for k, v in vals.items()})

    t_grad = best_of(fwd_bwd, max(1, repeats - 1))
    row = {"model": name, "input": shape, "max_rel_err": err, "numpy_s": t_np, "onnxruntime_s": t_ort,
           "ratio_numpy_over_ort": t_np / t_ort, "numpy_fwd_bwd_s": t_grad,
           "peak_working_set_mb": eng.last_peak_bytes / 2 ** 20}
    print(f"{name:34s} {str(tuple(shape)):18s} err {err:.2e}  numpy {t_np * 1e3:8.1f} ms  "
          f"ort {t_ort * 1e3:8.1f} ms  x{t_np / t_ort:5.1f}  fwd+bwd {t_grad * 1e3:8.1f} ms", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args()
    rows = []
    for path in sorted(glob.glob(str(MODELS / "*.onnx"))):
        rows.append(bench_model(os.path.basename(path), onnx.load(path), 64, args.repeats, args.threads))
    for arch in ("resnet18", "mobilenet_v3_small"):
        for bn in ("kept", "folded"):
            m = getattr(zoo, arch)(resolution=224, batchnorm=bn, seed=0)
            rows.append(bench_model(f"{arch}-224-bn_{bn}", m, args.batch, args.repeats, args.threads))
    out = {"batch": args.batch, "threads": args.threads, "cpu_count": os.cpu_count(),
           "worst_rel_err": max(r["max_rel_err"] for r in rows), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"worst max rel err {out['worst_rel_err']:.2e}; wrote {RESULTS / 'engine.json'}")


if __name__ == "__main__":
    main()
