"""ohq_pynq.engine.ops.convolution / .taps: every conv kernel (im2col GEMM whole, in image chunks
and in row bands, per image, side by side or through the stride-phase layout; Winograd
F(2x2, 3x3); depthwise with channel multipliers; grouped) against a direct float64 reference,
forward and input gradient, and the scratch bound."""
from __future__ import annotations

import numpy as np
import pytest

from ohq_pynq.engine.ops import convolution as C
from ohq_pynq.engine.ops.taps import TapGrid


def reference_conv(x, w, s, d, pads, group):
    """Direct convolution, one einsum per output channel and tap (float64)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh, ow = C.out_size((h, wd), (kh, kw), s, d, pads)
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for o in range(m):
        g = o // mg
        for i in range(kh):
            for j in range(kw):
                v = xp[:, g * cg:(g + 1) * cg, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                       j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]]
                y[:, o] += np.einsum("nchw,c->nhw", v, w[o, :, i, j])
    return y


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# (channels in, channels out, group): dense, dense with one input channel, grouped, depthwise,
# depthwise with channel multiplier 2
LAYOUTS = [(8, 12, 1), (1, 4, 1), (6, 4, 2), (6, 6, 6), (4, 8, 4)]
GEOMETRY = [  # kernel, stride, dilation, pads (t, l, b, r), input size
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), (9, 8)),
    ((3, 3), (2, 2), (1, 1), (0, 1, 1, 0), (10, 9)),
    ((3, 3), (1, 1), (2, 2), (2, 2, 2, 2), (9, 9)),
    ((5, 5), (2, 2), (1, 1), (2, 2, 2, 2), (11, 12)),
    ((5, 5), (1, 1), (1, 1), (2, 1, 0, 2), (7, 7)),
    ((1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (6, 5)),
    ((1, 1), (2, 2), (1, 1), (0, 0, 0, 0), (7, 8)),
    ((3, 2), (2, 1), (1, 2), (1, 0, 2, 1), (8, 9)),
    ((7, 7), (2, 2), (1, 1), (3, 3, 3, 3), (15, 16)),
    # outputs of >= GEMM_MIN_COLUMNS pixels: strided dense convs through the phase layout
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (34, 36)),
    ((5, 5), (2, 2), (2, 1), (2, 1, 2, 0), (41, 37)),
]
LIMITS = {"whole": 1 << 30, "row bands": 1}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda v: f"c{v[0]}m{v[1]}g{v[2]}")
@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_conv_forward_and_input_gradient_match_reference(layout, limit):
    c, m, g = layout
    rng = np.random.default_rng(17 + LAYOUTS.index(layout))
    for k, s, d, pads, hw in GEOMETRY:
        x = rng.standard_normal((3, c) + hw)
        w = rng.standard_normal((m, c // g) + k)
        y, scratch = C.conv2d(x, w, s, d, pads, g, LIMITS[limit])
        ref = reference_conv(x, w, s, d, pads, g)
        assert y.shape == ref.shape and rel(y, ref) < 1e-12, (k, s, d, pads)
        # input gradient: the adjoint identity <dy, conv(x)> = <conv^T(dy), x>, and linearity
        dy = rng.standard_normal(y.shape)
        dx, _ = C.conv2d_input_grad(dy, w, x.shape, s, d, pads, g, LIMITS[limit])
        assert dx.shape == x.shape
        assert abs(np.sum(dy * ref) - np.sum(dx * x)) < 1e-10 * np.abs(dy).sum() * np.abs(ref).max()
        e = np.zeros_like(x)
        idx = tuple(rng.integers(0, n) for n in x.shape)
        e[idx] = 1.0                       # dx at one pixel = <dy, conv(e_pixel)>
        assert abs(dx[idx] - np.sum(dy * reference_conv(e, w, s, d, pads, g))) < 1e-10 * np.abs(dy).sum()


def test_image_chunks_and_row_bands_equal_the_whole_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 30, 28)).astype(np.float32)
    w = rng.standard_normal((16, 3, 7, 7)).astype(np.float32)
    s, d, pads = (2, 2), (1, 1), (3, 3, 3, 3)
    whole, scratch_whole = C.conv2d(x, w, s, d, pads, 1, 1 << 30)
    per_image = 3 * 49 * 15 * 14 * 4
    chunks, scratch_chunks = C.conv2d(x, w, s, d, pads, 1, 2 * per_image + 3 * 36 * 34 * 8)
    bands, scratch_bands = C.conv2d(x, w, s, d, pads, 1, per_image // 4)
    np.testing.assert_allclose(chunks, whole, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(bands, whole, rtol=1e-6, atol=1e-5)
    assert scratch_bands < scratch_chunks < scratch_whole
    dy = rng.standard_normal(whole.shape).astype(np.float32)
    g_whole, _ = C.conv2d_input_grad(dy, w, x.shape, s, d, pads, 1, 1 << 30)
    g_chunks, _ = C.conv2d_input_grad(dy, w, x.shape, s, d, pads, 1, 1)
    np.testing.assert_allclose(g_chunks, g_whole, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("hw,pads", [((8, 8), (1, 1, 1, 1)), ((7, 9), (1, 1, 1, 1)),
                                     ((12, 5), (0, 0, 0, 0)), ((9, 6), (2, 0, 1, 2))])
def test_winograd_matches_direct_forward_and_gradient(hw, pads):
    rng = np.random.default_rng(hw[0] * 10 + hw[1])
    x = rng.standard_normal((5, 16) + hw)
    w = rng.standard_normal((12, 16, 3, 3))
    out = C.out_size(hw, (3, 3), (1, 1), (1, 1), pads)
    ref = reference_conv(x, w, (1, 1), (1, 1), pads, 1)
    for limit in (1 << 30, 1):                               # whole batch, one image per chunk
        y = np.empty(ref.shape)
        C.winograd3x3(x, C.winograd_kernel(w), pads, out, limit, y)
        assert rel(y, ref) < 1e-13
    # the input gradient is the Winograd conv of dy with the flipped, transposed kernel
    dy = rng.standard_normal(ref.shape)
    dx = np.empty(x.shape)
    C.winograd3x3(dy, C.winograd_kernel(w, flip=True), tuple(2 - p for p in pads), hw, 1 << 30, dx)
    wf = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    assert rel(dx, reference_conv(dy, wf, (1, 1), (1, 1), tuple(2 - p for p in pads), 1)) < 1e-13


def test_winograd_float32_error_is_float32_round_off():
    """Float32 Winograd vs float64 direct at a ResNet stage shape; the dispatcher takes it."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    assert C.use_winograd(2, 64, 64, (28, 28), 4, C.DEFAULT_SCRATCH_BYTES)
    y, _ = C.conv2d(x, w, (1, 1), (1, 1), (1, 1, 1, 1), 1, C.DEFAULT_SCRATCH_BYTES)
    ref, _ = C.conv2d(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1)
    assert y.dtype == np.float32 and rel(y, ref) < 2e-6
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, _ = C.conv2d_input_grad(dy, w, x.shape, (1, 1), (1, 1), (1, 1, 1, 1), 1, C.DEFAULT_SCRATCH_BYTES)
    dx64, _ = C.conv2d_input_grad(dy.astype(np.float64), w.astype(np.float64), x.shape, (1, 1), (1, 1),
                                  (1, 1, 1, 1), 1, 1)
    assert dx.dtype == np.float32 and rel(dx, dx64) < 2e-6


def test_scratch_stays_within_the_bound():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 32, 40, 40)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    for limit in (1 << 20, 4 << 20):
        for args in (((1, 1), (1, 1, 1, 1)), ((2, 2), (1, 1, 1, 1))):
            s, pads = args
            _, scratch = C.conv2d(x, w, s, (1, 1), pads, 1, limit)
            assert 0 < scratch <= limit
            dy = rng.standard_normal((8, 32) + C.out_size((40, 40), (3, 3), s, (1, 1), pads)).astype(np.float32)
            _, scratch = C.conv2d_input_grad(dy, w, x.shape, s, (1, 1), pads, 1, limit)
            assert 0 < scratch <= limit


@pytest.mark.parametrize("s,d,pads", [((1, 1), (1, 1), (2, 2, 2, 2)), ((2, 2), (1, 1), (1, 2, 0, 1)),
                                      ((3, 2), (2, 1), (0, 0, 3, 1))])
def test_tap_grid_scatter_gather_and_taps(s, d, pads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 10))
    k = (3, 2)
    out = C.out_size((9, 10), k, s, d, pads)
    grid = TapGrid((9, 10), pads, k, s, d, out)
    bufs = grid.buffers(2, 3, x.dtype)
    grid.scatter(x, bufs)
    back = np.zeros_like(x)
    grid.gather(bufs, back)
    assert np.array_equal(back, x)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    for i, j, p, off in grid.taps:      # each tap's flat slice is that tap's strided view
        got = grid.grid_view(bufs[p, :, :, off:off + grid.L])
        want = xp[:, :, i * d[0]:i * d[0] + s[0] * (out[0] - 1) + 1:s[0],
                  j * d[1]:j * d[1] + s[1] * (out[1] - 1) + 1:s[1]]
        assert np.array_equal(got, want)


@pytest.mark.parametrize("mg", [1, 2])
@pytest.mark.parametrize("hw,k,s,pads", [((4, 5), (5, 5), (1, 1), (2, 2, 2, 2)),
                                         ((5, 5), (3, 3), (2, 2), (1, 0, 1, 1)),
                                         ((3, 3), (3, 3), (1, 1), (1, 1, 1, 1))])
def test_depthwise_channels_last_on_small_images(mg, hw, k, s, pads):
    """Many channels on a small image take the channels-last depthwise kernels."""
    rng = np.random.default_rng(mg * 100 + hw[0])
    c = 96
    grid = TapGrid(hw, pads, k, s, (1, 1), C.out_size(hw, k, s, (1, 1), pads))
    assert c >= C.DEPTHWISE_CHANNELS_LAST * grid.L
    x = rng.standard_normal((3, c) + hw)
    w = rng.standard_normal((c * mg, 1) + k)
    for limit in (1 << 30, 1):
        y, _ = C.conv2d(x, w, s, (1, 1), pads, c, limit)
        ref = reference_conv(x, w, s, (1, 1), pads, c)
        assert rel(y, ref) < 1e-12
        dy = rng.standard_normal(y.shape)
        dx, _ = C.conv2d_input_grad(dy, w, x.shape, s, (1, 1), pads, c, limit)
        assert abs(np.sum(dy * ref) - np.sum(dx * x)) < 1e-10 * np.abs(dy).sum() * np.abs(ref).max()
        e = np.zeros_like(x)
        e[1, 5, 1, 2] = 1.0
        assert abs(dx[1, 5, 1, 2] - np.sum(dy * reference_conv(e, w, s, (1, 1), pads, c))) < 1e-10 * np.abs(dy).sum()
