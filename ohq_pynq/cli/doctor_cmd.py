"""``doctor``: what this board shows — power rails, overlay, cores, DMAs, clocks — and one energy
reading, so a board can be checked in one command before profiling on it."""
from __future__ import annotations

import warnings

import numpy as np

from .common import format_table, print_json

HELP = "check this board: power rails, overlay, cores, DMA widths, clocks, one energy reading"


def add_arguments(p) -> None:
    from ..hw.overlay import DEFAULT_TIMEOUT

    p.add_argument("--board", help="board profile (default: $BOARD or the device tree)")
    p.add_argument("--overlay", metavar="BIT",
                   help="the overlay's .bit (default overlays/<board>/ohq.bit; its .hwh beside it)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds per core run (default %(default)s)")
    p.add_argument("--no-energy", action="store_true", help="skip the energy reading (~1 s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _pynq():
    """pynq, or a one-line :class:`HardwareError` when this is not a PYNQ board."""
    from ..errors import HardwareError
    from ..hw import overlay
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # pynq warns about the CPU off the board
            pynq = overlay.import_pynq(hint="run `python -m ohq_pynq doctor` on the board.")
    except HardwareError as err:
        raise HardwareError(f"no PYNQ board here: {err}") from None
    ps = getattr(pynq, "ps", None)
    if ps is not None and not getattr(ps, "CPU_ARCH_IS_SUPPORTED", True):
        raise HardwareError(f"no PYNQ board here: pynq {getattr(pynq, '__version__', '')} is "
                            f"installed but this machine is {getattr(ps, 'CPU_ARCH', '?')}, not a Zynq board "
                            f"(device tree model: {_device_tree_model() or 'none'}); run "
                            f"`python -m ohq_pynq doctor` on the board.")
    return pynq


def _device_tree_model() -> str | None:
    try:
        with open("/proc/device-tree/model", "rb") as f:
            return f.read().decode(errors="ignore").strip("\x00").strip() or None
    except OSError:
        return None


def rails_report(pynq, board) -> dict:
    """Every rail ``get_rails()`` shows (sensors, watts now), the one energy uses, its refresh."""
    from ..hw import power
    out = {"rails": [], "used": None, "problem": None, "update_interval_s": None}
    try:
        available = power.get_rails(pynq)
    except power.PowerUnavailable as err:
        out["problem"] = str(err)
        return out
    for name in sorted(available):
        rail = available[name]
        kinds = "".join(k for k, a in (("V", "voltage"), ("I", "current"), ("P", "power"))
                        if getattr(rail, a, None) is not None)
        try:
            watts = power.rail_watts(rail) if power.gives_watts(rail) else None
        except power.PowerUnavailable:
            watts = float("nan")
        out["rails"].append({"name": name, "sensors": kinds, "watts": watts})
    if not board.rails:
        out["problem"] = f"board {board.name} has no power monitor: no energy on this board."
        return out
    try:
        used = power.select_rails(available, board.rails)
        out["used"] = next(iter(used))
        out["update_interval_s"] = power.update_interval_of(used)
    except power.PowerUnavailable as err:
        out["problem"] = f"{err} Add the board's total-power rail to its profile (hw/boards.py)."
    return out


def overlay_report(acc) -> dict:
    """Cores, DMAs and clocks of the loaded overlay."""
    from ..hw import regmap as rm
    ip_dict = acc.overlay.ip_dict
    cores, dmas = [], []
    for bits, drv in sorted(acc.drivers.items()):
        desc = ip_dict.get(drv.name, {})
        version = drv.read("VERSION")
        c = drv.core
        cores.append({"name": drv.name, "bits": bits, "type": desc.get("type"),
                      "phys_addr": desc.get("phys_addr"), "version": f"{version >> 16}.{version & 0xFFFF}",
                      "pe": c.pe, "simd": c.simd, "bus_bytes": c.bus_bytes, "max_k": c.max_k,
                      "max_row_words": c.max_row_words, "max_wdepth": c.max_wdepth,
                      "max_tiles": c.max_tiles, "magic_ok": drv.read("MAGIC") == rm.MAGIC})
        p = drv.dma_parameters()
        dmas.append({"name": drv.dma_name, "feeds": drv.name, "phys_addr": ip_dict.get(drv.dma_name, {}).get("phys_addr"),
                     "length_width": int(p["c_sg_length_width"]) if "c_sg_length_width" in p else None,
                     "max_transfer": drv.max_transfer, "chunk": drv.chunk,
                     "data_width_bits": int(p["c_m_axi_mm2s_data_width"]) if "c_m_axi_mm2s_data_width" in p else None,
                     "stream_width_bits": int(p["c_m_axis_mm2s_tdata_width"]) if "c_m_axis_mm2s_tdata_width" in p else None,
                     "addr_width": int(p["c_addr_width"]) if "c_addr_width" in p else None,
                     "scatter_gather": bool(int(p.get("c_include_sg", 0)))})
    ps = next((d for d in ip_dict.values() if "phys_addr" not in d and "parameters" in d), {})
    params = ps.get("parameters", {})
    hwh_mhz = params.get("PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ") or params.get("PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ")
    clocks = {"fclk0_hz": acc.fclk_hz, "profile_hz": acc.board.fclk_hz,
              "hwh_hz": float(hwh_mhz) * 1e6 if hwh_mhz else None}
    return {"cores": cores, "dmas": dmas, "clocks": clocks}


def energy_check(acc) -> dict:
    """One energy reading of a 3x3 conv (32 -> 32 channels on 16x16, int8) with its spread."""
    from ..hw import core_model as cm
    from ..hw.accelerator import Requant
    if acc.monitor is None:
        return {"available": False, "reason": acc.power_error or "no power rails"}
    rng = np.random.default_rng(0)
    layer = cm.ConvLayer(cin=32, cout=32, h=16, w=16, kernel=3, pads=(1, 1, 1, 1))
    x = rng.integers(-128, 128, size=(16, 16, 32))
    w = rng.integers(-127, 128, size=(32, 32, 3, 3))
    rq = Requant(bias=np.zeros(32, dtype=np.int64), mult=np.full(32, 1000), shift=np.full(32, 16),
                 relu=False, out_bits=8, out_signed=True, in_signed=True)
    _, m = acc.run_layer(layer, 8, x, w, rq)
    if m.joules is None or acc.last_energy is None:
        return {"available": False, "reason": acc.energy_error or "the rail stopped answering"}
    return {"available": True, "layer": "conv 3x3 32->32 on 16x16, int8", **acc.last_energy.to_json()}


def run(args) -> int:
    from ..errors import ConfigError
    from ..hw.boards import detect_board_name, get_board
    from ..hw.overlay import OverlayAccelerator

    pynq = _pynq()
    name = args.board or detect_board_name()
    if name is None:
        raise ConfigError("cannot detect the board: set $BOARD or pass --board.")
    board = get_board(name)
    report = {"board": board.name, "part": board.part, "model": _device_tree_model(),
              "pynq": getattr(pynq, "__version__", None), "power": rails_report(pynq, board)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # the power problem is reported below instead
            acc = OverlayAccelerator(board=board, bitstream=args.overlay, timeout=args.timeout,
                                     pynq_module=pynq)
    except Exception:
        _print(report, args.json)                # what the board showed before the failure
        raise
    try:
        report["overlay"] = {"bitstream": str(acc.bitstream), "hwh": str(acc.bitstream.with_suffix(".hwh")),
                             "sha256": acc.bitstream_sha256, **overlay_report(acc)}
        report["energy"] = ({"available": False, "reason": "skipped (--no-energy)"} if args.no_energy
                            else energy_check(acc))
    finally:
        acc.close()
    _print(report, args.json)
    return 0


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    print(f"board {report['board']} ({report['part']}); device tree: {report['model'] or 'none'}; "
          f"pynq {report['pynq'] or '?'}")
    pw = report["power"]
    rows = [[r["name"], r["sensors"], "-" if r["watts"] is None else f"{r['watts']:.3f}",
             "<- energy" if r["name"] == pw["used"] else ""] for r in pw["rails"]]
    print(f"power rails (pynq.pmbus.get_rails): {len(rows)}")
    if rows:
        print(format_table(["rail", "sensors", "watts", "use"], rows, align="llrl"))
    if pw["used"]:
        print(f"energy rail: {pw['used']}, sensor update every {pw['update_interval_s'] * 1e3:.1f} ms")
    if pw["problem"]:
        print(f"energy: unavailable: {pw['problem']}")
    ov = report.get("overlay")
    if not ov:
        return
    print(f"overlay: {ov['bitstream']} (sha256 {ov['sha256'][:16]}...), {ov['hwh']}")
    print(format_table(["core", "bits", "address", "version", "PE", "SIMD", "bus B", "row words", "wdepth", "tiles"],
                       [[c["name"], c["bits"], f"0x{c['phys_addr']:08X}" if c["phys_addr"] is not None else "?",
                         c["version"], c["pe"], c["simd"], c["bus_bytes"], c["max_row_words"],
                         c["max_wdepth"], c["max_tiles"]] for c in ov["cores"]], align="lrrrrrrrrr"))
    print(format_table(["DMA", "feeds", "address", "length bits", "max transfer B", "chunk B", "data bits",
                        "addr bits"],
                       [[d["name"], d["feeds"], f"0x{d['phys_addr']:08X}" if d["phys_addr"] is not None else "?",
                         d["length_width"] or "?", d["max_transfer"] or "?", d["chunk"],
                         d["data_width_bits"] or "?", d["addr_width"] or "?"] for d in ov["dmas"]],
                       align="llrrrrrr"))
    ck = ov["clocks"]
    hwh = f"{ck['hwh_hz'] / 1e6:.1f} MHz" if ck["hwh_hz"] else "?"
    print(f"clock: fclk0 {ck['fclk0_hz'] / 1e6:.1f} MHz (ps.Clocks), .hwh {hwh}, "
          f"profile {ck['profile_hz'] / 1e6:.1f} MHz")
    en = report.get("energy", {})
    if en.get("available"):
        print(f"energy: {en['layer']}: {en['joules'] * 1e6:.3g} uJ +- {en['joules_stderr'] * 1e6:.2g} uJ "
              f"per run ({en['updates']} sensor updates over {en['seconds']:.2f} s, {en['calls']} runs; "
              f"busy {en['busy_watts']:.3f} W, idle {en['idle_watts']:.3f} W, spread "
              f"{en['spread_watts'] * 1e3:.2f} mW)")
    elif en and not pw["problem"]:
        print(f"energy: unavailable: {en['reason']}")
