"""Integer quantization with per-layer bit-widths, calibration, QDQ export and evaluation.

Scheme (the same arithmetic the int4/int8 cores implement, see ``vivado/README.md``):

* weights: symmetric, per output channel, narrow range — int8 in [-127, 127], int4 in [-7, 7];
  ``scale_c = max|w_c| / qmax``;
* activations: per tensor, zero point 0, at the *input* of every quantizable layer and at that
  layer's bit-width (the int4 core consumes int4 activations). Unsigned (uint8 [0, 255],
  uint4 [0, 15]) where the tensor comes from a ReLU-family op, signed elsewhere;
  ``scale = range / qmax`` with range = max|x| over the calibration images (``minmax``, the
  default) or a percentile of |x| (``percentile``; see ``docs/design.md`` for the comparison:
  on 32 images, what ``run`` calibrates on, max|x| is the better int8 range). A layer at 4
  bits clips its input tighter: the range that minimises the L2.5 quantization error of the
  calibration histogram at that layer's 15 (unsigned) or 7 (signed) steps
  (:func:`lp_clip`; Nahshan et al., "Loss aware post-training quantization", 2021, pick the
  norm p in 2-4). With 16 levels the rounding error of a wide range dominates: W4A4 top-1 of
  the digits MobileNetV3 goes from 5.1 % (99.99th-percentile range) to 50.1 %, the digits
  ResNet from 85.9 % to 86.4 % (``bench/quant.py``, 256 calibration images); random mixed
  configs of the MobileNetV3 gain 10-45 points, of the ResNet lose up to 1;
* bias: int32 at scale ``s_x · s_w,c``.

BatchNormalization that follows a Conv is folded first (:mod:`ohq_pynq.transforms`), as the
cores run the folded conv. :meth:`QuantizedNetwork.to_onnx` writes a QDQ model that onnxruntime
(>= 1.17, any graph optimisation level) and the numpy engine both run: opset 13-20 (the float
model's own where it can), int8/uint8 tensors throughout; weight codes are stored as uint8 with
zero point 128 (the same values as int8 with zero point 0, see :data:`WEIGHT_ZERO_POINT`); a 4-bit
layer holds its [-7, 7] weight codes in that form and saturates its input codes to the 4-bit range with an integer Clip between
QuantizeLinear and DequantizeLinear. The bit-widths are in the metadata (``ohq_pynq.weight_bits``,
``ohq_pynq.act_bits``: JSON layer -> bits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, DataError, ModelError
from .graph import SIGN_PRESERVING_OPS, Network, load_network
from .hw.accelerator import quantize_multiplier
from .transforms import copy_model, drop_unused_initializers, fold_batchnorm

# Opsets the QDQ model is written in: the float model's own, raised to 13 (per-axis
# DequantizeLinear) and lowered to 20. onnxruntime 1.17 loads up to opset 20 / IR 9, and
# opset 21's INT4 types and ``output_dtype`` trip its graph optimiser (load failures, wrong
# results on 1.19/1.20), so 4-bit codes travel in int8/uint8 tensors instead.
QDQ_OPSETS = (13, 20)
# Weight codes c in [-127, 127] are written as uint8 c + 128 with zero point 128: the same
# dequantized values as int8 with zero point 0, but onnxruntime then fuses them into its U8U8
# kernels. With int8 weights it picks U8S8, which on x86 CPUs without VNNI multiplies with
# VPMADDUBSW and saturates pairwise sums at int16 (255 * 127 * 2 > 32767; onnxruntime's
# quantization docs, "reduce_range"): measured on an AVX2 EPYC, the int8 digits MobileNetV3 fell
# from 88.3 % to 57.4 % top-1 in a default session (ResNet 94.8 -> 89.1); uint8 weights: 88.3 / 94.8.
WEIGHT_ZERO_POINT = 128
# Ops whose output is >= 0: a tensor reaching a layer only through these (and sign-preserving
# ops) is quantized unsigned.
NONNEGATIVE_OPS = frozenset({"Relu", "Sigmoid", "HardSigmoid"})


def weight_qmax(bits: int) -> int:
    """Largest weight magnitude at ``bits`` (narrow range): 127 for int8, 7 for int4."""
    return (1 << (bits - 1)) - 1


def activation_range(bits: int, signed: bool) -> tuple[int, int]:
    """(qmin, qmax) of an activation at ``bits``: e.g. int4 (-8, 7), uint4 (0, 15)."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def quantize_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric quantization of ``w`` (cout, ...) → (int8 codes, float32 scales)."""
    qmax = weight_qmax(bits)
    w = np.asarray(w, dtype=np.float32)
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax)
    return q.astype(np.int8), scale


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------
# Version of the arithmetic below (ranges, scales, multipliers). The pipeline keys its
# sensitivity, solve and deploy stages on it, so a resumed run never mixes results of two.
# 2: max|x| at 8 bits, lp_clip at 4 bits, odd multipliers (1: 99.99th percentile everywhere).
SCHEME = 2
CALIBRATION_METHODS = ("minmax", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_PERCENTILE = 99.99     # method "percentile": the percentile of |x| mapped to the largest code
LOW_BITS = 4                   # the width whose inputs get their own, tighter range (lp_clip)
LOW_BIT_NORM = 2.5             # p of the L_p quantization error minimised by lp_clip
HISTOGRAM_BINS = 2048


@dataclass
class TensorRange:
    """Calibrated range of one activation tensor (float units of the model's activations)."""

    absmax: float
    minimum: float
    clip: float          # the value mapped to qmax: absmax (minmax) or a percentile of |x|
    low_bit_clip: float | None = None   # the value mapped to qmax at LOW_BITS (lp_clip), if any

    def clip_at(self, bits: int) -> float:
        """The value mapped to the largest code of a ``bits``-wide input."""
        if bits <= LOW_BITS and self.low_bit_clip is not None:
            return min(self.clip, self.low_bit_clip)
        return self.clip


def lp_clip(hist: np.ndarray, absmax: float, qmax: int, p: float = LOW_BIT_NORM) -> float:
    """Clip value c minimising sum over the |x| histogram of |x - Q_c(x)|^p, codes 0..qmax.

    ``hist``: counts of |x| in equal bins over [0, absmax]; Q_c rounds to multiples of c / qmax
    and saturates at c. Candidates are every 8th bin edge (256 for 2048 bins), evaluated at the
    bin centres: O(bins^2 / 8) operations per tensor, milliseconds.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = len(hist)
    if absmax <= 0 or hist.sum() == 0:
        return float(absmax)
    centres = (np.arange(bins) + 0.5) * (absmax / bins)
    clips = np.arange(8, bins + 1, 8) * (absmax / bins)
    used = hist > 0
    c, h = centres[used], hist[used]
    step = clips[:, None] / qmax
    err = np.abs(c[None, :] - np.minimum(np.rint(c[None, :] / step), qmax) * step) ** p
    return float(clips[int(np.argmin(err @ h))])


def _batches(x: np.ndarray, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


def calibrate(network: Network, x: np.ndarray, method: str = DEFAULT_METHOD,
              percentile: float = DEFAULT_PERCENTILE, batch_size: int = 8, executor: str = "auto",
              progress: bool = False,
              tensors: list[str] | None = None,
              low_bit_norm: float | None = LOW_BIT_NORM) -> dict[str, TensorRange]:
    """Range of every quantizable layer's input tensor (or of ``tensors``) over images ``x``.

    Streams ``x`` (N, C, H, W) in batches of ``batch_size`` images, so memory is one batch of
    activations. A second pass fills a 2048-bin histogram of |x| per tensor, from which the
    ``percentile`` range and the 4-bit range (:func:`lp_clip` with ``p = low_bit_norm``) are
    taken; ``low_bit_norm=None`` uses the same range at every width (and, with ``minmax``,
    skips the second pass).
    ``executor``: "auto", "numpy" or "onnxruntime" (see :func:`ohq_pynq.runtime.make_executor`).
    """
    from .runtime import make_executor, stream_outputs

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method {method!r} unknown; use minmax or percentile")
    if not (0 < percentile <= 100):
        raise ConfigError(f"percentile {percentile} must be in (0, 100]")
    x = check_images(x, network)
    tensors = sorted(set(tensors) if tensors is not None else calibration_tensors(network))
    runner = make_executor(network.model, executor)
    absmax = {t: 0.0 for t in tensors}
    minimum = {t: np.inf for t in tensors}

    # Each tensor's statistics are updated as the executor computes it (max, min and histogram
    # counts do not depend on how the images are grouped), so only one micro-batch of one
    # tensor is held at a time, not every calibrated tensor of the batch.
    def extremes(t, v):
        if not np.isfinite(v).all():
            raise ModelError(f"the model computes NaN or infinite values at tensor {t!r} on the "
                             f"calibration data; check its weights and the data's preprocessing")
        absmax[t] = max(absmax[t], float(np.abs(v).max()))
        minimum[t] = min(minimum[t], float(v.min()))

    for xb in _progress(_batches(x, batch_size), progress, len(x), batch_size, "calibrate"):
        stream_outputs(runner, xb, tensors, extremes)
    clip = dict(absmax)
    low = {t: None for t in tensors}
    if method == "percentile" or low_bit_norm is not None:
        bins = HISTOGRAM_BINS
        hist = {t: np.zeros(bins, dtype=np.int64) for t in tensors}

        def histogram(t, v):
            if absmax[t] > 0:
                hist[t] += np.histogram(np.abs(v), bins=bins, range=(0.0, absmax[t]))[0]

        for xb in _progress(_batches(x, batch_size), progress, len(x), batch_size, "histogram"):
            stream_outputs(runner, xb, tensors, histogram)
        for t in tensors:
            if method == "percentile" and absmax[t] > 0:
                cdf = np.cumsum(hist[t]) / max(1, hist[t].sum())
                k = int(np.searchsorted(cdf, percentile / 100.0))
                clip[t] = min(absmax[t], (k + 1) * absmax[t] / bins)
        if low_bit_norm is not None:
            unsigned = nonnegative_tensors(network)
            for t in tensors:
                qmax = activation_range(LOW_BITS, signed=t not in unsigned)[1]
                low[t] = lp_clip(hist[t], absmax[t], qmax, low_bit_norm)
    return {t: TensorRange(absmax[t], float(minimum[t]), clip[t], low[t]) for t in tensors}


def _progress(it, enabled: bool, n: int, batch: int, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=-(-n // batch), desc=desc, unit="batch", leave=False)


def check_images(x, network: Network) -> np.ndarray:
    """Validate a batch of images against the model input: float32 (N, *input_shape), finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise DataError(f"images have dtype {x.dtype}; expected numbers (float32)")
    if x.ndim != len(network.input_shape) + 1 or tuple(x.shape[1:]) != network.input_shape:
        raise DataError(f"images have shape {tuple(x.shape)}; the model expects "
                        f"(N, {', '.join(map(str, network.input_shape))})")
    if len(x) == 0:
        raise DataError("no images given (the batch is empty)")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataError("images contain NaN or infinite values")
    return x


# ----------------------------------------------------------------------------------------------
# Quantized network
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerQuant:
    """Integer parameters of one layer: what the core is programmed with."""

    name: str
    weight_bits: int
    act_bits: int
    weight_q: np.ndarray        # int8 codes in conv layout (cout, cin/groups, kh, kw)
    weight_scale: np.ndarray    # float32 (cout,)
    bias_q: np.ndarray          # int32 (cout,), at scale act_scale * weight_scale
    act_scale: float            # input activation scale (float per integer step)
    act_signed: bool            # input activations signed (int) or unsigned (uint)
    edge: "OutputEdge | None" = None
    out_scale: float | None = None   # float-out edges: scale of the int8/uint8 output
    out_signed: bool = True
    mult: np.ndarray | None = None   # (cout,) core requantization multiplier (uint16)
    shift: np.ndarray | None = None  # (cout,) core requantization right shift

    @property
    def act_qrange(self) -> tuple[int, int]:
        return activation_range(self.act_bits, self.act_signed)


@dataclass(frozen=True)
class OutputEdge:
    """Where a layer's output goes, as the core writes it.

    ``tensor`` is what the layer produces after a ReLU fused into the core (``relu_node``).
    ``direct_to``: the single quantizable layer that consumes ``tensor`` (and nothing else
    does): the core writes it in that layer's input format. Otherwise the core writes int8
    (uint8 after a fused ReLU) at the tensor's calibrated scale — a *float-out* edge that the ARM
    dequantizes; the QDQ model quantizes it the same way.
    """

    tensor: str
    relu_node: str | None
    direct_to: str | None
    relu_max: float | None = None   # fused Clip(0, max) (ReLU6): outputs <= max; None for Relu


def fused_activation(network: Network, node) -> tuple[bool, float | None]:
    """Whether ``node`` can be fused into the core as its ReLU, and the upper bound it adds:
    Relu -> (True, None); Clip(min 0, max c) (ReLU6) -> (True, c), exact because every output
    scale of the fused tensor is calibrated on (or capped to) values <= c, so the core's clamp
    to the largest code already clips at c."""
    if node.op_type == "Relu":
        return True, None
    if node.op_type != "Clip":
        return False, None
    lo, hi = _clip_bounds(network, node)
    if lo is None or lo != 0.0 or (hi is not None and not hi > 0):
        return False, None
    return True, hi


OUT_BITS = 8   # bits the cores write on float-out edges


def output_edges(network: Network) -> dict[str, OutputEdge]:
    """The :class:`OutputEdge` of every layer (structure only, no data needed)."""
    graph = network.model.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            if i:
                consumers.setdefault(i, []).append(node)
    outputs = {o.name for o in graph.output}
    by_input: dict[str, list] = {}
    for layer in network.layers:
        by_input.setdefault(layer.input, []).append(layer)
    edges = {}
    for layer in network.layers:
        tensor, relu, relu_max = layer.output, None, None
        users = consumers.get(tensor, [])
        fused = len(users) == 1 and tensor not in outputs and fused_activation(network, users[0])
        if fused and fused[0]:
            relu, tensor, relu_max = users[0].name or users[0].output[0], users[0].output[0], fused[1]
            users = consumers.get(tensor, [])
        targets = by_input.get(tensor, [])
        direct = targets[0].name if len(users) == 1 and len(targets) == 1 and tensor not in outputs else None
        edges[layer.name] = OutputEdge(tensor, relu, direct, relu_max)
    return edges


def calibration_tensors(network: Network) -> list[str]:
    """Tensors whose range quantization needs: every layer input and every float-out output."""
    names = {layer.input for layer in network.layers}
    names |= {e.tensor for e in output_edges(network).values() if e.direct_to is None}
    return sorted(names)


@dataclass
class QuantizedNetwork:
    """A BN-folded network with integer parameters for every quantizable layer."""

    network: Network                       # the BN-folded float network
    layers: dict[str, LayerQuant] = field(default_factory=dict)

    @property
    def weight_bits(self) -> dict[str, int]:
        return {n: q.weight_bits for n, q in self.layers.items()}

    def model_bytes(self) -> int:
        """Bytes of all packed integer weights plus int32 biases."""
        return sum(self.network.layer(n).weight_bytes(q.weight_bits) for n, q in self.layers.items())

    def weight_initializer(self, name: str) -> str:
        """Name of the integer weight initializer of layer ``name`` in :meth:`to_onnx`'s model."""
        return f"{name}.weight_q"

    def input_scale_initializer(self, name: str) -> str:
        """Name of the input-activation scale initializer of layer ``name`` in :meth:`to_onnx`'s model."""
        return f"{name}.input_scale"

    def input_saturation_initializers(self, name: str) -> tuple[str, str]:
        """Names of the (lowest, highest) input-code initializers of layer ``name``'s integer
        Clip in :meth:`to_onnx`'s model: present below 8 bits, or at every layer with
        ``saturate_inputs``."""
        return f"{name}.input_qmin", f"{name}.input_qmax"

    def to_onnx(self, saturate_inputs: bool = False):
        """QDQ ``ModelProto`` (opset 13-20): Q/DQ on each layer input, DQ on weights and biases.

        ``saturate_inputs`` also puts the integer Clip on 8-bit layer inputs (at the full code
        range, a no-op), so a prepared session can move any layer to a narrower input range by
        swapping initializers (what MQE does)."""
        return export_qdq(self, saturate_inputs)


class _Clips:
    """The value each tensor's largest code stands for, per bit-width (calibrated range, capped
    by a fused Clip(0, c) that is exact only if the core's largest code is <= c)."""

    def __init__(self, network: Network, ranges: dict[str, TensorRange], edges: dict):
        missing = [t for t in calibration_tensors(network) if t not in ranges]
        if missing:
            raise ConfigError(f"no calibration range for tensor(s) {missing[:3]}; "
                              "calibrate this network first")
        self.ranges = ranges
        self.cap = {e.tensor: e.relu_max for e in edges.values() if e.relu_max is not None}

    def __call__(self, tensor: str, bits: int) -> float:
        r = self.ranges[tensor].clip_at(bits)
        r = r if r > 0 else 1.0
        return min(r, self.cap[tensor]) if tensor in self.cap else r


def input_quantization(network: Network, bits, ranges: dict[str, TensorRange],
                       clips: _Clips | None = None) -> dict[str, tuple[float, bool]]:
    """Per layer, (input scale, signed) of its input activation at ``bits`` (int or mapping):
    what :func:`quantize` programs, without quantizing any weight."""
    from .bitconfig import resolve_bits

    abits = resolve_bits(bits, network.layer_names)
    clip_of = clips if clips is not None else _Clips(network, ranges, output_edges(network))
    unsigned = nonnegative_tensors(network)
    act = {}
    for layer in network.layers:
        signed = layer.input not in unsigned
        _, qmax = activation_range(abits[layer.name], signed)
        act[layer.name] = (float(np.float32(clip_of(layer.input, abits[layer.name]) / qmax)), signed)
    return act


def odd_multiplier(m) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~ohq_pynq.hw.accelerator.quantize_multiplier` with every nonzero ``mult`` odd.

    The core rounds ``acc * mult / 2^shift`` half up; QuantizeLinear rounds half to even, and a
    float evaluation of the QDQ model lands on either side of an exact .5. Ties need
    ``acc * mult`` to be an odd multiple of ``2^(shift-1)``: one accumulator in ``2^(shift-z)``
    when ``mult`` ends in ``z`` zero bits (measured: a channel with z = 12 at shift 17 tied on
    1 output in 32, and onnxruntime's default session then disagreed with the unfused model on
    12 of 32 digits images). With ``mult`` odd it is one in ``2^shift`` (shift >= 16). The
    nearer odd neighbour moves the multiplier by at most one part in 32768."""
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    mult, shift = quantize_multiplier(m)
    even = (mult > 0) & (mult % 2 == 0)
    exact = m * np.exp2(shift)
    up = np.where(mult + 1 <= 0xFFFF, mult + 1, mult - 1)
    alt = np.where(np.abs(exact - (mult - 1)) <= np.abs(exact - up), mult - 1, up)
    mult = np.where(even & (alt > 0), alt, mult)
    return mult, shift


def quantize(network: Network, bits, ranges: dict[str, TensorRange], act_bits=None) -> QuantizedNetwork:
    """Quantize every layer of a BN-folded ``network`` with ``bits`` (int, mapping or config path).

    ``act_bits`` defaults to the weight bits of each layer (W4A4 / W8A8); pass ``8`` for W4A8.
    """
    from .bitconfig import resolve_bits

    wbits = resolve_bits(bits, network.layer_names)
    abits = wbits if act_bits is None else resolve_bits(act_bits, network.layer_names)
    edges = output_edges(network)
    clip_of = _Clips(network, ranges, edges)
    act = input_quantization(network, abits, ranges, clip_of)    # layer -> (input scale, signed)
    q = QuantizedNetwork(network)
    for layer in network.layers:
        act_scale, signed = act[layer.name]
        edge = edges[layer.name]
        out_scale, out_signed = None, edge.relu_node is None
        if edge.direct_to is None:
            out_scale = clip_of(edge.tensor, OUT_BITS) / activation_range(OUT_BITS, out_signed)[1]
            out_scale = float(np.float32(out_scale))
            target = out_scale
        else:
            target = act[edge.direct_to][0]
        w_q, w_scale = quantize_weight(network.weight(layer), wbits[layer.name])
        # The core multiplies by mult / 2^shift (16-bit mult). Snap the weight scales so that
        # s_x * s_w / s_target is exactly that fixed-point number: the float QDQ model then
        # computes what the integer core computes, not a value 2^-16 away from it.
        mult, shift = odd_multiplier(act_scale * w_scale.astype(np.float64) / target)
        w_scale = (mult * np.exp2(-shift.astype(np.float64)) * target / act_scale).astype(np.float32)
        w_scale = np.where(w_scale > 0, w_scale, np.float32(1.0)).astype(np.float32)
        bias_scale = (np.float32(act_scale) * w_scale).astype(np.float32)
        bias_q = np.clip(np.rint(network.bias(layer) / bias_scale), -2**31, 2**31 - 1).astype(np.int32)
        q.layers[layer.name] = LayerQuant(layer.name, wbits[layer.name], abits[layer.name], w_q,
                                          w_scale, bias_q, act_scale, signed, edge,
                                          out_scale, out_signed, mult, shift)
    return q


def prepare(model, input_shape=None) -> Network:
    """Load ``model`` and fold its BatchNormalizations: the network the cores execute."""
    net = load_network(model, input_shape)
    if not net.batchnorm_nodes:
        return net
    source, batch = net.source, net.input_batch
    folded = fold_batchnorm(net.model)
    del net                                   # one float copy of the weights at a time
    folded_net = load_network(folded, take=True)
    folded_net.source = source
    folded_net.input_batch = batch
    return folded_net


def nonnegative_tensors(network: Network) -> set[str]:
    """Tensors that are >= 0 by construction: ReLU-family outputs, through sign-preserving ops."""
    graph = network.model.graph
    nonneg: set[str] = set()
    for node in graph.node:  # topological order
        op = node.op_type
        if op in NONNEGATIVE_OPS:
            nonneg.add(node.output[0])
        elif op == "Clip" and _clip_min(network, node) is not None and _clip_min(network, node) >= 0:
            nonneg.add(node.output[0])
        elif op in SIGN_PRESERVING_OPS and node.input[0] in nonneg:
            nonneg.add(node.output[0])
        elif op in ("Concat", "MaxPool") and all(i in nonneg for i in node.input if not network.is_constant(i)):
            nonneg.add(node.output[0])
    return nonneg


def _clip_min(network: Network, node) -> float | None:
    return _clip_bounds(network, node)[0]


def _clip_bounds(network: Network, node) -> tuple[float | None, float | None]:
    """(min, max) of a Clip with constant bounds (attributes before opset 11, inputs after);
    None where absent or not constant (min None also when it is given but not constant)."""
    attrs = {a.name: a.f for a in node.attribute if a.name in ("min", "max")}
    bounds = []
    for k, name in ((1, "min"), (2, "max")):
        if name in attrs:
            bounds.append(float(attrs[name]))
        elif len(node.input) > k and node.input[k]:
            if not network.is_constant(node.input[k]):
                return None, None
            bounds.append(float(np.asarray(network.constant(node.input[k])).reshape(-1)[0]))
        else:
            bounds.append(None)
    return bounds[0], bounds[1]


# ----------------------------------------------------------------------------------------------
# QDQ export
# ----------------------------------------------------------------------------------------------
def _int_type(signed: bool) -> int:
    from onnx import TensorProto

    return TensorProto.INT8 if signed else TensorProto.UINT8


def _int_tensor(name: str, values: np.ndarray, signed: bool):
    """An int8 (``signed``) or uint8 initializer; 4-bit codes are held in the same types."""
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values).astype(np.int8 if signed else np.uint8), name)


def weight_codes_uint8(w_q: np.ndarray) -> np.ndarray:
    """Signed weight codes (int8, [-127, 127]) as the QDQ model stores them: uint8 with
    :data:`WEIGHT_ZERO_POINT`."""
    return (np.asarray(w_q).astype(np.int16) + WEIGHT_ZERO_POINT).astype(np.uint8)


def qdq_opset(opset: int) -> int:
    """Opset of the QDQ model for a float model at ``opset``: raised to ``QDQ_OPSETS[0]``,
    lowered to ``QDQ_OPSETS[1]``, else the model's own."""
    return min(max(opset, QDQ_OPSETS[0]), QDQ_OPSETS[1])


def _convert_opset(model):
    """``model`` converted to :func:`qdq_opset` of its opset, with the lowest IR version that
    opset needs (older onnxruntime refuses newer IR versions)."""
    from onnx import helper, version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    target = qdq_opset(opset)
    if target != opset:
        try:
            model = version_converter.convert_version(model, target)
        except Exception as err:  # noqa: BLE001 - onnx raises assorted types
            if target > opset:
                raise ModelError(f"cannot convert the model from opset {opset} to {target} for QDQ "
                                 f"export: {_first_line(err)}") from None
            # no down-conversion for some op: the model keeps its newer opset
    ir = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = max(int(ir), 7)
    return model


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _activation_qdq(x: str, out: str, layer: str, kind: str, scale: str, zp: str, bits: int,
                    signed: bool, inits: list, saturate: bool = False) -> list:
    """Nodes QuantizeLinear -> (Clip to the 4-bit range) -> DequantizeLinear from ``x`` to ``out``
    for a layer's ``kind`` ("Input" or "Output") activation.

    Tensor ``{layer}.{kind}_q`` (lower case) holds the integer codes the core reads or writes.
    Below 8 bits an integer Clip saturates the int8/uint8 codes ``..._q8`` to
    ``activation_range(bits)``: the values an INT4 QuantizeLinear gives, in the types every
    onnxruntime optimiser handles. ``saturate`` adds that Clip at 8 bits too.
    """
    from onnx import helper

    q = f"{layer}.{kind.lower()}_q"
    clip = bits < 8 or saturate
    nodes = [helper.make_node("QuantizeLinear", [x, scale, zp], [f"{q}8" if clip else q],
                              name=f"{layer}/Quantize{kind}")]
    if clip:
        lo, hi = activation_range(bits, signed)
        inits.extend([_int_tensor(f"{q}min", np.array(lo), signed), _int_tensor(f"{q}max", np.array(hi), signed)])
        nodes.append(helper.make_node("Clip", [f"{q}8", f"{q}min", f"{q}max"], [q], name=f"{layer}/Saturate{kind}"))
    nodes.append(helper.make_node("DequantizeLinear", [q, scale, zp], [out], name=f"{layer}/Dequantize{kind}"))
    return nodes


def export_qdq(qnet: QuantizedNetwork, saturate_inputs: bool = False):
    """Build the QDQ model of ``qnet`` (see module docstring and :meth:`QuantizedNetwork.to_onnx`)."""
    import json

    from onnx import helper, numpy_helper

    net = qnet.network
    # The float weights and biases of the layers are replaced by integer codes: copy the rest
    # only (a full copy would hold a second float copy of every weight while exporting).
    layer_outputs = {(layer.op, layer.output) for layer in net.layers}
    still_read = {o.name for o in net.model.graph.output}
    for node in net.model.graph.node:
        layer_node = node.output and (node.op_type, node.output[0]) in layer_outputs
        still_read.update(node.input[:1] if layer_node else node.input)
    replaced = {t for layer in net.layers for t in (layer.weight, layer.bias) if t} - still_read
    model = copy_model(net.model, keep=lambda name: name not in replaced)
    del model.graph.value_info[:]
    # the opset converter needs a complete graph: the left-out weights are typed inputs meanwhile
    held = len(model.graph.input)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in net.model.graph.initializer if t.name in replaced)
    model = _convert_opset(model)
    inputs = model.graph.input
    for k in range(len(inputs) - 1, held - 1, -1):
        if inputs[k].name in replaced:
            del inputs[k]
    graph = model.graph
    nodes = list(graph.node)
    new_inits = []
    before: dict[int, list] = {}    # node index -> Q/DQ nodes to insert before it
    for layer in net.layers:
        lq = qnet.layers[layer.name]
        k = _layer_node_index(nodes, layer)
        node = nodes[k]
        n = layer.name
        # input activation: Q -> (saturate) -> DQ at the layer's bits
        x_scale, x_zp = qnet.input_scale_initializer(n), f"{n}.input_zero_point"
        new_inits.append(numpy_helper.from_array(np.array(lq.act_scale, dtype=np.float32), x_scale))
        new_inits.append(_int_tensor(x_zp, np.array(0), lq.act_signed))
        xdq = f"{n}.input_dq"
        before.setdefault(k, []).extend(
            _activation_qdq(layer.input, xdq, n, "Input", x_scale, x_zp, lq.act_bits,
                            lq.act_signed, new_inits, saturate_inputs))
        # weight: integer codes in the original layout, per-channel DQ along the cout axis
        w_q = lq.weight_q
        axis = 0
        if layer.op != "Conv":
            w_q = w_q.reshape(layer.cout, layer.cin)
            if layer.weight_transposed:
                w_q, axis = w_q.T, 1
        w_name, ws_name = qnet.weight_initializer(n), f"{n}.weight_scale"
        new_inits.append(numpy_helper.from_array(weight_codes_uint8(np.ascontiguousarray(w_q)), w_name))
        new_inits.append(numpy_helper.from_array(lq.weight_scale.astype(np.float32), ws_name))
        wzp = f"{n}.weight_zero_point"
        new_inits.append(numpy_helper.from_array(np.full(layer.cout, WEIGHT_ZERO_POINT, np.uint8), wzp))
        wdq = f"{n}.weight_dq"
        before[k].append(helper.make_node("DequantizeLinear", [w_name, ws_name, wzp], [wdq],
                                                    name=f"{n}/DequantizeWeight", axis=axis))
        inputs = [xdq, wdq]
        if layer.bias is not None or layer.op != "MatMul":
            b_name, bs_name = f"{n}.bias_q", f"{n}.bias_scale"
            new_inits.append(numpy_helper.from_array(lq.bias_q.astype(np.int32), b_name))
            new_inits.append(numpy_helper.from_array(
                (np.float32(lq.act_scale) * lq.weight_scale).astype(np.float32), bs_name))
            bdq = f"{n}.bias_dq"
            before[k].append(helper.make_node("DequantizeLinear", [b_name, bs_name], [bdq],
                                                        name=f"{n}/DequantizeBias", axis=0))
            inputs.append(bdq)
        del node.input[:]
        node.input.extend(inputs)
    # Float-out edges: the core writes int8/uint8 at out_scale; the producer's output is renamed
    # and Q -> DQ restores the original tensor name, so consumers (and graph outputs) are untouched.
    after: dict[int, list] = {}     # node index -> Q/DQ nodes to insert after it
    producer = {o: k for k, node in enumerate(nodes) for o in node.output}
    for layer in net.layers:
        lq = qnet.layers[layer.name]
        if lq.edge is None or lq.edge.direct_to is not None:
            continue
        n, t = layer.name, lq.edge.tensor
        k = producer[t]
        node = nodes[k]
        raw, o_scale, o_zp = f"{n}.output_raw", f"{n}.output_scale", f"{n}.output_zero_point"
        node.output[list(node.output).index(t)] = raw
        new_inits.append(numpy_helper.from_array(np.array(lq.out_scale, dtype=np.float32), o_scale))
        new_inits.append(_int_tensor(o_zp, np.array(0), lq.out_signed))
        after.setdefault(k, []).extend(
            _activation_qdq(raw, t, n, "Output", o_scale, o_zp, OUT_BITS, lq.out_signed, new_inits))
    # Rebuild the node list with each layer's Q/DQ nodes around it (keeps topological order).
    ordered = []
    for k, node in enumerate(nodes):
        ordered.extend(before.get(k, []))
        ordered.append(node)
        ordered.extend(after.get(k, []))
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)
    drop_unused_initializers(model)
    restore_batch(model, net.input_batch)
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   "ohq_pynq.weight_bits": json.dumps(qnet.weight_bits),
                                   "ohq_pynq.act_bits": json.dumps({k: q.act_bits for k, q in qnet.layers.items()})})
    return model


def restore_batch(model, batch: int | None) -> None:
    """Give ``model``'s image input, and every output sharing its symbolic batch dimension, the
    fixed ``batch`` the user's file declared (import works on a batch-free copy), so the user's
    code that feeds ``(batch, ...)`` and reads ``(batch, ...)`` keeps working. No-op for None."""
    if batch is None:
        return
    inits = {t.name for t in model.graph.initializer}
    image = next((i for i in model.graph.input if i.name not in inits), None)
    if image is None or not image.type.tensor_type.HasField("shape") or not image.type.tensor_type.shape.dim:
        return
    first = image.type.tensor_type.shape.dim[0]
    param = first.dim_param if first.HasField("dim_param") else None
    for vi in [image, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and (vi is image or (param and dims[0].HasField("dim_param") and dims[0].dim_param == param)):
            dims[0].dim_value = int(batch)


def _layer_node_index(nodes: list, layer) -> int:
    for k, node in enumerate(nodes):
        if node.output and node.output[0] == layer.output and node.op_type == layer.op:
            return k
    raise ConfigError(f"layer {layer.name!r} not found in the model graph")


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def predict(model, x: np.ndarray, batch_size: int = 16, executor: str = "auto") -> np.ndarray:
    """Logits of ``model`` (ModelProto or path) for images ``x``, in batches of ``batch_size``, on
    the ``executor`` ("auto", "numpy" or "onnxruntime")."""
    from .runtime import make_executor

    runner = make_executor(model, executor)
    out_name = runner.output_names[0]
    return np.concatenate([runner.run(xb, outputs=[out_name])[out_name].reshape(len(xb), -1)
                           for xb in _batches(x, batch_size)])


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over images of KL(softmax(ref) ‖ softmax(logits)) in nats."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))


def compare(logits: np.ndarray, y: np.ndarray | None = None, reference: np.ndarray | None = None) -> dict:
    """Accuracy against labels ``y``; top-1 agreement and KL against ``reference`` logits."""
    out: dict = {"images": int(len(logits))}
    top = logits.argmax(axis=-1)
    if y is not None:
        out["accuracy"] = float(np.mean(top == np.asarray(y).reshape(-1)))
    if reference is not None:
        out["top1_agreement"] = float(np.mean(top == reference.argmax(axis=-1)))
        out["kl"] = kl_divergence(reference, logits)
    return out
