"""``config.json``: the per-layer bit-width assignment, ``{"layers": {name: bits}, ...metadata}``.

Written by the ILP (``solve``), read by ``quantize --bits CONFIG.json`` and ``deploy``; users may
hand-edit it. A bare ``{name: bits}`` mapping is accepted too.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from .errors import ConfigError
from .fileio import read_json, write_json

SUPPORTED_BITS = (4, 8)
SCHEMA = 1


def save_config(path: str | os.PathLike, layers: Mapping[str, int], **metadata) -> None:
    """Atomically write ``{"schema": 1, "layers": {name: bits}, **metadata}``."""
    write_json(path, {"schema": SCHEMA, "layers": {k: int(v) for k, v in layers.items()}, **metadata})


def load_config(path: str | os.PathLike) -> dict[str, int]:
    """Read a config file and return ``{layer name: bits}`` (not yet checked against a model)."""
    obj = read_json(path, "bit-width config")
    layers = obj.get("layers", obj) if isinstance(obj, dict) else None
    if not isinstance(layers, dict):
        raise ConfigError(f"bit-width config {path} must map layer names to bits, "
                          'e.g. {"layers": {"conv1": 8}}')
    out = {}
    for name, bits in layers.items():
        if name == "schema":
            continue
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise ConfigError(f"bit-width config {path}: layer {name!r} has bits {bits!r}, "
                              f"expected one of {list(SUPPORTED_BITS)}")
        out[name] = bits
    return out


def resolve_bits(spec: int | str | Mapping[str, int], layer_names: Iterable[str],
                 supported: Iterable[int] = SUPPORTED_BITS, default: int | None = None) -> dict[str, int]:
    """Turn a uniform width (``8``, ``"4"``), a mapping, or a config path into bits for every layer.

    Unknown layer names and unsupported widths are :class:`ConfigError`; layers missing from a
    mapping take ``default`` (an error when ``default`` is None).
    """
    names = list(layer_names)
    supported = tuple(supported)
    if isinstance(spec, str) and spec.strip().lstrip("-").isdigit():
        spec = int(spec)
    if isinstance(spec, int) and not isinstance(spec, bool):
        mapping = {n: spec for n in names}
    elif isinstance(spec, Mapping):
        mapping = dict(spec)
    else:
        mapping = load_config(spec)
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ConfigError(f"bit-width config names layer(s) not in the model: {', '.join(unknown)} "
                          f"(see `python -m ohq_pynq inspect MODEL` for the layer names)")
    bad = sorted({b for b in mapping.values() if b not in supported})
    if bad:
        raise ConfigError(f"bit-width(s) {bad} not supported by the cores; choose from {list(supported)}")
    missing = [n for n in names if n not in mapping]
    if missing and default is None:
        raise ConfigError(f"bit-width config is missing layer(s): {', '.join(missing)}")
    return {n: int(mapping.get(n, default)) for n in names}
