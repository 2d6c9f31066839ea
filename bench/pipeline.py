"""Whole-pipeline benchmark: per-stage seconds and peak RSS of `python -m ohq_pynq run`, and the
latency cut the search finds at <= 0.5 point accuracy loss.

Cases: the bundled reference models (digits ResNet / MobileNetV3, BN kept) and the ResNet-18 /
MobileNetV3-Small 224x224 layouts (random weights; BN statistics set from random images as in
PyTorch train mode). Each run is its own process, so its peak RSS is measured alone
(``os.wait4``). For the reference models, every Pareto-frontier configuration is evaluated on
the test split: the largest latency cut vs all-int8 whose accuracy is within 0.5 points of fp32.

    python bench/pipeline.py [--board zcu104] [--skip-224]

Prints a table and writes ``bench/results/pipeline.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def layout_model(name: str, folder: Path) -> Path:
    """A 224x224 zoo layout with train-mode BN statistics, written to ``folder``."""
    import onnx

    from ohq_pynq import zoo
    from ohq_pynq.distill import calibrate_bn_statistics, pink_noise_images

    model = zoo.build(name, resolution=224, batchnorm="kept", seed=0)
    model = calibrate_bn_statistics(model, pink_noise_images(8, 3, 224, 224), micro_batch=4)
    path = folder / f"{name}_224.onnx"
    onnx.save(model, path)
    return path


def run_case(model: Path | None, out: Path, args: list[str]) -> dict:
    """Run the CLI in a child process; return its summary, wall seconds and peak RSS (bytes)."""
    cmd = [sys.executable, "-m", "ohq_pynq", "run"] + ([str(model)] if model else []) + \
          ["--out", str(out), "--json", "--force"] + args
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{stderr[-2000:]}")
    return {"summary": json.loads(stdout), "wall_seconds": round(wall, 2),
            "peak_rss_bytes": rusage.ru_maxrss * 1024, "log": stderr.strip().splitlines()}


def latency_cut_at(out: Path, model: str, max_loss: float = 0.005) -> dict:
    """Best latency cut (vs all-int8) among Pareto configurations within ``max_loss`` of fp32."""
    from ohq_pynq.models import load_split
    from ohq_pynq.quant import calibrate, predict, prepare, quantize

    net = prepare(model)
    x, _ = np.load(out / "distilled.npz")["x"], None
    ranges = calibrate(net, x)
    xt, yt = load_split("test")
    fp32 = float(np.mean(predict(net.model, xt).argmax(1) == yt))
    frontier = json.loads((out / "pareto.json").read_text())
    best, rows = None, []
    for p in frontier["points"]:
        acc = float(np.mean(predict(quantize(net, p["bits"], ranges).to_onnx(), xt).argmax(1) == yt))
        row = {"latency_ratio": p["ratio"], "accuracy": acc, "loss_points": 100 * (fp32 - acc)}
        rows.append(row)
        if fp32 - acc <= max_loss and (best is None or p["ratio"] < best["latency_ratio"]):
            best = row
    return {"fp32": fp32, "frontier": rows, "best": best,
            "cut": None if best is None else 1 - best["latency_ratio"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="zcu104")
    ap.add_argument("--skip-224", action="store_true", help="only the reference models")
    args = ap.parse_args(argv)
    from ohq_pynq.models import model_path, split_path

    work = Path(tempfile.mkdtemp(prefix="ohq-bench-"))
    test = ["--eval-data", str(split_path("test")), "--eval-images", "1000"]
    cases = [("digits_resnet_bn", model_path("digits_resnet_bn"), ["--latency-budget", "0.75"] + test),
             ("digits_mbv3_bn", model_path("digits_mbv3_bn"), ["--latency-budget", "0.9"] + test)]
    if not args.skip_224:
        for name, budget in (("resnet18", "0.75"), ("mobilenet_v3_small", "0.9")):
            cases.append((f"{name}_224", layout_model(name, work), ["--latency-budget", budget,
                                                                       "--eval-images", "4"]))
    rows, load = [], [os.getloadavg()[0]]
    for name, model, extra in cases:
        out = work / name
        res = run_case(model, out, ["--board", args.board] + extra)
        s = res["summary"]
        row = {"case": name, "board": args.board, "wall_seconds": res["wall_seconds"],
               "peak_rss_mb": round(res["peak_rss_bytes"] / 2**20, 1),
               "stages": {k: v["seconds"] for k, v in s["stages"].items()},
               "cpu_stages": {k: v.get("cpu_seconds") for k, v in s["stages"].items()},
               "latency_vs_int8": s["totals"]["vs_all_int8"]["latency"],
               "fidelity": s["fidelity"]}
        if not name.endswith("_224"):
            row["search"] = latency_cut_at(out, str(model))
        rows.append(row)
        load.append(os.getloadavg()[0])
        st = " ".join(f"{k} {v:.1f}s" for k, v in row["stages"].items())
        cut = row.get("search", {}).get("cut")
        print(f"{name:22s} {res['wall_seconds']:7.1f} s  peak {row['peak_rss_mb']:6.1f} MB  [{st}]  "
              f"latency {row['latency_vs_int8']:.3f} of int8"
              + (f"; best cut at <=0.5 pt loss {100 * cut:.1f} %" if cut is not None else ""), flush=True)
    RESULTS.mkdir(exist_ok=True)
    # the machine may be shared: wall seconds are only comparable at a load near or below the cores
    machine = {"cores": os.cpu_count(), "load_average_max": round(max(load), 2)}
    (RESULTS / "pipeline.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
