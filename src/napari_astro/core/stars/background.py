"""Coarse mesh background of an image (sigma-clipped block medians, a 3x3 median
over the mesh, bilinear interpolation) and its per-pixel sky noise, as sep and
SExtractor do before detection."""

from __future__ import annotations

import numpy as np
from ..jit import njit

from ..stats import MAD_SIGMA, run_in_threads

__all__ = ["estimate_background"]


def _interp_matrix(n_out: int, n_mesh: int, block: int) -> np.ndarray:
    """``(n_out, n_mesh)`` linear-interpolation weights from mesh centres to pixels."""
    centres = (np.arange(n_mesh) + 0.5) * block - 0.5
    pos = np.arange(n_out, dtype=np.float64)
    m = np.zeros((n_out, n_mesh), dtype=np.float32)
    if n_mesh == 1:
        m[:, 0] = 1.0
        return m
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, n_mesh - 2)
    t = np.clip((pos - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
    rows = np.arange(n_out)
    m[rows, j] = 1.0 - t
    m[rows, j + 1] += t
    return m


def _interp_weights(n_out: int, n_mesh: int, block: int):
    """The two non-zero entries of each row of :func:`_interp_matrix`: mesh indices
    ``j0, j1`` (int64) and weights ``w0, w1`` (float32, the matrix's values)."""
    m = _interp_matrix(n_out, n_mesh, block)
    if n_mesh == 1:
        j0 = np.zeros(n_out, np.int64)
        return j0, j0.copy(), m[:, 0].copy(), np.zeros(n_out, np.float32)
    centres = (np.arange(n_mesh) + 0.5) * block - 0.5
    j0 = np.clip(np.searchsorted(centres, np.arange(n_out, dtype=np.float64)) - 1,
                 0, n_mesh - 2).astype(np.int64)
    rows = np.arange(n_out)
    return j0, j0 + 1, m[rows, j0].copy(), m[rows, j0 + 1].copy()


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], i8[::1], i8[::1], i8[::1], f4[::1], f4[::1], f4[:, ::1], i8, i8)")
def _interp_rows(rows, seg, jx0, jx1, wx0, wx1, out, i0, i1):  # pragma: no cover - numba
    """``out[y] = rows[y] @ ax.T`` for the 2-tap interpolation rows of ``ax``, over the
    runs of columns ``seg[s]:seg[s + 1]`` that share their two mesh indices: contiguous
    slices with the two mesh values hoisted (vectorised; per pixel the same products
    and sum as ``rows[y, jx0[x]] * wx0[x] + rows[y, jx1[x]] * wx1[x]``)."""
    for y in range(i0, i1):
        ry = rows[y]
        o = out[y]
        for s in range(seg.shape[0] - 1):
            x = seg[s]
            e = seg[s + 1]
            a = ry[jx0[x]]
            b = ry[jx1[x]]
            oo = o[x:e]
            u0 = wx0[x:e]
            u1 = wx1[x:e]
            for i in range(e - x):
                oo[i] = a * u0[i] + b * u1[i]


def _interpolate(med: np.ndarray, h: int, w: int, by: int, bx: int) -> np.ndarray:
    """Bilinear interpolation of the ``(ny, nx)`` mesh onto ``(h, w)`` pixels: what
    ``(ay @ med) @ ax.T`` with the :func:`_interp_matrix` matrices gives (to float32
    rounding), without BLAS. The matrix product was 5 ms, but OpenBLAS's threads then
    spin-wait for their next job: measured 50-90 ms of CPU burnt in the 0.3 s after
    each call, per light (1080x1920); this kernel is 2-3 ms of CPU and nothing after.
    """
    ny, nx = med.shape
    jy0, jy1, wy0, wy1 = _interp_weights(h, ny, by)
    jx0, jx1, wx0, wx1 = _interp_weights(w, nx, bx)
    m = med.astype(np.float32)
    rows = np.ascontiguousarray(m[jy0] * wy0[:, None] + m[jy1] * wy1[:, None])
    out = np.empty((h, w), np.float32)
    change = np.flatnonzero((jx0[1:] != jx0[:-1]) | (jx1[1:] != jx1[:-1])) + 1
    seg = np.concatenate(([0], change, [w])).astype(np.int64)
    run_in_threads(_interp_rows, h, rows, seg, jx0, jx1, wx0, wx1, out)
    return out


def estimate_background(data: np.ndarray, *, box: int = 64) -> tuple[np.ndarray, float]:
    """Smooth sky background map and per-pixel sky noise.

    Sigma-clipped medians of ``box`` x ``box`` blocks (subsampled 4x4 for speed), a 3x3
    median filter over the mesh (removes blocks biased by bright stars or nebula
    knots), then bilinear interpolation between block centres.

    Parameters
    ----------
    data : ndarray, shape (H, W)
        Image, any float type.
    box : int, default 64
        Block size in pixels; larger than the stars, smaller than gradients.

    Returns
    -------
    background : ndarray of float32, shape (H, W)
    noise : float
        Median over blocks of the clipped robust standard deviation (data units).
    """
    data = np.asarray(data, dtype=np.float32)
    h, w = data.shape
    ny, nx = max(1, h // box), max(1, w // box)
    by, bx = h // ny, w // nx
    # Every 4th pixel both ways (256 samples per 64x64 block) is plenty for a clipped
    # median and costs 11 ms per 2000x1500 frame against 54 ms for every 2nd pixel.
    step = 4 if min(by, bx) >= 32 else (2 if min(by, bx) >= 16 else 1)
    blocks = data[:ny * by:step, :nx * bx:step]
    bys, bxs = blocks.shape[0] // ny, blocks.shape[1] // nx
    blocks = blocks[:ny * bys, :nx * bxs].reshape(ny, bys, nx, bxs).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(ny * nx, bys * bxs)
    med, sig = _block_stats(np.ascontiguousarray(blocks))
    med = np.nan_to_num(med.reshape(ny, nx), nan=float(np.nanmedian(med)))
    sig = sig.reshape(ny, nx)
    if ny >= 3 and nx >= 3:
        med = _median3x3(med)
    bkg = _interpolate(med, h, w, by, bx)
    noise = float(np.nanmedian(sig)) if np.isfinite(sig).any() else 0.0
    return bkg, noise


def _median3x3(a: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.median_filter(a, size=3, mode="nearest")`` of a small 2-D array:
    the middle of each 3x3 neighbourhood (edges repeated), exactly (9 values: the
    median is one of them); no scipy import for the stars' path."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    nb = np.stack([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return np.sort(nb, axis=0)[4].astype(a.dtype, copy=False)


@njit(cache=True, nogil=True, inline="always")
def _count_below(row, lo, hi, x, inclusive):  # pragma: no cover - numba
    """``lo`` + how many of the sorted ``row[lo:hi]`` are ``< x`` (``<= x`` when
    ``inclusive``), compared in float64: a binary search."""
    a = lo
    b = hi
    while a < b:
        mid = (a + b) >> 1
        v = np.float64(row[mid])
        if v < x or (inclusive and v == x):
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], f4[::1], f4[::1], i8, i8)")
def _block_stats_rows(v, md, sg, i0, i1):  # pragma: no cover - numba
    """:func:`_block_stats_numpy` for the sorted finite rows ``i0 <= b < i1`` of ``v``:
    the same three clipping rounds, each row on its own, the MAD's middle values by
    merging the deviations on both sides of the median (they are already in order
    in a sorted row) instead of sorting them. Same float64 arithmetic, same values."""
    m = v.shape[1]
    f05 = np.float32(0.5)
    for b in range(i0, i1):
        row = v[b]
        lo = 0
        hi = m
        mdb = 0.0
        sgb = 0.0
        for it in range(3):
            nl = hi - lo
            if nl <= 0:
                break
            k = lo + nl // 2
            if nl % 2 == 1:
                mdb = np.float64(row[k])
            else:
                mdb = np.float64(f05 * (row[k - 1] + row[k]))
            # deviations |row - mdb| of row[lo:hi], in increasing order: row[p:] going
            # right, row[:p] going left, p the first value >= mdb
            p = _count_below(row, lo, hi, mdb, False)
            i = p - 1
            j = p
            hh = nl // 2
            prev = 0.0
            cur = 0.0
            for t in range(hh + 1):
                dl = mdb - np.float64(row[i]) if i >= lo else np.inf
                dr = np.float64(row[j]) - mdb if j < hi else np.inf
                prev = cur
                if dl <= dr:
                    cur = dl
                    i -= 1
                else:
                    cur = dr
                    j += 1
            if nl % 2 == 1:
                sgb = MAD_SIGMA * cur
            else:
                sgb = MAD_SIGMA * (0.5 * (prev + cur))
            if it == 2:
                break
            lo_v = mdb - 4.0 * sgb
            hi_v = mdb + 2.5 * sgb
            lo = _count_below(row, 0, m, lo_v, False)
            hi = _count_below(row, 0, m, hi_v, True)
        md[b] = mdb
        sg[b] = sgb


def _block_stats(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_block_stats_numpy`'s values: numpy's row sort, then the clipping rounds
    per block in :func:`_block_stats_rows` (finite blocks; others take the numpy
    path). Measured on the 464 blocks of a Seestar luminance, 1 thread: ~1 ms
    against 8 ms."""
    if not np.isfinite(blocks).all():
        return _block_stats_numpy(blocks)
    v = np.sort(blocks, axis=1)
    md = np.empty(v.shape[0], np.float32)
    sg = np.empty(v.shape[0], np.float32)
    _block_stats_rows(v, md, sg, 0, v.shape[0])
    return md, sg


def _block_stats_numpy(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clipped median and robust sigma of each row of ``blocks`` (nb, m) float32.

    Two clipping rounds at (-4, +2.5) sigma: stars and nebula only push values up.
    numpy over all blocks at once (row sorts; the values outside a block's clipped
    range set to +inf so they sort last): ~5 ms for the 480 blocks of a Seestar frame,
    like the numba kernel this replaces (np.nanmedian per block took 170 ms), without
    its compile on the first run (9.7 s of 47 s, issue 13). Same results bit for bit:
    medians and sigmas in float64 from the float32 values, as the kernel computed.
    """
    nb, m = blocks.shape
    v = np.sort(blocks, axis=1)
    rows = np.arange(nb)
    lo = np.zeros(nb, np.int64)
    hi = np.full(nb, m, np.int64)
    md = np.zeros(nb)
    sg = np.zeros(nb)
    live = np.ones(nb, bool)
    cols = np.arange(m)
    for it in range(3):
        n = hi - lo
        live &= n > 0
        if not live.any():
            break
        b = rows[live]
        nl = n[live]
        k = lo[live] + nl // 2
        odd = nl % 2 == 1
        km = np.maximum(k - 1, 0)
        md_b = np.where(odd, v[b, k].astype(np.float64),
                        0.5 * (v[b, km] + v[b, k]).astype(np.float64))
        dev = np.abs(v[b].astype(np.float64) - md_b[:, None])
        dev[(cols < lo[b, None]) | (cols >= hi[b, None])] = np.inf
        dev.sort(axis=1)
        h = nl // 2
        sg_b = MAD_SIGMA * np.where(odd, dev[np.arange(b.size), h],
                                    0.5 * (dev[np.arange(b.size), np.maximum(h - 1, 0)]
                                           + dev[np.arange(b.size), h]))
        md[b] = md_b
        sg[b] = sg_b
        if it == 2:
            break
        lo_v = md_b - 4.0 * sg_b
        hi_v = md_b + 2.5 * sg_b
        if np.isfinite(lo_v).all() and np.isfinite(hi_v).all():
            # searchsorted has no axis; on sorted rows (NaN last) it is the count of
            # values < x (left) or <= x (right): one comparison over all blocks,
            # measured 0.3 ms against 5-8 ms for ~930 searchsorted calls per frame
            vb = v[b]
            lo[b] = np.count_nonzero(vb < lo_v[:, None], axis=1)
            hi[b] = np.count_nonzero(vb <= hi_v[:, None], axis=1)
        else:
            for j, bi in enumerate(b):
                lo[bi] = np.searchsorted(v[bi], lo_v[j])
                hi[bi] = np.searchsorted(v[bi], hi_v[j], side="right")
    return md.astype(np.float32), sg.astype(np.float32)
