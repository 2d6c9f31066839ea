"""Robustness: bad settings through the CLI — budgets, bit-width configs, calibration data, image
folders, options. Every case exits 2 with exactly one ``error: ...`` line on stderr."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from conftest import build_small_cnn
from ohq_pynq.cli import main

LAYERS = ["conv1", "dw", "pw", "se_fc", "fc"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("settings")
    model = d / "small.onnx"
    onnx.save(build_small_cnn(), str(model))
    sens = d / "sensitivity.json"
    sens.write_text(json.dumps({"layers": {n: 0.1 * (i + 1) for i, n in enumerate(LAYERS)}}))
    calib = d / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).normal(size=(4, 1, 16, 16)).astype(np.float32))
    assert main(["profile", str(model), "--out", str(d / "profile.json")]) == 0
    return {"dir": d, "model": str(model), "sens": str(sens), "calib": str(calib),
            "profile": str(d / "profile.json")}


def one_error(capsys, argv, code=2) -> str:
    """Run the CLI; assert the exit code and that stderr is exactly one ``error:`` line."""
    capsys.readouterr()
    assert main(argv) == code, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------------- budgets
@pytest.mark.parametrize("flag,value,expect", [
    ("--latency-budget", "0.01", "infeasible"),
    ("--size-budget", "0.05", "infeasible"),
    ("--latency-budget", "1us", "infeasible"),
    ("--latency-budget", "-0.5", "not a number"),
    ("--latency-budget", "nan", "not a number"),
    ("--latency-budget", "inf", "not a number"),
    ("--latency-budget", "1e999x", "finite number > 0"),
    ("--latency-budget", "0", "finite number > 0"),
    ("--latency-budget", "0%", "finite number > 0"),
    ("--latency-budget", "3", "ambiguous"),
    ("--latency-budget", "2.5MB", "unit 'MB'"),
    ("--size-budget", "2ms", "unit 'ms'"),
    ("--energy-budget", "0.5", "no energy"),         # pynq-z2 profile: no power rails
    ("--latency-budget", "", "not a number"),
])
def test_bad_budgets_are_one_line(files, capsys, flag, value, expect):
    line = one_error(capsys, ["solve", "--sensitivity", files["sens"], "--profile", files["profile"],
                              flag, value, "--out", str(files["dir"] / "c.json")])
    assert expect in line


def test_contradictory_budgets_state_what_is_feasible(files, capsys):
    # A size budget met only near all-int4 with a latency budget all-int4 cannot meet: the message
    # names the smallest feasible value of each budget with the other kept.
    base = ["solve", "--sensitivity", files["sens"], "--profile", files["profile"],
            "--out", str(files["dir"] / "c.json")]
    assert main(base + ["--size-budget", "0.7"]) == 0
    line = one_error(capsys, base + ["--size-budget", "0.7", "--latency-budget", "0.3"])
    assert "infeasible" in line and "smallest feasible" in line


@pytest.mark.parametrize("extra,expect", [
    (["--beta", "nan"], "beta"),
    (["--beta", "-1"], "beta"),
    (["--beta", "0", "--gamma", "0"], "both 0"),
    (["--hw-metric", "watts"], "hardware metric"),
    (["--hw-metric", "1.5"], "between 0 and 1"),
    (["--bits", "4"], "candidates [4]"),
    (["--bits", "4,x"], "comma-separated"),
    (["--tie", "conv1,nope"], "not in the model"),
])
def test_bad_solver_options(files, capsys, extra, expect):
    line = one_error(capsys, ["solve", "--sensitivity", files["sens"], "--profile", files["profile"],
                              "--out", str(files["dir"] / "c.json")] + extra)
    assert expect in line


@pytest.mark.parametrize("budget", ["nan", "-1", "0", "1e999x", "abc"])
def test_run_refuses_bad_budgets_before_any_work(files, capsys, budget, tmp_path):
    line = one_error(capsys, ["run", files["model"], "--calib", files["calib"], "--latency-budget",
                              budget, "--out", str(tmp_path / "run")])
    assert "latency budget" in line or "latency-budget" in line
    assert not (tmp_path / "run" / "profile.json").exists()


def test_bad_sensitivity_and_profile_files(files, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": {"conv1": NaN')
    base = ["solve", "--out", str(tmp_path / "c.json")]
    assert "not valid JSON" in one_error(capsys, base + ["--sensitivity", str(bad), "--profile", files["profile"]])
    bad.write_text(json.dumps({"layers": {"conv1": 0.1}}))
    assert "different layers" in one_error(capsys, base + ["--sensitivity", str(bad), "--profile",
                                                           files["profile"]])
    prof = json.loads(open(files["profile"]).read())
    prof["layers"]["pw"]["4"]["seconds"] = -1
    bad.write_text(json.dumps(prof))
    assert "'seconds'" in one_error(capsys, base + ["--sensitivity", files["sens"], "--profile", str(bad)])


# ----------------------------------------------------------------------------- config.json
@pytest.mark.parametrize("config,expect", [
    ({"layers": {"conv1": 8, "no_such_layer": 4}}, "not in the model"),
    ({"layers": {n: 2 for n in LAYERS}}, "not supported by the cores"),
    ({"layers": {n: 16 for n in LAYERS}}, "not supported by the cores"),
    ({"layers": {**{n: 8 for n in LAYERS}, "fc": "8"}}, "expected one of"),
    ({"layers": {**{n: 8 for n in LAYERS}, "fc": 8.5}}, "expected one of"),
    ({"layers": {**{n: 8 for n in LAYERS}, "fc": True}}, "expected one of"),
    ({"layers": {n: 8 for n in LAYERS[:-1]}}, "missing layer"),
    ({"layers": [8, 8]}, "must map layer names"),
    ([], "must map layer names"),
])
def test_bad_bit_configs(files, capsys, tmp_path, config, expect):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    line = one_error(capsys, ["quantize", files["model"], "--bits", str(cfg), "--calib", files["calib"],
                              "--out", str(tmp_path / "q.onnx")])
    assert expect in line
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("bits", ["3", "0", "-8", "abc", "missing.json"])
def test_bad_uniform_bits(files, capsys, tmp_path, bits):
    one_error(capsys, ["quantize", files["model"], "--bits", bits, "--calib", files["calib"],
                       "--out", str(tmp_path / "q.onnx")])


def test_truncated_config_json(files, capsys, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"layers": {"conv1": 8, "dw"')
    assert "not valid JSON" in one_error(capsys, ["quantize", files["model"], "--bits", str(cfg),
                                                  "--calib", files["calib"], "--out", str(tmp_path / "q.onnx")])


# ------------------------------------------------------------------------------ calibration data
def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays,expect", [
    ({"x": np.zeros((4, 3, 16, 16), np.float32)}, "shape"),            # wrong channels
    ({"x": np.zeros((4, 1, 32, 32), np.float32)}, "shape"),            # wrong size
    ({"x": np.zeros((4, 16, 16), np.float32)}, "N×C×H×W"),              # 3-D
    ({"x": np.zeros((0, 1, 16, 16), np.float32)}, "no images"),        # empty
    ({"x": np.array([["a"]])}, "dtype"),                                # strings
    ({"x": np.full((2, 1, 16, 16), np.nan, np.float32)}, "NaN"),
    ({"x": np.full((2, 1, 16, 16), 6e4, np.float32)}, "preprocessed"),  # out of range
    ({"y": np.zeros(4, np.int64)}, "no array 'x'"),
    ({"x": np.zeros((4, 1, 16, 16), np.float32), "y": np.zeros(3, np.int64)}, "labels"),
])
def test_bad_calibration_data(files, capsys, tmp_path, arrays, expect):
    line = one_error(capsys, ["quantize", files["model"], "--bits", "8", "--calib", _npz(tmp_path, **arrays),
                              "--out", str(tmp_path / "q.onnx")])
    assert expect in line


def test_bad_data_files_and_folders(files, capsys, tmp_path):
    base = ["quantize", files["model"], "--bits", "8", "--out", str(tmp_path / "q.onnx"), "--calib"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "contains no images" in one_error(capsys, base + [str(empty)])
    (empty / "notes.txt").write_text("not an image")
    assert "contains no images" in one_error(capsys, base + [str(empty)])
    (empty / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert "cannot read image" in one_error(capsys, base + [str(empty)])
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert "cannot read" in one_error(capsys, base + [str(bad)])
    assert "not found" in one_error(capsys, base + [str(tmp_path / "nope.npz")])
    other = tmp_path / "x.csv"
    other.write_text("1,2,3")
    assert "must be an .npz" in one_error(capsys, base + [str(other)])


@pytest.mark.parametrize("extra,expect", [
    (["--num-calib", "0"], None), (["--percentile", "0"], "percentile"),
    (["--percentile", "nan"], "percentile"), (["--percentile", "101"], "percentile"),
])
def test_bad_calibration_options(files, capsys, tmp_path, extra, expect):
    argv = ["quantize", files["model"], "--bits", "8", "--calib", files["calib"],
            "--out", str(tmp_path / "q.onnx")] + extra
    if expect is None:          # --num-calib 0 means "all images": fine
        assert main(argv) == 0
        return
    assert expect in one_error(capsys, argv)


# --------------------------------------------------------------------------------- other options
@pytest.mark.parametrize("extra,expect", [
    (["--repeats", "0"], "repeats"), (["--repeats", "-3"], "repeats"),
    (["--bits", "3,8"], "4 and/or 8"), (["--bits", "four"], "comma-separated"),
    (["--board", "nano"], "nano"), (["--input-shape", "0,16,16"], "positive"),
    (["--input-shape", "1,16"], "dims"),
])
def test_bad_profile_options(files, capsys, tmp_path, extra, expect):
    line = one_error(capsys, ["profile", files["model"], "--out", str(tmp_path / "p.json")] + extra)
    assert expect in line


def test_bad_autotune_config(files, capsys, tmp_path):
    cfg = tmp_path / "autotune.toml"
    cfg.write_text('model = "small.onnx"\ninstall = "c.json"\n[budgets]\nlatency = "nan"\n')
    one_error(capsys, ["autotune", "--config", str(cfg)])
    cfg.write_text('model = "small.onnx"\ninstall = "c.json"\nbogus = 1\n')
    assert "unknown key" in one_error(capsys, ["autotune", "--config", str(cfg)])
    cfg.write_text('model = [unclosed\n')
    assert "not valid TOML" in one_error(capsys, ["autotune", "--config", str(cfg)])
