"""The closed loop on the simulated boards: per-layer and end-to-end latency predicted by the
profile (core + modelled board overheads) against what deployment measures, what the gap is made
of, and what fraction of the latency the overheads are.

    python bench/overheads.py [--eval-images N] [--models a,b] [--boards x,y]

Runs the whole pipeline (``ohq_pynq.pipeline.run``) once per model and board with the default
settings and writes bench/results/overheads.json. The measured ARM time is taken on this
machine and scaled by the board's ``arm_scale`` (ohq_pynq/hw/overheads.py), so the figures
depend on this CPU and its load (recorded as ``load_average``).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from ohq_pynq.pipeline import Settings, run

RESULTS = Path(__file__).resolve().parent / "results" / "overheads.json"


def one(model: str, board: str, eval_images: int, out: Path) -> dict:
    from ohq_pynq.models import model_path

    t0 = time.perf_counter()
    s = run(Settings(model=str(model_path(model)), out=str(out), board=board,
                     eval_images=eval_images), log=lambda m: None)
    loop = s["closed_loop"]
    from ohq_pynq.cli.run_cmd import summary_text
    return {
        "run_text": summary_text(s).splitlines()[-4:],
        "model": model, "board": board, "seconds": round(time.perf_counter() - t0, 1),
        "eval_images": s["eval_images"],
        "layers": [{k: r.get(k) for k in ("name", "bits", "predicted_seconds", "measured_seconds",
                                         "predicted_core_seconds", "predicted_overheads",
                                         "arm_seconds")} for r in s["layers"]],
        "predicted_seconds": loop["predicted_seconds"], "measured_seconds": loop["measured_seconds"],
        "gap_relative": loop["gap_relative"], "gap": loop["gap"], "arm_ops": loop["arm_ops"],
        "predicted_split": loop["predicted_split"],
        "latency_vs_all_int8": (s["totals"].get("vs_all_int8") or {}).get("latency"),
        "latency_budget_relaxed": s.get("latency_budget_relaxed"),
        "all_int8_seconds": s["totals"]["int8"]["seconds"],
        "all_int4_seconds": s["totals"]["int4"]["seconds"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-images", type=int, default=100)
    p.add_argument("--models", default="digits_resnet_bn,digits_mbv3_bn")
    p.add_argument("--boards", default="pynq-z2,zcu104")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for board in args.boards.split(","):
                r = one(model, board, args.eval_images, Path(tmp) / f"{model}-{board}")
                rows.append(r)
                sp = r["predicted_split"]
                print(f"{model} on {board}: predicted {1e3 * r['predicted_seconds']:.3f} ms, measured "
                      f"{1e3 * r['measured_seconds']:.3f} ms ({100 * r['gap_relative']:+.1f} %); "
                      f"overheads {100 * sp['overhead_fraction']:.1f} % of the predicted latency; "
                      f"ARM ops between cores {1e3 * r['gap']['arm_ops_between_cores']:.3f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "overheads", "load_average": os.getloadavg()[0],
                                   "cpu_count": os.cpu_count(), "runs": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
