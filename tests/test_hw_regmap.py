"""The register map is consistent, the committed Verilog include is generated from it, and the
RTL read mux covers every register."""
from __future__ import annotations

import re
from pathlib import Path

from ohq_pynq.hw import regmap as rm

RTL = Path(__file__).resolve().parents[1] / "vivado" / "rtl"


def test_committed_include_matches_generated():
    assert (RTL / "ohq_regmap.vh").read_text(encoding="utf-8") == rm.generate_vh(), \
        "run `python -m ohq_pynq.hw.regmap --write`"


def test_offsets_unique_aligned_in_window():
    offsets = [r.offset for r in rm.REGISTERS]
    assert len(set(offsets)) == len(offsets)
    assert len({r.name for r in rm.REGISTERS}) == len(rm.REGISTERS)
    for r in rm.REGISTERS:
        assert r.offset % 4 == 0 and r.offset < (1 << rm.ADDR_BITS), r
        assert r.access in ("rw", "ro", "cor", "tow"), r
        assert 1 <= r.bits <= 32 and 0 <= r.reset < (1 << 32), r


def test_groups_of_registers():
    for name in rm.CONFIG_REGISTERS:
        assert rm.BY_NAME[name].access == "rw"
    for name in rm.PARAM_REGISTERS:
        assert rm.BY_NAME[name].access == "ro"
    for c in rm.COUNTERS:
        lo, hi = rm.BY_NAME[c + "_LO"], rm.BY_NAME[c + "_HI"]
        assert hi.offset == lo.offset + 4 and lo.offset % 8 == 0
    assert rm.offset("CTRL") == 0 and rm.offset("GIE") == 4
    assert rm.offset("IER") == 8 and rm.offset("ISR") == 0xC


def test_rtl_read_mux_and_write_decode_cover_the_map():
    top = (RTL / "ohq_conv.v").read_text(encoding="utf-8")
    read_mux = top[top.index("case (s_axi_control_araddr"):top.index("endcase")]
    read_names = set(re.findall(r"OHQ_REG_(\w+):", read_mux))
    assert read_names == {r.name for r in rm.REGISTERS}
    write_dec = top[top.index("case (wr_addr"):]
    write_dec = write_dec[:write_dec.index("endcase")]
    written = set(re.findall(r"OHQ_REG_(\w+):", write_dec))
    assert written == {r.name for r in rm.REGISTERS if r.access in ("rw", "tow")}


def test_generator_cli_writes_file(tmp_path):
    out = tmp_path / "x.vh"
    assert rm.main(["--out", str(out)]) == 0
    assert out.read_text() == rm.generate_vh()
