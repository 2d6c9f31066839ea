"""Accuracy of uniform quantization on the reference models, next to onnxruntime's quantize_static.

For each reference model: fp32, our W8A8 / W4A8 / W4A4 (min/max calibration on the same
calibration images), and onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights,
uint8 activations, MinMax) as the int8 yardstick. Prints a table and writes
``bench/results/quant.json``.

    python bench/quant.py [--calib 256]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ohq_pynq.data import load_data
from ohq_pynq.models import list_models, model_path, split_path
from ohq_pynq.quant import calibrate, compare, predict, prepare, quantize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from ort_reference import ort_quantize_static  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=256, help="calibration images (default 256)")
    args = ap.parse_args(argv)
    xc, _ = load_data(split_path("calib"))
    xc = xc[: args.calib]
    xt, yt = load_data(split_path("test"))
    rows = []
    for name in list_models():
        path = str(model_path(name))
        t0 = time.perf_counter()
        net = prepare(path)
        ranges = calibrate(net, xc)  # default: 99.99th percentile of |x|
        ref = predict(net.model, xt)
        row = {"model": name, "fp32": compare(ref, yt)["accuracy"]}
        for w, a in ((8, 8), (4, 8), (4, 4)):
            out = predict(quantize(net, w, ranges, act_bits=a).to_onnx(), xt)
            m = compare(out, yt, ref)
            row[f"W{w}A{a}"] = m["accuracy"]
            row[f"W{w}A{a}_kl"] = m["kl"]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                qdq = str(ort_quantize_static(path, xc, tmp))
                row["ort_int8"] = compare(predict(qdq, xt), yt)["accuracy"]
        except Exception as err:  # report, don't hide: a failed yardstick is a finding
            row["ort_int8"] = None
            row["ort_error"] = f"{type(err).__name__}: {err}"
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        print(f"{name:28s} fp32 {100*row['fp32']:.2f}  W8A8 {100*row['W8A8']:.2f}  "
              f"W4A8 {100*row['W4A8']:.2f}  W4A4 {100*row['W4A4']:.2f}  ORT int8 "
              + (f"{100*row['ort_int8']:.2f}" if row["ort_int8"] is not None else "failed"), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = {"calibration_images": len(xc), "test_images": len(xt), "rows": rows}
    (RESULTS / "quant.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'quant.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
