"""The PYNQ overlay driver, end to end against the register-level fake (no board needed)."""
from __future__ import annotations

import numpy as np
import pytest

from ohq_pynq.errors import ConfigError, HardwareError
from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw import regmap as rm
from ohq_pynq.hw.accelerator import Requant, make_accelerator
from ohq_pynq.hw.boards import get_board
from ohq_pynq.hw.fake_pynq import FakePynq, unpack_input, write_overlay
from ohq_pynq.hw.overlay import OverlayAccelerator, find_bitstream
from ohq_pynq.hw.sim import SimAccelerator
from ohq_pynq.hw.tiling import plan_layer

DESIGN_OPTIONS = ("cores", "length_width", "core_vlnv", "design")


@pytest.fixture
def bitfile(tmp_path):
    return write_overlay(tmp_path, "pynq-z2")


def _overlay(bitfile, board, **fake):
    """Write the .bit/.hwh of ``board``'s design (with the design options in ``fake``) at
    ``bitfile`` and return the fake pynq for it."""
    design = {k: fake.pop(k) for k in DESIGN_OPTIONS if k in fake}
    write_overlay(bitfile.parent, board, name=bitfile.stem, **design)
    fake.setdefault("sensor_update", 0.01)
    return FakePynq(board=board, **fake)


def _acc(bitfile, **fake):
    board = fake.pop("board", "pynq-z2")
    timeout = fake.pop("timeout", 0.5)
    return OverlayAccelerator(board=board, bitstream=bitfile, pynq_module=_overlay(bitfile, board, **fake),
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
    cm.ConvLayer(cin=9216, cout=12, h=1, w=1, in_signed=False, relu=True),  # int8: input split
    # an AlexNet-style 11x11 stride-4 stem: beyond max_k, so im2col, its weights tiled (int8)
    cm.ConvLayer(cin=3, cout=96, h=23, w=23, kernel=11, stride=4, pads=(2, 2, 2, 2)),
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
        # The counter runs from ap_start: both see the input DMA's start as input stall.
        assert m.in_stall_cycles == ms.in_stall_cycles > 3 * m.runs
        assert m.joules is None
    assert acc.describe().backend == "pynq" and acc.read_power() is None
    assert acc.describe().bitstream_sha256 and not acc.describe().deterministic
    acc.close()


def test_driver_programs_registers_by_name_and_reuses_buffers(bitfile, rng):
    fake = _overlay(bitfile, "pynq-z2")
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=fake)
    layer = LAYERS[0]
    x, w, rq = _tensors(rng, layer, 8)
    acc.run_layer(layer, 8, x, w, rq)
    acc.run_layer(layer, 8, x, w, rq)
    dev = fake.overlays[0].devices[8]
    names = [n for n, _ in dev.writes]
    assert set(rm.CONFIG_REGISTERS) <= set(names) and names.count("CTRL") == 2
    assert dict(dev.writes[:len(rm.CONFIG_REGISTERS)]) == layer.registers()
    assert len(fake.buffers) == 2               # the run's input buffer and the output buffer
    assert type(fake.overlays[0].ohq_int8).__name__ == "OhqConvIP"   # bound by bindto
    acc.close()
    assert all(b.freed for b in fake.buffers)


@pytest.mark.parametrize("bits", [4, 8])
def test_deployed_weights_stay_resident_in_per_run_buffers(bitfile, rng, bits):
    # A network deployed image after image: each run of a layer keeps its own DMA buffer with
    # its weight words written once; per image only params and activations are rewritten. The
    # fake's buffers model the cache (the device reads what was flushed), so stale bytes would
    # break bit-exactness.
    acc, sim = _acc(bitfile), SimAccelerator("pynq-z2")
    layers = [LAYERS[0], LAYERS[3], LAYERS[4]]           # one run, tiled, input split (int8)
    weights = [(layer, *_tensors(rng, layer, bits)[1:]) for layer in layers]
    for image in range(3):
        for layer, w, rq in weights:
            lo, hi = cm.act_range(bits, layer.in_signed)
            x = rng.integers(lo, hi + 1, size=(layer.h, layer.w, layer.cin), dtype=np.int16)
            y, m = acc.run_layer(layer, bits, x, w, rq)
            assert np.array_equal(y, sim.run_layer(layer, bits, x, w, rq)[0]), (image, layer)
    core = acc.drivers[bits].core
    tiles = [t for layer in layers for t in plan_layer(layer, core).tiles]
    assert acc.packer.misses == len(tiles) and acc.packer.hits == 2 * len(tiles)   # packed once
    out_sizes = {cm.geometry(t.layer, core).out_beats * core.bus_bytes for t in tiles}
    fake = acc.pynq
    assert len(fake.buffers) == len(tiles) + len(out_sizes)    # per run in, shared per size out
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


@pytest.mark.parametrize("length_width, chunk", [(8, 248), (12, 4088), (14, 12288), (26, (1 << 26) - 4096)])
def test_long_streams_are_sent_in_aligned_chunks_pynq_accepts(bitfile, rng, length_width, chunk):
    # pynq's DMA channel takes at most (1 << c_sg_length_width) - 1 bytes (odd) per transfer and
    # only starts aligned to the bus width: chunks are that maximum rounded down to 4 KiB
    # (below 4 KiB to the 8-byte bus), and the fake refuses anything else as pynq does.
    acc = _acc(bitfile, length_width=length_width)
    drv = acc.drivers[8]
    assert drv.max_transfer == (1 << length_width) - 1 and drv.chunk == chunk
    sent = []
    send = drv.dma.sendchannel
    real = send.transfer
    send.transfer = lambda buf, start=0, nbytes=0: (sent.append((start, nbytes)), real(buf, start, nbytes))
    layer = cm.ConvLayer(cin=2048, cout=8, h=1, w=1)      # 18.5 KB in, one 8-byte beat out
    x, w, rq = _tensors(rng, layer, 8)
    y, m = acc.run_layer(layer, 8, x, w, rq)
    ys, ms = SimAccelerator("pynq-z2").run_layer(layer, 8, x, w, rq)
    assert np.array_equal(y, ys) and m.cycles == ms.cycles
    assert sum(n for _, n in sent) == m.bytes_in > 12288
    assert all(start % 8 == 0 and n <= drv.max_transfer for start, n in sent)
    assert all(n == chunk for _, n in sent[:-1])
    assert (len(sent) > 1) == (m.bytes_in > chunk)


def test_chunk_sizes_are_the_maximum_rounded_down_to_4_kib_or_the_bus_width():
    from ohq_pynq.hw.overlay import chunk_bytes
    assert chunk_bytes((1 << 26) - 1, 16) == (1 << 26) - 4096
    assert chunk_bytes((1 << 14) - 1, 16) == 12288 and chunk_bytes(4096, 8) == 4096
    assert chunk_bytes(255, 8) == 248 and chunk_bytes(255, 16) == 240
    with pytest.raises(HardwareError, match="below one 16-byte beat"):
        chunk_bytes(15, 16)


def test_the_fake_dma_refuses_what_pynq_refuses(bitfile):
    # The checks of pynq/lib/dma.py's simple-mode channel, against the fake's DMA driver.
    fake = _overlay(bitfile, "zcu104", length_width=14)
    ov = fake.Overlay(str(bitfile))
    ch = ov.dma_int8.sendchannel
    assert ov.dma_int8.buffer_max_size == (1 << 14) - 1
    buf = fake.allocate(shape=(40000,), dtype=np.uint8)
    assert buf.physical_address % 4096 == 0
    with pytest.raises(ValueError, match="exceeds the maximum DMA buffer size 16383"):
        ch.transfer(buf, start=0, nbytes=16384)
    with pytest.raises(RuntimeError, match="unaligned transfers; Starting address must be aligned to 16"):
        ch.transfer(buf, start=16383, nbytes=4096)
    assert "c_sg_length_width" in ov.ip_dict["dma_int8"]["parameters"]


def test_a_narrow_length_register_the_output_does_not_fit_in_is_named(bitfile, rng):
    acc = _acc(bitfile, length_width=8)
    layer = cm.ConvLayer(cin=64, cout=64, h=12, w=12, kernel=3, pads=(1, 1, 1, 1))
    x, w, rq = _tensors(rng, layer, 8)
    with pytest.raises(HardwareError, match="exceeds the DMA's maximum transfer of 255 bytes"):
        acc.run_layer(cm.ConvLayer(cin=64, cout=64, h=12, w=12, kernel=3, pads=(1, 1, 1, 1)), 8, x, w, rq)


def test_missing_bitstream_board_or_core(tmp_path, bitfile, rng):
    with pytest.raises(HardwareError, match="no bitstream for board"):
        find_bitstream("no-such-board")
    with pytest.raises(HardwareError, match="not found"):
        OverlayAccelerator(board="zcu104", bitstream=tmp_path / "x.bit", pynq_module=FakePynq())
    only8 = _overlay(bitfile, "pynq-z2", cores={8: cm.CoreConfig(bits=8)})
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=only8)
    x, w, rq = _tensors(rng, LAYERS[2], 4)
    with pytest.raises(ConfigError, match="no 4-bit core"):
        acc.run_layer(LAYERS[2], 4, x, w, rq)


def test_energy_from_rails_matches_the_energy_deposited(bitfile, rng):
    # The fake's 12V monitor refreshes every 35.2 ms like an INA226 under Linux; the default
    # window (0.5 s) averages >= 12 of its updates.
    fake = _overlay(bitfile, "zcu104", sensor_update=0.0352)
    acc = OverlayAccelerator(board="zcu104", bitstream=bitfile, pynq_module=fake)
    info = acc.describe()
    assert info.rails == ("12V",) and info.has_energy
    layer = cm.ConvLayer(cin=64, cout=64, h=16, w=16, kernel=3, pads=(1, 1, 1, 1))
    x, w, rq = _tensors(rng, layer, 8)
    _, m = acc.run_layer(layer, 8, x, w, rq)
    want = SimAccelerator("zcu104").measure(layer, 8).joules
    r = acc.last_energy
    assert r.updates >= 12 and r.seconds >= 0.49 and r.update_interval == pytest.approx(0.0352)
    assert 0 < r.joules_stderr < 0.3 * r.joules and r.spread_watts > 0
    assert abs(m.joules - want) <= 3 * r.joules_stderr + 0.05 * want
    assert acc.energy_log[-1]["joules"] == m.joules and acc.energy_log[-1]["bits"] == 8
    assert acc.read_power().total == pytest.approx(7.5, abs=1.0)
    acc.close()


def test_factory_builds_the_overlay_backend(bitfile):
    acc = make_accelerator("pynq", board="kv260", bitstream=bitfile,
                           pynq_module=_overlay(bitfile, "kv260"), energy_window=0.02)
    assert acc.describe().board == "kv260" and acc.describe().rails == ("power1",)
    acc.close()


# ------------------------------------------------------------------ the .hwh and the fake's PL
def test_ip_dict_is_parsed_from_the_hwh_of_the_tcl_design(bitfile):
    fake = _overlay(bitfile, "kv260")
    ov = fake.Overlay(str(bitfile))
    ip = ov.ip_dict
    assert ip["ohq_int8"]["phys_addr"] == 0xA001_0000 and ip["ohq_int8"]["addr_range"] == 0x10000
    assert ip["dma_int4"]["phys_addr"] == 0xA002_0000 and ip["dma_int4"]["type"] == "xilinx.com:ip:axi_dma:7.1"
    assert ip["ohq_int4"]["parameters"]["PE"] == str(acc_core(fake, 4).pe)
    assert ip["dma_int8"]["parameters"]["c_addr_width"] == "64"
    assert set(ip["dma_int8"]["interrupts"]) == {"mm2s_introut", "s2mm_introut"}
    assert ip["ohq_int8"]["interrupts"]["interrupt"]["index"] == 3
    assert "device" not in ip["ohq_int8"]                  # registers only through the MMIO
    assert fake.ps.Clocks.fclk0_mhz == pytest.approx(150.0)
    z2 = _overlay(bitfile, "pynq-z2").Overlay(str(bitfile)).ip_dict
    assert z2["ohq_int4"]["phys_addr"] == 0x4000_0000 and z2["dma_int8"]["parameters"]["c_addr_width"] == "32"


def acc_core(fake, bits):
    return fake.board.cores[bits]


def test_mmio_is_word_aligned_and_bounded(bitfile):
    fake = _overlay(bitfile, "pynq-z2")
    ip = fake.Overlay(str(bitfile)).ohq_int8
    assert ip.read(rm.offset("MAGIC")) == rm.MAGIC
    with pytest.raises(MemoryError, match="Unaligned"):
        ip.read(2)
    with pytest.raises(ValueError, match="outside"):
        ip.read(0x10000)


def test_the_driver_binds_its_class_without_dead_register_helpers(bitfile):
    acc = _acc(bitfile)
    ip = acc.drivers[8].ip
    assert type(ip).__name__ == "OhqConvIP" and not hasattr(ip, "read_reg") and not hasattr(ip, "write_reg")


@pytest.mark.parametrize("delta, expect", [
    (1, "reported an error on its output"),      # longer than the armed buffer: DMAIntErr
    (-1, "received 8 bytes, the layer has 16"),   # shorter: S2MM completes with fewer bytes
])
def test_an_output_packet_of_the_wrong_length_is_a_hardware_error(bitfile, rng, delta, expect):
    from ohq_pynq.hw.fake_pynq import Faults
    acc = _acc(bitfile, faults=Faults(out_beats_delta=delta))
    layer = cm.ConvLayer(cin=8, cout=16, h=1, w=1)           # 16 bytes out: two 8-byte beats
    x, w, rq = _tensors(rng, layer, 8)
    with pytest.raises(HardwareError, match=expect):
        acc.run_layer(layer, 8, x, w, rq)


def test_dma_buffers_above_4_gib_need_the_64_bit_addresses_the_tcl_gives_zu_plus(bitfile, rng):
    from ohq_pynq.hw.hwh import overlay_design
    layer = LAYERS[2]
    x, w, rq = _tensors(rng, layer, 8)
    acc = _acc(bitfile, board="kv260", buffer_base=0x8_0000_0000)     # KV260 DDR above 4 GiB
    y, _ = acc.run_layer(layer, 8, x, w, rq)
    assert np.array_equal(y, SimAccelerator("kv260").run_layer(layer, 8, x, w, rq)[0])
    narrow = overlay_design(get_board("kv260"))
    for cell in narrow.cells.values():
        if "c_addr_width" in cell.config:
            cell.config["c_addr_width"] = "32"
    acc32 = _acc(bitfile, board="kv260", buffer_base=0x8_0000_0000, design=narrow)
    with pytest.raises(HardwareError, match="DMA reported an error"):
        acc32.run_layer(layer, 8, x, w, rq)


def test_download_false_uses_the_pl_as_it_is(bitfile):
    fake = _overlay(bitfile, "pynq-z2")
    with pytest.raises(HardwareError, match="MAGIC 0x00000000"):      # nothing loaded yet
        OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=fake, download=False)
    fake.Overlay(str(bitfile))                                        # loaded once
    acc = OverlayAccelerator(board="pynq-z2", bitstream=bitfile, pynq_module=fake, download=False)
    assert sorted(acc.drivers) == [4, 8]


# ----------------------------------------------------------------------------- missing rails
@pytest.mark.parametrize("case", ["no libsensors", "get_rails raises", "other rails only"])
def test_missing_or_unreadable_rails_never_stop_profiling(bitfile, rng, case):
    fake = _overlay(bitfile, "ultra96v2")
    if case == "no libsensors":
        fake.pmbus.get_rails = dict                                   # pynq: _lib is None -> {}
    elif case == "get_rails raises":
        fake.pmbus.get_rails = lambda config_file=None: (_ for _ in ()).throw(OSError("libsensors.so.5"))
    else:
        fake.pmbus.get_rails = lambda config_file=None: {"VIN": fake._rails["VIN"]}
    with pytest.warns(UserWarning) as caught:
        acc = OverlayAccelerator(board="ultra96v2", bitstream=bitfile, pynq_module=fake)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "energy is unavailable" in msgs[0]
    assert acc.monitor is None and not acc.describe().has_energy and acc.power_error
    x, w, rq = _tensors(rng, LAYERS[2], 8)
    _, m = acc.run_layer(LAYERS[2], 8, x, w, rq)
    assert m.cycles > 0 and m.joules is None
    with pytest.raises(HardwareError, match="power rails 5V, VSYS|libsensors.so.5"):
        OverlayAccelerator(board="ultra96v2", bitstream=bitfile, pynq_module=fake, power=True)


def test_ultra96v2_measures_energy_on_its_5v_rail(bitfile, rng):
    acc = _acc(bitfile, board="ultra96v2")
    assert acc.describe().rails == ("5V",) and acc.monitor is not None
    x, w, rq = _tensors(rng, LAYERS[0], 8)
    _, m = acc.run_layer(LAYERS[0], 8, x, w, rq)
    assert m.joules is not None and acc.last_energy.updates > 0
