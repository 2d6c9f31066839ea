"""The overlay's .hwh: the Tcl's design as data, written as Vivado writes it, read back the way
pynq reads it — checked against pynq's own parser where pynq is installed."""
from __future__ import annotations

import warnings

import pytest

from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw.boards import get_board
from ohq_pynq.hw.hwh import LITE_BASE, hwh_text, overlay_design, parse_hwh, ps_family, write_hwh

BOARDS = ["pynq-z2", "ultra96v2", "zcu104", "kv260"]


def _pynq_parser(ps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hp = pytest.importorskip("pynq.pl_server.hwh_parser")
    return hp._HWHZynq if ps == "zynq" else hp._HWHUltrascale


@pytest.mark.parametrize("board", BOARDS)
def test_parse_hwh_gives_the_ip_dict_pynq_gives(tmp_path, board):
    design = overlay_design(get_board(board))
    path = tmp_path / "ohq.hwh"
    write_hwh(design, path)
    mine = parse_hwh(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = _pynq_parser(design.ps)(str(path))
    assert mine.ip_dict == real.ip_dict
    assert mine.clock_dict == real.clock_dict and mine.ps_name == real.ps_name == "ps"


@pytest.mark.parametrize("board", BOARDS)
def test_the_design_round_trips_through_the_hwh(board):
    b = get_board(board)
    design = overlay_design(b)
    h = parse_hwh(hwh_text(design))
    ps = ps_family(b.part)
    assert h.ps == ps and {n for n, d in h.ip_dict.items() if "phys_addr" in d} == \
        {"ohq_int4", "ohq_int8", "dma_int4", "dma_int8"}
    for bits in (4, 8):
        core = h.ip_dict[f"ohq_int{bits}"]
        assert core["phys_addr"] == LITE_BASE[ps] + (0 if bits == 4 else 0x10000)
        p = core["parameters"]
        assert (int(p["BITS"]), int(p["PE"]), int(p["SIMD"]), int(p["BUS_BYTES"])) == \
            (bits, b.cores[bits].pe, b.cores[bits].simd, b.bus_bytes)
        dma = h.ip_dict[f"dma_int{bits}"]["parameters"]
        assert dma["c_sg_length_width"] == "26" and dma["c_include_sg"] == "0"
        assert int(dma["c_m_axi_mm2s_data_width"]) == 8 * b.bus_bytes
        assert dma["c_addr_width"] == ("32" if ps == "zynq" else "64")
    # the AXI4-Stream buses the fake wires its devices by
    assert sorted(h.streams["dma_int8_M_AXIS_MM2S"]) == [("dma_int8", "M_AXIS_MM2S", "INITIATOR"),
                                                         ("ohq_int8", "s_axis", "TARGET")]
    assert sorted(h.streams["ohq_int4_m_axis"]) == [("dma_int4", "S_AXIS_S2MM", "TARGET"),
                                                    ("ohq_int4", "m_axis", "INITIATOR")]
    mhz = h.parameters["ps"].get("PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ") or \
        h.parameters["ps"]["PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ"]
    assert float(mhz) == pytest.approx(b.fclk_hz / 1e6)


def test_design_variants_for_tests():
    b = get_board("zcu104")
    d = overlay_design(b, cores={8: cm.CoreConfig(bits=8, pe=4, simd=8, bus_bytes=16)}, length_width=14,
                       core_vlnv="ohq-pynq:ohq:ohq_conv:2.0")
    assert set(d.cells) == {"ps", "ohq_int8", "dma_int8", "irq_concat"}
    assert d.cell("dma_int8").config["c_sg_length_width"] == "14"
    h = parse_hwh(hwh_text(d))
    assert h.ip_dict["ohq_int8"]["type"] == "ohq-pynq:ohq:ohq_conv:2.0"
    assert h.ip_dict["ohq_int8"]["parameters"]["PE"] == "4"


def test_not_an_hwh_is_a_value_error(tmp_path):
    bad = tmp_path / "x.hwh"
    bad.write_text("<hwh/>")
    with pytest.raises(ValueError, match="no processing system"):
        parse_hwh(bad)
    bad.write_text("not xml")
    with pytest.raises(ValueError, match="not a hardware hand-off"):
        parse_hwh(bad)
