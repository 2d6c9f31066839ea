"""The hardware interface: requantization helpers, layer conversion, factory, isolation of pynq."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ohq_pynq.errors import ConfigError, DataError
from ohq_pynq.graph import load_network
from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw.accelerator import (Accelerator, HardwareInfo, Measurement, PowerSample, Requant,
                                     conv_layer, make_accelerator, quantize_multiplier)
from conftest import build_small_cnn

PKG = Path(__file__).resolve().parents[1] / "ohq_pynq"


def test_quantize_multiplier_is_accurate_and_in_range():
    m = np.array([1e-6, 3.7e-4, 0.01, 0.5, 1.0, 7.25, 1000.0, 0.0])
    mult, shift = quantize_multiplier(m)
    assert mult.max() <= 0xFFFF and shift.min() >= 0 and shift.max() <= cm.MAX_SHIFT
    approx = mult / np.exp2(shift)
    assert np.allclose(approx[:-1], m[:-1], rtol=2e-5)
    assert mult[-1] == 0
    with pytest.raises(DataError, match="exceeds"):
        quantize_multiplier([70000.0])
    with pytest.raises(DataError, match="finite"):
        quantize_multiplier([-1.0])


def test_requant_from_scales_matches_float_rescaling():
    acc = np.arange(-5000, 5000, 37)
    rq = Requant.from_scales(np.zeros(1, np.int64), [0.0123], out_bits=8)
    y = cm.requantize(acc[:, None], rq.mult, rq.shift, False, 8, True)[:, 0]
    want = np.clip(np.floor(acc * 0.0123 + 0.5), -128, 127)
    assert np.abs(y - want).max() <= 1


def test_conv_layer_from_graph_layers():
    net = load_network(build_small_cnn())
    layers = {l.name: conv_layer(l, Requant.identity(l.cout, in_signed=False, relu=True))
              for l in net.layers}
    dw = layers["dw"]
    assert (dw.groups, dw.stride, dw.kernel, dw.h) == (8, 2, 3, 16)
    assert dw.relu and not dw.in_signed
    fc = layers["fc"]
    assert (fc.h, fc.w, fc.kernel, fc.cin, fc.cout) == (1, 1, 1, 16, 10)
    same = conv_layer(cm.ConvLayer(cin=2, cout=2, h=2, w=2), Requant.identity(2, out_bits=4))
    assert same.out_bits == 4


def test_conv_layer_refuses_what_the_core_cannot_express():
    net = load_network(build_small_cnn())
    layer = net.layers[0]
    from dataclasses import replace
    with pytest.raises(ConfigError, match="square"):
        conv_layer(replace(layer, kernel=(3, 1)))
    with pytest.raises(ConfigError, match="dilat"):
        conv_layer(replace(layer, dilation=(2, 2)))


def test_factory_and_protocol():
    acc = make_accelerator("sim", board="ultra96v2")
    assert isinstance(acc, Accelerator)
    info = acc.describe()
    assert isinstance(info, HardwareInfo) and info.backend == "sim" and info.deterministic
    from ohq_pynq.hw.boards import get_board
    assert info.fclk_hz == get_board("ultra96v2").fclk_hz and set(info.cores) == {4, 8}
    other = make_accelerator("sim", board="pynq-z2").describe()
    assert info.hardware_id != other.hardware_id
    assert info.hardware_id == make_accelerator("sim", board="Ultra96").describe().hardware_id
    js = info.to_json()
    assert js["cores"]["8"]["pe"] == info.cores[8].pe and js["hardware_id"] == info.hardware_id
    with pytest.raises(ConfigError, match="unknown accelerator backend"):
        make_accelerator("gpu")


def test_measurement_and_power_sample_values():
    m = Measurement(cycles=200, seconds=2e-6, bytes_in=64, bytes_out=16, joules=None)
    assert m.bytes == 80 and m.to_json()["joules"] is None
    assert PowerSample(t=0.0, watts={"12V": 5.5, "x": 0.5}).total == pytest.approx(6.0)


def test_only_overlay_and_power_import_pynq():
    """Algorithms never import pynq; the hw backends that do import it inside functions only."""
    pattern = re.compile(r"^\s*(import pynq|from pynq)", re.M)
    for path in PKG.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(("hw/overlay", "hw/power")):
            top = [l for l in text.splitlines() if re.match(r"^(import pynq|from pynq)", l)]
            assert not top, f"{rel} imports pynq at module level"
        else:
            assert not pattern.search(text), f"{rel} imports pynq"
