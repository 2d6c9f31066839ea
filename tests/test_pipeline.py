"""ohq_pynq.pipeline: the whole job on the simulator, stage reuse, and clear errors."""
from __future__ import annotations

import json

import pytest

from ohq_pynq.errors import ConfigError, DataError, InfeasibleError
from ohq_pynq.models import model_path, split_path
from ohq_pynq.pipeline import Settings, run

# The bare cores (no board overheads): these tests are about stages, reuse and budgets.
FAST = dict(num_images=8, distill_iters=15, eval_images=60, pareto_points=8, board="zcu104",
            overheads=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    summary = run(Settings(out=str(out), **FAST), log=lines.append)
    return out, summary, lines


def test_artefacts_and_summary(first_run):
    out, summary, lines = first_run
    for name in ("distilled.npz", "profile.json", "sensitivity.json", "config.json", "pareto.json",
                 "pareto.png", "quantized.onnx", "deploy.json", "summary.json", "report.html", "state.json"):
        assert (out / name).is_file(), name
    stages = [l for l in lines if not l.startswith("solve: candidate ")]
    assert [l.split(":")[0] for l in stages] == ["distill", "profile", "sensitivity", "solve", "deploy", "report"]
    # one progress line per ILP candidate, each measured on the distilled data
    assert len([l for l in lines if l.startswith("solve: candidate ")]) == Settings().candidates
    t = summary["totals"]
    # the default latency budget (0.75 of all-int8) is met, and mixed lies between the uniform widths
    assert t["chosen"]["seconds"] <= 0.75 * t["int8"]["seconds"] * (1 + 1e-9)
    assert t["int4"]["seconds"] <= t["chosen"]["seconds"] < t["int8"]["seconds"]
    # closed loop: the deployment measures what the profile predicted (deterministic simulator)
    assert t["measured_seconds"] == pytest.approx(t["chosen"]["seconds"], rel=0.02)
    f = summary["fidelity"]
    assert f["top1_agreement_vs_qdq"] >= 0.99
    assert f["accuracy_fp32"] - f["accuracy"] < 0.05
    assert len(summary["layers"]) == 13 and {l["bits"] for l in summary["layers"]} == {4, 8}
    assert json.loads((out / "summary.json").read_text())["totals"] == summary["totals"]
    assert summary["hardware"]["board"] == "zcu104" and summary["hardware"]["has_power"]


def test_candidates_reranked_by_measured_kl(first_run):
    """The k best ILP solutions are run as quantized networks on the distilled data; the one of
    least KL vs fp32 is deployed, and every candidate is recorded with its KL."""
    out, summary, _ = first_run
    search = json.loads((out / "search.json").read_text())
    cands = search["candidates"]
    assert len(cands) == Settings().candidates and [c["rank"] for c in cands] == list(range(1, len(cands) + 1))
    assert len({tuple(sorted(c["bits"].items())) for c in cands}) == len(cands)       # distinct
    sens = [c["sensitivity"] for c in cands]
    assert sens == sorted(sens)                     # ILP order: ascending Σ S (the default objective)
    chosen = [c for c in cands if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["kl"] == min(c["kl"] for c in cands)
    assert chosen[0]["bits"] == {l["name"]: l["bits"] for l in summary["layers"]}
    assert all(c["latency_ratio"] <= 0.75 * (1 + 1e-9) for c in cands)
    config = json.loads((out / "config.json").read_text())
    assert config["search"]["chosen_rank"] == chosen[0]["rank"] == config["ilp_rank"]
    assert [c["kl"] for c in config["search"]["candidates"]] == [c["kl"] for c in cands]
    assert summary["search"]["chosen_rank"] == chosen[0]["rank"] and "random" not in summary["search"]
    assert config["objective_form"] == "min sensitivity, then latency"


def test_compare_random_in_the_report(first_run, tmp_path):
    out, summary, _ = first_run
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines: list[str] = []
    s = run(Settings(out=str(copy), **{**FAST, "compare_random": 6, "candidates": 2}), log=lines.append)
    rnd = s["search"]["random"]
    assert rnd["n"] == 6 and len(rnd["points"]) == 6
    assert all(p["latency_ratio"] <= 0.75 * (1 + 1e-9) for p in rnd["points"])
    assert rnd["beats_kl"] == sum(p["kl"] > rnd["chosen"]["kl"] for p in rnd["points"]) / 6
    page = (copy / "report.html").read_text()
    assert "random configurations at the same budget" in page and (copy / "random.png").is_file()
    assert any("random configuration 6/6" in l for l in lines)


def test_rerun_reuses_every_stage(first_run):
    out, summary, _ = first_run
    lines: list[str] = []
    again = run(Settings(out=str(out), **FAST), log=lines.append)
    assert all("reused" in l for l in lines[:5])
    assert again["layers"] == summary["layers"]
    assert all(v["reused"] for v in again["stages"].values())


def test_new_quantization_scheme_recomputes_what_depends_on_it(first_run, tmp_path, monkeypatch):
    """A run folder from an older release is resumed: distillation and the profile stay, the
    stages that used the quantizer's arithmetic run again."""
    out, _, _ = first_run
    import shutil

    from ohq_pynq import pipeline
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setattr(pipeline, "QUANT_SCHEME", pipeline.QUANT_SCHEME + 1)
    lines: list[str] = []
    s = run(Settings(out=str(copy), **FAST), log=lines.append)
    reused = {l.split(":")[0] for l in lines if "reused" in l}
    assert reused == {"distill", "profile"}
    assert not any(s["stages"][k]["reused"] for k in ("sensitivity", "solve", "deploy"))


def test_budget_change_resolves_without_remeasuring(first_run, tmp_path):
    out, _, _ = first_run
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines: list[str] = []
    s = run(Settings(out=str(copy), **{**FAST, "latency_budget": "0.7"}), log=lines.append)
    reused = {l.split(":")[0] for l in lines if "reused" in l}
    assert reused == {"distill", "profile", "sensitivity"}
    assert s["totals"]["chosen"]["seconds"] <= 0.7 * s["totals"]["int8"]["seconds"] * (1 + 1e-9)
    with pytest.raises(InfeasibleError, match="smallest feasible"):
        run(Settings(out=str(copy), **{**FAST, "latency_budget": "0.1"}), log=lambda m: None)


def test_infeasible_default_latency_budget_uses_the_smallest_feasible(first_run, tmp_path):
    """MobileNets: the int4 cores barely beat int8 on depthwise layers, so the default 0.75 of
    all-int8 can be infeasible. The default then gives way (one line, recorded); a budget the
    user chose still fails."""
    out, _, _ = first_run
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    prof = json.loads((copy / "profile.json").read_text())
    for costs in prof["layers"].values():            # int4 only 10 % faster than int8 everywhere
        for key in ("seconds", "cycles"):
            costs["4"][key] = 0.9 * costs["8"][key]
    (copy / "profile.json").write_text(json.dumps(prof))
    lines: list[str] = []
    s = run(Settings(out=str(copy), **FAST), log=lines.append)
    said = [l for l in lines if "default latency budget" in l]
    assert said == ["solve: the default latency budget 0.75 of all-int8 is infeasible on this hardware; "
                    "using the smallest feasible, 0.9 of all-int8"]
    config = json.loads((copy / "config.json").read_text())
    assert config["budgets"]["latency"]["value"] == 0.9
    assert config["latency_budget_relaxed"]["requested"] == "0.75"
    assert config["latency_budget_relaxed"]["used"] == "0.9"
    assert s["latency_budget_relaxed"]["used"] == "0.9"
    assert json.loads((copy / "summary.json").read_text())["latency_budget_relaxed"]["used"] == "0.9"
    assert s["totals"]["chosen"]["seconds"] <= 0.9 * s["totals"]["int8"]["seconds"] * (1 + 1e-9)
    assert all(l["bits"] == 4 for l in s["layers"])
    with pytest.raises(InfeasibleError, match=r"latency budget 0\.75 of all-int8 is infeasible; the smallest "
                                              r"feasible is 0\.9 of all-int8"):
        run(Settings(out=str(copy), **FAST, latency_budget_given=True), log=lambda m: None)


def test_cli_marks_a_chosen_latency_budget():
    from ohq_pynq.cli import build_parser
    from ohq_pynq.cli.run_cmd import settings_from_args
    s = settings_from_args(build_parser().parse_args(["run"]))
    assert s.latency_budget == "0.75" and not s.latency_budget_given
    s = settings_from_args(build_parser().parse_args(["run", "--latency-budget", "0.75"]))
    assert s.latency_budget == "0.75" and s.latency_budget_given
    s = settings_from_args(build_parser().parse_args(["run", "--no-latency-budget"]))
    assert s.latency_budget is None


def test_calibration_images_and_folded_model(tmp_path):
    with pytest.raises(DataError, match="--calib"):
        run(Settings(model=str(model_path("digits_resnet_folded")), out=str(tmp_path / "a"), **FAST),
            log=lambda m: None)
    s = run(Settings(model=str(model_path("digits_mbv3_folded")), calib=str(split_path("calib")),
                     out=str(tmp_path / "b"), **{**FAST, "num_images": 16, "latency_budget": "0.9"}),
            log=lambda m: None)
    assert (tmp_path / "b" / "calibration.npz").is_file() and not (tmp_path / "b" / "distilled.npz").exists()
    assert s["eval_images"] == 16 and "accuracy" in s["fidelity"]    # eval on the labelled calib data
    assert s["fidelity"]["top1_agreement_vs_qdq"] >= 0.99


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError):
        run(Settings(out=str(tmp_path), backend="gpu"), log=lambda m: None)
    with pytest.raises(ConfigError):
        run(Settings(out=str(tmp_path), beta=float("nan")), log=lambda m: None)


def test_runs_without_onnxruntime(tmp_path, monkeypatch):
    """armv7 boards (PYNQ-Z2) have no onnxruntime wheel: every stage must run on the numpy engine."""
    import sys
    monkeypatch.setitem(sys.modules, "onnxruntime", None)      # import onnxruntime -> ImportError
    monkeypatch.delenv("OHQ_PYNQ_EXECUTOR", raising=False)
    from ohq_pynq.runtime import resolve_executor
    assert resolve_executor("auto") == "numpy"
    s = run(Settings(out=str(tmp_path), **{**FAST, "board": "pynq-z2", "eval_images": 30}), log=lambda m: None)
    assert s["fidelity"]["top1_agreement_vs_qdq"] >= 0.99
    assert s["totals"]["chosen"]["joules"] is None and s["totals"]["measured_joules"] is None  # no rails


def test_missing_hardware_fails_before_distilling(tmp_path, monkeypatch):
    from ohq_pynq.errors import HardwareError
    monkeypatch.setenv("BOARD", "zcu104")
    with pytest.raises(HardwareError, match="no bitstream"):
        run(Settings(out=str(tmp_path), backend="pynq"), log=lambda m: None)
    assert not (tmp_path / "distilled.npz").exists()
