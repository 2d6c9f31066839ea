"""Robustness: runs killed with SIGKILL in the middle of profiling / autotune, and damaged caches.

A subprocess runs the CLI with the simulator slowed down (so the kill lands mid-profile); it is
killed with ``kill -9`` once the OQA cache holds some measurements. Then: every artefact on disk
is complete (atomic writes: valid JSON, never half a file), and the rerun resumes from the cache,
measuring exactly the (layer, bits) pairs not yet stored. A corrupt cache is set aside (renamed)
and re-measured; a cache with one damaged entry re-measures only that entry.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ohq_pynq.hw.sim import SimAccelerator
from ohq_pynq.models import model_path
from ohq_pynq.oqa import profile_network

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits_resnet_folded"
CALIB = ROOT / "ohq_pynq" / "models" / "digits_calib.npz"

# Runs the CLI with SimAccelerator.run_layer slowed by DELAY seconds and counting its calls
# (written to COUNT_FILE at exit), so a test can kill it mid-profile and audit the rerun.
DRIVER = textwrap.dedent("""
    import atexit, os, sys, time
    from ohq_pynq.hw.sim import SimAccelerator
    delay, count_file = float(os.environ["DELAY"]), os.environ.get("COUNT_FILE")
    calls = [0]
    inner = SimAccelerator.run_layer
    def run_layer(self, *a, **k):
        calls[0] += 1
        time.sleep(delay)
        return inner(self, *a, **k)
    SimAccelerator.run_layer = run_layer
    if count_file:
        atexit.register(lambda: open(count_file, "w").write(str(calls[0])))
    from ohq_pynq.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _start(tmp_path, argv, delay, count_file=None):
    env = dict(os.environ, DELAY=str(delay), PYTHONPATH=str(ROOT))
    if count_file:
        env["COUNT_FILE"] = str(count_file)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(script)] + list(argv), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _entries(cache: Path) -> int:
    try:
        return len(json.loads(cache.read_text())["entries"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_when(proc, cache: Path, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _entries(cache) < at_least:
        assert proc.poll() is None, f"finished before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _all_artefacts_complete(folder: Path) -> list[str]:
    """Every JSON artefact parses and every .npz/.onnx loads: nothing is half-written."""
    import numpy as np
    import onnx

    seen = []
    for p in folder.rglob("*"):
        if p.name.endswith(".tmp") or not p.is_file():
            continue      # the temp file of an interrupted atomic write, never read by anyone
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".npz":
            with np.load(p) as f:
                [f[k] for k in f.files]
        elif p.suffix == ".onnx":
            onnx.checker.check_model(onnx.load(str(p)))
        seen.append(p.name)
    return seen


def test_kill_9_during_profile_then_resume_measures_only_what_is_missing(tmp_path):
    model = model_path(MODEL)
    out, cache = tmp_path / "profile.json", tmp_path / "profile.oqa-cache.json"
    argv = ["profile", str(model), "--out", str(out)]
    total = 2 * len(__import__("ohq_pynq.graph", fromlist=["x"]).load_network(model).layers)
    for kill_at in (5, 17):                       # two interruptions, at different points
        proc = _start(tmp_path, argv, delay=0.02)
        _kill_when(proc, cache, kill_at)
        assert not out.exists()                   # profile.json is written only when complete
        _all_artefacts_complete(tmp_path)
    stored = _entries(cache)
    assert 17 <= stored < total
    count = tmp_path / "calls.txt"
    proc = _start(tmp_path, argv, delay=0.0, count_file=count)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert int(count.read_text()) == total - stored          # nothing stored is measured again
    assert f"{total - stored} measured, {stored} from cache" in stdout
    assert json.loads(out.read_text())["oqa"]["cached"] == stored


def test_kill_9_during_autotune_then_rerun_resumes_and_installs(tmp_path):
    model = model_path(MODEL)
    config = tmp_path / "autotune.toml"
    config.write_text(textwrap.dedent(f"""
        model = "{model}"
        out = "run"
        install = "installed/config.json"
        backend = "sim"
        calib = "{CALIB}"
        executor = "numpy"
        overheads = false
        [budgets]
        latency = "0.9"
        [search]
        repeats = 1
        eval_images = 8
    """))
    cache = tmp_path / "run" / "profile.oqa-cache.json"
    argv = ["autotune", "--config", str(config)]
    proc = _start(tmp_path, argv, delay=0.02)
    _kill_when(proc, cache, 9)
    _all_artefacts_complete(tmp_path)
    assert not (tmp_path / "installed" / "config.json").exists()
    stored = _entries(cache)
    count = tmp_path / "calls.txt"
    proc = _start(tmp_path, argv, delay=0.0, count_file=count)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    total = 2 * len(__import__("ohq_pynq.graph", fromlist=["x"]).load_network(model).layers)
    profiled = total - stored
    # The profile stage measured only what was missing (later stages also run layers on the
    # simulator — the deployment check — so the count is at least that, and the log says it).
    assert int(count.read_text()) >= profiled
    assert f"{profiled} layer x bits measured, {stored} from cache" in stdout
    installed = json.loads((tmp_path / "installed" / "config.json").read_text())
    assert installed["layers"]
    seen = _all_artefacts_complete(tmp_path)
    assert {"profile.json", "config.json", "state.json", "summary.json"} <= set(seen)
    # Third run: nothing changed, nothing measured.
    proc = _start(tmp_path, argv, delay=0.0, count_file=count)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "nothing changed" in stdout and count.read_text() == "0"


@pytest.mark.parametrize("damage", ["{not json", "", '{"schema": 1, "entries": {"a": ', "\x00" * 64,
                                    '{"schema": 99, "entries": {}}', "[1, 2]"])
def test_corrupt_cache_is_set_aside_and_remeasured(tmp_path, damage):
    model = model_path(MODEL)
    cache = tmp_path / "c.json"
    cache.write_text(damage)
    with pytest.warns(UserWarning, match=r"moved it to c\.json\.corrupt-1"):
        prof = profile_network(model, SimAccelerator(), cache=cache)
    assert (tmp_path / "c.json.corrupt-1").read_text() == damage          # kept for inspection
    assert prof.metadata["oqa"]["cached"] == 0
    assert _entries(cache) == 2 * len(prof.layers)


def test_one_damaged_entry_is_remeasured_alone(tmp_path):
    model = model_path(MODEL)
    cache = tmp_path / "c.json"
    first = profile_network(model, SimAccelerator(), cache=cache)
    data = json.loads(cache.read_text())
    keys = list(data["entries"])
    data["entries"][keys[3]]["samples"][0]["cycles"] = "12x"
    data["entries"][keys[7]]["samples"] = [{"cycles": -5}]
    cache.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="2 damaged entries"):
        again = profile_network(model, SimAccelerator(), cache=cache)
    assert again.metadata["oqa"]["measured"] == 2
    assert (tmp_path / "c.json.corrupt-1").exists()
    assert again.to_json()["layers"] == first.to_json()["layers"]
