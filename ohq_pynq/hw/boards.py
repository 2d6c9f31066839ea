"""Board profiles: FPGA part, PL clock, AXI width, the int4/int8 core sizes, power rails, and the
energy model the simulator uses.

Core sizes (PE, SIMD, memories) come from ``ohq_pynq/hw/boards.json`` when that file exists (it is
written by the IP-core work, next to the Vivado block designs); otherwise from the built-in table
below, which uses the RTL's default memories. ``Board.source`` says which.

Energy model (simulator only; a real board measures): per layer run

    joules = static_watts * seconds + joules_per_mac[bits] * lane_macs + joules_per_byte * bytes

``lane_macs`` counts every lane-MAC the core issues (padded lanes included: the DSPs/LUTs are
clocked either way) and ``bytes`` the bytes moved over the AXI stream (in + out). The constants are
order-of-magnitude estimates, not measurements; their sources:

* MAC energy: M. Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): 8-bit integer
  multiply 0.2 pJ, 32-bit add 0.1 pJ, so ~0.3 pJ per int8 MAC with a 32-bit accumulator; a 4-bit
  multiply costs ~1/4 of an 8-bit one (array multiplier area ~ bits^2), so ~0.15 pJ per int4 MAC.
  FPGAs spend ~7-14x the dynamic energy of an ASIC for the same logic (I. Kuon, J. Rose,
  "Measuring the gap between FPGAs and ASICs", IEEE TCAD 26(2), 2007: 14x LUT-only, ~7x with hard
  DSP blocks); we take 10x. 45 nm -> 28 nm (Zynq-7000) ~0.6x and -> 16 nm (Zynq UltraScale+)
  ~0.35x dynamic energy (Dennard-era scaling of C*V^2, rough).
* DRAM traffic: Horowitz 2014 gives ~1.3-2.6 nJ per 64-bit DRAM access (20-40 pJ/byte); LPDDR4
  interfaces are quoted at ~4-5 pJ/bit (~35 pJ/byte) including I/O. Add ~10 pJ/byte for the DMA,
  interconnect and HP port. DDR3 (PYNQ-Z2) 50, DDR4 (ZCU104, KV260) 45, LPDDR4 (Ultra96-V2)
  40 pJ/byte.
* static_watts: what a running core + DMA adds above the idle board (clock tree, BRAM enables,
  control), as the PMBus measurement subtracts the idle baseline. A rough Xilinx Power Estimator
  class figure for a small PL design: 0.10 W on Zynq-7000, 0.15-0.25 W on ZU+.

Power rails (``Board.rails``): the names ``pynq.pmbus.get_rails()`` gives the board's total-power
monitor on its PYNQ image, in order of preference (alternatives for the same monitor on different
images; one rail is used, summing a total with its sub-rails would double count). ``get_rails()``
keys each rail by its libsensors label (``/etc/sensors.d/*.conf``) or, without one, by the
feature name (``power1``). The sources are cited next to each entry in ``_BUILTIN``;
``python -m ohq_pynq doctor`` prints what a board actually shows. PYNQ-Z2 has no power monitor,
so ``rails`` is empty and its energy is ``None`` everywhere (the simulator mirrors the real board;
``SimAccelerator(estimate_energy=True)`` uses its constants anyway).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .core_model import CoreConfig

BOARDS_JSON = Path(__file__).with_name("boards.json")

PJ = 1e-12


@dataclass(frozen=True)
class EnergyModel:
    """Simulator energy constants (watts, joules per lane-MAC, joules per byte moved)."""

    static_watts: float
    joules_per_mac: dict          # bits -> J per lane-MAC
    joules_per_byte: float

    def joules(self, seconds: float, lane_macs: int, bits: int, nbytes: int) -> float:
        """Energy (J) of one run: static power over ``seconds`` + MACs + bytes moved."""
        return (self.static_watts * seconds + self.joules_per_mac[bits] * lane_macs
                + self.joules_per_byte * nbytes)

    def to_json(self) -> dict:
        return {"static_watts": self.static_watts,
                "joules_per_mac": {str(b): v for b, v in sorted(self.joules_per_mac.items())},
                "joules_per_byte": self.joules_per_byte}


@dataclass(frozen=True)
class Board:
    """One board: part, PL clock (Hz), AXI stream width (bytes), cores by bits, PMBus rails."""

    name: str
    part: str
    fclk_hz: float
    bus_bytes: int
    cores: dict                      # bits -> CoreConfig
    rails: tuple = ()                # PMBus rails whose power is summed; () = no power sensing
    energy: EnergyModel | None = None
    source: str = "builtin"          # "builtin" or the path of boards.json
    aliases: tuple = field(default=(), compare=False)
    # bits -> the multiplier style synthesised (RTL LUT_MULS: 0 DSP48, 1 LUT, 2 two int4 per
    # DSP48); bit-exact either way, so only the overlay build (and its .hwh) needs it
    lut_muls: dict = field(default_factory=dict, compare=False)

    @property
    def has_power(self) -> bool:
        return bool(self.rails)

    def core(self, bits: int) -> CoreConfig:
        try:
            return self.cores[int(bits)]
        except KeyError:
            raise ConfigError(f"board {self.name} has no {bits}-bit core (it has "
                              f"{', '.join(str(b) for b in sorted(self.cores))}).") from None

    def to_json(self) -> dict:
        return {"board": self.name, "part": self.part, "fclk_hz": self.fclk_hz,
                "bus_bytes": self.bus_bytes, "rails": list(self.rails), "source": self.source,
                "cores": {str(b): core_json(c) for b, c in sorted(self.cores.items())}}


def core_json(core: CoreConfig) -> dict:
    """A CoreConfig as a JSON object (the parameter-register names, lower case)."""
    return {"bits": core.bits, "pe": core.pe, "simd": core.simd, "bus_bytes": core.bus_bytes,
            "max_k": core.max_k, "lb_rows": core.lb_rows, "max_row_words": core.max_row_words,
            "max_wdepth": core.max_wdepth, "max_tiles": core.max_tiles}


def _cores(pe: int, simd: int, bus: int, **mem) -> dict:
    return {b: CoreConfig(bits=b, pe=pe, simd=simd, bus_bytes=bus, **mem) for b in (4, 8)}


# Built-in profiles: what the software knows about each board (PMBus rails, energy constants,
# aliases) plus fallback core sizes. The core sizes and clocks that count come from boards.json,
# written by the RTL flow (vivado/tools/make_boards.py) from the yosys estimates, which the
# package always ships; the PE/SIMD/clock below are used only if that file is missing.
_BUILTIN = {
    # PYNQ-Z2: no PMBus/INA power monitor on the board, and PYNQ ships no sensors.d entry for it
    # (Xilinx/PYNQ boards/Pynq-Z2 has no sensorconf package): get_rails() returns {}.
    "pynq-z2": dict(part="xc7z020clg400-1", fclk_hz=100e6, bus=8, pe=8, simd=8, rails=(),
                    energy=EnergyModel(0.10, {8: 0.3 * 10 * 0.6 * PJ, 4: 0.15 * 10 * 0.6 * PJ}, 50 * PJ),
                    aliases=("pynqz2", "pynq_z2")),
    "ultra96v2": dict(part="xczu3eg-sbva484-1-e", fclk_hz=200e6, bus=16, pe=16, simd=16,
                      # Avnet/Ultra96-PYNQ Ultra96/packages/sensorconf-v2/ultra96.conf, chip
                      # "*-i2c-6-45": `label curr1 "5V"`, `label power1 "5V"` (its `in1` is
                      # labelled "VIN": a voltage only, no power). The Ultra96-V1 image's
                      # sensorconf-v1/ultra96.conf labels its INA226 (chip "ina226_u35-*") "VSYS".
                      # The other labels there (INT, PSINT_FP, 1V2, ...) are per-supply PMIC rails.
                      rails=("5V", "VSYS"),
                      energy=EnergyModel(0.15, {8: 0.3 * 10 * 0.35 * PJ, 4: 0.15 * 10 * 0.35 * PJ}, 40 * PJ),
                      aliases=("ultra96", "ultra96-v2", "ultra96_v2")),
    "zcu104": dict(part="xczu7ev-ffvc1156-2-e", fclk_hz=200e6, bus=16, pe=16, simd=16,
                   # Xilinx/PYNQ boards/ZCU104/packages/sensorconf/zcu104.conf, chip "*-i2c-5-40"
                   # (the INA226 on the 12 V input): `label in1/power1/curr1 "12V"`.
                   rails=("12V",),
                   energy=EnergyModel(0.25, {8: 0.3 * 10 * 0.35 * PJ, 4: 0.15 * 10 * 0.35 * PJ}, 45 * PJ),
                   aliases=()),
    "kv260": dict(part="xck26-sfvc784-2LV-c", fclk_hz=200e6, bus=16, pe=16, simd=16,
                  # The KV260 carrier's INA260 (u14 at 0x40 on i2c1; Linux
                  # arch/arm64/boot/dts/xilinx/zynqmp-sck-kv-g-rev{A,B}.dtso, exposed through
                  # iio-hwmon "ina260-u14") on VCC_SOM, the SOM's single 5 V input (UG1089:
                  # "the total power consumed by the SOM"). Kria-PYNQ's install.sh installs no
                  # sensors.d entry, so libsensors labels its features by name and get_rails()
                  # returns the rails "in1", "curr1" and "power1" (the power one is used).
                  rails=("power1",),
                  energy=EnergyModel(0.20, {8: 0.3 * 10 * 0.35 * PJ, 4: 0.15 * 10 * 0.35 * PJ}, 45 * PJ),
                  aliases=("kria", "kv-260")),
}

DEFAULT_BOARD = "pynq-z2"


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _from_builtin(name: str, spec: dict) -> Board:
    return Board(name=name, part=spec["part"], fclk_hz=float(spec["fclk_hz"]), bus_bytes=spec["bus"],
                 cores=_cores(spec["pe"], spec["simd"], spec["bus"]), rails=tuple(spec["rails"]),
                 energy=spec["energy"], source="builtin", aliases=tuple(spec["aliases"]))


def _core_from_json(obj: dict, bits: int, defaults: dict) -> CoreConfig:
    keys = ("pe", "simd", "bus_bytes", "max_k", "lb_rows", "max_row_words", "max_wdepth", "max_tiles")
    vals = {}
    for k in keys:
        v = obj.get(k, obj.get(k.upper(), defaults.get(k)))
        if v is not None:
            vals[k] = int(v)
    return CoreConfig(bits=bits, **vals)


def _merge_json(board: Board, obj: dict, source: str) -> Board:
    """Overlay a boards.json entry on a built-in board (unknown keys ignored)."""
    fclk = obj.get("fclk_hz")
    if fclk is None and "fclk_mhz" in obj:
        fclk = float(obj["fclk_mhz"]) * 1e6
    bus = int(obj.get("bus_bytes", board.bus_bytes))
    defaults = {"bus_bytes": bus, **{k: obj[k] for k in ("pe", "simd") if k in obj}}
    cores_obj = obj.get("cores")
    cores = dict(board.cores)
    lut_muls = dict(board.lut_muls)
    if isinstance(cores_obj, dict):
        for key, cobj in cores_obj.items():
            bits = int(str(key).lstrip("int"))
            cores[bits] = _core_from_json(cobj, bits, defaults)
            if "lut_muls" in cobj:
                lut_muls[bits] = int(cobj["lut_muls"])
    elif isinstance(cores_obj, list):
        for cobj in cores_obj:
            bits = int(cobj["bits"])
            cores[bits] = _core_from_json(cobj, bits, defaults)
    elif "pe" in obj or "simd" in obj:
        cores = {b: _core_from_json(obj, b, defaults) for b in (4, 8)}
    rails = obj.get("rails", board.rails)
    return Board(name=board.name, part=obj.get("part", board.part),
                 fclk_hz=float(fclk) if fclk is not None else board.fclk_hz, bus_bytes=bus,
                 cores=cores, rails=tuple(rails or ()), energy=board.energy, source=source,
                 aliases=board.aliases, lut_muls=lut_muls)


def load_boards(path: str | os.PathLike | None = None) -> dict[str, Board]:
    """All board profiles: built-ins, updated from ``boards.json`` where it exists."""
    boards = {name: _from_builtin(name, spec) for name, spec in _BUILTIN.items()}
    path = Path(path) if path is not None else BOARDS_JSON
    if not path.is_file():
        return boards
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"board table {path} is not valid JSON: {err}") from None
    entries = data.get("boards", data) if isinstance(data, dict) else {}
    if isinstance(entries, list):
        entries = {e.get("board", e.get("name")): e for e in entries if isinstance(e, dict)}
    for key, obj in entries.items():
        if not isinstance(obj, dict) or not key:
            continue
        match = _find(boards, key)
        base = boards[match] if match else Board(
            name=_norm(key), part=obj.get("part", "?"), fclk_hz=100e6,
            bus_bytes=int(obj.get("bus_bytes", 8)), cores={}, energy=None)
        try:
            boards[base.name] = _merge_json(base, obj, str(path))
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"board table {path}: entry {key!r} is malformed ({err}).") from None
    return boards


def _find(boards: dict[str, Board], name: str) -> str | None:
    n = _norm(name)
    for key, board in boards.items():
        if n == _norm(key) or n in (_norm(a) for a in board.aliases):
            return key
    return None


def detect_board_name() -> str | None:
    """The board this runs on: ``$BOARD`` (set on PYNQ images), else the device-tree model."""
    env = os.environ.get("BOARD")
    if env:
        return env
    try:
        model = Path("/proc/device-tree/model").read_bytes().decode(errors="ignore").lower()
    except OSError:
        return None
    for needle, name in (("zcu104", "zcu104"), ("ultra96", "ultra96v2"), ("kv260", "kv260"),
                         ("k26", "kv260"), ("pynq-z2", "pynq-z2"), ("pynq z2", "pynq-z2")):
        if needle in model:
            return name
    return None


def get_board(name: str | None = None, path: str | os.PathLike | None = None) -> Board:
    """Profile of board ``name`` (aliases and any case accepted); ``None``: the default board."""
    boards = load_boards(path)
    key = _find(boards, name or DEFAULT_BOARD)
    if key is None:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(sorted(boards))}.")
    return boards[key]
