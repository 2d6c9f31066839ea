"""OQA — on-chip quantization awareness: measure every quantizable layer at every candidate
bit-width on the accelerator and write ``profile.json`` (schema in :mod:`ohq_pynq.profile`).

For each layer x bits the layer runs with data of its real shape — its own weights quantized at
that width (:func:`ohq_pynq.quant.quantize_weight`), seeded random activations in the range the
core consumes (unsigned where the input is ReLU-family, as the quantizer decides), zero bias and
a requantization that keeps outputs in range — ``repeats`` times (default 5; once on a
deterministic backend such as the simulator, whose repeats are identical). The profile gets the
median cycles, seconds and joules, the spread (max - min) of cycles, the bytes moved over the
streams and the packed weight bytes. Outputs go to ``out_bits = bits``.

Every measurement is cached on disk (atomic JSON, written after each layer x bits) under the key
(model SHA-256, layer, bits, hardware id, bitstream SHA-256): a rerun measures only what is
missing, a killed run resumes where it stopped, and a different board, clock or bitstream never
reuses stale numbers.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import ConfigError, OhqError
from .fileio import file_sha256, read_json, write_json
from .profile import BitCost, Profile, save_profile

CACHE_SCHEMA = 1
DEFAULT_REPEATS = 5


def model_sha256(model) -> str:
    """SHA-256 of the model file (path) or of the serialized ModelProto."""
    if isinstance(model, (str, os.PathLike)):
        return file_sha256(model)
    return hashlib.sha256(model.SerializeToString()).hexdigest()


class MeasurementCache:
    """On-disk cache of raw repeats: ``{"schema": 1, "entries": {key: {"samples": [...], ...}}}``.

    ``path=None`` keeps it in memory only. Each :meth:`put` rewrites the file atomically.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        if self.path is not None and self.path.exists():
            try:
                data = read_json(self.path, "OQA cache")
                if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA:
                    raise ConfigError(f"OQA cache {self.path} has an unknown schema")
                entries = data.get("entries", {})
                if not isinstance(entries, dict):
                    raise ConfigError(f"OQA cache {self.path} has no entries object")
                self.entries = entries
            except ConfigError as err:
                warnings.warn(f"{err}; starting an empty cache", stacklevel=2)
                self.entries = {}

    @staticmethod
    def key(model_hash: str, layer: str, bits: int, hardware_id: str, bitstream: str | None) -> str:
        return "|".join((model_hash, layer, str(bits), hardware_id, bitstream or "-"))

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry
        if self.path is not None:
            write_json(self.path, {"schema": CACHE_SCHEMA, "entries": self.entries})


def layer_inputs(network, layer, bits: int, signed: bool, seed: int = 0):
    """(x_q (H, W, Cin), w_q, Requant) of the layer's real shape at ``bits`` (deterministic)."""
    from .hw.accelerator import Requant, conv_layer
    from .quant import activation_range, quantize_weight, weight_qmax

    conv = conv_layer(layer)
    name_seed = int.from_bytes(hashlib.sha256(f"{layer.name}|{bits}".encode()).digest()[:4], "little")
    rng = np.random.default_rng([seed, name_seed])
    lo, hi = activation_range(bits, signed)
    x = rng.integers(lo, hi + 1, size=(conv.h, conv.w, conv.cin), dtype=np.int64)
    w, _ = quantize_weight(network.weight(layer), bits)
    fan_in = conv.cin_g * conv.kernel * conv.kernel
    typical = max(1.0, max(abs(lo), hi) * weight_qmax(bits) * np.sqrt(fan_in) / 2)
    multiplier = np.full(conv.cout, (1 << (bits - 1)) / typical)
    requant = Requant.from_scales(np.zeros(conv.cout, np.int64), multiplier, relu=False,
                                  out_bits=bits, out_signed=True, in_signed=signed)
    return x, w.astype(np.int64), requant


def _median(values):
    return float(statistics.median(values))


def summarize(samples: list[dict], weight_bytes: int) -> BitCost:
    """Median / spread of raw repeats -> one :class:`BitCost`."""
    cyc = [s["cycles"] for s in samples]
    sec = [s["seconds"] for s in samples]
    jou = [s["joules"] for s in samples]
    joules = None if any(j is None for j in jou) else _median(jou)
    extra = {"repeats": len(samples), "runs": samples[0].get("runs", 1),
             "bytes_in": samples[0]["bytes_in"], "bytes_out": samples[0]["bytes_out"]}
    if joules is not None and len(jou) > 1:
        extra["joules_spread"] = float(max(jou) - min(jou))
    return BitCost(cycles=_median(cyc), seconds=_median(sec), joules=joules,
                   bytes=int(samples[0]["bytes_in"] + samples[0]["bytes_out"]),
                   weight_bytes=int(weight_bytes), cycles_spread=float(max(cyc) - min(cyc)),
                   extra=extra)


def profile_network(model, accelerator, *, bits=(4, 8), repeats: int = DEFAULT_REPEATS,
                    cache: str | os.PathLike | MeasurementCache | None = None, out=None,
                    input_shape=None, seed: int = 0, progress: bool = False,
                    layers: list[str] | None = None) -> Profile:
    """Measure every quantizable layer of ``model`` (path or ModelProto) at each of ``bits`` on
    ``accelerator``; return the :class:`Profile` and write it to ``out`` if given."""
    from .quant import nonnegative_tensors, prepare

    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, not {repeats}.")
    bits = sorted({int(b) for b in bits})
    info = accelerator.describe()
    missing = [b for b in bits if b not in info.cores]
    if missing:
        raise ConfigError(f"the {info.backend} accelerator on {info.board} has no core for "
                          f"{', '.join(map(str, missing))} bits.")
    net = prepare(model, input_shape)
    mhash = model_sha256(model)
    unsigned = nonnegative_tensors(net)
    cache = cache if isinstance(cache, MeasurementCache) else MeasurementCache(cache)
    todo = [l for l in net.layers if layers is None or l.name in layers]
    if layers is not None:
        unknown = sorted(set(layers) - {l.name for l in todo})
        if unknown:
            raise ConfigError(f"no quantizable layer(s) named {', '.join(map(repr, unknown))}.")
    need = 1 if info.deterministic else repeats
    pairs = [(l, b) for l in todo for b in bits]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(pairs), desc="oqa", unit="layer", leave=False)
    result: dict[str, dict[int, BitCost]] = {}
    measured = 0
    t_start = time.perf_counter()
    try:
        for layer, b in pairs:
            key = MeasurementCache.key(mhash, layer.name, b, info.hardware_id, info.bitstream_sha256)
            entry = cache.get(key) or {"samples": []}
            samples = list(entry.get("samples", []))
            if len(samples) < need:
                signed = layer.input not in unsigned
                try:
                    x, w, rq = layer_inputs(net, layer, b, signed, seed)
                    t0 = time.perf_counter()
                    for _ in range(need - len(samples)):
                        _, m = accelerator.run_layer(layer, b, x, w, rq)
                        samples.append({"cycles": int(m.cycles), "seconds": float(m.seconds),
                                        "joules": None if m.joules is None else float(m.joules),
                                        "bytes_in": int(m.bytes_in), "bytes_out": int(m.bytes_out),
                                        "runs": int(m.runs)})
                    measured += 1
                except OhqError as err:
                    raise type(err)(f"layer {layer.name!r} at {b} bits: {err}") from None
                cache.put(key, {"layer": layer.name, "bits": b, "samples": samples,
                                "wall_seconds": time.perf_counter() - t0})
            result.setdefault(layer.name, {})[b] = summarize(samples[:need], layer.weight_bytes(b))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    metadata = {"model": {"source": str(getattr(net, "source", "")), "sha256": mhash},
                "oqa": {"repeats": need, "requested_repeats": repeats, "seed": seed,
                        "bits": bits, "measured": measured, "cached": len(pairs) - measured,
                        "wall_seconds": round(time.perf_counter() - t_start, 3)}}
    prof = Profile(hardware=info.to_json(), layers=result, placeholder=False, metadata=metadata)
    if out is not None:
        save_profile(out, prof)
    return prof


def default_cache_path(out: str | os.PathLike) -> Path:
    """``profile.json`` -> ``profile.oqa-cache.json`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".oqa-cache.json")
