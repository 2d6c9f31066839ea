"""Check that exported QDQ models open in a default session of some onnxruntime release.

Two steps, so the check can run in a separate venv that has only the onnxruntime under test:

    python tools/qdq_onnxruntime_compat.py make DIR       # this checkout: write the models
    /venv-ort-1.17/bin/python tools/qdq_onnxruntime_compat.py check DIR [--json OUT]

``make`` quantizes every graph pattern of ``tests/qdq_patterns.py`` and every bundled model at 8,
4 and two mixed bit configurations and writes ``NAME.onnx`` with ``NAME.npz`` (inputs ``x`` and
the numpy engine's logits ``ref``). ``check`` needs only numpy and onnxruntime: it opens each
model with ``onnxruntime.InferenceSession(path)`` (all graph optimisations on) and prints, per
model, whether it loads and how far its logits are from the reference (max |diff| as a % of the
logit range, top-1 agreement); exit status 1 if any model fails to load or differs by more than
5 % of the range.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make(out: Path) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from qdq_patterns import CIN, HW, PATTERNS

    from ohq_pynq.data import load_data
    from ohq_pynq.models import list_models, model_path, split_path
    from ohq_pynq.quant import calibrate, predict, prepare, quantize

    out.mkdir(parents=True, exist_ok=True)
    sources = [(name, build(), np.random.default_rng(0).normal(size=(32, CIN, HW, HW)).astype(np.float32))
               for name, build in PATTERNS.items()]
    calib, _ = load_data(split_path("calib"), limit=32)
    sources += [(name, str(model_path(name)), calib) for name in list_models()]
    for name, model, x in sources:
        net = prepare(model)
        ranges = calibrate(net, x, executor="numpy")
        layers = net.layer_names
        configs = {"8": 8, "4": 4, "mixed": {n: 4 if i % 2 else 8 for i, n in enumerate(layers)},
                   "mixed_inverse": {n: 8 if i % 2 else 4 for i, n in enumerate(layers)}}
        for tag, bits in configs.items():
            q = quantize(net, bits, ranges).to_onnx()
            (out / f"{name}_{tag}.onnx").write_bytes(q.SerializeToString())
            np.savez(out / f"{name}_{tag}.npz", x=x, ref=predict(q, x, executor="numpy"))
        print(f"{name}: {len(configs)} models")


def check(folder: Path, json_out: str | None) -> int:
    import onnxruntime as ort

    rows, bad = [], 0
    for path in sorted(folder.glob("*.onnx")):
        data = np.load(path.with_suffix(".npz"))
        row = {"model": path.stem}
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 4
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            y = sess.run(None, {sess.get_inputs()[0].name: data["x"]})[0]
            ref = data["ref"]
            span = float(ref.max() - ref.min()) or 1.0
            row.update(loads=True, max_diff_pct=round(100 * float(np.abs(y - ref).max()) / span, 3),
                       top1=float(np.mean(y.argmax(-1) == ref.argmax(-1))))
            bad += row["max_diff_pct"] > 5
            print(f"{path.stem:40s} ok    max |diff| {row['max_diff_pct']:7.3f} % of range, top-1 {row['top1']:.3f}")
        except Exception as err:  # noqa: BLE001 - report whatever onnxruntime raises
            row.update(loads=False, error=str(err).splitlines()[0][:300])
            bad += 1
            print(f"{path.stem:40s} FAIL  {row['error']}")
        rows.append(row)
    print(f"onnxruntime {ort.__version__}: {len(rows) - bad} of {len(rows)} models load and agree")
    if json_out:
        Path(json_out).write_text(json.dumps({"onnxruntime": ort.__version__, "models": rows}, indent=2))
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("make", "check"))
    p.add_argument("folder")
    p.add_argument("--json", help="check: write the results as JSON here")
    args = p.parse_args()
    if args.step == "make":
        make(Path(args.folder))
        return 0
    return check(Path(args.folder), args.json)


if __name__ == "__main__":
    sys.exit(main())
