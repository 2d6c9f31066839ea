"""Board power from the PMBus / INA rails (``pynq.pmbus.get_rails()``), sampled on a background
thread; no ``DataRecorder`` (it needs pandas).

Energy of a layer: a single run lasts micro- to milliseconds, shorter than one sensor conversion,
so the layer is run back to back for ``window`` seconds while the thread samples the rails;
``joules per run = integral of (P(t) - P_idle) dt over the window / runs``, with
``P_idle`` the mean of the rails over an idle period measured first (:meth:`calibrate_idle`).
This is the energy the system spends per execution of the layer above idle — the core, DMA,
DDR traffic and the driver's share of the ARM core — on the rails listed for the board
(ZCU104 ``12V``, Ultra96-V2 the INA226 monitor, KV260 its INA260; see ``boards.py``).
``pynq`` is imported lazily.
"""
from __future__ import annotations

import math
import threading
import time

from ..errors import HardwareError
from .accelerator import PowerSample

DEFAULT_INTERVAL = 0.002    # seconds between samples (the sensors update every ~1-2 ms)


class PowerUnavailable(HardwareError):
    """A power rail stopped answering (vanished, raised, or read NaN/inf) while sampling: the
    energy of the current measurement is unknown. The accelerator catches this, marks energy
    unavailable and keeps measuring latency."""


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


def select_rails(available: dict, wanted) -> dict:
    """The first of ``wanted`` rail names present (case-insensitive) that can give watts.

    One total-power rail is used (summing a total with its sub-rails would double count);
    several names are alternatives for the same monitor on different images.
    """
    lower = {name.lower(): name for name in available}
    for name in wanted:
        key = lower.get(str(name).lower())
        if key is not None:
            rail = available[key]
            if getattr(rail, "power", None) is not None or (
                    getattr(rail, "voltage", None) is not None and getattr(rail, "current", None) is not None):
                return {key: rail}
    have = ", ".join(sorted(available)) or "none"
    raise HardwareError(f"none of the power rails {', '.join(wanted)} was found (the board shows: "
                        f"{have}); pass power=False or add the rail name to the board profile.")


class PowerMonitor:
    """Samples ``rails`` (name -> pynq Rail) every ``interval`` seconds on a daemon thread."""

    def __init__(self, rails: dict, interval: float = DEFAULT_INTERVAL, clock=time.monotonic):
        if not rails:
            raise HardwareError("no power rails to monitor.")
        self.rails = dict(rails)
        self.interval = interval
        self.clock = clock
        self.idle_watts: float | None = None
        self._samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None          # why sampling failed during the current window

    @classmethod
    def for_board(cls, board, pynq_module=None, interval: float = DEFAULT_INTERVAL) -> "PowerMonitor":
        """The monitor of ``board``'s rails via ``pynq.pmbus.get_rails()``."""
        if pynq_module is None:
            try:
                import pynq.pmbus as pmbus
            except ImportError as err:
                raise HardwareError(f"power measurement needs pynq.pmbus ({err}).") from None
        else:
            pmbus = pynq_module.pmbus
        try:
            available = pmbus.get_rails()
        except Exception as err:   # libsensors missing or broken
            raise HardwareError(f"cannot read the power rails (pynq.pmbus.get_rails: {err}).") from None
        return cls(select_rails(available or {}, board.rails), interval=interval)

    @property
    def rail_names(self) -> tuple:
        return tuple(self.rails)

    def read(self) -> PowerSample:
        """One reading of every rail now."""
        return PowerSample(t=self.clock(), watts={n: rail_watts(r) for n, r in self.rails.items()})

    # -- background sampling -------------------------------------------------------------
    def _loop(self):
        while not self._stop.is_set():
            try:
                s = self.read()
            except Exception as err:  # noqa: BLE001 - never let the sampling thread die noisily
                self.error = str(err)
                return
            with self._lock:
                self._samples.append(s)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is not None:
            raise HardwareError("the power monitor is already sampling.")
        self.error = None
        self._samples = [self.read()]          # the window starts now, not at the first tick
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ohq-power", daemon=True)
        self._thread.start()

    def stop(self) -> list[PowerSample]:
        """Stop sampling (one last reading is taken) and return the samples in time order."""
        if self._thread is None:
            return []
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            samples = list(self._samples)
        try:
            samples.append(self.read())
        except PowerUnavailable as err:
            self.error = self.error or str(err)
        if self.error is not None:
            raise PowerUnavailable(self.error)
        return samples

    def calibrate_idle(self, seconds: float = 0.2) -> float:
        """Mean total watts over ``seconds`` with nothing running: the idle baseline."""
        self.start()
        time.sleep(seconds)
        samples = self.stop()
        self.idle_watts = sum(s.total for s in samples) / len(samples)
        return self.idle_watts

    def energy_per_call(self, fn, window: float = 0.05, min_calls: int = 3) -> float:
        """Call ``fn`` back to back for at least ``window`` seconds (and ``min_calls`` times)
        while sampling; joules per call above the idle baseline (>= 0)."""
        if self.idle_watts is None:
            self.calibrate_idle()
        self.start()
        try:
            t_end = self.clock() + window
            calls = 0
            while calls < min_calls or self.clock() < t_end:
                fn()
                calls += 1
        except BaseException:
            try:
                self.stop()
            except PowerUnavailable:
                pass                   # the error of fn() is the one to report
            raise
        samples = self.stop()          # PowerUnavailable when a rail failed in the window
        return max(0.0, integrate(samples, self.idle_watts) / calls)

    def close(self) -> None:
        try:
            self.stop()
        except PowerUnavailable:
            pass


def integrate(samples: list[PowerSample], baseline: float = 0.0) -> float:
    """Integral of (total watts - baseline) over the samples' times (joules). Each reading
    stands for the interval since the previous one, as the INA226/INA260/PMBus monitors report
    the average over their last conversion period."""
    e = 0.0
    for a, b in zip(samples, samples[1:]):
        e += (b.total - baseline) * (b.t - a.t)
    return e
