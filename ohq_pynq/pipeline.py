"""The OHQ pipeline: distil → profile (OQA) → sensitivity (MQE) → solve (ILP) → deploy → verify.

``run(Settings(...))`` does the whole job and returns the run summary (also written as
``summary.json``). Every stage writes its artefact into ``settings.out`` and records a key of its
inputs in ``state.json``; a rerun with the same inputs reuses the artefact instead of recomputing
it (``force=True`` redoes everything). OQA additionally keeps a per-measurement cache, so a killed
profiling run resumes where it stopped.

Artefacts: ``distilled.npz`` (unless calibration images are given), ``profile.json``,
``sensitivity.json``, ``config.json``, ``search.json`` (the ILP candidates re-ranked by their
measured KL, and the random configurations of ``compare_random``), ``pareto.json`` + ``pareto.png``, ``quantized.onnx``,
``deploy.json``, ``summary.json``, ``report.html`` (+ its PNG plots).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import candidates as search_candidates, distill, ilp, mqe, oqa, pareto
from .errors import ConfigError, DataError
from .fileio import atomic_write, file_sha256, json_sha256, read_json, write_json
from .quant import SCHEME as QUANT_SCHEME
from .runtime import release_memory

STATE_SCHEMA = 1
SUMMARY_SCHEMA = 1
# The latency budget a run uses unless told otherwise (fraction of all-int8). Unlike a budget the
# user chose, it never fails: where it is infeasible the smallest feasible latency is used.
DEFAULT_LATENCY_BUDGET = "0.75"


@dataclass
class Settings:
    """Everything a run depends on (units: budgets as ``Budget.parse`` strings). Defaults are the
    stage modules' own (``distill.DEFAULT_NUM``, ``ilp.DEFAULT_BETA``, ...); the ``run`` command
    prints them from here."""

    model: str | None = None            # ONNX path; None = the bundled reference model
    out: str = "ohq-run"                # artefact folder
    backend: str = "sim"                # "sim" or "pynq"
    board: str | None = None            # board profile; None = backend default / detected
    overlay: str | None = None          # pynq: bitstream path (default overlays/<board>/ohq.bit)
    overheads: bool = True              # sim: model what a board adds around the cores (DMA, cache,
                                        # registers, polling, the driver's and the ARM's numpy work)
    arm_time: str = "measured"          # sim: time the driver's numpy work on this CPU ("off": not)
    calib: str | None = None            # calibration images instead of distilled data
    eval_data: str | None = None        # images (+labels) for the final fidelity check
    input_shape: str | None = None
    num_images: int = distill.DEFAULT_NUM   # distilled images
    distill_iters: int | None = None    # None: ohq_pynq.distill default
    distill_resolution: int | None = -1  # -1: ohq_pynq.distill default; None: full resolution
    latency_budget: str | None = DEFAULT_LATENCY_BUDGET
    latency_budget_given: bool = False  # True: the user chose it, so an infeasible one is an error
    size_budget: str | None = None
    energy_budget: str | None = None
    beta: float = ilp.DEFAULT_BETA
    gamma: float = ilp.DEFAULT_GAMMA
    hw_metric: str = ilp.DEFAULT_HW_METRIC
    candidates: int = search_candidates.DEFAULT_CANDIDATES          # ILP solutions re-ranked by measured KL
    compare_random: int = search_candidates.DEFAULT_COMPARE_RANDOM  # random configs measured for the report
    estimator: str = mqe.DEFAULT_ESTIMATOR
    perturbation: str = mqe.DEFAULT_PERTURBATION   # MQE: "rounding" (int4 rounding) or "mask"
    alpha: float | str = mqe.DEFAULT_ALPHA         # MQE mask fraction (perturbation "mask"), or "matched"
    repeats: int = oqa.DEFAULT_REPEATS
    pareto_points: int = pareto.DEFAULT_POINTS
    eval_images: int = 500              # images run through the integer deployment
    seed: int = 0
    executor: str = "auto"              # float/QDQ executor: auto, numpy, onnxruntime
    force: bool = False
    progress: bool = False


class _Stages:
    """Stage bookkeeping: input keys in ``state.json``, reuse when key and outputs match."""

    def __init__(self, out: Path, force: bool, log: Callable[[str], None]):
        self.out = out
        self.force = force
        self.log = log
        self.path = out / "state.json"
        self.state = {"schema": STATE_SCHEMA, "stages": {}}
        if self.path.exists():
            try:
                loaded = read_json(self.path, "run state")
                if loaded.get("schema") == STATE_SCHEMA:
                    self.state = loaded
            except ConfigError:
                self.log(f"state.json in {out} is unreadable; recomputing every stage")
        self.timing: dict[str, dict] = {}

    def run(self, name: str, key_obj, outputs: list[str], compute: Callable[[], str]) -> bool:
        """Run ``compute`` unless stage ``name`` already ran with the same inputs; True if it ran.
        Memory the stage freed is returned to the OS before the next one starts."""
        key = json_sha256(key_obj)
        rec = self.state["stages"].get(name)
        t0, c0 = time.perf_counter(), time.process_time()
        if (not self.force and rec and rec.get("key") == key
                and all((self.out / o).exists() for o in outputs)):
            self.log(f"{name}: reused {', '.join(outputs)}")
            self.timing[name] = {"seconds": 0.0, "cpu_seconds": 0.0, "reused": True}
            return False
        note = compute()
        release_memory()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.state["stages"][name] = {"key": key, "outputs": outputs, "seconds": round(seconds, 3)}
        write_json(self.path, self.state)
        # cpu_seconds: CPU time of this process in all its threads (s); on a shared machine the
        # wall seconds grow with the load, the CPU seconds much less.
        self.timing[name] = {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "reused": False}
        self.log(f"{name}: {note} ({seconds:.1f} s)")
        return True


def _default_model() -> str:
    from .models import DEFAULT_MODEL, model_path
    return str(model_path(DEFAULT_MODEL))


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    """Run the whole pipeline; returns the summary dict (see :mod:`ohq_pynq.report`)."""
    from .graph import load_network
    from .hw.accelerator import make_accelerator

    s = settings
    _check_settings(s)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    model = s.model or _default_model()
    bundled = s.model is None
    stages = _Stages(out, s.force, log)
    original = load_network(model, s.input_shape)           # one clear ModelError before any work
    model_hash = file_sha256(model)
    # The hardware next: a missing board or bitstream must fail before minutes of distillation.
    options = {"bitstream": s.overlay} if s.backend == "pynq" and s.overlay else {}
    if s.backend == "sim":
        options = {"arm_time": s.arm_time} if s.overheads else {"overheads": False}
    accelerator = make_accelerator(s.backend, board=s.board, **options)
    try:
        info = accelerator.describe()

        # 1. data: distilled (BN statistics) or the user's calibration images -----------------
        data_path = _data_stage(s, stages, model, model_hash, original, out)
        data_hash = _data_key(data_path)
        del original              # the BN-kept graph is not needed past distillation
        release_memory()

        # 2. hardware profile (OQA) -----------------------------------------------------------

        def profile():
            from .oqa import default_cache_path, profile_network
            prof = profile_network(model, accelerator, repeats=s.repeats, cache=default_cache_path(out / "profile.json"),
                                   out=out / "profile.json", input_shape=s.input_shape, seed=s.seed,
                                   progress=s.progress)
            oqa = prof.metadata["oqa"]
            return (f"{oqa['measured']} layer x bits measured, {oqa['cached']} from cache "
                    f"on {info.backend}/{info.board}")

        stages.run("profile", {"model": model_hash, "hw": info.hardware_id, "bitstream": info.bitstream_sha256,
                               "repeats": s.repeats, "seed": s.seed, "input_shape": s.input_shape},
                   ["profile.json"], profile)

        # 3. sensitivity (MQE) ----------------------------------------------------------------
        # The BN-folded network, its data and int8 ranges are built only if a stage needs them.
        lazy: dict = {}

        def prepared():
            if not lazy:
                from .quant import calibrate, prepare
                net = prepare(model, s.input_shape)
                x, _ = _load(data_path, net)
                lazy.update(net=net, x=x, ranges=calibrate(net, x, executor=s.executor))
            return lazy["net"], lazy["x"], lazy["ranges"]

        def sensitivity():
            from .mqe import sensitivity as measure
            from .sensitivity import save_sensitivity
            net, x, ranges = prepared()
            res = measure(net, x, ranges, estimator=s.estimator, perturbation=s.perturbation,
                          alpha=s.alpha, seed=s.seed, executor=s.executor, progress=s.progress)
            res["model"] = str(model)
            save_sensitivity(out / "sensitivity.json", res)
            top = max(res["layers"], key=res["layers"].get)
            return f"{s.estimator} on {len(x)} images, most sensitive {top}"

        stages.run("sensitivity", {"model": model_hash, "data": data_hash, "estimator": s.estimator,
                                   "perturbation": s.perturbation, "alpha": s.alpha, "seed": s.seed,
                                   "executor": s.executor, "quant": QUANT_SCHEME},
                   ["sensitivity.json"], sensitivity)

        # 4. bit allocation (ILP) + Pareto frontier ------------------------------------------
        def solve():
            return _solve(s, out, log, prepared)

        stages.run("solve", {"sens": file_sha256(out / "sensitivity.json"),
                             "profile": file_sha256(out / "profile.json"),
                             "budgets": [s.latency_budget, s.size_budget, s.energy_budget],
                             "latency_budget_given": s.latency_budget_given,
                             "beta": s.beta, "gamma": s.gamma, "hw_metric": s.hw_metric,
                             "points": s.pareto_points, "candidates": s.candidates,
                             "compare_random": s.compare_random, "model": model_hash, "data": data_hash,
                             "seed": s.seed, "executor": s.executor, "quant": QUANT_SCHEME},
                   ["config.json", "search.json", "pareto.json", "pareto.png"], solve)

        # 5. deploy on the cores and verify --------------------------------------------------
        eval_path = s.eval_data or (str(_bundled_test()) if bundled else str(data_path))

        def deploy():
            net, _, ranges = prepared()
            return _deploy(s, out, net, ranges, accelerator, eval_path)

        stages.run("deploy", {"model": model_hash, "config": file_sha256(out / "config.json"),
                              "data": data_hash, "eval": _data_key(eval_path), "hw": info.hardware_id,
                              "bitstream": info.bitstream_sha256, "n": s.eval_images,
                              "executor": s.executor, "quant": QUANT_SCHEME},
                   ["quantized.onnx", "deploy.json"], deploy)
    finally:
        accelerator.close()

    # 6. summary + report ----------------------------------------------------------------------
    summary = _summary(s, out, model, info, stages.timing, data_path)
    write_json(out / "summary.json", summary)
    from .report import render
    render(summary, out)
    log(f"report: {out / 'report.html'}")
    return summary


def _check_settings(s: Settings) -> None:
    if s.num_images < 1:
        raise ConfigError(f"--num must be at least 1, not {s.num_images}")
    if s.eval_images < 1:
        raise ConfigError(f"--eval-images must be at least 1, not {s.eval_images}")
    if isinstance(s.candidates, bool) or not isinstance(s.candidates, int) or s.candidates < 1:
        raise ConfigError(f"--candidates must be an integer >= 1, not {s.candidates!r}")
    if isinstance(s.compare_random, bool) or not isinstance(s.compare_random, int) or s.compare_random < 0:
        raise ConfigError(f"--compare-random must be an integer >= 0, not {s.compare_random!r}")
    for name in ("beta", "gamma"):
        v = getattr(s, name)
        if not (v == v) or v < 0:
            raise ConfigError(f"--{name} must be a number >= 0, not {v}")
    if s.backend not in ("sim", "pynq"):
        raise ConfigError(f"--backend must be sim or pynq, not {s.backend!r}")
    from .budgets import Budget        # refuse a malformed budget now, not after profiling
    for metric in ("latency", "size", "energy"):
        text = getattr(s, f"{metric}_budget")
        if text is not None and not 0 < Budget.parse(text, metric).value < float("inf"):
            raise ConfigError(f"--{metric}-budget {text!r} must be a finite number > 0")


def _data_key(path) -> str:
    """Content key of a data set: SHA-256 of an .npz, or of a folder's file names, sizes and
    modification times (re-hashing thousands of images on every run would cost more than it saves)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    entries = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in path.rglob("*") if p.is_file())
    return json_sha256(entries)


def _bundled_test() -> Path:
    from .models import split_path
    return split_path("test")


def _load(path, net):
    from .data import load_data
    return load_data(path, net.input_shape)


def _data_stage(s: Settings, stages: _Stages, model: str, model_hash: str, original, out: Path) -> Path:
    if s.calib:
        from .data import load_data, save_data
        if not Path(s.calib).exists():
            raise DataError(f"calibration data not found: {s.calib}")
        calib_hash = _data_key(s.calib)

        def copy():
            x, y = load_data(s.calib, original.input_shape, limit=max(s.num_images, 1))
            save_data(out / "calibration.npz", x, y)
            return f"{len(x)} calibration images from {s.calib}"

        stages.run("data", {"calib": calib_hash, "num": s.num_images, "shape": original.input_shape},
                   ["calibration.npz"], copy)
        return out / "calibration.npz"

    iters = distill.DEFAULT_ITERS if s.distill_iters is None else s.distill_iters
    resolution = distill.DEFAULT_RESOLUTION if s.distill_resolution == -1 else s.distill_resolution

    def distil():
        bar = None
        if s.progress:
            from tqdm import tqdm
            steps = -(-s.num_images // distill.DEFAULT_MICRO_BATCH) * (iters + distill.DEFAULT_REFINE)
            bar = tqdm(total=steps, desc="distill", unit="step", leave=False)

        def step(loss):
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3g}")

        from .engine import Engine
        # The engine holds the weights (as arrays) from here on: the proto's copy is dropped,
        # so distillation keeps one copy of them (``original`` is not used after this stage).
        engine = Engine(original.model, keep_model=False)
        del original.model.graph.initializer[:]
        try:
            res = distill.distill(None, num=s.num_images, iters=iters, resolution=resolution,
                                  seed=s.seed, on_step=step, engine=engine)
        finally:
            if bar is not None:
                bar.close()
        from .data import save_data
        save_data(out / "distilled.npz", res.x, loss_initial=np.float64(res.loss_initial),
                  loss_final=np.float64(res.loss_final))
        return (f"{s.num_images} images, BN loss {res.loss_initial:.3g} -> {res.loss_final:.3g} "
                f"at {res.resolution} px")

    stages.run("distill", {"model": model_hash, "num": s.num_images, "iters": iters,
                           "resolution": resolution, "seed": s.seed, "shape": s.input_shape},
               ["distilled.npz"], distil)
    return out / "distilled.npz"


def _solve(s: Settings, out: Path, log: Callable[[str], None] = print, prepared=None) -> str:
    """ILP top-``s.candidates`` → re-ranked by their measured KL on the data (``prepared()`` gives
    network, images, int8 ranges) → ``config.json`` + ``search.json``; Pareto frontier; optional
    random comparison."""
    import warnings

    from .bitconfig import save_config
    from .candidates import RERANK_METRIC, ConfigScorer, compare_random, rerank
    from .errors import InfeasibleError
    from .ilp import budget_limits, make_problem, solve_ranked
    from .pareto import pareto_frontier, plot_frontier
    from .profile import load_profile

    profile = load_profile(out / "profile.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a placeholder profile is impossible here (OQA wrote it)
        problem = make_problem(out / "sensitivity.json", profile)
    budgets = {"latency": s.latency_budget, "size": s.size_budget, "energy": s.energy_budget}
    relaxed = None
    objective = {"beta": s.beta, "gamma": s.gamma, "hw_metric": s.hw_metric}
    try:
        ranked = solve_ranked(problem, s.candidates, **objective, **budgets)
    except InfeasibleError as err:
        smallest = getattr(err, "minimums", {}).get("latency")
        if (s.latency_budget_given or s.latency_budget != DEFAULT_LATENCY_BUDGET or smallest is None
                or not smallest["relative"] or not smallest["others_kept"]):
            raise
        # The default budget is a suggestion: use the smallest feasible latency instead.
        stated = smallest["minimum_stated"]
        budgets["latency"] = f"{stated:.4g}" if stated <= 1 else f"{stated:.4g}x"
        ranked = solve_ranked(problem, s.candidates, **objective, **budgets)
        relaxed = {"requested": s.latency_budget, "used": budgets["latency"], "reason": str(err)}
        log(f"solve: the default latency budget {s.latency_budget} of all-int8 is infeasible on this "
            f"hardware; using the smallest feasible, {budgets['latency']} of all-int8")
    search: dict = {"schema": 1, "rerank_metric": RERANK_METRIC, "candidates_requested": s.candidates,
                    "objective_form": ranked[0].objective_form()}
    scorer = None
    if len(ranked) > 1 or s.compare_random:
        net, x, ranges = prepared()
        scorer = ConfigScorer(net, x, ranges, executor=s.executor)
        search["images"] = int(len(x))
    if len(ranked) > 1:
        alloc, rows = rerank(ranked, scorer, log)
    else:
        alloc, rows = ranked[0], [{"rank": 1, "sensitivity": ranked[0].totals.sensitivity,
                                   "latency_ratio": ranked[0].ratio("latency"), "chosen": True,
                                   "bits": dict(ranked[0].bits)}]
    search["candidates"] = rows
    search["chosen_rank"] = alloc.rank
    lat_budget = alloc.budgets.get("latency")
    search["latency_budget_ratio"] = (None if lat_budget is None
                                      else lat_budget["absolute"] / alloc.reference.seconds)
    if s.compare_random:
        limits, _ = budget_limits(problem, budgets)
        search["random"] = compare_random(problem, limits, s.compare_random, scorer, alloc.bits,
                                          seed=s.seed, log=log)
    brief = [{k: v for k, v in r.items() if k != "bits"} for r in rows]
    save_config(out / "config.json", alloc.bits, **alloc.metadata(),
                search={"rerank_metric": RERANK_METRIC if len(rows) > 1 else None, "candidates": brief,
                        "chosen_rank": alloc.rank},
                **({"latency_budget_relaxed": relaxed} if relaxed else {}))
    write_json(out / "search.json", search)
    sweep = "energy" if s.hw_metric == "energy" else "latency"
    others = {k: v for k, v in budgets.items() if k != sweep}
    frontier = pareto_frontier(problem, sweep, points=s.pareto_points, **others)
    write_json(out / "pareto.json", frontier.to_json())
    plot_frontier(frontier, out / "pareto.png", chosen=alloc)
    n4 = sum(1 for b in alloc.bits.values() if b == min(problem.bits))
    ratio = alloc.ratio("latency")
    note = (f"ILP candidate {alloc.rank} of {len(rows)} by KL" if len(rows) > 1 else "the ILP optimum")
    if "random" in search and search["random"]["beats_kl"] is not None:
        note += f", KL below {100 * search['random']['beats_kl']:.0f} % of {search['random']['n']} random configs"
    return (f"{n4}/{len(alloc.bits)} layers at {min(problem.bits)} bits, latency "
            f"{ratio:.3f} of all-int8 ({note}), {len(frontier.points)} Pareto points")


def _deploy(s: Settings, out: Path, net, ranges, accelerator, eval_path) -> str:
    from .bitconfig import load_config
    from .deploy import Deployment, verify
    from .quant import compare, predict, quantize

    bits = load_config(out / "config.json")
    q = quantize(net, bits, ranges)
    model = q.to_onnx()
    atomic_write(out / "quantized.onnx", lambda f: f.write(model.SerializeToString()))
    xe, ye = _load(eval_path, net)
    xe, ye = xe[: s.eval_images], (None if ye is None else ye[: s.eval_images])
    dep = Deployment(q, accelerator)
    logits, stats = dep.run(xe, progress=s.progress)
    del dep, q                   # one model at a time in memory: the checks below build their own
    qdq = predict(model, xe, executor=s.executor)
    del model
    fp32 = predict(net.model, xe, executor=s.executor)
    int8 = predict(quantize(net, 8, ranges).to_onnx(), xe, executor=s.executor)
    result = {
        "schema": 1,
        "eval_data": str(eval_path),
        "verify": verify(logits, qdq, ye),
        "vs_fp32": compare(logits, ye, fp32),
        "int8_vs_fp32": compare(int8, ye, fp32),
        "fp32": compare(fp32, ye),
        "measured": stats.per_image(),
    }
    write_json(out / "deploy.json", result)
    return (f"{len(xe)} images on the cores, top-1 agreement with the QDQ model "
            f"{100 * result['verify']['top1_agreement_vs_qdq']:.2f} %")


def _summary(s: Settings, out: Path, model: str, info, timing: dict, data_path: Path) -> dict:
    from .profile import load_profile

    config = read_json(out / "config.json", "config")
    sens = read_json(out / "sensitivity.json", "sensitivity")["layers"]
    profile = load_profile(out / "profile.json")
    dep = read_json(out / "deploy.json", "deployment result")
    measured = dep["measured"]["layers"]
    arm_edges = dep["measured"].get("arm_edges", {})
    layers = []
    for name, bits in config["layers"].items():
        costs = profile.layers[name]
        layers.append({
            "name": name, "bits": bits, "sensitivity": sens.get(name),
            "seconds": {str(b): c.seconds for b, c in costs.items()},
            "joules": {str(b): c.joules for b, c in costs.items()},
            "weight_bytes": costs[bits].weight_bytes,
            "predicted_seconds": costs[bits].seconds,
            "measured_seconds": measured[name]["seconds"],
            "predicted_core_seconds": costs[bits].core_seconds,
            "predicted_overheads": costs[bits].extra.get("overheads"),
            "measured_core_seconds": measured[name].get("core_seconds"),
            "arm_seconds": arm_edges.get(name),
            "predicted_joules": costs[bits].joules,
            "measured_joules": measured[name]["joules"],
        })
    from .closed_loop import explain, overhead_share
    end_to_end = dep["measured"].get("end_to_end_seconds", dep["measured"]["accelerator_seconds"])
    loop = explain(layers, end_to_end, arm_edges, dep["measured"].get("arm_ops", {}))
    loop["predicted_split"] = overhead_share(layers)

    def totals(key):
        t = config[key]
        return {"seconds": t["seconds"], "joules": t["joules"], "bytes": t["size_bytes"],
                "sensitivity": t["sensitivity"]}

    fidelity = {"top1_agreement_vs_fp32": dep["vs_fp32"].get("top1_agreement"),
                "kl": dep["vs_fp32"].get("kl"),
                "top1_agreement_vs_qdq": dep["verify"]["top1_agreement_vs_qdq"]}
    if "accuracy" in dep["vs_fp32"]:
        fidelity.update(accuracy=dep["vs_fp32"]["accuracy"], accuracy_fp32=dep["fp32"]["accuracy"],
                        accuracy_int8=dep["int8_vs_fp32"]["accuracy"])
    hw = {k: v for k, v in info.to_json().items() if k in ("board", "backend", "part", "fclk_hz",
                                                           "has_power", "hardware_id", "bitstream_sha256")}
    hw["cores"] = {b: {k: c[k] for k in ("pe", "simd") if k in c} for b, c in info.to_json()["cores"].items()}
    return {
        "schema": SUMMARY_SCHEMA,
        "model": str(model),
        "data": str(data_path),
        "settings": {k: v for k, v in asdict(s).items() if k not in ("progress",)},
        "hardware": hw,
        "stages": timing,
        "layers": layers,
        "totals": {"chosen": totals("predicted"), "int8": totals("all_int8"), "int4": totals("all_int4"),
                   "measured_seconds": end_to_end,
                   "measured_cores_seconds": dep["measured"]["accelerator_seconds"],
                   "measured_joules": dep["measured"]["joules"],
                   "vs_all_int8": config.get("vs_all_int8")},
        "fidelity": fidelity,
        "closed_loop": loop,
        "eval_images": dep["verify"]["images"],
        "latency_budget_relaxed": config.get("latency_budget_relaxed"),
        "search": _search_summary(out),
    }


def _search_summary(out: Path) -> dict | None:
    """search.json without the candidates' bits (the chosen bits are the layer rows)."""
    path = out / "search.json"
    if not path.is_file():
        return None
    search = read_json(path, "search result")
    search["candidates"] = [{k: v for k, v in r.items() if k != "bits"} for r in search.get("candidates", [])]
    return search
