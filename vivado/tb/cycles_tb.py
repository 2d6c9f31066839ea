"""cocotb module behind `make cycles`: runs the layers listed in OHQ_CYCLES_LAYERS (JSON list of
ConvLayer fields) back to back, checks each output bit-exactly, and writes the performance
counters to OHQ_CYCLES_OUT (JSON list, one object per layer)."""
from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from conv_tb import Bench
from ohq_pynq.hw import core_model as cm


@cocotb.test()
async def cycles(dut):
    tb = Bench(dut)
    tb.check_cycles = False     # compared with the cycle model by the caller, row by row
    await tb.start()
    rng = np.random.default_rng(int(os.environ.get("OHQ_TB_SEED", "1")))
    rows = []
    for spec in json.loads(os.environ["OHQ_CYCLES_LAYERS"]):
        spec = dict(spec)
        spec["pads"] = tuple(spec["pads"])
        layer = cm.ConvLayer(**spec)
        cnt, geo = await tb.run_layer(layer, rng, timeout_us=100_000)
        rows.append({"counters": cnt, "mac_steps": geo.mac_steps})
        dut._log.info("%s: %s", layer, cnt)
    with open(os.environ["OHQ_CYCLES_OUT"], "w", encoding="utf-8") as f:
        json.dump(rows, f)
