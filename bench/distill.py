"""Distillation cost and quality.

Cost: ResNet-18 and MobileNetV3-Small 224x224 layouts (random weights; BN statistics calibrated
in "train mode" on natural-image-like 1/f noise), 32 images with the default settings: seconds
and peak RSS of the whole process (each run in its own subprocess). Target for ResNet-18:
<= 5 min and <= 400 MB on this machine.

Quality ("still good"), on the trained BN-kept reference model: data from the cheap defaults vs
expensive ZeroQ settings (500 iterations, lr 0.5) vs real calibration images, compared by BN loss,
per-layer activation ranges (max |x| at each Conv/Gemm input, as int8 calibration uses) and a
per-layer sensitivity ranking (KL of outputs when 50% of a layer's weights are masked; Spearman).

    python bench/distill.py [--skip-cost] [--skip-quality]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parent.parent / "ohq_pynq" / "models"


def prepare(arch: str, path: str) -> None:
    """Build the layout and calibrate its BN statistics; save it (own subprocess)."""
    import onnx

    from ohq_pynq import distill as d
    from ohq_pynq import zoo

    model = getattr(zoo, arch)(resolution=224, batchnorm="kept", seed=0)
    model = d.calibrate_bn_statistics(model, d.pink_noise_images(8, 3, 224, 224), micro_batch=8)
    onnx.save(model, path)


def worker(arch: str, num: int) -> None:
    """One cost run as the CLI does it: load the model file, distil (own subprocess, so
    ru_maxrss is this run's peak)."""
    from ohq_pynq import distill as d
    from ohq_pynq.engine import Engine

    path = str(RESULTS / f".{arch}-224-calibrated.onnx")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--prepare", arch, path], check=True)
    t_cal = time.perf_counter() - t0
    eng = Engine(path, keep_model=False)
    os.unlink(path)
    t0 = time.perf_counter()
    res = d.distill(None, num=num, engine=eng)
    secs = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"model": f"{arch}-224", "num": num, "seconds": secs, "peak_rss_mb": rss_mb,
                      "bn_loss_initial": res.loss_initial, "bn_loss_final": res.loss_final,
                      "reduction": res.loss_initial / res.loss_final, "resolution": res.resolution,
                      "iters": d.DEFAULT_ITERS, "refine": d.DEFAULT_REFINE,
                      "micro_batch": d.DEFAULT_MICRO_BATCH, "bn_calibration_seconds": t_cal}))


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def quality() -> dict:
    from ohq_pynq import distill as d
    from ohq_pynq.data import load_data
    from ohq_pynq.engine import Engine

    path = MODELS / "digits_resnet_bn.onnx"
    eng = Engine(str(path))
    targets = d.bn_targets(eng)
    real, _ = load_data(MODELS / "digits_calib.npz", limit=32)
    sets = {"real": real}
    timing = {}
    for name, kw in {"cheap": {}, "expensive": {"iters": 500, "lr": 0.5, "micro_batch": 32}}.items():
        t = time.perf_counter()
        sets[name] = d.distill(None, num=32, seed=0, engine=eng, **kw).x
        timing[name] = time.perf_counter() - t
    sets["noise"] = np.random.default_rng(0).standard_normal(real.shape).astype(np.float32)
    layers = [nd for nd in eng.graph_nodes() if nd.op in ("Conv", "Gemm")]
    ins = sorted({nd.inputs[0] for nd in layers})
    out_name = eng.output_names[0]
    rng = np.random.default_rng(0)
    masks = {}
    for nd in layers:
        w = eng.constant(nd.inputs[1])
        keep = rng.permutation(w.size) >= w.size // 2
        masks[nd.name] = (nd.inputs[1], (w.reshape(-1) * keep).reshape(w.shape))

    def softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    stats = {}
    for name, x in sets.items():
        vals = eng.run(x, outputs=ins + [out_name])
        ranges = np.array([float(np.max(np.abs(vals[i]))) for i in ins])
        p = softmax(vals[out_name].astype(np.float64))
        sens = []
        for nd in layers:
            wname, wm = masks[nd.name]
            q = softmax(eng.run(x, outputs=[out_name], overrides={wname: wm})[out_name].astype(np.float64))
            sens.append(float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1))))
        stats[name] = {"bn_loss": d.evaluate_loss(eng, x, targets, 32), "ranges": ranges,
                       "sensitivity": np.array(sens)}
    out = {"model": path.name, "seconds": timing, "bn_loss": {k: v["bn_loss"] for k, v in stats.items()},
           "comparisons": {}}
    for a, b in (("cheap", "expensive"), ("cheap", "real"), ("expensive", "real"), ("noise", "real")):
        ra, rb = stats[a]["ranges"], stats[b]["ranges"]
        out["comparisons"][f"{a}_vs_{b}"] = {
            "range_median_rel_diff": float(np.median(np.abs(ra - rb) / rb)),
            "range_max_rel_diff": float(np.max(np.abs(ra - rb) / rb)),
            "sensitivity_spearman": spearman(stats[a]["sensitivity"], stats[b]["sensitivity"]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    if args.prepare:
        prepare(*args.prepare)
        return
    if args.worker:
        worker(args.worker, args.num)
        return
    out = {"cpu_count": os.cpu_count(), "cost": [], "quality": None}
    previous = RESULTS / "distill.json"
    if previous.exists():   # a skipped section keeps its last measured values
        old = json.loads(previous.read_text())
        out["cost"] = old.get("cost", []) if args.skip_cost else []
        out["quality"] = old.get("quality") if args.skip_quality else None
    if not args.skip_quality:
        q = quality()
        out["quality"] = q
        print(f"quality on {q['model']}: BN loss " +
              ", ".join(f"{k} {v:.4g}" for k, v in q["bn_loss"].items()) +
              f"; seconds {q['seconds']}")
        for k, v in q["comparisons"].items():
            print(f"  {k:22s} range rel diff median {v['range_median_rel_diff']:.3f} "
                  f"max {v['range_max_rel_diff']:.3f}  sensitivity spearman {v['sensitivity_spearman']:.3f}")
    if not args.skip_cost:
        for arch in ("resnet18", "mobilenet_v3_small"):
            proc = subprocess.run([sys.executable, __file__, "--worker", arch, "--num", str(args.num)],
                                  capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            out["cost"].append(row)
            print(f"{row['model']:24s} {row['num']} images: {row['seconds']:.1f} s, peak RSS "
                  f"{row['peak_rss_mb']:.0f} MB, BN loss {row['bn_loss_initial']:.4g} -> "
                  f"{row['bn_loss_final']:.4g} (x{row['reduction']:.1f}) at {row['resolution']} px",
                  flush=True)
    RESULTS.mkdir(exist_ok=True)
    name = "distill.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
