"""numba kernels of integration: per pixel, normalise the N values, sort them with a
sorting network (SIMD over 128 pixels), reject (sigma, Winsorized, linear fit,
percentile, GESD, min/max) and combine (average, median, sum)."""

from __future__ import annotations

import math

import numpy as np
from ..jit import njit

# Why hand-written: per pixel we need the sorted N values and a few passes over them.
# numpy can only do that with (N, pixels) temporaries and masked statistics per
# iteration: the former numpy stub (sigma clipping with nanmedian/nanstd) took 5.3 s
# CPU (12.4 s wall on the shared 2-core machine) for 20 frames of 1000x1000, this
# kernel with the full Winsorized method 0.34 s CPU (0.84 s wall): 15x, and no
# temporaries the size of the stack.

_XBLOCK = 128      # pixels sorted together (one SIMD lane each)

# The one signature of every row kernel (buf, A, B, W, plow, phigh, iters, crit, rmax,
# combine, comps, out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1): compiled ahead
# of time with it (tools/build_aot.py, core/jit.py).
_ROW_SIG = ("void(f4[:, :, :, ::1], f8[:, ::1], f8[:, ::1], f8[:, ::1], f8, f8, i8, f8[:, ::1], "
            "i8[::1], i8, i4[:, ::1], f4[:, :, ::1], u2[:, :, ::1], u2[:, :, ::1], "
            "u2[:, :, ::1], i8[:, ::1], i8[:, ::1], i8[:, ::1], i8, i8)")
_WSTEPS = 2        # set steps of _wins_first_pass (1, 2, 3 measured alike; 2 kept)


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
            blk[a, k] = np.minimum(va, vb)      # not min/max: see _network_sort_values
            blk[b, k] = np.maximum(va, vb)
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
        row = buf[i, c, r, x0:x0 + nb]     # see _block_values: no gathers
        bad = 0
        for k in range(nb):
            val = row[k] * a + b
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


# --- the value-sorted path (none/median, sigma, Winsorized, percentile) -------------
# These rejections are thresholds on the value, so equal values share their fate and
# the frame of a value need not travel through the sort: the block is sorted without
# frame ids, and a pixel that rejected something finds its rejected frames (and its
# kept weights) in the unsorted copy ``raw``. Per-pixel work is then only the
# rejection itself; the rest is SIMD over the block's 128 pixels (normalisation with
# weighted sums, the sort, the prefix sums), and Huber's sigma is solved, not iterated
# (see _rows_sorted). Same rejections and results as the former per-pixel kernels.
# Measured, CPU s of one (N, 3, 540, 1920) tile of noise, one thread, average combine,
# former -> this: Winsorized (3, 3) N=4 0.69 -> 0.23, N=16 0.98 -> 0.40, N=20 1.09 ->
# 0.43, N=40 1.83 -> 0.75; sigma (3, 3) N=4 0.27 -> 0.08, N=16 0.42 -> 0.11, N=20
# 0.73 -> 0.20, N=40 1.30 -> 0.32.


@njit(cache=True, nogil=True, inline="always")
def _block_values(buf, c, r, x0, nb, A, B, W, blk, raw, cnt, sw, sww, ssum, finv, cr):
    """Normalise the block's values of every frame into ``blk`` and ``raw`` (+inf
    where invalid), count the valid ones and accumulate, per pixel in frame order,
    the weighted sum ``sw``, the weight ``sww`` and the plain sum ``ssum`` of the
    valid values (the combine of a pixel that rejects nothing)."""
    N = buf.shape[0]
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    cnt[:nb] = 0
    sw[:nb] = 0.0
    sww[:nb] = 0.0
    ssum[:nb] = 0.0
    for i in range(N):
        a = np.float32(A[i, c])
        b = np.float32(B[i, c])
        w = W[i, c]
        # a 1-D row view, not buf[i, c, r, x0 + k]: that index compiled to gathers
        # (vgatherqps); measured for N = 40, 3 x 540 x 1920: 0.41 s -> 0.09 s.
        row = buf[i, c, r, x0:x0 + nb]
        bv = blk[i]
        rv = raw[i]
        bad = 0
        for k in range(nb):
            val = row[k] * a + b
            ok = np.isfinite(val)
            vz = val if ok else inf
            bv[k] = vz
            rv[k] = vz
            cnt[k] += ok
            bad += 1 - ok
            v0 = val if ok else zero            # selects, not branches
            wk = w if ok else 0.0
            sw[k] += wk * v0
            sww[k] += wk
            ssum[k] += v0
        finv[cr, i] += bad


@njit(cache=True, nogil=True, inline="always")
def _network_sort_values(blk, nb, comps):
    """Sort each column ``blk[:, k]`` (k < nb) ascending, values only. Measured for
    40 values per pixel: 3x less time than sorting the frame ids alongside.
    ``np.minimum``/``np.maximum``, not ``min``/``max``: the builtins (and a ternary)
    in a loop that writes two arrays compiled to scalar code; measured, 16 values per
    pixel, 128 pixels: 50 -> 13 ns/pixel (the whole Winsorized kernel, one thread,
    one tile of the real frames: N=4 80 -> 63 ns/pixel, N=16 184 -> 137 with the
    first pass below)."""
    for m in range(comps.shape[0]):
        ra = blk[comps[m, 0]]
        rb = blk[comps[m, 1]]
        for k in range(nb):
            va = ra[k]
            vb = rb[k]
            ra[k] = np.minimum(va, vb)
            rb[k] = np.maximum(va, vb)


@njit(cache=True, nogil=True, inline="always")
def _block_prefix(blk, nb, cnt, shift, P1, P2):
    """Per pixel ``k``: ``shift[k]`` = median of its valid values and the prefix sums
    ``P1[j, k]``, ``P2[j, k]`` of ``v - shift`` and its square (float64), SIMD over
    the pixels (the same operations, in the same order, as one pixel at a time)."""
    N = blk.shape[0]
    for k in range(nb):
        n = cnt[k]
        h = n // 2
        if n == 0:
            shift[k] = 0.0
        elif n % 2 == 1:
            shift[k] = np.float64(blk[h, k])
        else:
            shift[k] = 0.5 * (np.float64(blk[h - 1, k]) + np.float64(blk[h, k]))
        P1[0, k] = 0.0
        P2[0, k] = 0.0
    for j in range(N):
        v = blk[j]
        a1 = P1[j]
        b1 = P1[j + 1]
        a2 = P2[j]
        b2 = P2[j + 1]
        for k in range(nb):
            d = np.float64(v[k]) - shift[k]
            b1[k] = a1[k] + d
            b2[k] = a2[k] + d * d


@njit(cache=True, nogil=True, inline="always")
def _pick_lo(P, nb, na, top, q, t):
    """``q[k] = P[na[k], k]`` for counts ``na[k] <= top``: selects over the rows into
    a fresh array (ping-pong with ``t``), as a gather or a select read-modify-write
    compiles to scalar code."""
    for k in range(nb):
        q[k] = P[0, k]
    src = q
    dst = t
    for j in range(1, top + 1):
        p = P[j]
        for k in range(nb):
            pk = p[k]
            qk = src[k]
            dst[k] = pk if na[k] == j else qk
        src, dst = dst, src
    if top % 2 == 1:
        for k in range(nb):
            q[k] = t[k]


@njit(cache=True, nogil=True, inline="always")
def _pick_hi(P, nb, m, nz, bot, q, t):
    """``q[k] = P[nz[k], k]`` for counts ``nz[k] >= bot`` (see _pick_lo)."""
    for k in range(nb):
        q[k] = P[m, k]
    src = q
    dst = t
    for j in range(bot, m):
        p = P[j]
        for k in range(nb):
            pk = p[k]
            qk = src[k]
            dst[k] = pk if nz[k] == j else qk
        src, dst = dst, src
    if (m - bot) % 2 == 1:
        for k in range(nb):
            q[k] = t[k]


@njit(cache=True, nogil=True, inline="always")
def _count_lo(blk, nb, m, c0, na):
    """``na[k]`` = number of values < ``c0[k]``; returns the last row counted + 1."""
    for k in range(nb):
        na[k] = 0
    top = 0
    for j in range(m):
        row = blk[j]
        hit = 0
        for k in range(nb):
            t = np.float64(row[k]) < c0[k]
            na[k] += t
            hit += t
        if hit == 0:
            break
        top = j + 1
    return top


@njit(cache=True, nogil=True, inline="always")
def _count_hi(blk, nb, m, c1, nz):
    """``nz[k]`` = m - number of values > ``c1[k]``; returns the lowest row counted."""
    for k in range(nb):
        nz[k] = m
    bot = m
    for j in range(m - 1, -1, -1):
        row = blk[j]
        hit = 0
        for k in range(nb):
            t = np.float64(row[k]) > c1[k]
            nz[k] -= t
            hit += t
        if hit == 0:
            break
        bot = j
    return bot


# Not inlined: one call per block, and numba's IR inlining of it cost 1.7 s CPU of cold
# compile (_rows_winsorized 10.4 s -> 8.7 s; the former kernels compiled in 3.7 s).
@njit(cache=True, nogil=True, error_model="numpy")
def _wins_first_pass(blk, nb, cnt, shift, P1, P2, plow, phigh, st, L, LI):
    """The first Winsorized iteration of the block's pixels, SIMD over them: ``st[k]``
    = 1 when pixel k has all N values and that iteration rejects nothing (the pixel
    is done: its range is the whole column), else the per-pixel code runs (st 2).
    The operations of the per-pixel code (see _rows_sorted), its scans replaced by
    counts; a set that has not settled after ``_WSTEPS`` steps goes to the per-pixel
    code. Most pixels stop after this iteration, so the per-pixel code (branchy,
    latency-bound) runs for the 6-25 % that reject something or do not settle.

    Every lane loop writes one array, and no select feeds a read-modify-write (those
    compiled to scalar code: the former version's step loop was scalar, with a
    mispredicted branch on the sign of q1 in front of its divisions); the prefix sums
    at the counts are picked by selects over the few rows the counts reach, not
    gathered. Same states, bit for bit, as the former version. Measured, thread CPU
    of this pass over the blocks of a tile of the real registered frames (copy
    subtracted), former -> this: N=4 48 -> 34 ns/pixel, N=16 43 -> 27 ns/pixel."""
    m = blk.shape[0]
    inv_m = 1.0 / m
    k2 = 1.134 * 1.134 / (m - 1)
    mu = 0.0
    ninf = -np.inf
    pinf = np.inf
    ia = LI[0]
    ib = LI[1]
    na = LI[2]
    nz = LI[3]
    pa1 = L[0]
    pa2 = L[1]
    pb1 = L[2]
    pb2 = L[3]
    c0 = L[4]
    c1 = L[5]
    root = L[6]
    okc = L[7]
    sf = L[8]
    quiet = L[9]
    tmp = L[10]
    for k in range(nb):
        s1 = P1[m, k] - P1[0, k]
        s2 = P2[m, k] - P2[0, k]
        var = (s2 - s1 * s1 / m) / (m - 1)
        root[k] = math.sqrt(var) if var > 0.0 else 0.0      # sd
    for k in range(nb):
        sf[k] = 0.0 if (cnt[k] == m) & (root[k] > 0.0) else 2.0     # 0: iterating
    for k in range(nb):
        c0[k] = shift[k] - 1.5 * root[k] if sf[k] == 0.0 else ninf
    for k in range(nb):
        c1[k] = shift[k] + 1.5 * root[k] if sf[k] == 0.0 else pinf
    top = _count_lo(blk, nb, m, c0, ia)
    bot = _count_hi(blk, nb, m, c1, ib)
    for _step in range(_WSTEPS):
        busy = 0
        for k in range(nb):
            busy += sf[k] == 0.0
        if busy == 0:
            break
        _pick_lo(P1, nb, ia, top, pa1, tmp)
        _pick_lo(P2, nb, ia, top, pa2, tmp)
        _pick_hi(P1, nb, m, ib, bot, pb1, tmp)
        _pick_hi(P2, nb, m, ib, bot, pb2, tmp)
        for k in range(nb):
            a = ia[k]
            b = ib[k]
            nc = a + (m - b)
            dn = (m - b) - a
            u = nc * mu + (pb1[k] - pa1[k])
            q2 = 1.0 - 2.25 * k2 * (nc - dn * dn * inv_m)
            q1 = 3.0 * k2 * dn * (mu - u * inv_m)
            q0 = k2 * (nc * mu * mu + (pb2[k] - pa2[k]) - u * u * inv_m)
            sq = math.sqrt(max(q1 * q1 + 4.0 * q2 * q0, 0.0))
            # the positive root, without cancellation: one division of the operands
            # the former branch chose
            pos = q1 >= 0.0
            num = q1 + sq if pos else 2.0 * q0
            den = 2.0 * q2 if pos else sq - q1
            r = num / den
            good = (q2 > 0.0) & (q0 > 0.0) & (r > 0.0)
            root[k] = r if good else -1.0
        for k in range(nb):
            a = ia[k]
            b = ib[k]
            nc = a + (m - b)
            dn = (m - b) - a
            u = nc * mu + (pb1[k] - pa1[k])
            q2 = 1.0 - 2.25 * k2 * (nc - dn * dn * inv_m)
            q1 = 3.0 * k2 * dn * (mu - u * inv_m)
            r = root[k]
            # the contraction at the root |(1 - q2) + q1 / (2 r)| <= 0.9, for when
            # the set stays
            okc[k] = 1.0 if abs((1.0 - q2) * r + 0.5 * q1) <= 0.9 * r else 0.0
        for k in range(nb):
            sf[k] += 2.0 * np.float64((sf[k] == 0.0) & (not root[k] > 0.0))
        for k in range(nb):
            c0[k] = shift[k] - 1.5 * root[k] if sf[k] == 0.0 else ninf
        for k in range(nb):
            c1[k] = shift[k] + 1.5 * root[k] if sf[k] == 0.0 else pinf
        top = _count_lo(blk, nb, m, c0, na)
        bot = _count_hi(blk, nb, m, c1, nz)
        b0 = blk[0]
        b1 = blk[m - 1]
        for k in range(nb):
            r = root[k]
            med = shift[k]
            # settled: done if the clip at root - 0.75 % rejects nothing (then
            # neither does any sigma above it)
            below = plow * r * (1.0 - 7.5e-3)
            above = phigh * r * (1.0 - 7.5e-3)
            qt = (not med - b0[k] > below) & (not b1[k] - med > above)
            quiet[k] = 1.0 if qt & (okc[k] == 1.0) else 2.0
        for k in range(nb):
            sf[k] += quiet[k] * np.float64((sf[k] == 0.0) & (na[k] == ia[k]) & (nz[k] == ib[k]))
        # lanes still iterating move to the new set
        for k in range(nb):
            ia[k] += (na[k] - ia[k]) * np.int64(sf[k] == 0.0)
        for k in range(nb):
            ib[k] += (nz[k] - ib[k]) * np.int64(sf[k] == 0.0)
    for k in range(nb):
        st[k] = 1 if sf[k] == 1.0 else 2


# The per-pixel code below is written out in one function, not in helpers: an inlined
# helper taking arrays increfs and decrefs each of them on every call (NRT calls the
# refcount pruning leaves in), which was most of the per-pixel cost. Measured, one
# thread, 3 x 540 x 1920, N = 4, the combine of a pixel rejecting nothing: 0.19 s with
# a helper, 0.02 s written out.
@njit(cache=True, nogil=True, error_model="numpy")
def _rows_sorted(method, buf, A, B, W, plow, phigh, iters, combine, comps, out, nvalid,
                 lowc, highc, finv, frl, frh, cr0, cr1):
    """Rows ``cr0..cr1-1`` with a value-threshold rejection: ``method`` 0 (none), 1
    (sigma), 2 (Winsorized), 4 (percentile), a constant of the calling kernel (its
    other branches fold away).

    Sigma and Winsorized, per iteration: median ``med`` and sample std ``sd`` of the
    kept ``v[lo:hi]`` (prefix sums); Winsorized replaces ``sd`` by Huber's sigma;
    values beyond ``med - plow sd`` / ``med + phigh sd`` are rejected; until nothing
    more is.

    Huber's sigma is the limit of Siril's iteration ``s <- 1.134 std(clip(x, med -+
    1.5 s))`` (until ``s`` moves by <= 0.05 %; the median of the winsorised values is
    med itself, so only sigma moves). For a fixed clipped set (``a - lo`` values
    clipped low, ``hi - b`` high, the rest summed from the prefix sums) the clipped
    values are ``med -+ 1.5 s``, so the fixed point solves a quadratic ``q2 s^2 - q1 s
    - q0 = 0`` with one positive root: solve it, recompute the set at the root, repeat
    until the set stays (a few discrete steps instead of the iteration's linear
    convergence: 6-7 steps on average, 9-23 at the 90th percentile). The tolerance
    stops the iteration short of that limit, by at most 0.45 % when it contracts by
    <= 0.9, so when clipping at the root -+ 0.75 % gives one range, that range is the
    iteration's. Otherwise (a value that close to a threshold: 1-2 % of noise pixels;
    a degenerate quadratic, about 35 % clipped; a zero root; a steeper contraction;
    a set that does not settle) the iteration runs as before: the rejections are the
    iterated ones.

    These rejections are thresholds on the value, so equal values share their fate
    and the frame of a value need not travel through the sort: a pixel that rejected
    something finds its rejected frames (and its kept weights) in the unsorted copy
    ``raw`` (low: ``<= v[lo - 1]``, high: ``>= v[hi]``); one that rejected nothing
    uses the sums of the normalisation pass.
    """
    N, C, R, X = buf.shape
    blk = np.empty((N, _XBLOCK), np.float32)
    raw = np.empty((N, _XBLOCK), np.float32)
    cnt = np.empty(_XBLOCK, np.int64)
    sw = np.empty(_XBLOCK, np.float64)
    sww = np.empty(_XBLOCK, np.float64)
    ssum = np.empty(_XBLOCK, np.float64)
    shift = np.empty(_XBLOCK, np.float64)
    P1 = np.empty((N + 1, _XBLOCK), np.float64)
    P2 = np.empty((N + 1, _XBLOCK), np.float64)
    st = np.zeros(_XBLOCK, np.int8)
    li = np.empty((4, _XBLOCK), np.int64)
    lf = np.empty((11, _XBLOCK), np.float64)
    inf = np.float32(np.inf)
    for cr in range(cr0, cr1):
        c = cr // R
        r = cr % R
        for x0 in range(0, X, _XBLOCK):
            nb = min(_XBLOCK, X - x0)
            _block_values(buf, c, r, x0, nb, A, B, W, blk, raw, cnt, sw, sww, ssum, finv, cr)
            _network_sort_values(blk, nb, comps)
            if method == 1 or method == 2:
                _block_prefix(blk, nb, cnt, shift, P1, P2)
            if method == 2 and iters > 0 and N >= 3:
                _wins_first_pass(blk, nb, cnt, shift, P1, P2, plow, phigh, st, lf, li)
            fast = method == 2 and iters > 0 and N >= 3 and combine == 0
            if fast:
                # the pixels the first pass finished (st 1: all N valid, nothing
                # rejected) in SIMD loops; the per-pixel code below skips them
                nvr = nvalid[c, r, x0:x0 + nb]
                lcr = lowc[c, r, x0:x0 + nb]
                hcr = highc[c, r, x0:x0 + nb]
                outr = out[c, r, x0:x0 + nb]
                for k in range(nb):
                    nvr[k] = cnt[k]
                for k in range(nb):
                    lcr[k] = 0
                for k in range(nb):
                    hcr[k] = 0
                for k in range(nb):
                    d = sww[k]
                    outr[k] = sw[k] / d if d > 0.0 else 0.0
            for k in range(nb):
                if fast and st[k] == 1:
                    continue
                n = cnt[k]
                x = x0 + k
                nvalid[c, r, x] = n
                lo = np.int64(0)
                hi = n
                if method == 4 and n >= 3:
                    h = n // 2
                    med = (np.float64(blk[h, k]) if n % 2 == 1 else
                           0.5 * (np.float64(blk[h - 1, k]) + np.float64(blk[h, k])))
                    below = plow * med
                    above = phigh * med
                    while lo < hi and med - blk[lo, k] > below:
                        lo += 1
                    while hi > lo and blk[hi - 1, k] - med > above:
                        hi -= 1
                if (method == 1 or method == 2) and n >= 3 and st[k] != 1:
                    sh = shift[k]
                    for _it in range(iters):
                        m = hi - lo
                        if m < 3:
                            break
                        h = lo + m // 2
                        med = (np.float64(blk[h, k]) if m % 2 == 1 else
                               0.5 * (np.float64(blk[h - 1, k]) + np.float64(blk[h, k])))
                        s1 = P1[hi, k] - P1[lo, k]
                        s2 = P2[hi, k] - P2[lo, k]
                        var = (s2 - s1 * s1 / m) / (m - 1)
                        sd = math.sqrt(var) if var > 0.0 else 0.0
                        if not sd > 0.0:
                            break
                        nl = lo
                        nh = hi
                        clipped = False
                        if method == 2:
                            inv_m = 1.0 / m
                            k2 = 1.134 * 1.134 / (m - 1)
                            mu = med - sh
                            # the clipped set at sd: v[a:b] not clipped
                            c0 = med - 1.5 * sd
                            c1 = med + 1.5 * sd
                            a = lo
                            while a < hi and blk[a, k] < c0:
                                a += 1
                            b = hi
                            while b > a and blk[b - 1, k] > c1:
                                b -= 1
                            root = 0.0
                            for _step in range(m + 2):
                                nc = (a - lo) + (hi - b)
                                dn = (hi - b) - (a - lo)
                                u = nc * mu + (P1[b, k] - P1[a, k])
                                q2 = 1.0 - 2.25 * k2 * (nc - dn * dn * inv_m)
                                q1 = 3.0 * k2 * dn * (mu - u * inv_m)
                                q0 = k2 * (nc * mu * mu + (P2[b, k] - P2[a, k]) - u * u * inv_m)
                                if not (q2 > 0.0 and q0 > 0.0):
                                    break
                                sq = math.sqrt(q1 * q1 + 4.0 * q2 * q0)
                                # the positive root, without cancellation
                                root = (q1 + sq) / (2.0 * q2) if q1 >= 0.0 else 2.0 * q0 / (sq - q1)
                                if not root > 0.0:
                                    root = 0.0
                                    break
                                c0 = med - 1.5 * root
                                c1 = med + 1.5 * root
                                na = lo
                                while na < hi and blk[na, k] < c0:
                                    na += 1
                                nz = hi
                                while nz > na and blk[nz - 1, k] > c1:
                                    nz -= 1
                                if na == a and nz == b:
                                    # contraction of s -> sqrt((1 - q2) s^2 + q1 s + q0)
                                    if abs((1.0 - q2) + 0.5 * q1 / root) > 0.9:
                                        root = 0.0
                                    break
                                a = na
                                b = nz
                                root = 0.0          # not settled (yet)
                            if root > 0.0:
                                # the clip at root -+ 0.75 %: one range, or iterate
                                below = plow * root * (1.0 - 7.5e-3)
                                above = phigh * root * (1.0 - 7.5e-3)
                                while nl < nh and med - blk[nl, k] > below:
                                    nl += 1
                                while nh > nl and blk[nh - 1, k] - med > above:
                                    nh -= 1
                                below = plow * root * (1.0 + 7.5e-3)
                                above = phigh * root * (1.0 + 7.5e-3)
                                na = lo
                                while na < hi and med - blk[na, k] > below:
                                    na += 1
                                nz = hi
                                while nz > na and blk[nz - 1, k] - med > above:
                                    nz -= 1
                                if na == nl and nz == nh:
                                    clipped = True
                                else:
                                    nl = lo
                                    nh = hi
                            if not clipped:
                                # Siril's iteration, as before
                                for _k in range(100):
                                    s0 = sd
                                    c0 = med - 1.5 * s0
                                    c1 = med + 1.5 * s0
                                    a = lo
                                    while a < hi and blk[a, k] < c0:
                                        a += 1
                                    b = hi
                                    while b > a and blk[b - 1, k] > c1:
                                        b -= 1
                                    d0 = c0 - sh
                                    d1 = c1 - sh
                                    s = (a - lo) * d0 + (P1[b, k] - P1[a, k]) + (hi - b) * d1
                                    ss = ((a - lo) * d0 * d0 + (P2[b, k] - P2[a, k])
                                          + (hi - b) * d1 * d1)
                                    var = (ss - s * s * inv_m) * k2
                                    sd = math.sqrt(var) if var > 0.0 else 0.0
                                    if abs(sd - s0) <= 5e-4 * s0:
                                        break
                                if not sd > 0.0:
                                    break
                        if not clipped:
                            below = plow * sd
                            above = phigh * sd
                            while nl < nh and med - blk[nl, k] > below:
                                nl += 1
                            while nh > nl and blk[nh - 1, k] - med > above:
                                nh -= 1
                        if nl == lo and nh == hi:
                            break
                        lo = nl
                        hi = nh
                # combine; count the rejected values per frame
                if n == 0:
                    out[c, r, x] = 0.0
                    lowc[c, r, x] = 0
                    highc[c, r, x] = 0
                    continue
                lowc[c, r, x] = lo
                highc[c, r, x] = n - hi
                if lo == 0 and hi == n:
                    if combine == 2:
                        res = ssum[k] / n * n
                    else:
                        res = sww[k]
                        res = sw[k] / res if res > 0.0 else 0.0
                else:
                    tl = blk[lo - 1, k] if lo > 0 else -inf
                    th = blk[hi, k] if hi < n else inf
                    s = 0.0
                    swt = 0.0
                    sp = 0.0
                    for i in range(N):
                        val = raw[i, k]
                        if val <= tl:
                            frl[cr, i] += 1
                        elif val < inf:
                            if val >= th:
                                frh[cr, i] += 1
                            else:
                                w = W[i, c]
                                s += w * val
                                swt += w
                                sp += val
                    if combine == 2:
                        # all rejected (percentile on saturation): 0 as for average,
                        # not the ZeroDivisionError the former kernel raised
                        res = sp / (hi - lo) * n if hi > lo else 0.0
                    else:
                        res = s / swt if swt > 0.0 else 0.0
                if combine == 1:
                    m = hi - lo
                    h = lo + m // 2
                    res = (np.float64(blk[h, k]) if m % 2 == 1 else
                           0.5 * (np.float64(blk[h - 1, k]) + np.float64(blk[h, k])))
                out[c, r, x] = res


@njit(cache=True, nogil=True, aot=_ROW_SIG)
def _rows_none(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
               out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    """No rejection, median combine (needs the sorted values)."""
    _rows_sorted(np.int64(0), buf, A, B, W, plow, phigh, iters, combine, comps, out,
                 nvalid, lowc, highc, finv, frl, frh, cr0, cr1)


@njit(cache=True, nogil=True, aot=_ROW_SIG)
def _rows_sigma(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    _rows_sorted(np.int64(1), buf, A, B, W, plow, phigh, iters, combine, comps, out,
                 nvalid, lowc, highc, finv, frl, frh, cr0, cr1)


@njit(cache=True, nogil=True, aot=_ROW_SIG)
def _rows_winsorized(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    _rows_sorted(np.int64(2), buf, A, B, W, plow, phigh, iters, combine, comps, out,
                 nvalid, lowc, highc, finv, frl, frh, cr0, cr1)


@njit(cache=True, nogil=True, aot=_ROW_SIG)
def _rows_percentile(buf, A, B, W, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh, cr0, cr1):
    _rows_sorted(np.int64(4), buf, A, B, W, plow, phigh, iters, combine, comps, out,
                 nvalid, lowc, highc, finv, frl, frh, cr0, cr1)


@njit(cache=True, nogil=True, aot=_ROW_SIG)
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
                row = buf[i, c, r, x0:x0 + nb]     # see _block_values: no gathers
                for k in range(nb):
                    val = row[k] * a + b
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


@njit(cache=True, nogil=True, aot=_ROW_SIG)
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


@njit(cache=True, nogil=True, aot=_ROW_SIG)
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


@njit(cache=True, nogil=True, aot=_ROW_SIG)
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


# --- exact medians for the statistics pass -------------------------------------------
# np.median partitions a copy (introselect): 1 ms per 123k samples, 12 of them per
# colour frame were most of the statistics pass. A two-level radix select on the
# float's bits (histograms of the top and the bottom 16 bits of an order-preserving
# key) finds the same order statistics in two passes. Same values as np.median bit
# for bit (the even case is np.mean of the two middle values, float32).

@njit(cache=True, nogil=True, inline="always")
def _key(v):
    u = np.uint32(v)
    return ~u if (u >> np.uint32(31)) else u ^ np.uint32(0x80000000)


@njit(cache=True, nogil=True, inline="always")
def _unkey(k):
    return k ^ np.uint32(0x80000000) if (k >> np.uint32(31)) else ~k


@njit(cache=True, nogil=True, aot="f4(f4[::1], f4, b1)")
def select_median(x, center, absdev):
    """np.median of ``x`` (finite float32, not empty), or with ``absdev`` of
    ``|x - center|`` (float32 arithmetic, as ``np.abs(x - center)``). No copy of
    ``x``: the keys are recomputed in each pass (np.median copies and partitions;
    this holds one 256 KiB histogram)."""
    n = x.size
    xb = x.view(np.uint32)
    hist = np.zeros(65536, np.int32)
    one = np.empty(1, np.float32)
    ob = one.view(np.uint32)
    for i in range(n):
        if absdev:
            one[0] = abs(x[i] - center)
            u = ob[0]
        else:
            u = xb[i]
        hist[_key(u) >> np.uint32(16)] += 1
    h = n // 2
    k = h - 1 if n % 2 == 0 else h
    # level 1: the bin of the k-th key
    cum = 0
    b1 = 0
    while cum + hist[b1] <= k:
        cum += hist[b1]
        b1 += 1
    k1 = k - cum
    n1 = hist[b1]
    hist[:] = 0
    for i in range(n):
        if absdev:
            one[0] = abs(x[i] - center)
            u = ob[0]
        else:
            u = xb[i]
        v = _key(u)
        if (v >> np.uint32(16)) == b1:
            hist[v & np.uint32(0xFFFF)] += 1
    cum = 0
    b2 = 0
    while cum + hist[b2] <= k1:
        cum += hist[b2]
        b2 += 1
    key_a = (np.uint32(b1) << np.uint32(16)) | np.uint32(b2)
    out = np.empty(2, np.uint32)
    out[0] = _unkey(key_a)
    if n % 2 == 1:
        return out.view(np.float32)[0]
    # the next order statistic: equal to a, next in the bin, or the least key above
    if cum + hist[b2] > k1 + 1:
        out[1] = out[0]
    else:
        nxt = b2 + 1
        while nxt < 65536 and hist[nxt] == 0:
            nxt += 1
        if nxt < 65536 and k1 + 1 < n1:
            out[1] = _unkey((np.uint32(b1) << np.uint32(16)) | np.uint32(nxt))
        else:
            best = np.uint32(0xFFFFFFFF)
            for i in range(n):
                if absdev:
                    one[0] = abs(x[i] - center)
                    u = ob[0]
                else:
                    u = xb[i]
                v = _key(u)
                if v > key_a and v < best:
                    best = v
            out[1] = _unkey(best)
    f = out.view(np.float32)
    return np.float32(np.float32(f[0] + f[1]) / np.float32(2.0))
