"""What a board adds around each run of a core, as the simulator models it (seconds).

The overlay driver (:class:`ohq_pynq.hw.overlay.CoreDriver.execute`) does, per run of a core::

    check the operands, cast activations to byte codes (numpy, once per layer)          [ARM]
    pack params + activations into the run's DMA buffer (weights resident)   flush it   [ARM]
    write the 15 configuration registers    arm the S2MM channel    write ap_start       [ARM]
    -- the core's CYCLES counter starts here --
    arm the MM2S channel (Python, so the core waits for its first beat: input stall)
    DDR -> HP port -> DMA -> core at the port's bytes per cycle, overlapped with the core
    poll ap_done (+ the DMA error bits) until it is seen     -- the counter stopped at done --
    wait for the S2MM channel, read its status     invalidate the output buffer          [ARM]
    unpack the output (numpy)   read IN_BEATS and the 4 x 64-bit counters                [ARM]

So a board's wall time per run is ``counter seconds + overheads``, and the counter itself holds
the input DMA's set-up after ``ap_start`` and the first-beat latency (as input-stall cycles).
:func:`run_overheads` gives the overheads by category:

* ``registers``: AXI4-Lite accesses from Python (``DefaultIP.write/read`` -> ``MMIO``):
  :data:`CONFIG_WRITES` + ap_start, IN_BEATS and the counters (lo/hi), the DMA status reads.
* ``dma_setup``: ``pynq`` ``_SDMAChannel.transfer()`` of the S2MM channel before ap_start
  (the MM2S one is inside the counter), ``recv.wait()``, the idle checks after done.
* ``cache``: ``flush()`` of the input buffer and ``invalidate()`` of the output buffer: a
  kernel call plus clean/invalidate by virtual address, line by line, at the CPU's rate. The
  whole stream is flushed even when a run's weights stay resident in its buffer: pynq's
  ``_SDMAChannel.transfer()`` flushes the array it sends (and the S2MM ``wait()`` invalidates
  its buffer), so the DMA never reads a range the driver did not flush. Those second passes
  over lines already clean are inside ``dma_transfer_s`` / the counter's input stall.
* ``poll``: from the core's done to the driver seeing it: half a poll period on average (the
  phase is uniform) plus the read that sees it; a period is one CTRL read, two DMA status reads
  and a ``time.sleep(0)``.
* ``pack``: the driver's numpy work (check the operands, cast the activations to byte codes,
  pack params and activations into the run's buffer — the weight words stay there from the
  first image, ``core_model.StreamPacker(out=)`` — and unpack the output), timed on this CPU with ``time.thread_time`` (the thread's CPU time: a shared host's other
  processes do not count) and multiplied by the board's
  ``arm_scale`` (0 when the simulator is told not to measure ARM time: deterministic tests).

The constants per processor (:data:`CPU_MODELS`) and per board (:data:`BOARD_CPUS`), and their
sources. They are estimates, not measurements on a board: a board's own figures come from the
``pynq`` backend, which times the same categories with ``time.perf_counter``.

* AXI DMA (Xilinx PG021 v7.1, "Performance", simple/direct register mode): MM2S
  ``m_axi_mm2s_arvalid`` -> ``m_axis_mm2s_tvalid`` 6 clocks, S2MM ``s_axis_s2mm_tvalid`` ->
  ``m_axi_s2mm_awvalid`` 39 clocks; sustained MM2S 99.76 % and S2MM 74.64 % of the port's
  width x clock. The DMA's memory side is the PS's HP port at the overlay's width
  (``build_overlay.tcl``: ``S_AXI_HP0`` 64 bit on Zynq-7000, ``S_AXI_HP0_FPD`` = 8 x bus_bytes
  on ZU+) on the PL clock, so the port moves ``bus_bytes`` per PL cycle (``boards.json``
  ``bus_bytes`` and ``fclk_hz``); at 99.76 % the core's input is never starved by it in steady
  state, and what is left is the start latency. DDR read latency behind the HP port is not in
  PG021 ("system dependent"); UG585 (Zynq-7000 TRM, ch. 5 "Interconnect", HP ports) and UG1085
  (ZynqMP TRM, ch. 15 "PS-PL AXI interfaces") describe the FIFOs and the path to the DDR
  controller without a figure; we take 40 PL cycles on Zynq-7000 and 60 on ZU+ (an estimate,
  ~0.4 us, typical of a DDR3/DDR4 page miss plus the interconnect).
* The S2MM tail (39 clocks + the write response, < 1 us) ends before the driver's first status
  read after done (a poll period is several us), so it adds nothing of its own.
* AXI4-Lite from Python: PYNQ's ``MMIO.write`` is a numpy store into an ``mmap`` of
  ``/dev/mem`` behind two Python calls (pynq/mmio.py); the PYNQ forum thread "MMIO write is too
  slow" (discuss.pynq.io/t/389) measured 5600 ``MMIO.write`` calls in a Python loop at
  150-200 ms on a PYNQ-Z1 (Cortex-A9 650 MHz): 27-36 us per iteration including the loop and two
  numpy scalar indexings. We take 8 us per write and 9 us per read (a read also waits for the
  GP0 round trip) on the Cortex-A9, and a third of that on a Cortex-A53 at 1.2-1.5 GHz.
* ``transfer()`` (pynq/lib/dma.py ``_SDMAChannel.transfer``): argument and alignment checks,
  the ``running``/``idle`` status reads, 3-4 register writes (SA, SA_MSB, LENGTH): ~6 register
  accesses plus Python, 60 us on the A9, 20 us on the A53 (estimate).
* Cache maintenance: the buffers are cacheable CMA/XRT buffers (PYNQ docs, "pynq.allocate":
  ``flush``/``invalidate`` for a non-coherent buffer; the overlay's HP ports are not coherent).
  Zynq-7000: 32-byte lines in L1 and the PL310 L2 (UG585 ch. 3 "Application Processing Unit";
  ARM PL310 TRM: maintenance by physical address one line at a time), ~40 cycles per line at
  650 MHz = 0.5 GB/s, plus ~20 us for the system call into the driver. ZynqMP: 64-byte lines,
  ``DC CVAC``/``DC CIVAC`` by virtual address to the point of coherency (UG1085 ch. 3 "APU";
  ARM Cortex-A53 TRM / ARMv8-A ARM "Data cache maintenance"), ~3 GB/s, ~8 us per call.
* ``time.sleep(0)``: a ``sched_yield`` system call, ~5 us on the A9, ~2 us on the A53.
* ``arm_scale`` (board seconds per second of this CPU for the driver's and the ARM-side numpy
  work): the ratio of clocks times a per-clock factor of ~2.5 for a desktop x86 core (~3 GHz,
  out-of-order, wide SIMD, ~10 GB/s memcpy) against the A9 (650 MHz, dual issue, NEON 64-bit,
  ~0.6 GB/s memcpy on the PYNQ-Z2's 16-bit DDR3) or the in-order A53 (ZCU104 1.2 GHz, KV260
  1.33 GHz, Ultra96-V2 1.5 GHz; UG1085 / the boards' user guides): 12 on the PYNQ-Z2, 6 on the
  ZCU104, 5.5 on the KV260, 5 on the Ultra96-V2. Pass ``arm_scale=`` to the simulator to use
  a ratio measured on a real board (``bench/`` can time the same numpy calls there).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

CATEGORIES = ("registers", "dma_setup", "cache", "poll", "pack")
CONFIG_WRITES = 15          # ConvLayer.registers(): CIN .. RELU (core_model / regmap)
COUNTER_READS = 9           # IN_BEATS + CYCLES/IN_STALL/OUT_STALL/MAC_ACTIVE lo and hi


@dataclass(frozen=True)
class CpuModel:
    """Costs of the driver's steps on one board's ARM core (seconds, bytes per second, cycles)."""

    cpu: str
    mmio_write_s: float          # one DefaultIP.write from Python
    mmio_read_s: float           # one DefaultIP.read from Python (GP port round trip)
    dma_transfer_s: float        # one pynq DMA channel transfer() call
    sleep0_s: float              # time.sleep(0) in the poll loop
    cache_call_s: float          # one flush()/invalidate() call (system call, driver)
    cache_bytes_per_s: float     # clean / invalidate by address
    ddr_latency_cycles: int      # PL cycles from the MM2S read request to its first data
    arm_scale: float             # board seconds per second of numpy work on this CPU

    @property
    def poll_period_s(self) -> float:
        """One iteration of the driver's ap_done loop: CTRL + 2 DMA status reads + sleep(0)."""
        return 3 * self.mmio_read_s + self.sleep0_s

    def to_json(self) -> dict:
        return asdict(self)


CORTEX_A9 = CpuModel(cpu="Cortex-A9 650 MHz", mmio_write_s=8e-6, mmio_read_s=9e-6,
                     dma_transfer_s=60e-6, sleep0_s=5e-6, cache_call_s=20e-6,
                     cache_bytes_per_s=0.5e9, ddr_latency_cycles=40, arm_scale=12.0)


def _a53(mhz: float, scale: float) -> CpuModel:
    return CpuModel(cpu=f"Cortex-A53 {mhz:g} MHz", mmio_write_s=8e-6 / 3, mmio_read_s=9e-6 / 3,
                    dma_transfer_s=20e-6, sleep0_s=2e-6, cache_call_s=8e-6,
                    cache_bytes_per_s=3e9, ddr_latency_cycles=60, arm_scale=scale)


BOARD_CPUS = {"pynq-z2": CORTEX_A9, "zcu104": _a53(1200, 6.0), "kv260": _a53(1333, 5.5),
              "ultra96v2": _a53(1500, 5.0)}
MM2S_START_CYCLES = 6        # PG021: m_axi_mm2s_arvalid -> m_axis_mm2s_tvalid


def cpu_model(board_name: str) -> CpuModel:
    """The :class:`CpuModel` of a board (Zynq-7000 boards not listed: the A9's, ZU+: 1.2 GHz)."""
    return BOARD_CPUS.get(board_name, CORTEX_A9)


def start_stall_cycles(cpu: CpuModel, fclk_hz: float) -> int:
    """Cycles the core counts between ap_start and its first input beat: the driver's MM2S
    ``transfer()`` after ap_start, then the DDR latency and the DMA's own start (PG021)."""
    return int(math.ceil(cpu.dma_transfer_s * fclk_hz)) + cpu.ddr_latency_cycles + MM2S_START_CYCLES


def run_overheads(cpu: CpuModel, bytes_in: int, bytes_out: int, chunks: int = 1,
                  pack_seconds: float = 0.0) -> dict:
    """Seconds by category (:data:`CATEGORIES`) one run adds outside the core's counter.
    ``chunks``: MM2S transfers of the input (all but the first are inside the counter too);
    ``pack_seconds``: the driver's numpy work on the board (already scaled)."""
    reads_after = 2 + 2 + COUNTER_READS      # recv idle + error, recv.wait status + LENGTH, counters
    registers = (CONFIG_WRITES + 1) * cpu.mmio_write_s + reads_after * cpu.mmio_read_s
    cache = (2 * cpu.cache_call_s + (_lines(bytes_in) + _lines(bytes_out)) / cpu.cache_bytes_per_s)
    return {"registers": registers,
            "dma_setup": cpu.dma_transfer_s,               # the S2MM channel, armed before ap_start
            "cache": cache,
            "poll": 0.5 * cpu.poll_period_s + cpu.mmio_read_s,
            "pack": float(pack_seconds)}


def _lines(nbytes: int, line: int = 64) -> int:
    """Bytes covered by whole cache lines (maintenance works on lines)."""
    return -(-int(nbytes) // line) * line
