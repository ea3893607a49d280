"""numba kernels of the simulator: a counter-based random stream (splitmix64, PTRS
Poisson), the sensor's exposure of expected electrons to uint16, and the renderers of
the smooth sky (gradient + nebula), Moffat stars and straight trails."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _uniform(state):
    """Next uniform in (0, 1) of a splitmix64 stream; returns (u, new state)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = _mix64(state)
    return ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0), state


@njit
def _poisson(lam, state):
    """Poisson deviate: inversion below 10, Hörmann's PTRS above (as numpy does)."""
    if lam <= 0.0:
        return 0.0, state
    if lam < 10.0:
        u, state = _uniform(state)
        p = math.exp(-lam)
        f = p
        k = 0
        while u > f and k < 200:
            k += 1
            p *= lam / k
            f += p
        return float(k), state
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u, state = _uniform(state)
        u -= 0.5
        v, state = _uniform(state)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return k, state
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return k, state


@njit(inline="always")
def _to_adu(e, inv_gain, bias, noise):
    v = math.floor(e * inv_gain + bias + noise + 0.5)
    if v < 0.0:
        return np.uint16(0)
    if v > 65535.0:
        return np.uint16(65535)
    return np.uint16(v)


@njit(parallel=True, cache=True)
def _expose(out, mode, signal, levels, chan, S, dark, t_dark, bias, rn_adu, inv_gain,
            seed, dead_r, dead_c, dead_v):
    """Turn expected electrons into a noisy uint16 frame (in place in ``out``).

    mode 0: no light (bias/dark); 1: ``levels[chan]`` * S (flat); 2: ``signal * S``.
    One splitmix64 stream per pixel pair keyed by ``seed`` and the position makes the
    result independent of the thread count; one Box-Muller draw gives the read noise
    of both pixels of a pair. Measured on a loaded 2-core machine, 2000x1500 light:
    0.20 s (numpy's Generator.poisson alone takes 0.21 s, single-threaded).
    """
    H, W = out.shape
    for y in prange(H):
        for x0 in range(0, W, 2):
            state = _mix64(seed ^ (np.uint64(y * W + x0) * _GOLD))
            u1, state = _uniform(state)
            u2, state = _uniform(state)
            rad = rn_adu * math.sqrt(-2.0 * math.log(u1))
            ang = 6.283185307179586 * u2
            for j in range(2):
                x = x0 + j
                if x >= W:
                    break
                if mode == 2:
                    lam = signal[y, x] * S[y, x]
                elif mode == 1:
                    lam = levels[chan[y & 1, x & 1]] * S[y, x]
                else:
                    lam = 0.0
                if lam < 0.0:
                    lam = 0.0
                lam += dark[y, x] * t_dark
                e, state = _poisson(lam, state)
                g = rad * (math.cos(ang) if j == 0 else math.sin(ang))
                out[y, x] = _to_adu(e, inv_gain, bias[y, x], g)
    for i in range(dead_r.shape[0]):
        out[dead_r[i], dead_c[i]] = np.uint16(dead_v[i])


@njit(parallel=True, cache=True)
def _render_smooth(out, chan, T, grad, sky_f, cx, cy, qa, qb, qc, bx0, bx1, by0, by1,
                   amps, neb_f):
    """out[y, x] = sky_f * gradient_c(T(x, y)) + neb_f * sum_k amp_kc exp(-q_k / 2).

    ``T`` (3x3) maps this frame's pixel to reference coordinates; the nebula is a sum
    of elliptical Gaussians evaluated analytically at the transformed position (no
    resampling), cut at q = 18 (3 sigma, 1e-4 of the peak) and outside a 4-sigma box.
    Each row visits only the x-span of each component's box (0.35 -> 0.12 s per
    2000x1500 light, against a per-pixel test of every component).
    """
    H, W = out.shape
    K = cx.shape[0]
    for y in prange(H):
        ya = T[1, 1] * y + T[1, 2]
        yb = T[1, 0] * (W - 1) + ya
        ylo = min(ya, yb)
        yhi = max(ya, yb)
        for x in range(W):
            c = chan[y & 1, x & 1]
            xr = T[0, 0] * x + T[0, 1] * y + T[0, 2]
            yr = T[1, 0] * x + T[1, 1] * y + T[1, 2]
            out[y, x] = sky_f * (grad[c, 0] + grad[c, 1] * xr + grad[c, 2] * yr)
        if neb_f == 0.0:
            continue
        for k in range(K):
            if by1[k] < ylo or by0[k] > yhi:
                continue
            # x-span of the box on this row (T is a near-identity similarity)
            xa = (bx0[k] - T[0, 1] * y - T[0, 2]) / T[0, 0]
            xb = (bx1[k] - T[0, 1] * y - T[0, 2]) / T[0, 0]
            if xa > xb:
                xa, xb = xb, xa
            x0 = max(0, int(math.floor(xa)) - 2)
            x1 = min(W - 1, int(math.ceil(xb)) + 2)
            for x in range(x0, x1 + 1):
                xr = T[0, 0] * x + T[0, 1] * y + T[0, 2]
                yr = T[1, 0] * x + T[1, 1] * y + T[1, 2]
                dx = xr - cx[k]
                dy = yr - cy[k]
                q = qa[k] * dx * dx + 2.0 * qb[k] * dx * dy + qc[k] * dy * dy
                if q < 18.0:
                    c = chan[y & 1, x & 1]
                    out[y, x] += neb_f * amps[k, c] * math.exp(-0.5 * q)


@njit(inline="always")
def _moffat(r2, ia2, beta, ibeta):
    """(1 + r^2/alpha^2)^-beta; integer beta by multiplication (3x faster than pow)."""
    t = 1.0 / (1.0 + r2 * ia2)
    if ibeta > 0:
        p = t
        for _ in range(ibeta - 1):
            p *= t
        return p
    return t ** beta


@njit(parallel=True, cache=True)
def _render_stars(out, chan, xs, ys, flux, alpha, beta, rad, nsub):
    """Add Moffat stars (total flux ``flux[i, c]``) to ``out`` at sub-pixel positions.

    Work is split into bands of 16 rows so that each thread owns its pixels (no
    races, deterministic). Pixels within 2 FWHM of a centre are integrated on an
    ``nsub`` x ``nsub`` grid; farther out the profile is smooth enough to point-sample.
    """
    H, W = out.shape
    N = xs.shape[0]
    band = 16
    nb = (H + band - 1) // band
    norm = (beta - 1.0) / (math.pi * alpha * alpha)
    ia2 = 1.0 / (alpha * alpha)
    fwhm = 2.0 * alpha * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    rcore2 = (2.0 * fwhm) ** 2
    ibeta = int(beta) if beta == math.floor(beta) and beta <= 8 else 0
    for b in prange(nb):
        y0 = b * band
        y1 = min(H, y0 + band)
        for i in range(N):
            r = rad[i]
            ylo = max(y0, int(math.floor(ys[i] - r)))
            yhi = min(y1 - 1, int(math.ceil(ys[i] + r)))
            if ylo > yhi:
                continue
            xlo = max(0, int(math.floor(xs[i] - r)))
            xhi = min(W - 1, int(math.ceil(xs[i] + r)))
            for y in range(ylo, yhi + 1):
                dy = y - ys[i]
                for x in range(xlo, xhi + 1):
                    dx = x - xs[i]
                    r2 = dx * dx + dy * dy
                    f = flux[i, chan[y & 1, x & 1]]
                    if f == 0.0:
                        continue
                    if r2 < rcore2:
                        acc = 0.0
                        for sy in range(nsub):
                            ddy = dy + (sy + 0.5) / nsub - 0.5
                            for sx in range(nsub):
                                ddx = dx + (sx + 0.5) / nsub - 0.5
                                acc += _moffat(ddx * ddx + ddy * ddy, ia2, beta, ibeta)
                        p = acc / (nsub * nsub)
                    else:
                        p = _moffat(r2, ia2, beta, ibeta)
                    out[y, x] += f * norm * p


@njit(parallel=True, cache=True)
def _render_line(out, chan, nx, ny, d0, sigma, levels):
    """Add a straight trail: Gaussian cross-section ``sigma`` around n.(x, y) = d0."""
    H, W = out.shape
    lim = 5.0 * sigma
    k = 1.0 / (2.0 * sigma * sigma)
    for y in prange(H):
        for x in range(W):
            d = nx * x + ny * y - d0
            if abs(d) < lim:
                out[y, x] += levels[chan[y & 1, x & 1]] * math.exp(-d * d * k)
