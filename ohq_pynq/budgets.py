"""Budgets and their units: what ``--latency-budget 0.75`` or ``--size-budget 1.2MB`` means.

A :class:`Budget` bounds a network total of one metric — ``size`` (bytes of packed weights +
bias), ``latency`` (seconds) or ``energy`` (joules) — either absolutely or as a fraction of the
all-int8 network. :meth:`Budget.parse` reads the command-line form, :func:`format_quantity`
writes an absolute quantity back in a readable unit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

METRICS = ("size", "latency", "energy")
UNITS = {  # metric -> unit -> factor to bytes / seconds / joules
    "size": {"B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024.0, "MiB": 1024.0 ** 2,
             "GiB": 1024.0 ** 3},
    "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
    "energy": {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "nJ": 1e-9},
}
BASE_UNIT = {"size": "B", "latency": "s", "energy": "J"}
_BUDGET_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ%]*)\s*$")


@dataclass(frozen=True)
class Budget:
    """A bound on a network total: ``value`` in bytes / seconds / joules, or, when ``relative``,
    a fraction of the all-reference-bits (all-int8) total."""

    value: float
    relative: bool = False

    @classmethod
    def fraction(cls, value: float) -> "Budget":
        return cls(float(value), True)

    @classmethod
    def absolute(cls, value: float) -> "Budget":
        return cls(float(value), False)

    @classmethod
    def parse(cls, text: str, metric: str) -> "Budget":
        """Parse a command-line budget for ``metric`` ("size", "latency" or "energy").

        Rule: ``0.75``, ``0.75x`` and ``75%`` are fractions of all-int8 (a bare number must be
        ≤ 1; larger multiples need the ``x``); a number with a unit is absolute: size
        B/kB/MB/GB/KiB/MiB/GiB, latency s/ms/us/ns, energy J/mJ/uJ/nJ.
        """
        m = _BUDGET_RE.match(str(text))
        if not m:
            raise ConfigError(f"{metric} budget {text!r} is not a number with an optional unit, "
                              f"e.g. 0.75, 75%, 0.9x or 2.5{example_unit(metric)}")
        number, unit = float(m.group(1)), m.group(2)
        if unit in ("", "x", "X", "%"):
            value = number / 100 if unit == "%" else number
            if unit == "" and value > 1:
                raise ConfigError(f"{metric} budget {text!r} is ambiguous: write {text}x for a multiple of "
                                  f"all-int8, or give a unit, e.g. {text}{example_unit(metric)}")
            return cls(value, True)
        units = UNITS[metric]
        if unit not in units:
            raise ConfigError(f"{metric} budget {text!r} has unit {unit!r}; use one of "
                              f"{', '.join(units)} or a fraction of all-int8 such as 0.75")
        return cls(number * units[unit], False)


def example_unit(metric: str) -> str:
    """A typical absolute unit of ``metric``, for examples in messages."""
    return {"size": "MB", "latency": "ms", "energy": "mJ"}[metric]


def format_quantity(value: float, metric: str) -> str:
    """Human-readable absolute quantity: bytes as kB/MB, seconds as ms/us, joules as mJ/uJ."""
    if metric == "size":
        for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(value) >= f:
                return f"{value / f:.4g} {unit}"
        return f"{value:.4g} B"
    base = BASE_UNIT[metric]
    for prefix, f in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
        if abs(value) >= f:
            return f"{value / f:.4g} {prefix}{base}"
    return f"{value:.4g} {base}"
