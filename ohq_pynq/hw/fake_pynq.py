"""A register-level fake of the pynq API, written from PYNQ's sources and Xilinx's documentation
(not from this project's driver), for running the overlay driver without a board.

``FakePynq(board=...)`` stands in for the ``pynq`` module (pass it as ``pynq_module``):

* ``Overlay(bitfile)`` needs ``<name>.hwh`` beside the ``.bit`` and builds ``ip_dict`` by parsing
  it like pynq (:func:`.hwh.parse_hwh`); loading it (``download=True``) "programs" the fake PL:
  an ohq_conv device per ``ohq-pynq:ohq:ohq_conv`` cell (its parameters from the ``.hwh``), an
  AXI DMA register model per ``xilinx.com:ip:axi_dma`` cell, both mapped at their ``.hwh``
  addresses and wired by the ``.hwh``'s AXI4-Stream buses. :func:`write_overlay` writes a
  placeholder ``.bit`` and the ``.hwh`` of ``vivado/tcl/build_overlay.tcl``'s design.
* ``DefaultIP`` reads and writes through an ``MMIO`` of ``phys_addr``/``addr_range`` (offsets
  must be word aligned, as pynq's ``MMIO`` requires); drivers are bound by ``bindto`` VLNV.
* The DMA driver mirrors ``pynq/lib/dma.py`` (simple mode): ``buffer_max_size =
  (1 << c_sg_length_width) - 1``, channel alignment = the memory-map data width
  (``c_m_axi_*_data_width / 8``) unless DRE is included, ``transfer()`` raising
  ``ValueError("Transfer size is ...")`` above the maximum and ``RuntimeError("DMA does not
  support unaligned transfers; ...")``, ``idle``/``error``/``running`` from DMASR, ``wait()``
  raising on DMAIntErr/DMASlvErr/DMADecErr and setting ``transferred`` from the LENGTH register.
* The AXI DMA model follows PG021 (direct register mode): the LENGTH register is
  ``c_sg_length_width`` bits wide and writing it starts a transfer; addresses wider than
  ``c_addr_width`` bits are cut to it; an address outside allocated memory is DMADecErr.
  MM2S sends ``ceil(n / width)`` beats, the last one partial (tkeep) — the ohq core ignores tkeep,
  as its RTL does — and stalls while the core does not take data. S2MM writes until ``tlast``;
  a packet longer than the armed length sets DMAIntErr and halts the channel (PG021 calls it
  undefined; bperez77/xilinx_axidma#149 shows this on hardware), a shorter one completes with
  LENGTH = the bytes written.
* ``allocate`` returns page-aligned buffers with a separate "device" copy, so a missing
  ``flush()``/``invalidate()`` shows up as stale data.
* ``pmbus.get_rails()`` returns the board's rails as its PYNQ image's libsensors configuration
  names them (:data:`BOARD_RAILS`, sources cited there), each a ``Rail`` with the sensors that
  configuration gives it. The total-power monitor averages like an INA226: every
  ``sensor_update`` seconds it publishes the mean power of the period just ended (idle + the
  energy the cores deposited in it + a small seeded noise); every read in between returns the
  last published value, and a failed read returns it too (libsensors' stale value).
* ``ps.Clocks.fclk0_mhz`` is set from the ``.hwh``'s PL clock when an overlay is loaded.

The device model behind the core's registers is the simulator core: on ``ap_start`` it samples
the configuration registers, takes the input beats the DMA delivers, decodes them (the inverse of
``core_model.pack_input``), computes with ``core_model.conv_reference``, streams the packed output
into the S2MM channel (stalling until one is armed), loads the 64-bit counters from the cycle
model plus the input-start stall the simulator models (the counter runs from ap_start, the first
beat arrives after the driver's MM2S ``transfer()`` and the DDR latency: ``hw/overheads.py``)
and sets ``ap_done``. Faults for robustness tests: ``hang``, ``dma_error``,
``cycle_offset`` (counters above 2^32), ``magic``, ``version`` (the "bitstream's" registers), and
the :class:`Faults` injected with ``faults=Faults(...)``.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import core_model as cm
from . import cycle_model, overheads
from . import regmap as rm
from .boards import get_board
from .hwh import CORE_VLNV, DMA_VLNV, overlay_design, parse_hwh, write_hwh

PAGE = 4096

# What pynq.pmbus.get_rails() shows on each board's PYNQ image: rail name -> the sensors libsensors
# groups under that label ("V", "I", "P"), and the total-power rail the cores' energy lands on.
#   ultra96v2: Avnet/Ultra96-PYNQ Ultra96/packages/sensorconf-v2/ultra96.conf (chips *-i2c-6-43/44:
#              per-supply PMIC rails with in/curr/power; *-i2c-6-45: in1 "VIN", curr1/power1 "5V",
#              in2 "5V"); idle watts of the PMIC rails from that repo's ultra96_pmbus.ipynb output.
#   zcu104:    Xilinx/PYNQ boards/ZCU104/packages/sensorconf/zcu104.conf (chips *-i2c-4-43/44 PMIC
#              rails; *-i2c-5-40, the INA226 on the 12 V input: in1/curr1/power1 "12V").
#   kv260:     the carrier's INA260 through iio-hwmon, no sensors.d entry (Kria-PYNQ install.sh):
#              libsensors' default labels, one rail per feature.
#   pynq-z2:   no power monitor: {}.
BOARD_RAILS = {
    "pynq-z2": ({}, None),
    "ultra96v2": ({"AUX": ("VIP", 0.094), "1V2": ("VIP", 0.375), "PSDDR": ("VIP", 0.125),
                   "INT": ("VIP", 0.156), "3V3_D": ("VIP", 0.0), "PSAUX": ("VIP", 0.281),
                   "PSINT_LP": ("VIP", 0.25), "3V3": ("VIP", 0.656), "PSINT_FP": ("VIP", 0.656),
                   "PSPLL": ("VIP", 0.047), "VIN": ("V", 0.0), "5V": ("VIP", None)}, "5V"),
    "zcu104": ({"INT": ("VIP", 1.1), "1V8": ("VIP", 0.2), "1V2": ("VIP", 0.3), "MGTA": ("VIP", 0.1),
                "3V3": ("VIP", 0.4), "1V13": ("VIP", 0.2), "5V0": ("VIP", 0.5), "FMC": ("VIP", 0.0),
                "MGTRA": ("VIP", 0.1), "12V": ("VIP", None)}, "12V"),
    "kv260": ({"in1": ("V", 0.0), "curr1": ("I", 0.0), "power1": ("P", None)}, "power1"),
}
RAIL_VOLTS = {"5V": 5.0, "12V": 12.0, "VIN": 12.0, "in1": 5.0}


def write_overlay(directory, board, design=None, name: str = "ohq", **design_options) -> Path:
    """Write ``<directory>/<name>.bit`` (a placeholder bitstream) and ``<name>.hwh``, the
    hand-off of build_overlay.tcl's design for ``board`` (or of ``design``); options as
    :func:`.hwh.overlay_design`. Returns the ``.bit`` path."""
    board = get_board(board) if isinstance(board, str) else board
    design = design or overlay_design(board, **design_options)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bit = directory / f"{name}.bit"
    bit.write_bytes(b"\x00\x09\x0f\xf0fake bitstream for " + board.name.encode())
    write_hwh(design, bit.with_suffix(".hwh"))
    return bit


class Faults:
    """Faults that switch on during a run (counts are over all cores of the overlay).

    ``hang_after``: core starts that complete before every later start hangs (ap_done never set);
    ``dma_error_after``: DMA transfers that succeed before the channel(s) in ``dma_error_channel``
    ("send", "recv" or "both") set DMASlvErr; ``counter_hi_zero``: the CYCLES_HI word reads 0
    (a 64-bit counter whose upper half is not wired: it wraps at 2^32); ``param_override``:
    register name -> value the core reports instead of its real parameter (e.g. ``{"PE": 3}``);
    ``out_beats_delta``: beats the core sends more (> 0) or fewer (< 0) than the layer has;
    ``rail_after``: power-sensor reads that succeed before ``rail_mode`` applies: ``"nan"``
    (reads NaN), ``"raise"`` (the read raises OSError like a sysfs file that vanished),
    ``"stale"`` (libsensors' failed read: the last value, forever) or ``"vanish"``
    (``get_rails()`` no longer lists the rail and its reads are stale).
    """

    def __init__(self, hang_after=None, dma_error_after=None, dma_error_channel="send",
                 counter_hi_zero=False, param_override=None, rail_after=None, rail_mode="nan",
                 out_beats_delta=0):
        self.hang_after, self.dma_error_after = hang_after, dma_error_after
        self.dma_error_channel, self.counter_hi_zero = dma_error_channel, counter_hi_zero
        self.param_override = dict(param_override or {})
        self.rail_after, self.rail_mode = rail_after, rail_mode
        self.out_beats_delta = int(out_beats_delta)
        self.starts = self.transfers = self.rail_reads = 0
        self.rail_gone = False
        self.rail_stale = False

    def start(self) -> bool:
        """Count a core start; True when this start hangs."""
        self.starts += 1
        return self.hang_after is not None and self.starts > self.hang_after

    def transfer(self, direction: str) -> bool:
        """Count a DMA transfer; True when it fails with the error bit."""
        self.transfers += 1
        return (self.dma_error_after is not None and self.transfers > self.dma_error_after
                and self.dma_error_channel in (direction, "both"))

    def rail_read(self) -> float | None:
        """Count a sensor read; NaN or an exception once the rail fault is active (stale and
        vanish set ``rail_stale`` and return None), else None."""
        self.rail_reads += 1
        if self.rail_after is None or self.rail_reads <= self.rail_after:
            return None
        if self.rail_mode == "nan":
            return float("nan")
        if self.rail_mode in ("stale", "vanish"):
            self.rail_stale = True
            self.rail_gone = self.rail_gone or self.rail_mode == "vanish"
            return None
        raise OSError(19, "No such device", "/sys/class/hwmon/hwmon0/power1_input")


# ------------------------------------------------------------------------------ memory, MMIO
class FakeBuffer(np.ndarray):
    """A ``pynq.allocate`` buffer: host view + device copy, physical address. As in
    ``pynq.buffer.PynqBuffer``, a contiguous slice is a buffer too, at its byte ``offset`` in
    the allocation: its ``flush()`` / ``invalidate()`` cover its own bytes only, so a driver that
    flushes too little streams stale bytes to the device."""

    def __new__(cls, shape, dtype, address):
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj.device_address = address
        obj.device = np.zeros(obj.nbytes, dtype=np.uint8)
        obj.offset = 0
        obj.freed = False
        return obj

    def __array_finalize__(self, obj):
        if obj is not None:
            delta = 0
            if isinstance(obj, FakeBuffer):
                delta = self.__array_interface__["data"][0] - obj.__array_interface__["data"][0]
            self.device_address = getattr(obj, "device_address", 0) + delta
            self.offset = getattr(obj, "offset", 0) + delta
            self.device = getattr(obj, "device", None)
            self.freed = getattr(obj, "freed", False)

    @property
    def physical_address(self):
        return self.device_address

    def _span(self) -> slice:
        if not self.flags["C_CONTIGUOUS"]:
            raise ValueError("cache maintenance needs a contiguous buffer")
        return slice(self.offset, self.offset + self.nbytes)

    def flush(self):
        self.device[self._span()] = np.frombuffer(np.ascontiguousarray(self).tobytes(), dtype=np.uint8)

    def invalidate(self):
        self.view(np.ndarray).reshape(-1).view(np.uint8)[:] = self.device[self._span()]

    def freebuffer(self):
        self.freed = True

    close = freebuffer


class FakeMMIO:
    """pynq's ``MMIO(base, length)`` on the fake PL: 32-bit word access to the device mapped at
    ``base`` (reads 0 and ignores writes where nothing is loaded)."""

    def __init__(self, fake, base_addr: int, length: int):
        self.fake, self.base_addr, self.length = fake, int(base_addr), int(length)

    def _check(self, offset):
        if offset < 0 or offset >= self.length:
            raise ValueError(f"Offset 0x{offset:X} is outside the {self.length}-byte MMIO window.")
        if offset % 4:
            raise MemoryError("Unaligned read: offset must be multiple of 4.")

    def read(self, offset=0, length=4):
        self._check(offset)
        dev = self.fake.devices.get(self.base_addr)
        return 0 if dev is None else int(dev.read(offset)) & 0xFFFFFFFF

    def write(self, offset, data):
        self._check(offset)
        dev = self.fake.devices.get(self.base_addr)
        if dev is not None:
            dev.write(offset, int(data) & 0xFFFFFFFF)


def unpack_input(data: bytes, layer: cm.ConvLayer, core: cm.CoreConfig):
    """Decode an input stream into (x, w, bias, mult, shift): ``core_model.unpack_input``."""
    return cm.unpack_input(data, layer, core)


# ------------------------------------------------------------------------------------ the core
def core_from_parameters(params: dict) -> cm.CoreConfig:
    """The CoreConfig of an ohq_conv cell from its ``.hwh`` parameters."""
    return cm.CoreConfig(bits=int(params["BITS"]), pe=int(params["PE"]), simd=int(params["SIMD"]),
                         bus_bytes=int(params["BUS_BYTES"]), max_k=int(params["MAX_K"]),
                         lb_rows=int(params["LB_ROWS"]), max_row_words=int(params["MAX_ROW_WORDS"]),
                         max_wdepth=int(params["MAX_WDEPTH"]), max_tiles=int(params["MAX_TILES"]))


class FakeCore:
    """Register file and device model of one ohq_conv core."""

    def __init__(self, core: cm.CoreConfig, energy=None, rail=None, hang=False, cycle_offset=0,
                 magic=rm.MAGIC, fclk_hz=100e6, version=rm.VERSION, faults: Faults | None = None,
                 start_stall: int = 3):
        self.core, self.energy, self.rail = core, energy, rail
        self.start_stall = int(start_stall)   # cycles from ap_start to the first input beat
        self.hang, self.cycle_offset, self.fclk_hz = hang, cycle_offset, fclk_hz
        self.faults = faults or Faults()
        self.regs = {r.offset: r.reset for r in rm.REGISTERS}
        params = {"MAGIC": magic, "VERSION": version, "BITS": core.bits, "PE": core.pe,
                  "SIMD": core.simd, "BUS_BYTES": core.bus_bytes, "MAX_K": core.max_k,
                  "MAX_ROW_WORDS": core.max_row_words, "LB_ROWS": core.lb_rows,
                  "MAX_WDEPTH": core.max_wdepth, "MAX_TILES": core.max_tiles}
        params.update(self.faults.param_override)
        for name, v in params.items():
            self.regs[rm.offset(name)] = v
        self.busy = self.done = self.hung = False
        self.layer = None
        self.stream = bytearray()
        self.source = None          # the MM2S channel feeding s_axis
        self.sink = None            # the S2MM channel m_axis feeds
        self.pending_out: bytes | None = None
        self.runs = 0
        self.writes: list[tuple[str, int]] = []

    # -- AXI4-Lite -------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        offset &= 0xFC
        if offset == rm.offset("CTRL"):
            v = (rm.CTRL_AP_DONE if self.done else 0) | (0 if self.busy else rm.CTRL_AP_IDLE)
            self.done = False                     # ap_done: clear on read
            return v
        return self.regs.get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        offset &= 0xFC
        reg = next((r for r in rm.REGISTERS if r.offset == offset), None)
        if reg is None or reg.access != "rw":
            return
        self.writes.append((reg.name, value))
        if reg.name == "CTRL":
            if value & rm.CTRL_AP_START and not self.busy:
                self._start()
            return
        self.regs[offset] = value & ((1 << reg.bits) - 1)

    def _reg(self, name):
        return self.regs[rm.offset(name)]

    def _start(self):
        self.layer = cm.ConvLayer(
            cin=self._reg("CIN"), cout=self._reg("COUT"), h=self._reg("H"), w=self._reg("W"),
            kernel=self._reg("KERNEL"), stride=self._reg("STRIDE"),
            pads=(self._reg("PAD_T"), self._reg("PAD_L"), self._reg("PAD_B"), self._reg("PAD_R")),
            groups=self._reg("GROUPS"), in_signed=bool(self._reg("IN_SIGNED")),
            out_bits=self._reg("OUT_BITS"), out_signed=bool(self._reg("OUT_SIGNED")),
            relu=bool(self._reg("RELU")))
        geo = cm.check_layer(self.layer, self.core)
        self.regs[rm.offset("IN_BEATS")] = geo.in_beats
        for c in rm.COUNTERS:
            self.regs[rm.offset(c + "_LO")] = self.regs[rm.offset(c + "_HI")] = 0
        self.busy, self.done = True, False
        self.stream = bytearray()
        self.started_at = time.monotonic()        # the run's energy is spread from here
        self.hung = self.hang or self.faults.start()
        if self.source is not None:
            self.source.resume()                  # tready rises: a stalled MM2S moves on

    # -- AXI4-Stream -----------------------------------------------------------------------
    def offer(self, beats: list[bytes]) -> int:
        """Input beats from the MM2S channel; returns how many the core took (it takes beats
        only while a layer runs, and no more than the layer's IN_BEATS)."""
        if not self.busy or self.pending_out is not None:
            return 0
        geo = cm.geometry(self.layer, self.core)
        room = geo.in_beats - len(self.stream) // self.core.bus_bytes
        taken = beats[:max(0, room)]
        for beat in taken:
            self.stream += beat                   # tkeep is not looked at, as in the RTL
        if len(self.stream) >= geo.in_beats * self.core.bus_bytes and not self.hung:
            self._execute(geo)
        return len(taken)

    def _execute(self, geo):
        layer, core = self.layer, self.core
        x, w, bias, mult, shift = unpack_input(bytes(self.stream), layer, core)
        y = cm.conv_reference(x, w, bias, mult, shift, layer, core.bits)
        out = cm.pack_output(y, layer, core)
        delta = self.faults.out_beats_delta * core.bus_bytes
        out = out + bytes(delta) if delta > 0 else out[:len(out) + delta] if delta < 0 else out
        busy = cycle_model.cycles(layer, core)
        cycles = busy + self.start_stall + self.cycle_offset
        counters = {"CYCLES": cycles, "IN_STALL": self.start_stall, "OUT_STALL": 0,
                    "MAC_ACTIVE": geo.mac_steps}
        for c, v in counters.items():
            self.regs[rm.offset(c + "_LO")] = v & 0xFFFFFFFF
            self.regs[rm.offset(c + "_HI")] = v >> 32
        if self.faults.counter_hi_zero:
            self.regs[rm.offset("CYCLES_HI")] = 0
        if self.energy is not None and self.rail is not None:
            self.rail.deposit(self.energy.joules(busy / self.fclk_hz,
                                                 geo.mac_steps * core.macs_per_cycle, core.bits,
                                                 (geo.in_beats + geo.out_beats) * core.bus_bytes),
                              seconds=time.monotonic() - self.started_at)
        self.pending_out = bytes(out)
        self.drain()

    def drain(self) -> None:
        """Send the pending output into the S2MM channel once one is armed; ap_done after."""
        if self.pending_out is None or self.sink is None or not self.sink.armed:
            return                                # m_axis tready low: the core stalls
        data, self.pending_out = self.pending_out, None
        self.sink.receive(data)
        if self.sink.sr & DMASR_HALTED:           # the DMA stopped mid-packet: the core stalls
            return
        self.busy, self.done = False, True
        self.runs += 1


# ------------------------------------------------------------------------------------ AXI DMA
DMASR_HALTED, DMASR_IDLE = 0x1, 0x2
DMASR_INT_ERR, DMASR_SLV_ERR, DMASR_DEC_ERR, DMASR_IOC = 0x10, 0x20, 0x40, 0x1000


class DmaChannelModel:
    """One channel of the AXI DMA register model (PG021, direct register mode)."""

    def __init__(self, dma: "AxiDmaDevice", direction: str):
        self.dma, self.direction = dma, direction
        self.cr = 0
        self.sr = DMASR_HALTED
        self.addr = 0
        self.length = 0
        self.pending: list[bytes] = []   # MM2S beats the core has not taken yet
        self.armed = False               # S2MM: a buffer is waiting for a packet
        self.target = None               # (buffer, offset, capacity) of the transfer

    def read(self, reg: int) -> int:
        if reg == 0x00:
            return self.cr
        if reg == 0x04:
            return self.sr
        if reg == 0x18:
            return self.addr & 0xFFFFFFFF
        if reg == 0x1C:
            return self.addr >> 32
        if reg == 0x28:
            return self.length
        return 0

    def write(self, reg: int, value: int) -> None:
        if reg == 0x00:
            if value & 0x4:                                  # soft reset
                self.__init__(self.dma, self.direction)
                return
            self.cr = value
            if value & 0x1 and not self.sr & 0x70:
                self.sr &= ~DMASR_HALTED
            elif not value & 0x1:
                self.sr |= DMASR_HALTED
        elif reg == 0x04:
            self.sr &= ~(value & 0x7000)                     # write 1 to clear the irq bits
        elif reg == 0x18:
            self.addr = (self.addr & ~0xFFFFFFFF) | value
        elif reg == 0x1C and self.dma.addr_width > 32:       # MSB register only with 64-bit addresses
            self.addr = (self.addr & 0xFFFFFFFF) | (value << 32)
        elif reg == 0x28:
            self.length = value & self.dma.length_mask
            if not self.sr & DMASR_HALTED and self.length:
                self._start()

    def _halt(self, bit: int) -> None:
        self.sr = (self.sr | bit | DMASR_HALTED) & ~DMASR_IDLE
        self.cr &= ~0x1
        self.armed, self.pending = False, []

    def _start(self) -> None:
        self.sr &= ~DMASR_IDLE
        faults = self.dma.fake.faults
        if (self.dma.fail_all and self.direction == "send") or faults.transfer(self.direction):
            self._halt(DMASR_SLV_ERR)
            return
        addr = self.addr & ((1 << self.dma.addr_width) - 1)
        where = self.dma.fake.locate(addr, self.length)
        if where is None:
            self._halt(DMASR_DEC_ERR)
            return
        buf, off = where
        if self.direction == "send":
            data = bytes(buf.device[off:off + self.length])   # reads DDR, not the CPU cache
            w = self.dma.stream_bytes
            self.pending = [data[i:i + w].ljust(w, b"\x00") for i in range(0, len(data), w)]
            self.resume()
        else:
            self.target, self.armed = (buf, off, self.length), True
            if self.dma.s2mm_source is not None:
                self.dma.s2mm_source.drain()

    def resume(self) -> None:
        """MM2S: offer the pending beats to the core; idle once all were taken."""
        if self.direction != "send" or not self.pending or self.sr & DMASR_HALTED:
            return
        sink = self.dma.mm2s_sink
        taken = sink.offer(self.pending) if sink is not None else 0
        self.pending = self.pending[taken:]
        if not self.pending:
            self.sr |= DMASR_IDLE | DMASR_IOC

    def receive(self, data: bytes) -> None:
        """S2MM: one packet (ending with tlast) from the core."""
        buf, off, capacity = self.target
        n = min(len(data), capacity)
        buf.device[off:off + n] = np.frombuffer(data[:n], dtype=np.uint8)
        if len(data) > capacity:
            self._halt(DMASR_INT_ERR)
            return
        self.length, self.armed = len(data), False
        self.sr |= DMASR_IDLE | DMASR_IOC


class AxiDmaDevice:
    """Register model of one AXI DMA (MM2S at 0x00, S2MM at 0x30) from its ``.hwh`` parameters."""

    def __init__(self, fake, params: dict, fail_all: bool = False):
        self.fake, self.params, self.fail_all = fake, params, fail_all
        self.addr_width = int(params.get("c_addr_width", 32))
        self.length_mask = (1 << int(params.get("c_sg_length_width", 14))) - 1
        self.stream_bytes = int(params.get("c_m_axis_mm2s_tdata_width", 32)) // 8
        self.channels = {0x00: DmaChannelModel(self, "send"), 0x30: DmaChannelModel(self, "recv")}
        self.mm2s_sink = None             # the core on M_AXIS_MM2S
        self.s2mm_source = None           # the core on S_AXIS_S2MM

    def read(self, offset: int) -> int:
        base = 0x30 if offset >= 0x30 else 0x00
        return self.channels[base].read(offset - base)

    def write(self, offset: int, value: int) -> None:
        base = 0x30 if offset >= 0x30 else 0x00
        self.channels[base].write(offset - base, value)


class SimpleDmaChannel:
    """pynq/lib/dma.py ``_SDMAChannel``: one channel of an AXI DMA in simple mode, on MMIO."""

    def __init__(self, mmio, max_size, width, tx_rx, dre):
        self._mmio, self._max_size, self._align, self._dre = mmio, max_size, width, dre
        self._tx_rx = tx_rx
        self._offset, self._flush_before = (0x30, False) if tx_rx == "recv" else (0x00, True)
        self._active_buffer = None
        self._first_transfer = True
        self.transferred = 0
        self.start()

    @property
    def running(self):
        return self._mmio.read(self._offset + 4) & 0x01 == 0x00

    @property
    def idle(self):
        return self._mmio.read(self._offset + 4) & 0x02 == 0x02

    @property
    def error(self):
        return self._mmio.read(self._offset + 4) & 0x70 != 0x0

    def start(self):
        self._mmio.write(self._offset, 0x0001)
        self._first_transfer = True

    def stop(self):
        self._mmio.write(self._offset, 0x0000)

    def transfer(self, array, start=0, nbytes=0):
        if not self.running:
            raise RuntimeError("DMA channel not started")
        if not self.idle and not self._first_transfer:
            raise RuntimeError("DMA channel not idle")
        if nbytes == 0:
            nbytes = array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA "
                             f"buffer size {self._max_size}.")
        if not self._dre and ((array.physical_address + start) % self._align) != 0:
            raise RuntimeError("DMA does not support unaligned transfers; Starting address must "
                               f"be aligned to {self._align} bytes.")
        if self._flush_before:
            array.flush()
        self.transferred = 0
        self._mmio.write(self._offset + 0x18, (array.physical_address + start) & 0xFFFFFFFF)
        self._mmio.write(self._offset + 0x1C, ((array.physical_address + start) >> 32) & 0xFFFFFFFF)
        self._mmio.write(self._offset + 0x28, nbytes)
        self._active_buffer = array
        self._first_transfer = False

    def wait(self):
        if not self.running:
            raise RuntimeError("DMA channel not started")
        while True:
            error = self._mmio.read(self._offset + 4)
            if self.error:
                if error & 0x10:
                    raise RuntimeError("DMA Internal Error (transfer length 0?)")
                if error & 0x20:
                    raise RuntimeError("DMA Slave Error (cannot access memory map interface)")
                if error & 0x40:
                    raise RuntimeError("DMA Decode Error (invalid address)")
            if self.idle:
                break
            time.sleep(0.0005)       # pynq spins without sleeping (and without a timeout)
        if not self._flush_before:
            self._active_buffer.invalidate()
        self.transferred = self._mmio.read(self._offset + 0x28)


# ------------------------------------------------------------------------------------ power
class FakeSensor:
    """An averaging power monitor as libsensors shows it (see the module docstring): ``value``
    is the mean watts of the last completed ``update_interval`` (s), unchanged between updates.
    ``update_interval`` stands in for the hwmon attribute of the same name."""

    def __init__(self, idle_watts: float, update_interval: float = 0.0352, clock=time.monotonic,
                 faults: Faults | None = None, noise_watts: float = 0.0002, seed: int = 0):
        self.idle, self.update_interval, self.clock = float(idle_watts), float(update_interval), clock
        self.faults = faults or Faults()
        self.noise_watts, self.seed = noise_watts, seed
        self.t0 = clock()
        self.k = 0
        self.last = self.idle
        self.deposits: list[tuple[float, float, float]] = []   # (from, to, joules)
        self.lock = threading.Lock()

    def deposit(self, joules: float, seconds: float = 0.0) -> None:
        """Energy (J) spent evenly over the next ``seconds`` (a run's energy is known when it
        ends; spreading it forward, never into periods already published, keeps the readings
        unbiased)."""
        now = self.clock()
        with self.lock:
            self.deposits.append((now, now + max(0.0, seconds), joules))

    def _noise(self, k: int) -> float:
        return self.noise_watts * (((k * 2654435761 + self.seed) % 1999) / 999.0 - 1.0)

    def _publish(self) -> None:
        k = int((self.clock() - self.t0) / self.update_interval)
        if k <= self.k:
            return
        hi = self.t0 + k * self.update_interval
        lo = hi - self.update_interval
        joules = 0.0
        for a, b, j in self.deposits:          # the share of each deposit inside (lo, hi]
            if b <= a:
                joules += j if lo < b <= hi else 0.0     # an instant deposit
            else:
                joules += j * max(0.0, min(b, hi) - max(a, lo)) / (b - a)
        self.deposits = [(a, b, j) for a, b, j in self.deposits if b > hi]
        self.k, self.last = k, self.idle + joules / self.update_interval + self._noise(k)

    @property
    def value(self) -> float:
        bad = self.faults.rail_read()
        if bad is not None:
            return bad
        with self.lock:
            if not self.faults.rail_stale:
                self._publish()
            return self.last


class ConstantSensor:
    """A sensor of a rail the cores' energy does not reach: a constant reading."""

    def __init__(self, value: float):
        self._value = float(value)

    @property
    def value(self) -> float:
        return self._value


class FakeRail:
    """pynq.pmbus ``Rail``: a name and up to three sensors (None where libsensors has none)."""

    def __init__(self, name, power=None, voltage=None, current=None):
        self.name, self.power, self.voltage, self.current = name, power, voltage, current


def board_rails(board_name: str, sensor: FakeSensor, names=None) -> dict:
    """The rails get_rails() shows on ``board_name`` (:data:`BOARD_RAILS`) with ``sensor`` as the
    total-power one; ``names``: rail names instead (each with a power sensor, the first the total)."""
    if names is not None:
        return {n: FakeRail(n, power=sensor if i == 0 else ConstantSensor(0.5))
                for i, n in enumerate(names)}
    table, total = BOARD_RAILS.get(board_name, ({}, None))
    rails = {}
    for name, (kinds, watts) in table.items():
        volts = RAIL_VOLTS.get(name, 1.0)
        power = sensor if name == total else ConstantSensor(watts or 0.0)
        rails[name] = FakeRail(name, power=power if "P" in kinds else None,
                               voltage=ConstantSensor(volts) if "V" in kinds else None,
                               current=ConstantSensor((watts or 0.0) / volts) if "I" in kinds else None)
    return rails


# ------------------------------------------------------------------------------------ pynq
class FakePynq:
    """Stands in for the ``pynq`` module: see the module docstring.

    ``board``: board profile (name or Board); ``idle_watts``: idle power of the total rail (W);
    ``rails``: rail names to show instead of the board's (the first carries the power);
    ``sensor_update``: the monitor's update interval (s); ``buffer_base``: physical address of
    the first ``allocate`` buffer (above 4 GiB to test 64-bit DMA addresses); the rest are the
    "bitstream's" faults (see the module docstring)."""

    def __init__(self, board="zcu104", hang=False, dma_error=False, cycle_offset=0, magic=rm.MAGIC,
                 idle_watts=7.5, rails=None, version=rm.VERSION, faults: Faults | None = None,
                 sensor_update: float = 0.0352, buffer_base: int = 0x1000_0000):
        self.board = get_board(board) if isinstance(board, str) else board
        self.hang, self.dma_error, self.cycle_offset, self.magic = hang, dma_error, cycle_offset, magic
        self.version = version
        # The counter runs from ap_start: the cores wait for the driver's MM2S transfer() and
        # the DDR latency, as the simulator models them (hw/overheads.py).
        self.start_stall = overheads.start_stall_cycles(overheads.cpu_model(self.board.name),
                                                        self.board.fclk_hz)
        self.faults = faults or Faults()
        self.sensor = FakeSensor(idle_watts, update_interval=sensor_update, faults=self.faults)
        self._rails = board_rails(self.board.name, self.sensor, rails)
        self.has_total_rail = any(r.power is self.sensor for r in self._rails.values())
        self._registry: dict[str, type] = {}
        self._next_addr = int(buffer_base)
        self.buffers: list[FakeBuffer] = []
        self.devices: dict[int, object] = {}      # base address -> device of the loaded PL
        self.cores: dict[int, FakeCore] = {}      # bits -> core device of the loaded PL
        self.overlays: list = []
        fake = self

        class DefaultIP:
            """Generic IP driver: ``read``/``write`` through an MMIO of the IP's address range."""

            bindto: list = []

            def __init_subclass__(cls, **kw):
                super().__init_subclass__(**kw)
                for vlnv in getattr(cls, "bindto", []):
                    fake._registry[vlnv] = cls

            def __init__(self, description):
                self.description = description
                self.mmio = FakeMMIO(fake, description["phys_addr"], description["addr_range"])

            def read(self, offset=0):
                return self.mmio.read(offset)

            def write(self, offset, value):
                self.mmio.write(offset, value)

        class DMA(DefaultIP):
            """pynq/lib/dma.py ``DMA`` (simple mode): channels from the ``.hwh`` parameters."""

            bindto = [DMA_VLNV]

            def __init__(self, description, *args, **kwargs):
                super().__init__(description)
                if "parameters" not in description:
                    raise RuntimeError("Unable to get parameters from description; Users must "
                                       "use *.hwh files for overlays.")
                p = description["parameters"]
                if bool(int(p.get("c_include_sg", 0))):
                    raise NotImplementedError("the fake AXI DMA models simple mode only")
                self.buffer_max_size = (1 << int(p.get("c_sg_length_width", 26))) - 1
                self.sendchannel = self.recvchannel = None
                if bool(int(p.get("c_include_mm2s", 0))):
                    self.sendchannel = SimpleDmaChannel(
                        self.mmio, self.buffer_max_size, int(p["c_m_axi_mm2s_data_width"]) >> 3,
                        "send", bool(int(p.get("c_include_mm2s_dre", 0))))
                if bool(int(p.get("c_include_s2mm", 0))):
                    self.recvchannel = SimpleDmaChannel(
                        self.mmio, self.buffer_max_size, int(p["c_m_axi_s2mm_data_width"]) >> 3,
                        "recv", bool(int(p.get("c_include_s2mm_dre", 0))))

        self.DefaultIP = DefaultIP
        self.DMA = DMA
        self.pmbus = SimpleNamespace(get_rails=lambda config_file=None: (
            {n: r for n, r in fake._rails.items() if not (fake.faults.rail_gone and r.power is fake.sensor)}))
        self.ps = SimpleNamespace(Clocks=SimpleNamespace(fclk0_mhz=100.0), CPU_ARCH_IS_SUPPORTED=True,
                                  CPU_ARCH="armv7l" if self.board.part.startswith("xc7z") else "aarch64")
        self.__version__ = "3.0.1"

        class Overlay:
            """pynq.Overlay: ``ip_dict`` from the ``.hwh`` beside the bitstream."""

            def __init__(self, bitfile_name, download=True, **kw):
                if not os.path.isfile(bitfile_name):
                    raise OSError(f"Bitstream file {bitfile_name} does not exist.")
                hwh = os.path.splitext(bitfile_name)[0] + ".hwh"
                if not os.path.isfile(hwh):
                    raise ValueError(f"Cannot find HWH file {hwh}.")
                self.bitfile_name = bitfile_name
                self.handoff = parse_hwh(hwh)
                self.ip_dict = self.handoff.ip_dict
                self.clock_dict = self.handoff.clock_dict
                if download:
                    fake.program(self.handoff)
                self.devices = dict(fake.cores)
                self._drivers = {}
                fake.overlays.append(self)

            def __getattr__(self, name):
                ip_dict = self.__dict__.get("ip_dict", {})
                if name not in ip_dict or "phys_addr" not in ip_dict[name]:
                    raise AttributeError(name)
                if name not in self._drivers:
                    desc = ip_dict[name]
                    cls = fake._registry.get(desc["type"], DefaultIP)
                    self._drivers[name] = cls(desc)
                return self._drivers[name]

            def is_loaded(self):
                return True

        self.Overlay = Overlay

    # -- the PL --------------------------------------------------------------------------
    def program(self, handoff) -> None:
        """Load a design: devices at the ``.hwh`` addresses, wired by its stream buses."""
        self.devices, self.cores = {}, {}
        by_name = {}
        energy = self.board.energy if self.has_total_rail else None
        for name, desc in handoff.ip_dict.items():
            if "phys_addr" not in desc:
                continue
            vlnv = str(desc["type"])
            if vlnv.startswith(CORE_VLNV.rsplit(":", 1)[0] + ":"):
                core = core_from_parameters(desc["parameters"])
                dev = FakeCore(core, energy=energy, rail=self.sensor if energy else None,
                               hang=self.hang, cycle_offset=self.cycle_offset, magic=self.magic,
                               fclk_hz=self.board.fclk_hz, version=self.version, faults=self.faults,
                               start_stall=self.start_stall)
                self.cores[core.bits] = dev
            elif vlnv == DMA_VLNV:
                dev = AxiDmaDevice(self, desc["parameters"], fail_all=self.dma_error)
            else:
                continue
            self.devices[desc["phys_addr"]] = dev
            by_name[name] = dev
        for bus, ends in handoff.streams.items():
            src = next(((c, i) for c, i, kind in ends if kind == "INITIATOR"), None)
            dst = next(((c, i) for c, i, kind in ends if kind != "INITIATOR"), None)
            if src is None or dst is None or src[0] not in by_name or dst[0] not in by_name:
                continue
            a, b = by_name[src[0]], by_name[dst[0]]
            if isinstance(a, AxiDmaDevice) and isinstance(b, FakeCore):
                if a.stream_bytes != b.core.bus_bytes:
                    raise ValueError(f"stream {bus}: {a.stream_bytes}-byte DMA on a "
                                     f"{b.core.bus_bytes}-byte core")
                a.mm2s_sink, b.source = b, a.channels[0x00]
            elif isinstance(a, FakeCore) and isinstance(b, AxiDmaDevice):
                a.sink, b.s2mm_source = b.channels[0x30], a
        mhz = handoff.parameters.get(handoff.ps_name, {})
        act = mhz.get("PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ") or mhz.get("PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ")
        if act:
            self.ps.Clocks.fclk0_mhz = float(act)

    # -- memory --------------------------------------------------------------------------
    def allocate(self, shape, dtype="u4", target=None, **kw):
        buf = FakeBuffer(shape, dtype, self._next_addr)
        self._next_addr += max(PAGE, math.ceil(buf.nbytes / PAGE) * PAGE)
        self.buffers.append(buf)
        return buf

    def locate(self, addr: int, nbytes: int):
        """(buffer, offset) of ``nbytes`` at physical ``addr`` inside one allocated buffer."""
        for buf in self.buffers:
            off = addr - buf.device_address
            if not buf.freed and 0 <= off and off + nbytes <= buf.device.size:
                return buf, off
        return None
