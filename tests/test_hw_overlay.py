"""The PYNQ overlay driver, end to end against the register-level fake (no board needed)."""
from __future__ import annotations

import numpy as np
import pytest

from ohq_pynq.errors import ConfigError, HardwareError
from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw import regmap as rm
from ohq_pynq.hw.accelerator import Requant, make_accelerator
from ohq_pynq.hw.fake_pynq import FakePynq, unpack_input
from ohq_pynq.hw.overlay import OverlayAccelerator, find_bitstream
from ohq_pynq.hw.sim import SimAccelerator


@pytest.fixture
def bitfile(tmp_path):
    path = tmp_path / "ohq.bit"
    path.write_bytes(b"\x00\x09\x0f\xf0fake bitstream")
    return path


def _acc(bitfile, **fake):
    board = fake.pop("board", "pynq-z2")
    timeout = fake.pop("timeout", 0.5)
    return OverlayAccelerator(board=board, bitstream=bitfile, pynq_module=FakePynq(board=board, **fake),
                              timeout=timeout, energy_window=0.02)


def _tensors(rng, layer, bits):
    lo, hi = cm.act_range(bits, layer.in_signed)
    q = cm.weight_range(bits)[1]
    x = rng.integers(lo, hi + 1, size=(layer.h, layer.w, layer.cin))
    w = rng.integers(-q, q + 1, size=(layer.cout, layer.cin_g, layer.kernel, layer.kernel))
    rq = Requant(bias=rng.integers(-3000, 3000, layer.cout), mult=rng.integers(1, 3000, layer.cout),
                 shift=rng.integers(8, 18, layer.cout), relu=layer.relu, out_bits=layer.out_bits,
                 out_signed=layer.out_signed, in_signed=layer.in_signed)
    return x, w, rq


LAYERS = [
    cm.ConvLayer(cin=13, cout=11, h=7, w=6, kernel=3, pads=(1, 1, 1, 1), out_bits=4, relu=True),
    cm.ConvLayer(cin=6, cout=6, h=9, w=9, kernel=5, stride=2, pads=(2, 2, 1, 1), groups=6,
                 in_signed=False),
    cm.ConvLayer(cin=40, cout=20, h=1, w=1),
    cm.ConvLayer(cin=64, cout=200, h=6, w=200, kernel=3, pads=(1, 1, 1, 1)),   # tiled on pynq-z2
]


@pytest.mark.parametrize("bits", [4, 8])
def test_driver_matches_the_simulator_bit_for_bit_and_counter_for_counter(bitfile, rng, bits):
    acc, sim = _acc(bitfile), SimAccelerator("pynq-z2")
    for layer in LAYERS:
        layer = cm.ConvLayer(**{**layer.__dict__, "out_bits": layer.out_bits})
        x, w, rq = _tensors(rng, layer, bits)
        y, m = acc.run_layer(layer, bits, x, w, rq)
        ys, ms = sim.run_layer(layer, bits, x, w, rq)
        assert np.array_equal(y, ys), layer
        assert (m.cycles, m.bytes_in, m.bytes_out, m.mac_cycles, m.runs) == \
            (ms.cycles, ms.bytes_in, ms.bytes_out, ms.mac_cycles, ms.runs)
        assert m.seconds == pytest.approx(m.cycles / 100e6)
        assert m.joules is None and m.in_stall_cycles == 3 * m.runs
    assert acc.describe().backend == "pynq" and acc.read_power() is None
    assert acc.describe().bitstream_sha256 and not acc.describe().deterministic
    acc.close()


def test_driver_programs_registers_by_name_and_reuses_buffers(bitfile, rng):
    fake = FakePynq(board="pynq-z2")
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=fake)
    layer = LAYERS[0]
    x, w, rq = _tensors(rng, layer, 8)
    acc.run_layer(layer, 8, x, w, rq)
    acc.run_layer(layer, 8, x, w, rq)
    dev = fake.overlays[0].devices[8]
    names = [n for n, _ in dev.writes]
    assert set(rm.CONFIG_REGISTERS) <= set(names) and names.count("CTRL") == 2
    assert dict(dev.writes[:len(rm.CONFIG_REGISTERS)]) == layer.registers()
    assert len(fake.buffers) == 2               # one input and one output buffer, reused
    assert type(fake.overlays[0].ohq_int8).__name__ == "OhqConvIP"   # bound by bindto
    acc.close()
    assert all(b.freed for b in fake.buffers)


@pytest.mark.parametrize("layer", [
    cm.ConvLayer(cin=10, cout=6, h=3, w=5, kernel=3, pads=(1, 0, 1, 2), groups=2),
    cm.ConvLayer(cin=11, cout=11, h=4, w=3, kernel=3, pads=(1, 1, 1, 1), groups=11),   # depthwise
    cm.ConvLayer(cin=9, cout=5, h=2, w=2),
])
def test_stream_decoder_inverts_the_packer(rng, layer):
    core = cm.CoreConfig(bits=4, pe=4, simd=4)
    x, w, rq = _tensors(rng, layer, 4)
    data = cm.pack_input(x, w, rq.bias, rq.mult, rq.shift, layer, core)
    for got, want in zip(unpack_input(data, layer, core), (x, w, rq.bias, rq.mult, rq.shift)):
        assert np.array_equal(got, want)


def test_64_bit_counters_are_read_lo_and_hi(bitfile, rng):
    acc = _acc(bitfile, cycle_offset=5 << 32)
    x, w, rq = _tensors(rng, LAYERS[2], 8)
    _, m = acc.run_layer(LAYERS[2], 8, x, w, rq)
    _, ms = SimAccelerator("pynq-z2").run_layer(LAYERS[2], 8, x, w, rq)
    assert m.cycles == ms.cycles + (5 << 32)


def test_ap_done_never_coming_is_a_timeout_hardware_error(bitfile, rng):
    acc = _acc(bitfile, hang=True, timeout=0.2)
    x, w, rq = _tensors(rng, LAYERS[2], 8)
    with pytest.raises(HardwareError, match="ap_done did not happen within 0.2 s") as err:
        acc.run_layer(LAYERS[2], 8, x, w, rq)
    assert err.value.exit_code == 3


def test_dma_error_and_wrong_magic_are_hardware_errors(bitfile, rng):
    acc = _acc(bitfile, dma_error=True)
    x, w, rq = _tensors(rng, LAYERS[2], 8)
    with pytest.raises(HardwareError, match="DMA reported an error"):
        acc.run_layer(LAYERS[2], 8, x, w, rq)
    with pytest.raises(HardwareError, match="MAGIC"):
        _acc(bitfile, magic=0xDEADBEEF)


def test_long_streams_are_sent_in_dma_sized_chunks(bitfile, rng):
    acc = _acc(bitfile, dma_max_size=256)
    layer = LAYERS[0]
    x, w, rq = _tensors(rng, layer, 8)
    y, _ = acc.run_layer(layer, 8, x, w, rq)
    ys, _ = SimAccelerator("pynq-z2").run_layer(layer, 8, x, w, rq)
    assert np.array_equal(y, ys)


def test_missing_bitstream_board_or_core(tmp_path, bitfile, rng):
    with pytest.raises(HardwareError, match="no bitstream for board"):
        find_bitstream("no-such-board")
    with pytest.raises(HardwareError, match="not found"):
        OverlayAccelerator(board="zcu104", bitstream=tmp_path / "x.bit", pynq_module=FakePynq())
    only8 = FakePynq(board="pynq-z2", cores={8: cm.CoreConfig(bits=8)})
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=only8)
    x, w, rq = _tensors(rng, LAYERS[2], 4)
    with pytest.raises(ConfigError, match="no 4-bit core"):
        acc.run_layer(LAYERS[2], 4, x, w, rq)


def test_energy_from_rails_matches_the_energy_deposited(bitfile, rng):
    acc = _acc(bitfile, board="zcu104")
    info = acc.describe()
    assert info.rails == ("12V",) and info.has_energy
    layer = cm.ConvLayer(cin=64, cout=64, h=16, w=16, kernel=3, pads=(1, 1, 1, 1))
    x, w, rq = _tensors(rng, layer, 8)
    _, m = acc.run_layer(layer, 8, x, w, rq)
    want = SimAccelerator("zcu104").measure(layer, 8).joules
    assert m.joules == pytest.approx(want, rel=0.1)
    assert acc.read_power().total == pytest.approx(7.5, abs=1.0)
    acc.close()


def test_factory_builds_the_overlay_backend(bitfile):
    acc = make_accelerator("pynq", board="kv260", bitstream=bitfile,
                           pynq_module=FakePynq(board="kv260"))
    assert acc.describe().board == "kv260" and acc.describe().rails == ("power1",)
    acc.close()
