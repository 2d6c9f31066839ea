"""Per-layer accuracy sensitivity: MQE (mask-guided) and the exact estimator.

MQE (OHQ §3): quantize the whole network to int8 (the reference); for each layer, zero a random
fraction ``alpha`` (0.5) of its int8 weight codes and measure
``S_i = mean_x KL(softmax(f_int8(x)) ‖ softmax(f_masked_i(x)))`` on the (distilled) data.
Masking ≈ the information lost going from 8 to 4 bits, and costs one forward pass per layer on
the *same* prepared model: only the layer's weight initializer is swapped per pass.

Exact (the reference MQE approximates, as in ZeroQ): layer i alone at int4 (weights and input
activations), every other layer int8, same KL.

Both return the ``sensitivity.json`` object (schema, save and load: :mod:`ohq_pynq.sensitivity`):
``{"schema": 1, "estimator": ..., "layers": {name: S_i}, ...}`` (KL in nats; larger = the layer
should keep more bits).
"""
from __future__ import annotations

import time

import numpy as np

from .errors import ConfigError
from .graph import Network
from .quant import TensorRange, activation_range, kl_divergence, log_softmax, quantize
from .runtime import make_executor
from .sensitivity import SCHEMA

ESTIMATORS = ("mqe", "exact")
DEFAULT_ESTIMATOR = "mqe"
DEFAULT_ALPHA = 0.5          # fraction of a layer's int8 weights masked (the paper's value)


def mask_weights(w_q: np.ndarray, alpha: float, rng: np.random.Generator,
                 structured: bool = False) -> np.ndarray:
    """Zero a fraction ``alpha`` of ``w_q`` (conv layout, cout × cin/groups × kh × kw): individual
    weights uniformly at random (a shuffled 0/1 mask over the flattened tensor), or, when
    ``structured``, whole input-channel slices — whole output filters where each filter sees one
    input channel (depthwise, or a 1-channel first conv), since there is no input axis to mask."""
    w = np.array(w_q, copy=True)
    if structured:
        axis = 1 if w.ndim > 1 and w.shape[1] > 1 else 0
        n = w.shape[axis]
        drop = rng.permutation(n)[: int(round(alpha * n))]
        if axis == 1:
            w[:, drop] = 0
        else:
            w[drop] = 0
        return w
    flat = w.reshape(-1)
    flat[rng.permutation(flat.size)[: int(round(alpha * flat.size))]] = 0
    return w


def _logits(executor, x: np.ndarray, overrides: dict | None = None, batch_size: int = 8) -> np.ndarray:
    """Output logits (N, classes) of ``x`` in batches, with some initializers replaced."""
    out = executor.output_names[0]
    return executor.run(x, outputs=[out], batch_size=batch_size, overrides=overrides)[out].reshape(len(x), -1)


def sensitivity(network: Network, x: np.ndarray, ranges: dict[str, TensorRange],
                estimator: str = DEFAULT_ESTIMATOR, alpha: float = DEFAULT_ALPHA,
                structured: bool = False, seed: int = 0,
                executor: str = "auto", progress: bool = False, layers: list[str] | None = None,
                activations: bool = True, low_bits: int = 4) -> dict:
    """Sensitivity of every layer (or of ``layers``) of a BN-folded ``network`` on images ``x``.

    Returns the ``sensitivity.json`` dict. ``ranges`` are the int8 calibration ranges (usually
    computed on the same distilled data). ``executor``: "auto", "numpy" or "onnxruntime" (see
    :func:`ohq_pynq.runtime.make_executor`).

    ``activations`` (MQE): besides masking the weights, coarsen the layer's input quantization to
    the step of ``low_bits`` (its int8 input scale times qmax8 / qmax4), because in this project
    a layer's input activations take the layer's bit-width. It is the same single-session
    initializer swap as the mask, so it costs nothing extra; without it MQE sees only the weight
    half of going to int4 and ranks activation-dominated nets (MobileNetV3) poorly.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator {estimator!r} unknown; use one of {', '.join(ESTIMATORS)}")
    if not (0.0 <= alpha <= 1.0) or alpha != alpha:
        raise ConfigError(f"masking ratio alpha={alpha} must be in [0, 1]")
    names = list(layers) if layers is not None else network.layer_names
    for n in names:
        network.layer(n)  # clear error for unknown names
    start = time.perf_counter()
    q8 = quantize(network, 8, ranges)
    model8 = q8.to_onnx()
    values: dict[str, float] = {}
    it = names
    if progress:
        from tqdm import tqdm
        it = tqdm(names, desc=f"sensitivity ({estimator})", unit="layer", leave=False)
    if estimator == "mqe":
        swapped = [q8.weight_initializer(n) for n in names]
        if activations:
            swapped += [q8.input_scale_initializer(n) for n in names]
        runner = make_executor(model8, executor, overridable=swapped)   # one prepared executor
        ref = log_softmax(_logits(runner, x))
        rng = np.random.default_rng(seed)
        for name in it:
            lq = q8.layers[name]
            masked = _initializer_layout(network, name, mask_weights(lq.weight_q, alpha, rng, structured))
            overrides = {q8.weight_initializer(name): masked}
            if activations:
                coarser = activation_range(8, lq.act_signed)[1] / activation_range(low_bits, lq.act_signed)[1]
                overrides[q8.input_scale_initializer(name)] = np.array(lq.act_scale * coarser, np.float32)
            logits = _logits(runner, x, overrides)
            values[name] = _kl_from_log(ref, log_softmax(logits))
    else:
        ref = log_softmax(_logits(make_executor(model8, executor), x))
        for name in it:
            bits = {n: 8 for n in network.layer_names}
            bits[name] = 4
            model = quantize(network, bits, ranges).to_onnx()
            logits = _logits(make_executor(model, executor), x)
            values[name] = _kl_from_log(ref, log_softmax(logits))
    return {
        "schema": SCHEMA,
        "estimator": estimator,
        "alpha": alpha if estimator == "mqe" else None,
        "structured": structured if estimator == "mqe" else None,
        "activations": activations if estimator == "mqe" else None,
        "seed": seed,
        "images": int(len(x)),
        "unit": "nats (mean KL of softmax outputs vs the int8 model)",
        "seconds": round(time.perf_counter() - start, 3),
        "layers": values,
    }


def _initializer_layout(network: Network, name: str, w_q: np.ndarray) -> np.ndarray:
    """Integer weight codes in the layout of the QDQ model's initializer (see quant.export_qdq)."""
    layer = network.layer(name)
    if layer.op == "Conv":
        return w_q
    w = w_q.reshape(layer.cout, layer.cin)
    return np.ascontiguousarray(w.T) if layer.weight_transposed else w


def _kl_from_log(lp: np.ndarray, lq: np.ndarray) -> float:
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    """Spearman rank correlation of two sensitivity maps over their common layers (ties get
    their average rank; numpy only, as scipy has no wheel on 32-bit PYNQ-Z2)."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        raise ConfigError("need at least two common layers to rank-correlate sensitivities")
    ra = _ranks(np.array([a[k] for k in keys], dtype=np.float64))
    rb = _ranks(np.array([b[k] for k in keys], dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):            # average rank for ties
        tied = v == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


__all__ = ["sensitivity", "mask_weights", "spearman", "kl_divergence", "ESTIMATORS"]
