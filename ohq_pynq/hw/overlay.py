"""PYNQ backend: the ohq overlay's int4/int8 conv cores on a real board.

``pynq`` is imported lazily (only when an :class:`OverlayAccelerator` is built), so this module
imports anywhere; tests pass ``pynq_module=ohq_pynq.hw.fake_pynq`` to run the driver end to end
against a register-level fake whose device model is the simulator core.

Per run of the core (a layer is split into runs by :mod:`.tiling` when it exceeds the memories):

1. write the layer's configuration registers by name (``regmap``);
2. pack params, weights and activations exactly as the RTL expects (``core_model.pack_input``)
   straight into a ``pynq.allocate`` buffer and ``flush()`` it. Each run of a deployed layer
   has its own input buffer (up to ``buffers.RESIDENT_BYTES`` in all), so its weight words
   are written once and stay resident: per image only the parameters and activations are;
3. arm the output DMA channel (S2MM) into a second buffer, set ``ap_start``, stream the input
   with the MM2S channel (in chunks if the DMA's length register is narrower than the stream);
4. poll ``ap_done`` with a timeout (:class:`HardwareError` when it never comes), wait for both DMA
   channels (with the same deadline), ``invalidate()`` the output buffer and unpack it;
5. read the 64-bit CYCLES / IN_STALL / OUT_STALL / MAC_ACTIVE counters (lo, hi) and check
   ``IN_BEATS`` against the stream length the driver computed.

Each step is timed with ``time.perf_counter`` into the categories of :mod:`.overheads`
(``registers``, ``dma_setup``, ``cache``, ``poll``: ap_start to seeing done beyond the counter,
``pack``); the :class:`Measurement` carries them, ``board_seconds`` (the call without the energy
replay) and the energy reading's standard error (``joules_stderr``).

Overlay conventions (as ``vivado/tcl/build_overlay.tcl`` builds it): each core's IP has the VLNV
:data:`VLNV` (cells ``ohq_int4``, ``ohq_int8``); its AXI DMA has ``int<bits>`` in its name
(``dma_int4``, ``dma_int8``) — or, failing that, the core's name with ``conv`` replaced by
``dma``, or the only DMA; the core's BITS register, not its name, decides which width it is.
The bitstream is ``overlays/<board>/ohq.bit`` with ``ohq.hwh`` beside it.

DMA transfers are cut the way the AXI DMA accepts them: pynq's simple-mode channel allows at
most ``buffer_max_size = (1 << c_sg_length_width) - 1`` bytes (an odd number) per transfer and,
without the data realignment engine, only start addresses aligned to the memory-map data width
(pynq/lib/dma.py). Input streams longer than that go in chunks of the maximum rounded down to a
multiple of 4 KiB (below 4 KiB: of the bus width), so every chunk starts aligned in the
page-aligned ``allocate`` buffer and ends on a whole beat (:func:`chunk_bytes`). The length
register is 26 bits wide in ``build_overlay.tcl`` (64 MiB - 1). After each run the receive
channel's ``wait()`` reports DMA errors and the bytes written; a packet shorter or longer than
the layer's output is a :class:`HardwareError`.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError, HardwareError
from . import core_model as cm
from . import regmap as rm
from .accelerator import HardwareInfo, Measurement, Requant, check_inputs, conv_layer
from .boards import Board, detect_board_name, get_board
from .buffers import BufferPool
from .power import DEFAULT_ENERGY_WINDOW
from .tiling import plan_layer, run_plan

VLNV = "ohq-pynq:ohq:ohq_conv:1.0"   # vendor:library:name:version of the packaged core
DMA_VLNV_PREFIX = "xilinx.com:ip:axi_dma:"
DEFAULT_TIMEOUT = 5.0                # seconds per run of the core
PAGE = 4096                          # bytes: chunks of long DMA transfers are multiples of this
OVERLAY_DIRS = (Path(__file__).resolve().parents[2] / "overlays",
                Path(__file__).resolve().parents[1] / "overlays")

_DRIVER = None


def import_pynq(hint: str = "use --backend sim off the board."):
    """The ``pynq`` package, or a :class:`HardwareError` saying it is not there (off the board),
    ending with ``hint``."""
    try:
        import pynq
    except ImportError as err:
        raise HardwareError(f"the pynq backend needs the pynq package ({err}); {hint}") from None
    return pynq


def driver_class(pynq=None):
    """The ``DefaultIP`` subclass bound to :data:`VLNV` (created and registered on first call),
    so pynq gives the cores their own driver type; register access is :class:`CoreDriver`'s."""
    global _DRIVER
    pynq = pynq or import_pynq()
    if _DRIVER is not None and issubclass(_DRIVER, pynq.DefaultIP):
        return _DRIVER

    class OhqConvIP(pynq.DefaultIP):
        """ohq_conv core (``DefaultIP.read/write`` on its AXI4-Lite registers)."""

        bindto = [VLNV]

    _DRIVER = OhqConvIP
    return OhqConvIP


def chunk_bytes(max_size: int, align: int) -> int:
    """Bytes per DMA transfer of a long stream: ``max_size`` (the channel's maximum, ``2^N - 1``)
    rounded down to a multiple of 4 KiB, or below 4 KiB to a multiple of ``align`` (the bus width,
    bytes), so every chunk starts aligned and ends on a whole beat."""
    if max_size >= PAGE:
        return max_size - max_size % PAGE
    chunk = max_size - max_size % align
    if chunk <= 0:
        raise HardwareError(f"the DMA's maximum transfer of {max_size} bytes is below one "
                            f"{align}-byte beat; widen its length register in the block design.")
    return chunk


def check_magic(name: str, ip) -> None:
    """A :class:`HardwareError` unless IP ``name`` answers the ohq_conv core's MAGIC."""
    magic = int(ip.read(rm.offset("MAGIC"))) & 0xFFFFFFFF
    if magic != rm.MAGIC:
        raise HardwareError(f"IP {name} answers MAGIC 0x{magic:08X}, not the ohq_conv core's "
                            f"0x{rm.MAGIC:08X}; is the right bitstream loaded?")


class CoreDriver:
    """Register-level driver of one core: ``ip`` is anything with ``read(offset)`` and
    ``write(offset, value)`` (a ``DefaultIP``), ``dma`` an AXI DMA with send/recv channels."""

    def __init__(self, name: str, ip, dma, pynq, timeout: float = DEFAULT_TIMEOUT,
                 vlnv: str | None = None, dma_name: str | None = None):
        self.name, self.ip, self.dma, self.pynq, self.timeout = name, ip, dma, pynq, timeout
        self.fclk_hz = 100e6          # set by OverlayAccelerator from the PS clock
        self.dma_name = dma_name
        check_magic(name, ip)
        version = self.read("VERSION")
        if version >> 16 != rm.VERSION >> 16:
            raise HardwareError(f"IP {name} has register map {version >> 16}.{version & 0xFFFF}, "
                                f"this driver speaks {rm.VERSION >> 16}.x; update ohq-pynq or the overlay.")
        declared = str(vlnv or "").rsplit(":", 1)[-1].split(".")[0]
        if declared.isdigit() and int(declared) != version >> 16:
            raise HardwareError(f"IP {name} is ohq_conv {vlnv.rsplit(':', 1)[-1]} in the overlay's .hwh "
                                f"but its VERSION register reads {version >> 16}.{version & 0xFFFF}; "
                                f"the .hwh does not belong to the loaded .bit (rebuild or copy both).")
        try:
            self.core = cm.CoreConfig.from_registers(self.read)
        except ConfigError as err:
            raise HardwareError(f"IP {name} reports core parameters that cannot be right ({err}); "
                                f"is the right bitstream loaded?") from None
        self.buffers = BufferPool(self._allocate, _free_buffer)
        self.max_transfer = self._max_transfer()      # None: the DMA states no maximum
        self.chunk = None if self.max_transfer is None else \
            chunk_bytes(self.max_transfer, max(self.core.bus_bytes, self.dma_bus_bytes()))

    def _max_transfer(self) -> int | None:
        """Largest DMA transfer (bytes): pynq's ``DMA.buffer_max_size``, else the channels'."""
        size = getattr(self.dma, "buffer_max_size", None)
        if not isinstance(size, int):
            sizes = [getattr(ch, "_max_size", None) for ch in (self.dma.sendchannel, self.dma.recvchannel)]
            sizes = [v for v in sizes if isinstance(v, int)]
            size = min(sizes) if sizes else None
        return size if size is None else int(size)

    def dma_parameters(self) -> dict:
        """The DMA's ``.hwh`` parameters (its ``ip_dict`` entry), or {}."""
        desc = getattr(self.dma, "description", None)
        return dict(desc.get("parameters", {})) if isinstance(desc, dict) else {}

    def dma_bus_bytes(self) -> int:
        """The DMA's memory-map data width (bytes): the alignment its transfers need."""
        p = self.dma_parameters()
        widths = [int(p[k]) // 8 for k in ("c_m_axi_mm2s_data_width", "c_m_axi_s2mm_data_width") if k in p]
        return max(widths, default=self.core.bus_bytes)

    # -- registers -----------------------------------------------------------------------
    def read(self, name: str) -> int:
        return int(self.ip.read(rm.offset(name))) & 0xFFFFFFFF

    def write(self, name: str, value: int) -> None:
        self.ip.write(rm.offset(name), int(value) & 0xFFFFFFFF)

    def counter(self, name: str) -> int:
        """A 64-bit counter (lo then hi; counters are frozen after done, so no tearing)."""
        return self.read(name + "_LO") | (self.read(name + "_HI") << 32)

    def counters(self) -> dict[str, int]:
        return {c: self.counter(c) for c in rm.COUNTERS}

    # -- buffers -------------------------------------------------------------------------
    def input_buffer(self, nbytes: int, key=None):
        """The DMA buffer to pack a run's input stream into (:meth:`.buffers.BufferPool.run`):
        one per ``key`` (a run of a layer: its weight words stay resident between images)."""
        return self.buffers.run(nbytes, key)

    def _allocate(self, nbytes: int):
        try:
            return self.pynq.allocate(shape=(nbytes,), dtype=np.uint8)
        except Exception as err:  # pynq raises RuntimeError / MemoryError variously
            raise HardwareError(f"cannot allocate a {nbytes}-byte DMA buffer: {err}") from None

    def free(self) -> None:
        self.buffers.clear()

    # -- one run -------------------------------------------------------------------------
    def _wait(self, what: str, ready, deadline: float) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise HardwareError(f"core {self.name}: {what} did not happen within "
                                    f"{self.timeout:g} s; the overlay may need a reload.")
            time.sleep(0)

    def _dma_error(self, *channels) -> None:
        for ch in channels:
            if getattr(ch, "error", False):
                which = "output (S2MM)" if ch is self.dma.recvchannel else "input (MM2S)"
                raise HardwareError(f"core {self.name}: the AXI DMA reported an error on its "
                                    f"{which} channel.")

    def _channel_ready(self, ch):
        def ready():
            self._dma_error(ch)
            return bool(ch.idle)
        return ready

    def _transfer(self, ch, buf, start: int, nbytes: int) -> None:
        try:
            ch.transfer(buf, start=start, nbytes=nbytes)
        except (RuntimeError, ValueError) as err:   # what pynq's DMA channels raise
            raise HardwareError(f"core {self.name}: the AXI DMA refused a {nbytes}-byte transfer "
                                f"at offset {start} ({err}).") from None

    def _received(self, recv, n_out: int) -> None:
        """pynq's ``wait()`` on the finished receive channel: its error bits and the bytes the
        S2MM channel wrote (``transferred``), which must be the layer's output."""
        if hasattr(recv, "wait"):
            try:
                recv.wait()
            except RuntimeError as err:
                raise HardwareError(f"core {self.name}: the AXI DMA's output channel failed "
                                    f"({err}).") from None
        got = getattr(recv, "transferred", None)
        if isinstance(got, (int, np.integer)) and got != n_out:
            raise HardwareError(f"core {self.name}: the output DMA received {int(got)} bytes, the "
                                f"layer has {n_out}; the core and the driver disagree on the "
                                f"layer (register map or core parameters).")

    def execute(self, layer: cm.ConvLayer, stream: np.ndarray, decode: bool = True):
        """Run ``layer`` on an already packed input ``stream`` (uint8; a buffer from
        :meth:`input_buffer` is streamed as it is, anything else is copied into the shared input
        buffer). Returns (outputs or None, counters + bytes in/out + ``overheads``: seconds by
        category outside the counter, timed with ``time.perf_counter`` as :mod:`.overheads`
        models them)."""
        clock = time.perf_counter
        spent = dict.fromkeys(("registers", "dma_setup", "cache", "poll", "pack"), 0.0)
        core = self.core
        geo = cm.geometry(layer, core)
        n_in, n_out = stream.size, geo.out_beats * core.bus_bytes
        if self.max_transfer is not None and n_out > self.max_transfer:
            raise HardwareError(f"core {self.name}: the output of {n_out} bytes exceeds the DMA's "
                                f"maximum transfer of {self.max_transfer} bytes; widen its length "
                                f"register in the block design.")
        obuf = self.buffers.shared("out", n_out)
        t = clock()
        if _is_dma_buffer(stream):
            ibuf = stream
        else:
            ibuf = self.buffers.shared("in", n_in)
            ibuf[:] = stream
        t, spent["pack"] = clock(), clock() - t
        ibuf.flush()
        t, spent["cache"] = clock(), clock() - t
        for name, value in layer.registers().items():
            self.write(name, value)
        t, spent["registers"] = clock(), clock() - t
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        chunk = self.chunk or n_in
        deadline = time.monotonic() + self.timeout
        self._transfer(recv, obuf, 0, n_out)
        t, spent["dma_setup"] = clock(), clock() - t
        self.write("CTRL", rm.CTRL_AP_START)
        t_start = clock()
        spent["registers"] += t_start - t
        for start in range(0, n_in, chunk):
            self._transfer(send, ibuf, start, min(chunk, n_in - start))
            self._wait("the input DMA transfer", self._channel_ready(send), deadline)

        def done():
            self._dma_error(send, recv)    # a halted DMA stalls the core: report the DMA
            return self.read("CTRL") & rm.CTRL_AP_DONE
        self._wait("ap_done", done, deadline)
        t_done = clock()
        self._wait("the output DMA transfer", self._channel_ready(recv), deadline)
        self._received(recv, n_out)
        t, spent["dma_setup"] = clock(), spent["dma_setup"] + clock() - t_done
        y = None
        if decode:
            obuf.invalidate()
            t, spent["cache"] = clock(), spent["cache"] + clock() - t
            y = cm.unpack_output(np.asarray(obuf), layer, core)
            t, spent["pack"] = clock(), spent["pack"] + clock() - t
        beats = self.read("IN_BEATS")
        if beats != geo.in_beats:
            raise HardwareError(f"core {self.name}: IN_BEATS reads {beats}, the driver streamed "
                                f"{geo.in_beats} beats (register-map mismatch).")
        info = self.counters()
        spent["registers"] += clock() - t
        if info["CYCLES"] < info["MAC_ACTIVE"] or info["CYCLES"] < geo.in_beats:
            raise HardwareError(f"core {self.name}: CYCLES reads {info['CYCLES']}, fewer than the "
                                f"{max(info['MAC_ACTIVE'], geo.in_beats)} cycles the run needs at least; "
                                f"the cycle counter wrapped or its upper word is not wired.")
        # From ap_start to seeing done, beyond what the counter counted: the poll latency.
        spent["poll"] = max(0.0, (t_done - t_start) - info["CYCLES"] / self.fclk_hz)
        info.update(bytes_in=n_in, bytes_out=n_out, overheads=spent)
        return y, info


def _is_dma_buffer(a) -> bool:
    """A ``pynq.allocate`` buffer (it has a physical address), not host memory."""
    return hasattr(a, "physical_address") or hasattr(a, "device_address")


def _free_buffer(buf) -> None:
    for meth in ("freebuffer", "close"):
        if hasattr(buf, meth):
            try:
                getattr(buf, meth)()
            except Exception:
                pass
            break


def find_bitstream(board: str) -> Path:
    """``overlays/<board>/ohq.bit`` in the source tree or the installed package."""
    for base in OVERLAY_DIRS:
        path = base / board / "ohq.bit"
        if path.is_file():
            return path
    looked = ", ".join(str(b / board / "ohq.bit") for b in OVERLAY_DIRS)
    raise HardwareError(f"no bitstream for board {board} (looked in {looked}); build it with "
                        f"`make -C vivado BOARD={board} overlay` or pass --overlay.")


def _pair_dma(core_name: str, bits: int, dmas: list[str]) -> str:
    hits = [d for d in dmas if f"int{bits}" in d.rsplit("/", 1)[-1]]
    if len(hits) == 1:
        return hits[0]
    want = core_name.replace("conv", "dma")
    if want in dmas and want != core_name:
        return want
    if len(dmas) == 1:
        return dmas[0]
    raise HardwareError(f"cannot tell which AXI DMA feeds core {core_name} (DMAs: "
                        f"{', '.join(dmas) or 'none'}); name it dma_int{bits}.")


class OverlayAccelerator:
    """The overlay on this board as an :class:`~ohq_pynq.hw.accelerator.Accelerator`.

    ``board``: profile name (default: ``$BOARD`` / device tree); ``bitstream``: path to the .bit
    (default ``overlays/<board>/ohq.bit``); ``timeout``: seconds per core run; ``power``: measure
    energy on the board's PMBus rails (default: where the board has rails, and without energy
    plus one warning when none of them answers; ``True``: their absence is an error);
    ``energy_window``: seconds of repeated runs per energy reading (widened to cover enough
    sensor updates, see :mod:`.power`); ``pynq_module``: the pynq API (a fake in tests).
    """

    def __init__(self, board: str | Board | None = None, bitstream: str | os.PathLike | None = None,
                 timeout: float = DEFAULT_TIMEOUT, power: bool | None = None,
                 energy_window: float = DEFAULT_ENERGY_WINDOW, pynq_module=None,
                 download: bool = True):
        from ..fileio import file_sha256

        if isinstance(board, Board):
            self.board = board
        else:
            name = board or detect_board_name()
            if name is None:
                raise ConfigError("cannot detect the board: set $BOARD or pass --board.")
            self.board = get_board(name)
        self.pynq = pynq_module or import_pynq()
        path = Path(bitstream) if bitstream else find_bitstream(self.board.name)
        if not path.is_file():
            raise HardwareError(f"bitstream {path} not found.")
        self.bitstream = path
        self.bitstream_sha256 = file_sha256(path)
        self.packer = cm.StreamPacker()    # each layer's weight words, packed once
        driver_class(self.pynq)
        try:
            self.overlay = self.pynq.Overlay(str(path), download=download)
        except Exception as err:
            hwh = path.with_suffix(".hwh")
            hint = f" ({hwh.name} is missing beside it; copy the .hwh built with the .bit)" \
                if not hwh.is_file() else ""
            raise HardwareError(f"cannot load overlay {path}: {err}{hint}") from None
        ip_dict = dict(self.overlay.ip_dict)
        cores = sorted(n for n, d in ip_dict.items() if str(d.get("type", "")).startswith(VLNV.rsplit(":", 1)[0]))
        dmas = sorted(n for n, d in ip_dict.items() if str(d.get("type", "")).startswith(DMA_VLNV_PREFIX))
        if not cores:
            raise HardwareError(f"overlay {path.name} has no ohq_conv core ({VLNV}); IPs: "
                                f"{', '.join(sorted(ip_dict)) or 'none'}.")
        self.drivers: dict[int, CoreDriver] = {}
        for name in cores:
            ip = getattr(self.overlay, name)
            check_magic(name, ip)
            bits = int(ip.read(rm.offset("BITS")))
            dma_name = _pair_dma(name, bits, dmas)
            drv = CoreDriver(name, ip, getattr(self.overlay, dma_name), self.pynq, timeout,
                             vlnv=ip_dict[name].get("type"), dma_name=dma_name)
            if drv.core.bits in self.drivers:
                raise HardwareError(f"overlay has two {drv.core.bits}-bit cores ({name}, "
                                    f"{self.drivers[drv.core.bits].name}).")
            self.drivers[drv.core.bits] = drv
        self.fclk_hz = self._fclk()
        for drv in self.drivers.values():
            drv.fclk_hz = self.fclk_hz
        self.monitor = None
        self.energy_error: str | None = None   # why energy stopped being measured mid-run
        self.power_error: str | None = None    # why energy was not measured from the start
        self.last_energy = None                # the EnergyReading of the last run_layer
        self.energy_log: list[dict] = []       # every reading: layer, bits and its spread
        want_power = self.board.has_power if power is None else power
        if want_power:
            from .power import PowerMonitor, PowerUnavailable
            try:
                self.monitor = PowerMonitor.for_board(self.board, pynq_module=self.pynq)
                self.monitor.calibrate_idle()
            except PowerUnavailable as err:
                if power:                          # asked for explicitly: that is an error
                    raise
                self.monitor, self.power_error = None, str(err)
                warnings.warn(f"{err} Profiling latency only: energy is unavailable.", stacklevel=2)
        self.energy_window = float(energy_window)

    def _fclk(self) -> float:
        try:
            mhz = float(self.pynq.ps.Clocks.fclk0_mhz)
            if mhz > 0:
                return mhz * 1e6
        except Exception:
            pass
        return self.board.fclk_hz

    # -- Accelerator ---------------------------------------------------------------------
    def describe(self) -> HardwareInfo:
        rails = tuple(self.monitor.rail_names) if self.monitor else ()
        return HardwareInfo(board=self.board.name, backend="pynq", fclk_hz=self.fclk_hz,
                            cores={b: d.core for b, d in sorted(self.drivers.items())}, rails=rails,
                            part=self.board.part, bitstream_sha256=self.bitstream_sha256,
                            deterministic=False)

    def _driver(self, bits: int) -> CoreDriver:
        try:
            return self.drivers[int(bits)]
        except KeyError:
            raise ConfigError(f"the overlay has no {bits}-bit core (it has "
                              f"{', '.join(map(str, sorted(self.drivers)))}).") from None

    def run_layer(self, layer, bits: int, x_q, w_q, requant: Requant):
        """Run one layer on the ``bits`` core: outputs (OH, OW, Cout) and the Measurement.

        With power rails, the layer's packed runs are then repeated for ``energy_window``
        seconds while the rails are sampled (packing is not repeated)."""
        t0 = time.perf_counter()
        drv = self._driver(bits)
        conv = conv_layer(layer, requant)
        t = time.perf_counter()
        x, w, bias, mult, shift = check_inputs(conv, bits, x_q, w_q, requant,
                                               weight_values=not self.packer.knows(w_q, bits))
        x = cm.activation_bytes(x)          # checked: the runs slice and pack byte codes
        plan = plan_layer(conv, drv.core)
        packed = []

        packing = time.perf_counter() - t
        run = 0

        def run_tile(tile, *tensors):
            nonlocal packing, run
            t = time.perf_counter()
            # the layer's weight words are packed once and stay in the run's buffer while w_q
            # is the same tensor (deployment streams the same weights with every image)
            key = (id(w_q), bits, run)
            geo = cm.geometry(tile.layer, drv.core)
            buf = drv.input_buffer(geo.in_beats * drv.core.bus_bytes, key=key)
            stream = self.packer.pack(*tensors, tile.layer, drv.core, key=key, owner=w_q, out=buf,
                                      codes=True)
            run += 1
            packing += time.perf_counter() - t
            if self.monitor is not None:           # the energy replay needs every run's stream
                packed.append((tile.layer, np.array(stream)))
            return drv.execute(tile.layer, stream)

        y, infos = run_plan(plan, x, w, bias, mult, shift, run_tile)
        board_seconds = time.perf_counter() - t0        # the layer as deployment sees it
        joules = joules_stderr = None
        if self.monitor is not None and self.energy_error is None:
            from .power import PowerUnavailable

            def replay():
                for sub, stream in packed:
                    drv.execute(sub, stream, decode=False)
            try:
                reading = self.monitor.measure_energy(replay, self.energy_window)
                joules, self.last_energy = reading.joules, reading
                joules_stderr = reading.joules_stderr
                self.energy_log.append({"layer": getattr(layer, "name", None), "bits": int(bits),
                                        **reading.to_json()})
            except PowerUnavailable as err:
                # Latency is still good: keep measuring it, with energy marked unavailable.
                self.energy_error = str(err)
                warnings.warn(f"{err} Energy is unavailable from here on; latency is still "
                              f"measured.", stacklevel=2)
        cyc = sum(i["CYCLES"] for i in infos)
        over = {k: sum(i["overheads"][k] for i in infos) for k in infos[0]["overheads"]}
        over["pack"] += packing
        # Whatever the categories miss (Python between the steps, slicing) is in board_seconds.
        return y, Measurement(
            cycles=int(cyc), seconds=cyc / self.fclk_hz,
            bytes_in=int(sum(i["bytes_in"] for i in infos)),
            bytes_out=int(sum(i["bytes_out"] for i in infos)), joules=joules,
            in_stall_cycles=int(sum(i["IN_STALL"] for i in infos)),
            out_stall_cycles=int(sum(i["OUT_STALL"] for i in infos)),
            mac_cycles=int(sum(i["MAC_ACTIVE"] for i in infos)), runs=plan.runs,
            wall_seconds=time.perf_counter() - t0, overheads=over, board_seconds=board_seconds,
            joules_stderr=joules_stderr)

    def read_power(self):
        """A :class:`PowerSample` of the board's rails, or None without (working) rails."""
        if self.monitor is None or self.energy_error is not None:
            return None
        from .power import PowerUnavailable
        try:
            return self.monitor.read()
        except PowerUnavailable as err:
            self.energy_error = str(err)
            return None

    def close(self) -> None:
        for drv in self.drivers.values():
            drv.free()
        if self.monitor is not None:
            self.monitor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
