"""The corpus matrix: every model x export (+ the onnx wheel's light models) through every stage.

    python bench/models.py [--resolution 64] [--models a,b] [--exports default,bn] [--no-light]
                           [--resume] [--cache DIR] [--work DIR]

Builds (or reuses) the files with ``tools/build_corpus.py`` (needs torch, torchvision, timm),
runs ``tools/corpus_check.py`` on each (inspect, quantize 8/4, default onnxruntime session vs
fp32, ``run --calib`` on the simulator, deployment vs QDQ), prints a model x export x stage table
and writes ``bench/results/models.json`` after every file (``--resume`` keeps the rows already
there). The light models are 224 x 224 whatever ``--resolution`` says.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_corpus as corpus  # noqa: E402
import corpus_check as checker  # noqa: E402

OUT = ROOT / "bench" / "results" / "models.json"
COLUMNS = ("export",) + checker.STAGES
MARK = {True: "ok", False: "FAIL", None: "-"}


def _counts(rows) -> dict:
    out = {}
    for col in COLUMNS:
        passed = sum(1 for r in rows if r["stages"][col]["ok"] is True)
        out[col] = {"pass": passed, "total": len(rows)}
    return out


def _row(name: str, kind: str, exporter: str | None, res: dict | None, export_error: str | None) -> dict:
    stages = {"export": {"ok": export_error is None, "reason": export_error or (exporter or "file"),
                         "seconds": 0.0}}
    if res is None:
        stages.update({s: {"ok": None, "reason": "not reached: export failed", "seconds": 0.0}
                       for s in checker.STAGES})
        figures = {}
    else:
        stages.update(res["stages"])
        figures = res["figures"]
    return {"model": name, "family": corpus.family(name), "export": kind, "exporter": exporter,
            "stages": stages, "figures": figures}


def table(rows) -> str:
    head = ["model", "export"] + list(COLUMNS)
    body = [[r["model"], r["export"]] + [MARK[r["stages"][c]["ok"]] for c in COLUMNS] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    lines = [fmt.format(*head)] + [fmt.format(*b) for b in body]
    counts = _counts(rows)
    lines.append(fmt.format("passed", "", *[f"{counts[c]['pass']}/{counts[c]['total']}" for c in COLUMNS]))
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64, help="torch models' input H = W (default %(default)s)")
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE)
    ap.add_argument("--models", help="comma-separated subset of the torch models ('' for none)")
    ap.add_argument("--exports", default=",".join(corpus.EXPORTS))
    ap.add_argument("--no-light", action="store_true", help="skip the onnx wheel's light models")
    ap.add_argument("--light", help="comma-separated subset of the light models (e.g. squeezenet,vgg19)")
    ap.add_argument("--resume", action="store_true", help="keep rows already in the JSON")
    ap.add_argument("--work", type=Path, help="artefact folder (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    models = [m for m in args.models.split(",") if m] if args.models is not None else list(corpus.MODELS)
    exports = args.exports.split(",")
    jobs = [(m, k) for m in models for k in exports]
    if not args.no_light:
        lights = corpus.light_models()
        if args.light:
            lights = [p for p in lights if p.stem.removeprefix("light_") in args.light.split(",")]
        jobs += [(p.stem, "zoo", p) for p in lights]
    doc = {"resolution": args.resolution, "torch": torch.__version__,
           "default_exporter": corpus.default_exporter(),
           "criteria": {"int8_max_rel": checker.INT8_MAX_REL, "deploy_kl_ratio": checker.DEPLOY_KL_RATIO,
                        "calib_images": checker.CALIB_IMAGES, "compare_images": checker.COMPARE_IMAGES,
                        "run_images": checker.RUN_IMAGES, "eval_images": checker.EVAL_IMAGES},
           "rows": []}
    if args.resume and args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("resolution") == args.resolution:
            doc["rows"] = old["rows"]
    done = {(r["model"], r["export"]) for r in doc["rows"]}
    work = args.work or Path(tempfile.mkdtemp(prefix="ohq-corpus-"))
    t_all = time.time()
    try:
        for job in jobs:
            name, kind = job[0], job[1]
            if (name, kind) in done:
                continue
            t0 = time.time()
            if kind == "zoo":
                path, exporter, err = job[2], "onnx model zoo", None
            else:
                path = corpus.corpus_file(args.cache, args.resolution, name, kind)
                err = corpus.export_error(args.cache, args.resolution, name, kind)
                manifest = json.loads((corpus.cache_dir(args.cache, args.resolution) / "manifest.json").read_text())
                exporter = manifest.get(path.name, {}).get("exporter")
            res = None
            if err is None:
                d = work / f"{name}.{kind}"
                res = checker.check(path, d).to_json()
                shutil.rmtree(d, ignore_errors=True)
            row = _row(name, kind, exporter, res, err)
            row["seconds"] = round(time.time() - t0, 1)
            doc["rows"].append(row)
            fails = [f"{s}: {v['reason']}" for s, v in row["stages"].items() if v["ok"] is False]
            print(f"{name}.{kind}: {row['seconds']:.0f} s" + ("; " + " | ".join(fails) if fails else "; all pass"),
                  flush=True)
            doc["counts"] = _counts(doc["rows"])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    doc["counts"] = _counts(doc["rows"])
    args.out.write_text(json.dumps(doc, indent=1))
    print()
    print(table(doc["rows"]))
    print(f"\n{len(doc['rows'])} files, resolution {args.resolution}, {time.time() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
