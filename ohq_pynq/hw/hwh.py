"""The overlay's hardware hand-off (``.hwh``): the block design ``vivado/tcl/build_overlay.tcl``
builds, written as Vivado writes it, and read back the way pynq reads it.

* :func:`overlay_design` is the design of the Tcl — cells, VLNVs, the ``CONFIG.*`` properties it
  sets, the AXI4-Lite address map, the AXI4-Stream links and the interrupt order — as data.
  ``tests/test_vivado_tcl.py`` runs the Tcl under ``tclsh`` with stub Vivado commands and checks
  that it builds exactly this design, so the two cannot drift apart.
* :func:`hwh_text` / :func:`write_hwh` write it as an ``.hwh`` (the ``EDKSYSTEM`` XML in
  ``<proj>.gen/sources_1/bd/<bd>/hw_handoff/<bd>.hwh``): a ``MODULE`` per cell with its
  ``PARAMETERS`` (the IP's full parameter set, defaults included), ``PORTS`` (clock, reset,
  interrupts with their nets) and ``BUSINTERFACES``; the PS module carries the address map
  (``MEMORYMAP/MEMRANGE`` with ``SLAVEBUSINTERFACE``) and its PL clock parameters.
* :func:`parse_hwh` builds ``ip_dict`` / ``clock_dict`` as pynq's ``pynq/pl_server/hwh_parser.py``
  (``_HWHABC``) does for a full design: every ``MODULE`` indexed by ``INSTANCE``; ``ip_dict`` from
  the PS module's ``MEMRANGE`` elements (key: ``FULLNAME`` without the leading ``/``; ``phys_addr``
  ``BASEVALUE``, ``addr_range`` ``HIGHVALUE - BASEVALUE + 1``, ``type`` the VLNV, ``parameters``
  the module's ``PARAMETER`` name/value strings, ``mem_id`` the ``SLAVEBUSINTERFACE``);
  ``interrupts`` traced from the PS interrupt pin through the ``xlconcat`` (with pynq's
  ``raw_irq`` GIC numbers);
  ``clock_dict`` from the PS's ``PCW_FCLK<i>_PERIPHERAL_DIVISOR<j>`` / ``PCW_FPGA_FCLK<i>_ENABLE``
  (Zynq-7000) or ``PSU__CRL_APB__PL<i>_REF_CTRL__DIVISOR<j>`` / ``PSU__FPGA_PL<i>_ENABLE`` (ZynqMP).
  Register descriptions, GPIO, AXI interrupt controllers and hierarchies, which the overlay does
  not use, are left out. ``tests/test_hw_hwh.py`` checks the result against pynq's own parser.

The register-level fake (:mod:`.fake_pynq`) loads its overlay only through this parser, so the
driver is tested against the ``ip_dict`` a real board would give.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from .core_model import CoreConfig

CORE_VLNV = "ohq-pynq:ohq:ohq_conv:1.0"
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"
CONCAT_VLNV = "xilinx.com:ip:xlconcat:2.1"
PS_VLNV = {"zynq": "xilinx.com:ip:processing_system7:5.5",
           "zynq_ultra": "xilinx.com:ip:zynq_ultra_ps_e:3.4"}
PS_MODTYPE = {"zynq": "processing_system7", "zynq_ultra": "zynq_ultra_ps_e"}

# The address map build_overlay.tcl assigns: 64 KiB per AXI4-Lite slave from the start of the
# PS general-purpose master's window (Zynq-7000 M_AXI_GP0 0x4000_0000, ZynqMP M_AXI_HPM0_FPD
# 0xA000_0000); the DMAs' data masters see DDR from 0.
LITE_BASE = {"zynq": 0x4000_0000, "zynq_ultra": 0xA000_0000}
LITE_RANGE = 0x1_0000
LITE_OFFSET = {"ohq_int4": 0x0_0000, "ohq_int8": 0x1_0000, "dma_int4": 0x2_0000, "dma_int8": 0x3_0000}
LITE_SEGMENT = {"ohq_conv": "s_axi_control/reg0", "axi_dma": "S_AXI_LITE/Reg"}
LITE_MASTER = {"zynq": "M_AXI_GP0", "zynq_ultra": "M_AXI_HPM0_FPD"}
DMA_LENGTH_WIDTH = 26          # CONFIG.c_sg_length_width: 64 MiB - 1 per transfer
DMA_BURST = 64
IOPLL_MHZ = {"zynq": 1000.0, "zynq_ultra": 1500.0}   # PL clocks are IOPLL / divisor0 / divisor1
# (first GIC interrupt, lines) behind the PS's PL interrupt pin (pynq's family_irq): IRQ_F2P on
# Zynq-7000, pl_ps_irq0 on ZynqMP.
IRQ_LINES = {"zynq": ((61, 8), (84, 8)), "zynq_ultra": ((121, 8),)}


def ps_family(part: str) -> str:
    """``"zynq"`` for a Zynq-7000 part (xc7z...), else ``"zynq_ultra"`` (xczu..., xck26...)."""
    return "zynq" if part.lower().startswith("xc7z") else "zynq_ultra"


@dataclass
class Cell:
    """One block-design cell: name, VLNV, the ``CONFIG.*`` values the Tcl sets (strings, as
    Vivado keeps them), and its AXI4-Lite segment, base address and range (bytes) if it has one."""

    name: str
    vlnv: str
    config: dict = field(default_factory=dict)
    segment: str | None = None
    base: int | None = None
    range: int | None = None

    @property
    def modtype(self) -> str:
        return self.vlnv.split(":")[2]


@dataclass
class Design:
    """The block design of one board's overlay (see the module docstring)."""

    board: str
    part: str
    ps: str                                  # "zynq" or "zynq_ultra"
    fclk_mhz: int
    cells: dict                              # name -> Cell (the PS as "ps")
    streams: list                            # [(initiator "cell/intf", target "cell/intf")]
    interrupts: list                         # "cell/pin" in xlconcat input order
    ps_config: dict                          # CONFIG.* set on the PS

    def cell(self, name: str) -> Cell:
        return self.cells[name]


def ps_config(ps: str, fclk_mhz: int, bus_bytes: int) -> dict:
    """The ``CONFIG.*`` build_overlay.tcl sets on the PS (after the board preset)."""
    if ps == "zynq":
        return {"PCW_USE_S_AXI_HP0": "1", "PCW_S_AXI_HP0_DATA_WIDTH": "64",
                "PCW_FPGA0_PERIPHERAL_FREQMHZ": str(fclk_mhz), "PCW_USE_FABRIC_INTERRUPT": "1",
                "PCW_IRQ_F2P_INTR": "1"}
    return {"PSU__USE__M_AXI_GP0": "1", "PSU__USE__M_AXI_GP1": "0", "PSU__USE__M_AXI_GP2": "0",
            "PSU__USE__S_AXI_GP2": "1", "PSU__SAXIGP2__DATA_WIDTH": str(8 * bus_bytes),
            "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": str(fclk_mhz), "PSU__USE__IRQ0": "1"}


def core_config(core: CoreConfig, lut_muls: int | None = None) -> dict:
    """The ``CONFIG.*`` the Tcl sets on one ohq_conv cell (board_tcl.py's ``core_params``);
    ``lut_muls``: the board's multiplier style (default: LUT for int4, DSP48 for int8)."""
    return {"BITS": str(core.bits), "BUS_BYTES": str(core.bus_bytes), "PE": str(core.pe),
            "SIMD": str(core.simd), "MAX_ROW_WORDS": str(core.max_row_words),
            "MAX_WDEPTH": str(core.max_wdepth), "MAX_TILES": str(core.max_tiles),
            "LUT_MULS": str(lut_muls if lut_muls is not None else (1 if core.bits == 4 else 0))}


def dma_config(ps: str, bus_bytes: int, length_width: int = DMA_LENGTH_WIDTH) -> dict:
    """The ``CONFIG.*`` the Tcl sets on one AXI DMA: simple mode, the stream width, a
    ``length_width``-bit length register, 64-bit addresses on ZynqMP (DDR above 4 GiB)."""
    w = str(8 * bus_bytes)
    return {"c_include_sg": "0", "c_sg_length_width": str(length_width),
            "c_addr_width": "32" if ps == "zynq" else "64",
            "c_m_axi_mm2s_data_width": w, "c_m_axis_mm2s_tdata_width": w,
            "c_m_axi_s2mm_data_width": w, "c_s_axis_s2mm_tdata_width": w,
            "c_mm2s_burst_size": str(DMA_BURST), "c_s2mm_burst_size": str(DMA_BURST)}


def overlay_design(board, cores: dict | None = None, length_width: int = DMA_LENGTH_WIDTH,
                   core_vlnv: str = CORE_VLNV) -> Design:
    """The design build_overlay.tcl builds for ``board`` (a :class:`~.boards.Board`).

    ``cores`` (bits -> CoreConfig, default the board's), ``length_width`` and ``core_vlnv``
    describe variants for tests (a single core, a narrow DMA length register, another IP
    version); the defaults are what the Tcl builds."""
    ps = ps_family(board.part)
    fclk_mhz = int(board.fclk_hz // 1_000_000)
    cores = board.cores if cores is None else cores
    cells = {"ps": Cell("ps", PS_VLNV[ps], ps_config(ps, fclk_mhz, board.bus_bytes))}
    streams, interrupts = [], []
    for bits in sorted(cores):
        core, dma = f"ohq_int{bits}", f"dma_int{bits}"
        config = core_config(cores[bits], getattr(board, "lut_muls", {}).get(bits))
        cells[core] = Cell(core, core_vlnv, config, LITE_SEGMENT["ohq_conv"],
                           LITE_BASE[ps] + LITE_OFFSET[core], LITE_RANGE)
        cells[dma] = Cell(dma, DMA_VLNV, dma_config(ps, board.bus_bytes, length_width),
                          LITE_SEGMENT["axi_dma"], LITE_BASE[ps] + LITE_OFFSET[dma], LITE_RANGE)
        streams += [(f"{dma}/M_AXIS_MM2S", f"{core}/s_axis"), (f"{core}/m_axis", f"{dma}/S_AXIS_S2MM")]
        interrupts += [f"{core}/interrupt", f"{dma}/mm2s_introut", f"{dma}/s2mm_introut"]
    cells["irq_concat"] = Cell("irq_concat", CONCAT_VLNV, {"NUM_PORTS": str(len(interrupts))})
    return Design(board=board.name, part=board.part, ps=ps, fclk_mhz=fclk_mhz, cells=cells,
                  streams=streams, interrupts=interrupts, ps_config=dict(cells["ps"].config))


# ------------------------------------------------------------------------------------ writing
def _clock_divisors(ps: str, mhz: float) -> tuple[int, int, float]:
    div0 = max(1, round(IOPLL_MHZ[ps] / mhz))
    return div0, 1, IOPLL_MHZ[ps] / div0


def _ps_parameters(design: Design) -> dict:
    ps = design.ps
    div0, div1, act = _clock_divisors(ps, design.fclk_mhz)
    params = {}
    for i in range(4):
        on = i == 0
        if ps == "zynq":
            params[f"PCW_FPGA_FCLK{i}_ENABLE"] = "1" if on else "0"
            params[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0"] = str(div0 if on else 1)
            params[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1"] = str(div1 if on else 1)
        else:
            params[f"PSU__FPGA_PL{i}_ENABLE"] = "1" if on else "0"
            params[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR0"] = str(div0 if on else 1)
            params[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR1"] = str(div1 if on else 1)
    act_key = "PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ" if ps == "zynq" else "PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ"
    params[act_key] = f"{act:.6f}"
    params.update(design.ps_config)
    return params


def _cell_parameters(cell: Cell) -> dict:
    """The full parameter list Vivado writes for a cell: the IP's defaults, then the CONFIG."""
    params = {"Component_Name": f"ohq_{cell.name}_0", "EDK_IPTYPE": "PERIPHERAL"}
    if cell.modtype == "ohq_conv":
        bits = int(cell.config.get("BITS", 8))
        params.update({"BITS": "8", "PE": "8", "SIMD": "8", "BUS_BYTES": "8", "MAX_K": "7",
                       "LB_ROWS": "8", "MAX_ROW_WORDS": "1024", "MAX_WDEPTH": "1024",
                       "MAX_TILES": "256", "LUT_MULS": "1" if bits == 4 else "0"})
    elif cell.modtype == "axi_dma":
        params.update({"c_include_sg": "1", "c_sg_length_width": "14", "c_addr_width": "32",
                       "c_include_mm2s": "1", "c_include_s2mm": "1", "c_include_mm2s_dre": "0",
                       "c_include_s2mm_dre": "0", "c_micro_dma": "0", "c_m_axi_mm2s_data_width": "32",
                       "c_m_axis_mm2s_tdata_width": "32", "c_m_axi_s2mm_data_width": "32",
                       "c_s_axis_s2mm_tdata_width": "32", "c_mm2s_burst_size": "16",
                       "c_s2mm_burst_size": "16"})
    params.update(cell.config)
    if cell.base is not None:
        params["C_BASEADDR"] = f"0x{cell.base:08X}"
        params["C_HIGHADDR"] = f"0x{cell.base + cell.range - 1:08X}"
    return params


def _port(parent, name, direction, signame=None, sigis="undef", **attrs):
    port = ET.SubElement(parent, "PORT", DIR=direction, NAME=name, SIGIS=sigis, **attrs)
    if signame:
        port.set("SIGNAME", signame)
    return port


def hwh_text(design: Design) -> str:
    """``design`` as the text of a Vivado ``.hwh``."""
    ps_name = "ps"
    clk_net = "ps_FCLK_CLK0" if design.ps == "zynq" else "ps_pl_clk0"
    rst_net = "rst_ps_peripheral_aresetn"
    irq_pin = "IRQ_F2P" if design.ps == "zynq" else "pl_ps_irq0"
    device, package, speed = _split_part(design.part)
    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2", TIMESTAMP="ohq-pynq", VIVADOVERSION="2022.1")
    ET.SubElement(root, "SYSTEMINFO", ARCH="zynq" if design.ps == "zynq" else "zynquplus",
                  DEVICE=device, NAME="ohq", PACKAGE=package, SPEEDGRADE=speed)
    ET.SubElement(root, "EXTERNALPORTS")
    ET.SubElement(root, "EXTERNALINTERFACES")
    modules = ET.SubElement(root, "MODULES")
    irq_nets = {pin: f"{pin.replace('/', '_')}" for pin in design.interrupts}
    bus_of = {}
    for src, dst in design.streams:
        bus_of[src] = bus_of[dst] = src.replace("/", "_")
    for name, cell in design.cells.items():
        modtype = PS_MODTYPE[design.ps] if name == ps_name else cell.modtype
        mod = ET.SubElement(modules, "MODULE", FULLNAME=f"/{name}", INSTANCE=name,
                            IPTYPE="PERIPHERAL", MODTYPE=modtype, VLNV=cell.vlnv)
        params = ET.SubElement(mod, "PARAMETERS")
        values = _ps_parameters(design) if name == ps_name else _cell_parameters(cell)
        for key, value in values.items():
            ET.SubElement(params, "PARAMETER", NAME=key, VALUE=value)
        ports = ET.SubElement(mod, "PORTS")
        busifs = ET.SubElement(mod, "BUSINTERFACES")
        if name == ps_name:
            memmap = ET.SubElement(mod, "MEMORYMAP")
            for other in design.cells.values():
                if other.base is None:
                    continue
                block = other.segment.split("/")[1]
                ET.SubElement(memmap, "MEMRANGE", ADDRESSBLOCK=block, BASENAME="C_BASEADDR",
                              BASEVALUE=f"0x{other.base:08X}", HIGHNAME="C_HIGHADDR",
                              HIGHVALUE=f"0x{other.base + other.range - 1:08X}",
                              INSTANCE=other.name, IS_DATA="TRUE", IS_INSTRUCTION="TRUE",
                              MASTERBUSINTERFACE=LITE_MASTER[design.ps], MEMTYPE="REGISTER",
                              SLAVEBUSINTERFACE=other.segment.split("/")[0])
            _port(ports, "FCLK_CLK0" if design.ps == "zynq" else "pl_clk0", "O", clk_net, "clk",
                  CLKFREQUENCY=str(design.fclk_mhz * 1_000_000))
            _port(ports, irq_pin, "I", "irq_concat_dout", "INTERRUPT", LEFT="0", RIGHT="0")
            ET.SubElement(busifs, "BUSINTERFACE", BUSNAME=f"ps_{LITE_MASTER[design.ps]}",
                          NAME=LITE_MASTER[design.ps], TYPE="INITIATOR",
                          VLNV="xilinx.com:interface:aximm:1.0")
            continue
        if cell.modtype == "xlconcat":
            for i, pin in enumerate(design.interrupts):
                _port(ports, f"In{i}", "I", irq_nets[pin], "INTERRUPT", LEFT="0", RIGHT="0")
            _port(ports, "dout", "O", "irq_concat_dout", "INTERRUPT",
                  LEFT=str(len(design.interrupts) - 1), RIGHT="0")
            continue
        clk = "ap_clk" if cell.modtype == "ohq_conv" else "s_axi_lite_aclk"
        rst = "ap_rst_n" if cell.modtype == "ohq_conv" else "axi_resetn"
        _port(ports, clk, "I", clk_net, "clk", CLKFREQUENCY=str(design.fclk_mhz * 1_000_000))
        _port(ports, rst, "I", rst_net, "rst", POLARITY="ACTIVE_LOW")
        for pin in design.interrupts:
            owner, pin_name = pin.split("/")
            if owner == name:
                _port(ports, pin_name, "O", irq_nets[pin], "INTERRUPT", SENSITIVITY="LEVEL_HIGH")
        lite = cell.segment.split("/")[0] if cell.segment else None
        if lite:
            ET.SubElement(busifs, "BUSINTERFACE", BUSNAME=f"ps_{LITE_MASTER[design.ps]}_{name}",
                          NAME=lite, TYPE="SLAVE", VLNV="xilinx.com:interface:aximm:1.0")
        for pin, bus in bus_of.items():
            owner, intf = pin.split("/")
            if owner == name:
                kind = "INITIATOR" if any(src == pin for src, _ in design.streams) else "TARGET"
                ET.SubElement(busifs, "BUSINTERFACE", BUSNAME=bus, NAME=intf, TYPE=kind,
                              VLNV="xilinx.com:interface:axis:1.0")
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def write_hwh(design: Design, path: str | os.PathLike) -> None:
    """Write ``design`` as an ``.hwh`` file at ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(hwh_text(design))


def _split_part(part: str) -> tuple[str, str, str]:
    """"xczu7ev-ffvc1156-2-e" -> ("xczu7ev", "ffvc1156", "-2"); "xc7z020clg400-1" ->
    ("7z020", "clg400", "-1") as Vivado writes them."""
    m = re.match(r"xc(7z\d+)([a-z]+\d+)(-\d+)", part)
    if m:
        return m.group(1), m.group(2), m.group(3)
    pieces = part.split("-")
    return pieces[0], pieces[1] if len(pieces) > 1 else "", "-" + pieces[2] if len(pieces) > 2 else ""


# ------------------------------------------------------------------------------------ parsing
@dataclass
class Handoff:
    """What :func:`parse_hwh` reads: pynq's ``ip_dict`` and ``clock_dict``, the PS's name and
    family, and every module's parameters and AXI4-Stream bus names (``streams``: bus name ->
    [(cell, interface, "INITIATOR"|"TARGET")]), which the fake uses to wire its devices."""

    ip_dict: dict
    clock_dict: dict
    ps_name: str
    ps: str
    parameters: dict
    streams: dict


def _ps_of(modtype: str) -> str | None:
    for fam, mt in PS_MODTYPE.items():
        if mt == modtype:
            return fam
    return None


def parse_hwh(source: str | os.PathLike) -> Handoff:
    """Parse an ``.hwh`` file (path) or text the way pynq's hwh parser does (see the module
    docstring). ``ValueError`` when it is not an ``.hwh`` of a full design."""
    try:
        if isinstance(source, str) and source.lstrip().startswith("<"):
            root = ET.fromstring(source)
        else:
            root = ET.parse(source).getroot()
    except ET.ParseError as err:
        raise ValueError(f"not a hardware hand-off file ({err})") from None
    modules = {}
    for mod in root.iter("MODULE"):
        params = {p.get("NAME"): p.get("VALUE") for p in mod.findall("./PARAMETERS/*[@NAME][@VALUE]")}
        modules[mod.get("INSTANCE")] = (mod.get("FULLNAME", "").lstrip("/"), mod.get("VLNV"), params, mod)
    ps_mod = next((m for m in root.iter("MODULE") if _ps_of(m.get("MODTYPE", ""))), None)
    if ps_mod is None:
        raise ValueError("no processing system (processing_system7 / zynq_ultra_ps_e) in the .hwh")
    family = _ps_of(ps_mod.get("MODTYPE"))
    ps_name = ps_mod.get("FULLNAME", "").lstrip("/")
    ip_dict: dict = {}
    for rng in ps_mod.iter("MEMRANGE"):
        inst = rng.get("INSTANCE")
        if inst not in modules:
            continue
        full_name, vlnv, params, _ = modules[inst]
        base, high = int(rng.get("BASEVALUE"), 16), int(rng.get("HIGHVALUE"), 16)
        ip_dict[full_name] = {"fullpath": full_name, "type": vlnv, "bdtype": None, "state": None,
                              "addr_range": high - base + 1, "phys_addr": base,
                              "mem_id": rng.get("SLAVEBUSINTERFACE"), "memtype": rng.get("MEMTYPE"),
                              "gpio": {}, "interrupts": {}, "parameters": dict(params),
                              "registers": {}}
    ip_dict[ps_name] = {"gpio": {}, "interrupts": {},
                        "parameters": dict(modules[ps_mod.get("INSTANCE")][2]),
                        "type": ps_mod.get("VLNV")}
    _add_interrupts(root, ps_mod, family, ip_dict, modules)
    ps_params = modules[ps_mod.get("INSTANCE")][2]
    clock_dict = {}
    for i in range(4):
        if family == "zynq":
            en, d = f"PCW_FPGA_FCLK{i}_ENABLE", f"PCW_FCLK{i}_PERIPHERAL_DIVISOR{{}}"
        else:
            en, d = f"PSU__FPGA_PL{i}_ENABLE", f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR{{}}"
        clock_dict[i] = {"enable": int(ps_params[en]),
                         "divisor0": int(ps_params[d.format(0)]), "divisor1": int(ps_params[d.format(1)])}
    streams: dict = {}
    for inst, (full, _, _, mod) in modules.items():
        for bi in mod.findall("./BUSINTERFACES/BUSINTERFACE"):
            if bi.get("VLNV", "").startswith("xilinx.com:interface:axis:") and bi.get("BUSNAME"):
                streams.setdefault(bi.get("BUSNAME"), []).append((full, bi.get("NAME"), bi.get("TYPE")))
    return Handoff(ip_dict=ip_dict, clock_dict=clock_dict, ps_name=ps_name, ps=family,
                   parameters={m[0]: m[2] for m in modules.values()}, streams=streams)


def _add_interrupts(root, ps_mod, family, ip_dict, modules) -> None:
    """pynq's interrupt tracing: from the PS interrupt pin's net through an xlconcat's inputs
    (in order) to the pins driving them; ``ip_dict[cell]["interrupts"][pin]``."""
    nets: dict = {}
    for inst, (full, _, _, mod) in modules.items():
        for port in mod.iter("PORT"):
            nets.setdefault(port.get("SIGNAME"), set()).add(f"{full}/{port.get('NAME')}")
    pins = {p: net for net, ps in nets.items() for p in ps}
    concats = {full: int(params.get("NUM_PORTS", 0)) for full, vlnv, params, mod in modules.values()
               if mod.get("MODTYPE") == "xlconcat"}
    ps_full = ps_mod.get("FULLNAME", "").lstrip("/")
    irq_pin = "IRQ_F2P" if family == "zynq" else "pl_ps_irq0"
    net = pins.get(f"{ps_full}/{irq_pin}")
    if net is None:
        return
    concat = next((p.rsplit("/", 1)[0] for p in nets.get(net, ())
                   if p.endswith("/dout") and p.rsplit("/", 1)[0] in concats), None)
    sources = []
    if concat is None:
        sources = [(p, 0) for p in nets[net] if p != f"{ps_full}/{irq_pin}"]
    else:
        for i in range(concats[concat]):
            for p in nets.get(pins.get(f"{concat}/In{i}"), ()):
                sources.append((p, i))
    raw = [b + i for b, n in IRQ_LINES[family] for i in range(n)]   # GIC numbers of the pin's lines
    for pin, index in sources:
        block, _, name = pin.rpartition("/")
        if block in ip_dict and block != ps_full:
            ip_dict[block]["interrupts"][name] = {"controller": "", "index": index, "fullpath": pin,
                                                  "raw_irq": raw[index]}
