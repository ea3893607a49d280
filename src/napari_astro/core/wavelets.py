"""The a trous starlet (B3-spline) wavelet transform and multiscale noise reduction.

The starlet transform (Starck & Murtagh, "Astronomical Image and Data Analysis",
2006, ch. 2) splits an image into ``n`` detail layers ``w_1 .. w_n`` (scales of
1, 2, 4, ... px) and a smooth residual ``c_n``, with ``image = sum(w_j) + c_n``
exactly. Each smoothing is the separable B3-spline kernel ``[1, 4, 6, 4, 1] / 16``
with ``2**j - 1`` holes between its taps; borders are mirrored.

:func:`mlt_denoise` is PixInsight's MultiscaleLinearTransform noise reduction: in
layer ``j`` a coefficient is thresholded at ``k_j * sigma_j``, where ``sigma_j =
sigma * NOISE_FACTORS[j]`` is the noise that white Gaussian noise of standard deviation
``sigma`` leaves in that layer and ``sigma`` is estimated from the data (the MAD of the
first layer, :func:`napari_astro.core.stats.noise_estimate`). Linear in, linear
out: nothing is stretched.

Speed (numba, 2 cores, machine shared with other jobs, load 3-9): one smoothing of a
6000x4000 float32 plane costs 0.13-0.15 s at scales 1 and 4 (0.37 s at 16: the
column pass strides further); ``scipy.ndimage.correlate1d`` with the dilated 1-D
kernel (zeros in the holes), same result to 2e-7, costs 0.44 s, 0.77 s and 3.1 s,
because it multiplies every tap including the holes. Hence the numba kernels. MLT
noise reduction of a whole 6000x4000 colour image: ~10 s of CPU (benchmarks/
RESULTS.md, "Post-processing: noise reduction").
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from numba import njit, prange

from .errors import BadInputError
from .progress import report

__all__ = ["NOISE_FACTORS", "b3_smooth", "starlet_transform", "starlet_reconstruct",
           "layer_noise_factors", "mlt_denoise", "image_noise"]

#: Standard deviation of starlet layer ``j`` (j = 1, 2, ...) of unit white Gaussian
#: noise, 2-D B3 spline (Starck & Murtagh 2006, table 2.1; PixInsight uses the same
#: figures). Beyond layer 7 each further layer halves (the ratio tends to 1/2).
NOISE_FACTORS = (0.8907, 0.2007, 0.0856, 0.0413, 0.0205, 0.0103, 0.0052)

_C0 = np.float32(6.0 / 16.0)
_C1 = np.float32(4.0 / 16.0)
_C2 = np.float32(1.0 / 16.0)


def layer_noise_factors(n_layers: int) -> tuple[float, ...]:
    """Noise factors of layers 1..``n_layers`` (see :data:`NOISE_FACTORS`)."""
    out = list(NOISE_FACTORS[:n_layers])
    while len(out) < n_layers:
        out.append(out[-1] / 2.0)
    return tuple(out)


@njit(cache=True, inline="always")
def _mirror(i, n):  # pragma: no cover - numba
    """Index ``i`` reflected into ``[0, n)`` about the edge pixels (no repeat: -1 -> 1),
    any number of times (a hole wider than the image)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i >= n else i


@njit(parallel=True, cache=True)
def _smooth_rows(src, dst, s):  # pragma: no cover - numba
    """B3 smoothing along axis 1 with holes: taps at 0, +-s, +-2s."""
    h, w = src.shape
    lo = 2 * s
    hi = w - 2 * s
    for y in prange(h):
        row = src[y]
        out = dst[y]
        for x in range(min(lo, w)):
            out[x] = (_C0 * row[x] + _C1 * (row[_mirror(x - s, w)] + row[_mirror(x + s, w)])
                      + _C2 * (row[_mirror(x - 2 * s, w)] + row[_mirror(x + 2 * s, w)]))
        for x in range(lo, hi):
            out[x] = (_C0 * row[x] + _C1 * (row[x - s] + row[x + s])
                      + _C2 * (row[x - 2 * s] + row[x + 2 * s]))
        for x in range(max(hi, lo), w):
            out[x] = (_C0 * row[x] + _C1 * (row[_mirror(x - s, w)] + row[_mirror(x + s, w)])
                      + _C2 * (row[_mirror(x - 2 * s, w)] + row[_mirror(x + 2 * s, w)]))


@njit(parallel=True, cache=True)
def _smooth_cols(src, dst, s):  # pragma: no cover - numba
    """B3 smoothing along axis 0 with holes; whole rows at a time (cache friendly)."""
    h, w = src.shape
    for y in prange(h):
        a = src[_mirror(y - 2 * s, h)]
        b = src[_mirror(y - s, h)]
        c = src[y]
        d = src[_mirror(y + s, h)]
        e = src[_mirror(y + 2 * s, h)]
        out = dst[y]
        for x in range(w):
            out[x] = _C0 * c[x] + _C1 * (b[x] + d[x]) + _C2 * (a[x] + e[x])


def b3_smooth(plane: np.ndarray, scale: int = 1, *, out: Optional[np.ndarray] = None,
              work: Optional[np.ndarray] = None) -> np.ndarray:
    """One a trous B3-spline smoothing of a 2-D float32 plane.

    Parameters
    ----------
    plane : ndarray, shape (H, W), float32
    scale : int, default 1
        Tap spacing ``2**j`` for the smoothing that yields ``c_{j+1}`` from ``c_j``.
    out, work : ndarray, optional
        Preallocated (H, W) float32 result and scratch arrays.

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    plane = np.ascontiguousarray(plane, np.float32)
    if work is None:
        work = np.empty_like(plane)
    if out is None:
        out = np.empty_like(plane)
    _smooth_rows(plane, work, int(scale))
    _smooth_cols(work, out, int(scale))
    return out


def starlet_transform(plane: np.ndarray, n_layers: int) -> list[np.ndarray]:
    """Starlet decomposition: ``[w_1, ..., w_n, c_n]`` (float32, each (H, W)).

    ``sum(result)`` equals ``plane`` to float32 rounding. Layer ``w_j`` holds the
    structures of about ``2**(j-1)`` px.
    """
    if n_layers < 1:
        raise BadInputError("layers", f"{n_layers} layers: need at least 1")
    c = np.ascontiguousarray(plane, np.float32)
    work = np.empty_like(c)
    out = []
    for j in range(n_layers):
        s = b3_smooth(c, 2 ** j, work=work)
        out.append(c - s)
        c = s
    out.append(c)
    return out


def starlet_reconstruct(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`starlet_transform` (the sum of the layers and residual)."""
    out = np.zeros_like(layers[0], dtype=np.float32)
    for layer in layers:
        out += layer
    return out


@njit(parallel=True, cache=True)
def _threshold_accumulate(c, s, acc, thr, amount, iterations, hard, first):  # pragma: no cover
    """acc (+)= shrunk(c - s): the layer, thresholded ``iterations`` times, each time
    moved ``amount`` of the way to its soft/hard thresholded value (``first``: assign,
    so ``acc`` needs no zeroing pass)."""
    h, w = c.shape
    keep = np.float32(1.0) - amount
    for y in prange(h):
        for x in range(w):
            v = c[y, x] - s[y, x]
            for _ in range(iterations):
                a = abs(v)
                if hard == 1:
                    t = v if a > thr else np.float32(0.0)
                elif hard == 2:
                    t = np.float32(0.0) if a <= thr else v - thr * thr / v
                else:
                    t = np.float32(0.0) if a <= thr else (v - thr if v > 0 else v + thr)
                v = keep * v + amount * t
            if first:
                acc[y, x] = v
            else:
                acc[y, x] += v


_MODES = {"soft": 0, "hard": 1, "garrote": 2}


def image_noise(plane: np.ndarray) -> float:
    """Gaussian noise sigma of a 2-D plane estimated from the data (data units).

    The MAD of the first starlet layer scaled to sigma: :func:`core.stats.noise_estimate`,
    the estimator of integration's noise weights (imported, not duplicated), on 3x3
    tiles for large planes."""
    from .stats import noise_estimate
    h, w = plane.shape
    if h * w <= _NOISE_FULL_PX:
        return float(noise_estimate(plane))
    # A full 24 Mpx plane costs 1.4-1.9 s (the median sorts everything); the median of
    # the estimates of 3x3 tiles of 640x640 spread over the frame costs 0.15 s and
    # agreed with it to 0.02% on a simulated 6000x4000 frame (machine shared).
    t = _NOISE_TILE
    ys = np.linspace(0, max(h - t, 0), 3).astype(int)
    xs = np.linspace(0, max(w - t, 0), 3).astype(int)
    sig = [noise_estimate(plane[y:y + t, x:x + t]) for y in ys for x in xs]
    sig = [v for v in sig if np.isfinite(v)]
    return float(np.median(sig)) if sig else float("nan")


_NOISE_FULL_PX = 4_000_000
_NOISE_TILE = 640


def mlt_denoise(data: np.ndarray, *, thresholds: Sequence[float] = (3.0, 2.0, 1.0, 0.5),
                amounts: Sequence[float] = (1.0,), iterations: int = 1, mode: str = "garrote",
                noise: Optional[float] = None, progress=None, cancel=None) -> np.ndarray:
    """Multiscale linear transform noise reduction (PixInsight MLT) of a linear image.

    Parameters
    ----------
    data : ndarray, shape (H, W) or (C, H, W), float
        Linear image (any scale); each channel is processed on its own.
    thresholds : sequence of float, default (3, 2, 1, 0.5)
        Per layer (1 = finest), threshold in units of that layer's noise
        (``k_j`` above). The number of values is the number of layers.
    amounts : sequence of float, default (1.0,)
        Per layer (or one for all), 0..1: how far each coefficient moves towards its
        thresholded value (0 leaves the layer alone, 1 applies the full threshold).
    iterations : int, default 1
        Times the thresholding is repeated on each layer.
    mode : {"garrote", "soft", "hard"}, default "garrote"
        What happens to a coefficient ``v`` above the threshold ``t`` (all three zero
        those below it): soft shrinks it to ``v - t`` (smoothest, but star cores
        lose their top: +5..11% FWHM on simulated stacks), hard keeps it (least
        bias, isolated noise peaks survive as specks), the non-negative garrote
        (Gao 1998) ``v - t**2 / v`` is in between: near-soft for small
        coefficients, near-hard for stars (+2..7% FWHM, and the best PSNR of the
        three with the default thresholds).
    noise : float, optional
        Noise sigma of the image in data units (all channels); default: estimated
        per channel from the data (:func:`image_noise`).
    progress, cancel
        See :mod:`napari_astro.core.progress`.

    Returns
    -------
    ndarray, float32, same shape as ``data``
        Non-finite input pixels stay as they were.
    """
    arr = np.asarray(data)
    n = len(thresholds)
    if n < 1:
        raise BadInputError("thresholds", "give at least one layer's threshold")
    amounts = tuple(amounts)
    if len(amounts) == 1:
        amounts = amounts * n
    if len(amounts) != n:
        raise BadInputError("amounts", f"{len(amounts)} values for {n} layers (give 1 or {n})")
    if mode not in _MODES:
        raise BadInputError("mode", f"{mode!r} is not soft or hard")
    factors = layer_noise_factors(n)
    planes = arr[None] if arr.ndim == 2 else arr
    out = np.empty(planes.shape, np.float32)
    total = planes.shape[0] * (n + 1)
    done = 0
    for ch in range(planes.shape[0]):
        src = np.asarray(planes[ch], np.float32)
        bad = ~np.isfinite(src)
        c = src
        if bad.any():  # NaN would spread through every layer: fill, restore at the end
            c = np.where(bad, np.float32(np.nanmedian(src) if (~bad).any() else 0.0), src)
        c = np.ascontiguousarray(c, np.float32)
        sigma = float(noise) if noise is not None else image_noise(c)
        if not np.isfinite(sigma) or sigma < 0:
            sigma = 0.0
        acc = out[ch]                     # contiguous view: accumulate in place
        work = np.empty_like(c)
        s = np.empty_like(c)
        spare = None if c is not src else np.empty_like(c)
        for j in range(n):
            report(progress, done, total, f"channel {ch + 1}, layer {j + 1}", cancel)
            b3_smooth(c, 2 ** j, out=s, work=work)
            thr = np.float32(thresholds[j] * factors[j] * sigma)
            _threshold_accumulate(c, s, acc, thr, np.float32(amounts[j]), int(iterations),
                                  _MODES[mode], j == 0)
            # c_{j+1} = s; the old c buffer takes the next smoothing (never the input)
            if c is src:
                c, s = s, spare
            else:
                c, s = s, c
            done += 1
        acc += c
        if bad.any():
            acc[bad] = src[bad]
        done += 1
    report(progress, total, total, "done", cancel)
    return out[0] if arr.ndim == 2 else out
