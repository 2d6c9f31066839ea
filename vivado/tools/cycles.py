"""Measure RTL cycles of a table of layer shapes (`make -C vivado cycles`).

Runs each core configuration under Icarus + cocotb (outputs checked bit-exactly against
ohq_pynq.hw.core_model), prints a table and writes vivado/build/cycles.json: one row per
(layer, core) with the shape, rtl_cycles (start->done, incl. loading params and weights),
roof_cycles = MACs / (PE * SIMD * pack), utilisation = roof_cycles / rtl_cycles and
mac_utilisation = roof_cycles / MAC-active cycles (lane occupancy, without load and drain).
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


# ResNet-18 / MobileNet-like shapes, spatially scaled down so the table simulates in minutes.
LAYERS = [
    C("resnet_stem_7x7_s2", 3, 64, 16, 7, 2),
    C("resnet_3x3_64", 64, 64, 12, 3),
    C("resnet_3x3_64_s2_128", 64, 128, 12, 3, 2),
    C("resnet_1x1_64_s2_128", 64, 128, 12, 1, 2, pad=0),
    C("resnet_3x3_128", 128, 128, 6, 3),
    C("resnet_3x3_32_small", 32, 32, 8, 3),
    C("mobilenet_pw_1x1_32_64", 32, 64, 12, 1, pad=0),
    C("mobilenet_dw_3x3_32", 32, 32, 12, 3, groups=32),
    C("mobilenet_dw_3x3_32_s2", 32, 32, 12, 3, 2, groups=32),
    C("mobilenet_dw_5x5_32", 32, 32, 12, 5, groups=32),
    # MobileNetV3 / EfficientNet shapes: wide depthwise, 5x5 stride 2, squeeze-excite 1x1 on 1x1.
    C("mbv3_dw_3x3_88", 88, 88, 8, 3, groups=88),
    C("mbv3_dw_5x5_96_s2", 96, 96, 10, 5, 2, groups=96),
    C("effnet_dw_3x3_144_s2", 144, 144, 8, 3, 2, groups=144),
    C("mbv3_dw_5x5_240", 240, 240, 6, 5, groups=240),
    C("mbv3_se_1x1_96_24", 96, 24, 1, 1, pad=0),
    C("mbv3_se_1x1_24_96", 24, 96, 1, 1, pad=0),
    C("fc_512_10", 512, 10, 1, 1, pad=0),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=VIVADO / "build" / "cycles.json")
    parser.add_argument("--only", default=None, help="substring filter on layer names")
    args = parser.parse_args(argv)
    base_layers = [(n, l) for n, l in LAYERS if not args.only or args.only in n]
    rows = []
    for core_name, params in CORES.items():
        # Outputs at the core's width, as OQA profiles a layer (the next layer runs at it too).
        layers = [(n, dataclasses.replace(l, out_bits=params["BITS"])) for n, l in base_layers]
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "counters.json"
            spec = json.dumps([dataclasses.asdict(l) for _, l in layers])
            total, failed = run_cocotb(f"cycles_{core_name}", {**params, **MEMORIES},
                                       test_module="cycles_tb",
                                       extra_env={"OHQ_CYCLES_LAYERS": spec,
                                                  "OHQ_CYCLES_OUT": str(out)})
            if failed or not out.exists():
                print(f"{core_name}: simulation failed", file=sys.stderr)
                return 1
            measured = json.loads(out.read_text())
        core = cm.CoreConfig(bits=params["BITS"], pe=params["PE"], simd=params["SIMD"],
                             bus_bytes=params["BUS_BYTES"])
        for (name, layer), m in zip(layers, measured):
            geo = cm.geometry(layer, core)
            cnt = m["counters"]
            rows.append({
                "name": name, "kernel": layer.kernel, "stride": layer.stride, "cin": layer.cin,
                "cout": layer.cout, "h": layer.h, "w": layer.w, "groups": layer.groups,
                "pads": list(layer.pads), "out_bits": layer.out_bits, "bits": core.bits, "pe": core.pe, "simd": core.simd,
                "bus_bytes": core.bus_bytes, "macs": layer.macs,
                "in_bytes": geo.in_bytes, "out_bytes": geo.out_bytes,
                "rtl_cycles": cnt["CYCLES"], "mac_active_cycles": cnt["MAC_ACTIVE"],
                "in_stall_cycles": cnt["IN_STALL"], "out_stall_cycles": cnt["OUT_STALL"],
                "roof_cycles": geo.roof_cycles,
                "utilisation": round(geo.roof_cycles / cnt["CYCLES"], 4),
                "mac_utilisation": round(geo.roof_cycles / cnt["MAC_ACTIVE"], 4),
            })
        print(f"{core_name}: {len(layers)} layers simulated in {time.time() - t0:.0f} s",
              file=sys.stderr)
    hdr = f"{'layer':26s} {'bits':>4s} {'k':>2s} {'s':>2s} {'cin':>4s} {'cout':>4s} {'hw':>3s} {'g':>3s} " \
          f"{'rtl_cycles':>10s} {'roof':>9s} {'util':>6s}"
    print(hdr)
    for r in rows:
        print(f"{r['name']:26s} {r['bits']:4d} {r['kernel']:2d} {r['stride']:2d} {r['cin']:4d} "
              f"{r['cout']:4d} {r['h']:3d} {r['groups']:3d} {r['rtl_cycles']:10d} "
              f"{r['roof_cycles']:9.0f} {100 * r['utilisation']:5.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
