"""Expected wall time of the whole job on the boards' ARM cores, estimated from this machine.

No board is at hand, so the estimate scales the per-stage seconds that ``bench/pipeline.py``
measured here (numpy engine rows where present: the engine the armv7 board has) by how much
slower one board core is than one core of this machine, bounded two ways:

* **compute-bound** — the ratio of single-thread float32 GEMM throughput (GFLOP/s): measured here
  with numpy's BLAS, and for the board taken as a fraction of the core's NEON peak;
* **memory-bound** — the ratio of single-thread streaming bandwidth (GB/s, ``np.copyto`` of a
  64 MiB array): measured here; for the board, the DRAM's peak times the fraction one ARM core
  reaches.

The stages mix both (GEMM in convolutions; element-wise ops, im2col copies and Python overhead in
the rest), so the board time is reported as the range between the two scalings. The board figures
are assumptions from the parts' documentation, not measurements — each is listed in
``BOARD_CORES`` with its source. Measuring on a board replaces all of this.

    python bench/board_time.py            # prints a table, writes bench/results/board_time.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Per board: one ARM core's clock (Hz), float32 NEON flops per cycle at peak, the fraction of that
# peak a tuned SGEMM reaches, DRAM peak bandwidth (bytes/s) and the fraction one core streams.
# Sources: Cortex-A9 and Cortex-A53 have a 64-bit NEON datapath, a 128-bit fp32 multiply-
# accumulate issues every 2 cycles: 2 MACs = 4 flops per cycle (ARM Cortex-A9 NEON MPE TRM,
# DDI0409; Cortex-A53 TRM, DDI0500). Clocks: PYNQ-Z2 650 MHz (TUL PYNQ-Z2 reference manual;
# xc7z020-1), ZCU104 1.2 GHz (UG1267), Ultra96-V2 1.5 GHz (Avnet Ultra96-V2 HW user guide),
# KV260 1.333 GHz (UG1089). DRAM: PYNQ-Z2 DDR3 16-bit at 1050 MT/s (2.1 GB/s), ZCU104 PS DDR4
# 64-bit at 2400 MT/s (19.2 GB/s), Ultra96-V2 LPDDR4 32-bit at 2133 MT/s (8.5 GB/s), KV260 DDR4
# 64-bit at 2400 MT/s (19.2 GB/s). Fractions (assumed, typical of OpenBLAS ARMV7/ARMV8 SGEMM and
# of single-core memcpy on these SoCs): 50 % of the NEON peak; 40 % of DRAM on Zynq-7000, 20 %
# on ZynqMP (one A53 cannot keep enough misses in flight to fill a 64-bit DDR4 port).
BOARD_CORES = {
    "pynq-z2": {"cpu": "Cortex-A9", "hz": 650e6, "flops_per_cycle": 4, "gemm_fraction": 0.5,
                "dram_bytes_per_s": 2.1e9, "stream_fraction": 0.4},
    "ultra96v2": {"cpu": "Cortex-A53", "hz": 1.5e9, "flops_per_cycle": 4, "gemm_fraction": 0.5,
                  "dram_bytes_per_s": 8.5e9, "stream_fraction": 0.3},
    "zcu104": {"cpu": "Cortex-A53", "hz": 1.2e9, "flops_per_cycle": 4, "gemm_fraction": 0.5,
               "dram_bytes_per_s": 19.2e9, "stream_fraction": 0.2},
    "kv260": {"cpu": "Cortex-A53", "hz": 1.333e9, "flops_per_cycle": 4, "gemm_fraction": 0.5,
              "dram_bytes_per_s": 19.2e9, "stream_fraction": 0.2},
}


def measure_host() -> dict:
    """Single-thread float32 GEMM GFLOP/s and streaming copy GB/s of this machine (best of 5, in
    CPU time: on a shared machine wall time counts the other processes' turns too)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(40):
            a @ b
        best = min(best, (time.process_time() - t0) / 40)
    gflops = 2 * 512 ** 3 / best / 1e9
    src = np.ones(16 * 2 ** 20, np.float32)            # 64 MiB, far beyond the caches
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(4):
            np.copyto(dst, src)
        best = min(best, time.process_time() - t0)
    gbytes = 4 * 2 * src.nbytes / best / 1e9               # read + write
    return {"gemm_gflops": round(gflops, 1), "stream_gbytes": round(gbytes, 1)}


def board_rates(spec: dict) -> dict:
    return {"gemm_gflops": spec["hz"] * spec["flops_per_cycle"] * spec["gemm_fraction"] / 1e9,
            "stream_gbytes": spec["dram_bytes_per_s"] * spec["stream_fraction"] / 1e9}


def estimate(stages: dict, host: dict, board: dict) -> dict:
    """Per-stage (low, high) seconds on ``board``: the host seconds scaled by the GEMM and the
    bandwidth ratio, the smaller ratio giving the low end."""
    ratios = sorted((host["gemm_gflops"] / board["gemm_gflops"],
                     host["stream_gbytes"] / board["stream_gbytes"]))
    return {k: [round(v * ratios[0], 1), round(v * ratios[1], 1)] for k, v in stages.items()}


def main(argv=None) -> int:
    # one thread, as the stages run on the board (one core; the other serves Jupyter / the DMA)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    pipeline = RESULTS / "pipeline.json"
    if not pipeline.is_file():
        print("run bench/pipeline.py first", file=sys.stderr)
        return 2
    rows = json.loads(pipeline.read_text())["rows"]
    # the numpy-engine rows (onnxruntime hidden) are what armv7 runs; fall back to any row
    numpy_rows = [r for r in rows if r.get("executor") == "numpy"] or rows
    host = measure_host()
    out = {"host": host, "boards": {}, "rows": []}
    for name, spec in BOARD_CORES.items():
        out["boards"][name] = {"cpu": spec["cpu"], **{k: round(v, 2) for k, v in board_rates(spec).items()}}
    print(f"this machine, one thread: SGEMM {host['gemm_gflops']} GFLOP/s, copy {host['stream_gbytes']} GB/s")
    for r in numpy_rows:
        # CPU seconds where recorded (wall seconds grow with the load of a shared machine)
        stages = {k: float(v) for k, v in (r.get("cpu_stages") or r["stages"]).items() if v is not None}
        for name, spec in BOARD_CORES.items():
            est = estimate(stages, host, board_rates(spec))
            total = [round(sum(v[i] for v in est.values()), 1) for i in (0, 1)]
            out["rows"].append({"case": r["case"], "executor": r.get("executor", "auto"),
                                "host_seconds": round(sum(stages.values()), 1), "board": name,
                                "stages": est, "total": total})
            print(f"{r['case']:24s} {name:10s} here {sum(stages.values()):7.1f} s -> "
                  f"{total[0]:8.0f} .. {total[1]:8.0f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "board_time.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'board_time.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
