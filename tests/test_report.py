"""ohq_pynq.report: a self-contained page; rendered in headless Chromium when it is installed."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ohq_pynq.pipeline import Settings, run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    run(Settings(out=str(out), num_images=8, distill_iters=10, eval_images=30, pareto_points=6,
                 board="pynq-z2"), log=lambda m: None)
    return out / "report.html"


def test_self_contained(report):
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 3          # pareto, layers, latency
    assert not re.search(r"""src=['"](?!data:)""", html)        # nothing loaded from elsewhere
    assert "/conv1/Conv" in html and "all int8" in html and "pynq-z2" in html
    assert "–" in html                                         # PYNQ-Z2: energy shown as unavailable


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="headless Chromium is not installed (apt-get install chromium)")
def test_renders_in_chromium(report, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "report.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                    f"--screenshot={shot}", report.as_uri()], check=True, timeout=120,
                   capture_output=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000   # a real page, not a blank one


def test_predicted_vs_measured_per_layer_and_in_total_with_the_gap_explained(report):
    """The default run models the board's overheads: the report shows per layer the profile's
    core and overhead seconds, predicted vs measured, and in total the measured end-to-end time
    against the prediction with the parts of the gap (ARM ops between the cores, quantize /
    dequantize at the cores' edges, per-layer differences, the rest)."""
    import json

    html = report.read_text()
    summary = json.loads((report.parent / "summary.json").read_text())
    loop = summary["closed_loop"]
    assert "Where the gap comes from" in html and "total per image" in html
    assert "ARM ops between the cores" in html and "ARM: Add (between cores)" in html
    assert "measured − predicted" in html and "of the predicted latency" in html
    # The parts add up to the gap, and the measured figure is not the per-layer sum.
    assert sum(loop["gap"].values()) == pytest.approx(loop["gap_seconds"])
    assert loop["measured_seconds"] == summary["totals"]["measured_seconds"]
    assert loop["measured_seconds"] > loop["cores_seconds"] > 0
    assert loop["gap"]["arm_ops_between_cores"] > 0 and loop["arm_ops"]["Add"] > 0
    split = loop["predicted_split"]
    assert 0 < split["overhead_fraction"] < 1 and split["overheads"]["registers"] > 0
    for r in summary["layers"]:
        assert r["predicted_seconds"] == pytest.approx(
            r["predicted_core_seconds"] + sum(r["predicted_overheads"].values()))
        assert f"{1e3 * r['predicted_seconds']:.3f} ms" in html
