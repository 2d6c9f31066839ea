"""The command line: tables, JSON, and one ``error:`` line with exit code 2 for bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import build_small_cnn
from ohq_pynq.cli import COMMANDS, build_parser, main
from ohq_pynq.data import save_data


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(build_small_cnn(batchnorm=True), model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 1, 16, 16)).astype(np.float32)
    save_data(tmp_path / "calib.npz", x)
    save_data(tmp_path / "test.npz", x[:16], rng.integers(0, 10, 16))
    return tmp_path, model


def test_every_command_has_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_defaults_come_from_settings_and_the_stage_modules(capsys):
    """The run command's defaults are Settings' (so what --help prints is what a run uses), and
    the stage commands' are their modules' constants."""
    from dataclasses import asdict

    from ohq_pynq import distill, ilp, mqe, oqa, pareto, quant
    from ohq_pynq.cli.run_cmd import settings_from_args
    from ohq_pynq.pipeline import Settings

    parser = build_parser()
    run_settings = asdict(settings_from_args(parser.parse_args(["run"])))
    assert {k: v for k, v in run_settings.items() if k != "progress"} == \
        {k: v for k, v in asdict(Settings()).items() if k != "progress"}
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"distillation iterations (default {distill.DEFAULT_ITERS})" in help_text
    assert f"OQA repeats per layer x bits (default {oqa.DEFAULT_REPEATS})" in help_text
    solve = parser.parse_args(["solve", "--sensitivity", "s", "--profile", "p", "--out", "o"])
    assert (solve.beta, solve.gamma, solve.hw_metric, solve.pareto_points) == \
        (ilp.DEFAULT_BETA, ilp.DEFAULT_GAMMA, ilp.DEFAULT_HW_METRIC, pareto.DEFAULT_POINTS)
    sens = parser.parse_args(["sensitivity", "m", "--data", "d", "--out", "o"])
    assert (sens.estimator, sens.alpha) == (mqe.DEFAULT_ESTIMATOR, mqe.DEFAULT_ALPHA)
    q = parser.parse_args(["quantize", "m", "--bits", "8", "--calib", "d", "--out", "o"])
    assert (q.method, q.percentile) == (quant.DEFAULT_METHOD, quant.DEFAULT_PERCENTILE)
    prof = parser.parse_args(["profile", "m", "--out", "o"])
    assert (prof.repeats, prof.max_spread) == (oqa.DEFAULT_REPEATS, oqa.DEFAULT_MAX_SPREAD)


def test_inspect_table_and_json(files, capsys):
    _, model = files
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "Gemm" in out and "total:" in out
    assert main(["inspect", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [l["name"] for l in info["layers"]] == ["conv1", "dw", "pw", "se_fc", "fc"]


def test_quantize_then_evaluate(files, capsys):
    d, model = files
    q = d / "q.onnx"
    assert main(["quantize", str(model), "--bits", "8", "--calib", str(d / "calib.npz"), "--out", str(q)]) == 0
    assert "5 layers (5 at 8 bits)" in capsys.readouterr().out
    assert main(["evaluate", str(q), "--data", str(d / "test.npz"), "--reference", str(model), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 16 and r["top1_agreement"] >= 0.9 and 0 <= r["accuracy"] <= 1
    # per-layer config
    (d / "cfg.json").write_text(json.dumps({"layers": {"conv1": 8, "dw": 4, "pw": 4, "se_fc": 8, "fc": 8}}))
    assert main(["quantize", str(model), "--bits", str(d / "cfg.json"), "--calib", str(d / "calib.npz"),
                 "--out", str(d / "q2.onnx")]) == 0
    assert "2 at 4 bits" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["inspect", "{d}/missing.onnx"], "model file not found"),
    (["inspect", "{d}/calib.npz"], "not an ONNX model"),
    (["quantize", "{m}", "--bits", "3", "--calib", "{d}/calib.npz", "--out", "{d}/q.onnx"], "not supported"),
    (["quantize", "{m}", "--bits", "8", "--calib", "{d}/nothing", "--out", "{d}/q.onnx"], "data not found"),
    (["evaluate", "{m}", "--data", "{d}/calib.npz"], "no labels"),
])
def test_user_errors_are_one_line(files, capsys, argv, match):
    d, model = files
    argv = [a.format(d=d, m=model) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and err.count("\n") == 1
    assert not (d / "q.onnx").exists()


def test_module_entry_point_exit_code(files):
    d, _ = files
    p = subprocess.run([sys.executable, "-m", "ohq_pynq", "inspect", str(d / "nope.onnx")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_stage_commands_chain(files, capsys):
    """profile -> sensitivity -> solve (conservative latency) -> quantize with the config."""
    d, model = files
    assert main(["profile", str(model), "--board", "zcu104", "--max-spread", "0.02", "--repeats", "3", "--max-repeats", "6",
                 "--out", str(d / "profile.json")]) == 0
    assert main(["sensitivity", str(model), "--data", str(d / "calib.npz"), "--out", str(d / "s.json")]) == 0
    assert json.loads((d / "s.json").read_text())["perturbation"] == "rounding"
    assert main(["sensitivity", str(model), "--data", str(d / "calib.npz"), "--out", str(d / "paper.json"),
                 "--perturbation", "mask", "--weights-only", "--alpha", "matched"]) == 0
    paper = json.loads((d / "paper.json").read_text())
    assert (paper["perturbation"], paper["alpha"], paper["activations"]) == ("mask", "matched", False)
    assert main(["solve", "--sensitivity", str(d / "s.json"), "--profile", str(d / "profile.json"),
                 "--size-budget", "0.8", "--latency-estimate", "p90", "--out", str(d / "config.json")]) == 0
    assert json.loads((d / "config.json").read_text())["layers"].keys() == {"conv1", "dw", "pw", "se_fc", "fc"}
    assert main(["solve", "--sensitivity", str(d / "s.json"), "--profile", str(d / "profile.json"),
                 "--size-budget", "0.8", "--rerank", str(model), "--data", str(d / "calib.npz"),
                 "--candidates", "3", "--executor", "numpy", "--out", str(d / "reranked.json")]) == 0
    search = json.loads((d / "reranked.json").read_text())["search"]
    assert len(search["candidates"]) == 3 and sum(c["chosen"] for c in search["candidates"]) == 1
    chosen = next(c for c in search["candidates"] if c["chosen"])
    assert chosen["kl"] == min(c["kl"] for c in search["candidates"]) and chosen["rank"] == search["chosen_rank"]
    assert main(["quantize", str(model), "--bits", str(d / "config.json"), "--calib", str(d / "calib.npz"),
                 "--out", str(d / "q.onnx")]) == 0
    capsys.readouterr()
    assert main(["solve", "--sensitivity", str(d / "s.json"), "--profile", str(d / "profile.json"),
                 "--latency-estimate", "p50", "--out", str(d / "c2.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_run_command_table_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--num", "8", "--iters", "10", "--eval-images", "40",
            "--board", "kv260", "--no-latency-budget"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "all int8" in text and "all int4" in text and "top-1 agreement with fp32" in text
    assert "accuracy" in text and "/fc/Gemm" in text
    # The closed loop: measured end to end against the profile, and what the gap is made of.
    assert "ARM ms" in text and "ARM ops between cores" in text
    assert "end to end per image: measured" in text and "board overheads are" in text
    assert main(argv + ["--json"]) == 0            # everything reused; JSON on stdout only
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["hardware"]["board"] == "kv260" and summary["eval_images"] == 40
    assert all(v["reused"] for v in summary["stages"].values())
    assert "reused" in captured.err
