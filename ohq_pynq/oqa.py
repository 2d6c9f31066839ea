"""OQA — on-chip quantization awareness: measure every quantizable layer at every candidate
bit-width on the accelerator and write ``profile.json`` (schema in :mod:`ohq_pynq.profile`).

For each layer x bits the layer runs with data of its real shape — its own weights quantized at
that width (:func:`ohq_pynq.quant.quantize_weight`), seeded random activations in the range the
core consumes (unsigned where the input is ReLU-family, as the quantizer decides), zero bias and
a requantization that keeps outputs in range — ``repeats`` times (default 5; once on a
deterministic backend such as the simulator with ``arm_time="off"``, whose repeats are
identical). The profile gets the median cycles, seconds and joules, the spread (max - min) of
cycles, the bytes moved over the streams and the packed weight bytes. Outputs go to
``out_bits = bits``.

``seconds`` is what the layer costs end to end on the board, the core's counter plus what the
board adds outside it (:mod:`ohq_pynq.hw.overheads`: register programming, DMA set-up, cache
maintenance, poll latency, the driver's numpy packing), so the ILP optimises what deployment
pays; ``core_seconds`` (counter / clock), ``overhead_seconds`` and ``overheads`` (median seconds
by category) say how it splits.

Energy spread: where the backend measures energy on power rails, each reading comes with the
standard error of its sensor updates (:class:`ohq_pynq.hw.power.EnergyReading`); the profile
keeps, next to the median ``joules``, ``joules_stderr`` (standard error of the mean of the
repeats' readings, sqrt(sum se_i^2) / n), ``joules_rel_stderr`` (over ``joules``), ``joules_std``
(standard deviation between repeats) and ``energy_updates`` (sensor updates averaged), and
``metadata["oqa"]["energy_spread"]`` the median and largest relative standard error.

Noisy hardware: on a non-deterministic backend a (layer, bits) whose cycle spread exceeds
``max_spread`` x median (and :data:`MIN_SPREAD_CYCLES`) is unstable; it is measured again,
``repeats`` runs at a time, up to ``max_repeats`` runs. The profile records the relative spread,
the 90th percentiles (``cycles_p90``, ``seconds_p90``) and ``"unstable": true`` when the limit is
reached still above the threshold; the ILP can then budget with a conservative latency
(:func:`ohq_pynq.ilp.make_problem` ``latency="p90"`` or ``"spread:K"``).

Power rails that fail mid-run (the accelerator reports ``energy_error``) leave the latency
valid: the profile's joules become null and ``metadata["oqa"]["energy"]`` says why. Cached
entries without energy are measured again once the board has working rails.

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
DEFAULT_MAX_SPREAD = 0.05     # unstable: (max - min) cycles above 5 % of the median ...
MIN_SPREAD_CYCLES = 100       # ... and above 100 cycles (1 us at 100 MHz: below ILP relevance)
MAX_REPEATS_FACTOR = 4        # default limit of runs per (layer, bits): 4 x repeats


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
                aside = self._set_aside()
                warnings.warn(f"{err}; moved it to {aside.name} and starting an empty cache",
                              stacklevel=2)
                self.entries = {}
            else:
                bad = [k for k, v in self.entries.items() if not _valid_entry(v)]
                if bad:
                    aside = self._set_aside()
                    warnings.warn(f"OQA cache {self.path}: {len(bad)} damaged entr"
                                  f"{'y' if len(bad) == 1 else 'ies'} (e.g. {bad[0]!r}) will be "
                                  f"measured again; the original is kept as {aside.name}",
                                  stacklevel=2)
                    for k in bad:
                        del self.entries[k]

    def _set_aside(self) -> Path:
        """Rename the damaged cache file to ``<name>.corrupt-<n>`` (kept for inspection)."""
        n = 1
        while self.path.with_name(f"{self.path.name}.corrupt-{n}").exists():
            n += 1
        aside = self.path.with_name(f"{self.path.name}.corrupt-{n}")
        os.replace(self.path, aside)
        return aside

    @staticmethod
    def key(model_hash: str, layer: str, bits: int, hardware_id: str, bitstream: str | None) -> str:
        return "|".join((model_hash, layer, str(bits), hardware_id, bitstream or "-"))

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry
        if self.path is not None:
            write_json(self.path, {"schema": CACHE_SCHEMA, "entries": self.entries})


_SAMPLE_KEYS = ("cycles", "seconds", "bytes_in", "bytes_out")
_OPTIONAL_KEYS = ("joules", "joules_stderr", "core_seconds")


def _valid_entry(entry) -> bool:
    """A cache entry a measurement can be rebuilt from: samples with finite, non-negative numbers."""
    import math

    if not isinstance(entry, dict) or not isinstance(entry.get("samples"), list):
        return False
    for smp in entry["samples"]:
        if not isinstance(smp, dict):
            return False
        for k in _SAMPLE_KEYS + _OPTIONAL_KEYS:
            v = smp.get(k)
            if k in _OPTIONAL_KEYS and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                return False
    return True


def layer_inputs(network, layer, bits: int, signed: bool, seed: int = 0):
    """(x_q (H, W, Cin), w_q, Requant) of the layer's real shape at ``bits`` (deterministic)."""
    from .hw.accelerator import Requant, conv_layer
    from .quant import activation_range, quantize_weight, weight_qmax

    conv = conv_layer(layer)
    name_seed = int.from_bytes(hashlib.sha256(f"{layer.name}|{bits}".encode()).digest()[:4], "little")
    rng = np.random.default_rng([seed, name_seed])
    lo, hi = activation_range(bits, signed)
    x = rng.integers(lo, hi + 1, size=(conv.h, conv.w, conv.cin), dtype=np.int16)
    w, _ = quantize_weight(network.weight(layer), bits)
    fan_in = conv.cin_g * conv.kernel * conv.kernel
    typical = max(1.0, max(abs(lo), hi) * weight_qmax(bits) * np.sqrt(fan_in) / 2)
    multiplier = np.full(conv.cout, (1 << (bits - 1)) / typical)
    requant = Requant.from_scales(np.zeros(conv.cout, np.int64), multiplier, relu=False,
                                  out_bits=bits, out_signed=True, in_signed=signed)
    return x, w.astype(np.int64), requant


def _median(values):
    return float(statistics.median(values))


def _p90(values) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90))


def _sample(m, accelerator) -> dict:
    """One cache sample of a :class:`~ohq_pynq.hw.accelerator.Measurement`: ``seconds`` is the
    layer end to end (counter + overheads), ``core_seconds`` the counter's share."""
    smp = {"cycles": int(m.cycles), "seconds": float(m.total_seconds),
           "core_seconds": float(m.seconds),
           "joules": None if m.joules is None else float(m.joules),
           "bytes_in": int(m.bytes_in), "bytes_out": int(m.bytes_out), "runs": int(m.runs)}
    if m.overheads is not None:
        smp["overheads"] = {k: float(v) for k, v in m.overheads.items()}
    if m.joules is not None and m.joules_stderr is not None:
        smp["joules_stderr"] = float(m.joules_stderr)
        reading = getattr(accelerator, "last_energy", None)
        if reading is not None and getattr(reading, "joules", None) == m.joules:
            smp["energy_updates"] = int(reading.updates)
    return smp


def relative_spread(samples: list[dict]) -> float:
    """(max - min) / median of the cycles of raw repeats (0 for one sample)."""
    cyc = [s["cycles"] for s in samples]
    med = _median(cyc)
    return float(max(cyc) - min(cyc)) / med if med > 0 else 0.0


def is_unstable(samples: list[dict], max_spread: float) -> bool:
    """Cycle spread above ``max_spread`` x median and above :data:`MIN_SPREAD_CYCLES`."""
    cyc = [s["cycles"] for s in samples]
    return (len(cyc) > 1 and max(cyc) - min(cyc) > MIN_SPREAD_CYCLES
            and relative_spread(samples) > max_spread)


def summarize(samples: list[dict], weight_bytes: int, unstable: bool | None = None) -> BitCost:
    """Median / spread / 90th percentile of raw repeats -> one :class:`BitCost`."""
    cyc = [s["cycles"] for s in samples]
    sec = [s["seconds"] for s in samples]
    jou = [s["joules"] for s in samples]
    joules = None if any(j is None for j in jou) else _median(jou)
    extra = {"repeats": len(samples), "runs": samples[0].get("runs", 1),
             "bytes_in": samples[0]["bytes_in"], "bytes_out": samples[0]["bytes_out"]}
    if len(samples) > 1:
        extra.update(cycles_p90=_p90(cyc), seconds_p90=_p90(sec),
                     spread_rel=round(relative_spread(samples), 6))
    if unstable:
        extra["unstable"] = True
    if any(smp.get("core_seconds") is not None for smp in samples):
        core = [smp.get("core_seconds", smp["seconds"]) for smp in samples]
        extra["core_seconds"] = _median(core)
        extra["overhead_seconds"] = max(0.0, _median(sec) - extra["core_seconds"])
        cats = sorted({k for smp in samples for k in (smp.get("overheads") or {})})
        if cats:
            extra["overheads"] = {k: _median([(smp.get("overheads") or {}).get(k, 0.0)
                                              for smp in samples]) for k in cats}
    if joules is not None and len(jou) > 1:
        extra["joules_spread"] = float(max(jou) - min(jou))
        extra["joules_std"] = float(np.std(np.asarray(jou, dtype=np.float64), ddof=1))
    errs = [smp.get("joules_stderr") for smp in samples]
    if joules is not None and all(e is not None for e in errs):
        se = float(np.sqrt(sum(e * e for e in errs))) / len(errs)
        extra["joules_stderr"] = se
        extra["joules_rel_stderr"] = se / joules if joules > 0 else None
        ups = [smp.get("energy_updates") for smp in samples]
        if all(isinstance(u, int) for u in ups):
            extra["energy_updates"] = int(sum(ups))
    return BitCost(cycles=_median(cyc), seconds=_median(sec), joules=joules,
                   bytes=int(samples[0]["bytes_in"] + samples[0]["bytes_out"]),
                   weight_bytes=int(weight_bytes), cycles_spread=float(max(cyc) - min(cyc)),
                   extra=extra)


def profile_network(model, accelerator, *, bits=(4, 8), repeats: int = DEFAULT_REPEATS,
                    cache: str | os.PathLike | MeasurementCache | None = None, out=None,
                    input_shape=None, seed: int = 0, progress: bool = False,
                    layers: list[str] | None = None, max_spread: float = DEFAULT_MAX_SPREAD,
                    max_repeats: int | None = None) -> Profile:
    """Measure every quantizable layer of ``model`` (path or ModelProto) at each of ``bits`` on
    ``accelerator``; return the :class:`Profile` and write it to ``out`` if given.

    ``max_spread``/``max_repeats``: an unstable (layer, bits) is measured again, ``repeats``
    runs at a time, up to ``max_repeats`` runs (default ``4 * repeats``; see the module doc)."""
    import math

    from .quant import nonnegative_tensors, prepare

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be at least 1, not {repeats}.")
    if max_repeats is None:
        max_repeats = MAX_REPEATS_FACTOR * repeats
    if isinstance(max_repeats, bool) or not isinstance(max_repeats, int) or max_repeats < repeats:
        raise ConfigError(f"max_repeats ({max_repeats}) must be a whole number >= repeats ({repeats}).")
    if not (isinstance(max_spread, (int, float)) and math.isfinite(max_spread) and max_spread > 0):
        raise ConfigError(f"max_spread must be a finite number > 0 (e.g. 0.05), not {max_spread!r}.")
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
    limit = need if info.deterministic else max_repeats
    pairs = [(l, b) for l in todo for b in bits]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(pairs), desc="oqa", unit="layer", leave=False)
    result: dict[str, dict[int, BitCost]] = {}
    measured = n_unstable = 0
    t_start = time.perf_counter()
    try:
        for layer, b in pairs:
            key = MeasurementCache.key(mhash, layer.name, b, info.hardware_id, info.bitstream_sha256)
            entry = cache.get(key) or {"samples": []}
            samples = list(entry.get("samples", []))
            if info.has_energy:     # measured while the rails were down: measure again
                samples = [smp for smp in samples if smp.get("joules") is not None]
            settled = bool(entry.get("settled")) and len(samples) == len(entry.get("samples", []))
            todo_runs = need - len(samples)
            if todo_runs <= 0 and not settled and len(samples) < limit \
                    and is_unstable(samples[:max(need, len(samples))], max_spread):
                todo_runs = min(need, limit - len(samples))
            if todo_runs > 0:
                signed = layer.input not in unsigned
                try:
                    x, w, rq = layer_inputs(net, layer, b, signed, seed)
                    t0 = time.perf_counter()
                    while todo_runs > 0:
                        for _ in range(todo_runs):
                            _, m = accelerator.run_layer(layer, b, x, w, rq)
                            samples.append(_sample(m, accelerator))
                        # Unstable (spread above the threshold): repeat, up to the limit.
                        todo_runs = (min(need, limit - len(samples))
                                     if is_unstable(samples, max_spread) else 0)
                    measured += 1
                except OhqError as err:
                    raise type(err)(f"layer {layer.name!r} at {b} bits: {err}") from None
                cache.put(key, {"layer": layer.name, "bits": b, "samples": samples, "settled": True,
                                "wall_seconds": time.perf_counter() - t0})
            used = samples[:need]
            if is_unstable(used, max_spread):
                used = samples[:limit]
            unstable = not info.deterministic and is_unstable(used, max_spread)
            if unstable:
                n_unstable += 1
            result.setdefault(layer.name, {})[b] = summarize(used, layer.weight_bytes(b), unstable)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    metadata = {"model": {"source": str(getattr(net, "source", "")), "sha256": mhash},
                "oqa": {"repeats": need, "requested_repeats": repeats, "seed": seed,
                        "bits": bits, "measured": measured, "cached": len(pairs) - measured,
                        "wall_seconds": round(time.perf_counter() - t_start, 3)}}
    if not info.deterministic:
        metadata["oqa"].update(max_spread=max_spread, max_repeats=limit, unstable=n_unstable)
    lost = getattr(accelerator, "energy_error", None)
    if info.has_energy and (lost or any(c.joules is None for per in result.values()
                                        for c in per.values())):
        # Some layers lack energy (a rail failed mid-run): energy is unavailable for the whole
        # profile, rather than a mix of measured and missing joules. Latency stays valid.
        for per in result.values():
            for c in per.values():
                c.joules = None
                for k in ("joules_spread", "joules_std", "joules_stderr", "joules_rel_stderr",
                          "energy_updates"):
                    c.extra.pop(k, None)
        metadata["oqa"]["energy"] = {"available": False,
                                     "reason": lost or "power rails failed during profiling"}
    rel = [c.extra["joules_rel_stderr"] for per in result.values() for c in per.values()
           if c.extra.get("joules_rel_stderr") is not None]
    if rel:
        metadata["oqa"]["energy_spread"] = {
            "median_rel_stderr": float(np.median(rel)), "max_rel_stderr": float(max(rel)),
            "note": "relative standard error of each layer's joules from its sensor updates"}
    prof = Profile(hardware=info.to_json(), layers=result, placeholder=False, metadata=metadata)
    if out is not None:
        save_profile(out, prof)
    return prof


def simulated_profile(layers, bits=(4, 8), board=None, with_energy: bool = True) -> Profile:
    """The profile the simulator gives ``layers`` (a Network or a list of graph Layers) from their
    shapes alone: cycles, bytes and energy of each run on ``board``'s cores (default: the
    simulator's board) as :func:`profile_network` would measure them on the sim backend, without
    running any data. For ``solve --model`` before a board has profiled the model, so it is
    labelled ``placeholder`` (an estimate, not a measurement on the board). ``with_energy=False``
    leaves joules null, as on a board without power rails. The board's overheads are the
    simulator's model without the driver's numpy packing (nothing runs)."""
    from .hw.accelerator import Requant
    from .hw.sim import SimAccelerator

    layers = list(getattr(layers, "layers", layers))
    if not layers:
        raise ConfigError("cannot estimate a profile: the network has no quantizable layers")
    sim = SimAccelerator(board, estimate_energy=with_energy, arm_time="off")
    result: dict[str, dict[int, BitCost]] = {}
    for layer in layers:
        for b in sorted({int(b) for b in bits}):
            m = sim.measure(layer, b, Requant.identity(layer.cout, out_bits=b))   # OQA: out_bits = bits
            sample = {**_sample(m, sim), "joules": m.joules if with_energy else None}
            result.setdefault(layer.name, {})[b] = summarize([sample], layer.weight_bytes(b))
    hardware = {**sim.describe().to_json(),
                "note": "simulator estimate from layer shapes, not a measurement on the board"}
    return Profile(hardware=hardware, layers=result, placeholder=True)


def default_cache_path(out: str | os.PathLike) -> Path:
    """``profile.json`` -> ``profile.oqa-cache.json`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".oqa-cache.json")
