"""``sensitivity.json``: how much each layer's accuracy suffers at fewer bits.

Schema (version 1), written by MQE (:func:`ohq_pynq.mqe.sensitivity`, both estimators) and read
by the ILP::

    {"schema": 1, "estimator": "mqe" | "exact", "perturbation": "rounding" | "mask" | null,
     "alpha": ..., "seed": ..., "images": N,
     "unit": "nats ...", "seconds": s,
     "layers": {name: S}}                  # S: sensitivity at 4 bits (KL, nats); 0 at 8 bits

or, for other candidate widths, ``"layers": {name: {"4": S4, "8": S8, ...}}``. Larger S means the
layer should keep more bits; at :data:`REFERENCE_BITS` it is 0 by definition (MQE's reference is
the int8 model). Other top-level keys are metadata, kept as they are.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

from .errors import ConfigError
from .fileio import read_json, write_json

SCHEMA = 1
REFERENCE_BITS = 8          # sensitivity is 0 here by definition (MQE's int8 reference)


def save_sensitivity(path: str | os.PathLike, result: Mapping) -> None:
    """Atomically write an MQE result (the dict :func:`ohq_pynq.mqe.sensitivity` returns)."""
    write_json(path, dict(result))


def load_sensitivity(source: str | os.PathLike | Mapping, bits: Sequence[int] = (4, REFERENCE_BITS)
                     ) -> tuple[dict[str, dict[int, float]], dict]:
    """Read ``sensitivity.json`` (or its decoded object) as ``{layer: {bits: S}}`` plus metadata.

    Accepts ``{"layers": {name: v}}`` — v is the sensitivity at 4 bits, 0 at 8 bits (only valid
    for candidates {4, 8}) — and ``{"layers": {name: {"4": v4, "8": v8}}}``
    for any set (a missing "8" is 0). Values must be finite; KL round-off down to -1e-9 reads as 0.
    """
    where = "sensitivity"
    if isinstance(source, (str, os.PathLike)):
        where = f"sensitivity file {source}"
        source = read_json(source, "sensitivity file")
    if not isinstance(source, Mapping):
        raise ConfigError(f"{where} must be a JSON object with 'layers'")
    layers = source.get("layers")
    if not isinstance(layers, Mapping) or not layers:
        raise ConfigError(f"{where} must have a non-empty 'layers' object mapping layer names to values")
    if "schema" in source and source["schema"] != SCHEMA:
        raise ConfigError(f"{where} has schema {source['schema']!r}; this version reads schema {SCHEMA}")
    bits = tuple(sorted(set(bits)))
    out: dict[str, dict[int, float]] = {}
    for name, value in layers.items():
        if isinstance(value, Mapping):
            per = {}
            for key, v in value.items():
                if not (isinstance(key, str) and key.isdigit()):
                    raise ConfigError(f"{where}: layer {name!r} has bit-width key {key!r}, expected e.g. \"4\"")
                per[int(key)] = v
            per.setdefault(REFERENCE_BITS, 0.0)
        else:
            if bits != (4, REFERENCE_BITS):
                raise ConfigError(f"{where} gives one value per layer (its sensitivity at 4 bits), which only "
                                  f"defines candidates [4, 8]; got candidates {list(bits)}")
            per = {4: value, REFERENCE_BITS: 0.0}
        clean = {}
        for b in bits:
            if b not in per:
                raise ConfigError(f"{where}: layer {name!r} has no sensitivity at {b} bits")
            v = per[b]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < -1e-9:
                raise ConfigError(f"{where}: layer {name!r} at {b} bits has sensitivity {v!r}; "
                                  f"expected a finite number >= 0")
            clean[b] = max(0.0, float(v))
        out[str(name)] = clean
    meta = {k: v for k, v in source.items() if k != "layers"}
    return out, meta
