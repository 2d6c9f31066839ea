"""A register-level fake of the pynq API for running the overlay driver without a board.

``FakePynq(board=...)`` stands in for the ``pynq`` module (pass it as ``pynq_module``): it offers
``Overlay`` (``ip_dict``, attribute access to IP drivers, drivers bound by ``bindto``),
``DefaultIP`` (``read``/``write`` on a register file), ``allocate`` (buffers with a separate
"device" copy, so a missing ``flush()``/``invalidate()`` shows up as stale data), AXI DMA
channels (``transfer``, ``idle``, ``error``, ``_max_size``), ``pmbus.get_rails()`` and
``ps.Clocks``. The device model behind the registers is the simulator core: on ``ap_start`` it
samples the configuration registers, takes the input stream the DMA delivers, decodes it byte
by byte (the inverse of ``core_model.pack_input``), computes with ``core_model.conv_reference``,
streams the packed outputs into the armed S2MM buffer, loads the 64-bit counters from the cycle
model and sets ``ap_done``. Faults for robustness tests: ``hang`` (ap_done never comes),
``dma_error``, ``cycle_offset`` (counters above 2^32), ``magic``, ``version``, and the
:class:`Faults` injected with ``faults=Faults(...)`` (faults that start mid-run, a missing
``.hwh``, power rails that vanish, read NaN or raise).
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from . import core_model as cm
from . import cycle_model
from . import regmap as rm
from .boards import get_board

DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"


class Faults:
    """Faults that switch on during a run (counts are over all cores of the overlay).

    ``hang_after``: core starts that complete before every later start hangs (ap_done never set);
    ``dma_error_after``: DMA transfers that succeed before the channel(s) in ``dma_error_channel``
    ("send", "recv" or "both") report an error; ``counter_hi_zero``: the CYCLES_HI word reads 0
    (a 64-bit counter whose upper half is not wired: it wraps at 2^32); ``param_override``:
    register name -> value the core reports instead of its real parameter (e.g. ``{"PE": 3}``);
    ``require_hwh``: ``Overlay`` fails like pynq when ``<name>.hwh`` is not beside the ``.bit``;
    ``rail_after``: power-sensor reads that succeed before ``rail_mode`` applies: ``"nan"``
    (reads NaN), ``"raise"`` (the read raises OSError like a vanished hwmon file) or ``"vanish"``
    (``get_rails()`` no longer lists the rail and its reads raise).
    """

    def __init__(self, hang_after=None, dma_error_after=None, dma_error_channel="send",
                 counter_hi_zero=False, param_override=None, require_hwh=False, rail_after=None,
                 rail_mode="nan"):
        self.hang_after, self.dma_error_after = hang_after, dma_error_after
        self.dma_error_channel, self.counter_hi_zero = dma_error_channel, counter_hi_zero
        self.param_override = dict(param_override or {})
        self.require_hwh, self.rail_after, self.rail_mode = require_hwh, rail_after, rail_mode
        self.starts = self.transfers = self.rail_reads = 0
        self.rail_gone = False

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
        """Count a sensor read; NaN or an exception once the rail fault is active, else None."""
        self.rail_reads += 1
        if self.rail_after is None or self.rail_reads <= self.rail_after:
            return None
        if self.rail_mode == "nan":
            return float("nan")
        if self.rail_mode == "vanish":
            self.rail_gone = True
        raise OSError(19, "No such device", "/sys/class/hwmon/hwmon0/power1_input")


class FakeBuffer(np.ndarray):
    """A ``pynq.allocate`` buffer: host view + device copy, physical address."""

    def __new__(cls, shape, dtype, address):
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj.device_address = address
        obj.device = np.zeros(obj.nbytes, dtype=np.uint8)
        obj.freed = False
        return obj

    def __array_finalize__(self, obj):
        if obj is not None:
            self.device_address = getattr(obj, "device_address", 0)
            self.device = getattr(obj, "device", None)
            self.freed = getattr(obj, "freed", False)

    @property
    def physical_address(self):
        return self.device_address

    def flush(self):
        self.device[:] = np.frombuffer(np.ascontiguousarray(self).tobytes(), dtype=np.uint8)

    def invalidate(self):
        self.view(np.ndarray).reshape(-1).view(np.uint8)[:] = self.device

    def freebuffer(self):
        self.freed = True

    close = freebuffer


def unpack_input(data: bytes, layer: cm.ConvLayer, core: cm.CoreConfig):
    """Decode an input stream into (x, w, bias, mult, shift): the inverse of ``pack_input``
    (both the grouped layout and the depthwise mode)."""
    geo = cm.geometry(layer, core)
    k, pe, ch = layer.kernel, core.pe, core.ch
    dw = geo.depthwise
    g, cog = (1, layer.cout) if dw else (layer.groups, layer.cout_g)
    n_rec = geo.ntiles * pe
    p_end = cm.PARAM_RECORD_BYTES * n_rec
    rec = np.frombuffer(bytes(data[:p_end]), dtype=[("bias", "<i4"), ("mult", "<u2"), ("shift", "u1"),
                                                     ("res", "u1")]).reshape(g, geo.tiles_g * pe)
    bias = rec["bias"][:, :cog].reshape(-1).astype(np.int64)
    mult = rec["mult"][:, :cog].reshape(-1).astype(np.int64)
    shift = rec["shift"][:, :cog].reshape(-1).astype(np.int64)
    n_w = pe * geo.wpl * ch
    w_end = p_end + n_w * core.bits // 8
    wv = cm.unpack_elements(data[p_end:w_end], core.bits, n_w, signed=True)
    if dw:
        # (tile, ky, kx, lane, e): lane p of tile t holds channel c = t*pe + p at element c % ch.
        wv = wv.reshape(geo.tiles_g, k, k, pe, ch).transpose(0, 3, 4, 1, 2).reshape(-1, ch, k, k)
        c = np.arange(layer.cout)
        w = wv[c, c % ch][:, None]
    else:
        wv = wv.reshape(g, geo.tiles_g, k, k, geo.chunks_g, pe, ch).transpose(0, 1, 5, 4, 6, 2, 3)
        wv = wv.reshape(g, geo.tiles_g * pe, geo.chunks_g * ch, k, k)[:, :cog, :layer.cin_g]
        w = wv.reshape(layer.cout, layer.cin_g, k, k)
    n_x = layer.h * geo.row_words * ch
    x_end = w_end + n_x * core.bits // 8
    xv = cm.unpack_elements(data[w_end:x_end], core.bits, n_x, signed=layer.in_signed)
    if dw:
        x = xv.reshape(layer.h, layer.w, geo.cpp * ch)[..., :layer.cin]
    else:
        x = xv.reshape(layer.h, layer.w, g, geo.chunks_g * ch)[..., :layer.cin_g]
    return x.reshape(layer.h, layer.w, layer.cin), w, bias, mult, shift


class FakeCore:
    """Register file and device model of one ohq_conv core."""

    def __init__(self, core: cm.CoreConfig, energy=None, rail=None, hang=False, cycle_offset=0,
                 magic=rm.MAGIC, fclk_hz=100e6, version=rm.VERSION, faults: Faults | None = None):
        self.core, self.energy, self.rail = core, energy, rail
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
        self.busy = False
        self.done = False
        self.layer = None
        self.stream = bytearray()
        self.out_channel = None
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
        self.hung = self.hang or self.faults.start()

    # -- AXI4-Stream -----------------------------------------------------------------------
    def accept(self, data: bytes) -> None:
        """Input bytes from the MM2S channel (taken only while a layer runs)."""
        if not self.busy:
            return
        self.stream += data
        geo = cm.geometry(self.layer, self.core)
        if len(self.stream) >= geo.in_beats * self.core.bus_bytes and not self.hung:
            self._execute(geo)

    def _execute(self, geo):
        layer, core = self.layer, self.core
        x, w, bias, mult, shift = unpack_input(bytes(self.stream), layer, core)
        y = cm.conv_reference(x, w, bias, mult, shift, layer, core.bits)
        out = cm.pack_output(y, layer, core)
        if self.out_channel is not None:
            self.out_channel.receive(out)
        cycles = cycle_model.cycles(layer, core) + self.cycle_offset
        counters = {"CYCLES": cycles, "IN_STALL": 3, "OUT_STALL": 0, "MAC_ACTIVE": geo.mac_steps}
        for c, v in counters.items():
            self.regs[rm.offset(c + "_LO")] = v & 0xFFFFFFFF
            self.regs[rm.offset(c + "_HI")] = v >> 32
        if self.faults.counter_hi_zero:
            self.regs[rm.offset("CYCLES_HI")] = 0
        if self.energy is not None and self.rail is not None:
            self.rail.deposit(self.energy.joules((cycles - self.cycle_offset) / self.fclk_hz,
                                                 geo.mac_steps * core.macs_per_cycle, core.bits,
                                                 (geo.in_beats + geo.out_beats) * core.bus_bytes))
        self.busy, self.done = False, True
        self.runs += 1


class FakeChannel:
    """One AXI DMA channel (MM2S ``send`` or S2MM ``recv``)."""

    def __init__(self, core: FakeCore, direction: str, max_size: int = (1 << 26) - 1, error=False):
        self.core, self.direction, self._max_size, self._error = core, direction, max_size, error
        self.faults = core.faults
        self.buffer = None
        self.idle_flag = True
        self.transfers = 0

    @property
    def idle(self):
        return self.idle_flag

    @property
    def error(self):
        return self._error

    @property
    def running(self):
        return True

    def transfer(self, array, start=0, nbytes=0):
        if not self.idle_flag:
            raise RuntimeError("DMA channel not idle")
        nbytes = nbytes or array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA buffer size")
        self.transfers += 1
        if self.faults.transfer(self.direction):
            self._error = True
        if self._error and self.direction == "recv":
            self.buffer, self.idle_flag = array, False      # never completes; error bit set
            return
        if self.direction == "send":
            if self._error:
                return
            self.core.accept(bytes(array.device[start:start + nbytes]))   # reads DDR, not the cache
        else:
            self.buffer, self.idle_flag = array, False
            self.core.out_channel = self

    def receive(self, data: bytes) -> None:
        buf = self.buffer
        n = min(len(data), buf.device.size)
        buf.device[:n] = np.frombuffer(data[:n], dtype=np.uint8)
        self.idle_flag = True

    def wait(self):
        while not self.idle_flag:   # the real pynq wait() has no timeout either
            time.sleep(0.001)


class FakeSensor:
    """An averaging power monitor: each read returns the mean watts since the previous read."""

    def __init__(self, idle_watts: float, clock=time.monotonic, faults: Faults | None = None):
        self.idle, self.clock = idle_watts, clock
        self.faults = faults or Faults()
        self.pending = 0.0
        self.last = clock()
        self.lock = threading.Lock()

    def deposit(self, joules: float) -> None:
        with self.lock:
            self.pending += joules

    @property
    def value(self) -> float:
        bad = self.faults.rail_read()
        if bad is not None:
            return bad
        with self.lock:
            now = self.clock()
            dt = now - self.last
            if dt <= 0:
                return self.idle
            watts = self.idle + self.pending / dt
            self.pending, self.last = 0.0, now
            return watts


class FakeRail:
    def __init__(self, name, sensor):
        self.name, self.power, self.voltage, self.current = name, sensor, None, None


class FakePynq:
    """Stands in for the ``pynq`` module: see the module docstring."""

    def __init__(self, board="zcu104", hang=False, dma_error=False, cycle_offset=0, magic=rm.MAGIC,
                 idle_watts=7.5, rails=None, dma_max_size=(1 << 26) - 1, cores=None,
                 version=rm.VERSION, faults: Faults | None = None, ip_version: str | None = None):
        self.board = get_board(board) if isinstance(board, str) else board
        self.hang, self.dma_error, self.cycle_offset, self.magic = hang, dma_error, cycle_offset, magic
        self.dma_max_size, self.version, self.ip_version = dma_max_size, version, ip_version
        self.faults = faults or Faults()
        self.cores = cores or self.board.cores
        rail_names = self.board.rails if rails is None else rails
        self.sensor = FakeSensor(idle_watts, faults=self.faults)
        self._rails = {n: FakeRail(n, self.sensor) for n in rail_names[:1]}
        self._registry: dict[str, type] = {}
        self._next_addr = 0x1000_0000
        self.buffers: list[FakeBuffer] = []
        fake = self

        class DefaultIP:
            """Generic IP driver: ``read``/``write`` on the register file at ``description``."""

            bindto: list = []

            def __init_subclass__(cls, **kw):
                super().__init_subclass__(**kw)
                for vlnv in getattr(cls, "bindto", []):
                    fake._registry[vlnv] = cls

            def __init__(self, description):
                self.description = description
                self._device = description["device"]

            def read(self, offset=0):
                return self._device.read(offset)

            def write(self, offset, value):
                self._device.write(offset, value)

        self.DefaultIP = DefaultIP
        self.pmbus = SimpleNamespace(get_rails=lambda config_file=None: (
            {} if fake.faults.rail_gone else dict(fake._rails)))
        self.ps = SimpleNamespace(Clocks=SimpleNamespace(fclk0_mhz=self.board.fclk_hz / 1e6))
        self.overlays: list = []

        class Overlay:
            def __init__(self, bitfile_name, download=True, **kw):
                import os
                hwh = os.path.splitext(bitfile_name)[0] + ".hwh"
                if fake.faults.require_hwh and not os.path.isfile(hwh):
                    raise ValueError(f"Cannot find HWH file {hwh}.")   # as pynq's parser says
                self.bitfile_name = bitfile_name
                self.devices = {}
                self.ip_dict = {}
                energy = fake.board.energy if fake._rails else None
                rail = fake.sensor if fake._rails else None
                from .overlay import VLNV
                for bits, core in sorted(fake.cores.items()):
                    dev = FakeCore(core, energy=energy, rail=rail, hang=fake.hang,
                                   cycle_offset=fake.cycle_offset, magic=fake.magic,
                                   fclk_hz=fake.board.fclk_hz, version=fake.version,
                                   faults=fake.faults)
                    name = f"ohq_int{bits}"   # as vivado/tcl/build_overlay.tcl names them
                    vlnv = VLNV if fake.ip_version is None else VLNV.rsplit(":", 1)[0] + ":" + fake.ip_version
                    self.ip_dict[name] = {"type": vlnv, "phys_addr": 0xA000_0000 + bits * 0x10000,
                                          "addr_range": 0x100, "fullpath": name, "device": dev}
                    self.ip_dict[f"dma_int{bits}"] = {"type": DMA_VLNV, "fullpath": f"dma_int{bits}",
                                                      "device": dev}
                    self.devices[bits] = dev
                self._drivers = {}
                fake.overlays.append(self)

            def __getattr__(self, name):
                ip_dict = self.__dict__.get("ip_dict", {})
                if name not in ip_dict:
                    raise AttributeError(name)
                if name not in self._drivers:
                    desc = ip_dict[name]
                    if desc["type"] == DMA_VLNV:
                        dev = desc["device"]
                        self._drivers[name] = SimpleNamespace(
                            sendchannel=FakeChannel(dev, "send", fake.dma_max_size, fake.dma_error),
                            recvchannel=FakeChannel(dev, "recv", fake.dma_max_size))
                    else:
                        cls = fake._registry.get(desc["type"], DefaultIP)
                        self._drivers[name] = cls(desc)
                return self._drivers[name]

            def is_loaded(self):
                return True

        self.Overlay = Overlay

    def allocate(self, shape, dtype="u4", target=None, **kw):
        buf = FakeBuffer(shape, dtype, self._next_addr)
        self._next_addr += (buf.nbytes + 0xFFF) & ~0xFFF
        self.buffers.append(buf)
        return buf
