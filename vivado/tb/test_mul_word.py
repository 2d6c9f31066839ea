"""Exhaustive check of rtl/ohq_mul_word.v under Icarus (no cocotb): every pair of 4-bit
activation codes x every pair of 4-bit weight codes, signed and unsigned activations, for each
multiplier style (LUT_MULS 0 DSP, 1 LUT, 2 two products per DSP48), and random words for int8."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RTL = Path(__file__).resolve().parents[1] / "rtl"

TB = r"""
`timescale 1ns/1ps
module tb;
    localparam integer BITS = %(bits)d, CH = %(ch)d, PW = 2 * BITS + 1;
    reg  [CH*BITS-1:0] x, w;
    reg                xs;
    wire [CH*PW-1:0]   p;
    ohq_mul_word #(.BITS(BITS), .CH(CH), .LUT_MULS(%(lut_muls)d)) dut (.x(x), .w(w), .x_signed(xs), .p(p));
    integer a, b, c, d, s, e, errors, n;
    reg signed [BITS:0] xe;
    reg signed [BITS-1:0] we;
    reg signed [PW-1:0] want, got;
    task check;
        begin
            for (e = 0; e < CH; e = e + 1) begin
                xe = {xs & x[e*BITS + BITS - 1], x[e*BITS +: BITS]};
                we = w[e*BITS +: BITS];
                want = xe * we;
                got = p[e*PW +: PW];
                if (got !== want) begin
                    if (errors < 5) $display("MISMATCH x=%%h w=%%h s=%%0d e=%%0d got %%0d want %%0d", x, w, xs, e, got, want);
                    errors = errors + 1;
                end
            end
            n = n + 1;
        end
    endtask
    initial begin
        errors = 0; n = 0;
        if (BITS == 4) begin
            for (s = 0; s < 2; s = s + 1)
                for (a = 0; a < 16; a = a + 1) for (b = 0; b < 16; b = b + 1)
                    for (c = 0; c < 16; c = c + 1) for (d = 0; d < 16; d = d + 1) begin
                        xs = s; x = {CH/2{b[3:0], a[3:0]}}; w = {CH/2{d[3:0], c[3:0]}};
                        #1 check;
                    end
        end else begin
            for (s = 0; s < 20000; s = s + 1) begin
                xs = s[0]; x = {$random, $random}; w = {$random, $random};
                #1 check;
            end
        end
        if (errors == 0) $display("PASS %%0d words", n); else $display("FAIL %%0d errors", errors);
        $finish;
    end
endmodule
"""

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")


@needs_iverilog
@pytest.mark.parametrize("bits,ch,lut_muls", [(4, 2, 0), (4, 2, 1), (4, 2, 2), (4, 4, 2),
                                               (8, 4, 0), (8, 4, 1)])
def test_mul_word_products_exact(tmp_path, bits, ch, lut_muls):
    tb = tmp_path / "tb.v"
    tb.write_text(TB % dict(bits=bits, ch=ch, lut_muls=lut_muls))
    sim = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2005", "-o", str(sim), str(tb), str(RTL / "ohq_mul_word.v")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(sim)], check=True, capture_output=True, text=True).stdout
    assert "PASS" in out and "FAIL" not in out, out[-2000:]
    words = int(out.split("PASS")[1].split()[0])
    assert words == (2 * 16 ** 4 if bits == 4 else 20000)
