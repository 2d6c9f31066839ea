"""Simulator backend: the core's integer arithmetic in numpy, its cycle counter from the cycle
model, bytes from the stream layout, energy from the board's energy model.

Outputs are bit-exact with :func:`ohq_pynq.hw.core_model.conv_reference` (which the cocotb benches
check against the RTL): the window sums are computed with a float64 matrix product, exact because
every partial sum stays below 2^53 (|x| <= 255, |w| <= 127, fan-in < 2^37), then wrapped to int32
and requantized by ``core_model.requantize`` itself.

What a board adds around the core (:mod:`.overheads`; ``overheads=True``, the default for a named
board): the counter holds the input DMA's start (the driver arms MM2S after ap_start, then the
DDR latency) as input-stall cycles, and every run carries the ARM-side seconds outside the
counter (register programming, DMA set-up, cache flush/invalidate, poll latency, and with
``arm_time="measured"`` the driver's numpy packing, timed here with ``time.perf_counter`` and
scaled by the board's ``arm_scale``). The default ``arm_time="off"`` leaves the packing out, so
repeated runs give identical measurements (``describe().deterministic``); ``overheads=False``
models the bare core (its counter as the RTL benches see it). ``Measurement.total_seconds`` is
the counter's seconds + the overheads.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from . import core_model as cm
from . import cycle_model
from . import overheads as oh
from .accelerator import HardwareInfo, Measurement, Requant, check_inputs, conv_layer
from .boards import Board, get_board
from .core_model import ConvLayer, geometry, requantize, wrap_int32
from .buffers import BufferPool
from .tiling import plan_layer, run_plan


PACK_TIMINGS = 3     # the driver's numpy work is timed this many times; the least is used
# The clock of ARM-side work on the simulator: this thread's CPU time, so other processes on a
# shared host do not count (a board's ARM core runs the driver alone); a board uses perf_counter.
ARM_CLOCK = time.thread_time


def accumulate(x: np.ndarray, w: np.ndarray, layer: ConvLayer) -> np.ndarray:
    """int32-wrapped window sums (OH, OW, Cout), equal to ``core_model.conv_accumulate``."""
    k, s = layer.kernel, layer.stride
    pt, pl, pb, pr = layer.pads
    g, cin_g, cout_g = layer.groups, layer.cin_g, layer.cout_g
    oh, ow = layer.oh, layer.ow
    xp = np.pad(np.asarray(x, dtype=np.float64), ((pt, pb), (pl, pr), (0, 0)))
    # im2col: (OH, OW, K, K, Cin) by strided view, then per group a matrix product.
    sy, sx, sc = xp.strides
    cols = np.lib.stride_tricks.as_strided(
        xp, shape=(oh, ow, k, k, layer.cin), strides=(sy * s, sx * s, sy, sx, sc), writeable=False)
    wg = np.asarray(w, dtype=np.float64).reshape(g, cout_g, cin_g, k, k)
    if g == 1:
        a = cols.reshape(oh * ow, k * k * cin_g)
        b = wg[0].transpose(2, 3, 1, 0).reshape(k * k * cin_g, cout_g)
        acc = a @ b
    else:
        a = cols.reshape(oh * ow, k, k, g, cin_g)
        acc = np.einsum("pyxgi,goiyx->pgo", a, wg, optimize=True).reshape(oh * ow, layer.cout)
    return wrap_int32(np.rint(acc).astype(np.int64).reshape(oh, ow, layer.cout))


class SimAccelerator:
    """Numpy model of a board's int4 and int8 cores (see module docstring).

    ``board``: a board name or :class:`Board` (default pynq-z2). ``estimate_energy``: report the
    energy model's joules even on a board without power rails (default: only where the real
    board could measure them). ``stream_bytes``: sustained input bytes per cycle of the DMA
    (default: the bus width). ``overheads``: model what the board adds around the core (default:
    for a named board, not for a :class:`Board` built by hand; or a
    :class:`~.overheads.CpuModel`). ``arm_time``: ``"off"`` (default: deterministic, the
    driver's numpy packing left out) or ``"measured"`` (time it on this CPU, x ``arm_scale``;
    ``run`` does); ``arm_scale``: override the board's factor.
    """

    def __init__(self, board: str | Board | None = None, estimate_energy: bool = False,
                 stream_bytes: int | None = None, overheads: bool | oh.CpuModel | None = None,
                 arm_time: str = "off", arm_scale: float | None = None):
        from ..errors import ConfigError

        named = not isinstance(board, Board)
        self.board = get_board(board) if named else board
        self.estimate_energy = estimate_energy
        self.stream_bytes = stream_bytes
        if arm_time not in ("measured", "off"):
            raise ConfigError(f"arm_time must be 'measured' or 'off', not {arm_time!r}.")
        if overheads is None:
            overheads = named
        self.cpu = (overheads if isinstance(overheads, oh.CpuModel)
                    else oh.cpu_model(self.board.name) if overheads else None)
        self.arm_time = arm_time if self.cpu is not None else "off"
        scale = self.cpu.arm_scale if self.cpu is not None else 0.0
        self.arm_scale = 0.0 if self.arm_time == "off" else float(scale if arm_scale is None else arm_scale)
        self.packer = cm.StreamPacker()    # the driver's weight words, packed once per layer
        self.buffers = BufferPool(lambda n: np.zeros(n, dtype=np.uint8))   # as the driver's
        self.closed = False

    @property
    def models_energy(self) -> bool:
        """Joules are reported: the board has rails (or ``estimate_energy``) and an energy model."""
        return self.board.energy is not None and (self.board.has_power or self.estimate_energy)

    # -- Accelerator ---------------------------------------------------------------------
    def describe(self) -> HardwareInfo:
        b = self.board
        energy = self.models_energy
        rails = b.rails if b.has_power else (("model",) if energy else ())
        return HardwareInfo(board=b.name, backend="sim", fclk_hz=b.fclk_hz, cores=dict(b.cores),
                            rails=tuple(rails), part=b.part, deterministic=self.arm_time == "off",
                            energy_model=b.energy.to_json() if energy else None,
                            overhead_model=None if self.cpu is None else
                            {**self.cpu.to_json(), "arm_time": self.arm_time},
                            arm_scale=self.arm_scale)

    def run_layer(self, layer, bits: int, x_q, w_q, requant: Requant):
        """Run one layer: (OH, OW, Cout) int64 outputs and the :class:`Measurement`."""
        t_wall = time.perf_counter()
        conv = conv_layer(layer, requant)
        self.board.core(bits)                      # ConfigError if the board lacks this core
        x, w, bias, mult, shift = check_inputs(conv, bits, x_q, w_q, requant)
        m = self.measure(conv, bits)
        acc = wrap_int32(accumulate(x, w, conv) + bias)
        y = requantize(acc, mult, shift, conv.relu, conv.out_bits, conv.out_signed)
        if self.arm_scale > 0:
            pack = self.arm_scale * self._driver_numpy_seconds(conv, bits, x_q, w_q, requant)
            over = dict(m.overheads, pack=pack)
            m = replace(m, overheads=over)
        return y, replace(m, wall_seconds=time.perf_counter() - t_wall)

    def _driver_numpy_seconds(self, conv, bits, x_q, w_q, requant: Requant) -> float:
        """Seconds this CPU takes for the overlay driver's numpy work on the layer
        (:meth:`.overlay.OverlayAccelerator.run_layer`): checking the operands, casting the
        activations to byte codes, the plan's slicing and assembly and, per run, packing the
        stream into the run's input buffer and unpacking the output buffer (zeros: unpacking
        does not look at the values). As on the board, each run of ``w_q`` (the caller's weight
        tensor) has its own buffer, so its weight words are written once
        (:class:`~.core_model.StreamPacker`, ``out=``): the least of the timings is the steady
        state of a deployed network."""
        core = self.board.core(bits)
        plan = plan_layer(conv, core)
        run = 0

        def run_tile(tile, *tensors):
            nonlocal run
            key = (id(w_q), bits, run)
            run += 1
            geo = cm.geometry(tile.layer, core)
            buf = self.buffers.run(geo.in_beats * core.bus_bytes, key)
            self.packer.pack(*tensors, tile.layer, core, key=key, owner=w_q, out=buf, codes=True)
            return cm.unpack_output(self.buffers.shared("out", geo.out_beats * core.bus_bytes),
                                    tile.layer, core), None

        best = float("inf")
        for _ in range(PACK_TIMINGS):      # the least of a few: CPU work without the host's noise
            run = 0
            t0 = ARM_CLOCK()
            x, w, bias, mult, shift = check_inputs(conv, bits, x_q, w_q, requant,
                                                   weight_values=not self.packer.knows(w_q, bits))
            run_plan(plan, cm.activation_bytes(x), w, bias, mult, shift, run_tile)
            best = min(best, ARM_CLOCK() - t0)
        return best

    def measure(self, layer, bits: int, requant: Requant | None = None) -> Measurement:
        """The measurement of one layer without computing outputs (cycles, bytes, joules)."""
        core = self.board.core(bits)
        conv = conv_layer(layer, requant)
        plan = plan_layer(conv, core)
        cyc = bin_ = bout = lane_macs = macs = stall = 0
        over = dict.fromkeys(oh.CATEGORIES, 0.0) if self.cpu is not None else None
        for tile in plan.tiles:
            geo = geometry(tile.layer, core)
            cyc += cycle_model.cycles(tile.layer, core, self.stream_bytes)
            tin, tout = geo.in_beats * core.bus_bytes, geo.out_beats * core.bus_bytes
            bin_ += tin
            bout += tout
            lane_macs += geo.mac_steps * core.macs_per_cycle
            macs += geo.mac_steps
            if self.cpu is not None:
                stall += oh.start_stall_cycles(self.cpu, self.board.fclk_hz)
                for k, v in oh.run_overheads(self.cpu, tin, tout).items():
                    over[k] += v
        core_seconds = cyc / self.board.fclk_hz
        joules = None
        if self.models_energy:
            joules = self.board.energy.joules(core_seconds, lane_macs, bits, bin_ + bout)
        cyc += stall                     # the counter runs from ap_start: it sees the DMA's start
        seconds = cyc / self.board.fclk_hz
        return Measurement(cycles=int(cyc), seconds=seconds, bytes_in=int(bin_), bytes_out=int(bout),
                           joules=joules, mac_cycles=int(macs), runs=plan.runs,
                           in_stall_cycles=int(stall), overheads=over)

    def read_power(self):
        """None: the simulator has no rails (energy comes from the model in each Measurement)."""
        return None

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"SimAccelerator(board={self.board.name!r})"
