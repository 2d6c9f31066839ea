"""Simulator backend: bit-exact with the core model (hence the RTL) and sane measurements."""
from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from ohq_pynq.errors import ConfigError, DataError
from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw.accelerator import Requant
from ohq_pynq.hw.boards import BOARDS_JSON, Board, get_board
from ohq_pynq.hw.sim import SimAccelerator, accumulate
from ohq_pynq.hw.tiling import plan_layer, run_plan

TB = Path(__file__).resolve().parents[1] / "vivado" / "tb"


def _bench():
    """The RTL benches' layer generator and core configurations (vivado/tb)."""
    pytest.importorskip("cocotb")
    pytest.importorskip("cocotbext.axi")
    sys.path.insert(0, str(TB))
    try:
        import conv_tb
        import test_conv_core
    finally:
        sys.path.remove(str(TB))
    return conv_tb, test_conv_core


def _board_for(core: cm.CoreConfig) -> Board:
    return Board(name="test", part="-", fclk_hz=100e6, bus_bytes=core.bus_bytes,
                 cores={core.bits: core}, rails=())


def _sim_run(sim, layer, core, x, w, bias, mult, shift):
    rq = Requant(bias=bias, mult=mult, shift=shift, relu=layer.relu, out_bits=layer.out_bits,
                 out_signed=layer.out_signed, in_signed=layer.in_signed)
    return sim.run_layer(layer, core.bits, x, w, rq)


def test_sim_equals_core_model_on_the_rtl_benches_random_layers():
    """The cocotb benches check RTL == core_model on these layers; here sim == core_model on the
    same generator, seed sequence and core configurations, so sim == RTL."""
    conv_tb, tcc = _bench()
    n = 0
    for name, params in sorted(tcc.CONFIGS.items()):
        mem = {k.lower(): v for k, v in tcc.SMALL_MEMORIES.items()}
        core = cm.CoreConfig(bits=params["BITS"], pe=params["PE"], simd=params["SIMD"],
                             bus_bytes=params["BUS_BYTES"], **mem)
        sim = SimAccelerator(_board_for(core))
        rng = random.Random(conv_tb.SEED + 1)
        nrng = np.random.default_rng(conv_tb.SEED + 1)
        for case in itertools.islice(itertools.cycle(conv_tb.CASES), 3 * len(conv_tb.CASES)):
            layer = conv_tb.random_layer(rng, core, case)
            x, w, bias, mult, shift = conv_tb.random_tensors(layer, core, nrng)
            want = cm.conv_reference(x, w, bias, mult, shift, layer, core.bits)
            y, m = _sim_run(sim, layer, core, x, w, bias, mult, shift)
            assert np.array_equal(y, want), (name, case, layer)
            # The runs the core does (a strided 1x1 or a narrow-input KxK is rewritten first).
            geos = [cm.geometry(t.layer, core) for t in plan_layer(layer, core).tiles]
            assert m.mac_cycles == sum(g.mac_steps for g in geos) and m.cycles >= m.mac_cycles
            assert m.bytes_in == sum(g.in_beats for g in geos) * core.bus_bytes
            assert m.bytes_out == sum(g.out_beats for g in geos) * core.bus_bytes
            n += 1
    assert n >= 90


def test_accumulate_equals_core_model_including_int32_wrap(rng):
    layer = cm.ConvLayer(cin=40, cout=6, h=5, w=4, kernel=3, pads=(1, 1, 1, 1))
    x = rng.integers(0, 256, size=(5, 4, 40))
    w = np.full((6, 40, 3, 3), 127)
    x[:] = 255
    got = accumulate(x, w, layer)
    assert np.array_equal(got, cm.conv_accumulate(x, w, layer))
    big = cm.ConvLayer(cin=4096, cout=2, h=1, w=1, kernel=7, pads=(3, 3, 3, 3))
    # 49 * 4096 * 255 * 127 > 2^31: the sum wraps exactly like the int32 accumulator.
    xb = np.full((1, 1, 4096), 255)
    wb = np.full((2, 4096, 7, 7), 127)
    assert np.array_equal(accumulate(xb, wb, big), cm.conv_accumulate(xb, wb, big))


@pytest.mark.parametrize("layer", [
    cm.ConvLayer(cin=20, cout=40, h=9, w=30, kernel=3, pads=(1, 1, 1, 1), out_bits=4),  # cout + cols
    cm.ConvLayer(cin=24, cout=24, h=7, w=33, kernel=5, stride=2, pads=(2, 2, 2, 2), groups=24),
    cm.ConvLayer(cin=12, cout=36, h=6, w=6, kernel=3, pads=(1, 1, 1, 1), groups=3, relu=True),
    cm.ConvLayer(cin=8, cout=8, h=5, w=5, kernel=1, pads=(2, 0, 1, 3)),      # pad >= kernel
    cm.ConvLayer(cin=100, cout=100, h=6, w=20, kernel=3, pads=(1, 1, 1, 1), groups=100),  # dw split
    cm.ConvLayer(cin=6, cout=300, h=3, w=3, kernel=1, groups=3),             # per-group cout split
])
def test_tiled_runs_equal_the_whole_layer(layer, rng):
    """Layers over the core's memories are split into runs whose outputs assemble exactly."""
    core = cm.CoreConfig(bits=8, pe=4, simd=4, bus_bytes=8, max_row_words=32, max_wdepth=64,
                         max_tiles=4)
    plan = plan_layer(layer, core)
    x = rng.integers(-128, 128, size=(layer.h, layer.w, layer.cin))
    w = rng.integers(-127, 128, size=(layer.cout, layer.cin_g, layer.kernel, layer.kernel))
    bias = rng.integers(-5000, 5000, size=layer.cout)
    mult = rng.integers(1, 2000, size=layer.cout)
    shift = rng.integers(10, 20, size=layer.cout)
    want = cm.conv_reference(x, w, bias, mult, shift, layer, 8)

    def run_tile(tile, xt, wt, bt, mt, st):
        cm.check_layer(tile.layer, core)
        return cm.conv_reference(xt, wt, bt, mt, st, tile.layer, 8), None

    got, _ = run_plan(plan, x, w, bias, mult, shift, run_tile)
    assert plan.runs > 1 or any(plan.prepad)
    assert np.array_equal(got, want)
    sim = SimAccelerator(_board_for(core))
    y, m = sim.run_layer(layer, 8, x, w, Requant(bias, mult, shift, relu=layer.relu,
                                                  out_bits=layer.out_bits))
    assert np.array_equal(y, want) and m.runs == plan.runs


def test_input_channels_too_deep_for_one_tile_is_refused_on_a_spatial_map():
    core = cm.CoreConfig(bits=8, pe=4, simd=4, max_wdepth=16)
    with pytest.raises(ConfigError, match="cannot run on the 8-bit core.*only on a 1x1 output map"):
        plan_layer(cm.ConvLayer(cin=64, cout=4, h=3, w=3, kernel=3, pads=(1, 1, 1, 1)), core)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("layer", [
    cm.ConvLayer(cin=300, cout=10, h=1, w=1, relu=True),                 # FC deeper than a tile
    cm.ConvLayer(cin=40, cout=6, h=3, w=3, kernel=3, out_bits=4),         # window = whole input
    cm.ConvLayer(cin=40, cout=6, h=2, w=2, kernel=3, pads=(1, 1, 0, 0)),  # ... with padding
])
def test_input_channel_split_reads_partial_sums_out_exactly(layer, signed, bits, rng):
    """A 1x1-output layer whose one output tile exceeds the weight memory runs as input-channel
    chunks: digit runs read each chunk's int32 partial sum out of the int8 outputs, the last
    chunk requantizes with the partial sums in its bias. Exact at the extreme inputs too (the
    largest |partial sum| the digit shifts are sized for), and the simulator counts every run."""
    core = cm.CoreConfig(bits=bits, pe=4, simd=4, max_wdepth=16)
    layer = cm.ConvLayer(**{**layer.__dict__, "in_signed": signed})
    plan = plan_layer(layer, core)
    assert any(t.digit_shift == 0 for t in plan.tiles) and plan.tiles[-1].digit_shift == -1
    lo, hi = cm.act_range(bits, signed)
    q = cm.weight_range(bits)[1]
    shape_w = (layer.cout, layer.cin, layer.kernel, layer.kernel)
    cases = [(np.full((layer.h, layer.w, layer.cin), lo if signed else hi), np.full(shape_w, -q)),
             (rng.integers(lo, hi + 1, size=(layer.h, layer.w, layer.cin)), rng.integers(-q, q + 1, shape_w))]
    for x, w in cases:
        bias = rng.integers(-5000, 5000, size=layer.cout)
        mult = rng.integers(1, 2000, size=layer.cout)
        shift = rng.integers(10, 20, size=layer.cout)
        want = cm.conv_reference(x, w, bias, mult, shift, layer, bits)

        def run_tile(tile, xt, wt, bt, mt, st):
            cm.check_layer(tile.layer, core)
            return cm.conv_reference(xt, wt, bt, mt, st, tile.layer, bits), None

        got, _ = run_plan(plan, x, w, bias, mult, shift, run_tile)
        assert np.array_equal(got, want)
        sim = SimAccelerator(_board_for(core))
        y, m = sim.run_layer(layer, bits, x, w, Requant(bias, mult, shift, relu=layer.relu,
                                                        out_bits=layer.out_bits, in_signed=signed))
        assert np.array_equal(y, want) and m.runs == plan.runs


def test_digit_shifts_cover_the_bound():
    """Each digit fits int8 (round half up), each residual the next digit, the last shift is 0."""
    from ohq_pynq.hw.tiling import shifts_for

    assert shifts_for(127) == [0]
    assert shifts_for(128) == [1, 0]
    assert shifts_for(9216 * 255 * 127) == [22, 15, 8, 1, 0]
    for bound in (1, 127, 128, 5000, 2**20 + 3):
        s = shifts_for(bound)
        assert bound <= 127 << s[0] and s[-1] == 0
        assert all(a - b <= 7 for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("board", ["pynq-z2", "zcu104"])
def test_resnet18_and_mobilenet_layouts_fit_every_board(board):
    """Every layer of the 224 layouts plans onto the cores (tiling where needed)."""
    from ohq_pynq import zoo
    from ohq_pynq.graph import load_network

    sim = SimAccelerator(board)
    for model in (zoo.resnet18(batchnorm="folded"), zoo.mobilenet_v3_small(batchnorm="folded")):
        net = load_network(model)
        for layer in net.layers:
            m4, m8 = sim.measure(layer, 4), sim.measure(layer, 8)
            assert m4.cycles > 0 and m8.cycles > 0
            # Depthwise streams one param record per channel of its words (cpp * ch): a layer
            # narrower than the int4 word gets up to ch more 8-byte records than at int8.
            assert m4.bytes_in <= m8.bytes_in + 8 * sim.board.core(4).ch


def test_int4_core_is_about_twice_as_fast_on_lane_filling_layers():
    sim = SimAccelerator("zcu104")
    layer = cm.ConvLayer(cin=256, cout=256, h=14, w=14, kernel=3, pads=(1, 1, 1, 1))
    m4, m8 = sim.measure(layer, 4), sim.measure(layer, 8)
    assert 1.8 < m8.cycles / m4.cycles < 2.2
    assert m4.seconds == pytest.approx(m4.cycles / sim.board.fclk_hz)


def test_energy_is_none_without_power_rails_and_modelled_otherwise(rng):
    layer = cm.ConvLayer(cin=8, cout=8, h=6, w=6, kernel=3, pads=(1, 1, 1, 1))
    x = rng.integers(-8, 8, size=(6, 6, 8))
    w = rng.integers(-7, 8, size=(8, 8, 3, 3))
    rq = Requant.identity(8, shift=4, out_bits=4)
    _, m = SimAccelerator("pynq-z2").run_layer(layer, 4, x, w, rq)
    assert m.joules is None and SimAccelerator("pynq-z2").read_power() is None
    assert not SimAccelerator("pynq-z2").describe().has_energy
    _, m2 = SimAccelerator("pynq-z2", estimate_energy=True).run_layer(layer, 4, x, w, rq)
    _, m3 = SimAccelerator("kv260").run_layer(layer, 4, x, w, rq)
    assert m2.joules > 0 and m3.joules > 0


def test_bad_inputs_are_one_sentence_errors(rng):
    sim = SimAccelerator()
    layer = cm.ConvLayer(cin=4, cout=4, h=3, w=3)
    ok_w = np.zeros((4, 4, 1, 1), dtype=np.int64)
    with pytest.raises(DataError, match="shape"):
        sim.run_layer(layer, 8, np.zeros((3, 3, 5), np.int64), ok_w, Requant.identity(4))
    with pytest.raises(DataError, match="weights values"):
        sim.run_layer(layer, 4, np.zeros((3, 3, 4), np.int64), ok_w + 8, Requant.identity(4))
    with pytest.raises(ConfigError, match="no 6-bit core"):
        sim.run_layer(layer, 6, np.zeros((3, 3, 4), np.int64), ok_w, Requant.identity(4))


def test_board_override_from_boards_json(tmp_path):
    table = tmp_path / "boards.json"
    table.write_text('{"boards": {"ZCU104": {"fclk_mhz": 250, "cores": {"8": {"pe": 8, "simd": 32},'
                     ' "4": {"pe": 8, "simd": 16}}}}}')
    b = get_board("zcu104", path=table)
    assert b.fclk_hz == 250e6 and b.core(8).simd == 32 and b.core(4).pe == 8
    assert b.source == str(table)
    # Without a path: the boards.json the package ships, whatever the case of the name; the
    # table given above does not leak into it.
    default = get_board("ZCU104")
    assert default == get_board("zcu104") and default.source == str(BOARDS_JSON) != str(table)
    with pytest.raises(ConfigError, match="unknown board"):
        get_board("de10-nano")
    # The layout vivado/tools/board_tcl.py reads.
    table.write_text('{"boards": {"pynq-z2": {"part": "xc7z020clg400-1", "board_part": "", "ps": "ps7",'
                     ' "fclk_hz": 100000000, "bus_bytes": 8, "cores": {'
                     '"4": {"pe": 4, "simd": 8, "max_row_words": 1024, "max_wdepth": 2048, "max_tiles": 256},'
                     '"8": {"pe": 8, "simd": 8, "max_row_words": 1024, "max_wdepth": 2048, "max_tiles": 256}}}}}')
    z2 = get_board("Pynq-Z2", path=table)
    assert z2.core(4).pe == 4 and z2.core(8).max_wdepth == 2048 and z2.core(4).bus_bytes == 8
    assert z2.rails == () and z2.energy is not None


# -- what a board adds around the core (hw/overheads.py) ------------------------------------
def _layer_and_tensors(rng, cin=16, cout=16, hw=8):
    layer = cm.ConvLayer(cin=cin, cout=cout, h=hw, w=hw, kernel=3, pads=(1, 1, 1, 1))
    x = rng.integers(-100, 100, size=(hw, hw, cin))
    w = rng.integers(-100, 100, size=(cout, cin, 3, 3))
    return layer, x, w, Requant.identity(cout, shift=8)


@pytest.mark.parametrize("board", ["pynq-z2", "zcu104"])
def test_sim_models_what_the_board_adds_around_the_core(rng, board):
    from ohq_pynq.hw import cycle_model, overheads as oh

    layer, x, w, rq = _layer_and_tensors(rng)
    sim = SimAccelerator(board, arm_time="off")
    bare = SimAccelerator(board, overheads=False)
    y, m = sim.run_layer(layer, 8, x, w, rq)
    yb, mb = bare.run_layer(layer, 8, x, w, rq)
    assert np.array_equal(y, yb)                                     # same arithmetic
    b = get_board(board)
    cpu = oh.cpu_model(board)
    # The bare core is the cycle model; on the board the counter also sees the DMA's start.
    assert mb.cycles == cycle_model.cycles(layer, b.core(8)) and mb.overheads is None
    stall = oh.start_stall_cycles(cpu, b.fclk_hz)
    assert stall == int(np.ceil(cpu.dma_transfer_s * b.fclk_hz)) + cpu.ddr_latency_cycles + 6
    assert m.cycles == mb.cycles + stall and m.in_stall_cycles == stall
    assert m.seconds == pytest.approx(m.cycles / b.fclk_hz)
    # Outside the counter: 16 writes (15 configuration + ap_start) and 13 reads, the S2MM set-up,
    # a flush and an invalidate of the buffers, half a poll period + the read that sees done.
    o = m.overheads
    assert set(o) == set(oh.CATEGORIES) and o["pack"] == 0.0
    assert o["registers"] == pytest.approx(16 * cpu.mmio_write_s + 13 * cpu.mmio_read_s)
    assert o["dma_setup"] == pytest.approx(cpu.dma_transfer_s)
    lines = -(-m.bytes_in // 64) * 64 + -(-m.bytes_out // 64) * 64
    assert o["cache"] == pytest.approx(2 * cpu.cache_call_s + lines / cpu.cache_bytes_per_s)
    assert o["poll"] == pytest.approx(0.5 * (3 * cpu.mmio_read_s + cpu.sleep0_s) + cpu.mmio_read_s)
    assert m.total_seconds == pytest.approx(m.seconds + sum(o.values()))
    # Deterministic without the measured ARM time; the model is part of the hardware id.
    assert sim.run_layer(layer, 8, x, w, rq)[1].overheads == o and sim.describe().deterministic
    info = sim.describe()
    assert info.overhead_model["mmio_write_s"] == cpu.mmio_write_s
    assert info.hardware_id != bare.describe().hardware_id


def test_overheads_scale_with_the_board_and_the_bytes(rng):
    layer, x, w, rq = _layer_and_tensors(rng)
    big, xb, wb, rqb = _layer_and_tensors(rng, cin=64, cout=64, hw=16)
    z2, zu = SimAccelerator("pynq-z2", arm_time="off"), SimAccelerator("zcu104", arm_time="off")
    m_z2, m_zu = z2.run_layer(layer, 8, x, w, rq)[1], zu.run_layer(layer, 8, x, w, rq)[1]
    assert m_z2.overhead_seconds > 2 * m_zu.overhead_seconds          # Cortex-A9 vs A53
    m_big = z2.run_layer(big, 8, xb, wb, rqb)[1]
    assert m_big.overheads["cache"] > m_z2.overheads["cache"]         # more bytes to flush
    assert m_big.overheads["registers"] / m_big.runs == pytest.approx(
        m_z2.overheads["registers"] / m_z2.runs)                      # the same per run
    # int4 moves fewer bytes: less cache maintenance for the same layer.
    m4 = z2.run_layer(big, 4, np.clip(xb, -7, 7), np.clip(wb, -7, 7), rqb)[1]
    assert m4.overheads["cache"] < m_big.overheads["cache"]


def test_measured_arm_time_is_the_drivers_numpy_work_scaled_to_the_board(rng):
    layer, x, w, rq = _layer_and_tensors(rng)
    one = SimAccelerator("pynq-z2", arm_time="measured", arm_scale=1.0)
    assert not one.describe().deterministic and one.describe().arm_scale == 1.0
    m1 = one.run_layer(layer, 8, x, w, rq)[1]
    # pack + copy + unpack of a small layer: some microseconds of numpy on this CPU, at most
    # the whole call's wall time.
    assert 1e-6 < m1.overheads["pack"] < m1.wall_seconds
    assert m1.total_seconds == pytest.approx(m1.seconds + sum(m1.overheads.values()))
    z2 = SimAccelerator("pynq-z2", arm_time="measured")
    assert z2.arm_scale == 12.0 and SimAccelerator("zcu104", arm_time="measured").arm_scale == 6.0
    assert SimAccelerator("pynq-z2").arm_scale == 0.0 and SimAccelerator("pynq-z2").describe().deterministic
    with pytest.raises(ConfigError, match="arm_time"):
        SimAccelerator("pynq-z2", arm_time="sometimes")
