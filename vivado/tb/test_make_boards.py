"""vivado/tools/make_boards.py: the per-board choice of core sizes from synthesis estimates."""
from __future__ import annotations

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import make_boards  # noqa: E402

sys.path.remove(str(TOOLS))


def est(name, bits, pe, simd, lut, dsp, bram, mem=1024, fam="xc7", bus=8, lut_muls=0):
    return {"name": name, "family": fam, "BITS": bits, "PE": pe, "SIMD": simd, "BUS_BYTES": bus,
            "LUT_MULS": lut_muls, "MAX_ROW_WORDS": mem, "MAX_WDEPTH": mem, "MAX_TILES": mem // 4,
            "lut": lut, "ff": lut // 2, "dsp": dsp, "bram36": bram}


def test_choice_fills_the_part_within_the_limit():
    board = make_boards.BOARDS["pynq-z2"]          # 53 200 LUT, 220 DSP, 140 BRAM36
    rows = [est("a8", 8, 8, 8, 15000, 98, 42), est("b8", 8, 16, 8, 26000, 180, 60),
            est("a4", 4, 8, 8, 16000, 114, 42, lut_muls=2), est("c4", 4, 8, 8, 21000, 50, 42, lut_muls=1),
            est("d4", 4, 16, 8, 40000, 60, 60, lut_muls=1),
            est("zu", 4, 32, 32, 1000, 1, 1, fam="xcup", bus=16),      # other family: ignored
            est("mul_xc7_int4_ch16_dsp2", 4, 1, 1, 1, 1, 0)]          # a lane-only run: ignored
    best, tried = make_boards.choose(rows, board)
    _, a, q, use = best
    # a8 + a4 needs 212 DSP (96 %) and b8 + anything exceeds DSP or LUT: a8 + c4 is the fit.
    assert (a["name"], q["name"]) == ("a8", "c4")
    assert all(v <= make_boards.LIMIT for v in use.values())
    assert {t["int4"] for t in tried} == {"a4", "c4", "d4"}
    assert not any(t["fits"] for t in tried if t["int8"] == "b8")


def test_memories_of_another_run_of_the_same_lanes():
    board = make_boards.BOARDS["kv260"]            # 144 BRAM36
    rows = [est("big8", 8, 16, 16, 30000, 300, 114, fam="xcup", bus=16),
            est("big4", 4, 16, 16, 30000, 330, 114, fam="xcup", bus=16, lut_muls=2),
            est("small_mem8", 8, 16, 16, 30500, 300, 50, mem=512, fam="xcup", bus=16)]
    best, _ = make_boards.choose(rows, board)
    _, a, q, use = best
    # Two 1K-memory cores need 236 BRAM36 (one 172): only the 512-word memories fit, for both widths.
    assert a["mem"]["name"] == q["mem"]["name"] == "small_mem8"
    assert q["logic"]["name"] == "big4" and use["bram36"] == round((50 + 50 + 8) / 144, 3)
    entry = make_boards.core_entry(q, 4)
    assert entry["max_row_words"] == 512 and entry["lut_muls"] == 2 and entry["estimate"]["bram36"] == 50


def test_int4_core_must_double_the_int8_macs():
    # A pair whose int4 core does no more MACs per cycle than twice the int8 core's would leave
    # int4 nothing to buy but bytes: a smaller int8 core with a full int4 core wins instead.
    board = make_boards.BOARDS["ultra96v2"]        # 70 560 LUT
    rows = [est("w8", 8, 8, 16, 30000, 181, 80, fam="xcup", bus=16),       # 128 MAC/cycle
            est("n8", 8, 8, 8, 17000, 98, 40, fam="xcup", bus=16),         # 64
            est("n4", 4, 8, 8, 25000, 117, 48, fam="xcup", bus=16, lut_muls=2)]   # 128
    best, tried = make_boards.choose(rows, board)
    _, a, q, _ = best
    assert (a["name"], q["name"]) == ("n8", "n4")
    w = next(t for t in tried if t["int8"] == "w8")
    assert all(v <= make_boards.LIMIT for v in w["use"].values()) and not w["fits"]
