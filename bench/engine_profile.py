"""Where the numpy engine's time goes: CPU seconds per kind of node (convs split by kernel size,
stride and depthwise), for the forward (``run``), the recording forward and the backward of one
distillation step (BN-kept models: forward to every BN input, ``distill.bn_loss`` gradient,
backward), single-threaded, best of ``--repeats`` (by step total). The rest of each pass (the
executor's own bookkeeping) is reported as ``executor``.

    python bench/engine_profile.py [--repeats 3] [--out bench/results/engine_profile.json]
"""
from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"                       # before numpy is imported
if "--blas-core" in sys.argv[:-1]:
    os.environ["OPENBLAS_CORETYPE"] = sys.argv[sys.argv.index("--blas-core") + 1]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ohq_pynq import distill, zoo  # noqa: E402
from ohq_pynq.engine import Engine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [("resnet18", 224, 8), ("resnet18", 64, 4), ("mobilenet_v3_small", 224, 8),
         ("mobilenet_v3_small", 64, 4)]


def kind(node, ins) -> str:
    """Node kind: the op type, convs as 'Conv 3x3/s1', 'Conv dw5x5/s2', ..."""
    if node.op != "Conv":
        return node.op
    w = ins[1]
    group = int(node.attrs.get("group", 1))
    k = tuple(w.shape[2:])
    s = tuple(node.attrs.get("strides", [1, 1]))
    dw = "dw" if group > 1 and w.shape[1] == 1 else ("g" if group > 1 else "")
    return f"Conv {dw}{k[0]}x{k[1]}/s{s[0]}"


class OpTimer:
    """Wraps every op of an engine: CPU seconds per node kind and pass ('forward' label set by
    the caller, 'backward' automatically)."""

    def __init__(self, eng: Engine):
        self.times: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.count: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, str] = {}
        self.label = "forward"
        self.wrapped = []
        seen = set()
        for nd in eng.graph_nodes():
            spec = nd.spec
            if id(spec) in seen:
                continue
            seen.add(id(spec))
            fwd, bwd = spec.forward, spec.backward

            def forward(node, ins, record, fwd=fwd):
                t = time.process_time()
                out = fwd(node, ins, record)
                k = self.kinds.setdefault(node.name, kind(node, ins))
                self.times[self.label][k] += time.process_time() - t
                if self.label == "forward":
                    self.count[k] += 1
                return out

            def backward(node, saved, douts, need, bwd=bwd):
                t = time.process_time()
                out = bwd(node, saved, douts, need)
                self.times["backward"][self.kinds[node.name]] += time.process_time() - t
                return out

            spec.forward, spec.backward = forward, backward
            self.wrapped.append(spec)

    def restore(self) -> None:
        """Unwrap the ops (they are shared by every engine)."""
        for spec in self.wrapped:
            del spec.forward, spec.backward


def profile(arch: str, res: int, batch: int, repeats: int) -> dict:
    eng = Engine(getattr(zoo, arch)(resolution=res, batchnorm="kept", seed=0))
    timer = OpTimer(eng)
    targets = distill.bn_targets(eng)
    names = [t.input for t in targets]
    x = np.random.default_rng(0).standard_normal((batch, 3, res, res)).astype(np.float32)
    best = None
    for _ in range(repeats + 1):                     # the first round warms up
        timer.times.clear()
        timer.count.clear()
        totals = {}
        timer.label = "forward"
        t = time.process_time()
        eng.run(x, batch_size=batch)
        totals["forward"] = time.process_time() - t
        timer.label = "forward_record"
        t = time.process_time()
        vals, tape = eng.forward(x, outputs=names)
        totals["forward_record"] = time.process_time() - t
        grads = distill.bn_loss(vals, targets, grad=True)[1]
        del vals
        t = time.process_time()
        eng.backward(tape, grads)
        totals["backward"] = time.process_time() - t
        del tape, grads
        run = (totals, {p: dict(v) for p, v in timer.times.items()}, dict(timer.count))
        if best is None or sum(totals.values()) < sum(best[0].values()):
            best = run
    timer.restore()
    totals, times, count = best
    kinds = sorted(count, key=lambda k: -sum(times.get(p, {}).get(k, 0) for p in totals))
    rows = [{"kind": k, "nodes": count[k], **{p: times.get(p, {}).get(k, 0.0) for p in totals}} for k in kinds]
    rows.append({"kind": "executor", "nodes": 0,
                 **{p: totals[p] - sum(times.get(p, {}).values()) for p in totals}})
    print(f"{arch} {res}px batch {batch}: " + ", ".join(f"{p} {1e3 * v:.1f} ms" for p, v in totals.items()))
    print(f"  {'kind':20s} {'nodes':>5s} {'forward':>9s} {'record':>9s} {'backward':>9s}  ms cpu")
    for r in rows:
        print(f"  {r['kind']:20s} {r['nodes']:5d} {1e3 * r['forward']:9.1f} {1e3 * r['forward_record']:9.1f} "
              f"{1e3 * r['backward']:9.1f}")
    return {"model": arch, "resolution": res, "batch": batch, "seconds": totals, "kinds": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blas-core", default=None, help="OPENBLAS_CORETYPE for numpy's OpenBLAS")
    ap.add_argument("--out", default=str(RESULTS / "engine_profile.json"))
    args = ap.parse_args()
    out = {"timing": f"CPU seconds, best of {args.repeats} rounds", "load_average": os.getloadavg(),
           "rows": [profile(a, r, b, args.repeats) for a, r, b in CASES]}
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
