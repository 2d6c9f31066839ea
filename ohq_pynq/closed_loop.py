"""The closed loop: deployment's measured latency against the profile's prediction, and the gap.

Deployment (:mod:`ohq_pynq.deploy`) times each image end to end on the board's clock
(:class:`BoardClock`): on the ``pynq`` backend that is the wall clock of the ARM core the
deployment runs on; on the simulator it is the wall clock of this CPU with every accelerator
call replaced by the seconds the board would take for it (the core's counter + the modelled
overheads, ``Measurement.total_seconds``; host time is this thread's CPU time,
``time.thread_time``, so other processes on a shared host do not count), and everything else — the ARM-side ops between the
cores — scaled by the board's ``arm_scale`` (:mod:`ohq_pynq.hw.overheads`). It also times the
ARM work by kind: per layer the quantization of its input and the dequantization of its output,
and per ONNX op type the float ops between the cores (Add, pooling, Flatten, ...).

:func:`explain` puts the two side by side: predicted = the sum of the profile's per-layer
seconds at the chosen bits (what the ILP optimised); measured = the end-to-end time per image;
the gap = per-layer differences (the deployed layer's output format differs from the profiled
one, timing noise of the driver's packing) + ARM quantize/dequantize at the cores' edges + ARM
ops between the cores + the rest (the deployment's own Python: graph walk, dictionaries).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


class BoardClock:
    """Seconds on the board: this CPU's wall clock outside accelerator calls x ``arm_scale``,
    plus each call's ``board_seconds`` in place of its host time (see the module doc)."""

    def __init__(self, arm_scale: float = 1.0, clock=time.perf_counter):
        self.arm_scale = float(arm_scale)
        self.clock = clock
        self._t0 = clock()
        self._host_in_calls = 0.0
        self._board_in_calls = 0.0

    def add_call(self, host_seconds: float, board_seconds: float) -> None:
        """An accelerator call took ``host_seconds`` here and takes ``board_seconds`` there."""
        self._host_in_calls += float(host_seconds)
        self._board_in_calls += float(board_seconds)

    def arm(self, host_seconds: float) -> float:
        """Board seconds of ARM work that took ``host_seconds`` here."""
        return self.arm_scale * float(host_seconds)

    def now(self) -> float:
        """Board seconds since the clock was made."""
        host = self.clock() - self._t0 - self._host_in_calls
        return self.arm(host) + self._board_in_calls


@dataclass
class ArmTimes:
    """Board seconds of ARM-side work in a deployment, summed over its images."""

    edges: dict = field(default_factory=dict)      # layer -> quantize input + dequantize output
    ops: dict = field(default_factory=dict)        # ONNX op type -> float ops between the cores
    end_to_end: float = 0.0                        # every image, first node to logits

    def add_edge(self, layer: str, seconds: float) -> None:
        self.edges[layer] = self.edges.get(layer, 0.0) + seconds

    def add_op(self, op: str, seconds: float) -> None:
        self.ops[op] = self.ops.get(op, 0.0) + seconds


def explain(layers: list[dict], measured_seconds: float, arm_edges: dict, arm_ops: dict) -> dict:
    """Predicted vs measured per image, and where the gap comes from.

    ``layers``: rows with ``name``, ``predicted_seconds`` (profile at the chosen bits) and
    ``measured_seconds`` (the layer's accelerator calls in deployment, core + overheads);
    ``measured_seconds``: deployment's end-to-end seconds per image; ``arm_edges`` (per layer)
    and ``arm_ops`` (per op type): ARM seconds per image. Returns a JSON-able dict."""
    predicted = sum(r["predicted_seconds"] for r in layers)
    on_cores = sum(r["measured_seconds"] for r in layers)
    edges = sum(arm_edges.values())
    ops = sum(arm_ops.values())
    per_layer = on_cores - predicted
    rest = measured_seconds - on_cores - edges - ops
    gap = measured_seconds - predicted
    parts = {"per_layer_difference": per_layer, "arm_quantize_dequantize": edges,
             "arm_ops_between_cores": ops, "unattributed": rest}
    return {"predicted_seconds": predicted, "measured_seconds": measured_seconds,
            "gap_seconds": gap, "gap_relative": gap / predicted if predicted > 0 else None,
            "cores_seconds": on_cores, "gap": parts,
            "arm_ops": dict(sorted(arm_ops.items(), key=lambda kv: -kv[1])),
            "largest": max(parts, key=lambda k: abs(parts[k])) if gap else None}


def overhead_share(rows: list[dict]) -> dict:
    """How the predicted per-layer seconds split: the core's counter vs the board's overheads
    (by category), from summary rows with ``predicted_core_seconds`` and ``predicted_overheads``."""
    core = sum(r.get("predicted_core_seconds") or 0.0 for r in rows)
    cats: dict[str, float] = {}
    for r in rows:
        for k, v in (r.get("predicted_overheads") or {}).items():
            cats[k] = cats.get(k, 0.0) + v
    total = core + sum(cats.values())
    return {"core_seconds": core, "overhead_seconds": total - core, "overheads": cats,
            "overhead_fraction": (total - core) / total if total > 0 else None}
