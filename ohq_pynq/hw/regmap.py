"""The single register map of the ohq_conv IP core (AXI4-Lite slave, 32-bit registers).

This table is the source of truth: ``vivado/rtl/ohq_regmap.vh`` is generated from it
(``python -m ohq_pynq.hw.regmap --write``) and a test proves the committed include matches,
and the PYNQ driver reads and writes registers by the names defined here.

Access codes: ``rw`` read/write, ``ro`` read-only, ``cor`` read-only and cleared on read,
``tow`` toggle-on-write (write 1 to flip a bit). Offsets are bytes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x4F485131       # ASCII "OHQ1"
VERSION = 0x00010001     # major.minor in the high/low 16 bits (1.1: depthwise lanes, weight streaming)
ADDR_BITS = 8            # AXI4-Lite address width of the core (256-byte window)

# Bits of CTRL (0x00), HLS ap_ctrl_hs style.
CTRL_AP_START = 1 << 0   # write 1 to start; reads 1 until the core accepted the start
CTRL_AP_DONE = 1 << 1    # set when the layer finished (output stream sent); cleared on read
CTRL_AP_IDLE = 1 << 2    # 1 while no layer is running
CTRL_AP_READY = 1 << 3   # set when the core accepted ap_start; cleared on read
ISR_DONE = 1 << 0        # IER/ISR bit 0: ap_done interrupt
ISR_READY = 1 << 1       # IER/ISR bit 1: ap_ready interrupt


@dataclass(frozen=True)
class Register:
    """One 32-bit register: byte offset, access code, reset value, width of the meaningful bits."""

    name: str
    offset: int
    access: str
    reset: int
    bits: int
    description: str


REGISTERS: tuple[Register, ...] = (
    Register("CTRL", 0x00, "rw", 0x4, 4,
             "bit0 ap_start (rw), bit1 ap_done (cor), bit2 ap_idle (ro), bit3 ap_ready (cor)"),
    Register("GIE", 0x04, "rw", 0, 1, "global interrupt enable"),
    Register("IER", 0x08, "rw", 0, 2, "interrupt enable: bit0 ap_done, bit1 ap_ready"),
    Register("ISR", 0x0C, "tow", 0, 2, "interrupt status: bit0 ap_done, bit1 ap_ready"),
    # Layer configuration: sampled when ap_start is accepted, so the next layer may be written
    # while one runs.
    Register("CIN", 0x10, "rw", 0, 16, "input channels (all groups)"),
    Register("COUT", 0x14, "rw", 0, 16, "output channels (all groups)"),
    Register("H", 0x18, "rw", 0, 16, "input height (pixels)"),
    Register("W", 0x1C, "rw", 0, 16, "input width (pixels)"),
    Register("KERNEL", 0x20, "rw", 0, 4, "square kernel size K (1..MAX_K)"),
    Register("STRIDE", 0x24, "rw", 0, 2, "stride (1 or 2)"),
    Register("PAD_T", 0x28, "rw", 0, 4, "zero padding at the top (pixels, < K)"),
    Register("PAD_L", 0x2C, "rw", 0, 4, "zero padding at the left (pixels, < K)"),
    Register("PAD_B", 0x30, "rw", 0, 4, "zero padding at the bottom (pixels, < K)"),
    Register("PAD_R", 0x34, "rw", 0, 4, "zero padding at the right (pixels, < K)"),
    Register("GROUPS", 0x38, "rw", 0, 16, "groups (divides CIN and COUT; CIN for depthwise)"),
    Register("IN_SIGNED", 0x3C, "rw", 0, 1, "1: input activations signed, 0: unsigned"),
    Register("OUT_BITS", 0x40, "rw", 0, 4, "output element bits (4 or 8)"),
    Register("OUT_SIGNED", 0x44, "rw", 0, 1, "1: outputs clamped to the signed range"),
    Register("RELU", 0x48, "rw", 0, 1, "1: ReLU after requantization"),
    Register("IN_BEATS", 0x4C, "ro", 0, 32,
             "input-stream beats the running layer consumes (valid once ap_ready is set)"),
    # Read-only parameters of this core instance, for the driver to introspect.
    Register("MAGIC", 0x80, "ro", MAGIC, 32, "0x4F485131 ('OHQ1')"),
    Register("VERSION", 0x84, "ro", VERSION, 32, "register-map version (major << 16 | minor)"),
    Register("BITS", 0x88, "ro", 0, 4, "weight/activation bits of this core (4 or 8)"),
    Register("PE", 0x8C, "ro", 0, 16, "output-channel lanes"),
    Register("SIMD", 0x90, "ro", 0, 16, "input lanes (bytes per cycle; x2 channels at 4 bits)"),
    Register("BUS_BYTES", 0x94, "ro", 0, 16, "AXI4-Stream tdata width (bytes)"),
    Register("MAX_K", 0x98, "ro", 0, 4, "largest kernel size"),
    Register("MAX_ROW_WORDS", 0x9C, "ro", 0, 32,
             "line-buffer words = LB_ROWS * MAX_ROW_WORDS (rows of any width share it)"),
    Register("LB_ROWS", 0xA0, "ro", 0, 8, "line-buffer size factor (see MAX_ROW_WORDS)"),
    Register("MAX_WDEPTH", 0xA4, "ro", 0, 32, "weight words per PE lane"),
    Register("MAX_TILES", 0xA8, "ro", 0, 32, "output-channel tiles (param records per lane)"),
    # 64-bit performance counters (lo/hi): cleared when a start is accepted, frozen at done.
    Register("CYCLES_LO", 0xC0, "ro", 0, 32, "clock cycles from start to done (low word)"),
    Register("CYCLES_HI", 0xC4, "ro", 0, 32, "clock cycles from start to done (high word)"),
    Register("IN_STALL_LO", 0xC8, "ro", 0, 32, "cycles tready=1 while input tvalid=0 (low)"),
    Register("IN_STALL_HI", 0xCC, "ro", 0, 32, "cycles tready=1 while input tvalid=0 (high)"),
    Register("OUT_STALL_LO", 0xD0, "ro", 0, 32, "cycles output tvalid=1 while tready=0 (low)"),
    Register("OUT_STALL_HI", 0xD4, "ro", 0, 32, "cycles output tvalid=1 while tready=0 (high)"),
    Register("MAC_ACTIVE_LO", 0xD8, "ro", 0, 32, "cycles one MAC step was issued (low)"),
    Register("MAC_ACTIVE_HI", 0xDC, "ro", 0, 32, "cycles one MAC step was issued (high)"),
)

BY_NAME = {r.name: r for r in REGISTERS}
COUNTERS = ("CYCLES", "IN_STALL", "OUT_STALL", "MAC_ACTIVE")
CONFIG_REGISTERS = ("CIN", "COUT", "H", "W", "KERNEL", "STRIDE", "PAD_T", "PAD_L", "PAD_B",
                    "PAD_R", "GROUPS", "IN_SIGNED", "OUT_BITS", "OUT_SIGNED", "RELU")
PARAM_REGISTERS = ("MAGIC", "VERSION", "BITS", "PE", "SIMD", "BUS_BYTES", "MAX_K",
                   "MAX_ROW_WORDS", "LB_ROWS", "MAX_WDEPTH", "MAX_TILES")


def offset(name: str) -> int:
    """Byte offset of register ``name``."""
    return BY_NAME[name].offset


def generate_vh() -> str:
    """Text of ``vivado/rtl/ohq_regmap.vh``: one ``localparam`` per register and constant."""
    lines = [
        "// Generated by `python -m ohq_pynq.hw.regmap --write` from ohq_pynq/hw/regmap.py.",
        "// Do not edit: tests/test_hw_regmap.py checks this file equals the generated text.",
        f"localparam [31:0] OHQ_MAGIC = 32'h{MAGIC:08X};",
        f"localparam [31:0] OHQ_VERSION = 32'h{VERSION:08X};",
        f"localparam integer OHQ_ADDR_BITS = {ADDR_BITS};",
    ]
    for r in REGISTERS:
        lines.append(f"localparam [{ADDR_BITS - 1}:0] OHQ_REG_{r.name} = {ADDR_BITS}'h{r.offset:02X};"
                     f"  // {r.access}: {r.description}")
    return "\n".join(lines) + "\n"


def default_vh_path() -> Path:
    return Path(__file__).resolve().parents[2] / "vivado" / "rtl" / "ohq_regmap.vh"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write vivado/rtl/ohq_regmap.vh")
    parser.add_argument("--out", type=Path, default=None, help="path of the include to write")
    args = parser.parse_args(argv)
    text = generate_vh()
    if args.write or args.out:
        path = args.out or default_vh_path()
        path.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
