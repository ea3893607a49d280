"""numba kernels of integration: per pixel, normalise the N values, sort them with a
sorting network (SIMD over 128 pixels), reject (sigma, Winsorized, linear fit,
percentile, GESD, min/max) and combine (average, median, sum)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Why hand-written: per pixel we need the sorted N values and a few passes over them.
# numpy can only do that with (N, pixels) temporaries and masked statistics per
# iteration: the former numpy stub (sigma clipping with nanmedian/nanstd) took 5.3 s
# CPU (12.4 s wall on the shared 2-core machine) for 20 frames of 1000x1000, this
# kernel with the full Winsorized method 0.34 s CPU (0.84 s wall): 15x, and no
# temporaries the size of the stack.

_XBLOCK = 128      # pixels sorted together (one SIMD lane each)


def _batcher_pairs(n: int) -> np.ndarray:
    """Comparators ``(a, b)``, ``a < b``, of Batcher's odd-even merge sort for ``n``
    wires: the network for the next power of two, minus comparators touching wires
    >= n (those would hold +inf and never swap)."""
    p2 = 1
    while p2 < n:
        p2 *= 2
    out = []
    p = 1
    while p < p2:
        k = p
        while k >= 1:
            for j in range(k % p, p2 - k, 2 * k):
                for i in range(min(k, p2 - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        out.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(out, np.int32).reshape(-1, 2)


@njit(cache=True, nogil=True, inline="always")
def _network_sort(blk, bid, nb, comps):
    """Sort each column ``blk[:, k]`` (k < nb) ascending, permuting ``bid`` alike.

    A sorting network applies the same compare-exchange to every pixel, so the
    inner loop over 128 pixels is branch-free SIMD (min/max, xor-swap of indices).
    Measured for 20 values per pixel: 51 ns/pixel, against 231 ns for a per-pixel
    rank sort and 466 ns for a per-pixel shell sort (noise mispredicts its branches).
    Views like ``blk[a]`` defeat vectorisation here; keep the 2-D indexing.
    """
    for m in range(comps.shape[0]):
        a = comps[m, 0]
        b = comps[m, 1]
        for k in range(nb):
            va = blk[a, k]
            vb = blk[b, k]
            xa = bid[a, k]
            xb = bid[b, k]
            t = (xa ^ xb) * np.int32(vb < va)
            blk[a, k] = min(va, vb)
            blk[b, k] = max(va, vb)
            bid[a, k] = xa ^ t
            bid[b, k] = xb ^ t


@njit(cache=True, nogil=True, inline="always")
def _median_sorted(v, lo, hi):
    m = hi - lo
    h = lo + m // 2
    if m % 2 == 1:
        return np.float64(v[h])
    return 0.5 * (np.float64(v[h - 1]) + np.float64(v[h]))


@njit(cache=True, nogil=True, inline="always")
def _prefix(v, n, shift, p1, p2):
    """Prefix sums of ``v - shift`` and its square over ``v[:n]`` (float64)."""
    p1[0] = 0.0
    p2[0] = 0.0
    for j in range(n):
        d = np.float64(v[j]) - shift
        p1[j + 1] = p1[j] + d
        p2[j + 1] = p2[j] + d * d


@njit(cache=True, nogil=True, inline="always")
def _range_mean_sd(p1, p2, lo, hi, shift):
    """Mean and sample std (ddof=1) of ``v[lo:hi]`` from the prefix sums."""
    m = hi - lo
    s = p1[hi] - p1[lo]
    ss = p2[hi] - p2[lo]
    var = (ss - s * s / m) / (m - 1)
    return shift + s / m, math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _clip_range(v, lo, hi, centre, below, above):
    """Shrink the sorted range to values with centre - v <= below and v - centre <= above."""
    nl = lo
    while nl < hi and centre - v[nl] > below:
        nl += 1
    nh = hi
    while nh > nl and v[nh - 1] - centre > above:
        nh -= 1
    return nl, nh


# Sigma and Winsorized clipping share their outer loop but stay two kernels: sharing it
# (one kernel with a flag, or inlined helpers for the sigma and the clip step) gave the
# same results but cost Winsorized 7-10 % of CPU (combine_stack of 20 x 1000 x 1000,
# 4 alternating runs of each on the loaded 2-core machine: 0.47-0.57 s vs 0.45-0.52 s).
@njit(cache=True, nogil=True, inline="always")
def _rej_sigma(v, lo, hi, klow, khigh, iters, p1, p2, shift):
    for _ in range(iters):
        if hi - lo < 3:
            break
        med = _median_sorted(v, lo, hi)
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        nl, nh = _clip_range(v, lo, hi, med, klow * sd, khigh * sd)
        if nl == lo and nh == hi:
            break
        lo = nl
        hi = nh
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _rej_winsorized(v, lo, hi, klow, khigh, iters, p1, p2, shift):
    for _ in range(iters):
        m = hi - lo
        if m < 3:
            break
        med = _median_sorted(v, lo, hi)
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        # Huber's iteration. The median of the winsorised values is med itself
        # (clipping symmetric about the median keeps it), so only sigma moves; the
        # values are sorted, so the clipped ones sit at the ends and the sums of
        # the rest come from the prefix sums: O(clipped) per iteration, not O(n).
        inv_m = 1.0 / m
        k2 = 1.134 * 1.134 / (m - 1)
        for _k in range(100):
            s0 = sd
            c0 = med - 1.5 * s0
            c1 = med + 1.5 * s0
            a = lo
            while a < hi and v[a] < c0:
                a += 1
            b = hi
            while b > a and v[b - 1] > c1:
                b -= 1
            d0 = c0 - shift
            d1 = c1 - shift
            s = (a - lo) * d0 + (p1[b] - p1[a]) + (hi - b) * d1
            ss = (a - lo) * d0 * d0 + (p2[b] - p2[a]) + (hi - b) * d1 * d1
            var = (ss - s * s * inv_m) * k2
            sd = math.sqrt(var) if var > 0.0 else 0.0
            if abs(sd - s0) <= 5e-4 * s0:
                break
        if not sd > 0.0:
            break
        nl, nh = _clip_range(v, lo, hi, med, klow * sd, khigh * sd)
        if nl == lo and nh == hi:
            break
        lo = nl
        hi = nh
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _rej_linear(v, idx, lo, hi, klow, khigh, iters, tv, ti, cls):
    """Linear-fit clipping; rejected values are moved out of ``[lo, hi)`` (lows
    before it, highs after it) keeping the kept values sorted."""
    for _ in range(iters):
        m = hi - lo
        if m < 3:
            break
        xm = 0.5 * (m - 1)
        ym = 0.0
        for j in range(m):
            ym += v[lo + j]
        ym /= m
        sxy = 0.0
        sxx = 0.0
        for j in range(m):
            dx = j - xm
            sxy += dx * (v[lo + j] - ym)
            sxx += dx * dx
        b = sxy / sxx
        a = ym - b * xm
        sig = 0.0
        for j in range(m):
            sig += abs(v[lo + j] - (a + b * j))
        sig /= m
        if not sig > 0.0:
            break
        nlow = 0
        nhigh = 0
        for j in range(m):
            f = a + b * j
            y = v[lo + j]
            if f - y > klow * sig:
                cls[j] = 0
                nlow += 1
            elif y - f > khigh * sig:
                cls[j] = 2
                nhigh += 1
            else:
                cls[j] = 1
        if nlow == 0 and nhigh == 0:
            break
        # stable three-way partition of v[lo:hi] through the scratch arrays
        p = 0
        for want in range(3):
            for j in range(m):
                if cls[j] == want:
                    tv[p] = v[lo + j]
                    ti[p] = idx[lo + j]
                    p += 1
        for j in range(m):
            v[lo + j] = tv[j]
            idx[lo + j] = ti[j]
        lo += nlow
        hi -= nhigh
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _rej_percentile(v, lo, hi, plow, phigh):
    med = _median_sorted(v, lo, hi)
    return _clip_range(v, lo, hi, med, plow * med, phigh * med)


@njit(cache=True, nogil=True, inline="always")
def _rej_gesd(v, n, crit, rmax, ends, p1, p2, shift):
    """GESD on sorted ``v[:n]``: the most extreme value is always at one end."""
    lo = 0
    hi = n
    last = 0
    r = rmax[n]
    for i in range(r):
        if hi - lo < 3:
            break
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        dlo = mean - v[lo]
        dhi = v[hi - 1] - mean
        if dhi >= dlo:
            stat = dhi / sd
            ends[i] = 1
            hi -= 1
        else:
            stat = dlo / sd
            ends[i] = 0
            lo += 1
        if stat > crit[n, i]:
            last = i + 1
    lo = 0
    hi = n
    for i in range(last):
        if ends[i] == 1:
            hi -= 1
        else:
            lo += 1
    return lo, hi


# --- row kernels -------------------------------------------------------------------
# The helpers above are inlined into the row kernel that uses them (inline="always"):
# one compile unit per row kernel instead of twelve, 10 % less compile time and a few
# % less CPU at run time (Winsorized, 16 x 3 x 40 x 1920: 0.075 -> 0.069 s, same
# results bit for bit).
# One kernel per rejection method, each compiled on its first use only: a single
# kernel branching on the method compiled all of them on every first run (126 s of
# a 175 s cold compile on the loaded machine), and ``parallel=True`` compiled it a
# second time inside the parfor. The kernels are serial and release the GIL; the
# caller runs ranges of rows in threads (:func:`..stats.run_in_threads`).
# Every kernel takes (buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
# out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1) and does the rows cr0..cr1-1 of
# the flattened (channel, row) index of the tile ``buf (N, C, R, X)``.


@njit(cache=True, nogil=True, inline="always")
def _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr):
    """Normalise the block's values of every frame (read contiguously), set invalid
    ones to +inf, count the valid ones and sort each pixel's column."""
    N = buf.shape[0]
    inf = np.float32(np.inf)
    cnt[:nb] = 0
    for i in range(N):
        a = np.float32(A[i, c])
        b = np.float32(B[i, c])
        bad = 0
        for k in range(nb):
            val = buf[i, c, r, x0 + k] * a + b
            ok = np.isfinite(val)
            blk[i, k] = val if ok else inf
            bid[i, k] = i
            cnt[k] += ok
            bad += 1 - ok
        finv[cr, i] += bad
    _network_sort(blk, bid, nb, comps)


@njit(cache=True, nogil=True, inline="always")
def _take(blk, bid, k, n, sv, si):
    for j in range(n):
        sv[j] = blk[j, k]
        si[j] = bid[j, k]


@njit(cache=True, nogil=True, inline="always")
def _finish(sv, si, n, lo, hi, W, c, r, x, cr, combine, out, lowc, highc, frl, frh):
    """Count the values rejected at pixel (c, r, x) and combine the kept ``sv[lo:hi]``."""
    if n == 0:
        out[c, r, x] = 0.0
        lowc[c, r, x] = 0
        highc[c, r, x] = 0
        return
    for j in range(lo):
        frl[cr, si[j]] += 1
    for j in range(hi, n):
        frh[cr, si[j]] += 1
    lowc[c, r, x] = lo
    highc[c, r, x] = n - hi
    if combine == 1:
        res = _median_sorted(sv, lo, hi)
    elif combine == 2:
        s = 0.0
        for j in range(lo, hi):
            s += sv[j]
        res = s / (hi - lo) * n
    else:
        s = 0.0
        sw = 0.0
        for j in range(lo, hi):
            w = W[si[j], c]
            s += w * sv[j]
            sw += w
        res = s / sw if sw > 0.0 else 0.0
    out[c, r, x] = res


@njit(cache=True, nogil=True)
def _rows_accumulate(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    """No rejection, average or sum: accumulate frame by frame (SIMD over pixels)."""
    N, C, R, X = buf.shape
    cnt = np.empty(_XBLOCK, np.int64)
    acc = np.empty(_XBLOCK, np.float64)
    accw = np.empty(_XBLOCK, np.float64)
    accs = np.empty(_XBLOCK, np.float64)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            cnt[:nb] = 0
            acc[:nb] = 0.0
            accw[:nb] = 0.0
            accs[:nb] = 0.0
            for i in range(N):
                a = np.float32(A[i, c])
                b = np.float32(B[i, c])
                w = W[i, c]
                bad = 0
                for k in range(nb):
                    val = buf[i, c, r, x0 + k] * a + b
                    ok = np.isfinite(val)
                    cnt[k] += ok
                    bad += 1 - ok
                    vz = val if ok else np.float32(0.0)     # selects, not branches
                    wk = w if ok else 0.0
                    acc[k] += wk * vz
                    accw[k] += wk
                    accs[k] += vz
                finv[cr, i] += bad
            for k in range(nb):
                x = x0 + k
                n = cnt[k]
                nvalid[c, r, x] = n
                lowc[c, r, x] = 0
                highc[c, r, x] = 0
                if n == 0:
                    out[c, r, x] = 0.0
                elif combine == 2:
                    out[c, r, x] = accs[k]
                else:
                    out[c, r, x] = acc[k] / accw[k] if accw[k] > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _rows_none(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
               out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    """No rejection, median combine (needs the sorted values)."""
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                _finish(sv, si, n, np.int64(0), n, W, c, r, x0 + k, cr, combine, out, lowc,
                        highc, frl, frh)


@njit(cache=True, nogil=True)
def _rows_sigma(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    p1 = np.empty(N + 1, np.float64)
    p2 = np.empty(N + 1, np.float64)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)  # not a literal 0: a Literal[int] argument compiles
                # every callee a second time
                hi = n
                if n >= 3:
                    shift = _median_sorted(sv, lo, hi)
                    _prefix(sv, hi, shift, p1, p2)
                    lo, hi = _rej_sigma(sv, lo, hi, plow, phigh, iters, p1, p2, shift)
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


@njit(cache=True, nogil=True)
def _rows_winsorized(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    p1 = np.empty(N + 1, np.float64)
    p2 = np.empty(N + 1, np.float64)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)
                hi = n
                if n >= 3:
                    shift = _median_sorted(sv, lo, hi)
                    _prefix(sv, hi, shift, p1, p2)
                    lo, hi = _rej_winsorized(sv, lo, hi, plow, phigh, iters, p1, p2, shift)
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


@njit(cache=True, nogil=True)
def _rows_gesd(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
               out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    ends = np.empty(N, np.int8)
    p1 = np.empty(N + 1, np.float64)
    p2 = np.empty(N + 1, np.float64)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)
                hi = n
                if n >= 3:
                    shift = _median_sorted(sv, lo, hi)
                    _prefix(sv, hi, shift, p1, p2)
                    lo, hi = _rej_gesd(sv, hi, crit, rmax, ends, p1, p2, shift)
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


@njit(cache=True, nogil=True)
def _rows_linear(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                 out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    tv = np.empty(N, np.float32)
    ti = np.empty(N, np.int32)
    cls = np.empty(N, np.int8)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)
                hi = n
                if n >= 3:
                    lo, hi = _rej_linear(sv, si, lo, hi, plow, phigh, iters, tv, ti, cls)
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


@njit(cache=True, nogil=True)
def _rows_percentile(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)
                hi = n
                if n >= 3:
                    lo, hi = _rej_percentile(sv, lo, hi, plow, phigh)
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


@njit(cache=True, nogil=True)
def _rows_minmax(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                 out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    nl = int(plow)
    nh = int(phigh)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _sorted_block(buf, c, r, x0, nb, A, B, comps, blk, bid, cnt, finv, cr)
            for k in range(nb):
                n = cnt[k]
                nvalid[c, r, x0 + k] = n
                _take(blk, bid, k, n, sv, si)
                lo = np.int64(0)
                hi = n
                if n >= 3 and n - nl - nh >= 1:
                    lo = nl
                    hi = n - nh
                _finish(sv, si, n, lo, hi, W, c, r, x0 + k, cr, combine, out, lowc, highc,
                        frl, frh)


#: rejection code (``Rejection.code``) -> row kernel of the sorted path
ROW_KERNELS = {0: _rows_none, 1: _rows_sigma, 2: _rows_winsorized, 3: _rows_linear,
               4: _rows_percentile, 5: _rows_gesd, 6: _rows_minmax}


def row_kernel(method: int, combine: int):
    """The row kernel for rejection ``method`` and combine code ``combine``."""
    if method == 0 and combine != 1:
        return _rows_accumulate
    return ROW_KERNELS[method]
