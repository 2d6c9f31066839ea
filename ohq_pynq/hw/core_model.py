"""Bit-exact functional model of the ohq_conv IP core: stream layout and integer arithmetic.

The cocotb benches check the RTL against this module, and the simulator backend and the PYNQ
driver reuse it unchanged, so this file *is* the specification in executable form (the prose
version is ``vivado/README.md``). numpy only: it runs on the board.

Arithmetic, per output pixel and channel ``c``::

    acc  = int32( sum_window x * w )            zero padding contributes 0; wraps like int32
    acc  = int32( acc + bias[c] )
    y    = (acc * mult[c] + (1 << (shift[c] - 1))) >> shift[c]    arithmetic shift (round half
                                                                  up); no rounding term if shift 0
    y    = max(y, 0) if relu
    out  = clamp(y, range of out_bits / out_signed)

Weights are signed narrow-range (int8 [-127, 127], int4 [-7, 7]); activations are ``bits`` wide,
signed or unsigned (``in_signed``); zero points are 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError

PARAM_RECORD_BYTES = 8   # int32 bias, uint16 mult, uint8 shift, uint8 reserved (little-endian)
MAX_SHIFT = 47


def _pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class CoreConfig:
    """Synthesis parameters of one core instance (read back from its parameter registers)."""

    bits: int = 8               # weight / input-activation bits: 4 or 8
    pe: int = 8                 # output-channel lanes
    simd: int = 8               # input bytes per MAC step (simd * pack channels)
    bus_bytes: int = 8          # AXI4-Stream width in bytes
    max_k: int = 7
    lb_rows: int = 9
    max_row_words: int = 1024
    max_wdepth: int = 1024
    max_tiles: int = 256

    def __post_init__(self):
        if self.bits not in (4, 8):
            raise ConfigError(f"core bits must be 4 or 8, not {self.bits}.")
        for name in ("pe", "simd", "bus_bytes", "max_row_words"):
            if not _pow2(getattr(self, name)):
                raise ConfigError(f"core {name} must be a power of two, not {getattr(self, name)}.")
        if self.bus_bytes < 8:
            raise ConfigError(f"core bus_bytes must be at least 8, not {self.bus_bytes}.")

    @property
    def pack(self) -> int:
        """Elements per byte lane: 2 at 4 bits, 1 at 8 bits."""
        return 8 // self.bits

    @property
    def ch(self) -> int:
        """Input channels per MAC step (one SIMD-byte word)."""
        return self.simd * self.pack

    @property
    def macs_per_cycle(self) -> int:
        return self.pe * self.simd * self.pack

    @classmethod
    def from_registers(cls, read) -> "CoreConfig":
        """Build from a register reader ``read(name) -> int`` (names from ``regmap``)."""
        return cls(bits=read("BITS"), pe=read("PE"), simd=read("SIMD"),
                   bus_bytes=read("BUS_BYTES"), max_k=read("MAX_K"), lb_rows=read("LB_ROWS"),
                   max_row_words=read("MAX_ROW_WORDS"), max_wdepth=read("MAX_WDEPTH"),
                   max_tiles=read("MAX_TILES"))


@dataclass(frozen=True)
class ConvLayer:
    """One layer as the core runs it: one image, NHWC, square kernel; FC is 1x1 on a 1x1 map."""

    cin: int
    cout: int
    h: int
    w: int
    kernel: int = 1
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right (pixels)
    groups: int = 1
    in_signed: bool = True
    out_bits: int = 8
    out_signed: bool = True
    relu: bool = False

    @property
    def cin_g(self) -> int:
        return self.cin // self.groups

    @property
    def cout_g(self) -> int:
        return self.cout // self.groups

    @property
    def oh(self) -> int:
        return (self.h + self.pads[0] + self.pads[2] - self.kernel) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + self.pads[1] + self.pads[3] - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (real channels only)."""
        return self.oh * self.ow * self.cout * self.kernel * self.kernel * self.cin_g

    def registers(self) -> dict[str, int]:
        """Configuration register values (names from ``regmap.CONFIG_REGISTERS``)."""
        return {"CIN": self.cin, "COUT": self.cout, "H": self.h, "W": self.w,
                "KERNEL": self.kernel, "STRIDE": self.stride, "PAD_T": self.pads[0],
                "PAD_L": self.pads[1], "PAD_B": self.pads[2], "PAD_R": self.pads[3],
                "GROUPS": self.groups, "IN_SIGNED": int(self.in_signed),
                "OUT_BITS": self.out_bits, "OUT_SIGNED": int(self.out_signed),
                "RELU": int(self.relu)}


def depthwise_mode(layer: ConvLayer, core: CoreConfig) -> bool:
    """True if the core runs ``layer`` in its depthwise mode: groups == cin == cout > 1 and a
    PE tile fits in one word (pe <= ch). Activations are then dense NHWC (as for groups = 1),
    lane p of tile t computes channel t*pe + p from element (t*pe + p) % ch of the word that
    holds it, and weights are block-diagonal words (one non-zero element per lane)."""
    return (layer.groups > 1 and layer.cin == layer.groups == layer.cout
            and core.pe <= core.ch)


@dataclass(frozen=True)
class Geometry:
    """Derived sizes of one layer on one core. Words are ``simd`` bytes; beats ``bus_bytes``."""

    depthwise: bool    # the core's depthwise mode (see depthwise_mode)
    chunks_g: int      # words per pixel per group (cin_g padded to ch); 1 in depthwise mode
    tiles_g: int       # PE tiles per group (cout_g padded to pe); ceil(cout/pe) in depthwise mode
    cpp: int           # words per input pixel (groups * chunks_g)
    ntiles: int        # groups * tiles_g: param records = ntiles * pe
    wpl: int           # weight words per PE lane
    row_words: int     # line-buffer words per input row
    in_bytes: int      # params + weights + activations
    in_beats: int      # input-stream beats (zero-padded to whole beats)
    out_pixel_bytes: int   # bytes per output pixel (cout * out_bits, padded to a byte)
    out_bytes: int     # output payload bytes
    out_beats: int     # output-stream beats (zero-padded to whole beats)
    mac_steps: int     # cycles with a MAC step issued (the MAC_ACTIVE counter)
    roof_cycles: float  # macs / (pe * simd * pack)


def geometry(layer: ConvLayer, core: CoreConfig) -> Geometry:
    """Sizes of ``layer`` on ``core`` (no validation; see :func:`check_layer`)."""
    dw = depthwise_mode(layer, core)
    if dw:
        chunks_g, tiles_g = 1, -(-layer.cout // core.pe)
        cpp, ntiles = -(-layer.cin // core.ch), tiles_g
    else:
        chunks_g = -(-layer.cin_g // core.ch)
        tiles_g = -(-layer.cout_g // core.pe)
        cpp = layer.groups * chunks_g
        ntiles = layer.groups * tiles_g
    kk = layer.kernel * layer.kernel
    wpl = ntiles * kk * chunks_g
    row_words = layer.w * cpp
    in_bytes = PARAM_RECORD_BYTES * ntiles * core.pe + core.simd * (core.pe * wpl + layer.h * row_words)
    in_beats = -(-in_bytes // core.bus_bytes)
    out_pixel_bytes = -(-layer.cout * layer.out_bits // 8)
    out_bytes = layer.oh * layer.ow * out_pixel_bytes
    out_beats = -(-out_bytes // core.bus_bytes)
    mac_steps = layer.oh * layer.ow * ntiles * kk * chunks_g
    return Geometry(dw, chunks_g, tiles_g, cpp, ntiles, wpl, row_words, in_bytes, in_beats,
                    out_pixel_bytes, out_bytes, out_beats, mac_steps,
                    layer.macs / core.macs_per_cycle)


def check_layer(layer: ConvLayer, core: CoreConfig) -> Geometry:
    """Raise :class:`ConfigError` if ``core`` cannot run ``layer``; return its geometry."""
    def bad(msg: str):
        raise ConfigError(f"layer cannot run on the {core.bits}-bit core: {msg}.")

    if not 1 <= layer.kernel <= min(core.max_k, core.lb_rows):
        bad(f"kernel {layer.kernel} is outside 1..{min(core.max_k, core.lb_rows)}")
    if layer.stride not in (1, 2):
        bad(f"stride {layer.stride} is not 1 or 2")
    if any(not 0 <= p < layer.kernel for p in layer.pads):
        bad(f"pads {layer.pads} must each be in 0..kernel-1")
    for name in ("cin", "cout", "h", "w", "groups"):
        if not 1 <= getattr(layer, name) <= 0xFFFF:
            bad(f"{name} {getattr(layer, name)} is outside 1..65535")
    if layer.cin % layer.groups or layer.cout % layer.groups:
        bad(f"groups {layer.groups} does not divide cin {layer.cin} and cout {layer.cout}")
    if layer.out_bits not in (4, 8):
        bad(f"out_bits {layer.out_bits} is not 4 or 8")
    if layer.oh < 1 or layer.ow < 1:
        bad("the output map is empty")
    g = geometry(layer, core)
    if g.row_words > core.max_row_words:
        bad(f"an input row needs {g.row_words} line-buffer words, the core has {core.max_row_words}")
    if g.wpl > core.max_wdepth:
        bad(f"weights need {g.wpl} words per lane, the core has {core.max_wdepth} "
            "(split the layer over output channels)")
    if g.ntiles > core.max_tiles:
        bad(f"{g.ntiles} output-channel tiles exceed the core's {core.max_tiles}")
    return g


# ---------------------------------------------------------------------------- value ranges

def weight_range(bits: int) -> tuple[int, int]:
    """Narrow symmetric weight range: int8 [-127, 127], int4 [-7, 7]."""
    q = (1 << (bits - 1)) - 1
    return -q, q


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Activation / output range at ``bits``: signed [-2^(b-1), 2^(b-1)-1] or [0, 2^b-1]."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int):
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        raise DataError(f"{name} values must lie in [{lo}, {hi}], found [{int(a.min())}, {int(a.max())}].")


def _as_int(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != shape:
        raise DataError(f"{name} must have shape {shape}, not {a.shape}.")
    if a.dtype.kind not in "iu":
        raise DataError(f"{name} must hold integers, not {a.dtype}.")
    return a.astype(np.int64)


# ---------------------------------------------------------------------------- arithmetic

def wrap_int32(a: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (as the 32-bit accumulator does)."""
    return ((np.asarray(a, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def requantize(acc, mult, shift, relu: bool, out_bits: int, out_signed: bool) -> np.ndarray:
    """int32 accumulators (bias included) -> outputs; mult/shift broadcast over the last axis."""
    acc = wrap_int32(acc)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    rnd = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    y = np.right_shift(acc * mult + rnd, shift)
    if relu:
        y = np.maximum(y, 0)
    lo, hi = act_range(out_bits, out_signed)
    return np.clip(y, lo, hi)


def conv_accumulate(x, w, layer: ConvLayer) -> np.ndarray:
    """int32 sums over the window (no bias): x (H, W, Cin), w (Cout, Cin_g, K, K) -> (OH, OW, Cout)."""
    k, s = layer.kernel, layer.stride
    pt, pl, pb, pr = layer.pads
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    oh, ow, g = layer.oh, layer.ow, layer.groups
    cin_g, cout_g = layer.cin_g, layer.cout_g
    acc = np.zeros((oh, ow, g, cout_g), dtype=np.int64)
    wg = w.reshape(g, cout_g, cin_g, k, k)
    for ky in range(k):
        for kx in range(k):
            win = xp[ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s, :]
            win = win.reshape(oh, ow, g, cin_g)
            acc += np.einsum("yxgi,goi->yxgo", win, wg[:, :, :, ky, kx])
    return wrap_int32(acc.reshape(oh, ow, layer.cout))


def conv_reference(x, w, bias, mult, shift, layer: ConvLayer, bits: int) -> np.ndarray:
    """What the core outputs for one layer: (OH, OW, Cout) int64 at ``layer.out_bits``.

    ``x`` (H, W, Cin) activations at ``bits``, ``w`` (Cout, Cin/groups, K, K) weights at
    ``bits``, ``bias`` int32, ``mult`` uint16, ``shift`` 0..47, each (Cout,).
    """
    x, w, bias, mult, shift = validate_inputs(x, w, bias, mult, shift, layer, bits)
    acc = wrap_int32(conv_accumulate(x, w, layer) + bias)
    return requantize(acc, mult, shift, layer.relu, layer.out_bits, layer.out_signed)


def validate_inputs(x, w, bias, mult, shift, layer: ConvLayer, bits: int):
    """Shapes and integer ranges of one run's operands (one DataError sentence) -> int64 arrays."""
    x = _as_int("activations", x, (layer.h, layer.w, layer.cin))
    w = _as_int("weights", w, (layer.cout, layer.cin_g, layer.kernel, layer.kernel))
    bias = _as_int("bias", bias, (layer.cout,))
    mult = _as_int("mult", mult, (layer.cout,))
    shift = _as_int("shift", shift, (layer.cout,))
    _check_range("activations", x, *act_range(bits, layer.in_signed))
    _check_range("weights", w, *weight_range(bits))
    _check_range("bias", bias, -(1 << 31), (1 << 31) - 1)
    _check_range("mult", mult, 0, 0xFFFF)
    _check_range("shift", shift, 0, MAX_SHIFT)
    return x, w, bias, mult, shift


# ---------------------------------------------------------------------------- stream packing

def pack_elements(values: np.ndarray, bits: int) -> bytes:
    """Pack integers (last axis contiguous) little-end first: 1 per byte at 8 bits, 2 at 4 bits
    (element 2i in bits [3:0] of byte i). The element count must fill whole bytes."""
    v = np.asarray(values, dtype=np.int64).reshape(-1) & ((1 << bits) - 1)
    if bits == 8:
        return v.astype(np.uint8).tobytes()
    if v.size % 2:
        raise ValueError("4-bit packing needs an even element count")
    v = v.astype(np.uint8)
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_elements(data: bytes, bits: int, count: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_elements`: the first ``count`` elements as int64."""
    b = np.frombuffer(bytes(data), dtype=np.uint8)
    if bits == 8:
        v = b[:count].astype(np.int64)
    else:
        v = np.empty(b.size * 2, dtype=np.int64)
        v[0::2] = b & 0xF
        v[1::2] = b >> 4
        v = v[:count]
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v


def pack_params(bias, mult, shift, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Param records, one per (group, tile, lane) in that order; padded lanes are zero records
    (depthwise mode: one group of ``cout`` channels)."""
    geo = geometry(layer, core)
    g, tg, pe, cog = layer.groups, geo.tiles_g, core.pe, layer.cout_g
    if geo.depthwise:
        g, cog = 1, layer.cout
    rec = np.zeros((g, tg * pe), dtype=[("bias", "<i4"), ("mult", "<u2"), ("shift", "u1"), ("res", "u1")])
    rec["bias"][:, :cog] = np.asarray(bias, dtype=np.int64).reshape(g, cog)
    rec["mult"][:, :cog] = np.asarray(mult, dtype=np.int64).reshape(g, cog)
    rec["shift"][:, :cog] = np.asarray(shift, dtype=np.int64).reshape(g, cog)
    return rec.tobytes()


def pack_weights(w, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Weight words in the order (group, tile, ky, kx, chunk, lane); each word holds ``ch`` input
    channels of one output channel (zero beyond cin_g; padded lanes all zero)."""
    geo = geometry(layer, core)
    g, k, pe, ch = layer.groups, layer.kernel, core.pe, core.ch
    if geo.depthwise:
        # (tile, ky, kx, lane) words; lane p of tile t holds w[c] at element c % ch, c = t*pe + p.
        c = np.arange(geo.tiles_g * pe)
        wz = np.zeros((geo.tiles_g * pe, ch, k, k), dtype=np.int64)
        real = c < layer.cout
        wz[c[real], c[real] % ch] = np.asarray(w, dtype=np.int64)[:, 0]
        wz = wz.reshape(geo.tiles_g, pe, ch, k, k).transpose(0, 3, 4, 1, 2)
        return pack_elements(wz, core.bits)
    wz = np.zeros((g, geo.tiles_g * pe, geo.chunks_g * ch, k, k), dtype=np.int64)
    wz[:, :layer.cout_g, :layer.cin_g] = np.asarray(w, dtype=np.int64).reshape(
        g, layer.cout_g, layer.cin_g, k, k)
    # (g, tile, lane, chunk, e, ky, kx) -> (g, tile, ky, kx, chunk, lane, e)
    wz = wz.reshape(g, geo.tiles_g, pe, geo.chunks_g, ch, k, k).transpose(0, 1, 5, 6, 3, 2, 4)
    return pack_elements(wz, core.bits)


def pack_activations(x, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Activations in NHWC order, each pixel as (group, chunk) words of ``ch`` channels (each
    group's channels zero-padded to a whole word); depthwise mode: dense NHWC padded to words."""
    geo = geometry(layer, core)
    h, w, g, ch = layer.h, layer.w, layer.groups, core.ch
    if geo.depthwise:   # dense NHWC, as for groups = 1
        xz = np.zeros((h, w, geo.cpp * ch), dtype=np.int64)
        xz[..., :layer.cin] = np.asarray(x, dtype=np.int64)
        return pack_elements(xz, core.bits)
    xz = np.zeros((h, w, g, geo.chunks_g * ch), dtype=np.int64)
    xz[..., :layer.cin_g] = np.asarray(x, dtype=np.int64).reshape(h, w, g, layer.cin_g)
    return pack_elements(xz, core.bits)


def pack_input(x, w, bias, mult, shift, layer: ConvLayer, core: CoreConfig) -> bytes:
    """The whole input stream of one layer: params, weights, activations, zero-padded to beats."""
    geo = check_layer(layer, core)
    x, w, bias, mult, shift = validate_inputs(x, w, bias, mult, shift, layer, core.bits)
    data = (pack_params(bias, mult, shift, layer, core) + pack_weights(w, layer, core)
            + pack_activations(x, layer, core))
    assert len(data) == geo.in_bytes
    return data + bytes(geo.in_beats * core.bus_bytes - len(data))


def pack_output(y, layer: ConvLayer, core: CoreConfig) -> bytes:
    """The output stream the core sends for outputs ``y`` (OH, OW, Cout): per pixel, Cout
    elements at out_bits padded to a whole byte; the stream zero-padded to whole beats."""
    geo = geometry(layer, core)
    y = np.asarray(y, dtype=np.int64).reshape(layer.oh * layer.ow, layer.cout)
    if layer.out_bits == 4 and layer.cout % 2:
        y = np.concatenate([y, np.zeros((y.shape[0], 1), dtype=np.int64)], axis=1)
    data = pack_elements(y, layer.out_bits)
    return data + bytes(geo.out_beats * core.bus_bytes - len(data))


def unpack_output(data: bytes, layer: ConvLayer, core: CoreConfig) -> np.ndarray:
    """Output stream bytes -> (OH, OW, Cout) int64 (sign-extended if out_signed)."""
    geo = geometry(layer, core)
    if len(data) < geo.out_bytes:
        raise DataError(f"output stream has {len(data)} bytes, the layer produces {geo.out_bytes}.")
    px = np.frombuffer(bytes(data[:geo.out_bytes]), dtype=np.uint8).reshape(-1, geo.out_pixel_bytes)
    per_px = geo.out_pixel_bytes * 8 // layer.out_bits
    v = unpack_elements(px.tobytes(), layer.out_bits, px.shape[0] * per_px, layer.out_signed)
    return v.reshape(layer.oh, layer.ow, per_px)[:, :, :layer.cout]
