"""numba demosaicing kernels: bilinear (also the border of RCD), superpixel, and RCD
v2.3 in row-block pipelines; helpers to shift data positive and find its minimum."""

from __future__ import annotations

import numpy as np
from ..jit import njit

from ..stats import run_in_threads

from .cfa import _mirror


@njit(cache=True, nogil=True)
def _bilinear_pixel(cfa, cf, out, y, x, h, w):
    # General case with mirrored neighbours, used at the borders.
    own = cf[y & 1, x & 1]
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    n0 = 0
    n1 = 0
    n2 = 0
    for dy in range(-1, 2):
        yy = _mirror(y + dy, h)
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            xx = _mirror(x + dx, w)
            c = cf[yy & 1, xx & 1]
            v = cfa[yy, xx]
            if c == 0:
                s0 += v
                n0 += 1
            elif c == 1:
                s1 += v
                n1 += 1
            else:
                s2 += v
                n2 += 1
    v0 = cfa[y, x]
    out[0, y, x] = v0 if own == 0 else (s0 / n0 if n0 else v0)
    out[1, y, x] = v0 if own == 1 else (s1 / n1 if n1 else v0)
    out[2, y, x] = v0 if own == 2 else (s2 / n2 if n2 else v0)


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], i8, i8, i8)")
def _bilinear_kernel_rows(cfa, cf, out, border, i0, i1):
    # border > 0: only fill pixels within `border` of an edge (RCD's frame).
    # The interior uses the closed Bayer formulas (no mirroring, no colour tests per
    # neighbour): 25 ms instead of 75 ms on 2000x1500 with 2 threads.
    h, w = cfa.shape
    b = max(border, 1)
    for y in range(i0, i1):
        if y < b or y >= h - b:
            for x in range(w):
                _bilinear_pixel(cfa, cf, out, y, x, h, w)
            continue
        for x in range(b):
            _bilinear_pixel(cfa, cf, out, y, x, h, w)
        for x in range(w - b, w):
            _bilinear_pixel(cfa, cf, out, y, x, h, w)
        if border > 0:
            continue
        c_even = cf[y & 1, 1]   # colour at odd/even columns of this row
        c_odd = cf[y & 1, 0]
        for x in range(1, w - 1):
            own = c_even if (x & 1) else c_odd
            v0 = cfa[y, x]
            card_h = np.float32(0.5) * (cfa[y, x - 1] + cfa[y, x + 1])
            card_v = np.float32(0.5) * (cfa[y - 1, x] + cfa[y + 1, x])
            if own == 1:
                ch = cf[y & 1, (x + 1) & 1]
                out[1, y, x] = v0
                out[ch, y, x] = card_h
                out[2 - ch, y, x] = card_v
            else:
                diag = np.float32(0.25) * (cfa[y - 1, x - 1] + cfa[y - 1, x + 1]
                                           + cfa[y + 1, x - 1] + cfa[y + 1, x + 1])
                out[own, y, x] = v0
                out[1, y, x] = np.float32(0.5) * (card_h + card_v)
                out[2 - own, y, x] = diag


def _bilinear_kernel(cfa, cf, out, border):
    """:func:`_bilinear_kernel_rows` over all rows, in threads."""
    run_in_threads(_bilinear_kernel_rows, cfa.shape[0], cfa, cf, out, border)


@njit(cache=True, nogil=True)
def _superpixel_kernel_rows(cfa, cf, out, i0, i1):
    w2 = out.shape[2]
    for i in range(i0, i1):
        for j in range(w2):
            g = np.float32(0.0)
            for dy in range(2):
                for dx in range(2):
                    v = cfa[2 * i + dy, 2 * j + dx]
                    c = cf[dy, dx]
                    if c == 1:
                        g += v
                    else:
                        out[c, i, j] = v
            out[1, i, j] = 0.5 * g


def _superpixel_kernel(cfa, cf, out):
    """:func:`_superpixel_kernel_rows` over all rows, in threads."""
    run_in_threads(_superpixel_kernel_rows, out.shape[1], cfa, cf, out)


_F025 = np.float32(0.25)
_F05 = np.float32(0.5)
_F2 = np.float32(2.0)
_F3 = np.float32(3.0)
_F6 = np.float32(6.0)
_RING = 8          # rows kept per intermediate (the deepest look-back is 5 rows)
_RMASK = _RING - 1


@njit(cache=True, inline="always")
def _sq(v):
    return v * v


@njit(cache=True, inline="always")
def _rb0(cf, y):
    """Parity (0/1) of the first red-or-blue column of row ``y``."""
    return 0 if cf[y & 1, 0] != 1 else 1


@njit(cache=True, inline="always")
def _disc(a, y, x, central):
    # RCD's choice between the centre's discrimination and its 4 diagonal neighbours'.
    neigh = _F025 * (a[y - 1, x - 1] + a[y - 1, x + 1] + a[y + 1, x - 1] + a[y + 1, x + 1])
    return neigh if abs(_F05 - central) < abs(_F05 - neigh) else central


@njit(cache=True, inline="always")
def _chunks(lo, hi, n):
    # split rows [lo, hi) into n nearly equal blocks; returns (n + 1,) boundaries
    b = np.empty(n + 1, np.int64)
    for k in range(n + 1):
        b[k] = lo + (hi - lo) * k // n
    return b


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], f4[:, ::1], i8, i8, i8)")
def _rcd_green_rows(cfa, cf, rgb, vh, nblk, i0, i1):
    """RCD steps 1-3: V/H discrimination (into ``vh``) and green at red/blue sites.

    Writes ``rgb[1]`` on rows 5..h-6, columns 5..w-6 (own green included) and ``vh``
    on rows 4..h-5.  Each block of rows is a pipeline over rows whose intermediates
    (high-pass, low-pass) live in 8-row rings that stay in cache, so the frame is read
    once instead of being streamed through full-size temporaries 4 times.
    """
    h, w = cfa.shape
    eps = np.float32(1e-5)
    epssq = np.float32(1e-10)
    bnd = _chunks(5, h - 5, nblk)
    for k in range(i0, i1):
        g0 = bnd[k]
        g1 = bnd[k + 1]
        av = np.zeros((_RING, w), np.float32)
        ah = np.zeros((_RING, w), np.float32)
        lp = np.zeros((_RING, w), np.float32)
        vr = np.zeros((_RING, w), np.float32)
        for i in range(g0 - 2, g1 + 2):
            ri = i & _RMASK
            # Step 1.1: squared vertical / horizontal high-pass of colour differences.
            if 3 <= i < h - 3:
                for x in range(3, w - 3):
                    c0 = 6.0 * cfa[i, x]
                    av[ri, x] = _sq((cfa[i - 3, x] - cfa[i - 1, x] - cfa[i + 1, x] + cfa[i + 3, x])
                                    - 3.0 * (cfa[i - 2, x] + cfa[i + 2, x]) + c0)
                    ah[ri, x] = _sq((cfa[i, x - 3] - cfa[i, x - 1] - cfa[i, x + 1] + cfa[i, x + 3])
                                    - 3.0 * (cfa[i, x - 2] + cfa[i, x + 2]) + c0)
            # Step 2: low-pass filter at red and blue sites.
            if 2 <= i < h - 2:
                for x in range(2 + _rb0(cf, i), w - 2, 2):
                    lp[ri, x] = (cfa[i, x]
                                 + _F05 * (cfa[i - 1, x] + cfa[i + 1, x] + cfa[i, x - 1] + cfa[i, x + 1])
                                 + _F025 * (cfa[i - 1, x - 1] + cfa[i - 1, x + 1]
                                            + cfa[i + 1, x - 1] + cfa[i + 1, x + 1]))
            # Step 1.2: vertical/horizontal discrimination, one row behind.
            r = i - 1
            if r >= g0 - 1 and 4 <= r < h - 4:
                rm = (r - 1) & _RMASK
                r0 = r & _RMASK
                rp = (r + 1) & _RMASK
                for x in range(4, w - 4):
                    v = max(epssq, av[rm, x] + av[r0, x] + av[rp, x])
                    hh = max(epssq, ah[r0, x - 1] + ah[r0, x] + ah[r0, x + 1])
                    vr[r0, x] = v / (v + hh)
                if g0 <= r < g1:
                    # a loop, not a slice copy: that compiles numba's shape-error
                    # message formatting (~2 s of a cold first run)
                    for x in range(4, w - 4):
                        vh[r, x] = vr[r0, x]
            # Step 3: green at red and blue sites, two rows behind.
            y = i - 2
            if y >= g0 and y < g1:
                for x in range(5 + _rb0(cf, y), w - 5, 2):
                    rgb[1, y, x] = cfa[y, x]        # own green
                ly = y & _RMASK
                lm = (y - 2) & _RMASK
                lpp = (y + 2) & _RMASK
                vm = (y - 1) & _RMASK
                vp = (y + 1) & _RMASK
                for x in range(5 + 1 - _rb0(cf, y), w - 5, 2):
                    c = cfa[y, x]
                    n_grad = eps + abs(cfa[y - 1, x] - cfa[y + 1, x]) + abs(c - cfa[y - 2, x]) \
                        + abs(cfa[y - 1, x] - cfa[y - 3, x]) + abs(cfa[y - 2, x] - cfa[y - 4, x])
                    s_grad = eps + abs(cfa[y - 1, x] - cfa[y + 1, x]) + abs(c - cfa[y + 2, x]) \
                        + abs(cfa[y + 1, x] - cfa[y + 3, x]) + abs(cfa[y + 2, x] - cfa[y + 4, x])
                    w_grad = eps + abs(cfa[y, x - 1] - cfa[y, x + 1]) + abs(c - cfa[y, x - 2]) \
                        + abs(cfa[y, x - 1] - cfa[y, x - 3]) + abs(cfa[y, x - 2] - cfa[y, x - 4])
                    e_grad = eps + abs(cfa[y, x - 1] - cfa[y, x + 1]) + abs(c - cfa[y, x + 2]) \
                        + abs(cfa[y, x + 1] - cfa[y, x + 3]) + abs(cfa[y, x + 2] - cfa[y, x + 4])
                    l0 = lp[ly, x]
                    n_est = cfa[y - 1, x] * _F2 * l0 / (eps + l0 + lp[lm, x])
                    s_est = cfa[y + 1, x] * _F2 * l0 / (eps + l0 + lp[lpp, x])
                    w_est = cfa[y, x - 1] * _F2 * l0 / (eps + l0 + lp[ly, x - 2])
                    e_est = cfa[y, x + 1] * _F2 * l0 / (eps + l0 + lp[ly, x + 2])
                    v_est = (s_grad * n_est + n_grad * s_est) / (n_grad + s_grad)
                    h_est = (w_grad * e_est + e_grad * w_est) / (e_grad + w_grad)
                    central = vr[ly, x]
                    neigh = _F025 * (vr[vm, x - 1] + vr[vm, x + 1] + vr[vp, x - 1] + vr[vp, x + 1])
                    disc = neigh if abs(_F05 - central) < abs(_F05 - neigh) else central
                    rgb[1, y, x] = disc * (h_est - v_est) + v_est


def _rcd_green(cfa, cf, rgb, vh, nblk):
    """:func:`_rcd_green_rows` over all rows, in threads."""
    run_in_threads(_rcd_green_rows, nblk, cfa, cf, rgb, vh, nblk, chunks_per_thread=1)


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], i8, i8, i8)")
def _rcd_redblue_rows(cfa, cf, rgb, nblk, i0, i1):
    """RCD step 4.1-4.3: red at blue sites and blue at red sites (rows/cols 6..n-7).

    Needs the green of :func:`_rcd_green` on all rows (separate parallel region);
    the diagonal high-pass and P/Q discrimination are 8-row rings as above.  Also
    writes the own red/blue samples of those rows (no separate scatter pass).
    """
    h, w = cfa.shape
    eps = np.float32(1e-5)
    epssq = np.float32(1e-10)
    bnd = _chunks(6, h - 6, nblk)
    for k in range(i0, i1):
        r0 = bnd[k]
        r1 = bnd[k + 1]
        bp = np.zeros((_RING, w), np.float32)
        bq = np.zeros((_RING, w), np.float32)
        pq = np.zeros((_RING, w), np.float32)
        for i in range(r0 - 2, r1 + 2):
            ri = i & _RMASK
            # Step 4.1: squared diagonal (P: NW-SE, Q: NE-SW) high-pass at red/blue sites.
            for x in range(3 + 1 - _rb0(cf, i), w - 3, 2):
                c0 = 6.0 * cfa[i, x]
                bp[ri, x] = _sq((cfa[i - 3, x - 3] - cfa[i - 1, x - 1] - cfa[i + 1, x + 1]
                                 + cfa[i + 3, x + 3])
                                - 3.0 * (cfa[i - 2, x - 2] + cfa[i + 2, x + 2]) + c0)
                bq[ri, x] = _sq((cfa[i - 3, x + 3] - cfa[i - 1, x + 1] - cfa[i + 1, x - 1]
                                 + cfa[i + 3, x - 3])
                                - 3.0 * (cfa[i - 2, x + 2] + cfa[i + 2, x - 2]) + c0)
            # Step 4.2: P/Q discrimination, one row behind.
            r = i - 1
            if r >= r0 - 1:
                rm = (r - 1) & _RMASK
                rr = r & _RMASK
                rp = (r + 1) & _RMASK
                for x in range(4 + _rb0(cf, r), w - 4, 2):
                    p = max(epssq, bp[rm, x - 1] + bp[rr, x] + bp[rp, x + 1])
                    q = max(epssq, bq[rm, x + 1] + bq[rr, x] + bq[rp, x - 1])
                    pq[rr, x] = p / (p + q)
            # Step 4.3: red at blue sites and blue at red sites, two rows behind.
            y = i - 2
            if y >= r0 and y < r1:
                own = cf[y & 1, _rb0(cf, y)]
                c = 2 - own
                ym = (y - 1) & _RMASK
                yc = y & _RMASK
                yp = (y + 1) & _RMASK
                for x in range(6 + _rb0(cf, y), w - 6, 2):
                    central = pq[yc, x]
                    neigh = _F025 * (pq[ym, x - 1] + pq[ym, x + 1] + pq[yp, x - 1] + pq[yp, x + 1])
                    disc = neigh if abs(_F05 - central) < abs(_F05 - neigh) else central
                    g0 = rgb[1, y, x]
                    # the diagonal neighbours are samples of colour c: read the mosaic
                    nw_grad = eps + abs(cfa[y - 1, x - 1] - cfa[y + 1, x + 1]) \
                        + abs(cfa[y - 1, x - 1] - cfa[y - 3, x - 3]) + abs(g0 - rgb[1, y - 2, x - 2])
                    ne_grad = eps + abs(cfa[y - 1, x + 1] - cfa[y + 1, x - 1]) \
                        + abs(cfa[y - 1, x + 1] - cfa[y - 3, x + 3]) + abs(g0 - rgb[1, y - 2, x + 2])
                    sw_grad = eps + abs(cfa[y - 1, x + 1] - cfa[y + 1, x - 1]) \
                        + abs(cfa[y + 1, x - 1] - cfa[y + 3, x - 3]) + abs(g0 - rgb[1, y + 2, x - 2])
                    se_grad = eps + abs(cfa[y - 1, x - 1] - cfa[y + 1, x + 1]) \
                        + abs(cfa[y + 1, x + 1] - cfa[y + 3, x + 3]) + abs(g0 - rgb[1, y + 2, x + 2])
                    nw_est = cfa[y - 1, x - 1] - rgb[1, y - 1, x - 1]
                    ne_est = cfa[y - 1, x + 1] - rgb[1, y - 1, x + 1]
                    sw_est = cfa[y + 1, x - 1] - rgb[1, y + 1, x - 1]
                    se_est = cfa[y + 1, x + 1] - rgb[1, y + 1, x + 1]
                    p_est = (nw_grad * se_est + se_grad * nw_est) / (nw_grad + se_grad)
                    q_est = (ne_grad * sw_est + sw_grad * ne_est) / (ne_grad + sw_grad)
                    rgb[c, y, x] = g0 + disc * (q_est - p_est) + p_est
                    rgb[own, y, x] = cfa[y, x]


def _rcd_redblue(cfa, cf, rgb, nblk):
    """:func:`_rcd_redblue_rows` over all rows, in threads."""
    run_in_threads(_rcd_redblue_rows, nblk, cfa, cf, rgb, nblk, chunks_per_thread=1)


@njit(cache=True, nogil=True,
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], f4[:, ::1], i8, i8)")
def _rcd_green_sites_rows(cfa, cf, rgb, vh, i0, i1):
    """RCD step 4.4: red and blue at green sites (rows/cols 6..n-7)."""
    h, w = cfa.shape
    eps = np.float32(1e-5)
    for y in range(i0, i1):
        for x in range(6 + 1 - _rb0(cf, y), w - 6, 2):
            disc = _disc(vh, y, x, vh[y, x])
            g0 = cfa[y, x]
            n1 = eps + abs(g0 - cfa[y - 2, x])
            s1 = eps + abs(g0 - cfa[y + 2, x])
            w1 = eps + abs(g0 - cfa[y, x - 2])
            e1 = eps + abs(g0 - cfa[y, x + 2])
            gn = rgb[1, y - 1, x]
            gs = rgb[1, y + 1, x]
            gw = rgb[1, y, x - 1]
            ge = rgb[1, y, x + 1]
            for c in (0, 2):
                sn_abs = abs(rgb[c, y - 1, x] - rgb[c, y + 1, x])
                ew_abs = abs(rgb[c, y, x - 1] - rgb[c, y, x + 1])
                n_grad = n1 + sn_abs + abs(rgb[c, y - 1, x] - rgb[c, y - 3, x])
                s_grad = s1 + sn_abs + abs(rgb[c, y + 1, x] - rgb[c, y + 3, x])
                w_grad = w1 + ew_abs + abs(rgb[c, y, x - 1] - rgb[c, y, x - 3])
                e_grad = e1 + ew_abs + abs(rgb[c, y, x + 1] - rgb[c, y, x + 3])
                n_est = rgb[c, y - 1, x] - gn
                s_est = rgb[c, y + 1, x] - gs
                w_est = rgb[c, y, x - 1] - gw
                e_est = rgb[c, y, x + 1] - ge
                v_est = (n_grad * s_est + s_grad * n_est) / (n_grad + s_grad)
                h_est = (e_grad * w_est + w_grad * e_est) / (e_grad + w_grad)
                rgb[c, y, x] = g0 + disc * (h_est - v_est) + v_est


def _rcd_green_sites(cfa, cf, rgb, vh):
    """:func:`_rcd_green_sites_rows` over all rows, in threads."""
    run_in_threads(_rcd_green_sites_rows, cfa.shape[0] - 12, cfa, cf, rgb, vh, start=6)


def _rcd_kernel(cfa, cf, rgb, vh):
    """RCD v2.3 on the interior; ``rgb`` must hold the bilinear 6-pixel border.

    ``vh`` is an (H, W) float32 work array (content irrelevant).  Three parallel
    passes instead of one per RCD step (8) plus a scatter pass: the row-block
    pipelines keep the intermediates in 8-row rings, the own samples are written by
    the passes that need them, and only one full-size work array is left.
    Measured on a 2000x1500 mosaic, 2 cores, best of 5 after warm-up (wall / CPU):
    old ``_scatter_own`` + 8-pass kernel 57 ms / 115 ms, these three 45 ms / 90 ms
    (green 24 ms, red/blue 10 ms, green sites 9.5 ms).  The high-pass sums stay in
    float64 as before (6.0, 3.0): float32 there costs nothing measurable but flips the
    discrimination in saturated star cores (differences up to 0.3 %); elsewhere the
    constants are float32 and outputs match the old kernel within 1.5e-7 of the
    frame maximum.  ``fastmath`` gave nothing measurable, so it is not used.
    """
    h = cfa.shape[0]
    # an even number of blocks (2 threads), ~150 rows each: the 2-4 halo rows each
    # block recomputes cost <3 %
    nblk = 2 * max(1, min(16, h // 300))
    _rcd_green(cfa, cf, rgb, vh, nblk)
    _rcd_redblue(cfa, cf, rgb, nblk)
    _rcd_green_sites(cfa, cf, rgb, vh)


@njit(cache=True, nogil=True)
def _add_offset_rows(flat, off, i0, i1):
    for i in range(i0, i1):
        flat[i] += off


# (the kernels take the flattened arrays: a reshape inside a kernel compiles numba's
# shape-error message formatting, 1.6 s of a cold first run)
def _add_offset(a, off):
    """``a += off`` in place (C-contiguous ``a``), in threads."""
    if not a.flags.c_contiguous:
        raise ValueError("_add_offset needs a C-contiguous array")
    run_in_threads(_add_offset_rows, a.size, a.reshape(-1), off, chunks_per_thread=1)


def _minmax(a):
    """The minimum of ``a``, NaN ignored (+inf when none is finite): numpy's ``fmin``
    reduction is SIMD, 0.2 ms per 2 Mpx frame (the numba kernel it replaces took
    0.5-2 ms and 0.1-0.3 s of compile on the first run)."""
    return np.fmin.reduce(np.ascontiguousarray(a).reshape(-1), initial=np.inf)
