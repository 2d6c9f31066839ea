"""The corpus check of one ONNX file, through the product's command line (shared by
``tests/test_corpus.py`` and ``bench/models.py``; dev code, never imported by the product).

Stages, each pass/fail with a one-line reason:

* ``inspect``: ``python -m ohq_pynq inspect FILE --json`` exits 0 and lists >= 1 layer;
* ``quantize8`` / ``quantize4``: ``quantize FILE --bits 8|4 --calib NOISE.npz`` exits 0;
* ``ort8`` / ``ort4``: the QDQ file opens in a *default* ``onnxruntime.InferenceSession(path)``
  (all graph optimisations on) and runs; int8 must agree with the fp32 file run the same way,
  max |Δ| <= 5 % of the fp32 output range (int4 only has to open and run: its error on a random
  network says nothing, the figure is reported);
* ``ref8``: the int8 QDQ model is no further from fp32 than onnxruntime's own int8 quantizer
  (``tools/ort_reference.py``: ``quantize_static``, QDQ, per-channel, MinMax, on the same
  calibration images) plus 1 point of the output range, or within the 5 % of ``ort8``. It tells
  the product's error apart from what int8 PTQ of the net costs anyway;
* ``run``: ``run FILE --calib NOISE.npz`` on the simulator exits 0 (``--eval-images`` and
  ``--repeats`` small, ``--num 4`` calibration images);
* ``deploy``: the integer deployment agrees with the QDQ model, from ``deploy.json``:
  KL(QDQ || deployed) <= 1 % of KL(fp32 || deployed) (or <= 1e-7 absolute), or no more than
  onnxruntime's two executions of the same ``quantized.onnx`` disagree with each other
  (KL(default session || session without QDQ fusion) on the same images: the floor of
  "agrees with the QDQ model"). The integer cores compute exactly; a float evaluation of the
  QDQ file lands on the other side of a rounding boundary now and then (1 code in ~1e5 on a
  random MobileNetV2 at 64 px), and on a random-weight net that one code spreads to hundreds
  within three blocks (docs/corpus_failures.md). On random-weight
  networks the logits are nearly tied, so top-1 agreement is a coin toss at every rounding
  difference; KL is quadratic in the logit difference for small differences, so 1 % of the
  quantization error's KL means the deployment's departure from the QDQ model is about a tenth of
  the quantization error in logit terms.

The calibration images are seeded standard-normal noise of the file's input shape.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ort_reference import ort_quantize_static   # tools/, next to this file

STAGES = ("inspect", "quantize8", "quantize4", "ort8", "ref8", "ort4", "run", "deploy")
INT8_MAX_REL = 0.05          # int8 QDQ vs fp32: max |Δ| / fp32 output range
DEPLOY_KL_RATIO = 0.01       # KL(QDQ || deployed) / KL(fp32 || deployed)
DEPLOY_KL_ABS = 1e-7
REF8_MARGIN = 0.01           # ref8: our int8 max |Δ| may exceed onnxruntime's quantizer's by this
CALIB_IMAGES = 16
COMPARE_IMAGES = 8
RUN_IMAGES = 4               # calibration images the run uses (--num): sensitivity is a pass per layer
EVAL_IMAGES = 4
REPEATS = 1


@dataclass
class Stage:
    """One stage's outcome: ok (True/False; None when not reached), one-line reason, seconds."""

    ok: bool | None = None
    reason: str = "not reached"
    seconds: float = 0.0


@dataclass
class Result:
    """Every stage of one file, plus the figures measured on the way."""

    file: str
    stages: dict = field(default_factory=lambda: {s: Stage() for s in STAGES})
    figures: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"file": self.file, "stages": {k: asdict(v) for k, v in self.stages.items()},
                "figures": self.figures}


def _one_line(text: str, limit: int = 240) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``python -m ohq_pynq ARGV`` in this process: (exit code, stdout, stderr). A Python
    exception escaping the CLI is returned as exit code -1 with ``traceback: Type: message``."""
    from ohq_pynq.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001 -- a traceback reaching the user is a finding
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return -1, out.getvalue(), f"traceback: {type(e).__name__}: {first}"
    return int(rc or 0), out.getvalue(), err.getvalue()


def input_shape(path: Path) -> tuple[str, list]:
    """Name and dims of the graph's (first non-initializer) input; symbolic dims as strings."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims


def noise_images(chw: tuple[int, int, int], n: int = CALIB_IMAGES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *chw)).astype(np.float32)


def _ort_outputs(path: Path, x: np.ndarray, fixed_batch: int | None) -> np.ndarray:
    """First output of a default onnxruntime session, image by image when the batch is fixed."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    if fixed_batch:
        return np.concatenate([sess.run(None, {name: x[i: i + fixed_batch]})[0]
                               for i in range(0, len(x) - len(x) % fixed_batch, fixed_batch)])
    return sess.run(None, {name: x})[0]


def _max_rel(yq: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(fp32 output range, max |yq - y| as a fraction of it; absolute when the range is 0)."""
    rng = float(y.max() - y.min())
    diff = float(np.abs(yq - y).max())
    return rng, (diff / rng if rng > 0 else diff)


def check(path, work: Path, stages=STAGES) -> Result:
    """Run the stages on one ONNX file; artefacts go to ``work``."""
    path, work = Path(path), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    res = Result(str(path))
    st = res.stages
    _, dims = input_shape(path)
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        st["inspect"] = Stage(False, f"input is not N x C x H x W with static C, H, W: {dims}")
        return res
    chw = tuple(dims[1:])
    fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    calib = work / "calib.npz"
    x = noise_images(chw)
    np.savez(calib, x=x)
    res.figures["input"] = dims

    def timed(name, fn):
        t0 = time.time()
        try:
            st[name] = fn()
        except Exception as e:  # noqa: BLE001 -- the checker itself must not die on one file
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            st[name] = Stage(False, f"{type(e).__name__}: {first}"[:240])
        st[name].seconds = round(time.time() - t0, 2)
        return st[name].ok

    def inspect():
        rc, out, err = cli(["inspect", str(path), "--json"])
        if rc != 0:
            return Stage(False, _one_line(err or out))
        layers = json.loads(out)
        layers = layers.get("layers", layers) if isinstance(layers, dict) else layers
        res.figures["layers"] = len(layers)
        return Stage(len(layers) > 0, f"{len(layers)} quantizable layers")

    def quantize(bits):
        def fn():
            q = work / f"q{bits}.onnx"
            rc, out, err = cli(["quantize", str(path), "--bits", str(bits), "--calib", str(calib),
                                "--out", str(q)])
            if rc != 0:
                return Stage(False, _one_line(err or out))
            return Stage(q.is_file(), f"wrote {q.name} ({q.stat().st_size / 1e6:.1f} MB)" if q.is_file()
                         else "exit 0 but no file")
        return fn

    fp32 = {}

    def ort_check(bits):
        def fn():
            xs = x[:COMPARE_IMAGES]
            if "y" not in fp32:
                fp32["y"] = _ort_outputs(path, xs, fixed_batch)
            try:
                yq = _ort_outputs(work / f"q{bits}.onnx", xs, fixed_batch)
            except Exception as e:  # noqa: BLE001
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                return Stage(False, f"default onnxruntime session: {type(e).__name__}: {first}"[:240])
            y = fp32["y"]
            if yq.shape != y.shape:
                return Stage(False, f"output shape {list(yq.shape)} != fp32 {list(y.shape)}")
            if not np.all(np.isfinite(yq)):
                return Stage(False, "non-finite outputs")
            rng, rel = _max_rel(yq, y)
            top1 = float(np.mean(yq.reshape(len(yq), -1).argmax(-1) == y.reshape(len(y), -1).argmax(-1)))
            res.figures[f"int{bits}_max_rel"] = rel
            res.figures[f"int{bits}_top1_vs_fp32"] = top1
            msg = (f"max |Δ| {100 * rel:.2f} % of the fp32 range ({rng:.3g}), top-1 vs fp32 "
                   f"{100 * top1:.0f} % on {len(xs)} images")
            if rng == 0:
                msg = f"fp32 output constant on noise, max |Δ| {rel:.3g} absolute"
            if bits == 8:
                return Stage(rel <= INT8_MAX_REL, msg + (f" > {100 * INT8_MAX_REL:.0f} %" if rel > INT8_MAX_REL else ""))
            return Stage(True, "opens and runs; " + msg)
        return fn

    def ref8():
        if "int8_max_rel" not in res.figures:
            return Stage(None, "not reached: ort8 ran no comparison")
        ours = res.figures["int8_max_rel"]
        xs = x[:COMPARE_IMAGES]
        y = fp32["y"]
        try:
            yr = _ort_outputs(ort_quantize_static(path, x, work / "ortq"), xs, fixed_batch)
        except Exception as e:  # noqa: BLE001 -- the yardstick failing is reported, not ours
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return Stage(ours <= INT8_MAX_REL,
                         f"onnxruntime's quantizer failed: {type(e).__name__}: {first}"[:240])
        _, ref = _max_rel(yr, y)
        res.figures["int8_ortq_max_rel"] = ref
        ok = ours <= max(INT8_MAX_REL, ref + REF8_MARGIN)
        return Stage(ok, f"max |Δ| {100 * ours:.2f} % vs onnxruntime quantize_static {100 * ref:.2f} % "
                         f"of the fp32 range" + ("" if ok else f" (+{100 * REF8_MARGIN:.0f} pt allowed)"))

    run_dir = work / "run"

    def run():
        rc, out, err = cli(["run", str(path), "--calib", str(calib), "--out", str(run_dir),
                            "--num", str(RUN_IMAGES), "--eval-images", str(EVAL_IMAGES), "--repeats", str(REPEATS), "--json"])
        if rc != 0:
            return Stage(False, _one_line(err or out))
        s = json.loads(out)
        n4 = sum(1 for r in s["layers"] if r["bits"] == 4)
        res.figures["run_layers_int4"] = n4
        res.figures["run_layers"] = len(s["layers"])
        res.figures["latency_vs_int8"] = (s["totals"].get("vs_all_int8") or {}).get("latency")
        return Stage(True, f"{n4}/{len(s['layers'])} layers at 4 bits, latency "
                           f"{res.figures['latency_vs_int8'] or float('nan'):.3f} of all-int8")

    def deploy():
        d = json.loads((run_dir / "deploy.json").read_text())
        kl_q = float(d["verify"]["kl_vs_qdq"])
        kl_f = float(d["vs_fp32"]["kl"])
        top1 = float(d["verify"]["top1_agreement_vs_qdq"])
        floor = qdq_floor(run_dir / "quantized.onnx", x[:EVAL_IMAGES])
        res.figures.update(deploy_kl_vs_qdq=kl_q, deploy_kl_vs_fp32=kl_f, deploy_top1_vs_qdq=top1,
                           deploy_kl_floor=floor)
        ratio_ok = kl_q <= DEPLOY_KL_ABS or kl_q <= DEPLOY_KL_RATIO * kl_f
        res.figures["deploy_ratio_ok"] = ratio_ok
        ok = ratio_ok or kl_q <= floor
        ratio = kl_q / kl_f if kl_f > 0 else float("inf") if kl_q > 0 else 0.0
        return Stage(ok, f"KL vs QDQ {kl_q:.3g} = {100 * ratio:.3g} % of KL vs fp32 {kl_f:.3g}"
                         f"{'' if ratio_ok else f' > {100 * DEPLOY_KL_RATIO:.0f} %'}; onnxruntime's two "
                         f"executions of the file differ by KL {floor:.3g}; top-1 vs QDQ "
                         f"{100 * top1:.0f} % on {d['verify']['images']} images")

    def qdq_floor(qdq: Path, xs: np.ndarray) -> float:
        from ohq_pynq.quant import kl_divergence, predict

        # run's own QDQ reference: the project's runner (onnxruntime, QDQ fusion off)
        return kl_divergence(predict(str(qdq), xs), _ort_outputs(qdq, xs, fixed_batch))

    plan = [("inspect", inspect, ()), ("quantize8", quantize(8), ("inspect",)),
            ("quantize4", quantize(4), ("inspect",)), ("ort8", ort_check(8), ("quantize8",)),
            ("ref8", ref8, ("quantize8",)),
            ("ort4", ort_check(4), ("quantize4",)), ("run", run, ("inspect",)), ("deploy", deploy, ("run",))]
    for name, fn, needs in plan:
        if name not in stages:
            continue
        blocked = [n for n in needs if st[n].ok is not True]
        if blocked:
            st[name] = Stage(None, f"not reached: {blocked[0]} failed")
            continue
        timed(name, fn)
    return res
