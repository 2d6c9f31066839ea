"""Per-layer accuracy sensitivity: MQE (one prepared int8 model, perturbed per layer) and exact.

MQE (OHQ §3): quantize the whole network to int8 (the reference); for each layer i, perturb its
int8 initializers the way going to int4 would and measure
``S_i = mean_x KL(softmax(f_int8(x)) ‖ softmax(f_perturbed_i(x)))`` on the (distilled) data.
Each layer costs one forward pass on the *same* prepared model: only the layer's weight codes
and input scale are swapped per pass. What is swapped in (``perturbation``):

* ``"rounding"`` (default): the layer's weights rounded to its int4 grid (int4 codes from the
  float weights, written as the nearest int8 codes), and its input quantized as at int4: the
  int4 scale (its own, tighter calibrated range, :meth:`~ohq_pynq.quant.TensorRange.clip_at`)
  and the int4 code range (the model carries an integer Clip on every layer input for this).
  The perturbation is the layer's own int4 rounding error, so S_i has the size and ranking of
  the exact estimator (ρ 0.97–0.99 on the references, ``bench/mqe.py``).
* ``"mask"``: the paper's mask — zero a random fraction ``alpha`` of the int8 weight codes
  (0.5 in the paper; ``alpha="matched"`` picks, per output channel, the fraction whose removed
  energy equals that channel's int4 rounding-noise energy, 0.4–3 % on the references), plus the
  same int4 input unless ``activations=False`` (the paper's weight-only MQE).

Exact (the reference MQE approximates, as in ZeroQ): layer i alone at int4 (weights and input
activations), every other layer int8, same KL; a freshly quantized model per layer.

Both return the ``sensitivity.json`` object (schema, save and load: :mod:`ohq_pynq.sensitivity`):
``{"schema": 1, "estimator": ..., "layers": {name: S_i}, ...}`` (KL in nats; larger = the layer
should keep more bits).
"""
from __future__ import annotations

import time

import numpy as np

from .errors import ConfigError
from .graph import Network
from .quant import (LayerQuant, QuantizedNetwork, TensorRange, activation_range, input_quantization,
                    kl_divergence, log_softmax, quantize, quantize_weight, weight_codes_uint8,
                    weight_qmax)
from .runtime import make_executor
from .sensitivity import SCHEMA

ESTIMATORS = ("mqe", "exact")
DEFAULT_ESTIMATOR = "mqe"
PERTURBATIONS = ("rounding", "mask")
DEFAULT_PERTURBATION = "rounding"   # the layer's own int4 rounding error (see the module docstring)
DEFAULT_ALPHA = 0.5          # perturbation "mask": fraction of a layer's int8 weights masked (the paper's value)


def mask_weights(w_q: np.ndarray, alpha, rng: np.random.Generator,
                 structured: bool = False) -> np.ndarray:
    """Zero a fraction ``alpha`` of ``w_q`` (conv layout, cout × cin/groups × kh × kw): individual
    weights uniformly at random (a shuffled 0/1 mask over the flattened tensor), or, when
    ``structured``, whole input-channel slices — whole output filters where each filter sees one
    input channel (depthwise, or a 1-channel first conv), since there is no input axis to mask.

    ``alpha`` may also be an array with one fraction per output channel (unstructured only):
    each filter then loses its own fraction of weights, chosen uniformly at random within it."""
    w = np.array(w_q, copy=True)
    if np.ndim(alpha):
        if structured:
            raise ConfigError("per-channel masking fractions need unstructured masking")
        rows = w.reshape(len(w), -1)
        for c, a in enumerate(np.asarray(alpha, dtype=np.float64)):
            rows[c, rng.permutation(rows.shape[1])[: int(round(a * rows.shape[1]))]] = 0
        return w
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


def rounded_weights(w_float: np.ndarray, lq: LayerQuant, bits: int = 4) -> np.ndarray:
    """The layer's weights at ``bits`` written as int8 codes of its int8 scales.

    ``w_float``: the float weights (conv layout); ``lq``: the layer at int8. The ``bits`` codes
    come from the float weights (per-channel symmetric, as :func:`~ohq_pynq.quant.quantize`
    makes them), so the result is the low-bit weight to within half an int8 step (1/36 of an
    int4 step): the exact rounding error of going to ``bits``, inside the int8 model.
    """
    q_low, s_low = quantize_weight(w_float, bits)
    shape = (-1,) + (1,) * (q_low.ndim - 1)
    ratio = (s_low.astype(np.float64) / lq.weight_scale.astype(np.float64)).reshape(shape)
    qmax = weight_qmax(lq.weight_bits)
    return np.clip(np.rint(q_low * ratio), -qmax, qmax).astype(np.int8)


def matched_mask_fraction(w_q: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """Per output channel, the fraction of weights whose random masking removes (in expectation)
    as much energy as rounding ``w_q`` to ``rounded`` adds: ``‖w_q − rounded‖² / ‖w_q‖²``."""
    w = w_q.reshape(len(w_q), -1).astype(np.float64)
    err = ((w - rounded.reshape(len(w), -1)) ** 2).sum(axis=1)
    energy = (w ** 2).sum(axis=1)
    return np.clip(np.where(energy > 0, err / np.maximum(energy, 1.0), 0.0), 0.0, 1.0)


def perturbed_layer(network: Network, q8: QuantizedNetwork, name: str, perturbation: str = "rounding",
                    alpha=0.5, rng: np.random.Generator | None = None, structured: bool = False,
                    activations: bool = True, low_bits: int = 4,
                    low_inputs: dict[str, tuple[float, bool]] | None = None) -> dict[str, np.ndarray]:
    """The initializers of ``q8.to_onnx(saturate_inputs=True)`` to swap so layer ``name`` is
    perturbed as MQE does (see the module docstring): ``{initializer name: array}``, the weight
    codes in the model's layout and, with ``activations``, the input scale and code range at
    ``low_bits`` (``low_inputs``: :func:`~ohq_pynq.quant.input_quantization` at ``low_bits``)."""
    lq = q8.layers[name]
    if perturbation == "rounding":
        w = rounded_weights(network.weight(network.layer(name)), lq, low_bits)
    else:
        a = alpha
        if isinstance(alpha, str):          # "matched"
            a = matched_mask_fraction(lq.weight_q,
                                      rounded_weights(network.weight(network.layer(name)), lq, low_bits))
        w = mask_weights(lq.weight_q, a, rng if rng is not None else np.random.default_rng(0), structured)
    out = {q8.weight_initializer(name): _initializer_layout(network, name, w)}
    if activations:
        if low_inputs is None:
            raise ConfigError("perturbed_layer(activations=True) needs low_inputs: "
                              "quant.input_quantization(network, low_bits, ranges)")
        scale, signed = low_inputs[name]
        out[q8.input_scale_initializer(name)] = np.array(scale, np.float32)
        code = np.int8 if signed else np.uint8
        lo_name, hi_name = q8.input_saturation_initializers(name)
        lo, hi = activation_range(low_bits, signed)
        out[lo_name], out[hi_name] = np.array(lo, code), np.array(hi, code)
    return out


def _logits(executor, x: np.ndarray, overrides: dict | None = None, batch_size: int = 8) -> np.ndarray:
    """Output logits (N, classes) of ``x`` in batches, with some initializers replaced."""
    out = executor.output_names[0]
    return executor.run(x, outputs=[out], batch_size=batch_size, overrides=overrides)[out].reshape(len(x), -1)


def sensitivity(network: Network, x: np.ndarray, ranges: dict[str, TensorRange],
                estimator: str = DEFAULT_ESTIMATOR, alpha: float | str = DEFAULT_ALPHA,
                structured: bool = False, seed: int = 0,
                executor: str = "auto", progress: bool = False, layers: list[str] | None = None,
                activations: bool = True, low_bits: int = 4,
                perturbation: str = DEFAULT_PERTURBATION) -> dict:
    """Sensitivity of every layer (or of ``layers``) of a BN-folded ``network`` on images ``x``.

    Returns the ``sensitivity.json`` dict. ``ranges`` are the int8 calibration ranges (usually
    computed on the same distilled data). ``executor``: "auto", "numpy" or "onnxruntime" (see
    :func:`ohq_pynq.runtime.make_executor`).

    MQE's ``perturbation`` (module docstring): ``"rounding"`` (default; deterministic, ``alpha``,
    ``structured`` and ``seed`` unused) or ``"mask"`` (``alpha`` a fraction in [0, 1] or
    ``"matched"``). ``activations``: also quantize the layer's input as at ``low_bits`` (its
    scale and code range there), because in this project a layer's input activations take the
    layer's bit-width; without it MQE sees only the weight half of
    going to int4 (``perturbation="mask", activations=False`` is the paper's MQE). Every variant is
    the same single-session initializer swap, one forward pass over ``x`` per layer.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator {estimator!r} unknown; use one of {', '.join(ESTIMATORS)}")
    if perturbation not in PERTURBATIONS:
        raise ConfigError(f"MQE perturbation {perturbation!r} unknown; use one of {', '.join(PERTURBATIONS)}")
    if isinstance(alpha, str):
        if alpha != "matched":
            raise ConfigError(f"masking ratio alpha={alpha!r} must be a number in [0, 1] or 'matched'")
    elif not (0.0 <= alpha <= 1.0) or alpha != alpha:
        raise ConfigError(f"masking ratio alpha={alpha} must be in [0, 1]")
    if not 2 <= low_bits <= 7:
        raise ConfigError(f"low_bits={low_bits} must be between 2 and 7")
    names = list(layers) if layers is not None else network.layer_names
    for n in names:
        network.layer(n)  # clear error for unknown names
    start = time.perf_counter()
    q8 = quantize(network, 8, ranges)
    model8 = q8.to_onnx(saturate_inputs=estimator == "mqe" and activations)
    values: dict[str, float] = {}
    it = names
    if progress:
        from tqdm import tqdm
        it = tqdm(names, desc=f"sensitivity ({estimator})", unit="layer", leave=False)
    if estimator == "mqe":
        swapped = [q8.weight_initializer(n) for n in names]
        low_inputs = None
        if activations:
            swapped += [q8.input_scale_initializer(n) for n in names]
            swapped += [i for n in names for i in q8.input_saturation_initializers(n)]
            low_inputs = input_quantization(network, low_bits, ranges)
        runner = make_executor(model8, executor, overridable=swapped)   # one prepared executor
        ref = log_softmax(_logits(runner, x))
        rng = np.random.default_rng(seed)
        for name in it:
            overrides = perturbed_layer(network, q8, name, perturbation, alpha, rng, structured,
                                        activations, low_bits, low_inputs)
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
    masking = estimator == "mqe" and perturbation == "mask"
    return {
        "schema": SCHEMA,
        "estimator": estimator,
        "perturbation": perturbation if estimator == "mqe" else None,
        "alpha": alpha if masking else None,
        "structured": structured if masking else None,
        "activations": activations if estimator == "mqe" else None,
        "seed": seed,
        "images": int(len(x)),
        "unit": "nats (mean KL of softmax outputs vs the int8 model)",
        "seconds": round(time.perf_counter() - start, 3),
        "layers": values,
    }


def _initializer_layout(network: Network, name: str, w_q: np.ndarray) -> np.ndarray:
    """Integer weight codes in the layout and type of the QDQ model's initializer (see
    quant.export_qdq: uint8 with zero point 128)."""
    layer = network.layer(name)
    if layer.op != "Conv":
        w_q = w_q.reshape(layer.cout, layer.cin)
        w_q = np.ascontiguousarray(w_q.T) if layer.weight_transposed else w_q
    return weight_codes_uint8(w_q)


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


__all__ = ["sensitivity", "perturbed_layer", "rounded_weights", "matched_mask_fraction", "mask_weights",
           "spearman", "kl_divergence", "ESTIMATORS", "PERTURBATIONS"]
