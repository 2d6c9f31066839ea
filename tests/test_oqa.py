"""OQA: profiling every layer x bits on an accelerator, caching, resuming, the profile CLI."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest

from conftest import build_small_cnn
from ohq_pynq.cli import main
from ohq_pynq.errors import ConfigError, HardwareError
from ohq_pynq.hw.sim import SimAccelerator
from ohq_pynq.graph import load_network
from ohq_pynq.oqa import MeasurementCache, default_cache_path, profile_network, simulated_profile
from ohq_pynq.profile import load_profile, save_profile

LAYERS = ["conv1", "dw", "pw", "se_fc", "fc"]


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(build_small_cnn(), str(path))
    return path


class Counting:
    """Wraps an accelerator: counts runs, optionally fails after ``fail_after`` runs, and can
    pretend to be non-deterministic with seeded cycle jitter."""

    def __init__(self, inner, fail_after=None, jitter=0):
        self.inner, self.fail_after, self.jitter = inner, fail_after, jitter
        self.calls = 0
        self.rng = np.random.default_rng(7)

    def describe(self):
        info = self.inner.describe()
        return replace(info, deterministic=False) if self.jitter else info

    def run_layer(self, layer, bits, x, w, rq):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise HardwareError("the core did not finish within 1.0 s (ap_done never set).")
        self.calls += 1
        y, m = self.inner.run_layer(layer, bits, x, w, rq)
        if self.jitter:
            c = m.cycles + int(self.rng.integers(0, self.jitter))
            m = replace(m, cycles=c, seconds=c / 100e6)
        return y, m

    def read_power(self):
        return None

    def close(self):
        pass


def test_profile_schema_is_what_the_ilp_reads(model_path, tmp_path):
    out = tmp_path / "profile.json"
    acc = SimAccelerator("zcu104")
    prof = profile_network(model_path, acc, out=out)
    loaded = load_profile(out)
    assert list(loaded.layers) == LAYERS and loaded.bits == (4, 8) and not loaded.placeholder
    raw = json.loads(out.read_text())
    assert raw["schema"] == 1 and raw["hardware"]["board"] == "zcu104"
    entry = raw["layers"]["conv1"]["8"]
    for key in ("cycles", "cycles_spread", "seconds", "joules", "bytes", "weight_bytes"):
        assert key in entry
    assert entry["joules"] > 0 and loaded.has_energy
    for name, costs in prof.layers.items():
        assert costs[8].core_seconds == pytest.approx(costs[8].cycles / acc.board.fclk_hz)
        assert costs[8].seconds == pytest.approx(costs[8].core_seconds + costs[8].overhead_seconds)
        assert costs[4].weight_bytes < costs[8].weight_bytes
        assert costs[4].bytes <= costs[8].bytes
    # The ILP consumes it directly.
    from ohq_pynq import ilp
    sens = {"layers": {n: 0.1 * (i + 1) for i, n in enumerate(LAYERS)}}
    problem = ilp.make_problem(sens, out)
    alloc = ilp.solve(problem, size="80%")
    assert alloc is not None


def test_pynq_z2_profile_has_null_joules(model_path, tmp_path):
    out = tmp_path / "p.json"
    profile_network(model_path, SimAccelerator("pynq-z2"), out=out)
    raw = json.loads(out.read_text())
    assert all(raw["layers"][n][b]["joules"] is None for n in LAYERS for b in ("4", "8"))
    assert not load_profile(out).has_energy


def test_repeats_median_and_spread(model_path):
    acc = Counting(SimAccelerator("pynq-z2"), jitter=50)
    prof = profile_network(model_path, acc, repeats=5)
    assert acc.calls == 5 * 2 * len(LAYERS)
    c = prof.layers["pw"][8]
    assert c.extra["repeats"] == 5 and 0 < c.cycles_spread < 50
    base = SimAccelerator("pynq-z2").measure(__import__("ohq_pynq.quant", fromlist=["x"])
                                             .prepare(str(model_path)).layer("pw"), 8)
    assert base.cycles <= c.cycles < base.cycles + 50


def test_cache_rerun_measures_nothing_and_killed_run_resumes(model_path, tmp_path):
    cache = tmp_path / "cache.json"
    acc = Counting(SimAccelerator("pynq-z2"), jitter=10, fail_after=7)
    with pytest.raises(HardwareError, match="at 8 bits|at 4 bits"):
        profile_network(model_path, acc, repeats=3, cache=cache)
    # 7 runs = 2 complete (layer, bits) pairs of 3 repeats; the third pair lost its 1 run.
    assert len(MeasurementCache(cache).entries) == 2
    acc2 = Counting(SimAccelerator("pynq-z2"), jitter=10)
    prof = profile_network(model_path, acc2, repeats=3, cache=cache)
    assert acc2.calls == 3 * (2 * len(LAYERS) - 2)
    assert prof.metadata["oqa"]["cached"] == 2
    acc3 = Counting(SimAccelerator("pynq-z2"), jitter=10)
    again = profile_network(model_path, acc3, repeats=3, cache=cache)
    assert acc3.calls == 0
    assert again.layers["fc"][4].cycles == prof.layers["fc"][4].cycles
    # More repeats: only the missing ones run.
    acc4 = Counting(SimAccelerator("pynq-z2"), jitter=10)
    profile_network(model_path, acc4, repeats=4, cache=cache)
    assert acc4.calls == 2 * len(LAYERS)
    # Another board is another hardware id: nothing reused.
    acc5 = Counting(SimAccelerator("kv260", arm_time="off"))
    profile_network(model_path, acc5, cache=cache)
    assert acc5.calls == 2 * len(LAYERS)


def test_corrupt_cache_is_ignored_with_a_warning(model_path, tmp_path):
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    with pytest.warns(UserWarning, match="empty cache"):
        prof = profile_network(model_path, SimAccelerator(), cache=cache)
    assert len(prof.layers) == len(LAYERS)
    assert json.loads(cache.read_text())["schema"] == 1


def test_bad_options(model_path):
    with pytest.raises(ConfigError, match="repeats"):
        profile_network(model_path, SimAccelerator(), repeats=0)
    with pytest.raises(ConfigError, match="no core for 2"):
        profile_network(model_path, SimAccelerator(), bits=(2, 8))
    with pytest.raises(ConfigError, match="no quantizable layer"):
        profile_network(model_path, SimAccelerator(), layers=["nope"])


def test_profile_cli(model_path, tmp_path, capsys):
    out = tmp_path / "prof.json"
    assert main(["profile", str(model_path), "--board", "kv260", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "int4" in text and "mJ" in text
    assert default_cache_path(out).exists()
    assert load_profile(out).hardware["board"] == "kv260"
    assert main(["profile", str(model_path), "--board", "kv260", "--out", str(out)]) == 0
    assert "0 measured" in capsys.readouterr().out
    assert main(["profile", str(model_path), "--bits", "3,8", "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["profile", str(model_path), "--board", "nano", "--out", str(out)]) == 2


def test_simulated_profile_is_what_oqa_measures_on_the_simulator(model_path, tmp_path):
    """The shape-only estimate for `solve --model` is the simulator's own measurement (no second
    cost model), labelled as a placeholder."""
    net = load_network(model_path)
    for board in ("pynq-z2", "zcu104"):
        est = simulated_profile(net, board=board)
        measured = profile_network(model_path, SimAccelerator(board, estimate_energy=True, arm_time="off"), repeats=1)
        assert est.placeholder and list(est.layers) == LAYERS and est.bits == (4, 8)
        for name in LAYERS:
            for b in (4, 8):
                e, m = est.layers[name][b], measured.layers[name][b]
                assert (e.cycles, e.seconds, e.bytes, e.weight_bytes) == (m.cycles, m.seconds, m.bytes,
                                                                          m.weight_bytes)
                assert e.joules == pytest.approx(m.joules) and e.joules > 0
        assert est.hardware["board"] == board and "not a measurement" in est.hardware["note"]
    path = tmp_path / "p.json"
    save_profile(path, simulated_profile(net.layers, with_energy=False))
    loaded = load_profile(path)
    assert loaded.placeholder and not loaded.has_energy and loaded.has_weight_bytes
    with pytest.raises(ConfigError, match="no quantizable layers"):
        simulated_profile([])


def test_profile_measures_the_board_overheads_the_ilp_optimises(model_path, tmp_path):
    """seconds = the core's counter + what the board adds outside it, per layer and bits; the
    bare core (overheads=False) is what the profile held before, and the ILP's all-int8 latency
    is the sum of the end-to-end seconds."""
    from ohq_pynq import ilp
    from ohq_pynq.hw.overheads import CATEGORIES

    out = tmp_path / "p.json"
    prof = profile_network(model_path, SimAccelerator("pynq-z2", arm_time="off"), out=out)
    bare = profile_network(model_path, SimAccelerator("pynq-z2", overheads=False))
    raw = json.loads(out.read_text())["layers"]
    for name in LAYERS:
        for b in (4, 8):
            c, core = prof.layers[name][b], bare.layers[name][b]
            assert set(raw[name][str(b)]["overheads"]) == set(CATEGORIES)
            assert c.extra["overheads"]["pack"] == 0.0                  # arm_time off
            for k in ("registers", "dma_setup", "cache", "poll"):
                assert c.extra["overheads"][k] > 0, (name, b, k)
            # The counter holds the input DMA's start; the rest is outside it.
            assert c.cycles > core.cycles and c.core_seconds > core.seconds
            assert c.seconds == pytest.approx(c.core_seconds + sum(c.extra["overheads"].values()))
            assert c.seconds > 3 * core.seconds                        # small layers: overheads dominate
    sens = {"layers": {n: 0.1 for n in LAYERS}}
    problem = ilp.make_problem(sens, out)
    want = sum(prof.layers[n][8].seconds for n in LAYERS)
    assert ilp.solve(problem, beta=1, gamma=0).metadata()["all_int8"]["seconds"] == pytest.approx(want)


def test_profile_measures_arm_time_per_layer_and_repeats_it(model_path):
    """With the driver's numpy work timed on this CPU the simulator is not deterministic: OQA
    takes the median of the repeats, and every sample carries its packing time."""
    acc = Counting(SimAccelerator("pynq-z2", arm_time="measured"))
    assert not acc.describe().deterministic
    prof = profile_network(model_path, acc, repeats=2, layers=["conv1", "fc"])
    assert acc.calls == 2 * 2 * 2
    for name in ("conv1", "fc"):
        c = prof.layers[name][8]
        assert c.extra["repeats"] == 2 and c.extra["overheads"]["pack"] > 0


def test_profile_reports_the_energy_spread_from_the_sensor_updates(model_path, tmp_path):
    """Issue 15 item 4: each layer's joules come with the standard error of the sensor updates
    they were integrated from (and their relative standard error) and the spread of repeats."""
    from ohq_pynq.hw.fake_pynq import FakePynq, write_overlay
    from ohq_pynq.hw.overlay import OverlayAccelerator

    fake = FakePynq(board="zcu104", sensor_update=0.004)
    bit = write_overlay(tmp_path / "ovl", "zcu104")
    acc = OverlayAccelerator(board="zcu104", bitstream=bit, pynq_module=fake, energy_window=0.06)
    out = tmp_path / "p.json"
    prof = profile_network(model_path, acc, repeats=2, out=out, layers=["pw", "fc"])
    raw = json.loads(out.read_text())
    for name in ("pw", "fc"):
        e = raw["layers"][name]["8"]
        assert e["joules"] > 0 and e["joules_stderr"] > 0 and e["energy_updates"] >= 2
        assert e["joules_rel_stderr"] == pytest.approx(e["joules_stderr"] / e["joules"])
        assert e["joules_std"] >= 0
    spread = raw["oqa"]["energy_spread"]
    rels = [raw["layers"][n][b].get("joules_rel_stderr") for n in ("pw", "fc") for b in ("4", "8")]
    rels = [r for r in rels if r is not None]           # None where the energy above idle is 0
    assert spread["max_rel_stderr"] == pytest.approx(max(rels))
    assert prof.has_energy
    acc.close()
