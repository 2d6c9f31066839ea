"""The hardware interface the algorithms use: one layer in, integer outputs and a measurement out.

::

    acc = make_accelerator("sim", board="zcu104")        # or "pynq" on a board
    info = acc.describe()                                 # HardwareInfo
    y, m = acc.run_layer(layer, bits, x_q, w_q, requant)  # y: (OH, OW, Cout) int64; m: Measurement
    acc.read_power()                                      # PowerSample or None (no rails)

Conventions of :meth:`Accelerator.run_layer`:

* ``layer``: a :class:`ohq_pynq.graph.Layer` (Conv with square kernel, equal strides, no dilation;
  Gemm/MatMul as 1x1 on 1x1) or a :class:`~ohq_pynq.hw.core_model.ConvLayer`; its flags
  (in_signed, relu, out_bits, out_signed) are taken from ``requant``.
* ``bits``: 4 or 8 — selects the core; weights and input activations are at this width.
* ``x_q``: one image, (H, W, Cin) integers (NHWC, as the core streams it), signed or unsigned
  per ``requant.in_signed``; ``w_q``: (Cout, Cin/groups, K, K) integers in the narrow weight
  range (int8 [-127, 127], int4 [-7, 7]) — :attr:`ohq_pynq.quant.LayerQuant.weight_q`.
* ``requant`` (:class:`Requant`): per output channel ``bias`` (int32), ``mult`` (uint16),
  ``shift`` (0..47), and per layer ``relu``, ``out_bits`` (4/8), ``out_signed``, ``in_signed``.
  The core computes ``clamp(relu((acc + bias) * mult + 2^(shift-1)) >> shift)``, see
  :mod:`ohq_pynq.hw.core_model`. :meth:`Requant.from_scales` builds it from float scales.
* Layers larger than the core's memories are split into several runs (:mod:`.tiling`); the
  :class:`Measurement` sums their core cycles, bytes and energy and counts the runs.

Only the overlay backend (``hw/overlay.py``) and ``hw/power.py`` import ``pynq``, lazily.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, DataError
from .core_model import MAX_SHIFT, ConvLayer, CoreConfig


@dataclass(frozen=True)
class HardwareInfo:
    """What a backend runs on: board, PL clock (Hz), cores by bits, power rails, bitstream."""

    board: str
    backend: str                       # "sim" or "pynq"
    fclk_hz: float
    cores: Mapping[int, CoreConfig]
    rails: tuple = ()                  # PMBus rails measured (("model",): sim energy model); () = no joules
    part: str = ""
    bitstream_sha256: str | None = None
    deterministic: bool = False        # True: repeated runs give identical measurements (sim)
    energy_model: dict | None = None   # sim: the energy constants used, else None
    overhead_model: dict | None = None  # sim: the board-overhead constants used, else None
    arm_scale: float = 1.0             # board seconds per host second of ARM-side work (sim)

    @property
    def has_power(self) -> bool:
        return bool(self.rails)

    @property
    def has_energy(self) -> bool:
        """True when run_layer reports joules (measured rails, or the sim's model)."""
        return self.has_power

    def to_json(self) -> dict:
        from .boards import core_json
        out = {"board": self.board, "backend": self.backend, "part": self.part,
               "fclk_hz": self.fclk_hz, "rails": list(self.rails), "has_power": self.has_power,
               "bitstream_sha256": self.bitstream_sha256,
               "cores": {str(b): core_json(c) for b, c in sorted(self.cores.items())}}
        if self.energy_model is not None:
            out["energy_model"] = self.energy_model
        if self.overhead_model is not None:
            out["overhead_model"] = self.overhead_model
        out["arm_scale"] = self.arm_scale
        out["hardware_id"] = self.hardware_id
        return out

    @property
    def hardware_id(self) -> str:
        """Stable short id of what determines a measurement: backend, board, clock, cores, rails."""
        from .boards import core_json
        key = {"backend": self.backend, "board": self.board, "fclk_hz": self.fclk_hz,
               "rails": list(self.rails), "energy_model": self.energy_model,
               **({"overhead_model": self.overhead_model, "arm_scale": self.arm_scale}
                  if self.overhead_model is not None else {}),
               "cores": {str(b): core_json(c) for b, c in sorted(self.cores.items())}}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.backend}-{self.board}-{digest}"


@dataclass(frozen=True)
class Measurement:
    """Cost of one layer: core cycles (counter), seconds = cycles / fclk, bytes over the AXI
    streams, joules (None without power rails), stall/MAC counters, runs (tiles) executed.

    ``overheads``: seconds the board spends outside the core's counter, by category
    (:data:`ohq_pynq.hw.overheads.CATEGORIES`: register programming, DMA set-up, cache
    maintenance, poll latency, the driver's numpy packing); None where not known.
    ``board_seconds``: the call's duration on the board, counter + overheads (sim: modelled;
    pynq: measured, without the energy replay). ``joules_stderr``: standard error of
    ``joules`` from the spread of the sensor updates (None without a measurement)."""

    cycles: int
    seconds: float
    bytes_in: int
    bytes_out: int
    joules: float | None = None
    in_stall_cycles: int = 0
    out_stall_cycles: int = 0
    mac_cycles: int = 0
    runs: int = 1
    wall_seconds: float | None = None   # host wall-clock time of the whole call (s), if measured
    overheads: Mapping[str, float] | None = None   # s outside the counter, by category
    board_seconds: float | None = None  # s the call takes on the board (counter + overheads)
    joules_stderr: float | None = None  # standard error of joules (J), from the sensor updates

    @property
    def bytes(self) -> int:
        return self.bytes_in + self.bytes_out

    @property
    def overhead_seconds(self) -> float:
        """Seconds outside the core's counter (0 when not known)."""
        return float(sum((self.overheads or {}).values()))

    @property
    def total_seconds(self) -> float:
        """What the layer costs the ARM end to end: ``board_seconds`` if known, else counter
        seconds + overheads."""
        if self.board_seconds is not None:
            return float(self.board_seconds)
        return float(self.seconds) + self.overhead_seconds

    def to_json(self) -> dict:
        return {"cycles": self.cycles, "seconds": self.seconds, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "joules": self.joules,
                "in_stall_cycles": self.in_stall_cycles, "out_stall_cycles": self.out_stall_cycles,
                "mac_cycles": self.mac_cycles, "runs": self.runs,
                **({"overheads": dict(self.overheads)} if self.overheads is not None else {}),
                **({"board_seconds": self.board_seconds} if self.board_seconds is not None else {}),
                **({"joules_stderr": self.joules_stderr} if self.joules_stderr is not None else {})}


@dataclass(frozen=True)
class PowerSample:
    """One reading of the board's rails: time (s, monotonic clock) and watts per rail."""

    t: float
    watts: Mapping[str, float]

    @property
    def total(self) -> float:
        return float(sum(self.watts.values()))


@dataclass(frozen=True)
class Requant:
    """Integer requantization of one layer, as the core's param records and flags hold it.

    ``bias`` int32, ``mult`` uint16 and ``shift`` 0..47, each (Cout,); ``relu``, ``out_bits`` (4
    or 8), ``out_signed``: the output; ``in_signed``: whether ``x_q`` is signed.
    """

    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu: bool = False
    out_bits: int = 8
    out_signed: bool = True
    in_signed: bool = True

    @classmethod
    def from_scales(cls, bias_q, multiplier, **flags) -> "Requant":
        """From int32 ``bias_q`` and the float ``multiplier`` per channel
        (input scale x weight scale / output scale)."""
        mult, shift = quantize_multiplier(multiplier)
        bias = np.asarray(bias_q, dtype=np.int64)
        mult = np.broadcast_to(mult, bias.shape).copy()
        shift = np.broadcast_to(shift, bias.shape).copy()
        return cls(bias=bias, mult=mult, shift=shift, **flags)

    @classmethod
    def identity(cls, cout: int, shift: int = 0, **flags) -> "Requant":
        """Zero bias, mult 1, the given shift (outputs = acc >> shift, clamped)."""
        return cls(bias=np.zeros(cout, np.int64), mult=np.ones(cout, np.int64),
                   shift=np.full(cout, shift, np.int64), **flags)


def quantize_multiplier(m) -> tuple[np.ndarray, np.ndarray]:
    """Float multipliers -> (mult uint16, shift 0..47) with ``mult / 2^shift ~= m``, using the
    largest shift that keeps ``mult <= 65535`` (relative error <= 2^-16 for m >= 2^-31)."""
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise DataError("requantization multipliers must be finite and >= 0.")
    if np.any(m >= 65535.5):
        raise DataError(f"requantization multiplier {float(m.max()):.4g} exceeds the core's 65535.")
    shift = np.zeros(m.shape, dtype=np.int64)
    pos = m > 0
    shift[pos] = np.clip(np.floor(np.log2(65535.0 / m[pos])), 0, MAX_SHIFT).astype(np.int64)
    mult = np.rint(m * np.exp2(shift)).astype(np.int64)
    over = mult > 0xFFFF
    shift[over] -= 1
    mult[over] = np.rint(m[over] * np.exp2(shift[over])).astype(np.int64)
    return mult, shift


@runtime_checkable
class Accelerator(Protocol):
    """A backend that runs one quantized layer and reports what it cost."""

    def describe(self) -> HardwareInfo: ...

    def run_layer(self, layer, bits: int, x_q: np.ndarray, w_q: np.ndarray,
                  requant: Requant) -> tuple[np.ndarray, Measurement]: ...

    def read_power(self): ...

    def close(self) -> None: ...


def conv_layer(layer, requant: Requant | None = None) -> ConvLayer:
    """The core's view of ``layer`` (graph.Layer or ConvLayer) with ``requant``'s flags."""
    flags = {}
    if requant is not None:
        flags = dict(in_signed=bool(requant.in_signed), out_bits=int(requant.out_bits),
                     out_signed=bool(requant.out_signed), relu=bool(requant.relu))
    if isinstance(layer, ConvLayer):
        return replace(layer, **flags) if flags else layer
    name = getattr(layer, "name", "?")
    kh, kw = layer.kernel
    sh, sw = layer.stride
    if kh != kw:
        raise ConfigError(f"layer {name!r} has a {kh}x{kw} kernel; the core runs square kernels only.")
    if sh != sw:
        raise ConfigError(f"layer {name!r} has strides {sh}x{sw}; the core needs equal strides.")
    if tuple(getattr(layer, "dilation", (1, 1))) != (1, 1):
        raise ConfigError(f"layer {name!r} is dilated {layer.dilation}; the core has no dilation.")
    h, w = layer.in_hw if layer.op == "Conv" else (1, 1)
    return ConvLayer(cin=int(layer.cin), cout=int(layer.cout), h=int(h), w=int(w), kernel=int(kh),
                     stride=int(sh), pads=tuple(int(p) for p in layer.pads), groups=int(layer.groups),
                     **flags)


def check_inputs(conv: ConvLayer, bits: int, x_q, w_q, requant: Requant,
                 weight_values: bool = True):
    """Validate shapes and integer ranges (one :class:`DataError` sentence) -> (x, w, bias, mult,
    shift); ``weight_values=False``: the weights' shape only (see ``validate_inputs``)."""
    from .core_model import validate_inputs
    return validate_inputs(x_q, w_q, requant.bias, requant.mult, requant.shift, conv, bits,
                           weight_values=weight_values)


def make_accelerator(backend: str = "sim", board: str | None = None, **options) -> Accelerator:
    """A backend: ``"sim"`` (numpy simulator, the default) or ``"pynq"`` (the overlay on this
    board). ``board`` names the board profile (sim: default pynq-z2; pynq: detected)."""
    if backend == "sim":
        from .sim import SimAccelerator
        return SimAccelerator(board=board, **options)
    if backend == "pynq":
        from .overlay import OverlayAccelerator
        return OverlayAccelerator(board=board, **options)
    raise ConfigError(f"unknown accelerator backend {backend!r}; use 'sim' or 'pynq'.")
