"""The star table (:class:`Stars`), detection on mono/luminance data and raw CFA
mosaics, and per-frame quality (:class:`FrameQuality`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from ..cosmetic import _plane_stats
from ..stats import MAD_SIGMA, run_in_threads
from .background import estimate_background
from .measure import _box_lum_rows, _dedupe, _find_peaks_fast, _measure, _smooth_minus_fused


_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548


@dataclasses.dataclass
class Stars:
    """A star list: parallel 1-D arrays, brightest first.

    Attributes
    ----------
    x, y : ndarray of float64, shape (N,)
        Centroid in pixels (column, row), origin at the centre of pixel ``[0, 0]``.
    flux : ndarray of float64
        Background-subtracted flux (data units x pixels; Gaussian-window estimate).
    fwhm : ndarray of float64
        Full width at half maximum of the best-matching Gaussian, pixels
        (geometric mean of the major and minor axes).
    roundness : ndarray of float64
        Minor / major axis ratio in (0, 1]; 1 is perfectly round.
    peak : ndarray of float64
        Highest background-subtracted pixel value of the star (data units).
    saturated : ndarray of bool
        True when the star's core reaches the saturation level (flat top).
    snr : ndarray of float64
        Signal-to-noise ratio of the flux against the sky noise (matched Gaussian
        aperture); the centroid error is about ``fwhm / (1.7 * snr)`` px per axis.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    fwhm: np.ndarray
    roundness: np.ndarray
    peak: np.ndarray
    saturated: np.ndarray
    snr: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.snr is None:
            self.snr = np.full(self.x.shape, np.inf)

    @classmethod
    def empty(cls) -> "Stars":
        z = np.zeros(0, dtype=np.float64)
        return cls(z, z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(0, dtype=bool),
                   z.copy())

    @property
    def centroid_sigma(self) -> np.ndarray:
        """Expected centroid error per axis (px): photon/sky noise plus a 0.01 px
        floor. For a Gaussian star the windowed centroid has sigma ~ sqrt(2) s / SNR
        with s = fwhm / 2.355."""
        s = self.fwhm / _FWHM_PER_SIGMA
        return np.sqrt((math.sqrt(2.0) * s / np.maximum(self.snr, 1e-3)) ** 2 + 0.01 ** 2)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def xy(self) -> np.ndarray:
        """``(N, 2)`` float64 array of ``(x, y)`` positions."""
        return np.column_stack([self.x, self.y])

    def take(self, index: Any) -> "Stars":
        """Subset by an index array or boolean mask."""
        return Stars(*(np.asarray(getattr(self, f.name))[index]
                       for f in dataclasses.fields(self)))  # type: ignore[arg-type]

    def brightest(self, n: int) -> "Stars":
        """The ``n`` brightest stars (by flux)."""
        order = np.argsort(-self.flux, kind="stable")[:n]
        return self.take(order)

    def as_array(self) -> np.ndarray:
        """``(N, 5)`` float64 table: x, y, flux, fwhm, roundness (for a Points layer
        use ``stars.as_array()[:, [1, 0]]`` to get napari's (row, col) order)."""
        return np.column_stack([self.x, self.y, self.flux, self.fwhm, self.roundness])

    def to_dict(self) -> dict[str, list]:
        """JSON-able dict of lists."""
        return {f.name: np.asarray(getattr(self, f.name)).tolist()
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Stars":
        return cls(**{f.name: np.asarray(d[f.name], dtype=bool if f.name == "saturated"
                                         else np.float64) for f in dataclasses.fields(cls)
                      if f.name in d})


@dataclasses.dataclass(frozen=True)
class FrameQuality:
    """Quality figures of one frame.

    Attributes
    ----------
    n_stars : int
        Number of stars detected.
    fwhm : float
        Median FWHM of the unsaturated stars, pixels (NaN without stars).
    roundness : float
        Median minor/major axis ratio (NaN without stars).
    background : float
        Median sky level, data units.
    noise : float
        Sky noise (robust standard deviation per pixel), data units.
    fwhm_arcsec : float or None
        ``fwhm`` times the pixel scale when known.
    """

    n_stars: int
    fwhm: float
    roundness: float
    background: float
    noise: float
    fwhm_arcsec: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None  # JSON has no NaN
        return out


# --------------------------------------------------------------------------- detection
def detect_stars(data2d: np.ndarray, *, sigma: float = 5.0, max_stars: int = 500,
                 fwhm_guess: float = 3.0, min_fwhm: float = 0.9, max_fwhm: float = 25.0,
                 min_roundness: float = 0.3, saturation: float | None = None,
                 background: tuple[np.ndarray, float] | None = None,
                 _box_variance: float = 0.0) -> Stars:
    """Detect stars and measure sub-pixel centroids, FWHM and roundness.

    Parameters
    ----------
    data2d : ndarray, shape (H, W)
        Mono image or luminance (float; any scale).
    sigma : float, default 5.0
        Detection threshold in units of the matched-filtered image's sky noise.
    max_stars : int, default 500
        Keep at most this many stars (the brightest by flux).
    fwhm_guess : float, default 3.0
        Typical FWHM in pixels; sets the matched filter and the starting window.
    min_fwhm, max_fwhm : float, default 0.9, 25.0
        Accepted FWHM range in pixels (hot pixels are narrower, nebula knots wider).
    min_roundness : float, default 0.3
        Reject more elongated sources (minor/major axis ratio).
    saturation : float, optional
        Data level at which a pixel counts as saturated; default 99.5% of the
        maximum when at least a few pixels reach it, else none.
    background : (ndarray, float), optional
        A precomputed ``(background map, noise)`` from :func:`estimate_background`.

    Returns
    -------
    Stars
        Brightest first. An image with no stars (cloud) gives an empty list.

    Notes
    -----
    Timing (issue 13), CPU per 1080x1920 CFA luminance: background 8.5 ms, matched
    filter 7-10 ms, noise MAD 7 ms, peaks 1.5 ms, measurement ~5 ms; measure_frame
    35 ms in all against 85-115 ms before (scipy's filter, BLAS in the background
    interpolation and the OpenBLAS threads' spin after it). Then (fused filter pass
    with the row maxima and finiteness, histogram MAD, one-scan peaks, no scipy;
    benchmarks/bench_onepass_kernels.py, 1 thread, fresh pages as in the stack run):
    detect_stars 31 -> 18 ms, background 14.5 -> 6 ms, measure_frame 51 -> 29 ms.
    """
    data = np.asarray(data2d)
    if data.ndim != 2:
        raise ValueError(f"detect_stars needs 2-D data, got shape {data.shape}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    h, w = data.shape
    # The finiteness check is part of the matched-filter pass when the background is
    # given (the stack run's case); without it the background needs clean data first.
    if h < 16 or w < 16 or (background is None and not np.isfinite(data).all()):
        if not np.isfinite(data).all():
            data = _finite(data)
        else:
            return Stars.empty()
    bkg, noise_pix = background if background is not None else estimate_background(data)
    sig_f = max(0.7, fwhm_guess / _FWHM_PER_SIGMA * 0.8)
    bkg = np.ascontiguousarray(bkg, dtype=np.float32)
    # gaussian_filter(data, sig_f, mode="nearest", truncate=3.0) - bkg, bit for bit
    resid, rowmax, bad = _smooth_minus_fused(data, sig_f, bkg)
    if bad:  # what the check before the filter would have cleaned
        data = _finite(data)
        resid, rowmax, bad = _smooth_minus_fused(data, sig_f, bkg)
    # median_mad_sigma(resid[::3, ::3]), bit for bit, by the histogram selection of
    # cosmetic's plane statistics: 0.6 ms against 6-7 ms for np.median twice
    one = np.zeros(1, np.int64)
    med = np.empty(1, np.float32)
    mad = np.empty(1, np.float32)
    _plane_stats(resid, one, one, np.full(1, 3, np.int64), med, mad, 0, 1)
    noise_f = float(MAD_SIGMA * mad[0])
    if not noise_f > 0:
        noise_f = float(np.std(resid[::3, ::3])) or 1e-12
    thr = sigma * noise_f
    border = 3
    ys, xs, vs = _find_peaks_fast(resid, np.float32(thr), border, 200_000)
    if ys.size == 0:
        return Stars.empty()
    # Candidates by matched-filter peak: twice the stars wanted leaves room for the
    # hot pixels and cosmic rays that measurement rejects (4x cost 0.116 s per
    # 2000x1500 frame in _measure, 2x about half that).
    order = np.argsort(-vs, kind="stable")[: max(2 * max_stars, 200)]
    ys, xs = ys[order], xs[order]
    if saturation is None:
        # data.max() and the count of pixels >= 99.5 % of it, from the row maxima:
        # only rows that reach the level are counted
        top = float(rowmax.max())
        rows = np.flatnonzero(rowmax >= 0.995 * top)
        saturation = 0.995 * top if np.count_nonzero(data[rows] >= 0.995 * top) >= 3 \
            and top > 0 else 0.0
    out = np.zeros((ys.size, 11), dtype=np.float64)
    max_radius = int(min(20, max(6, math.ceil(2.5 * max_fwhm / _FWHM_PER_SIGMA))))
    _measure(data, bkg, ys, xs, float(fwhm_guess / _FWHM_PER_SIGMA), max_radius,
             float(saturation), out)
    sxx = out[:, 3] - _box_variance
    syy = out[:, 4] - _box_variance
    sxy = out[:, 5]
    tr = 0.5 * (sxx + syy)
    disc = np.sqrt(np.maximum(0.25 * (sxx - syy) ** 2 + sxy ** 2, 0.0))
    lam1 = tr + disc
    lam2 = tr - disc
    with np.errstate(invalid="ignore", divide="ignore"):
        fwhm = _FWHM_PER_SIGMA * np.sqrt(np.sqrt(np.maximum(lam1 * lam2, 0.0)))
        roundness = np.sqrt(np.maximum(lam2, 0.0) / lam1)
    # background-limited SNR of a Gaussian-weighted flux: F / (noise * sqrt(4 pi) * s);
    # the 2x2 CFA mean halves the pixel noise but correlates 4 pixels (factor 2)
    s_psf = np.maximum(np.nan_to_num(fwhm, nan=1.0), 0.5) / _FWHM_PER_SIGMA
    snr = out[:, 2] / (max(noise_pix, 1e-12) * math.sqrt(4.0 * math.pi) * s_psf)
    if _box_variance:
        snr = snr / 2.0
    ok = ((out[:, 8] > 0) & (out[:, 2] > 0) & (lam2 > 0) & np.isfinite(fwhm)
          # the matched-filter detection SNR is <= this flux SNR for a real star
          & (snr >= 0.8 * sigma)
          & (fwhm >= min_fwhm) & (fwhm <= max_fwhm) & (roundness >= min_roundness)
          & (out[:, 10] <= np.maximum(2.0, 0.75 * fwhm))
          # single-pixel peaks: neighbours carry (almost) nothing
          & ((out[:, 7] >= 0.12) | (out[:, 9] > 0)))
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return Stars.empty()
    idx = idx[np.argsort(-out[idx, 2], kind="stable")]
    x, y = out[idx, 0], out[idx, 1]
    # duplicates (split saturated cores, double peaks): keep the brightest
    if idx.size > 1:
        keep = np.empty(idx.size, dtype=bool)
        _dedupe(np.ascontiguousarray(x), np.ascontiguousarray(y), 2.0, keep)
        idx = idx[keep]
    idx = idx[:max_stars]
    return Stars(x=out[idx, 0].copy(), y=out[idx, 1].copy(), flux=out[idx, 2].copy(),
                 fwhm=fwhm[idx].astype(np.float64), roundness=roundness[idx].astype(np.float64),
                 peak=out[idx, 6].copy(), saturated=out[idx, 9] > 0,
                 snr=snr[idx].astype(np.float64))


def _finite(data: np.ndarray) -> np.ndarray:
    """NaN to the median of the finite values, +-inf to 0 (detection's clean-up)."""
    return np.nan_to_num(data, nan=float(np.nanmedian(data)), posinf=0.0, neginf=0.0)


def cfa_box_luminance(data2d: np.ndarray) -> np.ndarray:
    """Full-resolution luminance of a raw CFA mosaic: the mean of each 2x2 window.

    Every 2x2 window of a Bayer mosaic holds one R, two G and one B, whatever its
    position, so the result is a colour-balanced luminance without knowing the
    pattern. Pixel ``[i, j]`` of the result is centred at mosaic position
    ``(x, y) = (j + 0.5, i + 0.5)``.

    Returns
    -------
    ndarray of float32, shape (H - 1, W - 1)
    """
    d = np.ascontiguousarray(data2d, dtype=np.float32)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        out = d[:-1, :-1] + d[1:, :-1]
        out += d[:-1, 1:]
        out += d[1:, 1:]
        out *= 0.25
        return out
    # the numpy sum (a + c + b + e) * 0.25 in the same order, in threads: 1.5 ms of
    # CPU against 4.5-7 ms per 1080x1920 mosaic
    out = np.empty((d.shape[0] - 1, d.shape[1] - 1), np.float32)
    run_in_threads(_box_lum_rows, out.shape[0], d, out)
    return out


def detect_stars_cfa(data2d: np.ndarray, pattern: str | None = None, **kwargs: Any) -> Stars:
    """:func:`detect_stars` on a raw CFA mosaic, coordinates in the mosaic's grid.

    Parameters
    ----------
    data2d : ndarray, shape (H, W)
        Raw Bayer mosaic.
    pattern : str, optional
        CFA pattern (unused: the 2x2 luminance is pattern-free; kept for symmetry
        with ``debayer.cfa_luminance``).
    **kwargs
        Passed to :func:`detect_stars`. FWHM is corrected for the 2x2 box (which
        adds a variance of 1/4 px^2 per axis), so it is the star's on the mosaic grid.
    """
    lum = cfa_box_luminance(data2d)
    # the 2x2 box adds a variance of 1/4 px^2 per axis; remove it so FWHM is the star's
    stars = detect_stars(lum, _box_variance=0.25, **kwargs)
    stars.x += 0.5
    stars.y += 0.5
    return stars


# --------------------------------------------------------------------------- quality
def pixel_scale_from_header(header: Any) -> float | None:
    """Pixel scale in arcsec/px from PIXSCALE/SECPIX or XPIXSZ (um) and FOCALLEN (mm)."""
    if header is None:
        return None
    try:
        for key in ("PIXSCALE", "SECPIX", "SCALE"):
            v = header.get(key)
            if v is not None and float(v) > 0:
                return float(v)
        pix = header.get("XPIXSZ")
        focal = header.get("FOCALLEN")
        if pix is not None and focal is not None and float(focal) > 0 and float(pix) > 0:
            return 206.264806 * float(pix) / float(focal)
    except (TypeError, ValueError):
        return None
    return None


def frame_quality(data2d: np.ndarray, stars: Stars | None = None, *,
                  background: tuple[np.ndarray, float] | None = None,
                  pixel_scale: float | None = None, **detect_kwargs: Any) -> FrameQuality:
    """Star count, median FWHM and roundness, background and noise of one frame.

    Parameters
    ----------
    data2d : ndarray, shape (H, W)
        Mono or luminance data.
    stars : Stars, optional
        Stars already detected on ``data2d``; detected here otherwise.
    background : (ndarray, float), optional
        From :func:`estimate_background` (computed here otherwise).
    pixel_scale : float, optional
        arcsec per pixel, to fill ``fwhm_arcsec``.
    """
    data = np.asarray(data2d, dtype=np.float32)
    if background is None:
        background = estimate_background(data)
    if stars is None:
        stars = detect_stars(data, background=background, **detect_kwargs)
    return _quality_from(stars, background, pixel_scale)


def _quality_from(stars: Stars, background: tuple[np.ndarray, float],
                  pixel_scale: float | None) -> FrameQuality:
    bkg, noise = background
    good = ~stars.saturated
    if not good.any():
        good = np.ones(len(stars), dtype=bool)
    fwhm = float(np.median(stars.fwhm[good])) if len(stars) else float("nan")
    rnd = float(np.median(stars.roundness[good])) if len(stars) else float("nan")
    return FrameQuality(n_stars=len(stars), fwhm=fwhm, roundness=rnd,
                        background=float(np.median(bkg[::8, ::8])), noise=float(noise),
                        fwhm_arcsec=(fwhm * pixel_scale if pixel_scale and math.isfinite(fwhm)
                                     else None))
