"""The core's functional model: element packing, stream layouts (checked against straight loop
implementations of the documented order), arithmetic and validation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ohq_pynq.errors import ConfigError, DataError
from ohq_pynq.hw import core_model as cm

CORE8 = cm.CoreConfig(bits=8, pe=4, simd=4, bus_bytes=8)
CORE4 = cm.CoreConfig(bits=4, pe=4, simd=4, bus_bytes=16)


def naive_conv(x, w, layer):
    """Direct loops over the definition (int Python, no numpy tricks)."""
    k, s = layer.kernel, layer.stride
    pt, pl = layer.pads[0], layer.pads[1]
    out = np.zeros((layer.oh, layer.ow, layer.cout), dtype=np.int64)
    for oy in range(layer.oh):
        for ox in range(layer.ow):
            for c in range(layer.cout):
                g = c // layer.cout_g
                acc = 0
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy * s - pt + ky, ox * s - pl + kx
                        if 0 <= iy < layer.h and 0 <= ix < layer.w:
                            for i in range(layer.cin_g):
                                acc += int(x[iy, ix, g * layer.cin_g + i]) * int(w[c, i, ky, kx])
                out[oy, ox, c] = acc
    return out


def random_case(rng, bits, groups=1, k=3, s=1, pads=(1, 1, 1, 1), h=5, w=4):
    layer = cm.ConvLayer(cin=3 * groups, cout=5 * groups, h=h, w=w, kernel=k, stride=s,
                         pads=pads, groups=groups, in_signed=bool(rng.integers(2)),
                         out_bits=int(rng.choice([4, 8])), out_signed=bool(rng.integers(2)),
                         relu=bool(rng.integers(2)))
    lo, hi = cm.act_range(bits, layer.in_signed)
    x = rng.integers(lo, hi + 1, size=(h, w, layer.cin))
    q = cm.weight_range(bits)[1]
    wt = rng.integers(-q, q + 1, size=(layer.cout, layer.cin_g, k, k))
    bias = rng.integers(-500, 500, size=layer.cout)
    mult = rng.integers(1, 1 << 16, size=layer.cout)
    shift = rng.integers(10, 20, size=layer.cout)
    return layer, x, wt, bias, mult, shift


@pytest.mark.parametrize("groups,k,s,pads", [(1, 3, 1, (1, 1, 1, 1)), (2, 3, 2, (0, 1, 2, 0)),
                                             (3, 1, 1, (0, 0, 0, 0)), (1, 5, 2, (2, 2, 2, 2))])
def test_conv_accumulate_matches_loops(groups, k, s, pads):
    rng = np.random.default_rng(1)
    layer, x, w, *_ = random_case(rng, 8, groups, k, s, pads, h=6, w=5)
    assert np.array_equal(cm.conv_accumulate(x, w, layer), naive_conv(x, w, layer))


def test_requantize_rounds_half_up_and_clamps():
    r = cm.requantize
    assert r([5], [1], [1], False, 8, True).tolist() == [3]        # 2.5 -> 3
    assert r([-5], [1], [1], False, 8, True).tolist() == [-2]      # -2.5 -> -2 (half up)
    assert r([-7], [1], [1], False, 8, True).tolist() == [-3]      # -3.5 -> -3
    assert r([6], [3], [0], False, 8, True).tolist() == [18]       # shift 0: no rounding term
    assert r([1000], [1], [1], False, 8, True).tolist() == [127]
    assert r([-1000], [1], [1], False, 4, True).tolist() == [-8]
    assert r([-1000], [1], [1], False, 8, False).tolist() == [0]
    assert r([1000], [1], [1], False, 4, False).tolist() == [15]
    assert r([-9], [1], [0], True, 8, True).tolist() == [0]
    # 49-bit intermediate: largest int32 times largest multiplier.
    big = r([2**31 - 1], [65535], [47], False, 8, False)
    assert big.tolist() == [((2**31 - 1) * 65535 + (1 << 46)) >> 47]


def test_wrap_int32():
    assert cm.wrap_int32(np.array([2**31, -2**31 - 1, 5])).tolist() == [-2**31, 2**31 - 1, 5]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 8]), st.booleans(), st.integers(0, 40), st.data())
def test_pack_unpack_elements_roundtrip(bits, signed, half, data):
    n = 2 * half
    lo, hi = cm.act_range(bits, signed)
    vals = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), dtype=np.int64)
    packed = cm.pack_elements(vals, bits)
    assert len(packed) == n * bits // 8
    assert np.array_equal(cm.unpack_elements(packed, bits, n, signed), vals)


def test_pack_elements_nibble_order():
    assert cm.pack_elements(np.array([1, 2, -1, 7]), 4) == bytes([0x21, 0x7F])
    assert cm.pack_elements(np.array([-1, 2]), 8) == bytes([0xFF, 0x02])


@pytest.mark.parametrize("pairs", [1, 7, cm._PACK4_TABLE_UP_TO, cm._PACK4_TABLE_UP_TO + 3])
@pytest.mark.parametrize("signed", [False, True])
def test_4_bit_tables_and_element_wise_paths_agree_with_the_nibble_rule(pairs, signed):
    # Small arrays go through look-up tables, large ones element-wise: both are the rule
    # "element 2i in bits [3:0] of byte i", and odd element counts unpack to the count asked.
    rng = np.random.default_rng(pairs)
    lo, hi = cm.act_range(4, signed)
    v = rng.integers(lo, hi + 1, size=2 * pairs)
    u = v & 0xF
    want = (u[0::2] | (u[1::2] << 4)).astype(np.uint8)
    got = cm.element_codes(v.astype(np.int16), 4)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert np.array_equal(cm.unpack_codes(want, 4, 2 * pairs - 1, signed), v[:-1])


def element_stream(data: bytes, bits: int) -> list[int]:
    return cm.unpack_elements(data, bits, len(data) * 8 // bits, signed=True).tolist()


@pytest.mark.parametrize("core", [CORE8, CORE4])
@pytest.mark.parametrize("groups", [1, 2])
def test_weight_and_activation_layout(core, groups):
    rng = np.random.default_rng(2)
    layer, x, w, bias, mult, shift = random_case(rng, core.bits, groups=groups)
    geo = cm.geometry(layer, core)
    # Weights: (group, tile, ky, kx, chunk, lane) words of ch channels, zero padded; only the
    # tile's real output channels are lanes.
    want = []
    for g in range(layer.groups):
        for t in range(geo.tiles_g):
            for ky in range(layer.kernel):
                for kx in range(layer.kernel):
                    for c in range(geo.chunks_g):
                        for lane in range(core.pe):
                            o = t * core.pe + lane
                            if o >= layer.cout_g:
                                continue
                            for e in range(core.ch):
                                i = c * core.ch + e
                                want.append(int(w[g * layer.cout_g + o, i, ky, kx]) if i < layer.cin_g else 0)
    assert element_stream(cm.pack_weights(w, layer, core), core.bits) == want
    assert len(want) == geo.weight_words * core.ch
    # Activations: NHWC, per pixel (group, chunk) words.
    want = []
    for y in range(layer.h):
        for xx in range(layer.w):
            for g in range(layer.groups):
                for e in range(geo.chunks_g * core.ch):
                    want.append(int(x[y, xx, g * layer.cin_g + e]) if e < layer.cin_g else 0)
    got = cm.unpack_elements(cm.pack_activations(x, layer, core), core.bits, len(want),
                             layer.in_signed).tolist()
    assert got == want
    # Whole stream: params, weights, activations (weight streaming: activations first), padding
    # to a whole beat; unpack_input inverts it.
    stream = cm.pack_input(x, w, bias, mult, shift, layer, core)
    back = cm.unpack_input(stream, layer, core)
    for got_, want_ in zip(back, (x, w, bias, mult, shift)):
        assert np.array_equal(got_, want_)
    acts = cm.pack_activations(x, layer, core)
    p_end = 8 * geo.n_rec
    assert stream[p_end:p_end + len(acts)] == acts if geo.ws else \
        stream[p_end + geo.weight_words * core.simd:][:len(acts)] == acts
    assert len(stream) == geo.in_beats * core.bus_bytes >= geo.in_bytes
    rec = np.frombuffer(stream[:8 * geo.ntiles * core.pe], dtype=[("b", "<i4"), ("m", "<u2"),
                                                                   ("s", "u1"), ("r", "u1")])
    rec = rec.reshape(layer.groups, geo.tiles_g * core.pe)[:, :layer.cout_g].reshape(-1)
    assert rec["b"].tolist() == bias.tolist() and rec["m"].tolist() == mult.tolist()
    assert rec["s"].tolist() == shift.tolist() and not rec["r"].any()


@pytest.mark.parametrize("cout,out_bits", [(5, 4), (5, 8), (8, 4)])
def test_output_roundtrip(cout, out_bits):
    layer = cm.ConvLayer(cin=2, cout=cout, h=3, w=3, kernel=1, out_bits=out_bits, out_signed=True)
    rng = np.random.default_rng(3)
    y = rng.integers(*cm.act_range(out_bits, True), size=(3, 3, cout), endpoint=True)
    data = cm.pack_output(y, layer, CORE8)
    geo = cm.geometry(layer, CORE8)
    assert len(data) == geo.out_beats * 8 and geo.out_pixel_bytes == -(-cout * out_bits // 8)
    assert np.array_equal(cm.unpack_output(data, layer, CORE8), y)


def test_geometry_counts():
    layer = cm.ConvLayer(cin=20, cout=9, h=7, w=6, kernel=3, stride=2, pads=(1, 1, 1, 1))
    geo = cm.geometry(layer, CORE8)       # ch 4 -> 5 chunks; pe 4 -> 3 tiles
    assert (geo.chunks_g, geo.tiles_g, geo.wpl) == (5, 3, 3 * 9 * 5)
    assert geo.mac_steps == layer.oh * layer.ow * 3 * 9 * 5
    assert geo.roof_cycles == layer.macs / 16
    assert layer.oh == 4 and layer.ow == 3


def test_check_layer_rejects_with_config_error():
    ok = cm.ConvLayer(cin=4, cout=4, h=4, w=4, kernel=3, pads=(1, 1, 1, 1))
    cm.check_layer(ok, CORE8)
    bad = [dict(kernel=9, pads=(0, 0, 0, 0)), dict(stride=3), dict(pads=(3, 0, 0, 0)),
           dict(groups=3), dict(out_bits=6), dict(w=3000)]
    for change in bad:
        import dataclasses
        with pytest.raises(ConfigError):
            cm.check_layer(dataclasses.replace(ok, **change), CORE8)
    huge = cm.ConvLayer(cin=4096, cout=64, h=1, w=1)
    with pytest.raises(ConfigError, match="split the layer"):
        cm.check_layer(huge, CORE8)
    with pytest.raises(ConfigError):
        cm.CoreConfig(bits=6)
    with pytest.raises(ConfigError):
        cm.CoreConfig(pe=3)


def test_reference_validates_ranges():
    rng = np.random.default_rng(4)
    layer, x, w, bias, mult, shift = random_case(rng, 8)
    w = w.copy()
    w[0, 0, 0, 0] = -128                  # narrow range: -128 is not a valid int8 weight
    with pytest.raises(DataError, match="weights"):
        cm.conv_reference(x, w, bias, mult, shift, layer, 8)
    with pytest.raises(DataError, match="shape"):
        cm.conv_reference(x[:, :, :1], w, bias, mult, shift, layer, 8)
    with pytest.raises(DataError, match="shift"):
        cm.conv_reference(x, np.zeros_like(w), bias, mult, shift + 40, layer, 8)


def test_reference_end_to_end_against_loops():
    rng = np.random.default_rng(5)
    for bits in (4, 8):
        layer, x, w, bias, mult, shift = random_case(rng, bits, groups=2, s=2)
        acc = cm.wrap_int32(naive_conv(x, w, layer) + bias)
        want = cm.requantize(acc, mult, shift, layer.relu, layer.out_bits, layer.out_signed)
        got = cm.conv_reference(x, w, bias, mult, shift, layer, bits)
        assert np.array_equal(got, want)
        lo, hi = cm.act_range(layer.out_bits, layer.out_signed)
        assert got.min() >= lo and got.max() <= hi


def test_from_registers():
    regs = {"BITS": 4, "PE": 8, "SIMD": 8, "BUS_BYTES": 16, "MAX_K": 7, "LB_ROWS": 8,
            "MAX_ROW_WORDS": 512, "MAX_WDEPTH": 2048, "MAX_TILES": 128}
    core = cm.CoreConfig.from_registers(regs.__getitem__)
    assert core.ch == 16 and core.macs_per_cycle == 128 and core.max_wdepth == 2048


@pytest.mark.parametrize("c", [3, 11, 40])
@pytest.mark.parametrize("core", [CORE8, CORE4, cm.CoreConfig(bits=8, pe=8, simd=4),
                                  cm.CoreConfig(bits=4, pe=8, simd=8)])
def test_depthwise_layout(core, c):
    """Depthwise mode: dense NHWC words, params one per channel, weights one word of ch
    channel weights per (tile, ky, kx, pixel word the tile reads); J pixels per step."""
    rng = np.random.default_rng(6)
    k = 3
    layer = cm.ConvLayer(cin=c, cout=c, h=4, w=5, kernel=k, pads=(1, 1, 1, 1), groups=c)
    geo = cm.geometry(layer, core)
    x = rng.integers(-128 >> (8 - core.bits), 127 >> (8 - core.bits), size=(4, 5, c), endpoint=True)
    q = cm.weight_range(core.bits)[1]
    w = rng.integers(-q, q, size=(c, 1, k, k), endpoint=True)
    if core.pe > core.ch:        # no depthwise mode: generic grouped layout
        assert not geo.depthwise and geo.cpp == c
        return
    cpp = -(-c // core.ch)
    assert geo.depthwise and geo.cpp == cpp and geo.chunks_g == 1 and geo.n_rec == cpp * core.ch
    j = core.pe // cpp if cpp < core.pe else 1
    tiles = 1 if cpp < core.pe else -(-cpp // core.pe)
    assert (geo.group_pixels, geo.tiles_g) == (j, tiles)
    assert geo.mac_steps == layer.oh * -(-layer.ow // j) * tiles * k * k
    want = []
    for t in range(tiles):
        words = range(cpp) if j > 1 else range(t * core.pe, min(cpp, (t + 1) * core.pe))
        for ky in range(k):
            for kx in range(k):
                for word in words:
                    for e in range(core.ch):
                        ch_ = word * core.ch + e
                        want.append(int(w[ch_, 0, ky, kx]) if ch_ < c else 0)
    assert element_stream(cm.pack_weights(w, layer, core), core.bits) == want
    assert len(want) == geo.weight_words * core.ch
    dense = cm.unpack_elements(cm.pack_activations(x, layer, core), core.bits,
                               4 * 5 * geo.cpp * core.ch, True).reshape(4, 5, -1)
    assert np.array_equal(dense[..., :c], x) and not dense[..., c:].any()
    bias, mult, shift = (rng.integers(0, hi, size=c) for hi in (100, 100, 40))
    back = cm.unpack_input(cm.pack_input(x, w, bias, mult, shift, layer, core), layer, core)
    for got_, want_ in zip(back, (x, w, bias, mult, shift)):
        assert np.array_equal(got_, want_)


def test_weight_streaming_output_order():
    """Weight streaming (small map): output words (group, tile, pixel), each byte-aligned."""
    core = cm.CoreConfig(bits=4, pe=4, simd=4)
    layer = cm.ConvLayer(cin=8, cout=7, h=2, w=3, kernel=1, out_bits=4)
    geo = cm.geometry(layer, core)
    assert geo.ws
    y = np.arange(2 * 3 * 7).reshape(2, 3, 7) % 8
    data = cm.pack_output(y, layer, core)
    flat = y.reshape(6, 7)
    want = cm.pack_elements(flat[:, :4], 4) + cm.pack_elements(
        np.concatenate([flat[:, 4:], np.zeros((6, 1), dtype=int)], axis=1), 4)
    assert data[:geo.out_bytes] == want and geo.out_bytes == 6 * 2 + 6 * 2
    assert np.array_equal(cm.unpack_output(data, layer, core), y)


def test_cycles_reference_matches_the_geometry():
    """vivado/cycles_reference.json (measured on the RTL) agrees with the plan's geometry:
    MAC-active cycles are exactly the MAC steps of the layer's runs, the roof is the layer's
    MACs over the lanes, and the table covers both widths, every mode and the lowerings."""
    import json
    from pathlib import Path

    from ohq_pynq.hw.tiling import plan_layer

    rows = json.loads((Path(__file__).resolve().parents[1] / "vivado" / "cycles_reference.json").read_text())
    assert len(rows) >= 30 and {r["bits"] for r in rows} == {4, 8}
    assert {r["mode"] for r in rows} == {"line-buffer", "weight-streaming", "depthwise"}
    assert {r["lowering"] for r in rows} == {"", "im2col", "subsample", "dwsplit"}
    for r in rows:
        core = cm.CoreConfig(bits=r["bits"], pe=r["pe"], simd=r["simd"], bus_bytes=r["bus_bytes"],
                             max_row_words=r["max_row_words"], max_wdepth=r["max_wdepth"],
                             max_tiles=r["max_tiles"])
        layer = cm.ConvLayer(cin=r["cin"], cout=r["cout"], h=r["h"], w=r["w"], kernel=r["kernel"],
                             stride=r["stride"], pads=tuple(r["pads"]), groups=r["groups"],
                             out_bits=r["out_bits"])
        plan = plan_layer(layer, core)
        assert plan.lowering == r["lowering"] and plan.runs == r["runs"], r["name"]
        assert r["mac_active_cycles"] == sum(cm.geometry(t.layer, core).mac_steps for t in plan.tiles)
        assert r["roof_cycles"] == pytest.approx(layer.macs / core.macs_per_cycle)


def test_boards_json_cores_are_valid_and_fit():
    """ohq_pynq/hw/boards.json (vivado/tools/make_boards.py): every board has a valid int4 and
    int8 core on the board's stream width, estimated to fit, and ResNet-18-sized rows fit the
    line buffer; the Vivado flow's Tcl variables come out of it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "ohq_pynq" / "hw" / "boards.json").read_text())
    assert set(data["boards"]) == {"pynq-z2", "ultra96v2", "zcu104", "kv260"}
    for name, b in data["boards"].items():
        assert b["fits"] and max(b["estimated_use"].values()) <= 0.9, name   # make_boards.LIMIT
        for bits in (4, 8):
            c = b["cores"][str(bits)]
            core = cm.CoreConfig(bits=bits, **{k: c[k] for k in (
                "pe", "simd", "bus_bytes", "max_k", "lb_rows", "max_row_words", "max_wdepth", "max_tiles")})
            assert core.bus_bytes == b["bus_bytes"]
            for hw, ch in ((56, 64), (28, 128), (14, 256), (7, 512)):
                layer = cm.ConvLayer(cin=ch, cout=ch, h=hw, w=hw, kernel=3, pads=(1, 1, 1, 1))
                assert cm.geometry(layer, core).row_words <= cm.max_row_words(layer, core), (name, bits, hw)
        tcl = subprocess.run([sys.executable, str(root / "vivado" / "tools" / "board_tcl.py"),
                              str(root / "ohq_pynq" / "hw" / "boards.json"), name],
                             capture_output=True, text=True, check=True).stdout
        assert f"set part {b['part']}" in tcl and "set core_params(4) {PE " in tcl


@pytest.mark.parametrize("core", [CORE8, CORE4])
def test_stream_packer_packs_weights_once_and_streams_what_pack_input_does(core):
    # A deployed network streams the same weights every image: the packer keeps each run's
    # weight words under the caller's key while the owner tensor lives, and repacks the rest.
    rng = np.random.default_rng(3)
    layer, x, w, bias, mult, shift = random_case(rng, core.bits, groups=1)
    packer = cm.StreamPacker()
    first = packer.pack(x, w, bias, mult, shift, layer, core, key=("conv", 0), owner=w)
    assert first.dtype == np.uint8 and first.tobytes() == cm.pack_input(x, w, bias, mult, shift, layer, core)
    x2 = rng.integers(*cm.act_range(core.bits, layer.in_signed), size=x.shape)
    bias2 = bias + 7                                     # input-split runs change the bias per image
    again = packer.pack(x2, w, bias2, mult, shift, layer, core, key=("conv", 0), owner=w)
    assert again.tobytes() == cm.pack_input(x2, w, bias2, mult, shift, layer, core)
    assert (packer.hits, packer.misses) == (1, 1)
    # another tensor under the same key (an id reused after the owner died) is packed afresh
    w2 = -w
    assert packer.pack(x, w2, bias, mult, shift, layer, core, key=("conv", 0), owner=w2).tobytes() == \
        cm.pack_input(x, w2, bias, mult, shift, layer, core)
    assert packer.misses == 2
    # a hit still checks this run's operands
    lo, hi = cm.act_range(core.bits, layer.in_signed)
    with pytest.raises(DataError, match="activations"):
        packer.pack(np.full_like(x, hi + 1), w2, bias, mult, shift, layer, core, key=("conv", 0), owner=w2)
    with pytest.raises(DataError, match="mult"):
        packer.pack(x, w2, bias, mult + (1 << 16), shift, layer, core, key=("conv", 0), owner=w2)


@pytest.mark.parametrize("core", [CORE8, CORE4])
def test_stream_packer_leaves_resident_weights_in_a_run_buffer(core):
    # A driver keeping one DMA buffer per run: the packer writes the weight words into it once;
    # later images rewrite only the parameters and activations (and any other key rewrites all).
    rng = np.random.default_rng(5)
    layer, x, w, bias, mult, shift = random_case(rng, core.bits, groups=1)
    geo = cm.geometry(layer, core)
    packer = cm.StreamPacker()
    buf = np.full(geo.in_beats * core.bus_bytes, 0xAA, dtype=np.uint8)
    assert packer.pack(x, w, bias, mult, shift, layer, core, key="r0", owner=w, out=buf) is buf
    assert buf.tobytes() == cm.pack_input(x, w, bias, mult, shift, layer, core)
    p = cm.PARAM_RECORD_BYTES * geo.n_rec
    w_at = p + layer.h * geo.row_words * core.simd if geo.ws else p
    buf[w_at] ^= 0xFF                        # the packer trusts the buffer: the weights stay
    x2 = rng.integers(*cm.act_range(core.bits, layer.in_signed), size=x.shape)
    packer.pack(x2, w, bias + 3, mult, shift, layer, core, key="r0", owner=w, out=buf)
    want = bytearray(cm.pack_input(x2, w, bias + 3, mult, shift, layer, core))
    want[w_at] ^= 0xFF
    assert buf.tobytes() == bytes(want)
    packer.pack(x2, w, bias, mult, shift, layer, core, key="r1", owner=w, out=buf)
    assert buf.tobytes() == cm.pack_input(x2, w, bias, mult, shift, layer, core)
    with pytest.raises(ValueError, match="stream buffer"):
        packer.pack(x, w, bias, mult, shift, layer, core, key="r1", owner=w, out=buf[:-1])


def test_stream_packer_bounds_the_bytes_it_keeps():
    rng = np.random.default_rng(4)
    layer, x, w, bias, mult, shift = random_case(rng, 8)
    one = len(cm.pack_weights(w, layer, CORE8))
    packer = cm.StreamPacker(max_bytes=2 * one)
    for k in range(4):
        packer.pack(x, w, bias, mult, shift, layer, CORE8, key=k, owner=w)
    assert packer._bytes == 2 * one and len(packer._weights) == 2      # least recently used dropped
    packer.pack(x, w, bias, mult, shift, layer, CORE8, key=3, owner=w)
    assert packer.hits == 1
