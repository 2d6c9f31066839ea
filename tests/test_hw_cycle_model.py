"""Cycle model of the conv core: structure, utilisation, and agreement with the RTL table."""
from __future__ import annotations

from pathlib import Path

import pytest

from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw import cycle_model

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
    # 1x1 with a tiny map: loading weights dominates.
    fc = cm.ConvLayer(cin=512, cout=512, h=1, w=1)
    b = cycle_model.breakdown(fc, CORE8)
    assert b.load > 5 * b.compute
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


def test_model_within_3_percent_of_rtl_cycle_table():
    """A few rows of the RTL cycle table (vivado/cycles_reference.json); the benchmark
    bench/cycle_model.py checks every row."""
    assert REFERENCE.is_file(), (f"the committed RTL cycle table {REFERENCE} is missing: "
                                 f"regenerate it with `make -C vivado cycles-reference`")
    rows = cycle_model.load_reference_rows(REFERENCE)
    assert rows, f"{REFERENCE} has no rows with rtl_cycles"
    step = max(1, len(rows) // 6)
    for row in rows[::step]:
        layer, core = cycle_model.row_layer_core(row)
        model = cycle_model.cycles(layer, core)
        assert abs(model - row["rtl_cycles"]) <= 0.03 * row["rtl_cycles"], (row, model)


def test_model_matches_rtl_spot_checks_to_the_cycle():
    """38 layers on 7 core configurations (int4/int8, PE 2..16, SIMD 4..16, bus 8/16; depthwise,
    grouped, stride 2, 7x7, FC, input-, output- and compute-bound) simulated on the RTL with
    Icarus: the model is within 0.1 % (1 cycle) on every one."""
    from pathlib import Path
    path = Path(__file__).with_name("data") / "rtl_cycles_spotcheck.json"
    rows = cycle_model.load_reference_rows(path)
    assert len(rows) >= 30
    for row in rows:
        layer, core = cycle_model.row_layer_core(row)
        model = cycle_model.cycles(layer, core)
        assert abs(model - row["rtl_cycles"]) <= max(1, 0.001 * row["rtl_cycles"]), (row, model)
