"""Board power from the PMBus / INA rails (``pynq.pmbus.get_rails()``), sampled on a background
thread; no ``DataRecorder`` (it needs pandas).

How the sensors behave (what this module is written against):

* ``get_rails()`` (pynq/pmbus.py) enumerates libsensors chips and groups their features by label
  into ``Rail`` objects with ``voltage``/``current``/``power`` sensors; without libsensors it
  returns ``{}``. ``Sensor.value`` calls ``sensors_get_value`` and ignores its return code, so a
  read that fails returns the **previous value** (a stale reading), never an exception.
* The monitors refresh on their own clock: the Linux ina2xx driver programs an INA226 for 16
  averages of a 1.1 ms bus + 1.1 ms shunt conversion, a new reading every 35.2 ms
  (drivers/hwmon/ina2xx.c: ``INA226_TOTAL_CONV_TIME_DEFAULT`` 2200 us, config 0x4527), exposed as
  the hwmon attribute ``update_interval`` (ms). Each reading is the mean power over its
  conversion period; between refreshes every read returns the same value.

Energy of a layer: a single run lasts micro- to milliseconds, far shorter than one conversion, so
the layer is run back to back for a window of at least ``(SETTLE_UPDATES + MIN_BUSY_UPDATES)``
update intervals (0.49 s at 35 ms; :data:`DEFAULT_ENERGY_WINDOW` is 0.5 s) while the thread samples
the rails several times per update. The samples are collapsed into **sensor updates**
(:func:`sensor_updates`), each counted once however often it was read. An update seen at time
``t`` averages the power over roughly ``[t - update_interval, t]`` and may be read up to one more
interval late, so the updates of the first ``SETTLE_UPDATES`` intervals (which still hold idle
power) are dropped; the rest are averaged:

    joules per call = (mean busy watts - idle watts) * window seconds / calls

with the idle watts the mean of the updates over an idle period measured first
(:meth:`PowerMonitor.calibrate_idle`). The spread of the busy updates is reported with every
reading (:class:`EnergyReading`: standard deviation in watts and the standard error of the joules).
This is the energy the system spends per execution of the layer above idle — the core, DMA, DDR
traffic and the driver's share of the ARM core — on the board's total-power rail
(``boards.py`` cites each board's rail name).

A rail that raises, reads NaN/inf or stops changing for :data:`STALE_UPDATES` update intervals
(what a failed libsensors read looks like) is a :class:`PowerUnavailable`: the accelerator then
marks energy unavailable and keeps measuring latency. ``pynq`` is imported lazily.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import HardwareError
from .accelerator import PowerSample

DEFAULT_UPDATE_INTERVAL = 0.035  # s: INA226 under the Linux ina2xx driver (16 x 2.2 ms), see above
DEFAULT_ENERGY_WINDOW = 0.5      # s of back-to-back runs per energy reading
SETTLE_UPDATES = 2               # update intervals dropped at the start of a window (idle in them)
MIN_BUSY_UPDATES = 12            # sensor updates averaged per reading, at least
STALE_UPDATES = 25               # an unchanged reading over this many update intervals is stale
HWMON_ROOT = Path("/sys/class/hwmon")


class PowerUnavailable(HardwareError):
    """The power rails cannot give energy: none of the board's rails is there (or libsensors
    is missing), or a rail stopped answering (raised, read NaN/inf, or went stale) while
    sampling. The accelerator catches this, marks energy unavailable and keeps measuring
    latency."""


@dataclass(frozen=True)
class EnergyReading:
    """One energy measurement of :meth:`PowerMonitor.measure_energy`.

    ``joules``: energy per call above idle (J, >= 0); ``joules_stderr``: its standard error from
    the spread of the sensor updates (J); ``busy_watts``/``idle_watts``: mean power with the work
    running / idle (W); ``spread_watts``: standard deviation of the busy updates (W);
    ``updates``: sensor updates averaged; ``calls``: calls of the work; ``seconds``: the busy
    window (s); ``update_interval``: the sensor's refresh period (s)."""

    joules: float
    joules_stderr: float
    busy_watts: float
    idle_watts: float
    spread_watts: float
    updates: int
    calls: int
    seconds: float
    update_interval: float

    @property
    def rel_stderr(self) -> float:
        """Standard error relative to the energy (inf when the energy is 0)."""
        return self.joules_stderr / self.joules if self.joules > 0 else math.inf

    def to_json(self) -> dict:
        return {"joules": self.joules, "joules_stderr": self.joules_stderr,
                "busy_watts": self.busy_watts, "idle_watts": self.idle_watts,
                "spread_watts": self.spread_watts, "updates": self.updates, "calls": self.calls,
                "seconds": self.seconds, "update_interval": self.update_interval}


def rail_watts(rail) -> float:
    """Watts of one pynq ``Rail``: its power sensor, else voltage x current. A sensor that
    raises or reads NaN/inf is a :class:`PowerUnavailable`."""
    name = getattr(rail, "name", "?")
    try:
        if getattr(rail, "power", None) is not None:
            watts = float(rail.power.value)
        elif getattr(rail, "voltage", None) is not None and getattr(rail, "current", None) is not None:
            watts = float(rail.voltage.value) * float(rail.current.value)
        else:
            raise HardwareError(f"rail {name} has neither a power sensor nor voltage and current.")
    except HardwareError:
        raise
    except Exception as err:  # OSError from a vanished hwmon file, ValueError from garbage, ...
        raise PowerUnavailable(f"power rail {name} cannot be read ({type(err).__name__}: {err}).") from None
    if not math.isfinite(watts):
        raise PowerUnavailable(f"power rail {name} reads {watts} W.")
    return watts


def gives_watts(rail) -> bool:
    """True when ``rail`` has a power sensor, or a voltage and a current sensor."""
    return getattr(rail, "power", None) is not None or (
        getattr(rail, "voltage", None) is not None and getattr(rail, "current", None) is not None)


def select_rails(available: dict, wanted) -> dict:
    """The first of ``wanted`` rail names present (case-insensitive) that can give watts.

    One total-power rail is used (summing a total with its sub-rails would double count);
    several names are alternatives for the same monitor on different images. None of them
    present is a :class:`PowerUnavailable` naming what the board shows.
    """
    lower = {name.lower(): name for name in available}
    for name in wanted:
        key = lower.get(str(name).lower())
        if key is not None and gives_watts(available[key]):
            return {key: available[key]}
    have = ", ".join(sorted(available)) or "none (is libsensors installed and configured?)"
    raise PowerUnavailable(f"none of the power rails {', '.join(wanted) or '(none listed)'} was "
                           f"found (the board shows: {have}).")


def get_rails(pynq_module=None) -> dict:
    """``pynq.pmbus.get_rails()`` (name -> Rail); a :class:`PowerUnavailable` when pynq.pmbus
    cannot be imported or the call fails."""
    if pynq_module is None:
        try:
            import pynq.pmbus as pmbus
        except Exception as err:  # ImportError, or pandas/cffi missing inside pynq.pmbus
            raise PowerUnavailable(f"power measurement needs pynq.pmbus ({err}).") from None
    else:
        pmbus = pynq_module.pmbus
    try:
        with warnings.catch_warnings(record=True) as caught:   # pynq 4 warns when libsensors is missing
            warnings.simplefilter("always")
            rails = dict(pmbus.get_rails() or {})
    except Exception as err:   # libsensors missing or broken
        raise PowerUnavailable(f"cannot read the power rails (pynq.pmbus.get_rails: {err}).") from None
    if not rails and caught:
        raise PowerUnavailable(f"pynq.pmbus.get_rails() found no rails ({caught[0].message}).")
    return rails


def update_interval_of(rails: dict, hwmon_root: Path = HWMON_ROOT) -> float:
    """The refresh period (s) of the monitors behind ``rails``: a sensor's own
    ``update_interval`` attribute (seconds) where it has one, else the largest ``update_interval``
    (ms) of the hwmon devices with a power input under ``hwmon_root``, else
    :data:`DEFAULT_UPDATE_INTERVAL`."""
    found = []
    for rail in rails.values():
        for kind in ("power", "current", "voltage"):
            value = getattr(getattr(rail, kind, None), "update_interval", None)
            if isinstance(value, (int, float)) and value > 0:
                found.append(float(value))
                break
    if found:
        return max(found)
    try:
        for dev in sorted(Path(hwmon_root).glob("hwmon*")):
            attr = dev / "update_interval"
            if attr.is_file() and any(dev.glob("power*_input")):
                ms = float(attr.read_text().strip())
                if ms > 0:
                    found.append(ms / 1000.0)
    except (OSError, ValueError):
        pass
    return max(found) if found else DEFAULT_UPDATE_INTERVAL


def sensor_updates(samples: list[PowerSample], update_interval: float) -> list[PowerSample]:
    """The distinct sensor updates in a stream of samples, each stamped with the time it was
    first seen. A monitor refreshes every ``update_interval`` and every read in between returns
    the last conversion, so a sample starts a new update when its value differs from the current
    one, or when a whole interval has passed since the current one was first seen (the monitor
    refreshed to an equal value)."""
    out: list[PowerSample] = []
    for s in samples:
        if not out or s.total != out[-1].total or s.t - out[-1].t >= update_interval:
            out.append(s)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


class PowerMonitor:
    """Samples ``rails`` (name -> pynq Rail) on a daemon thread, several times per sensor update.

    ``update_interval``: the sensors' refresh period (s; default: read from the sensors or hwmon,
    see :func:`update_interval_of`); ``interval``: seconds between samples (default a fifth of the
    update interval, 1-20 ms)."""

    def __init__(self, rails: dict, interval: float | None = None, clock=time.monotonic,
                 update_interval: float | None = None):
        if not rails:
            raise PowerUnavailable("no power rails to monitor.")
        self.rails = dict(rails)
        self.update_interval = float(update_interval or update_interval_of(self.rails))
        self.interval = float(interval or min(0.02, max(0.001, self.update_interval / 5)))
        self.clock = clock
        self.idle_watts: float | None = None
        self.idle_spread_watts: float | None = None
        self._samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_total: float | None = None   # stale detection: the last total read ...
        self._changed_at = 0.0                   # ... and when it last changed (s)
        self.error: str | None = None          # why sampling failed during the current window

    @classmethod
    def for_board(cls, board, pynq_module=None, interval: float | None = None) -> "PowerMonitor":
        """The monitor of ``board``'s rails via ``pynq.pmbus.get_rails()``; a
        :class:`PowerUnavailable` when none of them is there."""
        if not board.rails:
            raise PowerUnavailable(f"board {board.name} has no power rails.")
        return cls(select_rails(get_rails(pynq_module), board.rails), interval=interval)

    @property
    def rail_names(self) -> tuple:
        return tuple(self.rails)

    def read(self) -> PowerSample:
        """One reading of every rail now."""
        return PowerSample(t=self.clock(), watts={n: rail_watts(r) for n, r in self.rails.items()})

    # -- background sampling -------------------------------------------------------------
    def _record(self, s: PowerSample) -> None:
        with self._lock:
            if s.total != self._last_total:
                self._last_total, self._changed_at = s.total, s.t
            self._samples.append(s)

    def _loop(self):
        while not self._stop.is_set():
            try:
                s = self.read()
            except Exception as err:  # noqa: BLE001 - never let the sampling thread die noisily
                self.error = str(err)
                return
            self._record(s)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is not None:
            raise HardwareError("the power monitor is already sampling.")
        self.error = None
        first = self.read()                    # the window starts now, not at the first tick
        with self._lock:
            self._samples = []
        self._record(first)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ohq-power", daemon=True)
        self._thread.start()

    def stop(self) -> list[PowerSample]:
        """Stop sampling (one last reading is taken) and return the samples in time order; a
        :class:`PowerUnavailable` when a rail failed or went stale during the window."""
        if self._thread is None:
            return []
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            self._record(self.read())
        except PowerUnavailable as err:
            self.error = self.error or str(err)
        with self._lock:
            samples = list(self._samples)
        if self.error is None and samples:
            unchanged = samples[-1].t - self._changed_at
            if unchanged > STALE_UPDATES * self.update_interval:
                names = ", ".join(self.rails)
                self.error = (f"power rail {names} has not changed for {unchanged:.2f} s "
                              f"({unchanged / self.update_interval:.0f} sensor updates): it looks "
                              f"stale (libsensors returns the last value when a read fails).")
        if self.error is not None:
            raise PowerUnavailable(self.error)
        return samples

    def calibrate_idle(self, seconds: float | None = None) -> float:
        """Mean total watts of the sensor updates over ``seconds`` (default: 10 update
        intervals, at least 0.2 s) with nothing running: the idle baseline."""
        seconds = max(0.2, 10 * self.update_interval) if seconds is None else seconds
        self.start()
        time.sleep(seconds)
        updates = sensor_updates(self.stop(), self.update_interval)
        self.idle_watts, self.idle_spread_watts = _mean_std([u.total for u in updates])
        return self.idle_watts

    def measure_energy(self, fn, window: float = DEFAULT_ENERGY_WINDOW,
                       min_calls: int = 3) -> EnergyReading:
        """Call ``fn`` back to back for at least ``window`` seconds — widened to
        ``SETTLE_UPDATES + MIN_BUSY_UPDATES`` update intervals — and ``min_calls`` times while
        sampling; the energy per call above the idle baseline, averaged per sensor update."""
        if self.idle_watts is None:
            self.calibrate_idle()
        window = max(float(window), (SETTLE_UPDATES + MIN_BUSY_UPDATES) * self.update_interval)
        self.start()
        try:
            t0 = self.clock()
            calls = 0
            while calls < min_calls or self.clock() - t0 < window:
                fn()
                calls += 1
            t1 = self.clock()
        except BaseException:
            try:
                self.stop()
            except PowerUnavailable:
                pass                   # the error of fn() is the one to report
            raise
        samples = self.stop()          # PowerUnavailable when a rail failed in the window
        settled = t0 + SETTLE_UPDATES * self.update_interval
        busy = [u.total for u in sensor_updates(samples, self.update_interval) if u.t >= settled]
        if not busy:
            raise PowerUnavailable(f"power rail {', '.join(self.rails)} gave no reading in "
                                   f"{t1 - t0:.2f} s of work.")
        mean, std = _mean_std(busy)
        per_call = (t1 - t0) / calls
        return EnergyReading(joules=max(0.0, (mean - self.idle_watts) * per_call),
                             joules_stderr=std / math.sqrt(len(busy)) * per_call,
                             busy_watts=mean, idle_watts=self.idle_watts, spread_watts=std,
                             updates=len(busy), calls=calls, seconds=t1 - t0,
                             update_interval=self.update_interval)

    def energy_per_call(self, fn, window: float = DEFAULT_ENERGY_WINDOW, min_calls: int = 3) -> float:
        """Joules per call of ``fn`` above idle (:meth:`measure_energy` without the spread)."""
        return self.measure_energy(fn, window, min_calls).joules

    def close(self) -> None:
        try:
            self.stop()
        except PowerUnavailable:
            pass


def integrate(samples: list[PowerSample], baseline: float = 0.0) -> float:
    """Integral of (total watts - baseline) over the samples' times (joules), each reading
    standing for the interval since the previous one. Only right for samples that are each a
    fresh average (one per sensor update): see :func:`sensor_updates`."""
    e = 0.0
    for a, b in zip(samples, samples[1:]):
        e += (b.total - baseline) * (b.t - a.t)
    return e
