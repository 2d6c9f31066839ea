"""2-D convolution kernels behind the Conv op, forward and input gradient, in the input's float
dtype (float32, or float64 for gradient checks), within a scratch bound in bytes.

  * dense (group 1): im2col by a strided view + one BLAS GEMM per image, written straight into
    the NCHW output; images are processed in chunks (and one image in bands of output rows) so
    the column buffer stays within ``limit`` bytes;
  * 3x3 stride-1 dense: Winograd F(2x2, 3x3) (4 instead of 9 multiplies per output, as 16
    GEMMs), same chunking;
  * depthwise (any channel multiplier, stride, dilation, pads): tap accumulation on the
    stride-phase flat layout of :mod:`.taps`, one multiply and one add per kernel tap over the
    whole chunk, no Python loop over channels;
  * grouped: the dense kernel per group.

Input gradients: a stride-1 dense conv's input gradient is the forward conv of ``dy`` with the
spatially flipped, transposed kernel (so it uses the same kernels); strided dense convs use
``W^T dy`` per image chunk and col2im by strided views; depthwise scatters through the phase
layout. Each function returns ``(result, scratch bytes)``: the temporary memory it held.
"""
from __future__ import annotations

import numpy as np

from .base import windows
from .taps import tap_grid

# Winograd F(2x2, 3x3): output tile = A^T [(G g G^T) * (B^T d B)] A
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_KG = np.kron(_G, _G)                     # (16, 9): vec(G g G^T) = _KG @ vec(g)
GEMM_MIN_COLUMNS = 256                    # smaller images: one GEMM over a chunk's images
WINOGRAD_MIN_TILES = 64                   # fewer output tiles per chunk: im2col is cheaper
WINOGRAD_MIN_SAVING = 1.6                 # and when it saves less than this factor of multiplies
DEPTHWISE_CHANNELS_LAST = 2               # depthwise channels-last when channels >= this x grid length
DEPTHWISE_CHUNK_BYTES = 2 << 20           # depthwise works on chunks of about this size (cache)
DEFAULT_SCRATCH_BYTES = 16 << 20          # scratch bound when the caller gives none (bytes)


def out_size(in_hw, k, s, d, pads):
    return tuple((in_hw[i] + pads[i] + pads[i + 2] - (k[i] - 1) * d[i] - 1) // s[i] + 1 for i in range(2))


def _view(a: np.ndarray, shape) -> np.ndarray:
    """``a`` reshaped without copying (raises if impossible): safe as a ``out=`` target."""
    v = a.reshape(shape)
    if not np.may_share_memory(v, a):
        raise ValueError(f"cannot view an array of shape {a.shape} as {shape} without a copy")
    return v


def _chunk(n: int, per_image: int, limit: int) -> int:
    """Images per chunk so that ``per_image`` bytes each stay within ``limit`` (at least 1)."""
    return max(1, min(n, limit // max(per_image, 1)))


def _padded_buffer(x, n, pads):
    """Zeroed (n, c, h + t + b, w + l + r) buffer, or None without pads."""
    if not any(pads):
        return None
    c, h, w = x.shape[1:]
    return np.zeros((n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), dtype=x.dtype)


def _fill(buf, x, pads):
    """``x`` into the interior of the padded chunk buffer (its border is zero); the padded chunk."""
    if buf is None:
        return x
    b, (_, _, h, w) = x.shape[0], x.shape
    out = buf[:b]
    out[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    return out


# ------------------------------------------------------------------------------ forward

def conv2d(x, w, s, d, pads, group, limit, out=None):
    """y = conv(x, w) (no bias), NCHW; returns (y, scratch bytes)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    k = (kh, kw)
    oh, ow = out_size((h, wd), k, s, d, pads)
    if out is None:
        out = np.empty((n, m, oh, ow), dtype=x.dtype)
    if group == 1:
        if k == (3, 3) and s == (1, 1) and d == (1, 1) and use_winograd(n, c, m, (oh, ow), x.itemsize, limit):
            return out, winograd3x3(x, winograd_kernel(w), pads, (oh, ow), limit, out)
        if s != (1, 1) and k != (1, 1) and oh * ow >= GEMM_MIN_COLUMNS:
            return out, grid_im2col_gemm(x, w.reshape(m, -1), k, s, d, pads, (oh, ow), limit, out)
        return out, im2col_gemm(x, w.reshape(m, -1), k, s, d, pads, (oh, ow), limit, out)
    if cg == 1:
        return out, depthwise(x, w, s, d, pads, (oh, ow), limit, out)
    mg, scratch = m // group, 0
    for g in range(group):
        ws = w[g * mg:(g + 1) * mg]
        scratch = max(scratch, im2col_gemm(x[:, g * cg:(g + 1) * cg], ws.reshape(mg, -1), k, s, d, pads,
                                           (oh, ow), limit, out[:, g * mg:(g + 1) * mg]))
    return out, scratch


def im2col_gemm(x, w2, k, s, d, pads, out_hw, limit, y):
    """Dense conv into ``y`` (n, m, oh, ow; may be a channel slice): per chunk of images, the
    columns (c*kh*kw, oh*ow) of each image from a strided view, then ``w2 @ cols`` per image
    straight into ``y``. Small outputs (fewer than GEMM_MIN_COLUMNS pixels) use one GEMM over
    the chunk's columns side by side instead, and a transposing copy into ``y``. One image whose
    columns exceed ``limit`` is split into bands of output rows."""
    n, c, h, wd = x.shape
    m = w2.shape[0]
    oh, ow = out_hw
    kk = c * k[0] * k[1]
    isz = x.itemsize
    if k == (1, 1) and s == (1, 1) and not any(pads) and oh * ow >= GEMM_MIN_COLUMNS:
        np.matmul(w2, x.reshape(n, c, h * wd), out=_view(y, (n, m, oh * ow)))
        return 0
    pad_img = c * (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) * isz if any(pads) else 0
    side = oh * ow < GEMM_MIN_COLUMNS                    # columns of the chunk side by side
    col_img = (kk + (m if side else 0)) * oh * ow * isz
    nb = _chunk(n, col_img + pad_img, limit)
    rows = oh if col_img + pad_img <= limit else max(1, min(oh, (limit - pad_img) // (kk * ow * isz)))
    side = side and rows == oh
    xp_buf = _padded_buffer(x, nb, pads)
    cols_buf = np.empty(nb * kk * rows * ow, dtype=x.dtype)
    y_buf = np.empty(nb * m * oh * ow, dtype=x.dtype) if side else None
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        xp = _fill(xp_buf, x[n0:n0 + b], pads)
        if side:
            cols = cols_buf[:kk * b * oh * ow].reshape(c, k[0], k[1], b, oh, ow)
            if k == (1, 1):                      # no tap axes: a (strided) transposing copy
                cols[:, 0, 0] = xp[:, :, :s[0] * (oh - 1) + 1:s[0], :s[1] * (ow - 1) + 1:s[1]].transpose(1, 0, 2, 3)
            else:
                cols[...] = windows(xp, k, s, d, (oh, ow)).transpose(1, 2, 3, 0, 4, 5)
            yb = y_buf[:m * b * oh * ow].reshape(m, b * oh * ow)
            np.matmul(w2, cols.reshape(kk, b * oh * ow), out=yb)
            y[n0:n0 + b] = yb.reshape(m, b, oh, ow).transpose(1, 0, 2, 3)
            continue
        for r0 in range(0, oh, rows):
            nr = min(rows, oh - r0)
            cols = cols_buf[:b * kk * nr * ow].reshape(b, c, k[0], k[1], nr, ow)
            cols[...] = windows(xp[:, :, r0 * s[0]:], k, s, d, (nr, ow))
            dst = _view(y[n0:n0 + b, :, r0:r0 + nr], (b, m, nr * ow))
            np.matmul(w2, cols.reshape(b, kk, nr * ow), out=dst)
    return cols_buf.nbytes + (xp_buf.nbytes if xp_buf is not None else 0) + (y_buf.nbytes if side else 0)


def _grid_rows(grid, kk, m, c, isz, limit):
    """(images per chunk, grid rows per band) for the grid im2col / col2im of one conv."""
    oh = grid.out_hw[0]
    phases = len(grid.phases) * c * grid.length * isz        # per image
    per_row = (kk + m) * grid.wq * isz                        # columns and GEMM result per grid row
    per_image = phases + per_row * oh
    if per_image <= limit:
        return max(1, limit // per_image), oh
    return 1, max(1, min(oh, (limit - phases) // per_row))


def grid_im2col_gemm(x, w2, k, s, d, pads, out_hw, limit, y):
    """Strided dense conv into ``y`` through the stride-phase flat layout (:mod:`.taps`): each
    tap's columns are one contiguous slice of a phase image (no strided gathers), the GEMM runs
    on the output grid (``wq`` columns per row, a few more than ``ow``) and the valid columns are
    copied into ``y``. Chunked over images, one image in bands of output rows."""
    n, c, h, wd = x.shape
    m = w2.shape[0]
    grid = tap_grid((h, wd), tuple(pads), tuple(k), tuple(s), tuple(d), tuple(out_hw))
    taps = len(grid.taps)
    kk = c * taps
    isz = x.itemsize
    nb, rows = _grid_rows(grid, kk, m, c, isz, limit)
    nb = min(nb, n)
    wq = grid.wq
    bufs = grid.buffers(nb, c, x.dtype)
    cols_buf = np.empty(nb * kk * rows * wq, dtype=x.dtype)
    y_buf = np.empty(nb * m * rows * wq, dtype=x.dtype)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        grid.scatter(x[n0:n0 + b], bufs)
        for r0 in range(0, out_hw[0], rows):
            nr = min(rows, out_hw[0] - r0)
            band = nr * wq
            cols = cols_buf[:b * kk * band].reshape(b, c, taps, band)
            for t, (_, _, p, off) in enumerate(grid.taps):
                o = off + r0 * wq
                cols[:, :, t] = bufs[p, :b, :, o:o + band]
            yg = y_buf[:b * m * band].reshape(b, m, band)
            np.matmul(w2, cols.reshape(b, kk, band), out=yg)
            y[n0:n0 + b, :, r0:r0 + nr] = yg.reshape(b, m, nr, wq)[..., :out_hw[1]]
    return bufs.nbytes + cols_buf.nbytes + y_buf.nbytes


def use_winograd(n, c, m, out_hw, isz, limit) -> bool:
    """Winograd pays when channels are not tiny, a chunk has enough tiles to amortise the
    transforms, and the transformed kernel plus one image's buffers fit the scratch bound."""
    oh, ow = out_hw
    room = limit - 16 * m * c * isz                       # after the kernel U
    per_image = _winograd_bytes(c, m, oh, ow, isz)
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    saving = 9 * oh * ow / (16 * th * (tw + 1))          # multiplies: direct / Winograd grid
    return (c >= 8 and m >= 8 and per_image <= room and saving >= WINOGRAD_MIN_SAVING
            and th * tw * _chunk(n, per_image, room) >= WINOGRAD_MIN_TILES)


def winograd_kernel(w, flip=False):
    """Winograd-domain kernel U (16, m, c) = G g G^T of each 3x3 filter, as one GEMM. With
    ``flip`` the kernel of the input gradient: spatially flipped and transposed, (16, c, m)."""
    m, c = w.shape[:2]
    kg = _KG[:, ::-1] if flip else _KG
    u = np.matmul(kg.astype(w.dtype), w.reshape(m * c, 9).T).reshape(16, m, c)
    return u.transpose(0, 2, 1) if flip else u


def _winograd_geometry(in_hw, pads, out_hw):
    """The 4x4 input tiles (stride 2) of a 3x3 stride-1 conv as a TapGrid: tiles (th, tw), the
    bottom/right padding extended so the last tile row/column is whole."""
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
    t, l = pads[0], pads[1]
    ext = (t, l, 2 * th + 2 - in_hw[0] - t, 2 * tw + 2 - in_hw[1] - l)
    return tap_grid(tuple(in_hw), ext, (4, 4), (2, 2), (1, 1), (th, tw))


def _winograd_bytes(c, m, oh, ow, isz):
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    plane, grid = (th + 1) * (tw + 1) + 1, th * (tw + 1)
    # input phases (4) and one column-transformed pair (2) per plane; V (4) and M (4) of one
    # column index, and the output accumulators (4) per grid
    return (6 * c * plane + 4 * c * grid + 8 * m * grid) * isz


def winograd3x3(x, u, pads, out_hw, limit, y):
    """3x3 stride-1 conv into ``y`` by Winograd F(2x2, 3x3) with kernel ``u`` (16, m, c): per
    chunk of images, V = B^T d B of every 4x4 input tile, 16 GEMMs U_ab @ V_ab over all tiles of
    the chunk, then A^T M A into the output (odd sizes: the last tile row/column is cropped).

    The tiles are read from the 2x2 stride-phase flat layout (:mod:`.taps`), where every tap of
    every tile is a contiguous slice: the transforms are whole-array adds over long rows. Tile
    (s, t) sits at grid position s * wq + t (wq = tw + 1; the extra column is discarded). The
    work goes one transformed column index b at a time (V_.b, then its 4 GEMMs, then its share
    of the output), which keeps a quarter of V and M alive."""
    n, c, h, wd = x.shape
    m = u.shape[1]
    oh, ow = out_hw
    grid = _winograd_geometry((h, wd), pads, out_hw)
    wq, L = grid.wq, grid.L
    plane = grid.hq * wq
    nb = _chunk(n, _winograd_bytes(c, m, oh, ow, x.itemsize), limit - u.nbytes)
    dt = x.dtype
    u4 = u.reshape(4, 4, m, c) if u.flags.c_contiguous else u.transpose(0, 2, 1).reshape(4, 4, c, m).transpose(0, 1, 3, 2)
    bufs = grid.buffers(nb, c, dt)                          # (4 phases, nb, c, plane + 1)
    e_buf = np.empty(2 * nb * c * plane, dtype=dt)
    v_buf = np.empty(4 * c * nb * L, dtype=dt)
    m_buf = np.empty(4 * m * nb * L, dtype=dt)
    y_buf = np.empty(4 * m * nb * L, dtype=dt)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        nt = b * L
        grid.scatter(x[n0:n0 + b], bufs)
        ph = bufs[:, :b]
        e = e_buf[:2 * b * c * plane].reshape(2, b, c, plane)
        vv = v_buf[:4 * c * nt].reshape(4, c, nt)
        v = vv.reshape(4, c, b, L).transpose(0, 2, 1, 3)          # (4, b, c, L) view
        mj = m_buf[:4 * m * nt].reshape(4, m, nt)
        yo = y_buf[:4 * m * nt].reshape(2, 2, m, nt)              # output (row i, column j)
        for j in range(4):
            # column transform j (B^T row j) of both row phases, over every tile row position
            for r in range(2):
                p0, p1 = ph[2 * r], ph[2 * r + 1]                 # column phases 0 and 1
                a0, a1 = (p0, p0) if j == 0 else (p1, p0) if j in (1, 2) else (p1, p1)
                op = np.add if j == 1 else np.subtract
                if j == 2:
                    np.subtract(p0[..., 1:plane + 1], p1[..., 0:plane], out=e[r])
                else:
                    op(a0[..., 0:plane], a1[..., 1:plane + 1], out=e[r])
            # row transform: tile rows 0, 1, 2, 3 are E[0], E[1] at offsets 0 and wq
            r0, r1, r2, r3 = e[0, ..., 0:L], e[1, ..., 0:L], e[0, ..., wq:wq + L], e[1, ..., wq:wq + L]
            np.subtract(r0, r2, out=v[0])
            np.add(r1, r2, out=v[1])
            np.subtract(r2, r1, out=v[2])
            np.subtract(r1, r3, out=v[3])
            np.matmul(u4[:, j], vv, out=mj)
            # A^T rows: S_0 = M_0 + M_1 + M_2, S_1 = M_1 - M_2 - M_3; then A^T over columns:
            # Y_i0 = S_i(j=0) + S_i(1) + S_i(2), Y_i1 = S_i(1) - S_i(2) - S_i(3)
            if j in (0, 1):
                for i in range(2):
                    dst = yo[i, j]
                    if i == 0:
                        np.add(mj[0], mj[1], out=dst)
                        dst += mj[2]
                    else:
                        np.subtract(mj[1], mj[2], out=dst)
                        dst -= mj[3]
                    if j == 1:
                        yo[i, 0] += dst
                continue
            np.subtract(mj[1], mj[3], out=mj[3])
            mj[3] -= mj[2]
            mj[0] += mj[1]
            mj[0] += mj[2]
            for i, si in ((0, mj[0]), (1, mj[3])):
                if j == 2:
                    yo[i, 0] += si
                yo[i, 1] -= si
        yc = y[n0:n0 + b].transpose(1, 0, 2, 3)                   # (m, b, oh, ow) view
        for i in range(2):
            for j in range(2):
                ri, cj = (oh - i + 1) // 2, (ow - j + 1) // 2
                yc[:, :, i::2, j::2] = yo[i, j].reshape(m, b, grid.out_hw[0], wq)[:, :, :ri, :cj]
    return u.nbytes + bufs.nbytes + e_buf.nbytes + v_buf.nbytes + m_buf.nbytes + y_buf.nbytes


def depthwise(x, w, s, d, pads, out_hw, limit, y):
    """Depthwise conv (group = channels, multiplier mg = m / c) into ``y``: per chunk of images,
    for each kernel tap one multiply by the per-channel weights and one add, over the flat
    stride-phase layout (see :mod:`.taps`)."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    mg = m // c
    grid = tap_grid((h, wd), tuple(pads), (kh, kw), tuple(s), tuple(d), tuple(out_hw))
    isz = x.itemsize
    per_image = (len(grid.phases) * c * grid.length + 2 * m * grid.L) * isz
    nb = _chunk(n, per_image, min(limit, max(DEPTHWISE_CHUNK_BYTES, per_image)))
    if c >= DEPTHWISE_CHANNELS_LAST * grid.L:
        return _depthwise_cl(x, w, grid, nb, y)
    bufs = grid.buffers(nb, c, x.dtype)
    acc_buf = np.empty((nb, c, mg, grid.L), dtype=x.dtype)
    tmp_buf = np.empty_like(acc_buf)
    wt = w.reshape(c, mg, kh, kw)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        grid.scatter(x[n0:n0 + b], bufs)
        acc, tmp = acc_buf[:b], tmp_buf[:b]
        first = True
        for i, j, p, off in grid.taps:
            src = bufs[p, :b, :, None, off:off + grid.L]          # (b, c, 1, L)
            wij = wt[None, :, :, i, j, None]                       # (1, c, mg, 1)
            if first:
                np.multiply(src, wij, out=acc)
                first = False
            else:
                np.multiply(src, wij, out=tmp)
                acc += tmp
        y[n0:n0 + b] = grid.grid_view(acc.reshape(b, m, grid.L))
    return bufs.nbytes + acc_buf.nbytes + tmp_buf.nbytes


def _depthwise_cl(x, w, grid, nb, y):
    """:func:`depthwise` on channels-last phase buffers (many channels, small images: a tap is
    one multiply over a (grid, channel) block with the channel weights along the fast axis)."""
    n, c = x.shape[:2]
    m, _, kh, kw = w.shape
    mg = m // c
    bufs = grid.buffers_cl(nb, c, x.dtype)
    acc_buf = np.empty((nb, grid.L, c, mg), dtype=x.dtype)
    tmp_buf = np.empty_like(acc_buf)
    wt = np.ascontiguousarray(w.reshape(c, mg, kh, kw).transpose(2, 3, 0, 1))      # (kh, kw, c, mg)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        grid.scatter_cl(x[n0:n0 + b], bufs)
        acc, tmp = acc_buf[:b], tmp_buf[:b]
        for t, (i, j, p, off) in enumerate(grid.taps):
            src = bufs[p, :b, off:off + grid.L, :, None]             # (b, L, c, 1)
            if t == 0:
                np.multiply(src, wt[i, j], out=acc)
            else:
                np.multiply(src, wt[i, j], out=tmp)
                acc += tmp
        y[n0:n0 + b].transpose(0, 2, 3, 1)[...] = grid.grid_view_cl(acc.reshape(b, grid.L, m))
    return bufs.nbytes + acc_buf.nbytes + tmp_buf.nbytes + wt.nbytes


# ------------------------------------------------------------------------- input gradient

def conv2d_input_grad(dy, w, xshape, s, d, pads, group, limit):
    """dL/dx of y = conv(x, w) given dL/dy; returns (dx, scratch bytes)."""
    n, c, h, wd = xshape
    m, cg, kh, kw = w.shape
    k = (kh, kw)
    if group != 1 and cg == 1:
        return depthwise_input_grad(dy, w, xshape, s, d, pads, limit)
    dx = np.empty((n, c, h, wd), dtype=dy.dtype)
    if group == 1 and k == (3, 3) and s == (1, 1) and d == (1, 1) and max(pads) <= 2:
        # a stride-1 conv's input gradient is the stride-1 conv of dy with the flipped,
        # transposed kernel and pads k - 1 - p: Winograd applies to it as to the forward
        if use_winograd(n, m, c, (h, wd), dy.itemsize, limit):
            bp = tuple(2 - p for p in pads)
            return dx, winograd3x3(dy, winograd_kernel(w, flip=True), bp, (h, wd), limit, dx)
    if group == 1 and s != (1, 1) and k != (1, 1) and dy.shape[2] * dy.shape[3] >= GEMM_MIN_COLUMNS:
        return dx, grid_col2im_gemm(dy, w.reshape(m, -1), k, s, d, pads, dx, limit)
    mg, scratch = m // group, 0
    for g in range(group):
        w2 = w[g * mg:(g + 1) * mg].reshape(mg, -1)
        scratch = max(scratch, col2im_gemm(dy[:, g * mg:(g + 1) * mg], w2, k, s, d, pads,
                                           dx[:, g * cg:(g + 1) * cg], limit))
    return dx, scratch


def col2im_gemm(dy, w2, k, s, d, pads, dx, limit):
    """Input gradient of a dense conv into ``dx`` (n, c, h, w; may be a channel slice): per chunk
    of images (one image: bands of output rows), columns ``w2^T @ dy`` (c*kh*kw, oh*ow) per image
    (small outputs: one GEMM over the chunk side by side), added back tap by tap through strided
    views (col2im)."""
    n, c, h, wd = dx.shape
    m = w2.shape[0]
    oh, ow = dy.shape[2:]
    kk = c * k[0] * k[1]
    isz = dy.itemsize
    hp, wp = h + pads[0] + pads[2], wd + pads[1] + pads[3]
    if k == (1, 1) and not any(pads) and s == (1, 1) and oh * ow >= GEMM_MIN_COLUMNS:
        np.matmul(w2.T, dy.reshape(n, m, oh * ow), out=_view(dx, (n, c, h * wd)))
        return 0
    side = oh * ow < GEMM_MIN_COLUMNS
    pad_img = c * hp * wp * isz
    col_img = (kk + (m if side else 0)) * oh * ow * isz
    nb = _chunk(n, col_img + pad_img, limit)
    rows = oh if col_img + pad_img <= limit else max(1, min(oh, (limit - pad_img) // (kk * ow * isz)))
    side = side and rows == oh
    cols_buf = np.empty(nb * kk * rows * ow, dtype=dy.dtype)
    dxp_buf = np.empty((nb, c, hp, wp), dtype=dy.dtype)
    dy_buf = np.empty(nb * m * oh * ow, dtype=dy.dtype) if side else None
    wt = w2.T
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        dxp = dxp_buf[:b]
        dxp[...] = 0
        for r0 in range(0, oh, rows):
            nr = min(rows, oh - r0)
            if side:
                dyt = dy_buf[:m * b * oh * ow].reshape(m, b, oh, ow)
                dyt[...] = dy[n0:n0 + b].transpose(1, 0, 2, 3)
                cols = cols_buf[:kk * b * oh * ow].reshape(kk, b * oh * ow)
                np.matmul(wt, dyt.reshape(m, b * oh * ow), out=cols)
                cols6 = cols.reshape(c, k[0], k[1], b, oh, ow).transpose(3, 0, 1, 2, 4, 5)
            else:
                cols = cols_buf[:b * kk * nr * ow].reshape(b, kk, nr * ow)
                np.matmul(wt, dy[n0:n0 + b, :, r0:r0 + nr].reshape(b, m, nr * ow), out=cols)
                cols6 = cols.reshape(b, c, k[0], k[1], nr, ow)
            for i in range(k[0]):
                for j in range(k[1]):
                    r, q = r0 * s[0] + i * d[0], j * d[1]
                    dxp[:, :, r:r + s[0] * (nr - 1) + 1:s[0], q:q + s[1] * (ow - 1) + 1:s[1]] += cols6[:, :, i, j]
        dx[n0:n0 + b] = dxp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd]
    return cols_buf.nbytes + dxp_buf.nbytes + (dy_buf.nbytes if side else 0)


def grid_col2im_gemm(dy, w2, k, s, d, pads, dx, limit):
    """Input gradient of a strided dense conv through the stride-phase flat layout: ``dy`` on
    the output grid (zeros in its padding columns), columns ``w2^T @ dy`` per image, each tap's
    columns added to one contiguous slice of a phase image, the phases gathered into ``dx``."""
    n, c, h, wd = dx.shape
    m = w2.shape[0]
    out_hw = dy.shape[2:]
    grid = tap_grid((h, wd), tuple(pads), tuple(k), tuple(s), tuple(d), tuple(out_hw))
    taps = len(grid.taps)
    kk = c * taps
    isz = dy.itemsize
    nb, rows = _grid_rows(grid, kk, m, c, isz, limit)
    nb = min(nb, n)
    wq = grid.wq
    acc = grid.buffers(nb, c, dy.dtype)
    cols_buf = np.empty(nb * kk * rows * wq, dtype=dy.dtype)
    dyg_buf = np.empty(nb * m * rows * wq, dtype=dy.dtype)
    wt = w2.T
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        if n0:
            acc[...] = 0
        for r0 in range(0, out_hw[0], rows):
            nr = min(rows, out_hw[0] - r0)
            band = nr * wq
            dyg = dyg_buf[:b * m * band].reshape(b, m, nr, wq)
            dyg[..., :out_hw[1]] = dy[n0:n0 + b, :, r0:r0 + nr]
            dyg[..., out_hw[1]:] = 0                             # the grid's padding columns
            cols = cols_buf[:b * kk * band].reshape(b, kk, band)
            np.matmul(wt, dyg.reshape(b, m, band), out=cols)
            cols4 = cols.reshape(b, c, taps, band)
            for t, (_, _, p, off) in enumerate(grid.taps):
                o = off + r0 * wq
                acc[p, :b, :, o:o + band] += cols4[:, :, t]
        grid.gather(acc[:, :b], dx[n0:n0 + b])
    return acc.nbytes + cols_buf.nbytes + dyg_buf.nbytes


def depthwise_input_grad(dy, w, xshape, s, d, pads, limit):
    """Input gradient of a depthwise conv: each tap's ``dy * w`` added into the phase layout at
    the tap's offset (dy sits on the output grid with zeros in its padding columns)."""
    n, c, h, wd = xshape
    m, _, kh, kw = w.shape
    mg = m // c
    out_hw = dy.shape[2:]
    grid = tap_grid((h, wd), tuple(pads), (kh, kw), tuple(s), tuple(d), tuple(out_hw))
    isz = dy.itemsize
    per_image = (len(grid.phases) * c * grid.length + (m + 2 * c) * grid.L) * isz
    nb = _chunk(n, per_image, min(limit, max(DEPTHWISE_CHUNK_BYTES, per_image)))
    if c >= DEPTHWISE_CHANNELS_LAST * grid.L:
        return _depthwise_input_grad_cl(dy, w, xshape, grid, nb)
    bufs = grid.buffers(nb, c, dy.dtype)
    dyg_buf = np.zeros((nb, c, mg, grid.L), dtype=dy.dtype)
    tmp_buf = np.empty((nb, c, grid.L), dtype=dy.dtype)
    wt = w.reshape(c, mg, kh, kw)
    dx = np.empty(xshape, dtype=dy.dtype)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        dyg = dyg_buf[:b]
        grid.grid_view(dyg)[...] = dy[n0:n0 + b].reshape((b, c, mg) + tuple(out_hw))
        if n0:
            bufs[...] = 0
        tmp = tmp_buf[:b]
        for i, j, p, off in grid.taps:
            dst = bufs[p, :b, :, off:off + grid.L]
            if mg == 1:
                np.multiply(dyg[:, :, 0], wt[None, :, 0, i, j, None], out=tmp)
            else:
                np.einsum("bcql,cq->bcl", dyg, wt[:, :, i, j], out=tmp)
            dst += tmp
        grid.gather(bufs[:, :b], dx[n0:n0 + b])
    return dx, bufs.nbytes + dyg_buf.nbytes + tmp_buf.nbytes


def _depthwise_input_grad_cl(dy, w, xshape, grid, nb):
    """:func:`depthwise_input_grad` on channels-last buffers (see :func:`_depthwise_cl`)."""
    n, c = xshape[:2]
    m, _, kh, kw = w.shape
    mg = m // c
    oh, ow = grid.out_hw
    bufs = grid.buffers_cl(nb, c, dy.dtype)
    dyg_buf = np.zeros((nb, grid.L, c, mg), dtype=dy.dtype)       # zeros in the padding columns
    tmp_buf = np.empty((nb, grid.L, c), dtype=dy.dtype)
    wt = np.ascontiguousarray(w.reshape(c, mg, kh, kw).transpose(2, 3, 0, 1))      # (kh, kw, c, mg)
    dx = np.empty(xshape, dtype=dy.dtype)
    for n0 in range(0, n, nb):
        b = min(nb, n - n0)
        dyg = dyg_buf[:b]
        grid.grid_view_cl(dyg.reshape(b, grid.L, m))[...] = dy[n0:n0 + b].transpose(0, 2, 3, 1)
        if n0:
            bufs[...] = 0
        tmp = tmp_buf[:b]
        for i, j, p, off in grid.taps:
            if mg == 1:
                np.multiply(dyg[..., 0], wt[i, j, :, 0], out=tmp)
            else:
                np.einsum("blcq,cq->blc", dyg, wt[i, j], out=tmp)
            bufs[p, :b, off:off + grid.L] += tmp
        grid.gather_cl(bufs[:, :b], dx[n0:n0 + b])
    return dx, bufs.nbytes + dyg_buf.nbytes + tmp_buf.nbytes + wt.nbytes
