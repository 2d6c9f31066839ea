"""pytest driver of the RTL benches: builds ohq_conv per core configuration with Icarus Verilog
and runs the cocotb module ``conv_tb`` (vivado/tb/conv_tb.py) on it. Skipped without iverilog."""
from __future__ import annotations

import shutil

import pytest

from ohq_sim import run_cocotb

# Small memories keep Icarus fast; the lane/bus combinations cover word < beat, word = beat,
# word > beat, int4 and int8, PE 2..8, LUT, DSP and packed-DSP (two int4 products a DSP48)
# multipliers.
CONFIGS = {
    "int8_pe8_simd4_bus8": dict(BITS=8, PE=8, SIMD=4, BUS_BYTES=8),   # PE > ch: no depthwise mode
    "int4_pe4_simd4_bus8": dict(BITS=4, PE=4, SIMD=4, BUS_BYTES=8),
    "int8_pe2_simd16_bus8_lutmul": dict(BITS=8, PE=2, SIMD=16, BUS_BYTES=8, LUT_MULS=1),
    "int4_pe8_simd8_bus16_dsp2": dict(BITS=4, PE=8, SIMD=8, BUS_BYTES=16, LUT_MULS=2),  # 2 MACs a DSP
}
SMALL_MEMORIES = dict(MAX_ROW_WORDS=256, MAX_WDEPTH=512, MAX_TILES=64)

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")


@needs_iverilog
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_conv_core(name):
    pytest.importorskip("cocotb_tools")
    pytest.importorskip("cocotbext.axi")
    total, failed = run_cocotb(name, {**CONFIGS[name], **SMALL_MEMORIES},
                               extra_env={"OHQ_TB_LAYERS": "24"})
    assert total >= 5 and failed == 0, f"{failed} of {total} cocotb tests failed (log above)"
