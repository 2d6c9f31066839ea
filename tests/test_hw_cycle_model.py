"""Cycle model of the conv core: structure, utilisation, and agreement with the RTL table."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw import cycle_model
from ohq_pynq.hw.tiling import plan_cycles

REFERENCE = Path(__file__).resolve().parents[1] / "vivado" / "cycles_reference.json"
CORE8 = cm.CoreConfig(bits=8, pe=8, simd=8, bus_bytes=8)
CORE4 = cm.CoreConfig(bits=4, pe=8, simd=8, bus_bytes=8)


def test_breakdown_adds_up_and_counts_every_mac_step():
    layer = cm.ConvLayer(cin=32, cout=32, h=16, w=16, kernel=3, pads=(1, 1, 1, 1))
    b = cycle_model.breakdown(layer, CORE8)
    geo = cm.geometry(layer, CORE8)
    assert b.compute == geo.mac_steps
    assert b.cycles == b.setup + b.load + b.compute + b.stall + b.drain
    assert b.cycles > geo.mac_steps


@pytest.mark.parametrize("core", [CORE8, CORE4])
def test_lane_filling_3x3_layers_reach_90_percent_of_the_roof(core):
    layer = cm.ConvLayer(cin=4 * core.ch, cout=4 * core.pe, h=28, w=28, kernel=3, pads=(1, 1, 1, 1))
    assert cycle_model.breakdown(layer, core).utilisation >= 0.9


def test_weight_load_and_stream_limits_show_up():
    # 1x1 on a 1x1 map: the weight stream bounds it (8 weights a cycle), not the MAC steps.
    fc = cm.ConvLayer(cin=512, cout=512, h=1, w=1)
    b = cycle_model.breakdown(fc, CORE8)
    assert b.cycles > 5 * b.compute and b.cycles >= 512 * 512 // 8
    # A SIMD word wider than the bus streams at bus rate: activation rows cost 2 cycles a word.
    wide = cm.CoreConfig(bits=8, pe=2, simd=16, bus_bytes=8)
    layer = cm.ConvLayer(cin=16, cout=2, h=32, w=32, kernel=1)
    assert cycle_model.cycles(layer, wide) >= 2 * 32 * 32
    # A slower DMA only makes it slower.
    assert cycle_model.cycles(layer, CORE8, stream_bytes=4) > cycle_model.cycles(layer, CORE8)


def test_int4_halves_compute_and_stride_two_quarters_it():
    layer = cm.ConvLayer(cin=64, cout=64, h=28, w=28, kernel=3, pads=(1, 1, 1, 1))
    c8, c4 = cycle_model.cycles(layer, CORE8), cycle_model.cycles(layer, CORE4)
    assert 1.8 < c8 / c4 < 2.1
    s2 = cm.ConvLayer(cin=64, cout=64, h=28, w=28, kernel=3, stride=2, pads=(1, 1, 1, 1))
    assert 3.5 < c8 / cycle_model.cycles(s2, CORE8) < 4.1


def test_model_equals_the_rtl_cycle_table():
    """Every row of the RTL cycle table (vivado/cycles_reference.json: each layer run as the
    driver plans it) equals the model to the cycle; bench/cycle_model.py reports the same."""
    assert REFERENCE.is_file(), (f"the committed RTL cycle table {REFERENCE} is missing: "
                                 f"regenerate it with `make -C vivado cycles-reference`")
    rows = cycle_model.load_reference_rows(REFERENCE)
    assert len(rows) >= 30
    for row in rows:
        layer, core = cycle_model.row_layer_core(row)
        assert plan_cycles(layer, core) == row["rtl_cycles"], row["name"]


def test_model_matches_rtl_spot_checks_to_the_cycle():
    """112 random layers on 7 core configurations (int4/int8, PE 2..16, SIMD 4..16, bus 8/16;
    line-buffer, weight-streaming and depthwise modes, grouped, strided, padded, FC, 4/8-bit
    outputs) simulated on the RTL with Icarus, plus regression rows (stream-bound runs whose last
    input rows no output reads, e.g. 1x1 stride 2 on an even map, and rows the line buffer blocks
    until the last issue): the model equals the CYCLES counter on every one."""
    path = Path(__file__).with_name("data") / "rtl_cycles_spotcheck.json"
    rows = cycle_model.load_reference_rows(path)
    assert len(rows) >= 100
    modes = set()
    for row in rows:
        layer, core = cycle_model.row_layer_core(row)
        geo = cm.geometry(layer, core)
        modes.add("dw" if geo.depthwise else "ws" if geo.ws else "lb")
        assert row["mac_active_cycles"] == geo.mac_steps, row
        assert cycle_model.cycles(layer, core) == row["rtl_cycles"], row
    assert modes == {"dw", "ws", "lb"}


def test_depthwise_int4_halves_the_lane_steps():
    """Depthwise mode spreads channels over the lanes: an int4 word holds twice the channels,
    so the MAC steps halve (and the 8-bit core's lanes are filled too)."""
    layer = cm.ConvLayer(cin=64, cout=64, h=28, w=28, kernel=3, pads=(1, 1, 1, 1), groups=64)
    g8, g4 = cm.geometry(layer, CORE8), cm.geometry(layer, CORE4)
    assert g8.depthwise and g4.depthwise
    assert g8.mac_steps == 28 * 28 * 9 and g4.mac_steps * 2 == g8.mac_steps
    # Outputs at the core's width (as OQA profiles): 8-bit outputs from the int4 core would
    # make the output stream the limit.
    c8 = cycle_model.cycles(layer, CORE8)
    c4 = cycle_model.cycles(replace(layer, out_bits=4), CORE4)
    assert c4 < 0.55 * c8 and cycle_model.breakdown(layer, CORE8).utilisation > 0.8


def test_weight_streaming_overlaps_the_weight_load():
    """A small map streams activations first and computes while the weights arrive."""
    small = cm.ConvLayer(cin=128, cout=128, h=6, w=6, kernel=3, pads=(1, 1, 1, 1))
    assert cm.geometry(small, CORE8).ws
    b = cycle_model.breakdown(small, CORE8)
    assert b.utilisation > 0.9
    weights = cm.geometry(small, CORE8).weight_words
    assert b.cycles < b.compute + weights / 4
