"""The Vivado Tcl flow without Vivado: vivado/tcl/*.tcl run in tclsh (or yosys' Tcl 8.6) with stub
Vivado commands (tests/data/vivado_stub.tcl) that record what the scripts ask for.

The block design each board gets must be exactly ohq_pynq/hw/hwh.py's ``overlay_design`` (the
design the fake pynq's .hwh is generated from); the build copies the .hwh from the hand-off path,
stops on negative slack and on missing board files, and the IP states its reset association."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ohq_pynq.hw.boards import BOARDS_JSON, get_board
from ohq_pynq.hw.hwh import overlay_design

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "data" / "vivado_stub.tcl"
BUILD = ROOT / "vivado" / "tcl" / "build_overlay.tcl"
PACKAGE = ROOT / "vivado" / "tcl" / "package_ip.tcl"
BOARDS = ["pynq-z2", "ultra96v2", "zcu104", "kv260"]
TCLSH = shutil.which("tclsh") or shutil.which("tclsh8.6")
YOSYS = shutil.which("yosys")
pytestmark = pytest.mark.skipif(not (TCLSH or YOSYS), reason="needs tclsh (Debian tcl) or yosys")


def run_stub(script: Path, args: list[str], tmp_path: Path, **env):
    """Run ``script`` under the stub; (return code, stderr, [record fields...])."""
    log = tmp_path / "stub.log"
    environ = {**os.environ, "OHQ_STUB_LOG": str(log), "OHQ_BUILD": str(tmp_path / "build"), **env}
    if TCLSH:
        cmd = [TCLSH, str(STUB), str(script), *args]
    else:
        cmd = [YOSYS, "-q", "-c", str(STUB)]
        environ["OHQ_STUB_ARGV"] = " ".join([str(script), *args])
    proc = subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    records = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, proc.stderr + proc.stdout, records


def tcl_design(records):
    """What the Tcl built: cells, CONFIG per cell, addresses, stream links, interrupt order."""
    cells, config, addrs, streams, irqs = {}, {}, {}, [], {}
    for r in records:
        if r[0] == "cell":
            cells[r[1]] = r[2]
        elif r[0] == "prop" and r[2].startswith("CONFIG."):
            config.setdefault(r[1], {})[r[2][len("CONFIG."):]] = r[3]
        elif r[0] == "addr":
            addrs[r[1]] = (int(r[2], 16), r[3], r[4])
        elif r[0] == "intf":
            streams.append((r[1], r[2]))
        elif r[0] == "net" and r[2].startswith("irq_concat/In"):
            irqs[int(r[2][len("irq_concat/In"):])] = r[1]
    return cells, config, addrs, streams, [irqs[i] for i in sorted(irqs)]


@pytest.mark.parametrize("board", BOARDS)
def test_the_tcl_builds_exactly_the_design_the_fake_hwh_describes(tmp_path, board):
    code, out, records = run_stub(BUILD, [board, str(BOARDS_JSON)], tmp_path)
    assert code == 0, out
    cells, config, addrs, streams, irqs = tcl_design(records)
    want = overlay_design(get_board(board))
    assert set(cells) == set(want.cells)
    for name, cell in want.cells.items():
        assert cell.vlnv.startswith(cells[name]), name           # Vivado picks the IP version
        assert config.get(name, {}) == cell.config, name
        if cell.base is not None:
            assert addrs[f"{name}/{cell.segment}"] == (cell.base, "64K", "ps/Data"), name
    assert len(addrs) == sum(c.base is not None for c in want.cells.values())
    assert streams == want.streams and irqs == want.interrupts
    assert ["addr_auto"] in records                                  # the DMAs' view of DDR


@pytest.mark.parametrize("board", BOARDS)
def test_the_hwh_is_copied_from_the_hand_off_path_beside_the_bitstream(tmp_path, board):
    code, out, records = run_stub(BUILD, [board, str(BOARDS_JSON)], tmp_path)
    assert code == 0, out
    done = tmp_path / "build" / f"overlay_{board}"
    assert (done / "ohq.hwh").read_text().strip() == "hwh from the hand-off path"
    assert (done / "ohq.bit").read_text().strip() == "bit from impl_1"
    assert ["generate_target", str(done / "proj" / f"ohq_{board}.srcs/sources_1/bd/ohq/ohq.bd")] in records


@pytest.mark.parametrize("wns, whs", [("-0.042", "0.020"), ("0.100", "-0.003")])
def test_negative_slack_fails_the_build_with_the_numbers_and_the_report(tmp_path, wns, whs):
    code, out, _ = run_stub(BUILD, ["kv260", str(BOARDS_JSON)], tmp_path, OHQ_STUB_WNS=wns, OHQ_STUB_WHS=whs)
    report = tmp_path / "build/overlay_kv260/proj/ohq_kv260.runs/impl_1/ohq_wrapper_timing_summary_routed.rpt"
    assert code != 0
    assert f"WNS {wns} ns, WHS {whs} ns" in out and str(report) in out
    assert not (tmp_path / "build/overlay_kv260/ohq.bit").exists()
    assert not (tmp_path / "build/overlay_kv260/ohq.hwh").exists()


def test_missing_board_files_stop_before_the_project_naming_what_was_found(tmp_path):
    code, out, records = run_stub(BUILD, ["pynq-z2", str(BOARDS_JSON)], tmp_path,
                                  OHQ_STUB_BOARDS="tul.com.tw:pynq-z2:part0:1.1 xilinx.com:zcu104:part0:1.1")
    assert code != 0 and "tul.com.tw:pynq-z2:part0:1.0 are not installed" in out
    assert "found: tul.com.tw:pynq-z2:part0:1.1" in out and "vivado/README.md" in out
    assert not any(r[0] == "project" for r in records)
    code, out, records = run_stub(BUILD, ["pynq-z2", str(BOARDS_JSON)], tmp_path,
                                  OHQ_BOARD_REPO="/opt/boards")
    assert code == 0 and ["param", "board.repoPaths", "/opt/boards"] in records


@pytest.mark.parametrize("board", ["ultra96v2", "zcu104", "kv260"])
def test_zynqmp_uses_only_hpm0_fpd_and_64_bit_dma_addresses(tmp_path, board):
    code, out, records = run_stub(BUILD, [board, str(BOARDS_JSON)], tmp_path)
    _, config, _, _, _ = tcl_design(records)
    assert code == 0, out
    assert config["ps"]["PSU__USE__M_AXI_GP0"] == "1"
    assert config["ps"]["PSU__USE__M_AXI_GP1"] == "0" and config["ps"]["PSU__USE__M_AXI_GP2"] == "0"
    assert config["dma_int4"]["c_addr_width"] == config["dma_int8"]["c_addr_width"] == "64"


def test_zynq_7000_dma_keeps_32_bit_addresses(tmp_path):
    code, out, records = run_stub(BUILD, ["pynq-z2", str(BOARDS_JSON)], tmp_path)
    _, config, _, _, _ = tcl_design(records)
    assert code == 0 and config["dma_int8"]["c_addr_width"] == "32"


@pytest.mark.parametrize("inferred", ["0", "1"])
def test_package_ip_states_the_active_low_reset_on_ap_clk(tmp_path, inferred):
    code, out, records = run_stub(PACKAGE, [], tmp_path, OHQ_STUB_INFERRED=inferred)
    assert code == 0, out
    ipx = [r[1:] for r in records if r[0] == "ipx"]
    assert ["associate_bus_interfaces", "-clock", "ap_clk", "-reset", "ap_rst_n", "core"] in ipx
    for busif in ("s_axi_control", "s_axis", "m_axis"):
        assert ["associate_bus_interfaces", "-busif", busif, "-clock", "ap_clk", "core"] in ipx
    assert ["prop", "busparam:POLARITY", "value", "ACTIVE_LOW"] in records
    assert any(r[0] == "prop" and r[2] == "slave_memory_map_ref" and r[3] == "s_axi_control" for r in records)
    assert ["prop", "block:reg0", "range", "256"] in records
    if inferred == "0":      # nothing inferred: the script creates what it relies on
        assert ["add_bus_interface", "ap_rst_n"] in ipx and ["add_memory_map", "s_axi_control"] in ipx


def test_readme_documents_the_board_files_that_do_not_ship_with_vivado():
    readme = (ROOT / "vivado" / "README.md").read_text()
    section = readme.split("## Board files", 1)[1].split("\n## ", 1)[0]
    boards = json.loads(BOARDS_JSON.read_text())["boards"]
    for name, entry in boards.items():
        assert f"`{entry['board_part']}`" in section, name
    for needed in ("OHQ_BOARD_REPO", "board_files", "xhub::install", "Avnet/bdf", "TUL"):
        assert needed in section
