"""Second-order total generalised variation (TGV) denoising, primal-dual solver.

TGV (Bredies, Kunisch & Pock, "Total generalized variation", SIAM J. Imaging Sci. 3,
2010) regularises an image ``u`` by its best split into a piecewise-affine part::

    min_{u, w}  1/2 ||u - f||^2 + alpha1 ||grad u - w||_1 + alpha0 ||E w||_1

where ``w`` is a vector field (the local slope) and ``E w`` its symmetrised gradient.
Unlike plain total variation (ROF, scikit-image's ``denoise_tv_chambolle``), a
smooth ramp costs only ``alpha0 * |curvature|``, so gradients and nebula flanks stay
smooth instead of turning into flat terraces ("staircasing"). The problem is solved
with the first-order primal-dual algorithm of Chambolle & Pock (J. Math. Imaging
Vis. 40, 2011), as in Bredies' "Recovering piecewise smooth multichannel images by
minimization of convex functionals with total generalized variation penalty" (2014):
forward differences with Neumann borders, ``||K||^2 <= 12``, ``tau = sigma =
1/sqrt(12)``.

Units: the image is divided by its noise sigma (estimated from the data) before
solving, so ``strength`` (= alpha1) is in units of the noise and the same value
suits a faint and a bright stack. ``edge_protection`` lowers alpha1 where the
(slightly smoothed) image changes by more than that many noise sigmas per pixel:
star cores and sharp nebula edges are left nearly untouched.

Speed: numba ``parallel=True``, one fused sweep per iteration (:func:`_iterate`),
started from coarser levels (:func:`tgv_plane`); the 6000x4000 colour figure is in
benchmarks/RESULTS.md ("Post-processing: noise reduction").
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import numba
from numba import njit, prange

from .errors import BadInputError
from .progress import report

__all__ = ["tgv_denoise", "tgv_plane", "edge_weights"]

_L2 = 12.0  # bound of ||K||^2 for K(u, w) = (grad u - w, E w), forward differences
_STEP_RATIO = 4.0  # sigma / tau (see tgv_plane)


# The per-pixel helpers are plain njit functions (LLVM inlines them): with numba 0.68's
# inline="always" the last-column call below, which passes one variable for
# several arguments, computed a wrong q22 (caught by the numpy reference test).
@njit(cache=True, fastmath=True)
def _dual_px(j, ux, uy, ax, ay, bx, by, w1b, w2b, p1, p2, q11, q22, q12, a1, alpha0,
             sigma):  # pragma: no cover - numba
    """One pixel of the dual update, given the forward differences."""
    r1 = p1[j] + sigma * (ux - w1b[j])
    r2 = p2[j] + sigma * (uy - w2b[j])
    lim = a1[j]
    # project onto |p| <= alpha1(x); branch-free so the row loop vectorises
    sc = min(np.float32(1.0), lim / math.sqrt(r1 * r1 + r2 * r2 + np.float32(1e-30)))
    r1 *= sc
    r2 *= sc
    p1[j] = r1
    p2[j] = r2
    s11 = q11[j] + sigma * ax
    s22 = q22[j] + sigma * by
    s12 = q12[j] + sigma * np.float32(0.5) * (ay + bx)
    # Frobenius norm of the symmetric q <= alpha0
    sc = min(np.float32(1.0), alpha0 / math.sqrt(s11 * s11 + s22 * s22
                                                  + np.float32(2.0) * s12 * s12 + np.float32(1e-30)))
    s11 *= sc
    s22 *= sc
    s12 *= sc
    q11[j] = s11
    q22[j] = s22
    q12[j] = s12


@njit(cache=True, fastmath=True)
def _dual_row(i, h, ub, w1b, w2b, p1, p2, q11, q22, q12, a1, alpha0,
              sigma):  # pragma: no cover - numba
    """p <- proj(p + sigma (grad ub - wb)), q <- proj(q + sigma E wb) on row ``i``.
    Forward differences; the last row/column has zero differences (Neumann): the
    next row of the last row is the row itself."""
    nx = i + 1 if i < h - 1 else i
    u0, u1 = ub[i], ub[nx]
    a0r, a1r = w1b[i], w1b[nx]
    b0r, b1r = w2b[i], w2b[nx]
    P1, P2, Q11, Q22, Q12, A1 = p1[i], p2[i], q11[i], q22[i], q12[i], a1[i]
    w = u0.shape[0]
    for j in range(w - 1):
        _dual_px(j, u0[j + 1] - u0[j], u1[j] - u0[j], a0r[j + 1] - a0r[j], a1r[j] - a0r[j],
                 b0r[j + 1] - b0r[j], b1r[j] - b0r[j], a0r, b0r, P1, P2, Q11, Q22, Q12, A1,
                 alpha0, sigma)
    jl = w - 1
    z = np.float32(0.0)
    _dual_px(jl, z, u1[jl] - u0[jl], z, a1r[jl] - a0r[jl], z, b1r[jl] - b0r[jl], a0r, b0r,
             P1, P2, Q11, Q22, Q12, A1, alpha0, sigma)


@njit(cache=True, fastmath=True)
def _primal_row(i, h, f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12,
                tau):  # pragma: no cover - numba
    """u <- (u + tau (div p + f)) / (1 + tau), w <- w + tau (p + div2 q) on row ``i``,
    and the extrapolations ub = 2 u_new - u_old, wb = 2 w_new - w_old. Backward
    differences, the negative adjoints of the forward ones: the value before the
    first row/column and the value at the last one count as 0."""
    pv = i - 1 if i > 0 else 0
    cy = np.float32(1.0) if i < h - 1 else np.float32(0.0)
    py = np.float32(1.0) if i > 0 else np.float32(0.0)
    P1, P2, Q11, Q22, Q12 = p1[i], p2[i], q11[i], q22[i], q12[i]
    P2p, Q22p, Q12p = p2[pv], q22[pv], q12[pv]
    F, U, W1, W2, UB, W1B, W2B = f[i], u[i], w1[i], w2[i], ub[i], w1b[i], w2b[i]
    inv = np.float32(1.0) / (np.float32(1.0) + tau)
    w = U.shape[0]
    if w == 1:
        _primal_px(0, np.float32(0.0), np.float32(0.0), np.float32(0.0), cy, py, F, U, W1, W2,
                   UB, W1B, W2B, P1, P2, Q11, Q22, Q12, P2p, Q22p, Q12p, tau, inv)
        return
    _primal_px(0, P1[0], Q11[0], Q12[0], cy, py, F, U, W1, W2, UB, W1B, W2B, P1, P2, Q11,
               Q22, Q12, P2p, Q22p, Q12p, tau, inv)
    for j in range(1, w - 1):
        _primal_px(j, P1[j] - P1[j - 1], Q11[j] - Q11[j - 1], Q12[j] - Q12[j - 1], cy, py, F,
                   U, W1, W2, UB, W1B, W2B, P1, P2, Q11, Q22, Q12, P2p, Q22p, Q12p, tau, inv)
    jl = w - 1
    _primal_px(jl, -P1[jl - 1], -Q11[jl - 1], -Q12[jl - 1], cy, py, F, U, W1, W2, UB, W1B, W2B,
               P1, P2, Q11, Q22, Q12, P2p, Q22p, Q12p, tau, inv)


@njit(cache=True, fastmath=True)
def _primal_px(j, dxp, dxq11, dxq12, cy, py, F, U, W1, W2, UB, W1B, W2B, P1, P2, Q11, Q22, Q12,
               P2p, Q22p, Q12p, tau, inv):  # pragma: no cover - numba
    """One pixel of the primal update, given the backward x-differences."""
    dyp = cy * P2[j] - py * P2p[j]
    dyq22 = cy * Q22[j] - py * Q22p[j]
    dyq12 = cy * Q12[j] - py * Q12p[j]
    uo = U[j]
    un = (uo + tau * (dxp + dyp + F[j])) * inv
    U[j] = un
    UB[j] = un + un - uo
    a = W1[j]
    an = a + tau * (P1[j] + dxq11 + dyq12)
    W1[j] = an
    W1B[j] = an + an - a
    b = W2[j]
    bn = b + tau * (P2[j] + dyq22 + dxq12)
    W2[j] = bn
    W2B[j] = bn + bn - b


@njit(parallel=True, cache=True, fastmath=True)
def _iterate(f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12, a1, alpha0, sigma, tau,
             nchunks):  # pragma: no cover - numba
    """One primal-dual iteration in a single sweep over the rows.

    Row ``i``'s dual update needs the extrapolations of rows i, i+1 (old); row
    ``i``'s primal update needs the duals of rows i-1, i (new) and rewrites the
    extrapolations of row i. So within a band of rows, dual(i) then primal(i-1) is
    exact; a band's first row waits for the band above (a second, short pass).
    p and q are then still in cache when the primal update reads them, so each
    array crosses the memory bus once per iteration (~96 B/px) instead of twice for
    p and q. Measured: 11.3 ns of CPU per pixel and iteration (1000x1000, one
    thread, machine shared), 15.6 before the row loops were made branch-free.
    """
    h = f.shape[0]
    for c in prange(nchunks):
        r0 = c * h // nchunks
        r1 = (c + 1) * h // nchunks
        for i in range(r0, r1):
            _dual_row(i, h, ub, w1b, w2b, p1, p2, q11, q22, q12, a1, alpha0, sigma)
            if i - 1 > r0:
                _primal_row(i - 1, h, f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12, tau)
        if r1 - 1 > r0:  # the band's last row needs nothing from the band below
            _primal_row(r1 - 1, h, f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12, tau)
    for c in prange(nchunks):
        r0 = c * h // nchunks
        r1 = (c + 1) * h // nchunks
        if r1 > r0:
            _primal_row(r0, h, f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12, tau)


@njit(parallel=True, cache=True, fastmath=True)
def _edge_map(s, alpha1, k, out):  # pragma: no cover - numba
    """alpha1 / (1 + (|grad s| / k)^2), central differences of the smoothed plane."""
    h, w = s.shape
    ik2 = np.float32(1.0) / (k * k) if k > 0 else np.float32(0.0)
    for i in prange(h):
        i0 = max(i - 1, 0)
        i1 = min(i + 1, h - 1)
        for j in range(w):
            j0 = max(j - 1, 0)
            j1 = min(j + 1, w - 1)
            gx = (s[i, j1] - s[i, j0]) / np.float32(j1 - j0) if j1 > j0 else np.float32(0.0)
            gy = (s[i1, j] - s[i0, j]) / np.float32(i1 - i0) if i1 > i0 else np.float32(0.0)
            out[i, j] = alpha1 / (np.float32(1.0) + (gx * gx + gy * gy) * ik2)


def edge_weights(plane: np.ndarray, alpha1: float, edge_protection: float) -> np.ndarray:
    """Per-pixel alpha1 (``(H, W)`` float32) lowered at edges.

    ``plane`` is in noise units; it is smoothed once with the B3 spline (the noise
    of its gradient falls to ~0.3 sigma per px) and alpha1 is divided by ``1 +
    (|grad| / edge_protection)^2``: halved where the smoothed image changes by
    ``edge_protection`` sigma per px. 0 turns the protection off (uniform alpha1).
    """
    out = np.empty(plane.shape, np.float32)
    if edge_protection <= 0:
        out.fill(np.float32(alpha1))
        return out
    from .wavelets import b3_smooth

    _edge_map(b3_smooth(plane, 1), np.float32(alpha1), np.float32(edge_protection), out)
    return out


def tgv_plane(f: np.ndarray, *, alpha1: "float | np.ndarray", alpha0: float, iterations: int,
              multiscale: bool = True, progress=None, cancel=None, label: str = "") -> np.ndarray:
    """TGV-L2 denoising of one 2-D plane in noise units (``1/2 ||u - f||^2``).

    Parameters
    ----------
    f : ndarray, shape (H, W), float32
        The noisy plane divided by its noise sigma.
    alpha1 : float or ndarray (H, W)
        Weight of ``||grad u - w||_1`` (per pixel if an array).
    alpha0 : float
        Weight of ``||E w||_1``.
    iterations : int
        Primal-dual iterations at full resolution.
    multiscale : bool, default True
        Start from the solution of the same problem on the 2x2-binned plane (itself
        started the same way, down to ~64 px), the variables rescaled to the finer
        grid. The primal-dual iteration removes fine-scale noise in a few steps but
        needs hundreds for the broad blotches of low-frequency noise; the coarse
        levels remove those first. Costs ~1.33x the full-resolution iterations; the
        fixed point is the same (only the start changes).

    Returns
    -------
    ndarray, float32, shape (H, W)
    """
    f = np.ascontiguousarray(f, np.float32)
    h, w = f.shape
    a1 = alpha1 if isinstance(alpha1, np.ndarray) else np.full((h, w), np.float32(alpha1))
    a1 = np.ascontiguousarray(a1, np.float32)
    state = _solve(f, a1, float(alpha0), int(iterations), multiscale, progress, cancel, label)
    return state[0]


_MIN_COARSE = 64  # no coarser level below this many px on the short side


def _bin2(a: np.ndarray) -> np.ndarray:
    """2x2 means (an odd last row/column is averaged with itself)."""
    h, w = a.shape
    if h % 2:
        a = np.concatenate([a, a[-1:]], axis=0)
    if w % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    return (np.float32(0.25) * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2]
                                + a[1::2, 1::2])).astype(np.float32)


def _up2(a: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Nearest-neighbour 2x upsampling to ``shape``, times ``scale``."""
    out = np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[:shape[0], :shape[1]]
    return np.ascontiguousarray(out * np.float32(scale), np.float32)


def _solve(f, a1, alpha0, iterations, multiscale, progress, cancel, label):
    """(u, w1, w2, p1, p2, q11, q22, q12) after ``iterations`` primal-dual steps.

    On a grid twice as coarse (pixel 2), the same continuous functional divided by
    the pixel area reads ``1/2 (u - f)^2 + alpha1/2 |D u - v| + alpha0/4 |D v|``
    with ``v = 2 w`` the slope per coarse pixel (D: plain differences): so the coarse
    problem has alpha1/2, alpha0/4, and its variables go back as u, w = v/2, p = 2 p_c,
    q = 4 q_c (the dual bounds scale with the alphas).
    """
    h, w = f.shape
    if multiscale and min(h, w) >= 2 * _MIN_COARSE:
        coarse = _solve(_bin2(f), np.float32(0.5) * _bin2(a1), alpha0 / 4.0, iterations,
                        True, None, cancel, label)
        shape = (h, w)
        u = _up2(coarse[0], shape, 1.0)
        w1, w2 = _up2(coarse[1], shape, 0.5), _up2(coarse[2], shape, 0.5)
        p1, p2 = _up2(coarse[3], shape, 2.0), _up2(coarse[4], shape, 2.0)
        q11, q22, q12 = (_up2(c, shape, 4.0) for c in coarse[5:8])
        del coarse
    else:
        u = f.copy()
        w1, w2, p1, p2, q11, q22, q12 = (np.zeros((h, w), np.float32) for _ in range(7))
    ub, w1b, w2b = u.copy(), w1.copy(), w2.copy()
    # tau * sigma * ||K||^2 = 1 with dual steps 4x the primal ones: the duals reach
    # their bounds (alpha ~ 1 in noise units) sooner. Measured on simulated stacks
    # (strength 1, edge protection 1.5, single scale): after 50 iterations the RMS
    # distance to the converged answer is 0.07 sigma with this ratio, 0.08 with 2,
    # 0.10 with 1 (plain tau = sigma), 0.09 with 8.
    tau = np.float32(1.0 / math.sqrt(_L2) / _STEP_RATIO)
    sigma = np.float32(_STEP_RATIO / math.sqrt(_L2))
    a0 = np.float32(alpha0)
    every = max(1, iterations // 50)
    # bands of >= 16 rows, a few per thread (load balance on a shared machine)
    nchunks = int(max(1, min(h // 16, 4 * numba.get_num_threads())))
    for it in range(iterations):
        if it % every == 0:
            report(progress, it, iterations, label, cancel)
        _iterate(f, u, w1, w2, ub, w1b, w2b, p1, p2, q11, q22, q12, a1, a0, sigma, tau, nchunks)
    return u, w1, w2, p1, p2, q11, q22, q12


def _plane_noise(plane: np.ndarray) -> float:
    from .wavelets import image_noise

    return image_noise(plane)


def tgv_denoise(data: np.ndarray, *, strength: float = 1.0, edge_protection: float = 1.5,
                smoothness: float = 2.0, iterations: int = 50,
                channels: str = "all", noise: Optional[float] = None,
                progress=None, cancel=None) -> np.ndarray:
    """TGV denoising of a linear image.

    Parameters
    ----------
    data : ndarray, shape (H, W) or (3, H, W), float
        Linear image.
    strength : float, default 1.0
        alpha1 in units of the noise sigma: the regularisation weight (the inverse of
        the data-fidelity lambda, ``lambda = 1 / (strength * sigma)``). Higher
        smooths more.
    edge_protection : float, default 1.5
        Gradient (noise sigmas per px of the B3-smoothed image) at which the
        smoothing is halved; lower protects more edges and star cores; 0 = off.
    smoothness : float, default 2.0
        alpha0 / alpha1. High values make the slope field ``w`` expensive to bend,
        towards plain TV's flat patches; low values let ramps follow the data
        (Bredies et al. use 2).
    iterations : int, default 50
        Primal-dual iterations per plane.
    channels : {"all", "luminance"}, default "all"
        ``"luminance"`` denoises the mean of the channels and rescales each channel
        by the ratio new/old luminance (colour ratios kept; chrominance noise stays);
        ``"all"`` denoises each channel (3x the time).
    noise : float, optional
        Noise sigma in data units; default estimated from the data per plane.

    Returns
    -------
    ndarray, float32, shape of ``data``
    """
    arr = np.asarray(data)
    if channels not in ("luminance", "all"):
        raise BadInputError("channels", f"{channels!r} is not luminance or all")
    if iterations < 1:
        raise BadInputError("iterations", f"{iterations} iterations: need at least 1")
    if arr.ndim == 2 or channels == "all":
        planes = arr[None] if arr.ndim == 2 else arr
        out = np.empty(planes.shape, np.float32)
        for c in range(planes.shape[0]):
            out[c] = _denoise_plane(planes[c], strength, edge_protection, smoothness,
                                    iterations, noise, progress, cancel, c, planes.shape[0])
        report(progress, 1, 1, "done", cancel)
        return out[0] if arr.ndim == 2 else out
    lum = arr.mean(axis=0, dtype=np.float32)
    new = _denoise_plane(lum, strength, edge_protection, smoothness, iterations, noise,
                         progress, cancel, 0, 1)
    out = _rescale_channels(np.asarray(arr, np.float32), lum, new)
    report(progress, 1, 1, "done", cancel)
    return out


def _denoise_plane(plane, strength, edge_protection, smoothness, iterations, noise,
                   progress, cancel, index, count):
    src = np.asarray(plane, np.float32)
    bad = ~np.isfinite(src)
    has_bad = bool(bad.any())
    f = np.where(bad, np.float32(np.nanmedian(src) if (~bad).any() else 0.0), src) if has_bad else src
    sigma = float(noise) if noise is not None else _plane_noise(f)
    if not np.isfinite(sigma) or sigma <= 0:
        return src.copy()   # a noiseless (synthetic) plane: nothing to remove
    scale = np.float32(1.0 / sigma)
    offset = np.float32(np.median(f[::max(1, f.shape[0] // 256), ::max(1, f.shape[1] // 256)]))
    g = (f - offset) * scale   # noise units about the background (keeps float32 exact)
    a1 = edge_weights(g, strength, edge_protection)
    from .progress import SubProgress

    sub = SubProgress(progress, index, index + 1, count,
                      f"TGV {'plane ' + str(index + 1) if count > 1 else ''}".strip())
    u = tgv_plane(g, alpha1=a1, alpha0=smoothness * strength, iterations=iterations,
                  progress=sub, cancel=cancel)
    u *= np.float32(sigma)
    u += offset
    if has_bad:
        u[bad] = src[bad]
    return u


def _rescale_channels(rgb: np.ndarray, lum: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each channel times new/old luminance (colour ratios kept); where the old
    luminance is too close to 0 for a stable ratio, the change is added instead."""
    eps = np.float32(1e-6)
    safe = np.abs(lum) > eps
    ratio = np.where(safe, new / np.where(safe, lum, 1), 1).astype(np.float32)
    out = rgb * ratio[None]
    add = ~safe
    if add.any():
        out[:, add] = rgb[:, add] + (new - lum)[add]
    return out.astype(np.float32, copy=False)
