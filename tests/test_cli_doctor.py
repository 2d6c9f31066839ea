"""``python -m ohq_pynq doctor``: one line off the board; against the fake pynq, what a board
shows — rails, overlay, cores, DMA widths, clocks, one energy reading with its spread."""
from __future__ import annotations

import json

import pytest

from ohq_pynq.cli import main
from ohq_pynq.hw import overlay
from ohq_pynq.hw.fake_pynq import FakePynq, write_overlay


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_off_the_board_doctor_answers_in_one_line(capsys):
    # This machine: no board (pynq missing, or installed on x86_64).
    code = main(["doctor"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert _one_line(err).startswith("error: no PYNQ board here: ")


@pytest.fixture
def board_with(monkeypatch, tmp_path):
    """Put a fake board behind ``overlay.import_pynq``; returns (fake, .bit path)."""
    def make(board, **fake_options):
        bit = write_overlay(tmp_path, board)
        fake = FakePynq(board=board, **fake_options)
        monkeypatch.setattr(overlay, "import_pynq", lambda hint="": fake)
        return fake, bit
    return make


def test_doctor_prints_what_the_board_shows(capsys, board_with):
    fake, bit = board_with("zcu104", sensor_update=0.01)
    code = main(["doctor", "--board", "zcu104", "--overlay", str(bit)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "board zcu104 (xczu7ev-ffvc1156-2-e)" in out and "pynq 3.0.1" in out
    assert "power rails (pynq.pmbus.get_rails): 10" in out
    assert any(line.split()[:2] == ["12V", "VIP"] and line.endswith("<- energy") for line in out.splitlines())
    assert "sensor update every 10.0 ms" in out
    core = next(line for line in out.splitlines() if line.startswith("ohq_int8"))
    assert core.split()[:5] == ["ohq_int8", "8", "0xA0010000", "1.1", "16"]
    dma = next(line for line in out.splitlines() if line.startswith("dma_int4"))
    assert dma.split() == ["dma_int4", "ohq_int4", "0xA0020000", "26", "67,108,863", "67,104,768", "128", "64"]
    assert "clock: fclk0 150.0 MHz (ps.Clocks), .hwh 150.0 MHz, profile 150.0 MHz" in out
    energy = next(line for line in out.splitlines() if line.startswith("energy: conv"))
    assert "uJ +-" in energy and "sensor updates" in energy and "spread" in energy
    assert err == ""


def test_doctor_json(capsys, board_with):
    fake, bit = board_with("kv260")
    assert main(["doctor", "--board", "kv260", "--overlay", str(bit), "--json", "--no-energy"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["power"]["used"] == "power1" and rep["power"]["update_interval_s"] == pytest.approx(0.0352)
    assert [c["bits"] for c in rep["overlay"]["cores"]] == [4, 8]
    assert {d["addr_width"] for d in rep["overlay"]["dmas"]} == {64}
    assert rep["energy"] == {"available": False, "reason": "skipped (--no-energy)"}


@pytest.mark.parametrize("board, broken, expect", [
    ("ultra96v2", "no libsensors", "energy: unavailable: none of the power rails 5V, VSYS was found"),
    ("pynq-z2", None, "energy: unavailable: board pynq-z2 has no power monitor"),
])
def test_doctor_names_missing_rails_and_still_checks_the_overlay(capsys, board_with, board, broken, expect):
    fake, bit = board_with(board)
    if broken:
        fake.pmbus.get_rails = dict
    code = main(["doctor", "--board", board, "--overlay", str(bit)])
    out, err = capsys.readouterr()
    assert code == 0 and expect in out and "ohq_int8" in out and err == ""


def test_a_wrong_bitstream_shows_the_board_then_one_error_line(capsys, board_with):
    fake, bit = board_with("zcu104", magic=0xDEADBEEF)
    code = main(["doctor", "--board", "zcu104", "--overlay", str(bit)])
    out, err = capsys.readouterr()
    assert code == 3 and "power rails" in out
    assert "MAGIC 0xDEADBEEF" in _one_line(err)
