"""ohq_pynq.autotune: fingerprints, nothing changed → nothing measured, atomic install, the unit."""
from __future__ import annotations

import json
import shutil

import pytest

import ohq_pynq.oqa as oqa
from ohq_pynq.autotune import autotune, install_service, load_config, service_unit
from ohq_pynq.cli import main
from ohq_pynq.errors import ConfigError
from ohq_pynq.models import model_path, split_path

CONFIG = """
model = "model.onnx"
out = "run"
install = "installed/config.json"
backend = "sim"
board = "kv260"
overheads = false
[budgets]
latency = "{latency}"
[search]
num_images = 8
eval_images = 40
pareto_points = 6
"""


@pytest.fixture
def setup(tmp_path):
    shutil.copy(model_path("digits_resnet_bn"), tmp_path / "model.onnx")
    cfg = tmp_path / "autotune.toml"
    cfg.write_text(CONFIG.format(latency="0.85"))
    return tmp_path, cfg


def count_profiles(monkeypatch):
    calls = []
    real = oqa.profile_network

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(oqa, "profile_network", spy)
    return calls


def test_autotune_reruns_only_what_changed(setup, monkeypatch):
    d, cfg = setup
    calls = count_profiles(monkeypatch)
    logs: list[str] = []
    r = autotune(cfg, log=logs.append)
    assert r["changed"] and calls == [1]
    installed = d / "installed" / "config.json"
    first = json.loads(installed.read_text())["layers"]
    assert logs[0].startswith("first run") and any(l.startswith("installed") for l in logs)
    # nothing changed: nothing measured, nothing solved, one line
    logs.clear()
    r = autotune(cfg, log=logs.append)
    assert not r["changed"] and calls == [1] and len(logs) == 1 and "nothing changed" in logs[0]
    # a settings change re-solves from the cached profile (0.7: tighter than the 0.85 config's
    # latency, so the config must change)
    cfg.write_text(CONFIG.format(latency="0.7"))
    logs.clear()
    r = autotune(cfg, log=logs.append)
    assert r["changed"] and calls == [1] and "settings changed" in logs[0]
    assert any(l.startswith("profile: reused") for l in logs)
    assert json.loads(installed.read_text())["layers"] != first
    # a model change re-profiles
    shutil.copy(model_path("digits_resnet_folded"), d / "model.onnx")
    cfg.write_text(CONFIG.format(latency="0.75").replace('backend = "sim"', 'backend = "sim"\ncalib = "calib.npz"'))
    shutil.copy(split_path("calib"), d / "calib.npz")
    logs.clear()
    r = autotune(cfg, log=logs.append)
    assert r["changed"] and calls == [1, 1] and "model" in logs[0]


def test_bad_configs(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('model = "m.onnx"\ninstall = "c.json"\nbudget = 3\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(bad)
    bad.write_text('install = "c.json"\n')
    with pytest.raises(ConfigError, match="must set"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    bad.write_text('model = "missing.onnx"\ninstall = "c.json"\nbackend = "sim"\n')
    assert main(["autotune", "--config", str(bad)]) == 2


def test_service_unit(setup, tmp_path):
    _, cfg = setup
    text = service_unit(cfg, python="/usr/bin/python3")
    assert f"ExecStart=/usr/bin/python3 -m ohq_pynq autotune --config {cfg.resolve()}" in text
    assert "@" not in text and "WantedBy=multi-user.target" in text
    unit = install_service(cfg, tmp_path / "units", enable=False, log=lambda m: None)
    assert unit.read_text() == service_unit(cfg)
