"""Power rails: rail selection, background sampling, idle baseline, energy integration."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from ohq_pynq.errors import HardwareError
from ohq_pynq.hw.accelerator import PowerSample
from ohq_pynq.hw.boards import get_board
from ohq_pynq.hw.fake_pynq import FakePynq, FakeRail, FakeSensor
from ohq_pynq.hw.power import PowerMonitor, integrate, rail_watts, select_rails


def _sensor(v):
    return SimpleNamespace(value=v)


def test_rail_watts_from_power_or_voltage_times_current():
    assert rail_watts(SimpleNamespace(power=_sensor(3.0))) == 3.0
    vi = SimpleNamespace(power=None, voltage=_sensor(12.0), current=_sensor(0.5))
    assert rail_watts(vi) == pytest.approx(6.0)
    with pytest.raises(HardwareError, match="neither"):
        rail_watts(SimpleNamespace(name="x", power=None, voltage=_sensor(1.0), current=None))


def test_select_rails_takes_the_first_present_total_rail():
    rails = {"12V": SimpleNamespace(power=_sensor(5.0)), "VCCINT": SimpleNamespace(power=_sensor(1.0))}
    assert list(select_rails(rails, ("12v",))) == ["12V"]
    assert list(select_rails({"power1": SimpleNamespace(power=_sensor(2.0))},
                             get_board("kv260").rails)) == ["power1"]
    with pytest.raises(HardwareError, match="the board shows: 12V, VCCINT"):
        select_rails(rails, ("INA226",))


def test_integrate_rectangles_over_intervals():
    samples = [PowerSample(0.0, {"a": 5.0}), PowerSample(1.0, {"a": 7.0}), PowerSample(3.0, {"a": 6.0})]
    assert integrate(samples) == pytest.approx(7.0 + 12.0)
    assert integrate(samples, baseline=5.0) == pytest.approx(2.0 + 2.0)
    assert integrate(samples[:1]) == 0.0


def test_background_thread_samples_and_stops():
    sensor = FakeSensor(idle_watts=4.0)
    mon = PowerMonitor({"12V": FakeRail("12V", sensor)}, interval=0.001)
    idle = mon.calibrate_idle(0.03)
    assert idle == pytest.approx(4.0)
    mon.start()
    with pytest.raises(HardwareError, match="already"):
        mon.start()
    samples = mon.stop()
    assert len(samples) >= 2 and all(s.t <= t.t for s, t in zip(samples, samples[1:]))
    assert not any(t.name == "ohq-power" for t in threading.enumerate())
    assert mon.stop() == []


def test_energy_per_call_recovers_the_deposited_energy():
    sensor = FakeSensor(idle_watts=6.0)
    mon = PowerMonitor({"12V": FakeRail("12V", sensor)}, interval=0.001)
    mon.calibrate_idle(0.02)
    joules = mon.energy_per_call(lambda: sensor.deposit(2e-4), window=0.03)
    assert joules == pytest.approx(2e-4, rel=0.05)
    assert mon.energy_per_call(lambda: None, window=0.01) == pytest.approx(0.0, abs=1e-6)


def test_monitor_for_board_and_missing_rails():
    fake = FakePynq(board="zcu104")
    mon = PowerMonitor.for_board(get_board("zcu104"), pynq_module=fake)
    assert mon.rail_names == ("12V",) and mon.read().total == pytest.approx(7.5, abs=0.5)
    broken = FakePynq(board="zcu104", rails=("VCCINT",))
    with pytest.raises(HardwareError, match="none of the power rails 12V"):
        PowerMonitor.for_board(get_board("zcu104"), pynq_module=broken)
    failing = SimpleNamespace(pmbus=SimpleNamespace(get_rails=lambda: (_ for _ in ()).throw(OSError("libsensors.so"))))
    with pytest.raises(HardwareError, match="libsensors"):
        PowerMonitor.for_board(get_board("zcu104"), pynq_module=failing)
