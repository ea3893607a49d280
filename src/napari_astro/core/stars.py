"""Star detection, sub-pixel centroids, FWHM, roundness and per-frame quality.

Detection follows the sep/SExtractor recipe: a coarse mesh background (sigma-clipped
block medians, bilinearly interpolated), a Gaussian matched filter, a threshold in
units of the filtered image's noise, local maxima, then per-star *adaptive Gaussian
moments* (the window is matched iteratively to the star, as in SExtractor's XWIN and
GalSim's HSM). Those give the centroid (~0.01-0.02 px on bright stars), the PSF
covariance (FWHM, roundness) and a flux, and are insensitive to flat saturated tops.

Hot pixels (single-pixel peaks) are rejected by their neighbour ratio and their
sub-pixel FWHM; large-scale nebulosity goes into the background mesh and what is left
fails the shape tests (too wide, too elongated, centroid far from the peak).

Raw one-shot-colour mosaics are measured on a 2x2-box CFA luminance (every 2x2
window holds R + 2G + B whatever its offset, so the luminance needs no pattern) at
full resolution; coordinates are mapped back to the mosaic's pixel grid.

All coordinates are ``(x, y)`` = (column, row) with the origin at the centre of pixel
``data[0, 0]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numba import njit, prange
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["Stars", "FrameQuality", "estimate_background", "detect_stars", "detect_stars_cfa",
           "cfa_box_luminance", "frame_quality", "pixel_scale_from_header"]

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


# --------------------------------------------------------------------------- background
def _interp_matrix(n_out: int, n_mesh: int, block: int) -> np.ndarray:
    """``(n_out, n_mesh)`` linear-interpolation weights from mesh centres to pixels."""
    centres = (np.arange(n_mesh) + 0.5) * block - 0.5
    pos = np.arange(n_out, dtype=np.float64)
    m = np.zeros((n_out, n_mesh), dtype=np.float32)
    if n_mesh == 1:
        m[:, 0] = 1.0
        return m
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, n_mesh - 2)
    t = np.clip((pos - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
    rows = np.arange(n_out)
    m[rows, j] = 1.0 - t
    m[rows, j + 1] += t
    return m


def estimate_background(data: np.ndarray, *, box: int = 64) -> tuple[np.ndarray, float]:
    """Smooth sky background map and per-pixel sky noise.

    Sigma-clipped medians of ``box`` x ``box`` blocks (subsampled 4x4 for speed), a 3x3
    median filter over the mesh (removes blocks biased by bright stars or nebula
    knots), then bilinear interpolation between block centres.

    Parameters
    ----------
    data : ndarray, shape (H, W)
        Image, any float type.
    box : int, default 64
        Block size in pixels; larger than the stars, smaller than gradients.

    Returns
    -------
    background : ndarray of float32, shape (H, W)
    noise : float
        Median over blocks of the clipped robust standard deviation (data units).
    """
    data = np.asarray(data, dtype=np.float32)
    h, w = data.shape
    ny, nx = max(1, h // box), max(1, w // box)
    by, bx = h // ny, w // nx
    # Every 4th pixel both ways (256 samples per 64x64 block) is plenty for a clipped
    # median and costs 11 ms per 2000x1500 frame against 54 ms for every 2nd pixel.
    step = 4 if min(by, bx) >= 32 else (2 if min(by, bx) >= 16 else 1)
    blocks = data[:ny * by:step, :nx * bx:step]
    bys, bxs = blocks.shape[0] // ny, blocks.shape[1] // nx
    blocks = blocks[:ny * bys, :nx * bxs].reshape(ny, bys, nx, bxs).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(ny * nx, bys * bxs)
    med, sig = _block_stats(np.ascontiguousarray(blocks))
    med = np.nan_to_num(med.reshape(ny, nx), nan=float(np.nanmedian(med)))
    sig = sig.reshape(ny, nx)
    if ny >= 3 and nx >= 3:
        med = ndimage.median_filter(med, size=3, mode="nearest")
    ay = _interp_matrix(h, ny, by)
    ax = _interp_matrix(w, nx, bx)
    bkg = (ay @ med.astype(np.float32)) @ ax.T
    noise = float(np.nanmedian(sig)) if np.isfinite(sig).any() else 0.0
    return np.ascontiguousarray(bkg, dtype=np.float32), noise


# --------------------------------------------------------------------------- kernels
@njit(cache=True, parallel=True, nogil=True)
def _block_stats(blocks):  # pragma: no cover - numba
    """Clipped median and robust sigma of each row of ``blocks`` (nb, m).

    Two clipping rounds at (-4, +2.5) sigma: stars and nebula only push values up.
    A numba kernel because np.nanmedian over 700 blocks took 170 ms; this takes ~8 ms.
    """
    nb, m = blocks.shape
    med = np.empty(nb, np.float32)
    sig = np.empty(nb, np.float32)
    for b in prange(nb):
        v = np.sort(blocks[b])
        lo_i = 0
        hi_i = m
        md = 0.0
        sg = 0.0
        for it in range(3):
            n = hi_i - lo_i
            if n <= 0:
                break
            k = lo_i + n // 2
            md = v[k] if n % 2 else 0.5 * (v[k - 1] + v[k])
            dev = np.sort(np.abs(v[lo_i:hi_i] - md))
            sg = 1.4826 * (dev[n // 2] if n % 2 else 0.5 * (dev[n // 2 - 1] + dev[n // 2]))
            if it == 2:
                break
            lo_i = np.searchsorted(v, md - 4.0 * sg)
            hi_i = np.searchsorted(v, md + 2.5 * sg, side="right")
        med[b] = md
        sig[b] = sg
    return med, sig


@njit(cache=True, nogil=True)
def _find_peaks(r, thr, border, max_out):  # pragma: no cover - numba
    """Local maxima of ``r`` above ``thr`` (3x3, ties broken by scan order)."""
    h, w = r.shape
    ys = np.empty(max_out, np.int32)
    xs = np.empty(max_out, np.int32)
    vs = np.empty(max_out, np.float32)
    n = 0
    for y in range(border, h - border):
        for x in range(border, w - border):
            v = r[y, x]
            if v <= thr:
                continue
            # strictly greater than the neighbours scanned before, >= the later ones,
            # so a flat (saturated) plateau yields exactly one peak
            if (v <= r[y - 1, x - 1] or v <= r[y - 1, x] or v <= r[y - 1, x + 1]
                    or v <= r[y, x - 1] or v < r[y, x + 1] or v < r[y + 1, x - 1]
                    or v < r[y + 1, x] or v < r[y + 1, x + 1]):
                continue
            if n < max_out:
                ys[n] = y
                xs[n] = x
                vs[n] = v
                n += 1
    return ys[:n], xs[:n], vs[:n]


@njit(cache=True, nogil=True)
def _annulus_median(data, bkg, cx, cy, r1, r2):  # pragma: no cover - numba
    """Median of ``data - bkg`` in the annulus r1 <= r < r2 around (cx, cy)."""
    h, w = data.shape
    ir = int(math.ceil(r2))
    ix = int(math.floor(cx + 0.5))
    iy = int(math.floor(cy + 0.5))
    buf = np.empty((2 * ir + 1) * (2 * ir + 1), np.float32)
    n = 0
    for yy in range(max(iy - ir, 0), min(iy + ir + 1, h)):
        for xx in range(max(ix - ir, 0), min(ix + ir + 1, w)):
            r2v = (xx - cx) ** 2 + (yy - cy) ** 2
            if r1 * r1 <= r2v < r2 * r2:
                buf[n] = data[yy, xx] - bkg[yy, xx]
                n += 1
    if n < 8:
        return 0.0
    return float(np.median(buf[:n]))


@njit(cache=True, nogil=True)
def _moments(data, bkg, ped, cx, cy, sw2, max_radius):  # pragma: no cover - numba
    """Adaptive Gaussian moments from (cx, cy) with window variance sw2.

    Returns ok, cx, cy, sw2, s0, mxx, myy, mxy (weighted central moments).
    """
    h, w = data.shape
    ok = 0.0
    s0 = 0.0
    mxx = 0.0
    myy = 0.0
    mxy = 0.0
    for it in range(40):
        rad = int(min(max_radius, math.ceil(3.5 * math.sqrt(sw2)) + 1))
        ix = int(math.floor(cx + 0.5))
        iy = int(math.floor(cy + 0.5))
        if ix - rad < 0 or iy - rad < 0 or ix + rad >= w or iy + rad >= h:
            return 0.0, cx, cy, sw2, s0, mxx, myy, mxy
        inv = 0.5 / sw2
        s0 = 0.0
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        syy = 0.0
        sxy = 0.0
        r2max = (rad + 0.5) * (rad + 0.5)
        for yy in range(iy - rad, iy + rad + 1):
            dy = yy - cy
            for xx in range(ix - rad, ix + rad + 1):
                dx = xx - cx
                r2 = dx * dx + dy * dy
                if r2 > r2max:
                    continue
                wv = math.exp(-r2 * inv) * (data[yy, xx] - bkg[yy, xx] - ped)
                s0 += wv
                sx += wv * dx
                sy += wv * dy
                sxx += wv * dx * dx
                syy += wv * dy * dy
                sxy += wv * dx * dy
        if s0 <= 0:
            return 0.0, cx, cy, sw2, s0, mxx, myy, mxy
        mx = sx / s0
        my = sy / s0
        mxx = sxx / s0 - mx * mx
        myy = syy / s0 - my * my
        mxy = sxy / s0 - mx * my
        m = 0.5 * (mxx + myy)
        if m <= 0:
            return 0.0, cx, cy, sw2, s0, mxx, myy, mxy
        # for a Gaussian star (var s2) in a Gaussian window (var sw2) the weighted
        # mean is pulled to the window centre by sw2 / (s2 + sw2): undo that
        s2 = 1.0 / max(1.0 / m - 1.0 / sw2, 1e-6)
        gain = min((s2 + sw2) / sw2, 4.0)
        cx += gain * mx
        cy += gain * my
        new_sw2 = min(max(s2, 0.25), max_radius * max_radius / 9.0)
        # 1e-4 px is 200x below the 0.02 px centroid accuracy we need; tighter
        # tolerances only cost iterations (each one an exp() per window pixel)
        done = (abs(mx) * gain < 1e-4 and abs(my) * gain < 1e-4
                and abs(new_sw2 - sw2) < 1e-3 * sw2)
        sw2 = new_sw2
        if done:
            ok = 1.0
            break
    else:
        ok = 1.0  # 40 iterations: accept (slow oscillation well below 1e-3 px)
    return ok, cx, cy, sw2, s0, mxx, myy, mxy


@njit(cache=True, parallel=True, nogil=True)
def _measure(data, bkg, ys, xs, sigma0, max_radius, sat_level, out):  # pragma: no cover
    """Adaptive-moment measurement of each candidate.

    ``out[i]`` = x, y, flux, sxx, syy, sxy, peak, neighbour_ratio, ok, saturated, shift.
    Timing (2000x1500, 600 candidates): ~3 ms on 2 cores.
    """
    h, w = data.shape
    for i in prange(ys.shape[0]):
        py = ys[i]
        px = xs[i]
        # brightest raw pixel near the (smoothed) peak
        b = bkg[py, px]
        best = -1e30
        by = py
        bx = px
        for yy in range(max(py - 1, 0), min(py + 2, h)):
            for xx in range(max(px - 1, 0), min(px + 2, w)):
                v = data[yy, xx]
                if v > best:
                    best = v
                    by = yy
                    bx = xx
        peak = best - b
        # neighbour ratio: a hot pixel has ~0 signal in its 4 neighbours
        nsum = 0.0
        ncount = 0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy = by + dy
            xx = bx + dx
            if 0 <= yy < h and 0 <= xx < w:
                nsum += data[yy, xx] - b
                ncount += 1
        ratio = nsum / max(ncount, 1) / peak if peak > 0 else 0.0
        saturated = 0.0
        if sat_level > 0:
            nsat = 0
            for yy in range(max(by - 1, 0), min(by + 2, h)):
                for xx in range(max(bx - 1, 0), min(bx + 2, w)):
                    if data[yy, xx] >= sat_level:
                        nsat += 1
            if nsat >= 2:
                saturated = 1.0
        # local pedestal from an annulus at 3-4.5 FWHM, for nebulae and gradients the
        # coarse mesh cannot follow: first with the guessed FWHM, then with the
        # measured one (a large star's wings would bias the first ring)
        fw = 2.3548 * sigma0
        ped = _annulus_median(data, bkg, float(px), float(py), max(3.0 * fw, 5.0),
                              max(3.0 * fw, 5.0) + max(1.5 * fw, 3.0))
        ok, cx, cy, sw2, s0, mxx, myy, mxy = _moments(data, bkg, ped, float(px), float(py),
                                                      sigma0 * sigma0, max_radius)
        if ok > 0:
            fw = 2.3548 * math.sqrt(sw2)
            r1 = max(3.0 * fw, 5.0)
            ped2 = _annulus_median(data, bkg, cx, cy, r1, r1 + max(1.5 * fw, 3.0))
            if abs(ped2 - ped) > 1e-7:
                ped = ped2
                ok, cx, cy, sw2, s0, mxx, myy, mxy = _moments(data, bkg, ped, cx, cy, sw2,
                                                              max_radius)
        peak -= ped
        # deconvolve the window from the measured covariance: C = (M^-1 - W^-1)^-1
        det = mxx * myy - mxy * mxy
        if ok > 0 and det > 0:
            a = myy / det - 1.0 / sw2
            d = mxx / det - 1.0 / sw2
            c = -mxy / det
            det2 = a * d - c * c
            if a > 0 and d > 0 and det2 > 0:
                out[i, 3] = d / det2
                out[i, 4] = a / det2
                out[i, 5] = -c / det2
            else:
                ok = 0.0
        else:
            ok = 0.0
        # Gaussian-window flux: a Gaussian star of flux F gives s0 = F sw2 / (s2 + sw2)
        if ok > 0:
            s2 = 0.5 * (out[i, 3] + out[i, 4])
            flux = s0 * (s2 + sw2) / sw2
        else:
            flux = 0.0
        out[i, 0] = cx
        out[i, 1] = cy
        out[i, 2] = flux
        out[i, 6] = peak
        out[i, 7] = ratio
        out[i, 8] = ok
        out[i, 9] = saturated
        out[i, 10] = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)


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
    Timing: 2000x1500 float32 ~0.12 s on 2 cores (background 40 ms, filter 25 ms,
    peaks 10 ms, measurement 5 ms).
    """
    data = np.asarray(data2d)
    if data.ndim != 2:
        raise ValueError(f"detect_stars needs 2-D data, got shape {data.shape}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    h, w = data.shape
    if h < 16 or w < 16 or not np.isfinite(data).all():
        if not np.isfinite(data).all():
            data = np.nan_to_num(data, nan=float(np.nanmedian(data)), posinf=0.0, neginf=0.0)
        else:
            return Stars.empty()
    bkg, noise_pix = background if background is not None else estimate_background(data)
    sig_f = max(0.7, fwhm_guess / _FWHM_PER_SIGMA * 0.8)
    smooth = ndimage.gaussian_filter(data, sig_f, mode="nearest", truncate=3.0)
    resid = smooth - bkg
    sub = resid[::3, ::3]
    noise_f = 1.4826 * float(np.median(np.abs(sub - np.median(sub))))
    if not noise_f > 0:
        noise_f = float(np.std(sub)) or 1e-12
    thr = sigma * noise_f
    border = 3
    ys, xs, vs = _find_peaks(resid, np.float32(thr), border, 200_000)
    if ys.size == 0:
        return Stars.empty()
    # Candidates by matched-filter peak: twice the stars wanted leaves room for the
    # hot pixels and cosmic rays that measurement rejects (4x cost 0.116 s per
    # 2000x1500 frame in _measure, 2x about half that).
    order = np.argsort(-vs, kind="stable")[: max(2 * max_stars, 200)]
    ys, xs = ys[order], xs[order]
    if saturation is None:
        top = float(data.max())
        saturation = 0.995 * top if np.count_nonzero(data >= 0.995 * top) >= 3 and top > 0 else 0.0
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
        tree = cKDTree(np.column_stack([x, y]))
        pairs = tree.query_pairs(r=2.0, output_type="ndarray")
        if pairs.size:
            keep = np.ones(idx.size, dtype=bool)
            for a, b in sorted(map(tuple, pairs)):
                if keep[a] and keep[b]:
                    keep[max(a, b)] = False
            idx = idx[keep]
    idx = idx[:max_stars]
    return Stars(x=out[idx, 0].copy(), y=out[idx, 1].copy(), flux=out[idx, 2].copy(),
                 fwhm=fwhm[idx].astype(np.float64), roundness=roundness[idx].astype(np.float64),
                 peak=out[idx, 6].copy(), saturated=out[idx, 9] > 0,
                 snr=snr[idx].astype(np.float64))


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
    d = np.asarray(data2d, dtype=np.float32)
    out = d[:-1, :-1] + d[1:, :-1]
    out += d[:-1, 1:]
    out += d[1:, 1:]
    out *= 0.25
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
