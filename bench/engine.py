"""Numpy engine vs onnxruntime, both single-threaded: accuracy and speed, forward and backward.

Both sides run on one thread: OMP/OPENBLAS/MKL_NUM_THREADS=1 are set before numpy is imported,
onnxruntime gets intra_op_num_threads=1 and inter_op_num_threads=1 (default graph optimisations,
so it fuses Conv+BN+activation). Times are CPU seconds of this process (``time.process_time``,
user + system: what the run costs, unaffected by other jobs holding the cores) and wall seconds,
each the best of ``--repeats`` interleaved rounds (numpy and onnxruntime alternate, so both see
the same machine load).

Yardsticks. Forward: numpy ``Engine.run`` / onnxruntime ``run``. Backward: onnxruntime has no
gradient, but an input-gradient backward costs the same multiply-adds as the forward (one
transposed GEMM per conv, no weight gradient), so the yardstick is onnxruntime's forward:
``backward`` = numpy ``Engine.backward`` / onnxruntime forward, and ``step`` = numpy
(``forward(record=True)`` + ``backward``) / (2 x onnxruntime forward), the cost of one
distillation step relative to two onnxruntime passes. Target: all three <= 2.

What the backward differentiates: for BN-kept models the distillation step itself (forward to
every BN input, ``distill.bn_loss`` gradient, backward), for folded models ``sum(r * logits)``.

Cases: the bundled reference models (batch 64); ResNet-18 / MobileNetV3-Small 224x224 layouts
(random weights, BN kept and folded) at batch 8; and the batch sizes the pipeline uses:
distillation micro-batches (``distill.DEFAULT_MICRO_BATCH`` images at
``distill.DEFAULT_RESOLUTION`` px, and at 224 px for the refine steps; BN kept) and
calibration / MQE batches of 16 at 224 px. Errors: max relative error of the forward vs
onnxruntime; relative L2 error of the float32 input gradient vs the float64 engine's (same
upstream gradient).

Prints a table and writes ``bench/results/engine.json``.

    python bench/engine.py [--repeats 5] [--quick] [--blas-core SkylakeX]

``--blas-core`` sets OPENBLAS_CORETYPE (numpy's bundled OpenBLAS may not recognise a new CPU
and fall back to older kernels than onnxruntime's MLAS uses; this shows the engine's own
overhead with same-ISA GEMM kernels).
"""
from __future__ import annotations

import os
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in THREAD_VARS:                 # before numpy is imported: single-threaded BLAS
    os.environ[_var] = "1"
if "--blas-core" in sys.argv[:-1]:
    os.environ["OPENBLAS_CORETYPE"] = sys.argv[sys.argv.index("--blas-core") + 1]

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from ohq_pynq import distill, zoo  # noqa: E402
from ohq_pynq.engine import Engine  # noqa: E402
from ohq_pynq.runtime import make_executor  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parent.parent / "ohq_pynq" / "models"
TARGET = 2.0


def blas_info() -> dict:
    """numpy's BLAS and, for its bundled OpenBLAS, the kernel set and thread count in use."""
    info = {"numpy": np.__version__, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        import ctypes

        libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
        libs = sorted(glob.glob(str(libdir / "libopenblas*")))
        if libs:
            lib = ctypes.CDLL(libs[0])
            for suffix in ("64_", ""):
                core = getattr(lib, f"openblas_get_corename{suffix}", None)
                if core is not None:
                    core.restype = ctypes.c_char_p
                    info["openblas_core"] = core().decode()
                    info["openblas_threads"] = int(getattr(lib, f"openblas_get_num_threads{suffix}")())
                    break
    except OSError:
        pass
    return info


class Timer:
    """Best-of CPU and wall seconds per label, over interleaved rounds."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def __call__(self, label, fn):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        c, w = time.process_time() - c, time.perf_counter() - w
        self.cpu[label] = min(self.cpu.get(label, c), c)
        self.wall[label] = min(self.wall.get(label, w), w)
        return out


def rel_err(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def rel_l2(a, b) -> float:
    """||a - b|| / ||b||: for gradients, where a ReLU or max-pool input within float32 round-off
    of a kink routes a few elements differently in float32 and float64 (max error is then O(1))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-300))


def bench_case(name: str, model: onnx.ModelProto, batch: int, repeats: int, backward: bool = True) -> dict:
    eng = Engine(model)
    shape = [batch] + [d or 1 for d in eng.input_shape[1:]]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    ort_ex = make_executor(model, executor="onnxruntime", threads=1)
    assert ort_ex.threads == 1     # intra_op_num_threads; inter_op_num_threads is always 1
    ref = ort_ex.run(x, batch_size=batch)
    got = eng.run(x, batch_size=batch)
    err = max(rel_err(got[k], ref[k]) for k in ref)
    peak_run = eng.last_peak_bytes

    targets = distill.bn_targets(eng)
    names = [t.input for t in targets] if targets else list(eng.output_names)
    grads = grad_err = peak_rec = None
    if backward:
        # Upstream gradients from the float64 engine (the reference gradient comes from it too),
        # so the error below is the float32 backward's alone.
        eng64 = Engine(model, dtype=np.float64)
        v64, t64 = eng64.forward(x.astype(np.float64), outputs=names)
        if targets:
            g64 = distill.bn_loss(v64, targets, grad=True)[1]
        else:
            g64 = {k: rng.standard_normal(v.shape) for k, v in v64.items()}
        del v64
        grads = {k: v.astype(np.float32) for k, v in g64.items()}
        dx64 = eng64.backward(t64, g64)
        del eng64, t64, g64

    tm = Timer()
    for r in range(repeats):
        tm("numpy_forward", lambda: eng.run(x, batch_size=batch))
        tm("ort_forward", lambda: ort_ex.run(x, batch_size=batch))
        if not backward:
            continue
        vals, tape = tm("numpy_forward_record", lambda: eng.forward(x, outputs=names))
        peak_rec = eng.last_peak_bytes
        del vals
        dx = tm("numpy_backward", lambda: eng.backward(tape, grads))
        del tape
        if r == 0:
            grad_err = rel_l2(dx, dx64)
        del dx
    c, w = tm.cpu, tm.wall
    row = {"model": name, "input": shape, "max_rel_err": err, "cpu_s": c, "wall_s": w,
           "ratio_forward": c["numpy_forward"] / c["ort_forward"],
           "peak_working_set_mb": peak_run / 2 ** 20}
    if backward:
        row.update({
            "backward_of": "distillation BN loss" if targets else "sum(r * outputs)",
            "grad_rel_l2_err_vs_float64": grad_err,
            "ratio_backward": c["numpy_backward"] / c["ort_forward"],
            "ratio_step": (c["numpy_forward_record"] + c["numpy_backward"]) / (2 * c["ort_forward"]),
            "peak_working_set_record_mb": peak_rec / 2 ** 20})
    line = (f"{name:34s} {str(tuple(shape)):18s} err {err:.1e}  numpy {c['numpy_forward'] * 1e3:8.1f} "
            f"ort {c['ort_forward'] * 1e3:7.1f} ms cpu  fwd x{row['ratio_forward']:4.1f}")
    if backward:
        line += (f"  bwd {c['numpy_backward'] * 1e3:8.1f} ms x{row['ratio_backward']:4.1f}  "
                 f"step x{row['ratio_step']:4.1f}  grad err {grad_err:.1e}")
    print(line, flush=True)
    return row


def cases(quick: bool):
    """(name, model, batch, backward?) per benchmark row."""
    out = []
    if not quick:
        for path in sorted(glob.glob(str(MODELS / "*.onnx"))):
            out.append((os.path.basename(path), onnx.load(path), 64, True))
    res, mb = distill.DEFAULT_RESOLUTION, distill.DEFAULT_MICRO_BATCH
    for arch in ("resnet18", "mobilenet_v3_small"):
        build = getattr(zoo, arch)
        models = {bn: build(resolution=224, batchnorm=bn, seed=0) for bn in ("kept", "folded")}
        for bn in ("kept", "folded"):
            out.append((f"{arch}-224-bn_{bn}", models[bn], 8, True))
        # same weights (same seed) with a res x res input: what the distillation optimises
        out.append((f"{arch}-{res}-bn_kept distill", build(resolution=res, batchnorm="kept", seed=0), mb, True))
        if not quick:
            out.append((f"{arch}-224-bn_kept distill refine", models["kept"], mb, True))
            out.append((f"{arch}-224-bn_folded calib/MQE", models["folded"], 16, False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best-of)")
    ap.add_argument("--quick", action="store_true", help="zoo layouts at batch 8 and distillation only")
    ap.add_argument("--blas-core", default=None, help="OPENBLAS_CORETYPE for numpy's OpenBLAS")
    ap.add_argument("--out", default=str(RESULTS / "engine.json"))
    args = ap.parse_args()
    import onnxruntime

    env = {"threads": 1, "thread_env": {v: os.environ.get(v) for v in THREAD_VARS},
           "onnxruntime": {"version": onnxruntime.__version__, "intra_op_num_threads": 1,
                           "inter_op_num_threads": 1},
           "blas": blas_info(), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "load_average_start": os.getloadavg(), "timing": "best of %d interleaved rounds" % args.repeats}
    print(f"single-threaded: {env['thread_env']}, onnxruntime intra=1 inter=1; BLAS {env['blas']}; "
          f"load average {env['load_average_start'][0]:.1f} on {os.cpu_count()} cores", flush=True)
    rows = [bench_case(n, m, b, args.repeats, bw) for n, m, b, bw in cases(args.quick)]
    env["load_average_end"] = os.getloadavg()
    out = {**env, "target_ratio": TARGET, "worst_rel_err": max(r["max_rel_err"] for r in rows),
           "worst_grad_rel_err": max(r.get("grad_rel_l2_err_vs_float64") or 0.0 for r in rows), "rows": rows}
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"worst max rel err {out['worst_rel_err']:.2e}, worst gradient rel err "
          f"{out['worst_grad_rel_err']:.2e}; wrote {args.out}")


if __name__ == "__main__":
    main()
