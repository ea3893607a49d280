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


@njit(cache=True, nogil=True, error_model="numpy",
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], f4[:, ::1], i8, i8, i8)")
def _rcd_green_rows(cfa, cf, rgb, vh, nblk, i0, i1):
    """RCD steps 1-3: V/H discrimination (into ``vh``) and green at red/blue sites.

    Writes ``rgb[1]`` on rows 5..h-6, columns 5..w-6 (own green included) and ``vh``
    on rows 4..h-5.  Each block of rows is a pipeline over rows whose intermediates
    (high-pass, low-pass) live in 8-row rings that stay in cache, so the frame is read
    once instead of being streamed through full-size temporaries 4 times.

    Every loop runs over whole rows as shifted 1-D views (unit stride), the
    red/blue-site steps computed at every column and the green sites' results
    discarded (a select), with ``error_model="numpy"`` (no zero-division branch: no
    denominator can be 0, each has an eps): LLVM vectorises them, divisions
    included, ~4x faster than the stride-2 loops; the red/blue-site values are the
    same expressions in the same order, so the output is the same bit for bit.
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
                n = w - 6
                m3 = cfa[i - 3, 3:3 + n]
                m2 = cfa[i - 2, 3:3 + n]
                m1 = cfa[i - 1, 3:3 + n]
                p1 = cfa[i + 1, 3:3 + n]
                p2 = cfa[i + 2, 3:3 + n]
                p3 = cfa[i + 3, 3:3 + n]
                row = cfa[i]
                l3 = row[0:n]
                l2 = row[1:1 + n]
                l1 = row[2:2 + n]
                cc = row[3:3 + n]
                r1 = row[4:4 + n]
                r2 = row[5:5 + n]
                r3 = row[6:6 + n]
                ov = av[ri, 3:3 + n]
                oh = ah[ri, 3:3 + n]
                for x in range(n):
                    c0 = 6.0 * cc[x]
                    ov[x] = _sq((m3[x] - m1[x] - p1[x] + p3[x]) - 3.0 * (m2[x] + p2[x]) + c0)
                    oh[x] = _sq((l3[x] - l1[x] - r1[x] + r3[x]) - 3.0 * (l2[x] + r2[x]) + c0)
            # Step 2: low-pass filter at red and blue sites (computed at every column;
            # step 3 reads it at red/blue sites only).
            if 2 <= i < h - 2:
                n = w - 4
                um = cfa[i - 1, 1:1 + n]
                uc = cfa[i - 1, 2:2 + n]
                up = cfa[i - 1, 3:3 + n]
                cm = cfa[i, 1:1 + n]
                cc = cfa[i, 2:2 + n]
                cp = cfa[i, 3:3 + n]
                dm = cfa[i + 1, 1:1 + n]
                dc = cfa[i + 1, 2:2 + n]
                dp = cfa[i + 1, 3:3 + n]
                lo = lp[ri, 2:2 + n]
                for x in range(n):
                    lo[x] = (cc[x]
                             + _F05 * (uc[x] + dc[x] + cm[x] + cp[x])
                             + _F025 * (um[x] + up[x] + dm[x] + dp[x]))
            # Step 1.2: vertical/horizontal discrimination, one row behind.
            r = i - 1
            if r >= g0 - 1 and 4 <= r < h - 4:
                n = w - 8
                am = av[(r - 1) & _RMASK, 4:4 + n]
                a0 = av[r & _RMASK, 4:4 + n]
                ap = av[(r + 1) & _RMASK, 4:4 + n]
                hl = ah[r & _RMASK, 3:3 + n]
                hc = ah[r & _RMASK, 4:4 + n]
                hp = ah[r & _RMASK, 5:5 + n]
                vo = vr[r & _RMASK, 4:4 + n]
                for x in range(n):
                    v = max(epssq, am[x] + a0[x] + ap[x])
                    hh = max(epssq, hl[x] + hc[x] + hp[x])
                    vo[x] = v / (v + hh)
                if g0 <= r < g1:
                    # a loop, not a slice copy: that compiles numba's shape-error
                    # message formatting (~2 s of a cold first run)
                    vd = vh[r, 4:4 + n]
                    for x in range(n):
                        vd[x] = vo[x]
            # Step 3: green at red and blue sites, two rows behind (own green at the
            # green sites).
            y = i - 2
            if y >= g0 and y < g1:
                n = w - 10
                par = _rb0(cf, y) ^ 1          # k = x - 5 of the red/blue sites
                m4 = cfa[y - 4, 5:5 + n]
                m3 = cfa[y - 3, 5:5 + n]
                m2 = cfa[y - 2, 5:5 + n]
                m1 = cfa[y - 1, 5:5 + n]
                p1 = cfa[y + 1, 5:5 + n]
                p2 = cfa[y + 2, 5:5 + n]
                p3 = cfa[y + 3, 5:5 + n]
                p4 = cfa[y + 4, 5:5 + n]
                row = cfa[y]
                xl4 = row[1:1 + n]
                xl3 = row[2:2 + n]
                xl2 = row[3:3 + n]
                xl1 = row[4:4 + n]
                xc = row[5:5 + n]
                xr1 = row[6:6 + n]
                xr2 = row[7:7 + n]
                xr3 = row[8:8 + n]
                xr4 = row[9:9 + n]
                lc = lp[y & _RMASK, 5:5 + n]
                ll2 = lp[y & _RMASK, 3:3 + n]
                lr2 = lp[y & _RMASK, 7:7 + n]
                lm = lp[(y - 2) & _RMASK, 5:5 + n]
                lpp = lp[(y + 2) & _RMASK, 5:5 + n]
                vc = vr[y & _RMASK, 5:5 + n]
                vml = vr[(y - 1) & _RMASK, 4:4 + n]
                vmr = vr[(y - 1) & _RMASK, 6:6 + n]
                vpl = vr[(y + 1) & _RMASK, 4:4 + n]
                vpr = vr[(y + 1) & _RMASK, 6:6 + n]
                g = rgb[1, y, 5:5 + n]
                for x in range(n):
                    c = xc[x]
                    n_grad = eps + abs(m1[x] - p1[x]) + abs(c - m2[x]) \
                        + abs(m1[x] - m3[x]) + abs(m2[x] - m4[x])
                    s_grad = eps + abs(m1[x] - p1[x]) + abs(c - p2[x]) \
                        + abs(p1[x] - p3[x]) + abs(p2[x] - p4[x])
                    w_grad = eps + abs(xl1[x] - xr1[x]) + abs(c - xl2[x]) \
                        + abs(xl1[x] - xl3[x]) + abs(xl2[x] - xl4[x])
                    e_grad = eps + abs(xl1[x] - xr1[x]) + abs(c - xr2[x]) \
                        + abs(xr1[x] - xr3[x]) + abs(xr2[x] - xr4[x])
                    l0 = lc[x]
                    n_est = m1[x] * _F2 * l0 / (eps + l0 + lm[x])
                    s_est = p1[x] * _F2 * l0 / (eps + l0 + lpp[x])
                    w_est = xl1[x] * _F2 * l0 / (eps + l0 + ll2[x])
                    e_est = xr1[x] * _F2 * l0 / (eps + l0 + lr2[x])
                    v_est = (s_grad * n_est + n_grad * s_est) / (n_grad + s_grad)
                    h_est = (w_grad * e_est + e_grad * w_est) / (e_grad + w_grad)
                    central = vc[x]
                    neigh = _F025 * (vml[x] + vmr[x] + vpl[x] + vpr[x])
                    disc = neigh if abs(_F05 - central) < abs(_F05 - neigh) else central
                    val = disc * (h_est - v_est) + v_est
                    g[x] = val if (x & 1) == par else c


def _rcd_green(cfa, cf, rgb, vh, nblk):
    """:func:`_rcd_green_rows` over all rows, in threads."""
    run_in_threads(_rcd_green_rows, nblk, cfa, cf, rgb, vh, nblk, chunks_per_thread=1)


@njit(cache=True, nogil=True, error_model="numpy",
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], i8, i8, i8)")
def _rcd_redblue_rows(cfa, cf, rgb, nblk, i0, i1):
    """RCD step 4.1-4.3: red at blue sites and blue at red sites (rows/cols 6..n-7).

    Needs the green of :func:`_rcd_green` on all rows (separate parallel region);
    the diagonal high-pass and P/Q discrimination are 8-row rings as above.  Also
    writes the own red/blue samples of those rows (no separate scatter pass).
    Unit-stride loops over whole rows as in :func:`_rcd_green_rows`: the values it
    writes at the green sites of rows 6..h-7 (columns 6..w-7) are not read by
    anything and :func:`_rcd_green_sites_rows` overwrites them.
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
            n = w - 6
            cc = cfa[i, 3:3 + n]
            a3l = cfa[i - 3, 0:n]
            a3r = cfa[i - 3, 6:6 + n]
            a2l = cfa[i - 2, 1:1 + n]
            a2r = cfa[i - 2, 5:5 + n]
            a1l = cfa[i - 1, 2:2 + n]
            a1r = cfa[i - 1, 4:4 + n]
            b1l = cfa[i + 1, 2:2 + n]
            b1r = cfa[i + 1, 4:4 + n]
            b2l = cfa[i + 2, 1:1 + n]
            b2r = cfa[i + 2, 5:5 + n]
            b3l = cfa[i + 3, 0:n]
            b3r = cfa[i + 3, 6:6 + n]
            op = bp[ri, 3:3 + n]
            oq = bq[ri, 3:3 + n]
            for x in range(n):
                c0 = 6.0 * cc[x]
                op[x] = _sq((a3l[x] - a1l[x] - b1r[x] + b3r[x])
                            - 3.0 * (a2l[x] + b2r[x]) + c0)
                oq[x] = _sq((a3r[x] - a1r[x] - b1l[x] + b3l[x])
                            - 3.0 * (a2r[x] + b2l[x]) + c0)
            # Step 4.2: P/Q discrimination, one row behind.
            r = i - 1
            if r >= r0 - 1:
                n = w - 8
                pm = bp[(r - 1) & _RMASK, 3:3 + n]
                pc = bp[r & _RMASK, 4:4 + n]
                pp = bp[(r + 1) & _RMASK, 5:5 + n]
                qm = bq[(r - 1) & _RMASK, 5:5 + n]
                qc = bq[r & _RMASK, 4:4 + n]
                qp = bq[(r + 1) & _RMASK, 3:3 + n]
                po = pq[r & _RMASK, 4:4 + n]
                for x in range(n):
                    p = max(epssq, pm[x] + pc[x] + pp[x])
                    q = max(epssq, qm[x] + qc[x] + qp[x])
                    po[x] = p / (p + q)
            # Step 4.3: red at blue sites and blue at red sites, two rows behind.
            y = i - 2
            if y >= r0 and y < r1:
                own = cf[y & 1, _rb0(cf, y)]
                c = 2 - own
                n = w - 12
                qc = pq[y & _RMASK, 6:6 + n]
                qml = pq[(y - 1) & _RMASK, 5:5 + n]
                qmr = pq[(y - 1) & _RMASK, 7:7 + n]
                qpl = pq[(y + 1) & _RMASK, 5:5 + n]
                qpr = pq[(y + 1) & _RMASK, 7:7 + n]
                gc = rgb[1, y, 6:6 + n]
                gm2l = rgb[1, y - 2, 4:4 + n]
                gm2r = rgb[1, y - 2, 8:8 + n]
                gp2l = rgb[1, y + 2, 4:4 + n]
                gp2r = rgb[1, y + 2, 8:8 + n]
                gm1l = rgb[1, y - 1, 5:5 + n]
                gm1r = rgb[1, y - 1, 7:7 + n]
                gp1l = rgb[1, y + 1, 5:5 + n]
                gp1r = rgb[1, y + 1, 7:7 + n]
                m1l = cfa[y - 1, 5:5 + n]
                m1r = cfa[y - 1, 7:7 + n]
                p1l = cfa[y + 1, 5:5 + n]
                p1r = cfa[y + 1, 7:7 + n]
                m3l = cfa[y - 3, 3:3 + n]
                m3r = cfa[y - 3, 9:9 + n]
                p3l = cfa[y + 3, 3:3 + n]
                p3r = cfa[y + 3, 9:9 + n]
                cy = cfa[y, 6:6 + n]
                oc = rgb[c, y, 6:6 + n]
                oo = rgb[own, y, 6:6 + n]
                for x in range(n):
                    central = qc[x]
                    neigh = _F025 * (qml[x] + qmr[x] + qpl[x] + qpr[x])
                    disc = neigh if abs(_F05 - central) < abs(_F05 - neigh) else central
                    g0 = gc[x]
                    # the diagonal neighbours are samples of colour c: read the mosaic
                    nw_grad = eps + abs(m1l[x] - p1r[x]) \
                        + abs(m1l[x] - m3l[x]) + abs(g0 - gm2l[x])
                    ne_grad = eps + abs(m1r[x] - p1l[x]) \
                        + abs(m1r[x] - m3r[x]) + abs(g0 - gm2r[x])
                    sw_grad = eps + abs(m1r[x] - p1l[x]) \
                        + abs(p1l[x] - p3l[x]) + abs(g0 - gp2l[x])
                    se_grad = eps + abs(m1l[x] - p1r[x]) \
                        + abs(p1r[x] - p3r[x]) + abs(g0 - gp2r[x])
                    nw_est = m1l[x] - gm1l[x]
                    ne_est = m1r[x] - gm1r[x]
                    sw_est = p1l[x] - gp1l[x]
                    se_est = p1r[x] - gp1r[x]
                    p_est = (nw_grad * se_est + se_grad * nw_est) / (nw_grad + se_grad)
                    q_est = (ne_grad * sw_est + sw_grad * ne_est) / (ne_grad + sw_grad)
                    oc[x] = g0 + disc * (q_est - p_est) + p_est
                    oo[x] = cy[x]


def _rcd_redblue(cfa, cf, rgb, nblk):
    """:func:`_rcd_redblue_rows` over all rows, in threads."""
    run_in_threads(_rcd_redblue_rows, nblk, cfa, cf, rgb, nblk, chunks_per_thread=1)


@njit(cache=True, nogil=True, error_model="numpy",
      aot="void(f4[:, ::1], i8[:, ::1], f4[:, :, ::1], f4[:, ::1], i8, i8)")
def _rcd_green_sites_rows(cfa, cf, rgb, vh, i0, i1):
    """RCD step 4.4: red and blue at green sites (rows/cols 6..n-7).

    Unit-stride loops as in :func:`_rcd_green_rows`: each colour's values at every
    column of the row into a row buffer (reading only the red/blue sites' values of
    ``rgb[c]`` at the green sites' columns, as before), then the green sites' copied
    into ``rgb[c]`` by a select (the red/blue sites keep theirs)."""
    h, w = cfa.shape
    eps = np.float32(1e-5)
    n = w - 12
    buf0 = np.empty(max(n, 1), np.float32)
    buf2 = np.empty(max(n, 1), np.float32)
    for y in range(i0, i1):
        par = _rb0(cf, y) ^ 1          # k = x - 6 of the green sites
        vc = vh[y, 6:6 + n]
        vml = vh[y - 1, 5:5 + n]
        vmr = vh[y - 1, 7:7 + n]
        vpl = vh[y + 1, 5:5 + n]
        vpr = vh[y + 1, 7:7 + n]
        gc = cfa[y, 6:6 + n]
        cm2 = cfa[y - 2, 6:6 + n]
        cp2 = cfa[y + 2, 6:6 + n]
        cl2 = cfa[y, 4:4 + n]
        cr2 = cfa[y, 8:8 + n]
        gn_ = rgb[1, y - 1, 6:6 + n]
        gs_ = rgb[1, y + 1, 6:6 + n]
        gw_ = rgb[1, y, 5:5 + n]
        ge_ = rgb[1, y, 7:7 + n]
        am1 = rgb[0, y - 1, 6:6 + n]
        ap1 = rgb[0, y + 1, 6:6 + n]
        am3 = rgb[0, y - 3, 6:6 + n]
        ap3 = rgb[0, y + 3, 6:6 + n]
        al1 = rgb[0, y, 5:5 + n]
        ar1 = rgb[0, y, 7:7 + n]
        al3 = rgb[0, y, 3:3 + n]
        ar3 = rgb[0, y, 9:9 + n]
        bm1 = rgb[2, y - 1, 6:6 + n]
        bp1 = rgb[2, y + 1, 6:6 + n]
        bm3 = rgb[2, y - 3, 6:6 + n]
        bp3 = rgb[2, y + 3, 6:6 + n]
        bl1 = rgb[2, y, 5:5 + n]
        br1 = rgb[2, y, 7:7 + n]
        bl3 = rgb[2, y, 3:3 + n]
        br3 = rgb[2, y, 9:9 + n]
        # both colours in one sweep: the discrimination and the green gradients once
        for x in range(n):
            central = vc[x]
            neigh = _F025 * (vml[x] + vmr[x] + vpl[x] + vpr[x])
            disc = neigh if abs(_F05 - central) < abs(_F05 - neigh) else central
            g0 = gc[x]
            n1 = eps + abs(g0 - cm2[x])
            s1 = eps + abs(g0 - cp2[x])
            w1 = eps + abs(g0 - cl2[x])
            e1 = eps + abs(g0 - cr2[x])
            gn = gn_[x]
            gs = gs_[x]
            gw = gw_[x]
            ge = ge_[x]
            sn_abs = abs(am1[x] - ap1[x])
            ew_abs = abs(al1[x] - ar1[x])
            n_grad = n1 + sn_abs + abs(am1[x] - am3[x])
            s_grad = s1 + sn_abs + abs(ap1[x] - ap3[x])
            w_grad = w1 + ew_abs + abs(al1[x] - al3[x])
            e_grad = e1 + ew_abs + abs(ar1[x] - ar3[x])
            n_est = am1[x] - gn
            s_est = ap1[x] - gs
            w_est = al1[x] - gw
            e_est = ar1[x] - ge
            v_est = (n_grad * s_est + s_grad * n_est) / (n_grad + s_grad)
            h_est = (e_grad * w_est + w_grad * e_est) / (e_grad + w_grad)
            buf0[x] = g0 + disc * (h_est - v_est) + v_est
            sn_abs = abs(bm1[x] - bp1[x])
            ew_abs = abs(bl1[x] - br1[x])
            n_grad = n1 + sn_abs + abs(bm1[x] - bm3[x])
            s_grad = s1 + sn_abs + abs(bp1[x] - bp3[x])
            w_grad = w1 + ew_abs + abs(bl1[x] - bl3[x])
            e_grad = e1 + ew_abs + abs(br1[x] - br3[x])
            n_est = bm1[x] - gn
            s_est = bp1[x] - gs
            w_est = bl1[x] - gw
            e_est = br1[x] - ge
            v_est = (n_grad * s_est + s_grad * n_est) / (n_grad + s_grad)
            h_est = (e_grad * w_est + w_grad * e_est) / (e_grad + w_grad)
            buf2[x] = g0 + disc * (h_est - v_est) + v_est
        o0 = rgb[0, y, 6:6 + n]
        o2 = rgb[2, y, 6:6 + n]
        for x in range(n):
            o0[x] = buf0[x] if (x & 1) == par else o0[x]
            o2[x] = buf2[x] if (x & 1) == par else o2[x]


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
    Issue 13: the stride-2 loops became unit-stride row views with
    ``error_model="numpy"`` (numba's zero-division check was what kept every loop
    scalar); per 1080x1920 Seestar mosaic, 1 thread, CPU: green 28 -> 11 ms,
    red/blue 22 -> 9 ms, green sites 21 -> 8.5 ms (both colours in one sweep),
    debayer_array 74 -> 30 ms, the
    same output bit for bit.
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
