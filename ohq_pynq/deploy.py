"""Integer deployment: run a mixed-precision network with every conv/FC on the accelerator.

Each quantizable layer runs on the core of its bit-width (int4 layers on the int4 core, int8 on
the int8 core) with integer inputs, weights and requantization; everything else (residual Add,
pooling, SE gating, HardSwish, Flatten, ...) runs on the ARM in numpy, one image at a time.

Requantization in the core (:class:`~ohq_pynq.hw.accelerator.Requant`):

* *direct*: when a layer's output (after a ReLU that is fused into the core) feeds exactly one
  other quantizable layer and nothing else, the core writes it straight in that layer's input
  format (its scale, bits and signedness): ``mult/2^shift ≈ s_x·s_w,c / s_next``. The integers
  go to the next core untouched — the ARM never sees floats on that edge.
* *float out*: otherwise the core writes int8 (uint8 after a fused ReLU) at the scale of the
  output tensor's calibrated range, and the ARM dequantizes it for the float ops that follow.

The result equals the QDQ model (:meth:`~ohq_pynq.quant.QuantizedNetwork.to_onnx`) run by the
numpy engine bit for bit, except where one value rounds differently: the core requantizes the
exact integer ``(acc + bias) * mult / 2^shift`` and rounds half up, the QDQ model computes the
same value in float32 from float32 scales and rounds half to even, so an exact value within
~1e-7 (relative) of a ``k + 0.5`` boundary can come out one code apart (tests/test_deploy.py
checks that this is the only difference). :func:`verify` measures the agreement.

Timing (:mod:`ohq_pynq.closed_loop`): each image is timed end to end on the board's clock
(measured, not summed from the profile), each layer's accelerator calls are summed (core +
overheads), and the ARM work is timed by kind: quantize/dequantize at each layer's edges, and
the float ops between the cores by op type.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .closed_loop import ArmTimes, BoardClock
from .errors import ConfigError
from .graph import Layer
from .hw.accelerator import Measurement, Requant
from .quant import OUT_BITS, LayerQuant, QuantizedNetwork


@dataclass
class LayerPlan:
    """How one layer runs: its integer parameters, the core's requantization, and (through the
    layer's :class:`~ohq_pynq.quant.OutputEdge`) where its integer output goes."""

    layer: Layer
    lq: LayerQuant
    requant: Requant

    @property
    def relu_node(self) -> str | None:
        """ReLU node fused into the core (skipped on the ARM)."""
        return self.lq.edge.relu_node

    @property
    def output(self) -> str:
        """Tensor the layer (with a fused ReLU) produces."""
        return self.lq.edge.tensor

    @property
    def direct_to(self) -> str | None:
        """Consumer layer that takes the integers as they are (None: float-out edge)."""
        return self.lq.edge.direct_to


@dataclass
class LayerCost:
    """Accumulated accelerator cost of one layer over the images run (cycles, s, J, bytes);
    ``seconds`` end to end on the board (core + overheads), ``core_seconds`` the counter's."""

    cycles: int = 0
    seconds: float = 0.0
    joules: float | None = 0.0
    bytes: int = 0
    runs: int = 0
    core_seconds: float = 0.0

    def add(self, m: Measurement) -> None:
        self.cycles += m.cycles
        self.seconds += m.total_seconds
        self.core_seconds += m.seconds
        self.bytes += m.bytes
        self.runs += 1
        self.joules = None if (self.joules is None or m.joules is None) else self.joules + m.joules


@dataclass
class DeployStats:
    """What a deployment run measured: per-layer accelerator cost and host (ARM) time."""

    images: int = 0
    layers: dict[str, LayerCost] = field(default_factory=dict)
    host_seconds: float = 0.0        # wall time of the whole run on the host (s)
    arm: ArmTimes = field(default_factory=ArmTimes)   # board seconds of ARM work, by kind
    clock: BoardClock | None = None

    def per_image(self) -> dict:
        n = max(1, self.images)
        joules = [c.joules for c in self.layers.values()]
        return {
            "images": self.images,
            "accelerator_seconds": sum(c.seconds for c in self.layers.values()) / n,
            "end_to_end_seconds": self.arm.end_to_end / n,
            "arm_edges": {k: v / n for k, v in self.arm.edges.items()},
            "arm_ops": {k: v / n for k, v in self.arm.ops.items()},
            "joules": None if any(j is None for j in joules) else sum(joules) / n,
            "host_seconds": self.host_seconds / n,
            "layers": {k: {"seconds": c.seconds / n, "core_seconds": c.core_seconds / n,
                           "cycles": c.cycles / n,
                           "joules": None if c.joules is None else c.joules / n, "bytes": c.bytes / n}
                       for k, c in self.layers.items()},
        }


class Deployment:
    """A quantized network bound to an accelerator; :meth:`run` executes images on it."""

    def __init__(self, qnet: QuantizedNetwork, accelerator):
        from .engine import Engine

        self.qnet = qnet
        self.accelerator = accelerator
        self.engine = Engine(qnet.network.model, keep_model=False)
        self.plans = {layer.name: self._plan(layer) for layer in qnet.network.layers}
        self._by_output = {p.layer.output: p for p in self.plans.values()}
        self._skip = {p.relu_node for p in self.plans.values() if p.relu_node}
        # The layers run on the cores from their integer codes: the ARM never needs their float
        # weights and biases, so the engine forgets them (one copy of the weights, as integers).
        self.engine.release_constants(t for layer in qnet.network.layers
                                      for t in (layer.weight, layer.bias) if t)
        self._steps = self._schedule()

    def _schedule(self) -> list[tuple]:
        """The image's steps in order — ("layer", plan) on a core or ("node", node) on the ARM —
        each with the tensors whose last reader it is (freed right after it ran)."""
        steps = []
        for nd in self.engine.graph_nodes():
            if nd.name in self._skip:
                continue
            plan = self._by_output.get(nd.outputs[0])
            if plan is not None and nd.op == plan.layer.op:
                steps.append(("layer", plan, [plan.layer.input]))
            else:
                steps.append(("node", nd, [i for i in nd.inputs if i]))
        last: dict[str, int] = {}
        for k, (_, _, reads) in enumerate(steps):
            for t in reads:
                last[t] = k
        keep = set(self.engine.output_names)
        return [(kind, what, [t for t in dict.fromkeys(reads) if last[t] == k and t not in keep])
                for k, (kind, what, reads) in enumerate(steps)]

    def _plan(self, layer: Layer) -> LayerPlan:
        lq = self.qnet.layers[layer.name]
        edge = lq.edge
        if edge.direct_to is not None:
            nxt = self.qnet.layers[edge.direct_to]
            out_bits, out_signed = nxt.act_bits, nxt.act_signed
        else:
            out_bits, out_signed = OUT_BITS, lq.out_signed
        requant = Requant(bias=lq.bias_q.astype(np.int64), mult=lq.mult, shift=lq.shift,
                          relu=edge.relu_node is not None, out_bits=out_bits,
                          out_signed=out_signed, in_signed=lq.act_signed)
        return LayerPlan(layer, lq, requant)

    # -- execution --------------------------------------------------------------------------
    def run(self, x: np.ndarray, progress: bool = False) -> tuple[np.ndarray, DeployStats]:
        """Logits for images ``x`` (N, C, H, W), computed image by image on the accelerator."""
        stats = DeployStats(layers={n: LayerCost() for n in self.plans},
                            clock=_board_clock(self.accelerator))
        out_name = self.engine.output_names[0]
        outs = []
        it = range(len(x))
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="deploy", unit="img", leave=False)
        t0 = time.perf_counter()
        for i in it:
            t_image = stats.clock.now()
            outs.append(self._run_image(x[i:i + 1], stats)[out_name].reshape(-1))
            stats.arm.end_to_end += stats.clock.now() - t_image
        stats.images = len(x)
        stats.host_seconds = time.perf_counter() - t0
        return np.stack(outs), stats

    def _run_image(self, x1: np.ndarray, stats: DeployStats) -> dict:
        """One image through the network; returns the graph outputs (and any tensor nothing
        reads). A tensor is freed as soon as its last reader ran, so the ARM holds only the
        activations still needed (``self.peak_live_bytes``: the largest sum seen)."""
        live: dict[str, np.ndarray] = {self.engine.input_name: x1.astype(np.float32)}
        ints: dict[str, np.ndarray] = {}
        peak = 0
        for kind, what, done in self._steps:
            if kind == "layer":
                self._run_layer(what, live, ints, stats)
            else:
                t = stats.clock.clock()
                live.update(self.engine.evaluate(what, live))
                stats.arm.add_op(what.op, stats.clock.arm(stats.clock.clock() - t))
            peak = max(peak, sum(getattr(v, "nbytes", 0) for d in (live, ints) for v in d.values()))
            for t in done:
                live.pop(t, None)
                ints.pop(t, None)
        self.peak_live_bytes = max(getattr(self, "peak_live_bytes", 0), peak)
        return live

    def _run_layer(self, p: LayerPlan, live, ints, stats) -> None:
        layer, lq = p.layer, p.lq
        clock = stats.clock.clock
        t = clock()
        if layer.input in ints:
            x_q = ints.pop(layer.input)
        else:
            x = live[layer.input]
            if layer.op != "Conv":
                if x.ndim != 2:
                    raise ConfigError(f"layer {layer.name!r}: deployment runs {layer.op} on 2-D "
                                      f"inputs only, got shape {x.shape}")
                x = x.reshape(1, layer.cin, 1, 1)
            qmin, qmax = lq.act_qrange
            x_q = np.clip(np.rint(x[0] / np.float32(lq.act_scale)), qmin, qmax).astype(np.int16)
            x_q = x_q.transpose(1, 2, 0)                       # CHW -> HWC, as the core streams
        t_call = clock()
        y, m = self.accelerator.run_layer(layer, lq.weight_bits, x_q, lq.weight_q, p.requant)
        t_back = clock()
        stats.clock.add_call(t_back - t_call, m.total_seconds)
        stats.layers[layer.name].add(m)
        if p.direct_to is not None:
            ints[p.output] = y
        else:
            y = np.ascontiguousarray((y.astype(np.float32) * np.float32(lq.out_scale)).transpose(2, 0, 1)[None])
            live[p.output] = y if layer.op == "Conv" else y.reshape(1, layer.cout)
        stats.arm.add_edge(layer.name, stats.clock.arm((t_call - t) + (clock() - t_back)))


def _board_clock(accelerator) -> BoardClock:
    """The board's clock for ``accelerator``: on a board the wall clock; on the simulator this
    thread's CPU time (other processes on a shared host do not count) x ``arm_scale``."""
    info = accelerator.describe()
    clock = time.thread_time if info.backend == "sim" else time.perf_counter
    return BoardClock(getattr(info, "arm_scale", 1.0), clock=clock)


def verify(deployed_logits: np.ndarray, qdq_logits: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Agreement of the integer deployment with the QDQ model (and accuracy when labels exist)."""
    from .quant import compare

    out = compare(deployed_logits, y, qdq_logits)
    return {"images": out["images"], "top1_agreement_vs_qdq": out["top1_agreement"],
            "kl_vs_qdq": out["kl"], **({"accuracy": out["accuracy"]} if "accuracy" in out else {})}
