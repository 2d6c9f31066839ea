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

import functools
import itertools
import weakref

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
    lb_rows: int = 8            # line buffer: lb_rows * max_row_words words (any row width)
    max_row_words: int = 1024
    max_wdepth: int = 1024
    max_tiles: int = 256

    def __post_init__(self):
        if self.bits not in (4, 8):
            raise ConfigError(f"core bits must be 4 or 8, not {self.bits}.")
        for name in ("pe", "simd", "bus_bytes", "max_row_words", "lb_rows"):
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

    @property
    def lb_words(self) -> int:
        """Line-buffer capacity in words (``simd`` bytes each), shared by however many rows fit."""
        return self.lb_rows * self.max_row_words

    @property
    def rq(self) -> int:
        """Requantizers: outputs per cycle the core requantizes (a depthwise group of
        ``pe * ch`` outputs unloads in ``pe * ch / rq`` cycles)."""
        if self.pe > self.ch:
            return self.pe
        return min(self.ch, max(self.pe, self.pe * self.ch // 8))

    @property
    def unload_words(self) -> int:
        """Cycles to unload one depthwise group of accumulators (``pe * ch / rq``)."""
        return self.pe * (self.ch // self.rq) if self.pe <= self.ch else 1

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
    """True if the core runs ``layer`` in its depthwise mode: groups == cin == cout > 1 and
    pe <= ch. Activations are then dense NHWC words (``cpp = ceil(cin / ch)`` per pixel) and each
    PE lane multiplies its own word element-wise with a word of ``ch`` per-channel weights and
    accumulates every element separately (channels over SIMD). With ``cpp < pe`` a step covers
    ``J = pe // cpp`` output pixels x ``cpp`` words (lane ``i``: pixel ``i // cpp``, word
    ``i % cpp``); otherwise lanes take ``pe`` consecutive words of one pixel (tiles over cpp)."""
    return (layer.groups > 1 and layer.cin == layer.groups == layer.cout
            and core.pe <= core.ch)


def depthwise_lanes(cpp: int, core: CoreConfig) -> tuple[int, int]:
    """(pixels per step J, tiles per pixel) of the depthwise mode for ``cpp`` words per pixel."""
    if cpp < core.pe:
        return core.pe // cpp, 1
    return 1, -(-cpp // core.pe)


def depthwise_lane_words(cpp: int, core: CoreConfig) -> list[tuple[int, int] | None]:
    """Per lane of tile 0: (pixel within the step, word of the pixel), or None if unused.
    With ``J == 1`` lane ``i`` of tile ``t`` reads word ``t * pe + i`` (None past ``cpp``)."""
    j, _ = depthwise_lanes(cpp, core)
    if j == 1:
        return [(0, i) for i in range(core.pe)]
    return [(i // cpp, i % cpp) if i < j * cpp else None for i in range(core.pe)]


@dataclass(frozen=True)
class Geometry:
    """Derived sizes of one layer on one core. Words are ``simd`` bytes; beats ``bus_bytes``."""

    depthwise: bool    # the core's depthwise mode (see depthwise_mode)
    chunks_g: int      # words per pixel per group (cin_g padded to ch); 1 in depthwise mode
    tiles_g: int       # PE tiles per group (cout_g padded to pe); depthwise: tiles per pixel
    cpp: int           # words per input pixel (groups * chunks_g; depthwise ceil(cin / ch))
    ntiles: int        # tiles the compute loop walks per output (pixel or depthwise group)
    group_pixels: int  # output pixels per MAC step: J in depthwise mode, else 1
    n_rec: int         # param records (ntiles * pe; depthwise cpp * ch, one per channel)
    ws: bool           # weight streaming: activations first, tiles outer (see geometry)
    weight_words: int  # weight words in the stream (valid lanes / distinct pixel words only)
    wpl: int           # weight words per PE lane (weight-memory rows)
    row_words: int     # line-buffer words per input row
    in_bytes: int      # params + weights + activations
    in_beats: int      # input-stream beats (zero-padded to whole beats)
    out_pixel_bytes: int   # bytes per output pixel (cout * out_bits, padded to a byte)
    out_bytes: int     # output payload bytes
    out_beats: int     # output-stream beats (zero-padded to whole beats)
    mac_steps: int     # cycles with a MAC step issued (the MAC_ACTIVE counter)
    roof_cycles: float  # macs / (pe * simd * pack)


@functools.lru_cache(maxsize=4096)
def geometry(layer: ConvLayer, core: CoreConfig) -> Geometry:
    """Sizes of ``layer`` on ``core`` (no validation; see :func:`check_layer`). Cached: both are
    frozen, and the driver asks for them several times per run."""
    dw = depthwise_mode(layer, core)
    if dw:
        cpp = -(-layer.cin // core.ch)
        j, tiles_g = depthwise_lanes(cpp, core)
        chunks_g, ntiles = 1, tiles_g
        n_rec = cpp * core.ch
        steps_row = -(-layer.ow // j) * ntiles
    else:
        j = 1
        chunks_g = -(-layer.cin_g // core.ch)
        tiles_g = -(-layer.cout_g // core.pe)
        cpp = layer.groups * chunks_g
        ntiles = layer.groups * tiles_g
        n_rec = ntiles * core.pe
        steps_row = layer.ow * ntiles * chunks_g
    kk = layer.kernel * layer.kernel
    wpl = ntiles * kk * chunks_g
    row_words = layer.w * cpp
    weight_words = kk * cpp if dw else kk * chunks_g * layer.cout
    act_words = layer.h * row_words
    ws = (not dw) and act_words <= core.lb_words and act_words <= weight_words
    in_bytes = PARAM_RECORD_BYTES * n_rec + core.simd * (weight_words + act_words)
    in_beats = -(-in_bytes // core.bus_bytes)
    out_pixel_bytes = -(-layer.cout * layer.out_bits // 8)
    if ws:   # one byte-aligned word per (group, tile, pixel)
        last = layer.cout_g - (tiles_g - 1) * core.pe
        per_px = layer.groups * ((tiles_g - 1) * (-(-core.pe * layer.out_bits // 8))
                                 + -(-last * layer.out_bits // 8))
        out_bytes = layer.oh * layer.ow * per_px
    else:
        out_bytes = layer.oh * layer.ow * out_pixel_bytes
    out_beats = -(-out_bytes // core.bus_bytes)
    mac_steps = layer.oh * steps_row * kk
    return Geometry(dw, chunks_g, tiles_g, cpp, ntiles, j, n_rec, ws, weight_words, wpl,
                    row_words, in_bytes, in_beats, out_pixel_bytes, out_bytes, out_beats,
                    mac_steps, layer.macs / core.macs_per_cycle)


def check_layer(layer: ConvLayer, core: CoreConfig) -> Geometry:
    """Raise :class:`ConfigError` if ``core`` cannot run ``layer``; return its geometry."""
    def bad(msg: str):
        raise ConfigError(f"layer cannot run on the {core.bits}-bit core: {msg}.")

    if not 1 <= layer.kernel <= core.max_k:
        bad(f"kernel {layer.kernel} is outside 1..{core.max_k}")
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
    if g.row_words > max_row_words(layer, core):
        bad(f"an input row needs {g.row_words} line-buffer words; {layer.kernel} rows of them "
            f"exceed the core's {core.lb_words}")
    if g.wpl > core.max_wdepth:
        bad(f"weights need {g.wpl} words per lane, the core has {core.max_wdepth} "
            "(split the layer over output channels)")
    if param_rows(g, core) > core.max_tiles:
        bad(f"{g.n_rec} param records exceed the core's {core.max_tiles} per lane")
    return g


def param_rows(geo: Geometry, core: CoreConfig) -> int:
    """Param-memory rows a layer needs (records per requantizer lane)."""
    return -(-geo.n_rec // (core.rq if geo.depthwise else core.pe))


def max_row_words(layer: ConvLayer, core: CoreConfig) -> int:
    """Longest input row (line-buffer words) the core takes for ``layer``: the ``kernel`` rows
    one output row reads must fit the line buffer together."""
    return core.lb_words // max(1, min(layer.kernel, layer.h))


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


def _as_int(name: str, a, shape: tuple[int, ...], widen: bool = True) -> np.ndarray:
    """``a`` checked for ``shape`` and an integer dtype; as int64 (``widen``) or in its own
    integer dtype (activations and weights: the packers cast to uint8 codes anyway)."""
    a = np.asarray(a)
    if a.shape != shape:
        raise DataError(f"{name} must have shape {shape}, not {a.shape}.")
    if a.dtype.kind not in "iu":
        raise DataError(f"{name} must hold integers, not {a.dtype}.")
    return a.astype(np.int64, copy=False) if widen else a


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


def validate_inputs(x, w, bias, mult, shift, layer: ConvLayer, bits: int,
                    weight_values: bool = True):
    """Shapes and integer ranges of one run's operands (one DataError sentence); bias, mult and
    shift as int64, activations and weights in their integer dtype. ``weight_values=False``
    checks the weights' shape only (a tensor checked before, e.g. :meth:`StreamPacker.knows`);
    ``x=None``: no activations to check (byte codes the caller checked)."""
    if x is not None:
        x = _as_int("activations", x, (layer.h, layer.w, layer.cin), widen=False)
    w = _as_int("weights", w, (layer.cout, layer.cin_g, layer.kernel, layer.kernel), widen=False)
    bias = _as_int("bias", bias, (layer.cout,))
    mult = _as_int("mult", mult, (layer.cout,))
    shift = _as_int("shift", shift, (layer.cout,))
    if x is not None:
        _check_range("activations", x, *act_range(bits, layer.in_signed))
    if weight_values:
        _check_range("weights", w, *weight_range(bits))
    _check_range("bias", bias, -(1 << 31), (1 << 31) - 1)
    _check_range("mult", mult, 0, 0xFFFF)
    _check_range("shift", shift, 0, MAX_SHIFT)
    return x, w, bias, mult, shift


# ---------------------------------------------------------------------------- stream packing

def _nibble_tables():
    """Look-up tables of the 4-bit stream: byte -> its two elements (unsigned, signed), and a
    pair of byte codes (as one little-endian uint16) -> the packed byte. One ``take`` per
    array instead of a chain of element-wise ops (the driver's hot path on the ARM)."""
    b = np.arange(256)
    pairs = np.stack([b & 0xF, b >> 4], axis=1)
    signed = np.where(pairs >= 8, pairs - 16, pairs)
    u = np.arange(1 << 16)
    packed = (u & 0xF) | ((u >> 8) & 0xF) << 4           # low byte: element 2i
    return pairs.astype(np.uint8), signed.astype(np.int8), packed.astype(np.uint8)


_UNPACK4_U, _UNPACK4_S, _PACK4 = _nibble_tables()
_PACK4_TABLE_UP_TO = 1 << 16    # pairs: beyond, element-wise ops beat gathers from a 64 KiB table


def element_codes(values, bits: int) -> np.ndarray:
    """Integers (last axis contiguous) as the stream's bytes (uint8, flat): 1 per byte at 8 bits,
    2 at 4 bits (element 2i in bits [3:0] of byte i); two's complement, so the values must be in
    range (validated). One cast to uint8 codes and, at 4 bits, one table look-up per pair."""
    v = np.asarray(values)
    v = (v if v.dtype == np.uint8 else v.astype(np.uint8)).reshape(-1)   # C cast: wraps mod 256
    if bits == 8:
        return v
    if v.size % 2:
        raise ValueError("4-bit packing needs an even element count")
    pairs = np.ascontiguousarray(v).view("<u2")          # element 2i in the low byte
    if pairs.size <= _PACK4_TABLE_UP_TO:
        return _PACK4.take(pairs)
    return ((pairs & 0xF) | ((pairs >> 4) & 0xF0)).astype(np.uint8)   # large: streams better


def pack_elements(values: np.ndarray, bits: int) -> bytes:
    """:func:`element_codes` as bytes."""
    return element_codes(values, bits).tobytes()


def _byte_view(data) -> np.ndarray:
    """bytes / bytearray / memoryview / uint8 array -> a flat uint8 array (no copy)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def unpack_codes(data, bits: int, count: int, signed: bool) -> np.ndarray:
    """The first ``count`` elements of packed bytes as uint8 codes (unsigned) or int8 (signed)."""
    b = _byte_view(data)
    if bits == 8:
        v = b[:count]
        return v.view(np.int8) if signed else v
    table = _UNPACK4_S if signed else _UNPACK4_U
    return table.take(b[:(count + 1) // 2], axis=0).reshape(-1)[:count]


def unpack_elements(data: bytes, bits: int, count: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_elements`: the first ``count`` elements as int64."""
    return unpack_codes(data, bits, count, signed).astype(np.int64)


PARAM_DTYPE = [("bias", "<i4"), ("mult", "<u2"), ("shift", "u1"), ("res", "u1")]


def pack_params(bias, mult, shift, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Param records, one per (group, tile, lane) in that order; padded lanes are zero records
    (depthwise mode: one per channel, ``cpp * ch`` of them, zero past ``cout``)."""
    geo = geometry(layer, core)
    g, tg, pe, cog = layer.groups, geo.tiles_g, core.pe, layer.cout_g
    if geo.depthwise:
        g, cog, tg, pe = 1, layer.cout, 1, geo.n_rec
    rec = np.zeros((g, tg * pe), dtype=PARAM_DTYPE)
    rec["bias"][:, :cog] = np.asarray(bias, dtype=np.int64).reshape(g, cog)
    rec["mult"][:, :cog] = np.asarray(mult, dtype=np.int64).reshape(g, cog)
    rec["shift"][:, :cog] = np.asarray(shift, dtype=np.int64).reshape(g, cog)
    return rec.tobytes()


def _dw_tile_words(geo: Geometry, core: CoreConfig) -> list[range]:
    """Depthwise: the pixel words whose weights each tile streams (one word per distinct word)."""
    if geo.group_pixels > 1:
        return [range(geo.cpp)]
    return [range(t * core.pe, min(geo.cpp, (t + 1) * core.pe)) for t in range(geo.tiles_g)]


def pack_weights(w, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Weight words in the order (group, tile, ky, kx, chunk, lane) with only the tile's real
    output channels as lanes; each word holds ``ch`` input channels (zero beyond cin_g).
    Depthwise: (tile, ky, kx, word) with one word of ``ch`` channel weights per pixel word the
    tile reads (the core writes it to every lane reading that word)."""
    geo = geometry(layer, core)
    g, k, pe, ch = layer.groups, layer.kernel, core.pe, core.ch
    if geo.depthwise:
        wc = np.zeros((geo.cpp * ch, k, k), dtype=np.int64)
        wc[:layer.cout] = np.asarray(w, dtype=np.int64)[:, 0]
        wc = wc.reshape(geo.cpp, ch, k, k).transpose(2, 3, 0, 1)       # (ky, kx, word, e)
        return b"".join(pack_elements(wc[:, :, list(words)], core.bits)
                        for words in _dw_tile_words(geo, core))
    wz = np.zeros((g, geo.tiles_g * pe, geo.chunks_g * ch, k, k), dtype=np.int64)
    wz[:, :layer.cout_g, :layer.cin_g] = np.asarray(w, dtype=np.int64).reshape(
        g, layer.cout_g, layer.cin_g, k, k)
    # (g, tile, lane, chunk, e, ky, kx) -> (g, tile, ky, kx, chunk, lane, e), real lanes only
    wz = wz.reshape(g, geo.tiles_g, pe, geo.chunks_g, ch, k, k).transpose(0, 1, 5, 6, 3, 2, 4)
    real = (np.arange(geo.tiles_g)[:, None] * pe + np.arange(pe)[None, :]) < layer.cout_g
    mask = np.broadcast_to(real[None, :, None, None, None, :],
                           (g, geo.tiles_g, k, k, geo.chunks_g, pe))
    return pack_elements(wz[mask], core.bits)


def activation_codes(x, layer: ConvLayer, core: CoreConfig) -> np.ndarray:
    """The activation part of the stream as flat uint8 (see :func:`pack_activations`)."""
    geo = geometry(layer, core)
    h, w, g, ch = layer.h, layer.w, layer.groups, core.ch
    x = np.asarray(x)
    if geo.depthwise:   # dense NHWC, as for groups = 1
        shape, real = (h, w, geo.cpp * ch), layer.cin
    else:
        shape, real = (h, w, g, geo.chunks_g * ch), layer.cin_g
    x = x.reshape(shape[:-1] + (real,))
    if real == shape[-1]:
        return element_codes(x, core.bits)
    codes = np.zeros(shape, dtype=np.uint8)
    codes[..., :real] = x                     # unsafe cast: two's complement mod 256
    return element_codes(codes, core.bits)


def activation_bytes(x) -> np.ndarray:
    """Range-checked activations as uint8 two's-complement codes (what the stream holds per
    element before 4-bit packing): one cast, so a layer split into several runs (or lowered by
    im2col) slices and copies bytes, not int64."""
    return np.asarray(x).astype(np.uint8)


def pack_activations(x, layer: ConvLayer, core: CoreConfig) -> bytes:
    """Activations in NHWC order, each pixel as (group, chunk) words of ``ch`` channels (each
    group's channels zero-padded to a whole word); depthwise mode: dense NHWC padded to words."""
    return activation_codes(x, layer, core).tobytes()


def pack_input(x, w, bias, mult, shift, layer: ConvLayer, core: CoreConfig) -> bytes:
    """The whole input stream of one layer: params, weights, activations (weight streaming:
    params, activations, weights), zero-padded to whole beats."""
    geo = check_layer(layer, core)
    x, w, bias, mult, shift = validate_inputs(x, w, bias, mult, shift, layer, core.bits)
    weights, acts = pack_weights(w, layer, core), pack_activations(x, layer, core)
    data = pack_params(bias, mult, shift, layer, core) + (acts + weights if geo.ws else weights + acts)
    assert len(data) == geo.in_bytes
    return data + bytes(geo.in_beats * core.bus_bytes - len(data))


def _weak(obj):
    """A weak reference to ``obj`` (a callable returning it), or a strong one for objects that
    take no weak references (None, Python scalars)."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


class StreamPacker:
    """The driver's input-stream packer, with each run's weight words packed once.

    A deployed network streams the same weights with every image, so a driver packs them once
    and per image packs only the parameters (bias, mult, shift: the input-split runs change them
    with the data) and the activations. ``pack(..., key=)`` keeps the weight bytes of a run under
    ``key`` — the caller's identity of the weight tensor and the run, e.g. ``(id(w_q), bits,
    run index)`` — while ``owner`` (the tensor the key names) is alive: the cache holds a weak
    reference to it, so an ``id`` reused by a new tensor never hits and the cache keeps no
    tensor alive; least recently used entries go beyond ``max_bytes`` (bytes of packed
    weights), entries of dead owners first. The weight tensor must not change while it is
    cached. ``key=None`` packs everything, as :func:`pack_input`.

    ``pack`` returns the stream as a flat uint8 array. With ``out=`` (the run's DMA buffer, of
    ``in_beats * bus_bytes`` bytes) it writes the stream there, and where that buffer already
    holds this key's weight words from an earlier call it leaves them in place: a driver that
    keeps one input buffer per run writes only the parameters and activations per image."""

    def __init__(self, max_bytes: int = 64 << 20):
        from collections import OrderedDict

        self.max_bytes = int(max_bytes)
        self._weights: "OrderedDict[tuple, tuple[object, bytes]]" = OrderedDict()
        self._bytes = 0
        self._resident: dict[int, tuple] = {}    # id(out) -> (weakref(out), key, token)
        self._tokens = itertools.count()         # one per packing of a run's weights
        self._checked: "OrderedDict[tuple, object]" = OrderedDict()   # (id, bits) -> ref(owner)
        self.hits = self.misses = 0

    def knows(self, owner, bits: int) -> bool:
        """``owner``'s values were range-checked at ``bits`` when its weights were packed (the
        tensor must not change while it is cached, as for the packed words)."""
        ref = None if owner is None else self._checked.get((id(owner), bits))
        return ref is not None and ref() is owner

    def pack(self, x, w, bias, mult, shift, layer: ConvLayer, core: CoreConfig, key=None,
             owner=None, out: np.ndarray | None = None, codes: bool = False) -> np.ndarray:
        """The run's stream (see the class doc). ``codes=True``: ``x`` holds the activations as
        uint8 two's-complement codes (:func:`activation_bytes`) and the caller range-checked the
        layer's operands (``validate_inputs``), so a run with cached weights checks nothing."""
        geo = check_layer(layer, core)
        total = geo.in_beats * core.bus_bytes
        if out is None:
            out = np.empty(total, dtype=np.uint8)
        elif out.dtype != np.uint8 or out.ndim != 1 or out.size != total:
            raise ValueError(f"the stream buffer must be {total} uint8 bytes, not "
                             f"{out.size} {out.dtype}.")
        full = None if key is None else (key, layer, core)
        hit = None if full is None else self._weights.get(full)
        if codes:
            x = np.asarray(x)
            if x.dtype != np.uint8 or x.shape != (layer.h, layer.w, layer.cin):
                raise DataError(f"activation codes must be uint8 of shape "
                                f"{(layer.h, layer.w, layer.cin)}, not {x.dtype} {x.shape}.")
        if hit is not None and hit[0]() is owner:
            self._weights.move_to_end(full)
            self.hits += 1
            weights, token = hit[1], hit[2]
            # the weights were checked when packed; this run's other operands are checked now,
            # unless the caller checked the layer's (codes=True: a run's bias / mult / shift are
            # the layer's or derived in range by the plan)
            if not codes:
                x, _, bias, mult, shift = validate_inputs(x, w, bias, mult, shift, layer,
                                                          core.bits, weight_values=False)
        else:
            xv, w, bias, mult, shift = validate_inputs(None if codes else x, w, bias, mult, shift,
                                                       layer, core.bits)
            x = x if codes else xv
            weights, token = pack_weights(w, layer, core), next(self._tokens)
            if full is not None:
                self.misses += 1
                self._store(full, owner, weights, token)
                if owner is not None:
                    self._checked[(id(owner), core.bits)] = _weak(owner)
                    self._checked.move_to_end((id(owner), core.bits))
                    while len(self._checked) > 4096:
                        self._checked.popitem(last=False)
        params = pack_params(bias, mult, shift, layer, core)
        acts = activation_codes(x, layer, core)
        p, nw, nx = len(params), len(weights), acts.size
        assert p + nw + nx == geo.in_bytes
        w_at, x_at = (p + nx, p) if geo.ws else (p, p + nw)
        out[:p] = np.frombuffer(params, dtype=np.uint8)
        out[x_at:x_at + nx] = acts
        rec = self._resident.get(id(out))
        if not (full is not None and rec is not None and rec[0]() is out and rec[1] == full
                and rec[2] == token):
            out[w_at:w_at + nw] = np.frombuffer(weights, dtype=np.uint8)
            out[geo.in_bytes:] = 0
            if full is None:
                self._resident.pop(id(out), None)
            else:
                self._remember(out, full, token)
        return out

    def _remember(self, out: np.ndarray, full: tuple, token: int) -> None:
        try:
            ref = weakref.ref(out)
        except TypeError:      # a buffer type without weak references: never treat it as resident
            return
        if len(self._resident) > 4096:      # drop the records of buffers that are gone
            self._resident = {k: v for k, v in self._resident.items() if v[0]() is not None}
        self._resident[id(out)] = (ref, full, token)

    def _store(self, key, owner, weights: bytes, token: int) -> None:
        old = self._weights.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        if len(weights) > self.max_bytes:
            return
        if self._bytes + len(weights) > self.max_bytes:     # the weights of dead owners first
            for k in [k for k, v in self._weights.items() if v[0]() is None]:
                self._bytes -= len(self._weights.pop(k)[1])
        self._weights[key] = (_weak(owner), weights, token)
        self._bytes += len(weights)
        while self._bytes > self.max_bytes:
            _, (_, dropped, _) = self._weights.popitem(last=False)
            self._bytes -= len(dropped)


def unpack_input(data: bytes, layer: ConvLayer, core: CoreConfig):
    """Decode an input stream into (x, w, bias, mult, shift): the inverse of :func:`pack_input`
    (every mode); what a core receives, e.g. for a register-level fake of the board."""
    geo = geometry(layer, core)
    k, pe, ch = layer.kernel, core.pe, core.ch
    dw = geo.depthwise
    g, cog = (1, layer.cout) if dw else (layer.groups, layer.cout_g)
    p_end = PARAM_RECORD_BYTES * geo.n_rec
    rec = np.frombuffer(bytes(data[:p_end]), dtype=PARAM_DTYPE).reshape(g, -1)
    bias = rec["bias"][:, :cog].reshape(-1).astype(np.int64)
    mult = rec["mult"][:, :cog].reshape(-1).astype(np.int64)
    shift = rec["shift"][:, :cog].reshape(-1).astype(np.int64)
    w_bytes = geo.weight_words * core.simd
    x_bytes = layer.h * geo.row_words * core.simd
    if geo.ws:
        xd, wd = data[p_end:p_end + x_bytes], data[p_end + x_bytes:p_end + x_bytes + w_bytes]
    else:
        wd, xd = data[p_end:p_end + w_bytes], data[p_end + w_bytes:p_end + w_bytes + x_bytes]
    wv = unpack_elements(wd, core.bits, geo.weight_words * ch, signed=True)
    if dw:
        wc = np.zeros((k, k, geo.cpp, ch), dtype=np.int64)
        pos = 0
        for words in _dw_tile_words(geo, core):
            n = k * k * len(words) * ch
            wc[:, :, list(words)] = wv[pos:pos + n].reshape(k, k, len(words), ch)
            pos += n
        w = wc.transpose(2, 3, 0, 1).reshape(geo.cpp * ch, k, k)[:layer.cout, None]
    else:
        real = (np.arange(geo.tiles_g)[:, None] * pe + np.arange(pe)[None, :]) < layer.cout_g
        mask = np.broadcast_to(real[None, :, None, None, None, :],
                               (g, geo.tiles_g, k, k, geo.chunks_g, pe))
        full = np.zeros(mask.shape + (ch,), dtype=np.int64)
        full[mask] = wv.reshape(-1, ch)
        wz = full.transpose(0, 1, 5, 4, 6, 2, 3).reshape(g, geo.tiles_g * pe, geo.chunks_g * ch, k, k)
        w = wz[:, :cog, :layer.cin_g].reshape(layer.cout, layer.cin_g, k, k)
    xv = unpack_elements(xd, core.bits, layer.h * geo.row_words * ch, signed=layer.in_signed)
    if dw:
        x = xv.reshape(layer.h, layer.w, geo.cpp * ch)[..., :layer.cin]
    else:
        x = xv.reshape(layer.h, layer.w, g, geo.chunks_g * ch)[..., :layer.cin_g]
    return x.reshape(layer.h, layer.w, layer.cin), w, bias, mult, shift


@functools.lru_cache(maxsize=4096)
def _ws_blocks(layer: ConvLayer, core: CoreConfig) -> tuple[tuple[int, int], ...]:
    """Weight streaming output order: the (first, last+1) channels of each (group, tile) word."""
    cog, pe = layer.cout_g, core.pe
    return tuple((g * cog + t * pe, g * cog + min(cog, (t + 1) * pe))
                 for g in range(layer.groups) for t in range(-(-cog // pe)))


def pack_output(y, layer: ConvLayer, core: CoreConfig) -> bytes:
    """The output stream the core sends for outputs ``y`` (OH, OW, Cout): per pixel, Cout
    elements at out_bits padded to a whole byte; the stream zero-padded to whole beats."""
    geo = geometry(layer, core)
    y = np.asarray(y, dtype=np.int64).reshape(layer.oh * layer.ow, layer.cout)
    if geo.ws:   # (group, tile, pixel) words, each padded to a whole byte
        parts = []
        for c0, c1 in _ws_blocks(layer, core):
            blk = y[:, c0:c1]
            if layer.out_bits == 4 and (c1 - c0) % 2:
                blk = np.concatenate([blk, np.zeros((blk.shape[0], 1), dtype=np.int64)], axis=1)
            parts.append(pack_elements(blk, layer.out_bits))
        data = b"".join(parts)
        return data + bytes(geo.out_beats * core.bus_bytes - len(data))
    if layer.out_bits == 4 and layer.cout % 2:
        y = np.concatenate([y, np.zeros((y.shape[0], 1), dtype=np.int64)], axis=1)
    data = pack_elements(y, layer.out_bits)
    return data + bytes(geo.out_beats * core.bus_bytes - len(data))


def unpack_output(data, layer: ConvLayer, core: CoreConfig) -> np.ndarray:
    """Output stream (bytes or a uint8 array, e.g. the DMA buffer) -> (OH, OW, Cout) int16
    (sign-extended if out_signed; every output code fits). Decodes in uint8/int8, widens once."""
    geo = geometry(layer, core)
    b = _byte_view(data)
    if b.size < geo.out_bytes:
        raise DataError(f"output stream has {b.size} bytes, the layer produces {geo.out_bytes}.")
    bits, signed = layer.out_bits, layer.out_signed
    if geo.ws:
        y = np.empty((layer.oh * layer.ow, layer.cout), dtype=np.int16)
        pos, n = 0, layer.oh * layer.ow
        blocks = _ws_blocks(layer, core)
        full = layer.cout // core.pe if layer.groups == 1 and core.pe * bits % 8 == 0 else 0
        if full:          # the whole-width tiles in one go: (tile, pixel, lane) -> (pixel, channel)
            nb = core.pe * bits // 8
            v = unpack_codes(b[:full * n * nb], bits, full * n * core.pe, signed)
            y[:, :full * core.pe] = v.reshape(full, n, core.pe).transpose(1, 0, 2).reshape(n, -1)
            pos, blocks = full * n * nb, blocks[full:]
        for c0, c1 in blocks:
            nb = -(-(c1 - c0) * bits // 8)
            per = nb * 8 // bits
            v = unpack_codes(b[pos:pos + n * nb], bits, n * per, signed)
            y[:, c0:c1] = v.reshape(n, per)[:, :c1 - c0]
            pos += n * nb
        return y.reshape(layer.oh, layer.ow, layer.cout)
    per_px = geo.out_pixel_bytes * 8 // bits
    v = unpack_codes(b[:geo.out_bytes], bits, geo.out_bytes * 8 // bits, signed)
    return v.reshape(layer.oh, layer.ow, per_px)[:, :, :layer.cout].astype(np.int16)
