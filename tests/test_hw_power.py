"""Power rails: rail names per board, missing rails, sensor update intervals, per-update energy
integration and its spread, stale readings, background sampling."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from ohq_pynq.errors import HardwareError
from ohq_pynq.hw.accelerator import PowerSample
from ohq_pynq.hw.boards import get_board
from ohq_pynq.hw.fake_pynq import BOARD_RAILS, Faults, FakePynq, FakeRail, FakeSensor
from ohq_pynq.hw.power import (DEFAULT_UPDATE_INTERVAL, MIN_BUSY_UPDATES, SETTLE_UPDATES,
                               PowerMonitor, PowerUnavailable, integrate, rail_watts,
                               select_rails, sensor_updates, update_interval_of)


def _sensor(v):
    return SimpleNamespace(value=v)


def test_rail_watts_from_power_or_voltage_times_current():
    assert rail_watts(SimpleNamespace(power=_sensor(3.0))) == 3.0
    vi = SimpleNamespace(power=None, voltage=_sensor(12.0), current=_sensor(0.5))
    assert rail_watts(vi) == pytest.approx(6.0)
    with pytest.raises(HardwareError, match="neither"):
        rail_watts(SimpleNamespace(name="x", power=None, voltage=_sensor(1.0), current=None))


@pytest.mark.parametrize("board, rail", [("zcu104", "12V"), ("ultra96v2", "5V"), ("kv260", "power1")])
def test_each_board_profile_finds_the_total_rail_its_sensor_configuration_names(board, rail):
    # get_rails() as the board's libsensors configuration gives it (fake_pynq.BOARD_RAILS cites
    # the configurations); e.g. the Ultra96-V2's "VIN" has a voltage only.
    shown = FakePynq(board=board).pmbus.get_rails()
    assert set(shown) == set(BOARD_RAILS[board][0])
    assert list(select_rails(shown, get_board(board).rails)) == [rail]
    assert get_board("pynq-z2").rails == () and FakePynq(board="pynq-z2").pmbus.get_rails() == {}


def test_select_rails_takes_the_first_present_total_rail():
    rails = {"12V": SimpleNamespace(power=_sensor(5.0)), "VCCINT": SimpleNamespace(power=_sensor(1.0))}
    assert list(select_rails(rails, ("12v",))) == ["12V"]
    assert list(select_rails({"VSYS": SimpleNamespace(power=_sensor(2.0))},
                             get_board("ultra96v2").rails)) == ["VSYS"]          # Ultra96-V1 image
    with pytest.raises(PowerUnavailable, match="the board shows: 12V, VCCINT"):
        select_rails(rails, ("INA226",))
    with pytest.raises(PowerUnavailable, match="none.*libsensors"):
        select_rails({}, ("12V",))
    volts_only = {"VIN": SimpleNamespace(power=None, voltage=_sensor(12.0), current=None)}
    with pytest.raises(PowerUnavailable, match="the board shows: VIN"):
        select_rails(volts_only, ("VIN",))


def test_monitor_for_board_and_missing_rails():
    fake = FakePynq(board="zcu104")
    mon = PowerMonitor.for_board(get_board("zcu104"), pynq_module=fake)
    assert mon.rail_names == ("12V",) and mon.read().total == pytest.approx(7.5, abs=0.5)
    broken = FakePynq(board="zcu104", rails=("VCCINT",))
    with pytest.raises(PowerUnavailable, match="none of the power rails 12V"):
        PowerMonitor.for_board(get_board("zcu104"), pynq_module=broken)
    failing = SimpleNamespace(pmbus=SimpleNamespace(get_rails=lambda: (_ for _ in ()).throw(OSError("libsensors.so"))))
    with pytest.raises(PowerUnavailable, match="libsensors"):
        PowerMonitor.for_board(get_board("zcu104"), pynq_module=failing)
    empty = SimpleNamespace(pmbus=SimpleNamespace(get_rails=dict))      # pynq without libsensors
    with pytest.raises(PowerUnavailable, match="the board shows: none"):
        PowerMonitor.for_board(get_board("kv260"), pynq_module=empty)


def test_update_interval_from_the_sensor_hwmon_or_the_ina226_default(tmp_path):
    assert update_interval_of({"r": FakeRail("r", FakeSensor(1.0, update_interval=0.01))}) == 0.01
    plain = {"r": FakeRail("r", _sensor(1.0))}
    assert update_interval_of(plain, hwmon_root=tmp_path) == DEFAULT_UPDATE_INTERVAL == 0.035
    ina = tmp_path / "hwmon3"
    ina.mkdir()
    (ina / "power1_input").write_text("7500000\n")
    (ina / "update_interval").write_text("70\n")        # ms, as drivers/hwmon/ina2xx.c exposes it
    temp = tmp_path / "hwmon0"
    temp.mkdir()
    (temp / "update_interval").write_text("2000\n")      # a temperature sensor: not a power rail
    assert update_interval_of(plain, hwmon_root=tmp_path) == pytest.approx(0.070)


def test_the_fake_monitor_holds_its_reading_between_updates_like_libsensors():
    t = [0.0]
    s = FakeSensor(5.0, update_interval=0.035, clock=lambda: t[0], noise_watts=0.0)
    t[0] = 0.035
    first = s.value
    s.deposit(0.035 * 2.0, seconds=0.035)               # 2 W above idle over the next period
    t[0] = 0.050
    assert s.value == first == 5.0                      # no new conversion yet: the same value
    t[0] = 0.0705
    assert s.value == pytest.approx(7.0)                # the period (0.035, 0.070] averaged
    stale = FakeSensor(5.0, update_interval=0.035, clock=lambda: t[0],
                       faults=Faults(rail_after=0, rail_mode="stale"))
    t[0] = 1.0
    assert stale.value == 5.0 and stale.value == 5.0    # a failed read returns the last value


def test_sensor_updates_count_each_conversion_once():
    s = [PowerSample(t, {"a": v}) for t, v in
         [(0.000, 5.0), (0.005, 5.0), (0.010, 6.0), (0.015, 6.0), (0.020, 6.0), (0.049, 6.0), (0.050, 5.0)]]
    ups = sensor_updates(s, update_interval=0.035)
    assert [(u.t, u.total) for u in ups] == [(0.0, 5.0), (0.010, 6.0), (0.049, 6.0), (0.050, 5.0)]


def test_integrate_rectangles_over_intervals():
    samples = [PowerSample(0.0, {"a": 5.0}), PowerSample(1.0, {"a": 7.0}), PowerSample(3.0, {"a": 6.0})]
    assert integrate(samples) == pytest.approx(7.0 + 12.0)
    assert integrate(samples, baseline=5.0) == pytest.approx(2.0 + 2.0)
    assert integrate(samples[:1]) == 0.0


def test_background_thread_samples_and_stops():
    sensor = FakeSensor(idle_watts=4.0, update_interval=0.005)
    mon = PowerMonitor({"12V": FakeRail("12V", sensor)}, interval=0.001)
    idle = mon.calibrate_idle(0.03)
    assert idle == pytest.approx(4.0, abs=1e-3)
    mon.start()
    with pytest.raises(HardwareError, match="already"):
        mon.start()
    samples = mon.stop()
    assert len(samples) >= 2 and all(s.t <= t.t for s, t in zip(samples, samples[1:]))
    assert not any(t.name == "ohq-power" for t in threading.enumerate())
    assert mon.stop() == []


def test_energy_is_integrated_per_sensor_update_over_a_window_the_sensor_can_resolve():
    # A monitor that refreshes every 10 ms; the work (2 ms per call, 40 uJ each) asked for a
    # 50 ms window. Integrating the repeated readings as fresh over those 50 ms reads the idle
    # updates of the first periods as work (20-45 % low); per update, over a window widened to
    # SETTLE + MIN_BUSY updates, the energy comes back.
    sensor = FakeSensor(idle_watts=6.0, update_interval=0.01, noise_watts=0.0002)
    mon = PowerMonitor({"12V": FakeRail("12V", sensor)})
    assert mon.update_interval == 0.01 and mon.interval == pytest.approx(0.002)
    mon.calibrate_idle()

    def work():
        t_end = time.monotonic() + 0.002
        while time.monotonic() < t_end:
            time.sleep(0.0002)
        sensor.deposit(4e-5, seconds=0.002)
    reading = mon.measure_energy(work, window=0.05)
    assert reading.seconds >= (SETTLE_UPDATES + MIN_BUSY_UPDATES) * 0.01
    # The sampling thread sees every update on an idle machine; on a loaded one (CI, 2 cores
    # shared) it can miss a few, which the per-update mean tolerates.
    assert reading.updates >= MIN_BUSY_UPDATES // 2
    assert reading.joules == pytest.approx(4e-5, rel=0.15)
    assert reading.busy_watts - reading.idle_watts == pytest.approx(4e-5 / (reading.seconds / reading.calls), rel=0.15)
    assert 0 < reading.spread_watts < 0.02 and 0 < reading.joules_stderr < 0.3 * reading.joules
    assert mon.energy_per_call(work, window=0.05) == pytest.approx(4e-5, rel=0.15)
    assert mon.energy_per_call(lambda: time.sleep(0.001), window=0.01) == pytest.approx(0.0, abs=2e-7)


def test_a_stale_rail_is_power_unavailable_not_a_zero_energy():
    # libsensors returns the last value when a read fails: the reading stops changing.
    faults = Faults(rail_after=10 ** 9, rail_mode="stale")
    sensor = FakeSensor(idle_watts=6.0, update_interval=0.002, faults=faults)
    mon = PowerMonitor({"12V": FakeRail("12V", sensor)})
    mon.calibrate_idle(0.05)
    faults.rail_after = faults.rail_reads
    with pytest.raises(PowerUnavailable, match="power rail 12V has not changed .* looks stale"):
        for _ in range(10):
            mon.measure_energy(lambda: time.sleep(0.001), window=0.03)


def test_pynq_4_warning_about_libsensors_becomes_the_reason_not_a_second_warning():
    import warnings
    from ohq_pynq.hw.power import get_rails

    def rails_without_libsensors(config_file=None):
        warnings.warn("Could not initialise libsensors library")     # pynq 4.0 pmbus.py
        return {}
    fake = SimpleNamespace(pmbus=SimpleNamespace(get_rails=rails_without_libsensors))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PowerUnavailable, match="found no rails .Could not initialise libsensors"):
            get_rails(fake)
