"""Robustness: hardware faults injected into the fake pynq device, and noisy hardware.

Faults: ap_done never comes (from the start or mid-run), DMA error bits (MM2S and S2MM, mid-run),
64-bit counters crossing 2^32 and a counter that wraps, register map / IP version / parameter
registers that disagree, missing .bit/.hwh, power rails that read NaN, raise or vanish. Hardware
errors exit with code 3 through the CLI, name the layer, and keep the measurements already made.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import onnx
import pytest

from conftest import build_small_cnn
from ohq_pynq.cli import main
from ohq_pynq.errors import HardwareError
from ohq_pynq.hw import accelerator as accelerator_module
from ohq_pynq.hw.fake_pynq import Faults, FakePynq, write_overlay
from ohq_pynq.hw.overlay import OverlayAccelerator
from ohq_pynq.hw.sim import SimAccelerator
from ohq_pynq.ilp import make_problem, solve
from ohq_pynq.oqa import MeasurementCache, profile_network
from ohq_pynq.profile import load_profile

LAYERS = ["conv1", "dw", "pw", "se_fc", "fc"]
PAIRS = 2 * len(LAYERS)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(build_small_cnn(), str(path))
    return path


@pytest.fixture
def bitfile(tmp_path):
    return write_overlay(tmp_path, "pynq-z2")


def _fake(bitfile, board, **fake):
    """The fake pynq, with ``board``'s .hwh written beside ``bitfile`` (when the .bit is there);
    ``core_vlnv`` in ``fake`` goes to the .hwh."""
    design = {k: fake.pop(k) for k in ("core_vlnv",) if k in fake}
    if bitfile.is_file():
        write_overlay(bitfile.parent, board, name=bitfile.stem, **design)
    fake.setdefault("sensor_update", 0.002)
    return FakePynq(board=board, **fake)


def _acc(bitfile, board="pynq-z2", faults=None, timeout=0.2, **fake):
    return OverlayAccelerator(board=board, bitstream=bitfile, timeout=timeout, energy_window=0.005,
                              pynq_module=_fake(bitfile, board, faults=faults, **fake))


def _cli_profile(monkeypatch, capsys, model, bitfile, out, board="pynq-z2", hwh=True, **fake):
    """``profile --backend pynq`` with the fake device behind the factory; (exit code, stderr).
    ``hwh=False``: the .bit without its .hwh."""
    def factory(backend, board=None, **options):
        assert backend == "pynq"
        pynq = _fake(bitfile, board, **fake)
        if not hwh:
            bitfile.with_suffix(".hwh").unlink(missing_ok=True)
        return OverlayAccelerator(board=board, bitstream=options.get("bitstream", bitfile),
                                  timeout=0.2, energy_window=0.005, pynq_module=pynq)
    monkeypatch.setattr(accelerator_module, "make_accelerator", factory)
    capsys.readouterr()
    code = main(["profile", str(model), "--backend", "pynq", "--board", board, "--overlay",
                 str(bitfile), "--repeats", "1", "--out", str(out)])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- core and DMA
def test_ap_done_never_coming_mid_run_names_the_layer_exits_3_and_keeps_the_profile_so_far(
        monkeypatch, capsys, model, bitfile, tmp_path):
    out = tmp_path / "profile.json"
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, out, faults=Faults(hang_after=3))
    line = _one_error_line(err)
    assert code == 3
    assert "ap_done did not happen within 0.2 s" in line and "layer 'dw' at 8 bits" in line
    assert not out.exists()                                   # no half profile.json
    cache = MeasurementCache(tmp_path / "profile.oqa-cache.json")
    assert len(cache.entries) == 3                            # the 3 finished measurements kept
    # The board recovers (overlay reloaded): the rerun measures only the 7 missing pairs.
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, out)
    assert code == 0, err
    prof = load_profile(out)
    assert prof.metadata["oqa"]["cached"] == 3 and prof.metadata["oqa"]["measured"] == PAIRS - 3


@pytest.mark.parametrize("channel,after", [("send", 0), ("send", 5), ("recv", 4), ("both", 7)])
def test_dma_error_bits_are_hardware_errors_naming_the_layer(model, bitfile, tmp_path, channel, after):
    acc = _acc(bitfile, faults=Faults(dma_error_after=after, dma_error_channel=channel))
    with pytest.raises(HardwareError, match=r"layer '\w+' at \d bits: core ohq_int\d: the AXI DMA "
                                            r"reported an error") as err:
        profile_network(model, acc, repeats=1, cache=tmp_path / "c.json")
    assert err.value.exit_code == 3
    kept = len(MeasurementCache(tmp_path / "c.json").entries) if (tmp_path / "c.json").exists() else 0
    assert kept == after // 2            # two transfers (S2MM + MM2S) per finished layer run


def test_dma_error_through_the_cli_exits_3(monkeypatch, capsys, model, bitfile, tmp_path):
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, tmp_path / "p.json", dma_error=True)
    assert code == 3 and "DMA reported an error" in _one_error_line(err)


def test_counters_crossing_2_32_are_read_whole(model, bitfile):
    offset = (1 << 32) - 100         # CYCLES_LO wraps during every run, CYCLES_HI carries it
    prof = profile_network(model, _acc(bitfile, cycle_offset=offset), repeats=1)
    ref = profile_network(model, SimAccelerator("pynq-z2"), repeats=1)
    for n in LAYERS:
        for b in (4, 8):
            assert prof.layers[n][b].cycles == ref.layers[n][b].cycles + offset


def test_a_wrapped_32_bit_counter_is_detected(model, bitfile):
    # CYCLES_HI not wired and a run of 2^32 + 5 cycles: it reads 5, fewer than the run needs.
    ref = profile_network(model, SimAccelerator("pynq-z2"), bits=(8,), layers=["fc"])
    offset = (1 << 32) + 5 - int(ref.layers["fc"][8].cycles)
    acc = _acc(bitfile, cycle_offset=offset, faults=Faults(counter_hi_zero=True))
    with pytest.raises(HardwareError, match="layer 'fc' at 8 bits: .*CYCLES reads 5, fewer than.*"
                                            "counter wrapped or its upper word is not wired"):
        profile_network(model, acc, repeats=1, bits=(8,), layers=["fc"])


# --------------------------------------------------------------------------- overlay identity
@pytest.mark.parametrize("fake,expect", [
    ({"version": 0x00020000}, "register map 2.0, this driver speaks 1.x"),
    ({"core_vlnv": "ohq-pynq:ohq:ohq_conv:2.0"},
     "ohq_conv 2.0 in the overlay's .hwh but its VERSION register reads 1.1"),
    ({"magic": 0x12345678}, "MAGIC 0x12345678"),
    ({"faults": Faults(param_override={"PE": 3})}, "core parameters that cannot be right"),
    ({"faults": Faults(param_override={"SIMD": 0})}, "core parameters that cannot be right"),
    ({"faults": Faults(param_override={"BUS_BYTES": 0})}, "core parameters that cannot be right"),
])
def test_registers_disagreeing_with_the_bitstream(monkeypatch, capsys, model, bitfile, tmp_path,
                                                  fake, expect):
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, tmp_path / "p.json", **fake)
    assert code == 3 and expect in _one_error_line(err)


def test_missing_bit_or_hwh(monkeypatch, capsys, model, bitfile, tmp_path):
    code, err = _cli_profile(monkeypatch, capsys, model, tmp_path / "gone.bit", tmp_path / "p.json")
    assert code == 3 and "gone.bit not found" in _one_error_line(err)
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, tmp_path / "p.json", hwh=False)
    assert code == 3 and "ohq.hwh is missing beside it" in _one_error_line(err)
    code, err = _cli_profile(monkeypatch, capsys, model, bitfile, tmp_path / "p.json")
    assert code == 0, err


def test_no_board_at_all_is_a_hardware_error(capsys, model, tmp_path):
    # The real pynq here: no device. One line, exit 3 (or 2 when the board cannot be detected).
    capsys.readouterr()
    code = main(["profile", str(model), "--backend", "pynq", "--board", "zcu104",
                 "--overlay", str(tmp_path / "none.bit"), "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 3 and "not found" in _one_error_line(err)


# ------------------------------------------------------------------------------- power rails
@pytest.mark.parametrize("mode", ["nan", "raise", "stale", "vanish"])
def test_power_rail_failing_mid_run_marks_energy_unavailable_and_the_run_continues(
        model, bitfile, tmp_path, mode):
    faults = Faults(rail_after=10 ** 9, rail_mode=mode)
    acc = _acc(bitfile, board="zcu104", faults=faults)
    run_layer, pairs = acc.run_layer, []

    def fail_from_the_fourth_pair(*args):
        pairs.append(args[:2])
        if len(pairs) == 4:
            faults.rail_after = faults.rail_reads      # the rail fails a few layers in
        return run_layer(*args)
    acc.run_layer = fail_from_the_fourth_pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = profile_network(model, acc, repeats=1, cache=tmp_path / "c.json", out=tmp_path / "p.json")
    assert any("Energy is unavailable" in str(w.message) for w in caught)
    assert not any("Thread" in type(w.message).__name__ for w in caught)   # no dying thread
    assert len(prof.layers) == len(LAYERS)                                 # every layer measured
    assert all(c.cycles > 0 for per in prof.layers.values() for c in per.values())
    assert not prof.has_energy
    energy = json.loads((tmp_path / "p.json").read_text())["oqa"]["energy"]
    assert energy["available"] is False and "power rail 12V" in energy["reason"]
    assert acc.read_power() is None
    # An energy budget on this profile is a clear ConfigError, latency still solves.
    problem = make_problem({"layers": {n: 0.1 for n in LAYERS}}, prof)
    with pytest.raises(Exception, match="no energy"):
        solve(problem, energy="0.9")
    solve(problem, latency="1.0")
    # Rails back: the rerun re-measures exactly the pairs stored without energy.
    cache = MeasurementCache(tmp_path / "c.json")
    without = sum(1 for e in cache.entries.values() if e["samples"][0]["joules"] is None)
    assert 0 < without < PAIRS
    again = profile_network(model, _acc(bitfile, board="zcu104"), repeats=1, cache=tmp_path / "c.json")
    assert again.metadata["oqa"]["measured"] == without and again.has_energy


def test_power_rail_dead_at_start(bitfile):
    with pytest.warns(UserWarning, match="Profiling latency only: energy is unavailable"):
        acc = _acc(bitfile, board="zcu104", faults=Faults(rail_after=0, rail_mode="raise"))
    assert acc.monitor is None and not acc.describe().has_energy
    with pytest.raises(HardwareError, match="reads nan W"):
        OverlayAccelerator(board="zcu104", bitstream=bitfile, power=True, pynq_module=_fake(
            bitfile, "zcu104", faults=Faults(rail_after=0, rail_mode="nan")))


# ------------------------------------------------------------------------------ noisy hardware
class Noisy:
    """Wraps an accelerator: non-deterministic, with seeded cycle noise on chosen layers."""

    def __init__(self, inner, noise: dict[str, int], seed=3):
        self.inner, self.noise = inner, noise
        self.rng = np.random.default_rng(seed)
        self.calls: dict[tuple, int] = {}

    def describe(self):
        return replace(self.inner.describe(), deterministic=False)

    def run_layer(self, layer, bits, x, w, rq):
        self.calls[(layer.name, bits)] = self.calls.get((layer.name, bits), 0) + 1
        y, m = self.inner.run_layer(layer, bits, x, w, rq)
        c = m.cycles + int(self.rng.integers(0, self.noise.get(layer.name, 0) + 1))
        return y, replace(m, cycles=c, seconds=c / 100e6)

    def close(self):
        pass


def test_unstable_measurements_are_repeated_up_to_a_limit_and_flagged(model, tmp_path):
    acc = Noisy(SimAccelerator("pynq-z2"), {"conv1": 2000, "dw": 30})
    prof = profile_network(model, acc, repeats=3, max_spread=0.05, max_repeats=9,
                           cache=tmp_path / "c.json")
    assert acc.calls[("conv1", 8)] == 9 and acc.calls[("dw", 8)] == 3 and acc.calls[("fc", 4)] == 3
    noisy, calm = prof.layers["conv1"][8], prof.layers["dw"][8]
    assert noisy.extra["repeats"] == 9 and noisy.extra["unstable"] is True
    assert noisy.extra["spread_rel"] > 0.05 and noisy.cycles_spread > 100
    assert noisy.extra["cycles_p90"] >= noisy.cycles
    assert "unstable" not in calm.extra and calm.extra["repeats"] == 3
    assert prof.metadata["oqa"]["unstable"] == 2             # conv1 at 4 and at 8 bits
    # Settled: a rerun measures nothing more, even though conv1 is still unstable.
    acc2 = Noisy(SimAccelerator("pynq-z2"), {"conv1": 2000})
    again = profile_network(model, acc2, repeats=3, max_spread=0.05, max_repeats=9,
                            cache=tmp_path / "c.json")
    assert acc2.calls == {} and again.layers["conv1"][8].cycles == noisy.cycles


def test_ilp_can_budget_with_a_conservative_latency(model, tmp_path):
    prof = profile_network(model, Noisy(SimAccelerator("pynq-z2"), {"conv1": 3000, "pw": 500}),
                           repeats=5, max_repeats=10)
    sens = {"layers": {n: 0.1 * (i + 1) for i, n in enumerate(LAYERS)}}
    med = make_problem(sens, prof)
    p90 = make_problem(sens, prof, latency="p90")
    k2 = make_problem(sens, prof, latency="spread:2")
    assert (p90.seconds >= med.seconds).all() and (p90.seconds > med.seconds).any()
    assert (k2.seconds >= p90.seconds - 1e-12).all()
    assert p90.hardware["latency_estimate"] == "p90"
    for p in (med, p90, k2):
        solve(p, latency="1.0")
    with pytest.raises(Exception, match="latency estimate"):
        make_problem(sens, prof, latency="p99")
    with pytest.raises(Exception, match="K must be"):
        make_problem(sens, prof, latency="spread:-1")


def test_bad_noise_options(model):
    acc = Noisy(SimAccelerator("pynq-z2"), {})
    for kw in ({"max_spread": 0}, {"max_spread": float("nan")}, {"max_repeats": 2, "repeats": 3},
               {"repeats": 2.5}):
        with pytest.raises(Exception, match="max_spread|max_repeats|repeats"):
            profile_network(model, acc, **kw)
