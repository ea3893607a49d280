"""Resampling onto the reference grid: Lanczos-3 (default, optionally clamped against
ringing), bicubic or bilinear, all channels in one pass, the footprint as the mask.
Affine maps near a multiple of 90 degrees go through two 1-D passes (12 taps per
pixel instead of 36 for Lanczos-3, ~3x less CPU); homographies use the 2-D kernel."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from ..jit import njit

from ..image import AstroImage
from ..stats import run_in_threads
from .transform import INTERPOLATIONS, Transform

__all__ = ["apply_transform"]

# --------------------------------------------------------------------------- resampling
_LUT_SIZE = 2048  # fraction steps: 1/4096 px worst-case position quantisation


@functools.lru_cache(maxsize=None)
def _kernel_lut(kind: str) -> tuple[np.ndarray, int]:
    """Weights ``lut[k, t]`` for fraction ``k / _LUT_SIZE`` and tap ``t`` (rows sum to 1).
    Computed once per kind (0.5 ms of sinc per frame otherwise); never modify it."""
    radius = {"lanczos3": 3, "bicubic": 2, "bilinear": 1}[kind]
    f = np.arange(_LUT_SIZE + 1) / _LUT_SIZE
    taps = np.arange(-radius + 1, radius + 1)
    d = f[:, None] - taps[None, :]                  # distance from sample to tap
    if kind == "lanczos3":
        w = np.sinc(d) * np.sinc(d / 3.0)
        w[np.abs(d) >= 3] = 0
    elif kind == "bicubic":  # Keys, a = -0.5
        a = -0.5
        ad = np.abs(d)
        w = np.where(ad <= 1, (a + 2) * ad ** 3 - (a + 3) * ad ** 2 + 1,
                     np.where(ad < 2, a * ad ** 3 - 5 * a * ad ** 2 + 8 * a * ad - 4 * a, 0.0))
    else:
        w = np.maximum(1 - np.abs(d), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    # not flagged read-only: numba would type (and compile) the kernels anew for that
    return np.ascontiguousarray(w, dtype=np.float32), radius


# Resampling cost, (3, 1500, 2000) float32, Lanczos-3 + clamp, 2 shared cores: CPU
# seconds from os.times() (best of 5; wall ~half of it when both cores are free):
#                               shift   rot 2   rot 180  rot 90   rot 40 / homography
#   2-D kernel (36 taps/px/ch)  0.33    0.34    0.31     0.36     0.33 / 0.33
#   two passes (6 + 6 taps)     0.11    0.12    0.12     0.10     (2-D kernel used)
# Pass 1 ~0.02 s, pass 2 ~0.06 s of which ~0.02 s is reading the 2x2 source
# neighbours for the clamp. Since issue 13 the Lanczos-3 passes along rows/columns
# (``_pass_rows_l3_rows``, ``_pass_cols_l3_rows``) run over contiguous slices and
# vectorise: (3, 1920, 1080), 0.3 deg, CPU 0.135 -> 0.054 s for apply_transform; then
# (int32 positions, weights and runs reused from the row above, both passes block by
# block) 55 -> 33 ms on the m94 lights (benchmarks/bench_onepass_kernels.py, 1
# thread). A per-pass clamp against the two 1-D neighbours was
# tried and dropped: it clips star peaks twice (+1% FWHM at 2.2 px FWHM, up to 8% of
# the peak value), whereas the 2x2 clamp in pass 2 gives the 2-D kernel's result
# bit for bit for shifts and 180 degrees, and within 0.1% FWHM / 0.001 px otherwise.


@njit(cache=True, fastmath=True, nogil=True)
def _warp_rows(src, minv, out, footprint, lut, radius, nlut, clamp, src_mask, out_mask,
               i0, i1):  # pragma: no cover
    """Resample ``src`` (C, H, W) at ``minv @ (x, y, 1)`` for every output pixel with
    the 2-D tensor-product kernel (``(2 radius)^2`` taps): exact for homographies.

    Weights come from a 2048-step table, ~3x faster than evaluating sin() per tap.
    """
    nc, h, w = src.shape
    wo = out.shape[2]
    ntap = 2 * radius
    use_mask = src_mask.shape[0] == h
    for yo in range(i0, i1):
        for xo in range(wo):
            xs = minv[0, 0] * xo + minv[0, 1] * yo + minv[0, 2]
            ys = minv[1, 0] * xo + minv[1, 1] * yo + minv[1, 2]
            ws = minv[2, 0] * xo + minv[2, 1] * yo + minv[2, 2]
            if ws != 1.0:
                xs /= ws
                ys /= ws
            if not (xs >= -1e-6 and xs <= w - 1 + 1e-6 and ys >= -1e-6 and ys <= h - 1 + 1e-6):
                for c in range(nc):
                    out[c, yo, xo] = 0.0
                footprint[yo, xo] = False
                continue
            # within 1e-6 outside the edge: on it (floor would give -1, which wraps)
            xs = max(xs, 0.0)
            ys = max(ys, 0.0)
            x0 = int(math.floor(xs))
            y0 = int(math.floor(ys))
            fx = xs - x0
            fy = ys - y0
            kx = int(fx * nlut + 0.5)
            ky = int(fy * nlut + 0.5)
            xa = x0 - radius + 1
            ya = y0 - radius + 1
            interior = xa >= 0 and ya >= 0 and x0 + radius <= w - 1 and y0 + radius <= h - 1
            x1 = min(x0 + 1, w - 1)
            y1 = min(y0 + 1, h - 1)
            for c in range(nc):
                acc = 0.0
                if interior:
                    for i in range(ntap):
                        row = 0.0
                        for j in range(ntap):
                            row += lut[kx, j] * src[c, ya + i, xa + j]
                        acc += lut[ky, i] * row
                else:
                    for i in range(ntap):
                        yy = min(max(ya + i, 0), h - 1)
                        row = 0.0
                        for j in range(ntap):
                            xx = min(max(xa + j, 0), w - 1)
                            row += lut[kx, j] * src[c, yy, xx]
                        acc += lut[ky, i] * row
                if clamp:
                    # ringing guard: stay within the 2x2 neighbours' range
                    a = src[c, y0, x0]
                    b = src[c, y0, x1]
                    d = src[c, y1, x0]
                    e = src[c, y1, x1]
                    lo = min(min(a, b), min(d, e))
                    hi = max(max(a, b), max(d, e))
                    if acc < lo:
                        acc = lo
                    elif acc > hi:
                        acc = hi
                out[c, yo, xo] = acc
            footprint[yo, xo] = True
            if use_mask:
                xn = min(max(int(xs + 0.5), 0), w - 1)
                yn = min(max(int(ys + 0.5), 0), h - 1)
                out_mask[yo, xo] = src_mask[yn, xn]


def _warp(src, minv, out, footprint, lut, radius, nlut, clamp, src_mask, out_mask):
    """:func:`_warp_rows` over all rows, in threads (:func:`..stats.run_in_threads`)."""
    run_in_threads(_warp_rows, out.shape[1], src, minv, out, footprint, lut, radius,
                   nlut, clamp, src_mask, out_mask)


@njit(cache=True, fastmath=True, nogil=True)
def _pass_rows_rows(src, tmp_img, transposed, ylo, alpha, beta, gamma, lut, radius,
                    nlut, i0, i1):  # pragma: no cover
    """First pass: resample source rows ``y`` along x at ``u = alpha * p + beta * y +
    gamma`` for each output coordinate ``p`` (edge pixels repeated; no clamp here: the
    second pass clamps against the 2x2 source neighbours, exactly like the 2-D kernel).

    ``tmp_img`` is (C, n_rows, W_out) indexed ``[c, y - ylo, xo]`` (``p = xo``), or when
    ``transposed`` (C, H_out, n_rows) indexed ``[c, yo, y - ylo]`` (``p = yo``).
    """
    nc, h, w = src.shape
    n_inner = tmp_img.shape[2]
    ntap = 2 * radius
    # positions once per row, then each channel swept on its own (as in the second
    # pass): measured 21 ms against 28 ms of CPU per (3, 1920, 1080) frame for the
    # positions computed inside the pixel loop with the 3 channels interleaved
    row_xa = np.empty(n_inner, dtype=np.int64)
    row_k = np.empty(n_inner, dtype=np.int64)
    for r in range(i0, i1):
        for k in range(n_inner):
            if transposed:
                u = alpha * r + beta * (ylo + k) + gamma
            else:
                u = alpha * k + beta * (ylo + r) + gamma
            u = min(max(u, -radius), w - 1 + radius)  # far outside: the edge value
            x0 = int(math.floor(u))
            row_k[k] = int((u - x0) * nlut + 0.5)
            row_xa[k] = x0 - radius + 1
        for c in range(nc):
            for k in range(n_inner):
                y = ylo + k if transposed else ylo + r
                xa = row_xa[k]
                kk = row_k[k]
                if ntap == 6 and xa >= 0 and xa + 6 <= w:
                    # Lanczos-3 written out: 3x faster than the tap loop
                    tmp_img[c, r, k] = (lut[kk, 0] * src[c, y, xa] + lut[kk, 1] * src[c, y, xa + 1]
                                        + lut[kk, 2] * src[c, y, xa + 2]
                                        + lut[kk, 3] * src[c, y, xa + 3]
                                        + lut[kk, 4] * src[c, y, xa + 4]
                                        + lut[kk, 5] * src[c, y, xa + 5])
                elif ntap == 6:
                    c0 = min(max(xa, 0), w - 1)
                    c1 = min(max(xa + 1, 0), w - 1)
                    c2 = min(max(xa + 2, 0), w - 1)
                    c3 = min(max(xa + 3, 0), w - 1)
                    c4 = min(max(xa + 4, 0), w - 1)
                    c5 = min(max(xa + 5, 0), w - 1)
                    tmp_img[c, r, k] = (lut[kk, 0] * src[c, y, c0] + lut[kk, 1] * src[c, y, c1]
                                        + lut[kk, 2] * src[c, y, c2] + lut[kk, 3] * src[c, y, c3]
                                        + lut[kk, 4] * src[c, y, c4] + lut[kk, 5] * src[c, y, c5])
                else:
                    acc = np.float32(0.0)
                    for j in range(ntap):
                        acc += lut[kk, j] * src[c, y, min(max(xa + j, 0), w - 1)]
                    tmp_img[c, r, k] = acc


@njit(cache=True, nogil=True)
def _runs_rows(row_xa, w, seg_a, seg_b, slow):  # pragma: no cover - numba
    """Runs ``seg_a[s]:seg_b[s]`` of outputs whose six taps are inside the row and
    whose first-tap offset ``xa - k`` is the same, and the others (``slow``), for
    :func:`_pass_rows_l3_rows`: ``(nseg, nslow)``."""
    nseg = 0
    nslow = 0
    cur = -1
    open_run = False
    for k in range(row_xa.shape[0]):
        xa = row_xa[k]
        if xa >= 0 and xa + 6 <= w:
            d = xa - k
            if open_run and d == cur:
                seg_b[nseg - 1] = k + 1
            else:
                seg_a[nseg] = k
                seg_b[nseg] = k + 1
                nseg += 1
                cur = d
                open_run = True
        else:
            slow[nslow] = k
            nslow += 1
            open_run = False
    return nseg, nslow


@njit(cache=True, fastmath=True, nogil=True,
      aot="void(f4[:, :, ::1], f4[:, :, ::1], i8, f8, f8, f8, f4[:, ::1], i8, i8, i8)")
def _pass_rows_l3_rows(src, tmp_img, ylo, alpha, beta, gamma, lut, nlut, i0,
                       i1):  # pragma: no cover
    """:func:`_pass_rows_rows` for Lanczos-3 when ``not transposed``, the same values
    bit for bit, vectorised as :func:`_pass_cols_l3_rows`: the tap positions and
    weights of a row in branch-free loops, then runs of outputs whose first tap
    ``xa - k`` is the same offset swept as six contiguous slices of the source row.
    Measured on a (3, 1920, 1080) frame, 0.3 deg: 9-10 ms of CPU against 21 ms.
    The positions are converted to int32 (AVX2 has no vector float64 -> int64; same
    values): 21 -> 18 ms, 1 thread, loaded machine, Seestar frame. (Weights hoisted
    over runs of one table row were tried: a session's transforms scale by 1e-4, so
    the row changes every 2 pixels and it was 3x slower.)"""
    nc, h, w = src.shape
    n_inner = tmp_img.shape[2]
    row_xa = np.empty(n_inner, dtype=np.int32)
    row_k = np.empty(n_inner, dtype=np.int32)
    wgt = np.empty((6, n_inner), dtype=np.float32)
    last_k = np.full(n_inner, -1, dtype=np.int32)
    seg_a = np.empty(n_inner, dtype=np.int64)
    seg_b = np.empty(n_inner, dtype=np.int64)
    slow = np.empty(n_inner, dtype=np.int64)
    last_xa = np.empty(n_inner, dtype=np.int32)
    nseg = 0
    nslow = 0
    for r in range(i0, i1):
        y = ylo + r
        for k in range(n_inner):
            u = alpha * k + beta * y + gamma
            u = min(max(u, -3), w - 1 + 3)  # far outside: the edge value
            # int32 conversions: AVX2 has no vector float64 -> int64 (same values)
            x0 = np.int32(math.floor(u))
            row_k[k] = np.int32((u - x0) * nlut + 0.5)
            row_xa[k] = x0 - np.int32(2)
        for k in range(n_inner):
            kk = row_k[k]
            if kk != last_k[k]:   # the row above's table row, mostly: no gather
                last_k[k] = kk
                wgt[0, k] = lut[kk, 0]
                wgt[1, k] = lut[kk, 1]
                wgt[2, k] = lut[kk, 2]
                wgt[3, k] = lut[kk, 3]
                wgt[4, k] = lut[kk, 4]
                wgt[5, k] = lut[kk, 5]
        # the runs depend on the first taps alone, mostly the row above's: rebuilt
        # only when one changed
        diff = np.int32(0)
        for k in range(n_inner):
            diff |= row_xa[k] ^ last_xa[k]
        if diff != 0 or r == i0:
            for k in range(n_inner):
                last_xa[k] = row_xa[k]
            nseg, nslow = _runs_rows(row_xa, w, seg_a, seg_b, slow)
        for c in range(nc):
            for sgi in range(nseg):
                ka = seg_a[sgi]
                kb = seg_b[sgi]
                sa = row_xa[ka]
                n = kb - ka
                o = tmp_img[c, r, ka:kb]
                s0 = src[c, y, sa:sa + n]
                s1 = src[c, y, sa + 1:sa + 1 + n]
                s2 = src[c, y, sa + 2:sa + 2 + n]
                s3 = src[c, y, sa + 3:sa + 3 + n]
                s4 = src[c, y, sa + 4:sa + 4 + n]
                s5 = src[c, y, sa + 5:sa + 5 + n]
                w0 = wgt[0, ka:kb]
                w1 = wgt[1, ka:kb]
                w2 = wgt[2, ka:kb]
                w3 = wgt[3, ka:kb]
                w4 = wgt[4, ka:kb]
                w5 = wgt[5, ka:kb]
                for i in range(n):
                    o[i] = (w0[i] * s0[i] + w1[i] * s1[i] + w2[i] * s2[i]
                            + w3[i] * s3[i] + w4[i] * s4[i] + w5[i] * s5[i])
            for j in range(nslow):
                k = slow[j]
                xa = row_xa[k]
                kk = row_k[k]
                c0 = min(max(xa, 0), w - 1)
                c1 = min(max(xa + 1, 0), w - 1)
                c2 = min(max(xa + 2, 0), w - 1)
                c3 = min(max(xa + 3, 0), w - 1)
                c4 = min(max(xa + 4, 0), w - 1)
                c5 = min(max(xa + 5, 0), w - 1)
                tmp_img[c, r, k] = (lut[kk, 0] * src[c, y, c0] + lut[kk, 1] * src[c, y, c1]
                                    + lut[kk, 2] * src[c, y, c2] + lut[kk, 3] * src[c, y, c3]
                                    + lut[kk, 4] * src[c, y, c4] + lut[kk, 5] * src[c, y, c5])


def _pass_rows(src, tmp_img, transposed, ylo, alpha, beta, gamma, lut, radius, nlut):
    """:func:`_pass_rows_rows` over all rows, in threads (:func:`_pass_rows_l3_rows`
    for Lanczos-3 along rows)."""
    if radius == 3 and not transposed:
        run_in_threads(_pass_rows_l3_rows, tmp_img.shape[1], src, tmp_img, ylo, alpha,
                       beta, gamma, lut, nlut)
        return
    run_in_threads(_pass_rows_rows, tmp_img.shape[1], src, tmp_img, transposed, ylo,
                   alpha, beta, gamma, lut, radius, nlut)


@njit(cache=True, fastmath=True, nogil=True)
def _pass_cols_rows(tmp_img, transposed, ylo, src, minv, out, footprint, lut, radius, nlut, clamp,
                    src_mask, out_mask, i0, i1):  # pragma: no cover
    """Second pass: for each output pixel, resample the first pass's output along the
    source-row axis at ``ys`` (rows outside the frame repeat the edge), clamp against
    the 2x2 nearest source pixels, and set the footprint (source position inside the
    frame) and the nearest-neighbour mask.

    Positions are computed once per output row, then each channel is swept on its own
    (fewer concurrent memory streams: 0.09 -> 0.06 s for this pass).
    """
    nc, h, w = src.shape
    wo = out.shape[2]
    ntap = 2 * radius
    use_mask = src_mask.shape[0] == h
    for yo in range(i0, i1):
        row_y0 = np.empty(wo, dtype=np.int64)
        row_x0 = np.empty(wo, dtype=np.int64)
        row_k = np.empty(wo, dtype=np.int64)
        for xo in range(wo):
            xs = minv[0, 0] * xo + minv[0, 1] * yo + minv[0, 2]
            ys = minv[1, 0] * xo + minv[1, 1] * yo + minv[1, 2]
            inside = xs >= -1e-6 and xs <= w - 1 + 1e-6 and ys >= -1e-6 and ys <= h - 1 + 1e-6
            footprint[yo, xo] = inside
            if not inside:
                row_y0[xo] = -1
                continue
            xs = max(xs, 0.0)
            ys = max(ys, 0.0)
            y0 = int(ys)
            row_y0[xo] = y0
            row_x0[xo] = int(xs)
            row_k[xo] = int((ys - y0) * nlut + 0.5)
            if use_mask:
                xn = min(int(xs + 0.5), w - 1)
                yn = min(int(ys + 0.5), h - 1)
                out_mask[yo, xo] = src_mask[yn, xn]
        for c in range(nc):
            for xo in range(wo):
                y0 = row_y0[xo]
                if y0 < 0:
                    out[c, yo, xo] = 0.0
                    continue
                k = row_k[xo]
                ya = y0 - radius + 1
                if ntap == 6 and ya >= 0 and y0 + radius <= h - 1:
                    r0 = ya - ylo
                    if transposed:
                        acc = (lut[k, 0] * tmp_img[c, yo, r0] + lut[k, 1] * tmp_img[c, yo, r0 + 1]
                               + lut[k, 2] * tmp_img[c, yo, r0 + 2]
                               + lut[k, 3] * tmp_img[c, yo, r0 + 3]
                               + lut[k, 4] * tmp_img[c, yo, r0 + 4]
                               + lut[k, 5] * tmp_img[c, yo, r0 + 5])
                    else:
                        acc = (lut[k, 0] * tmp_img[c, r0, xo] + lut[k, 1] * tmp_img[c, r0 + 1, xo]
                               + lut[k, 2] * tmp_img[c, r0 + 2, xo]
                               + lut[k, 3] * tmp_img[c, r0 + 3, xo]
                               + lut[k, 4] * tmp_img[c, r0 + 4, xo]
                               + lut[k, 5] * tmp_img[c, r0 + 5, xo])
                else:
                    acc = np.float32(0.0)
                    for i in range(ntap):
                        ri = min(max(ya + i, 0), h - 1) - ylo
                        if transposed:
                            acc += lut[k, i] * tmp_img[c, yo, ri]
                        else:
                            acc += lut[k, i] * tmp_img[c, ri, xo]
                if clamp:
                    # ringing guard: stay within the 2x2 neighbours' range
                    x0 = row_x0[xo]
                    x1 = min(x0 + 1, w - 1)
                    y1 = min(y0 + 1, h - 1)
                    p = src[c, y0, x0]
                    q = src[c, y0, x1]
                    s = src[c, y1, x0]
                    t = src[c, y1, x1]
                    acc = min(max(acc, min(min(p, q), min(s, t))), max(max(p, q), max(s, t)))
                out[c, yo, xo] = acc


@njit(cache=True, nogil=True)
def _runs_cols(row_y0, row_x0, h, w, seg_a, seg_b, slow):  # pragma: no cover - numba
    """Runs ``seg_a[s]:seg_b[s]`` of output pixels with the same source row ``y0`` and
    column offset ``x0 - xo``, all taps and clamp neighbours inside, and the others
    (``slow``), for :func:`_pass_cols_l3_rows`: ``(nseg, nslow)``."""
    nseg = 0
    nslow = 0
    cur_y0 = -1
    cur_dx = 0
    for xo in range(row_y0.shape[0]):
        y0 = row_y0[xo]
        if y0 >= 2 and y0 + 3 <= h - 1 and row_x0[xo] + 1 <= w - 1:
            dx = row_x0[xo] - xo
            if y0 == cur_y0 and dx == cur_dx:
                seg_b[nseg - 1] = xo + 1
            else:
                seg_a[nseg] = xo
                seg_b[nseg] = xo + 1
                nseg += 1
                cur_y0 = y0
                cur_dx = dx
        else:
            slow[nslow] = xo
            nslow += 1
            cur_y0 = -1
    return nseg, nslow


@njit(cache=True, fastmath=True, nogil=True,
      aot="void(f4[:, :, ::1], i8, f4[:, :, ::1], f8[:, ::1], f4[:, :, ::1], b1[:, ::1], f4[:, ::1], i8, b1, b1[:, ::1], b1[:, ::1], i8, i8)")
def _pass_cols_l3_rows(tmp_img, ylo, src, minv, out, footprint, lut, nlut, clamp,
                       src_mask, out_mask, i0, i1):  # pragma: no cover
    """:func:`_pass_cols_rows` for Lanczos-3 when ``not transposed``, the same values
    bit for bit, written so that its inner loops vectorise: positions, footprint and
    tap weights in branch-free loops over the row, then runs of pixels whose six
    source rows and 2x2 clamp neighbours are the same row slices (``y0`` and
    ``x0 - xo`` constant: hundreds of pixels for the small rotations of a session)
    swept as contiguous 1-D views, which numba compiles without index wraparound
    checks; the rest (frame edges, outside) pixel by pixel as before. Measured on a
    (3, 1920, 1080) frame, 0.3 deg: 24-28 ms of CPU against 57-63 ms."""
    nc, h, w = src.shape
    wo = out.shape[2]
    use_mask = src_mask.shape[0] == h
    row_y0 = np.empty(wo, dtype=np.int32)
    row_x0 = np.empty(wo, dtype=np.int32)
    row_k = np.empty(wo, dtype=np.int32)
    wgt = np.empty((6, wo), dtype=np.float32)
    # Consecutive output rows mostly use the same weight-table row per column (a
    # session's transforms: the fraction moves by ~0.03 table steps a row), so the
    # six weights are gathered only where it changed.
    last_k = np.full(wo, -1, dtype=np.int32)
    last_y0 = np.empty(wo, dtype=np.int32)
    last_x0 = np.empty(wo, dtype=np.int32)
    nseg = 0
    nslow = 0
    seg_a = np.empty(wo, dtype=np.int64)
    seg_b = np.empty(wo, dtype=np.int64)
    slow = np.empty(wo, dtype=np.int64)
    a00 = minv[0, 0]
    a01 = minv[0, 1]
    a02 = minv[0, 2]
    a10 = minv[1, 0]
    a11 = minv[1, 1]
    a12 = minv[1, 2]
    xmax = w - 1 + 1e-6
    ymax = h - 1 + 1e-6
    for yo in range(i0, i1):
        bx = a01 * yo
        by = a11 * yo
        # positions, footprint and weights: branch-free loops (vectorised)
        for xo in range(wo):
            xs = a00 * xo + bx + a02
            ys = a10 * xo + by + a12
            inside = xs >= -1e-6 and xs <= xmax and ys >= -1e-6 and ys <= ymax
            footprint[yo, xo] = inside
            xs = min(max(xs, 0.0), w - 1.0)
            ys = min(max(ys, 0.0), h - 1.0)
            # int32 conversions: AVX2 has no vector float64 -> int64 (same values)
            y0 = np.int32(ys)
            row_y0[xo] = y0 if inside else np.int32(-1)
            row_x0[xo] = np.int32(xs)
            row_k[xo] = np.int32((ys - y0) * nlut + 0.5)
        for xo in range(wo):
            k = row_k[xo]
            if k != last_k[xo]:   # the row above's table row, mostly: no gather
                last_k[xo] = k
                wgt[0, xo] = lut[k, 0]
                wgt[1, xo] = lut[k, 1]
                wgt[2, xo] = lut[k, 2]
                wgt[3, xo] = lut[k, 3]
                wgt[4, xo] = lut[k, 4]
                wgt[5, xo] = lut[k, 5]
        if use_mask:
            for xo in range(wo):
                if row_y0[xo] >= 0:
                    xs = max(a00 * xo + bx + a02, 0.0)
                    ys = max(a10 * xo + by + a12, 0.0)
                    out_mask[yo, xo] = src_mask[min(int(ys + 0.5), h - 1), min(int(xs + 0.5), w - 1)]
        # runs of output pixels with the same source row y0 and column offset
        # x0 - xo, all taps and clamp neighbours inside: contiguous rows in both passes.
        # They depend on (y0 - yo, x0) per pixel (and whether it is such a pixel),
        # mostly the row above's: rebuilt only when one changed.
        diff = np.int32(0)
        for xo in range(wo):
            y0 = row_y0[xo]
            x0 = row_x0[xo]
            ok = y0 >= 2 and y0 + 3 <= h - 1 and x0 + 1 <= w - 1
            key = np.int32(y0 - yo) if ok else np.int32(-1073741824)
            diff |= (key ^ last_y0[xo]) | (x0 ^ last_x0[xo])
            last_y0[xo] = key
            last_x0[xo] = x0
        if diff != 0 or yo == i0:
            nseg, nslow = _runs_cols(row_y0, row_x0, h, w, seg_a, seg_b, slow)
        for c in range(nc):
            for s in range(nseg):
                xa = seg_a[s]
                xb = seg_b[s]
                y0 = row_y0[xa]
                sa = row_x0[xa]
                sb = sa + (xb - xa)
                r0 = y0 - 2 - ylo
                o = out[c, yo, xa:xb]
                t0 = tmp_img[c, r0, xa:xb]
                t1 = tmp_img[c, r0 + 1, xa:xb]
                t2 = tmp_img[c, r0 + 2, xa:xb]
                t3 = tmp_img[c, r0 + 3, xa:xb]
                t4 = tmp_img[c, r0 + 4, xa:xb]
                t5 = tmp_img[c, r0 + 5, xa:xb]
                w0 = wgt[0, xa:xb]
                w1 = wgt[1, xa:xb]
                w2 = wgt[2, xa:xb]
                w3 = wgt[3, xa:xb]
                w4 = wgt[4, xa:xb]
                w5 = wgt[5, xa:xb]
                if clamp:
                    p0 = src[c, y0, sa:sb]
                    q0 = src[c, y0, sa + 1:sb + 1]
                    p1 = src[c, y0 + 1, sa:sb]
                    q1 = src[c, y0 + 1, sa + 1:sb + 1]
                    for i in range(xb - xa):
                        acc = (w0[i] * t0[i] + w1[i] * t1[i] + w2[i] * t2[i]
                               + w3[i] * t3[i] + w4[i] * t4[i] + w5[i] * t5[i])
                        p = p0[i]
                        q = q0[i]
                        u = p1[i]
                        v = q1[i]
                        o[i] = min(max(acc, min(min(p, q), min(u, v))), max(max(p, q), max(u, v)))
                else:
                    for i in range(xb - xa):
                        o[i] = (w0[i] * t0[i] + w1[i] * t1[i] + w2[i] * t2[i]
                                + w3[i] * t3[i] + w4[i] * t4[i] + w5[i] * t5[i])
            for j in range(nslow):
                xo = slow[j]
                y0 = row_y0[xo]
                if y0 < 0:
                    out[c, yo, xo] = 0.0
                    continue
                k = row_k[xo]
                ya = y0 - 2
                if ya >= 0 and y0 + 3 <= h - 1:
                    r0 = ya - ylo
                    acc = (lut[k, 0] * tmp_img[c, r0, xo] + lut[k, 1] * tmp_img[c, r0 + 1, xo]
                           + lut[k, 2] * tmp_img[c, r0 + 2, xo]
                           + lut[k, 3] * tmp_img[c, r0 + 3, xo]
                           + lut[k, 4] * tmp_img[c, r0 + 4, xo]
                           + lut[k, 5] * tmp_img[c, r0 + 5, xo])
                else:
                    acc = np.float32(0.0)
                    for i in range(6):
                        ri = min(max(ya + i, 0), h - 1) - ylo
                        acc += lut[k, i] * tmp_img[c, ri, xo]
                if clamp:
                    x0 = row_x0[xo]
                    x1 = min(x0 + 1, w - 1)
                    y1 = min(y0 + 1, h - 1)
                    p = src[c, y0, x0]
                    q = src[c, y0, x1]
                    u = src[c, y1, x0]
                    v = src[c, y1, x1]
                    acc = min(max(acc, min(min(p, q), min(u, v))), max(max(p, q), max(u, v)))
                out[c, yo, xo] = acc


@njit(cache=True, fastmath=True, nogil=True,
      aot="void(f4[:, :, ::1], f8, f8, f8, f8[:, ::1], f4[:, :, ::1], b1[:, ::1], f4[:, ::1], i8, b1, b1[:, ::1], b1[:, ::1], i8, i8, i8, i8)")
def _sep_l3_blocks(src, alpha, beta, gamma, minv, out, footprint, lut, nlut, clamp, src_mask,
                   out_mask, block, max_rows, i0, i1):  # pragma: no cover - numba
    """Both Lanczos-3 passes (:func:`_pass_rows_l3_rows`, then
    :func:`_pass_cols_l3_rows`, not transposed) for blocks ``i0 <= b < i1`` of
    ``block`` output rows: the first pass writes only the source rows the block's
    second pass reads into a small buffer (``max_rows`` rows, cache-resident) instead
    of a frame-sized intermediate. Each value is computed as in the two frame-wide
    passes, so the output is theirs bit for bit."""
    nc, h, w = src.shape
    ho, wo = out.shape[1], out.shape[2]
    tmp = np.empty((nc, max_rows, wo), np.float32)
    a10 = minv[1, 0]
    a11 = minv[1, 1]
    a12 = minv[1, 2]
    for b in range(i0, i1):
        yo0 = b * block
        yo1 = min(yo0 + block, ho)
        y_a = a10 * 0 + a11 * yo0 + a12
        y_b = a10 * (wo - 1) + a11 * yo0 + a12
        y_c = a10 * 0 + a11 * (yo1 - 1) + a12
        y_d = a10 * (wo - 1) + a11 * (yo1 - 1) + a12
        ymin = min(min(y_a, y_b), min(y_c, y_d))
        ymax = max(max(y_a, y_b), max(y_c, y_d))
        blo = max(int(math.floor(ymin)) - 3, 0)
        bhi = min(int(math.floor(ymax)) + 4, h - 1)
        if bhi < blo:
            blo = 0
            bhi = -1
        nrow = min(bhi - blo + 1, max_rows)
        if nrow > 0:
            _pass_rows_l3_rows(src, tmp, blo, alpha, beta, gamma, lut, nlut, 0, nrow)
        _pass_cols_l3_rows(tmp, blo, src, minv, out, footprint, lut, nlut, clamp, src_mask,
                           out_mask, yo0, yo1)


# Output rows per block of :func:`_sep_l3_blocks`; used when the source rows a block
# needs beyond its own (the rotation's row span across the frame plus the 6 taps)
# are at most half of it, i.e. rotations up to ~1.5 degrees on a 1080-wide frame.
_BLOCK = 64


def _block_rows(minv: np.ndarray, h: int, ho: int, wo: int, block: int) -> int:
    """Most source rows a block of :func:`_sep_l3_blocks` needs (its buffer)."""
    span = abs(minv[1, 1]) * (block - 1) + abs(minv[1, 0]) * (wo - 1)
    return int(min(h, math.floor(span) + 9))


def _pass_cols(tmp_img, transposed, ylo, src, minv, out, footprint, lut, radius, nlut,
               clamp, src_mask, out_mask):
    """:func:`_pass_cols_rows` over all rows, in threads (:func:`_pass_cols_l3_rows`
    for Lanczos-3 along columns)."""
    if radius == 3 and not transposed:
        run_in_threads(_pass_cols_l3_rows, out.shape[1], tmp_img, ylo, src, minv, out,
                       footprint, lut, nlut, clamp, src_mask, out_mask)
        return
    run_in_threads(_pass_cols_rows, out.shape[1], tmp_img, transposed, ylo, src, minv,
                   out, footprint, lut, radius, nlut, clamp, src_mask, out_mask)


# Two passes are used for affine maps whose first-pass shear |d u / d y| (tan of the
# rotation away from the nearest multiple of 90 degrees) is at most this: the first
# pass samples source rows at spacing ~1/cos(angle), which blurs undersampled stars
# at large angles (measured FWHM growth vs the 2-D kernel, FWHM 2.2 px stars: +0.06%
# at 14 deg, +0.3% at 30 deg, +2.2% at 45 deg; at 3.0 px: <= 0.15% up to 45 deg).
_SEP_MAX_SHEAR = 0.27


def _separable_plan(minv: np.ndarray, h: int, w: int, h_out: int, w_out: int,
                    max_shear: float = _SEP_MAX_SHEAR):
    """Coefficients of the two passes for the affine ``minv`` (output -> source), or
    None when the two-pass path does not apply (homography, too much shear).

    Returns ``(transposed, ylo, yhi, alpha, beta, gamma)``: the first pass writes source
    rows ``ylo..yhi`` resampled at ``u = alpha * p + beta * y + gamma``.
    """
    if minv[2, 0] != 0 or minv[2, 1] != 0 or minv[2, 2] != 1:
        return None
    a, b, c = minv[0]
    d, e, f = minv[1]
    if abs(e) >= abs(d):
        # p = xo: along a line of constant xo, ys = y gives yo = (y - d xo - f) / e
        transposed = False
        alpha, beta, gamma = a - b * d / e, b / e, c - b * f / e
    else:
        # p = yo: xo = (y - e yo - f) / d
        transposed = True
        alpha, beta, gamma = b - a * e / d, a / d, c - a * f / d
    if abs(beta) > max_shear:
        return None
    corners = np.array([[0, 0], [w_out - 1, 0], [0, h_out - 1], [w_out - 1, h_out - 1]], float)
    ys = corners @ minv[1, :2] + f
    ylo = max(int(math.floor(ys.min())) - 3, 0)
    yhi = min(int(math.floor(ys.max())) + 4, h - 1)
    if yhi < ylo:
        return None
    return transposed, ylo, yhi, alpha, beta, gamma


def apply_transform(image: AstroImage | np.ndarray, transform: Transform | np.ndarray, *,
                    shape: tuple[int, int] | None = None, interpolation: str = "lanczos3",
                    clamp: bool = True, history: dict[str, Any] | None = None,
                    separable: bool | None = None, out: np.ndarray | None = None) -> AstroImage:
    """Resample ``image`` onto the reference grid.

    Parameters
    ----------
    image : AstroImage or ndarray
        ``(H, W)`` or ``(3, H, W)`` float data (a raw CFA mosaic must be debayered
        first: interpolating a mosaic mixes colours).
    transform : Transform or ndarray (3, 3)
        Source pixel -> reference pixel.
    shape : (int, int), optional
        ``(H, W)`` of the output (the reference frame); default the input's.
    interpolation : {"lanczos3", "bicubic", "bilinear"}, default "lanczos3"
    clamp : bool, default True
        Limit each interpolated value to the range of its 2x2 nearest source pixels,
        removing the dark rings that Lanczos and bicubic leave around stars.
    history : dict, optional
        Extra parameters for the HISTORY line (step ``pre.register``).
    separable : bool, optional
        Resample in two 1-D passes (rows, then columns: ``2 * 2 radius`` taps per pixel
        instead of ``(2 radius)^2``, ~2x less CPU for Lanczos-3) with the clamp applied
        in each pass against the two nearest samples. Default (None): two passes for
        affine transforms (shift, similarity, affine) within ~15 degrees of a multiple
        of 90 degrees, the exact 2-D kernel otherwise (homographies, larger rotations).
        False forces the 2-D kernel; True asks for two passes where they apply.
    out : ndarray, optional
        Destination of the resampled data: float32, C-contiguous, ``(C, H, W)`` for
        colour input or ``(H, W)`` for mono, ``(H, W) = shape`` (every value is
        written; it must not overlap the input). A caller that resamples frame after
        frame reuses one buffer instead of a fresh 24 MB (Seestar colour) array
        whose page faults cost ~3 ms of CPU each time. The result's ``data`` is
        ``out``.

    Returns
    -------
    AstroImage
        float32 data of ``shape``; ``mask`` is the footprint (True where the output
        pixel maps inside the source frame, and the source mask if any); pixels
        outside are 0.
    """
    if not isinstance(image, AstroImage):
        image = AstroImage(np.asarray(image, dtype=np.float32))
    if image.is_cfa:
        raise ValueError("apply_transform needs debayered or mono data, not a raw CFA mosaic")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r} "
                         f"(known: {', '.join(INTERPOLATIONS)})")
    t = transform if isinstance(transform, Transform) else Transform(np.asarray(transform))
    h_out, w_out = shape if shape is not None else image.shape2d
    src = image.data if image.is_color else image.data[None]
    src = np.ascontiguousarray(src, dtype=np.float32)
    want = (src.shape[0], h_out, w_out) if image.is_color else (h_out, w_out)
    given = out
    if out is None:
        out = np.empty((src.shape[0], h_out, w_out), dtype=np.float32)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != want \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be a writeable C-contiguous float32 array of shape "
                             f"{want}, got {getattr(out, 'dtype', type(out))} "
                             f"{getattr(out, 'shape', '')}")
        if np.shares_memory(out, src):
            raise ValueError("out must not overlap the input")
        out = out if image.is_color else out[None]
    footprint = np.empty((h_out, w_out), dtype=bool)
    has_mask = image.mask is not None
    src_mask = image.mask if has_mask else np.zeros((0, 0), dtype=bool)
    out_mask = np.ones((h_out, w_out), dtype=bool) if has_mask else np.zeros((0, 0), dtype=bool)
    lut, radius = _kernel_lut(interpolation)
    minv = np.linalg.inv(t.matrix)
    h_in, w_in = src.shape[1], src.shape[2]
    if t.matrix[2, 0] == 0 and t.matrix[2, 1] == 0:
        minv[2] = (0.0, 0.0, 1.0)  # exactly affine (inv() may leave 1e-20 residues)
    plan = None if separable is False else _separable_plan(minv, h_in, w_in, h_out, w_out)
    if separable and plan is None and minv[2, 0] == 0 and minv[2, 1] == 0:
        plan = _separable_plan(minv, h_in, w_in, h_out, w_out, max_shear=np.inf)
    blocked = False
    if plan is not None:
        transposed, ylo, yhi, alpha, beta, gamma = plan
        max_rows = _block_rows(minv, h_in, h_out, w_out, _BLOCK)
        if radius == 3 and not transposed and max_rows - _BLOCK <= _BLOCK // 2 \
                and h_out > 2 * _BLOCK:
            # both passes block by block: no (C, n_rows, W) intermediate (24 MB for a
            # Seestar frame: the m94-both stack's peak RSS 257 -> 232 MB with the
            # other changes of issue 13); CPU as the frame-wide passes (within noise)
            run_in_threads(_sep_l3_blocks, -(-h_out // _BLOCK), src, alpha, beta, gamma,
                           minv, out, footprint, lut, _LUT_SIZE, bool(clamp), src_mask,
                           out_mask, _BLOCK, max_rows)
            blocked = True
    if blocked:
        pass
    elif plan is not None:
        transposed, ylo, yhi, alpha, beta, gamma = plan
        n_rows = yhi - ylo + 1
        # the one intermediate frame: source rows ylo..yhi resampled along x
        tmp = np.empty((src.shape[0], h_out, n_rows) if transposed
                       else (src.shape[0], n_rows, w_out), dtype=np.float32)
        _pass_rows(src, tmp, transposed, ylo, alpha, beta, gamma, lut, radius, _LUT_SIZE)
        _pass_cols(tmp, transposed, ylo, src, minv, out, footprint, lut, radius,
                   _LUT_SIZE, bool(clamp), src_mask, out_mask)
        del tmp
    else:
        _warp(src, minv, out, footprint, lut, radius, _LUT_SIZE, bool(clamp), src_mask,
              out_mask)
    mask = footprint & out_mask if has_mask else footprint
    data = given if given is not None else (out if image.is_color else out[0])
    params = {"model": t.model, "matrix": np.round(t.matrix, 8).tolist(),
              "interpolation": interpolation, "clamp": bool(clamp)}
    if history:
        params.update(history)
    return image.derive(data, "pre.register", params, mask=mask)
