"""Build and run the ohq_conv RTL under Icarus Verilog with cocotb (shared by the pytest driver
and vivado/tools/cycles.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

TB = Path(__file__).resolve().parent
VIVADO = TB.parent
ROOT = VIVADO.parent
RTL = VIVADO / "rtl"
SOURCES = [RTL / n for n in ("ohq_conv.v", "ohq_conv_engine.v", "ohq_gearbox.v", "ohq_out_packer.v",
                                     "ohq_mul_word.v")]


def run_cocotb(name: str, params: dict, test_module: str = "conv_tb", testcase=None,
               extra_env: dict | None = None, seed: int = 1234) -> tuple[int, int]:
    """Build ``ohq_conv`` with ``params`` into vivado/build/sim/<name>, run the cocotb module
    ``test_module`` and return (tests run, tests failed)."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    runner = get_runner("icarus")
    build_dir = VIVADO / "build" / "sim" / name
    runner.build(sources=SOURCES, includes=[RTL], hdl_toplevel="ohq_conv", parameters=params,
                 build_dir=build_dir, always=True, timescale=("1ns", "1ps"))
    env = {"PYTHONPATH": os.pathsep.join([str(TB), str(ROOT)] + sys.path),
           "OHQ_TB_SEED": str(seed)}
    env.update(extra_env or {})
    try:
        results = runner.test(hdl_toplevel="ohq_conv", test_module=test_module,
                              testcase=testcase, build_dir=build_dir, test_dir=build_dir,
                              extra_env=env, seed=seed)
    except SystemExit:   # the runner exits when a test failed; the results file says which
        results = build_dir / "results.xml"
    return get_results(results)
