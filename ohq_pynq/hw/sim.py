"""Simulator backend: the core's integer arithmetic in numpy, its cycle counter from the cycle
model, bytes from the stream layout, energy from the board's energy model.

Outputs are bit-exact with :func:`ohq_pynq.hw.core_model.conv_reference` (which the cocotb benches
check against the RTL): the window sums are computed with a float64 matrix product, exact because
every partial sum stays below 2^53 (|x| <= 255, |w| <= 127, fan-in < 2^37), then wrapped to int32
and requantized by ``core_model.requantize`` itself. Deterministic: repeated runs give identical
measurements.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from . import cycle_model
from .accelerator import HardwareInfo, Measurement, Requant, check_inputs, conv_layer
from .boards import Board, get_board
from .core_model import ConvLayer, geometry, requantize, wrap_int32
from .tiling import plan_layer


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
    (default: the bus width).
    """

    def __init__(self, board: str | Board | None = None, estimate_energy: bool = False,
                 stream_bytes: int | None = None):
        self.board = board if isinstance(board, Board) else get_board(board)
        self.estimate_energy = estimate_energy
        self.stream_bytes = stream_bytes
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
                            rails=tuple(rails), part=b.part, deterministic=True,
                            energy_model=b.energy.to_json() if energy else None)

    def run_layer(self, layer, bits: int, x_q, w_q, requant: Requant):
        """Run one layer: (OH, OW, Cout) int64 outputs and the :class:`Measurement`."""
        t_wall = time.perf_counter()
        conv = conv_layer(layer, requant)
        self.board.core(bits)                      # ConfigError if the board lacks this core
        x, w, bias, mult, shift = check_inputs(conv, bits, x_q, w_q, requant)
        m = self.measure(conv, bits)
        acc = wrap_int32(accumulate(x, w, conv) + bias)
        y = requantize(acc, mult, shift, conv.relu, conv.out_bits, conv.out_signed)
        return y, replace(m, wall_seconds=time.perf_counter() - t_wall)

    def measure(self, layer, bits: int, requant: Requant | None = None) -> Measurement:
        """The measurement of one layer without computing outputs (cycles, bytes, joules)."""
        core = self.board.core(bits)
        conv = conv_layer(layer, requant)
        plan = plan_layer(conv, core)
        cyc = bin_ = bout = lane_macs = macs = 0
        for tile in plan.tiles:
            geo = geometry(tile.layer, core)
            cyc += cycle_model.cycles(tile.layer, core, self.stream_bytes)
            bin_ += geo.in_beats * core.bus_bytes
            bout += geo.out_beats * core.bus_bytes
            lane_macs += geo.mac_steps * core.macs_per_cycle
            macs += geo.mac_steps
        seconds = cyc / self.board.fclk_hz
        joules = None
        if self.models_energy:
            joules = self.board.energy.joules(seconds, lane_macs, bits, bin_ + bout)
        return Measurement(cycles=int(cyc), seconds=seconds, bytes_in=int(bin_), bytes_out=int(bout),
                           joules=joules, mac_cycles=int(macs), runs=plan.runs)

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
