"""CI check of the cycle model against the RTL: regenerate a subset of the cycle table
(vivado/tools/cycles.py SUBSET, PYNQ-Z2-sized int8 and int4 cores) under Icarus, and require the
cycle model and the committed table (vivado/cycles_reference.json) to equal the fresh counters."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

VIVADO = Path(__file__).resolve().parents[1]

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")


@needs_iverilog
def test_cycle_table_subset_regenerated_from_rtl():
    pytest.importorskip("cocotb_tools")
    pytest.importorskip("cocotbext.axi")
    sys.path.insert(0, str(VIVADO / "tools"))
    try:
        import cycles
    finally:
        sys.path.remove(str(VIVADO / "tools"))
    layers = [(n, l) for n, l in cycles.LAYERS if n in cycles.SUBSET]
    assert len(layers) == len(cycles.SUBSET)
    rows = cycles.measure_table(layers, tag="ci_cycles")
    assert rows is not None, "RTL simulation failed (log above)"
    ref = {(r["name"], r["bits"]): r
           for r in json.loads((VIVADO / "cycles_reference.json").read_text())}
    for r in rows:
        assert r["model_cycles"] == r["rtl_cycles"], r
        assert r["mac_active_cycles"] > 0
        committed = ref[(r["name"], r["bits"])]
        assert committed["rtl_cycles"] == r["rtl_cycles"], (r["name"], r["bits"], "regenerate "
                                                             "vivado/cycles_reference.json")
