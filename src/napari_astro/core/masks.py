"""Masks: where a post-processing step acts (1) and where it leaves the image alone (0).

Every mask here is ``(H, W)`` float32 in [0, 1] and is applied by the step registry as
``result = original + mask * (processed - original)``.

* :func:`luminance_mask` -- the stretched luminance, blurred and put through levels
  (low/high clip, gamma): high on the nebula and the stars, low on the sky. A linear
  image (median below :data:`LINEAR_MEDIAN`) is stretched first with the auto-STF of
  :mod:`napari_astro.core.stretch`, so the mask looks like what the user sees.
* :func:`invert_mask` -- ``1 - mask`` (the sky: where noise reduction or background
  desaturation should act).
* :func:`star_mask` -- discs around the stars found by
  :func:`napari_astro.core.stars.detect_stars`, each as wide as the star is visible
  above the sky (a Gaussian profile of the measured FWHM and peak falls to a few sky
  sigmas), dilated by a size factor, with a raised-cosine edge.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy import ndimage

from .image import AstroImage

__all__ = ["LINEAR_MEDIAN", "REC709", "mask_luminance", "stretched_luminance", "luminance_mask",
           "invert_mask", "star_mask", "levels", "paint_mask", "PAINT_ADD", "PAINT_ERASE"]

#: Label values of a paint layer (napari Labels): paint 1 to add to the mask (set it
#: to 1), 2 to erase (set it to 0); 0 leaves the mask as it is.
PAINT_ADD = 1
PAINT_ERASE = 2

#: An image whose luminance median is below this is treated as linear (an
#: unstretched stack's sky sits at ~0.001-0.05; a stretched one at ~0.1-0.3).
LINEAR_MEDIAN = 0.1

#: Rec. 709 luminance weights (R, G, B).
REC709 = (0.2126, 0.7152, 0.0722)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@njit(parallel=True, fastmath=True, cache=True)
def _lum_kernel(data, weights, c0, scale, m, stretch, out):  # pragma: no cover - numba
    # weighted channel sum; with ``stretch``: clip((v - c0) * scale, 0, 1) then the MTF
    # (the formula of core.stretch.mtf), all in one pass over the image
    nc, h, w = data.shape
    for i in prange(h):
        for j in range(w):
            v = 0.0
            for c in range(nc):
                v += weights[c] * data[c, i, j]
            if not (v == v):
                v = 0.0
            if stretch:
                x = (v - c0) * scale
                if x <= 0.0:
                    v = 0.0
                elif x >= 1.0:
                    v = 1.0
                else:
                    v = ((m - 1.0) * x) / ((2.0 * m - 1.0) * x - m)
            out[i, j] = v


@njit(parallel=True, fastmath=True, cache=True)
def _levels_kernel(x, low, inv_range, gamma, out):  # pragma: no cover - numba
    h, w = x.shape
    for i in prange(h):
        for j in range(w):
            v = min(max((x[i, j] - low) * inv_range, 0.0), 1.0)
            if gamma != 1.0 and v > 0.0:
                v = v ** gamma
            out[i, j] = v


def _channels(image: AstroImage) -> tuple[np.ndarray, np.ndarray]:
    data = image.data if image.is_color else image.data[None]
    weights = np.array(REC709 if image.is_color else (1.0,), dtype=np.float64)
    return np.ascontiguousarray(data, dtype=np.float32), weights


def mask_luminance(image: AstroImage) -> np.ndarray:
    """``(H, W)`` float32 luminance: Rec. 709 weights for colour, the data for mono;
    NaN (outside a stack's footprint) becomes 0."""
    data, weights = _channels(image)
    out = np.empty(data.shape[1:], dtype=np.float32)
    _lum_kernel(data, weights, 0.0, 1.0, 0.5, False, out)
    return out


def stretched_luminance(image: AstroImage, *, linear_median: float = LINEAR_MEDIAN) -> np.ndarray:
    """The luminance as the user sees it: auto-STF stretched if the image is linear.

    Parameters
    ----------
    image : AstroImage
        Mono or colour, values nominally in [0, 1].
    linear_median : float, default :data:`LINEAR_MEDIAN`
        Below this luminance median the image counts as linear and is stretched
        (shadows clip at median - 2.8 MAD sigma, background to 0.25, as PixInsight's
        STF: :func:`napari_astro.core.stretch.stf_parameters`).

    Returns
    -------
    ndarray, (H, W) float32 in [0, 1]

    Notes
    -----
    One fused numba pass (luminance, clip, MTF): 3000x2000 colour in 0.29 s on 2
    loaded cores (load average 10), where the numpy chain (weighted sum 1.1 s, clip
    0.6 s, ``stretch.mtf`` 1.7 s) took 3.4 s in the same session.
    """
    from .stretch import stf_parameters

    data, weights = _channels(image)
    h, w = data.shape[1:]
    # statistics on a regular subsample of ~250k pixels (stf_parameters samples too)
    step = max(1, int(math.sqrt(h * w / 250_000)))
    sub = np.empty(data[:, ::step, ::step].shape[1:], dtype=np.float32)
    _lum_kernel(np.ascontiguousarray(data[:, ::step, ::step]), weights, 0.0, 1.0, 0.5, False, sub)
    if float(np.median(sub)) < linear_median:
        c0, m, c1 = stf_parameters(sub)
    else:  # already stretched: mtf(0.5, x) = x, only the clip to [0, 1]
        c0, m, c1 = 0.0, 0.5, 1.0
    out = np.empty((h, w), dtype=np.float32)
    _lum_kernel(data, weights, float(c0), 1.0 / max(c1 - c0, 1e-12), float(m), True, out)
    return out


def levels(x: np.ndarray, *, low: float = 0.0, high: float = 1.0, gamma: float = 1.0,
           out: np.ndarray | None = None) -> np.ndarray:
    """``clip((x - low) / (high - low), 0, 1) ** gamma`` as float32.

    ``gamma < 1`` widens the mask (lifts the midtones), ``gamma > 1`` narrows it.
    ``out`` may be ``x`` itself (in place).
    """
    if not high > low:
        raise ValueError(f"levels need high > low (got low={low}, high={high})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if out is None:
        out = np.empty_like(x)
    _levels_kernel(x, float(low), 1.0 / float(high - low), float(gamma), out)
    return out


def luminance_mask(image: AstroImage, *, blur: float = 2.0, low: float | None = None,
                   high: float | None = None, gamma: float = 1.0) -> np.ndarray:
    """A luminance mask: stretched luminance, Gaussian blur, levels.

    Parameters
    ----------
    image : AstroImage
        Mono or colour; linear or already stretched (see :func:`stretched_luminance`).
    blur : float, default 2.0
        Gaussian sigma in pixels (0 = none): keeps the mask from following the noise.
    low : float, optional
        Stretched level mapped to 0. Default (None): the blurred stretched sky median,
        so the background is ~0 and the mask rises with the signal above it.
    high : float, optional
        Stretched level mapped to 1. Default (None): the 99.5th percentile of the
        blurred stretched luminance, so the brightest parts of the object reach ~1
        (a faint nebula at 0.5 after the stretch would otherwise give a mask of
        ~0.35, too weak for the seed's saturation boost to show through it).
    gamma : float, default 1.0
        Exponent applied after the clip (< 1 widens the mask).

    Returns
    -------
    ndarray, (H, W) float32 in [0, 1]
    """
    lum = stretched_luminance(image)
    if blur > 0:
        lum = ndimage.gaussian_filter(lum, float(blur), mode="nearest", truncate=3.0)
    if low is None or high is None:
        step = max(1, int(math.sqrt(lum.size / 250_000)))
        sample = lum[::step, ::step]
        if low is None:
            low = float(np.median(sample))
        if high is None:
            high = max(float(np.percentile(sample, 99.5)), low + 0.05)
            high = min(high, 1.0)
        if low >= high:  # a (nearly) flat bright image: no sky to clip
            low = max(0.0, high - 0.05)
    return levels(lum, low=low, high=high, gamma=gamma, out=lum)  # lum is our own copy


def invert_mask(mask: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``1 - mask`` (float32, clipped to [0, 1]); ``out`` may be ``mask`` (in place)."""
    m = np.asarray(mask, dtype=np.float32)
    out = np.subtract(np.float32(1.0), m, out=out if out is not None else np.empty_like(m))
    return np.clip(out, 0.0, 1.0, out=out)


def star_mask(image: AstroImage, *, sigma: float = 5.0, size: float = 1.25,
              softness: float = 0.5, min_radius: float = 2.0, max_stars: int = 5000,
              fwhm_guess: float = 3.0, max_width: float = 2.5) -> np.ndarray:
    """A star mask: a soft disc over each detected star.

    Parameters
    ----------
    image : AstroImage
        Mono or colour (stars are detected on the luminance, linear or stretched).
    sigma : float, default 5.0
        Detection threshold in sky-noise sigmas (see
        :func:`~napari_astro.core.stars.detect_stars`).
    size : float, default 1.25
        Dilation factor applied to each star's visible radius: the radius where a
        Gaussian of the star's measured FWHM and peak falls to 2 sky sigmas (1.25
        reaches into a Moffat star's wings: on the test image, 94 % of the mask
        >= 0.5 lies on star light above 0.5 sky sigma; 1.5 only 73 %).
    softness : float, default 0.5
        Width of the raised-cosine edge as a fraction of the radius (0 = hard disc).
    min_radius : float, default 2.0
        Smallest disc radius in pixels.
    max_stars : int, default 5000
        At most this many stars (the brightest).
    fwhm_guess : float, default 3.0
        Typical FWHM in pixels (matched filter of the detection).
    max_width : float, default 2.5
        Sources wider than this times the median FWHM of the detections are
        nebula knots or galaxies, not stars, and are left out.

    Returns
    -------
    ndarray, (H, W) float32 in [0, 1]
        1 on the star cores, falling to 0 over the edge; 0 elsewhere.
    """
    from .stars import detect_stars, estimate_background

    lum = mask_luminance(image)
    out = np.zeros(lum.shape, dtype=np.float32)
    bkg = estimate_background(lum)
    stars = detect_stars(lum, sigma=sigma, max_stars=max_stars, fwhm_guess=fwhm_guess,
                         background=bkg)
    if len(stars) > 3:
        # Nebula knots pass the detector as wide "stars" (22 px FWHM against 3.6 px on
        # the test nebula): drop sources much wider than the typical star.
        typical = float(np.median(stars.fwhm))
        stars = stars.take(np.flatnonzero(stars.fwhm <= max_width * typical))
    noise = max(float(bkg[1]), 1e-12)
    typical = float(np.median(stars.fwhm)) if len(stars) else fwhm_guess
    s = np.nan_to_num(stars.fwhm, nan=typical) / _FWHM_PER_SIGMA
    _draw_discs(out, stars.x, stars.y, s, stars.peak, stars.saturated, noise,
                size=size, softness=softness, min_radius=min_radius)
    # Top-hat pass for what the detector leaves out (stars blended with a brighter
    # neighbour, stars on the frame's edge): compact bright residuals above a
    # grey opening wider than a star; on the test image it adds the one blended
    # bright star of 17 that detection merged into its neighbour.
    width = 2 * int(math.ceil(2.0 * typical)) + 1
    tophat = lum - ndimage.grey_opening(lum, size=(width, width))
    seeds = (tophat > 2.0 * sigma * noise) & (out < 0.5)
    labels, n = ndimage.label(seeds)
    if n:
        npix, peaks, rows, cols = _label_peaks(labels, tophat, n)
        keep = npix >= 2  # a lone pixel is a hot pixel or a cosmic ray
        if keep.any():
            _draw_discs(out, cols[keep].astype(np.float64), rows[keep].astype(np.float64),
                        np.full(int(keep.sum()), typical / _FWHM_PER_SIGMA),
                        peaks[keep].astype(np.float64), np.zeros(int(keep.sum()), bool), noise,
                        size=size, softness=softness, min_radius=min_radius)
    return out


@njit(cache=True)
def _label_peaks(labels, values, n):  # pragma: no cover - numba
    # one pass: pixel count, maximum and its position per label (scipy's
    # ndimage.maximum_position argsorts the whole image: 9.8 s of a 14.6 s star mask
    # on 3000x2000 px, this 0.05 s)
    npix = np.zeros(n, np.int64)
    peak = np.full(n, -np.inf, np.float32)
    rows = np.zeros(n, np.int64)
    cols = np.zeros(n, np.int64)
    h, w = labels.shape
    for i in range(h):
        for j in range(w):
            k = labels[i, j] - 1
            if k < 0:
                continue
            npix[k] += 1
            if values[i, j] > peak[k]:
                peak[k] = values[i, j]
                rows[k] = i
                cols[k] = j
    return npix, peak, rows, cols


def _draw_discs(out: np.ndarray, xs, ys, s, peak, saturated, noise: float, *, size: float,
                softness: float, min_radius: float) -> None:
    """Max-composite soft discs into ``out`` (in place); ``s`` = Gaussian sigma, px."""
    h, w = out.shape
    # Radius where peak * exp(-r^2 / 2 s^2) = 2 noise; a saturated star's peak is a
    # lower bound, so its halo gets at least 2 FWHM.
    ratio = np.maximum(np.asarray(peak, dtype=np.float64) / (2.0 * noise), 1.0)
    radius = s * np.sqrt(2.0 * np.log(ratio))
    radius = np.where(saturated, np.maximum(radius, 2.0 * s * _FWHM_PER_SIGMA), radius)
    radius = np.maximum(size * radius, min_radius)
    edge = softness * radius
    for x, y, r, e in zip(xs, ys, radius, edge):
        outer = r + e
        x0, x1 = max(int(math.floor(x - outer)), 0), min(int(math.ceil(x + outer)) + 1, w)
        y0, y1 = max(int(math.floor(y - outer)), 0), min(int(math.ceil(y + outer)) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        if e > 0:
            t = np.clip((d - r) / e, 0.0, 1.0)
            v = 0.5 * (1.0 + np.cos(np.pi * t))
        else:
            v = (d <= r).astype(np.float64)
        np.maximum(out[y0:y1, x0:x1], v.astype(np.float32), out=out[y0:y1, x0:x1])


def paint_mask(mask: np.ndarray, labels: np.ndarray, *, feather: float = 2.0) -> np.ndarray:
    """Merge brush strokes into a soft mask.

    napari cannot paint on a float Image layer, so the user paints on a Labels layer
    of the same size: :data:`PAINT_ADD` (1) where the mask should be 1,
    :data:`PAINT_ERASE` (2) where it should be 0. The strokes are feathered so that
    painted edges are as soft as the computed ones.

    Parameters
    ----------
    mask : ndarray, (H, W)
        The mask, values in [0, 1] (not modified).
    labels : ndarray of int, (H, W)
        The paint layer.
    feather : float, default 2.0
        Gaussian sigma in pixels of the strokes' edges (0 = hard edges).

    Returns
    -------
    ndarray, (H, W) float32 in [0, 1]
        ``(1 - w) * mask + w * target`` with ``w`` the feathered stroke coverage and
        ``target`` 1 under "add" strokes, 0 under "erase" strokes; unpainted pixels
        farther than ~3 feather sigmas from a stroke are unchanged.
    """
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    lab = np.asarray(labels)
    if lab.shape != m.shape:
        raise ValueError(f"paint layer is {lab.shape}, the mask {m.shape}")
    painted = (lab == PAINT_ADD) | (lab == PAINT_ERASE)
    if not painted.any():
        return m.copy()
    add = (lab == PAINT_ADD).astype(np.float32)
    w = painted.astype(np.float32)
    if feather > 0:
        w = ndimage.gaussian_filter(w, float(feather), mode="nearest", truncate=3.0)
        add = ndimage.gaussian_filter(add, float(feather), mode="nearest", truncate=3.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        target = np.where(w > 1e-6, add / np.maximum(w, 1e-6), 0.0)
    # inside a stroke the paint wins outright; the feather only softens its border
    w = np.where(painted, 1.0, np.clip(w, 0.0, 1.0))
    out = (1.0 - w) * m + w * np.clip(target, 0.0, 1.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
