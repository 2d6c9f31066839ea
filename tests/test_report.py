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
