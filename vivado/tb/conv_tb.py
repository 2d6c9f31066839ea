"""cocotb benches of the ohq_conv core, checked bit-exactly against ohq_pynq.hw.core_model.

Run through pytest (vivado/tb/test_conv_core.py), which builds the RTL per core configuration
and runs this module. The seed comes from OHQ_TB_SEED (fixed by the pytest driver).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw import cycle_model
from ohq_pynq.hw import regmap as rm
from ohq_pynq.hw import tiling

SEED = int(os.environ.get("OHQ_TB_SEED", "1234"))
N_RANDOM = int(os.environ.get("OHQ_TB_LAYERS", "10"))


class Bench:
    def __init__(self, dut):
        self.dut = dut
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk,
                                  dut.ap_rst_n, reset_active_level=False)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.ap_clk,
                                   dut.ap_rst_n, reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.ap_clk,
                                  dut.ap_rst_n, reset_active_level=False)
        self.core: cm.CoreConfig | None = None
        self.ideal = True          # no random gaps/stalls: CYCLES must equal the cycle model
        self.check_cycles = True   # (the cycle table records mismatches instead)
        for bus in ("s_axi_control", "s_axis", "m_axis"):
            logging.getLogger(f"cocotb.{dut._name}.{bus}").setLevel(logging.WARNING)

    async def start(self):
        Clock(self.dut.ap_clk, 10, unit="ns").start()
        await self.reset()
        self.core = cm.CoreConfig.from_registers(await self.read_all(rm.PARAM_REGISTERS))

    async def reset(self, cycles: int = 5):
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, cycles)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.dut.ap_clk, 2)

    async def read(self, name: str) -> int:
        return await self.axil.read_dword(rm.offset(name))

    async def write(self, name: str, value: int):
        await self.axil.write_dword(rm.offset(name), value)

    async def read_all(self, names):
        values = {}
        for n in names:
            values[n] = await self.read(n)
        return values.__getitem__

    async def counters(self) -> dict[str, int]:
        out = {}
        for c in rm.COUNTERS:
            lo = await self.read(c + "_LO")
            hi = await self.read(c + "_HI")
            out[c] = lo | (hi << 32)
        return out

    def backpressure(self, rng: random.Random, p_in: float, p_out: float):
        def gen(p):
            r = random.Random(rng.random())
            while True:
                yield r.random() < p
        self.ideal = not (p_in or p_out)
        # Clearing a pause generator leaves `pause` at its last value: release it explicitly.
        if p_in:
            self.src.set_pause_generator(gen(p_in))
        else:
            self.src.clear_pause_generator()
            self.src.pause = False
        if p_out:
            self.sink.set_pause_generator(gen(p_out))
        else:
            self.sink.clear_pause_generator()
            self.sink.pause = False

    async def run_layer(self, layer: cm.ConvLayer, rng: np.random.Generator, timeout_us=2000,
                        tensors=None):
        """Configure, stream, check the output bit-exactly (and, with an ideal stream, CYCLES
        against ohq_pynq.hw.cycle_model); return (counters, geometry). ``tensors`` (x, w, bias,
        mult, shift) replaces the random ones; the output is kept in ``self.last_output``."""
        core = self.core
        x, w, bias, mult, shift = tensors if tensors is not None else random_tensors(layer, core, rng)
        geo = cm.check_layer(layer, core)
        expected = cm.conv_reference(x, w, bias, mult, shift, layer, core.bits)
        for name, value in layer.registers().items():
            await self.write(name, value)
        # The stream waits (tready low while idle) so that it is there when the core starts,
        # as the cycle model's ideal stream is.
        await self.src.send(AxiStreamFrame(cm.pack_input(x, w, bias, mult, shift, layer, core)))
        await self.write("CTRL", rm.CTRL_AP_START)
        try:
            frame = await with_timeout(self.sink.recv(), timeout_us, "us")
        except Exception:
            e = self.dut.u_engine
            state = {n: str(getattr(e, n).value) for n in (
                "st", "cst", "wph", "beats_in", "in_beats", "rows_written", "need_rows", "oy",
                "ox", "t", "f_cnt", "wr_row", "wr_addr", "waddr", "low_lin", "oh", "ow", "tiles_g",
                "chunks_g", "cpp", "dw", "ws", "j1", "grp_j", "ub_busy", "ub_u")}
            raise AssertionError(f"{layer}: no output frame; engine state {state}")
        while not (await self.read("CTRL")) & rm.CTRL_AP_DONE:
            await ClockCycles(self.dut.ap_clk, 4)
        assert await self.read("IN_BEATS") == geo.in_beats
        got = bytes(frame.tdata)
        want = cm.pack_output(expected, layer, core)
        if got != want:
            y = cm.unpack_output(got, layer, core) if len(got) >= geo.out_bytes else None
            bad = None if y is None else np.argwhere(y != expected)[:5].tolist()
            raise AssertionError(f"{layer}: output mismatch (got {len(got)} bytes, want "
                                 f"{len(want)}); first differing (y, x, c): {bad}")
        cnt = await self.counters()
        assert cnt["MAC_ACTIVE"] == geo.mac_steps, (cnt, geo)
        assert cnt["CYCLES"] >= geo.mac_steps
        if self.ideal and self.check_cycles:
            assert cnt["CYCLES"] == cycle_model.cycles(layer, core), (layer, cnt)
        self.last_output = expected
        return cnt, geo


def random_tensors(layer: cm.ConvLayer, core: cm.CoreConfig, rng: np.random.Generator):
    bits = core.bits
    lo, hi = cm.act_range(bits, layer.in_signed)
    x = rng.integers(lo, hi + 1, size=(layer.h, layer.w, layer.cin))
    wq = cm.weight_range(bits)[1]
    w = rng.integers(-wq, wq + 1, size=(layer.cout, layer.cin_g, layer.kernel, layer.kernel))
    # Scale chosen so the outputs spread over the output range (and saturate a little).
    fan_in = layer.cin_g * layer.kernel ** 2
    spread = max(1.0, (hi - lo) * wq * np.sqrt(fan_in) / 3)
    out_span = 1 << layer.out_bits
    bias = rng.integers(-int(spread), int(spread) + 1, size=layer.cout)
    shift = rng.integers(12, 24, size=layer.cout)
    mult = np.clip(np.round(out_span / spread * (2.0 ** shift)
                            * rng.uniform(0.5, 2.0, size=layer.cout)), 1, 0xFFFF).astype(np.int64)
    return x, w, bias, mult, shift


def random_layer(rng: random.Random, core: cm.CoreConfig, case: str) -> cm.ConvLayer:
    """A small random layer of one case; channel counts straddle the lane counts."""
    ch, pe = core.ch, core.pe
    k = {"k1": 1, "k3": 3, "k5": 5, "k7": 7}.get(case, rng.choice([1, 3, 5]))
    stride = rng.choice([1, 2])
    groups = 1
    cin = rng.randint(1, 2 * ch + 1)
    cout = rng.randint(1, 2 * pe + 1)
    if case == "grouped":
        groups = rng.choice([2, 3])
        cin = groups * rng.randint(1, ch + 1)
        cout = groups * rng.randint(1, pe + 1)
    elif case == "depthwise":
        groups = cin = cout = rng.randint(2, 2 * max(pe, ch) + 1)
    size = {1: 6, 3: 6, 5: 7, 7: 8}[k]
    h, w = rng.randint(max(1, k - 2), size), rng.randint(max(1, k - 2), size)
    if case == "fc":
        k, stride, h, w = 1, 1, 1, 1
        cin, cout = rng.randint(1, 4 * ch), rng.randint(1, 3 * pe)
    pads = tuple(rng.randint(0, k - 1) for _ in range(4))
    # Keep the output non-empty.
    while (h + pads[0] + pads[2] - k) < 0 or (w + pads[1] + pads[3] - k) < 0:
        h, w = h + 1, w + 1
    return cm.ConvLayer(cin=cin, cout=cout, h=h, w=w, kernel=k, stride=stride, pads=pads,
                        groups=groups, in_signed=rng.random() < 0.5,
                        out_bits=rng.choice([4, 8]), out_signed=rng.random() < 0.5,
                        relu=rng.random() < 0.5)


CASES = ["k1", "k3", "k5", "k7", "grouped", "depthwise", "fc", "any"]


@cocotb.test()
async def registers(dut):
    """Parameter registers, config read-back, ISR toggle-on-write, idle bit, unmapped reads 0."""
    tb = Bench(dut)
    await tb.start()
    assert await tb.read("MAGIC") == rm.MAGIC
    assert await tb.read("VERSION") == rm.VERSION
    for name, param in (("BITS", "BITS"), ("PE", "PE"), ("SIMD", "SIMD"),
                        ("BUS_BYTES", "BUS_BYTES")):
        assert await tb.read(name) == int(getattr(dut, param).value), name
    assert await tb.read("CTRL") == rm.CTRL_AP_IDLE
    rng = random.Random(SEED)
    for name in rm.CONFIG_REGISTERS:
        bits = rm.BY_NAME[name].bits
        v = rng.randrange(1 << bits)
        await tb.write(name, v | (0xFFFF0000 if bits <= 16 else 0))
        assert await tb.read(name) == v, name
    await tb.write("GIE", 1)
    await tb.write("IER", 3)
    assert await tb.read("GIE") == 1 and await tb.read("IER") == 3
    assert await tb.read("ISR") == 0
    await tb.write("ISR", 1)          # toggle-on-write: sets bit 0 ...
    assert await tb.read("ISR") == 1
    assert int(dut.interrupt.value) == 1
    await tb.write("ISR", 1)          # ... and clears it again
    assert await tb.read("ISR") == 0
    assert int(dut.interrupt.value) == 0
    assert await tb.axil.read_dword(0x7C) == 0
    for c in rm.COUNTERS:
        assert await tb.read(c + "_LO") == 0


@cocotb.test()
async def random_layers(dut):
    """Random shapes of every case, back-to-back on one core, bit-exact."""
    tb = Bench(dut)
    await tb.start()
    rng = random.Random(SEED + 1)
    nrng = np.random.default_rng(SEED + 1)
    cases = list(itertools.islice(itertools.cycle(CASES), max(N_RANDOM, len(CASES))))
    for case in cases:
        layer = random_layer(rng, tb.core, case)
        dut._log.info("%s: %s", case, layer)
        await tb.run_layer(layer, nrng)


@cocotb.test()
async def backpressure(dut):
    """Random gaps on the input and stalls on the output: still exact, stall counters move."""
    tb = Bench(dut)
    await tb.start()
    rng = random.Random(SEED + 2)
    nrng = np.random.default_rng(SEED + 2)
    for i, case in enumerate(["k3", "grouped", "k1", "depthwise"]):
        tb.backpressure(rng, p_in=0.3 + 0.1 * i, p_out=0.5 - 0.1 * i)
        layer = random_layer(rng, tb.core, case)
        # Big enough that both streams run for many beats.
        layer = dataclasses.replace(layer, h=layer.h + 4, w=layer.w + 4, out_bits=8,
                                    cout=layer.cout * max(1, 8 // layer.cout))
        cnt, geo = await tb.run_layer(layer, nrng)
        assert cnt["IN_STALL"] > 0, cnt
        assert cnt["OUT_STALL"] > 0, cnt
    tb.backpressure(rng, 0, 0)


def mode_layers(core: cm.CoreConfig, rng: random.Random) -> list[tuple[str, cm.ConvLayer]]:
    """One layer per core mode (line buffer, weight streaming, FC, depthwise with several pixels
    or several tiles per step, grouped), channel counts off the lane multiples."""
    ch, pe = core.ch, core.pe
    L = cm.ConvLayer
    out = [
        ("line-buffer", L(cin=ch + 1, cout=pe + 3, h=14, w=12, kernel=3, pads=(1, 1, 1, 0))),
        ("weight-streaming", L(cin=2 * ch - 1, cout=2 * pe + 1, h=3, w=4, kernel=3, stride=2,
                               pads=(1, 1, 1, 1))),
        ("fc", L(cin=3 * ch + 5, cout=pe + 2, h=1, w=1)),
        ("grouped", L(cin=3 * ch, cout=3 * (pe - 1), h=9, w=5, kernel=3, pads=(1, 1, 1, 1), groups=3)),
    ]
    if core.pe <= core.ch:
        c = max(3, ch * (pe // 2) - 3)        # cpp < pe: several output pixels per step
        out += [("depthwise-pixels", L(cin=c, cout=c, h=7, w=9, kernel=3, stride=2,
                                       pads=(1, 1, 1, 1), groups=c)),
                ("depthwise-tiles", L(cin=pe * ch + 2 * ch - 3, cout=pe * ch + 2 * ch - 3, h=6, w=5,
                                      kernel=5, pads=(2, 2, 2, 2), groups=pe * ch + 2 * ch - 3))]
    flags = [dict(in_signed=rng.random() < 0.5, out_bits=rng.choice([4, 8]),
                  out_signed=rng.random() < 0.5, relu=rng.random() < 0.5) for _ in out]
    return [(m, dataclasses.replace(l, **f)) for (m, l), f in zip(out, flags)]


def mode_of(layer: cm.ConvLayer, core: cm.CoreConfig) -> str:
    geo = cm.geometry(layer, core)
    if geo.depthwise:
        return "depthwise-pixels" if geo.group_pixels > 1 else "depthwise-tiles"
    return "weight-streaming" if geo.ws else "line-buffer"


@cocotb.test()
async def every_mode(dut):
    """Each mode of the core, bit-exact and MAC_ACTIVE exact, with an ideal stream and then
    with random input gaps and output stalls (the stall counters move)."""
    tb = Bench(dut)
    await tb.start()
    rng = random.Random(SEED + 5)
    nrng = np.random.default_rng(SEED + 5)
    seen = set()
    for i, (mode, layer) in enumerate(mode_layers(tb.core, rng)):
        if mode not in ("fc", "grouped"):
            assert mode_of(layer, tb.core) == mode, (mode, layer)
        seen.add(mode_of(layer, tb.core))
        tb.backpressure(rng, 0, 0)
        await tb.run_layer(layer, nrng)
        tb.backpressure(rng, p_in=0.3, p_out=0.4)
        cnt, geo = await tb.run_layer(layer, nrng)
        assert cnt["IN_STALL"] > 0, (mode, cnt)
        if geo.out_beats >= 16:
            assert cnt["OUT_STALL"] > 0, (mode, cnt)
    tb.backpressure(rng, 0, 0)
    assert {"line-buffer", "weight-streaming"} <= seen


@cocotb.test()
async def stem_im2col(dut):
    """A Cin = 3 stem (7x7 stride 2) and a wide depthwise layer run as the driver plans them
    (ohq_pynq/hw/tiling.py: im2col, the depthwise channel split): every run bit-exact on the
    core, the assembled output equal to the reference of the original layer."""
    tb = Bench(dut)
    await tb.start()
    core = tb.core
    nrng = np.random.default_rng(SEED + 6)
    stem = cm.ConvLayer(cin=3, cout=core.pe + 1, h=11, w=9, kernel=7, stride=2, pads=(3, 3, 3, 3),
                        in_signed=False, out_bits=core.bits, relu=True)
    todo = [(stem, "im2col")]
    # The smallest depthwise layer (channels one short of a word multiple) the driver splits.
    for hw, m in itertools.product((8, 10, 12), range(3, 13)):
        c = m * core.ch - 1
        wide = cm.ConvLayer(cin=c, cout=c, h=hw, w=hw, kernel=3, pads=(1, 1, 1, 1), groups=c,
                            out_bits=core.bits, in_signed=True)
        if cm.depthwise_mode(wide, core) and tiling.plan_layer(wide, core).lowering == "dwsplit":
            todo.append((wide, "dwsplit"))
            break
    assert len(todo) == 2 or core.pe > core.ch
    for layer, lowering in todo:
        plan = tiling.plan_layer(layer, core)
        assert plan.lowering == lowering, (layer, plan.lowering)
        x, w, bias, mult, shift = random_tensors(layer, core, nrng)
        want = cm.conv_reference(x, w, bias, mult, shift, layer, core.bits)
        xp, wl = tiling.prepad_input(plan, x), tiling.lower_weights(plan, w)
        y = np.zeros_like(want)
        for t in plan.tiles:
            await tb.run_layer(t.layer, nrng, timeout_us=20_000,
                               tensors=tiling.tile_inputs(plan, t, xp, wl, bias, mult, shift))
            y[:, t.ox0:t.ox1, t.cout0:t.cout1] = tb.last_output
        assert np.array_equal(y, want), layer


@cocotb.test()
async def counters_and_interrupts(dut):
    """Counters cleared at start and frozen at done; ap_done clear-on-read; done interrupt."""
    tb = Bench(dut)
    await tb.start()
    nrng = np.random.default_rng(SEED + 3)
    await tb.write("GIE", 1)
    await tb.write("IER", rm.ISR_DONE)
    layer = cm.ConvLayer(cin=tb.core.ch, cout=tb.core.pe, h=6, w=5, kernel=3, pads=(1, 1, 1, 1))
    first, geo = await tb.run_layer(layer, nrng)
    assert first["CYCLES"] >= geo.mac_steps and first["IN_STALL"] >= 0
    assert int(dut.interrupt.value) == 1
    assert await tb.read("ISR") == rm.ISR_DONE
    await tb.write("ISR", rm.ISR_DONE)
    assert int(dut.interrupt.value) == 0
    # ap_done was consumed by run_layer's poll: cleared on read.
    assert (await tb.read("CTRL")) == rm.CTRL_AP_IDLE
    await ClockCycles(dut.ap_clk, 50)
    assert await tb.counters() == first, "counters must be frozen after done"
    # A smaller second layer: counters restart from zero.
    small = cm.ConvLayer(cin=1, cout=1, h=1, w=1, kernel=1, out_bits=4)
    second, geo2 = await tb.run_layer(small, nrng)
    assert second["MAC_ACTIVE"] == geo2.mac_steps == 1
    assert second["CYCLES"] < first["CYCLES"]


@cocotb.test()
async def reset_mid_layer(dut):
    """Reset while a layer streams; the core is idle afterwards and the next layer is exact."""
    tb = Bench(dut)
    await tb.start()
    nrng = np.random.default_rng(SEED + 4)
    layer = cm.ConvLayer(cin=2 * tb.core.ch, cout=tb.core.pe, h=8, w=8, kernel=3,
                         pads=(1, 1, 1, 1))
    x, w, bias, mult, shift = random_tensors(layer, tb.core, nrng)
    for name, value in layer.registers().items():
        await tb.write(name, value)
    await tb.write("CTRL", rm.CTRL_AP_START)
    await tb.src.send(AxiStreamFrame(cm.pack_input(x, w, bias, mult, shift, layer, tb.core)))
    for _ in range(300):
        await RisingEdge(dut.ap_clk)
    assert not (await tb.read("CTRL")) & rm.CTRL_AP_IDLE, "layer should still be running"
    await tb.reset()
    await ClockCycles(dut.ap_clk, 5)
    assert await tb.read("CTRL") == rm.CTRL_AP_IDLE
    assert await tb.read("CIN") == 0, "reset clears the configuration"
    assert tb.sink.empty()
    await tb.run_layer(layer, nrng)
    await tb.run_layer(cm.ConvLayer(cin=3, cout=5, h=4, w=4, kernel=3, stride=2, pads=(1, 1, 0, 0)), nrng)
