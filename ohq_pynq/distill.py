"""Distilled data (ZeroQ): images optimised so BatchNorm input statistics match the running ones.

Start from Gaussian noise and minimise, with Adam, the BN-statistics loss

    L = sum over BN layers of  mean_c (mu~_c - mu_c)^2 + mean_c (sigma~_c - sigma_c)^2

where mu~, sigma~ are the per-channel mean and standard deviation (over N, H, W) of each BN's
input and mu = running_mean, sigma = sqrt(running_var + eps). (ZeroQ's per-channel average; the
sum over channels is the same loss times C.) Gradients come from the numpy engine, so this runs
on a board without onnxruntime.

Cheap on an ARM core by three choices, measured in ``bench/distill.py``:
  * micro-batches: images are optimised ``micro_batch`` at a time, each group matching the BN
    statistics on its own (a stricter condition that implies matching over the whole set);
  * reduced resolution: fully-convolutional nets (global pooling before the classifier) are
    distilled at ``resolution`` (default 64 px) and resized bilinearly to the model's input size,
    then ``refine`` Adam steps at full resolution repair the statistics the resize changed;
  * fewer iterations (default 60 + 8 refine steps instead of ZeroQ's 500), cosine-decayed lr.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from .engine import Engine
from .errors import ConfigError, DataError
from .onnx_loader import model_proto

DEFAULT_NUM = 32
DEFAULT_ITERS = 60
DEFAULT_RESOLUTION = 64
DEFAULT_REFINE = 8
DEFAULT_LR = 0.25
DEFAULT_MICRO_BATCH = 4
REFINE_LR_SCALE = 0.5

FOLDED_BN_MESSAGE = (
    "the model has no BatchNormalization layers (BN folded into the convolutions), so there are no "
    "statistics to distil data from: pass calibration images with --calib DATA, or export the "
    "model with BatchNorm kept (torch.onnx.export(..., training=torch.onnx.TrainingMode.PRESERVE, "
    "do_constant_folding=False))")


@dataclass
class BNTarget:
    """One BatchNormalization layer: the tensor it reads and the statistics it expects."""

    node: str
    input: str
    mean: np.ndarray      # running_mean, float64 (C,)
    std: np.ndarray       # sqrt(running_var + eps), float64 (C,)


@dataclass
class DistillResult:
    x: np.ndarray                       # float32 N×C×H×W at the model's input resolution
    loss_initial: float                 # BN loss of the starting noise (full resolution)
    loss_final: float                   # BN loss of the result (full resolution)
    resolution: int                     # resolution the optimisation ran at (pixels)
    history: list[float] = field(default_factory=list)   # mean loss per iteration


def bn_targets(engine: Engine) -> list[BNTarget]:
    """The BN layers of a model (empty when BN was folded)."""
    out = []
    for nd in engine.nodes_of_type("BatchNormalization"):
        mean = engine.constant(nd.inputs[3]).astype(np.float64)
        var = engine.constant(nd.inputs[4]).astype(np.float64)
        eps = float(nd.attrs.get("epsilon", 1e-5))
        out.append(BNTarget(nd.name, nd.inputs[0], mean, np.sqrt(var + eps)))
    return out


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel mean, biased variance and centred data (float64 stats of an N×C×... tensor)."""
    axes = (0,) + tuple(range(2, a.ndim))
    mu = a.mean(axis=axes, dtype=np.float64)
    shape = (1, -1) + (1,) * (a.ndim - 2)
    centred = a - mu.astype(a.dtype).reshape(shape)
    var = np.mean(np.square(centred, dtype=np.float64) if a.dtype == np.float64
                  else np.square(centred), axis=axes, dtype=np.float64)
    return mu, var, centred


def bn_loss(values: dict[str, np.ndarray], targets: list[BNTarget], grad: bool = False):
    """BN-statistics loss of one batch; with ``grad`` also ``{bn input: dL/dinput}``."""
    total = 0.0
    grads = {}
    for t in targets:
        a = values[t.input]
        mu, var, centred = _stats(a)
        sd = np.sqrt(var + 1e-12)
        c = mu.size
        dmu, dsd = mu - t.mean, sd - t.std
        total += float(np.sum(dmu ** 2) + np.sum(dsd ** 2)) / c
        if grad:
            m = a.size // c
            shape = (1, -1) + (1,) * (a.ndim - 2)
            g_mu = (2.0 * dmu / (c * m)).astype(a.dtype).reshape(shape)
            g_sd = (2.0 * dsd / (c * m * sd)).astype(a.dtype).reshape(shape)
            g = centred * g_sd
            g += g_mu
            grads[t.input] = grads[t.input] + g if t.input in grads else g
        del centred
    return (total, grads) if grad else total


def evaluate_loss(engine: Engine, x: np.ndarray, targets: list[BNTarget], micro_batch: int) -> float:
    """BN loss of ``x``, statistics taken over each micro-batch and averaged (as optimised)."""
    names = [t.input for t in targets]
    losses = []
    for s in range(0, len(x), micro_batch):
        vals, _ = engine.forward(x[s:s + micro_batch], outputs=names, record=False)
        losses.append(bn_loss(vals, targets))
    return float(np.mean(losses))


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of N×C×H×W (half-pixel centres, like torch align_corners=False)."""
    n, c, h, w = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return x.copy()

    def weights(src, dst):
        pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        frac = (pos - lo).astype(x.dtype)
        return lo, hi, frac

    lo, hi, f = weights(h, oh)
    rows = x[:, :, lo, :] * (1 - f)[None, None, :, None] + x[:, :, hi, :] * f[None, None, :, None]
    lo, hi, f = weights(w, ow)
    return (rows[:, :, :, lo] * (1 - f) + rows[:, :, :, hi] * f).astype(x.dtype)


def supports_resolution(engine: Engine, channels: int, resolution: int) -> bool:
    """Whether the graph runs at ``resolution`` (fully convolutional up to global pooling)."""
    probe = np.zeros((1, channels, resolution, resolution), dtype=engine.dtype)
    try:
        vals, _ = engine.forward(probe, record=False)
    except Exception:  # noqa: BLE001 - any shape failure means "not at this resolution"
        return False
    full = engine.input_shape
    ref = np.zeros((1, channels) + tuple(full[2:]), dtype=engine.dtype)
    ref_vals, _ = engine.forward(ref, record=False)
    return all(np.shape(vals[k])[1:] == np.shape(ref_vals[k])[1:] for k in vals)


def _adam_steps(engine, targets, x, iters, lr, on_step, mb_index=0):
    """Optimise ``x`` in place with Adam (cosine-decayed lr); returns the loss per step."""
    names = [t.input for t in targets]
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    b1, b2, eps = 0.9, 0.999, 1e-8
    hist = []
    for it in range(iters):
        vals, tape = engine.forward(x, outputs=names)
        loss, grads = bn_loss(vals, targets, grad=True)
        del vals
        g = engine.backward(tape, grads)
        del grads, tape
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * np.square(g)
        step = lr * 0.5 * (1 + math.cos(math.pi * it / max(iters, 1)))
        step_t = step * math.sqrt(1 - b2 ** (it + 1)) / (1 - b1 ** (it + 1))
        x -= (step_t * m / (np.sqrt(v) + eps)).astype(x.dtype)
        hist.append(loss)
        if on_step is not None:
            on_step(loss)
    return hist


def distill(model: Any, num: int = DEFAULT_NUM, iters: int = DEFAULT_ITERS,
            resolution: int | None = DEFAULT_RESOLUTION, refine: int = DEFAULT_REFINE,
            lr: float = DEFAULT_LR, micro_batch: int = DEFAULT_MICRO_BATCH, seed: int = 0,
            on_step: Callable[[float], None] | None = None, engine: Engine | None = None
            ) -> DistillResult:
    """Distil ``num`` images from a model with BatchNorm kept (see the module docstring).

    ``resolution``: pixels to optimise at (None or >= input size: full resolution; ignored for
    nets that are not fully convolutional). ``refine``: extra Adam steps at full resolution
    after resizing. ``on_step(loss)`` is called once per optimisation step (for a progress bar);
    there are ``ceil(num / micro_batch) * (iters + refine)`` of them (``refine`` only if resized).
    """
    if num < 1 or iters < 0 or refine < 0 or micro_batch < 1 or lr <= 0:
        raise ConfigError("distillation needs num >= 1, iters >= 0, refine >= 0, micro_batch >= 1 "
                          "and lr > 0")
    eng = engine or Engine(model)
    targets = bn_targets(eng)
    if not targets:
        raise DataError(FOLDED_BN_MESSAGE)
    shape = eng.input_shape
    if len(shape) != 4 or any(d is None or d <= 0 for d in shape[1:]):
        raise DataError(f"distillation needs a fixed N×C×H×W model input; {eng.input_name!r} has "
                        f"shape {shape}")
    c, h, w = shape[1:]
    run_res = (h, w)
    if resolution is not None and 0 < resolution < min(h, w):
        if resolution < 8:
            raise ConfigError(f"--resolution {resolution} is too small (at least 8 pixels)")
        if supports_resolution(eng, c, resolution):
            run_res = (resolution, max(1, round(resolution * w / h)))
    resized = run_res != (h, w)
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((num, c) + run_res).astype(np.float32)
    loss_initial = evaluate_loss(eng, resize_bilinear(x0, (h, w)) if resized else x0, targets,
                                 micro_batch)
    out = np.empty((num, c, h, w), dtype=np.float32)
    history = np.zeros(iters + (refine if resized else 0))
    for s in range(0, num, micro_batch):
        xb = x0[s:s + micro_batch].copy()
        hist = _adam_steps(eng, targets, xb, iters, lr, on_step)
        if resized:
            xb = resize_bilinear(xb, (h, w))
            hist += _adam_steps(eng, targets, xb, refine, lr * REFINE_LR_SCALE, on_step)
        out[s:s + micro_batch] = xb
        history[:len(hist)] += np.asarray(hist) * len(xb) / num
    loss_final = evaluate_loss(eng, out, targets, micro_batch)
    return DistillResult(out, loss_initial, loss_final, run_res[0], history.tolist())


def pink_noise_images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random float32 images (n, c, h, w) with a natural-image-like 1/f amplitude spectrum, each
    standardised: what random-weight benchmark nets get their BN statistics calibrated on."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2)
    f[0, 0] = 1.0 / max(h, w)
    spec = (rng.standard_normal((n, c, h, w // 2 + 1)) + 1j * rng.standard_normal((n, c, h, w // 2 + 1))) / f
    img = np.fft.irfft2(spec, s=(h, w))
    img = (img - img.mean(axis=(2, 3), keepdims=True)) / img.std(axis=(2, 3), keepdims=True)
    return (img + rng.normal(0, 0.3, (n, c, 1, 1))).astype(np.float32)


def calibrate_bn_statistics(model: Any, x: np.ndarray, micro_batch: int = 16) -> onnx.ModelProto:
    """A copy of ``model`` whose BN running statistics are the batch statistics of ``x``, taken
    layer by layer as in PyTorch train mode (each BN normalises with its own batch statistics
    before the next is measured). Used to give random-weight benchmark nets realistic BN."""
    model = model_proto(model)
    eng = Engine(model)
    targets = bn_targets(eng)
    nodes = {nd.name: nd for nd in eng.nodes_of_type("BatchNormalization")}
    overrides: dict[str, np.ndarray] = {}
    for t in targets:
        nd = nodes[t.node]
        s1 = s2 = 0.0
        count = 0
        for s in range(0, len(x), micro_batch):
            a = eng.run(x[s:s + micro_batch], outputs=[t.input], batch_size=micro_batch,
                        overrides=overrides)[t.input].astype(np.float64)
            axes = (0,) + tuple(range(2, a.ndim))
            s1 = s1 + a.sum(axis=axes)
            s2 = s2 + np.square(a).sum(axis=axes)
            count += a.size // a.shape[1]
        mean = s1 / count
        var = np.maximum(s2 / count - mean ** 2, 1e-8)
        overrides[nd.inputs[3]] = mean.astype(np.float32)
        overrides[nd.inputs[4]] = var.astype(np.float32)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        if tensor.name in overrides:
            tensor.CopyFrom(onnx.numpy_helper.from_array(overrides[tensor.name], tensor.name))
    return out
