"""The fake pynq against pynq's own code where pynq is installed: pynq's simple-mode DMA channel
(pynq/lib/dma.py ``_SDMAChannel``) driving the fake's AXI DMA register model, end to end through
the overlay driver; and the fake's libsensors-like monitor."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ohq_pynq.hw import core_model as cm
from ohq_pynq.hw.accelerator import Requant
from ohq_pynq.hw.fake_pynq import FakeMMIO, FakePynq, write_overlay
from ohq_pynq.hw.overlay import OverlayAccelerator
from ohq_pynq.hw.sim import SimAccelerator


def _pynq_dma():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # "Pynq does not support the CPU Architecture"
        return pytest.importorskip("pynq.lib.dma")


def _tensors(rng, layer):
    x = rng.integers(-128, 128, size=(layer.h, layer.w, layer.cin))
    w = rng.integers(-127, 128, size=(layer.cout, layer.cin_g, layer.kernel, layer.kernel))
    rq = Requant(bias=rng.integers(-3000, 3000, layer.cout), mult=rng.integers(1, 3000, layer.cout),
                 shift=rng.integers(8, 18, layer.cout), relu=False, out_bits=8, out_signed=True,
                 in_signed=True)
    return x, w, rq


@pytest.mark.parametrize("board, width", [("pynq-z2", 8), ("kv260", 16)])
def test_pynqs_own_dma_channel_runs_the_driver_on_the_fake_dma(tmp_path, rng, board, width):
    pdma = _pynq_dma()
    bit = write_overlay(tmp_path, board, length_width=14)
    fake = FakePynq(board=board, buffer_base=0x8_0000_0000 if board == "kv260" else 0x1000_0000)
    acc = OverlayAccelerator(board=board, bitstream=bit, pynq_module=fake, power=False)
    for drv in acc.drivers.values():
        desc = acc.overlay.ip_dict[drv.dma_name]
        mmio = FakeMMIO(fake, desc["phys_addr"], desc["addr_range"])
        drv.dma.sendchannel = pdma._SDMAChannel(mmio, (1 << 14) - 1, width, pdma.DMA_TYPE_TX, False)
        drv.dma.recvchannel = pdma._SDMAChannel(mmio, (1 << 14) - 1, width, pdma.DMA_TYPE_RX, False)
    layer = cm.ConvLayer(cin=2048, cout=8, h=1, w=1)           # > 16 KiB in: chunked
    x, w, rq = _tensors(rng, layer)
    y, m = acc.run_layer(layer, 8, x, w, rq)
    ys, ms = SimAccelerator(board).run_layer(layer, 8, x, w, rq)
    assert np.array_equal(y, ys) and m.cycles == ms.cycles and m.bytes_in > (1 << 14)
    recv = acc.drivers[8].dma.recvchannel
    assert recv.transferred == m.bytes_out and not recv.error
    send = acc.drivers[8].dma.sendchannel
    buf = fake.allocate(shape=(40000,), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="unaligned"):
        send.transfer(buf, start=4, nbytes=4096)
    with pytest.raises(ValueError, match="exceeds the maximum DMA buffer size 16383"):
        send.transfer(buf, start=0, nbytes=16384)


def test_pynqs_wait_reports_the_fakes_dma_error_bits(tmp_path):
    pdma = _pynq_dma()
    bit = write_overlay(tmp_path, "pynq-z2")
    fake = FakePynq(board="pynq-z2")
    ov = fake.Overlay(str(bit))
    desc = ov.ip_dict["dma_int8"]
    ch = pdma._SDMAChannel(FakeMMIO(fake, desc["phys_addr"], desc["addr_range"]), (1 << 26) - 1, 8,
                           pdma.DMA_TYPE_RX, False)
    buf = fake.allocate(shape=(64,), dtype=np.uint8)
    buf.freebuffer()                                # no memory behind the address any more
    ch.transfer(buf)
    assert ch.error                                 # DMADecErr: pynq's error property sees it
    assert fake.devices[desc["phys_addr"]].read(0x34) & 0x40
