"""Measure RTL cycles of a table of layer shapes (`make -C vivado cycles`).

Runs each core configuration under Icarus + cocotb (outputs checked bit-exactly against
ohq_pynq.hw.core_model), prints a table and writes vivado/build/cycles.json: one row per
(layer, core) with the shape, rtl_cycles (start->done summed over the layer's runs, incl.
loading params and weights; a layer runs as the driver plans it, ohq_pynq/hw/tiling.py, e.g. a
Cin=3 stem as im2col), roof_cycles = MACs / (PE * SIMD * pack), utilisation = roof_cycles /
rtl_cycles, mac_utilisation = roof_cycles / MAC-active cycles (lane occupancy) and model_cycles
(ohq_pynq/hw/cycle_model.py, which must equal rtl_cycles).

    python vivado/tools/cycles.py [--only SUBSTRING] [--subset] [--core NAME] [--out PATH]
    python vivado/tools/cycles.py --merge a.json b.json --out PATH    # join/update rows

``--subset`` runs the few rows of SUBSET (what CI regenerates, vivado/tb/test_cycle_table.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

VIVADO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(VIVADO / "tb"), str(VIVADO.parent)]

from ohq_pynq.hw import core_model as cm  # noqa: E402
from ohq_pynq.hw import cycle_model  # noqa: E402
from ohq_pynq.hw.tiling import plan_layer  # noqa: E402
from ohq_sim import run_cocotb  # noqa: E402

# PYNQ-Z2-sized cores (64-bit HP port); memories large enough for every shape below.
CORES = {
    "int8_pe8_simd8": dict(BITS=8, PE=8, SIMD=8, BUS_BYTES=8),
    "int4_pe8_simd8": dict(BITS=4, PE=8, SIMD=8, BUS_BYTES=8),
}
MEMORIES = dict(MAX_ROW_WORDS=1024, MAX_WDEPTH=4096, MAX_TILES=256)


def C(name, cin, cout, hw, k, s=1, groups=1, pad=None):
    p = (k // 2) if pad is None else pad
    return name, cm.ConvLayer(cin=cin, cout=cout, h=hw, w=hw, kernel=k, stride=s,
                              pads=(p, p, p, p), groups=groups, in_signed=False, relu=True)


# ResNet-18 / MobileNet / EfficientNet-like shapes, spatially scaled down so the table simulates
# in minutes (small maps make the weight load and fixed costs weigh more than in the real nets).
LAYERS = [
    C("resnet_stem_7x7_s2", 3, 64, 16, 7, 2),
    C("resnet_3x3_64", 64, 64, 12, 3),
    C("resnet_3x3_64_s2_128", 64, 128, 12, 3, 2),
    C("resnet_1x1_64_s2_128", 64, 128, 12, 1, 2, pad=0),
    C("resnet_3x3_128", 128, 128, 6, 3),
    C("resnet_3x3_32_small", 32, 32, 8, 3),
    C("mobilenet_pw_1x1_32_64", 32, 64, 12, 1, pad=0),
    C("mobilenet_dw_3x3_32", 32, 32, 16, 3, groups=32),
    C("mobilenet_dw_3x3_32_s2", 32, 32, 16, 3, 2, groups=32),
    C("mobilenet_dw_5x5_32", 32, 32, 12, 5, groups=32),
    # MobileNetV3 / EfficientNet: wide depthwise, 5x5 stride 2, squeeze-excite 1x1 on 1x1.
    C("mbv3_dw_3x3_88", 88, 88, 14, 3, groups=88),
    C("mbv3_dw_5x5_96_s2", 96, 96, 14, 5, 2, groups=96),
    C("effnet_dw_3x3_144_s2", 144, 144, 12, 3, 2, groups=144),
    C("mbv3_dw_5x5_240", 240, 240, 8, 5, groups=240),
    C("mbv3_se_1x1_96_24", 96, 24, 1, 1, pad=0),
    C("mbv3_se_1x1_24_96", 24, 96, 1, 1, pad=0),
    C("fc_512_10", 512, 10, 1, 1, pad=0),
]
# Rows CI regenerates from the RTL on every run (a few seconds of simulation per core).
SUBSET = ("mobilenet_dw_3x3_32", "mbv3_se_1x1_96_24", "fc_512_10", "mobilenet_pw_1x1_32_64")


def core_of(params: dict) -> cm.CoreConfig:
    return cm.CoreConfig(bits=params["BITS"], pe=params["PE"], simd=params["SIMD"],
                         bus_bytes=params["BUS_BYTES"],
                         **{k.lower(): v for k, v in MEMORIES.items()})


def simulate(name: str, params: dict, layers: list, seed: int = 1) -> list[dict] | None:
    """Run ``layers`` (ConvLayer) back to back on the RTL built with ``params`` (Icarus + cocotb,
    outputs checked bit-exactly); the counters of each run, or None if the simulation failed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "counters.json"
        spec = json.dumps([dataclasses.asdict(l) for l in layers])
        total, failed = run_cocotb(name, params, test_module="cycles_tb", seed=seed,
                                   extra_env={"OHQ_CYCLES_LAYERS": spec, "OHQ_CYCLES_OUT": str(out)})
        if failed or not out.exists():
            return None
        return [m["counters"] for m in json.loads(out.read_text())]


def measure_table(layers: list, cores: dict = CORES, tag: str = "cycles") -> list[dict] | None:
    """RTL rows for ``layers`` ((name, ConvLayer)) on each of ``cores``: every layer runs as the
    driver plans it (its runs back to back), outputs checked; None if a simulation failed."""
    rows = []
    for core_name, params in cores.items():
        core = core_of(params)
        # Outputs at the core's width, as OQA profiles a layer (the next layer runs at it too).
        named = [(n, dataclasses.replace(l, out_bits=params["BITS"])) for n, l in layers]
        plans = [plan_layer(l, core) for _, l in named]
        runs = [t.layer for p in plans for t in p.tiles]
        t0 = time.time()
        measured = simulate(f"{tag}_{core_name}", {**params, **MEMORIES}, runs)
        if measured is None:
            print(f"{core_name}: simulation failed", file=sys.stderr)
            return None
        pos = 0
        for (name, layer), plan in zip(named, plans):
            cnt = measured[pos:pos + plan.runs]
            pos += plan.runs
            geo = cm.geometry(layer, core)
            rtl = sum(c["CYCLES"] for c in cnt)
            mac = sum(c["MAC_ACTIVE"] for c in cnt)
            stream = sum(cm.geometry(t.layer, core).in_beats for t in plan.tiles)
            rows.append({
                "name": name, "kernel": layer.kernel, "stride": layer.stride, "cin": layer.cin,
                "cout": layer.cout, "h": layer.h, "w": layer.w, "groups": layer.groups,
                "pads": list(layer.pads), "out_bits": layer.out_bits, "bits": core.bits,
                "pe": core.pe, "simd": core.simd, "bus_bytes": core.bus_bytes,
                "max_row_words": core.max_row_words, "max_wdepth": core.max_wdepth,
                "max_tiles": core.max_tiles, "macs": layer.macs,
                "lowering": plan.lowering, "runs": plan.runs,
                "mode": "depthwise" if geo.depthwise else
                        ("weight-streaming" if cm.geometry(plan.tiles[0].layer, core).ws else "line-buffer"),
                "stream_cycles": stream,
                "rtl_cycles": rtl, "mac_active_cycles": mac,
                "in_stall_cycles": sum(c["IN_STALL"] for c in cnt),
                "out_stall_cycles": sum(c["OUT_STALL"] for c in cnt),
                "model_cycles": sum(cycle_model.cycles(t.layer, core) for t in plan.tiles),
                "roof_cycles": geo.roof_cycles,
                "utilisation": round(geo.roof_cycles / rtl, 4),
                "mac_utilisation": round(geo.roof_cycles / mac, 4),
            })
        print(f"{core_name}: {len(runs)} runs simulated in {time.time() - t0:.0f} s", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=VIVADO / "build" / "cycles.json")
    parser.add_argument("--only", default=None, help="substring filter on layer names")
    parser.add_argument("--subset", action="store_true", help="only the rows CI regenerates")
    parser.add_argument("--core", default=None, choices=sorted(CORES), help="one core only")
    parser.add_argument("--merge", type=Path, nargs="*", default=(),
                        help="instead of simulating, merge these outputs (e.g. one per --core)")
    args = parser.parse_args(argv)
    layers = [(n, l) for n, l in LAYERS if (not args.only or args.only in n)
              and (not args.subset or n in SUBSET)]
    if args.merge:
        # Later files replace the rows (name, bits) of earlier ones: merge the per-core runs, or
        # update a few re-measured rows of the reference table (--merge cycles_reference.json new.json).
        merged: dict = {}
        for p in args.merge:
            for r in json.loads(p.read_text()):
                merged[(r["name"], r["bits"])] = r
        order = [n for n, _ in LAYERS]
        rows = sorted(merged.values(), key=lambda r: (-r["bits"], order.index(r["name"])))
    else:
        cores = {args.core: CORES[args.core]} if args.core else CORES
        rows = measure_table(layers, cores)
    if rows is None:
        return 1
    hdr = f"{'layer':24s} {'bits':>4s} {'k':>2s} {'s':>2s} {'cin':>4s} {'cout':>4s} {'hw':>3s} " \
          f"{'mode':>16s} {'rtl_cycles':>10s} {'model':>9s} {'roof':>9s} {'util':>6s}"
    print(hdr)
    for r in rows:
        mode = r["mode"] + (f"/{r['lowering']}" if r["lowering"] else "")
        print(f"{r['name']:24s} {r['bits']:4d} {r['kernel']:2d} {r['stride']:2d} {r['cin']:4d} "
              f"{r['cout']:4d} {r['h']:3d} {mode:>16s} {r['rtl_cycles']:10d} {r['model_cycles']:9d} "
              f"{r['roof_cycles']:9.0f} {100 * r['utilisation']:5.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(r["rtl_cycles"] == r["model_cycles"] for r in rows) else 2


if __name__ == "__main__":
    raise SystemExit(main())
