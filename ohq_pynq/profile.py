"""``profile.json``: measured hardware cost of every layer at every candidate bit-width.

Schema (version 1), written by OQA (:mod:`ohq_pynq.oqa`) and read by the ILP::

    {"schema": 1,
     "hardware": {...board, clock, cores...},
     "placeholder": false,                 # true for an estimate (oqa.simulated_profile)
     "layers": {name: {"4": {"cycles": median cycles, "cycles_spread": cycles or null,
                             "seconds": s, "joules": J or null, "bytes": bytes moved,
                             "weight_bytes": bytes of packed weights + bias,
                             # optional, from OQA:
                             "core_seconds": counter / clock, "overhead_seconds": s,
                             "overheads": {"registers": s, "dma_setup": s, "cache": s,
                                           "poll": s, "pack": s},
                             "joules_stderr": J, "joules_rel_stderr": fraction,
                             "joules_std": J, "energy_updates": n, ...}, "8": {...}}}}

``seconds`` is the layer's latency end to end on the board: the core's counter plus the
overheads outside it (register programming, DMA set-up, cache maintenance, poll latency, the
driver's packing); this is what the ILP optimises. ``joules_stderr`` is the standard error of
``joules`` from the power sensor's updates (the spread of the measurement), where measured.

``joules`` is null on boards without power rails (PYNQ-Z2); :attr:`Profile.has_energy` is then
False and an energy budget is a :class:`~ohq_pynq.errors.ConfigError` in the ILP. Unknown extra
keys are kept on load and written back on save.

:func:`ohq_pynq.oqa.simulated_profile` estimates a profile from layer shapes with the simulator,
for use until a board has profiled the model; it is labelled ``"placeholder": true`` and the ILP
warns when it solves with it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError
from .fileio import read_json, write_json

SCHEMA = 1

_KNOWN_KEYS = ("cycles", "cycles_spread", "seconds", "joules", "bytes", "weight_bytes")


@dataclass
class BitCost:
    """Cost of one layer at one bit-width: cycles, seconds, joules (None: no power rails), bytes."""

    cycles: float                       # median core cycles, start to done
    seconds: float                      # median seconds (cycles / PL clock)
    joules: float | None                # median energy (J), None when the board has no power rails
    bytes: int                          # bytes moved over the bus (weights + activations)
    weight_bytes: int | None = None     # bytes of the packed weights + bias (model size)
    cycles_spread: float | None = None  # spread of the repeats (cycles), None if not measured
    extra: dict = field(default_factory=dict)  # any further keys of the file, kept verbatim

    def latency(self, estimate: str | float = "median") -> float:
        """Seconds for the ILP: ``"median"`` (default); ``"p90"``, the stored 90th percentile of
        the repeats (the median when the profile has none); or ``k`` / ``"spread:k"``, the median
        plus ``k`` x the spread of the repeats (a conservative bound on noisy hardware)."""
        mode = estimate
        if mode == "median":
            return self.seconds
        if mode == "p90":
            return float(self.extra.get("seconds_p90", self.seconds))
        if isinstance(mode, str) and mode.startswith("spread:"):
            mode = mode.split(":", 1)[1]
        try:
            k = float(mode)
        except (TypeError, ValueError):
            raise ConfigError(f"latency estimate {estimate!r} must be 'median', 'p90' or "
                              f"'spread:K' (median + K x spread), e.g. 'spread:1'") from None
        if not math.isfinite(k) or k < 0:
            raise ConfigError(f"latency estimate {estimate!r}: K must be a finite number >= 0")
        core = float(self.extra.get("core_seconds", self.seconds))   # the counter's seconds
        per_cycle = core / self.cycles if self.cycles else 0.0
        return self.seconds + k * float(self.cycles_spread or 0.0) * per_cycle

    @property
    def core_seconds(self) -> float:
        """The core counter's seconds (``seconds`` without the board's overheads)."""
        return float(self.extra.get("core_seconds", self.seconds))

    @property
    def overhead_seconds(self) -> float:
        """Seconds the board adds outside the core's counter (0 where not profiled)."""
        return float(self.extra.get("overhead_seconds", 0.0))

    def to_json(self) -> dict:
        out = {"cycles": self.cycles, "cycles_spread": self.cycles_spread, "seconds": self.seconds,
               "joules": self.joules, "bytes": self.bytes}
        if self.weight_bytes is not None:
            out["weight_bytes"] = self.weight_bytes
        out.update(self.extra)
        return out


@dataclass
class Profile:
    """A loaded profile: ``layers[name][bits] -> BitCost`` in the file's (topological) layer order."""

    hardware: dict
    layers: dict[str, dict[int, BitCost]]
    placeholder: bool = False
    metadata: dict = field(default_factory=dict)   # other top-level keys, kept verbatim

    @property
    def has_energy(self) -> bool:
        """True when every layer at every bit-width has a measured energy."""
        return all(c.joules is not None for costs in self.layers.values() for c in costs.values())

    @property
    def has_weight_bytes(self) -> bool:
        return all(c.weight_bytes is not None for costs in self.layers.values() for c in costs.values())

    @property
    def bits(self) -> tuple[int, ...]:
        """Bit-widths profiled for every layer, ascending."""
        common = None
        for costs in self.layers.values():
            common = set(costs) if common is None else common & set(costs)
        return tuple(sorted(common or ()))

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "hardware": self.hardware, "placeholder": self.placeholder,
                **self.metadata,
                "layers": {name: {str(b): c.to_json() for b, c in sorted(costs.items())}
                           for name, costs in self.layers.items()}}


def _number(value: Any, where: str, key: str, *, integer: bool = False, optional: bool = False):
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value) and value >= 0 and (not integer or float(value).is_integer())
    if not ok:
        kind = "a whole number" if integer else "a finite number"
        null = " or null" if optional else ""
        raise ConfigError(f"{where}: {key!r} must be {kind} >= 0{null}, got {value!r}")
    return int(value) if integer else float(value)


def parse_profile(obj: Any, source: str = "profile") -> Profile:
    """Validate a decoded ``profile.json`` object; any problem is one :class:`ConfigError`."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{source} must be a JSON object with 'schema', 'hardware' and 'layers'")
    if obj.get("schema") != SCHEMA:
        raise ConfigError(f"{source} has schema {obj.get('schema')!r}; this version reads schema {SCHEMA}")
    hardware = obj.get("hardware", {})
    if not isinstance(hardware, dict):
        raise ConfigError(f"{source}: 'hardware' must be an object")
    layers_obj = obj.get("layers")
    if not isinstance(layers_obj, dict) or not layers_obj:
        raise ConfigError(f"{source}: 'layers' must be a non-empty object of layer name -> bits -> cost")
    layers: dict[str, dict[int, BitCost]] = {}
    for name, per_bits in layers_obj.items():
        if not isinstance(per_bits, dict) or not per_bits:
            raise ConfigError(f"{source}: layer {name!r} must map bit-widths (e.g. \"4\", \"8\") to costs")
        costs: dict[int, BitCost] = {}
        for key, entry in per_bits.items():
            if not (isinstance(key, str) and key.isdigit() and int(key) > 0):
                raise ConfigError(f"{source}: layer {name!r} has bit-width key {key!r}, expected e.g. \"4\"")
            where = f"{source}: layer {name!r} at {key} bits"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} must be an object with cycles, seconds, joules and bytes")
            for req in ("cycles", "seconds", "bytes"):
                if req not in entry:
                    raise ConfigError(f"{where} is missing {req!r}")
            costs[int(key)] = BitCost(
                cycles=_number(entry["cycles"], where, "cycles"),
                seconds=_number(entry["seconds"], where, "seconds"),
                joules=_number(entry.get("joules"), where, "joules", optional=True),
                bytes=_number(entry["bytes"], where, "bytes", integer=True),
                weight_bytes=_number(entry.get("weight_bytes"), where, "weight_bytes",
                                     integer=True, optional=True),
                cycles_spread=_number(entry.get("cycles_spread"), where, "cycles_spread", optional=True),
                extra={k: v for k, v in entry.items() if k not in _KNOWN_KEYS},
            )
        layers[str(name)] = dict(sorted(costs.items()))
    placeholder = obj.get("placeholder", False)
    if not isinstance(placeholder, bool):
        raise ConfigError(f"{source}: 'placeholder' must be true or false")
    metadata = {k: v for k, v in obj.items() if k not in ("schema", "hardware", "layers", "placeholder")}
    return Profile(hardware=hardware, layers=layers, placeholder=placeholder, metadata=metadata)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate ``profile.json``."""
    return parse_profile(read_json(path, "profile"), f"profile {path}")


def save_profile(path: str | os.PathLike, profile: Profile) -> None:
    """Atomically write ``profile`` as ``profile.json``."""
    write_json(path, profile.to_json())


def profile_from_mapping(layers: Mapping[str, Mapping[int, Mapping[str, Any]]], hardware: dict | None = None,
                         placeholder: bool = False) -> Profile:
    """Build a validated Profile from ``{name: {bits: {cycles, seconds, joules, bytes, ...}}}``."""
    obj = {"schema": SCHEMA, "hardware": hardware or {}, "placeholder": placeholder,
           "layers": {n: {str(b): dict(c) for b, c in per.items()} for n, per in layers.items()}}
    return parse_profile(obj, "profile")
