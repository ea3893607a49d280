"""Colour calibration of linear RGB images: background neutralisation, basic and
photometric white balance.

The model (one function for calibration and for the simulator)
----------------------------------------------------------------
A star's B-V index gives its temperature by Ballesteros' (2012, EPL 97, 34008) formula
``T = 4600 K (1 / (0.92 (B-V) + 1.7) + 1 / (0.92 (B-V) + 0.62))`` (G2V, B-V 0.65 ->
5780 K, the Sun); its camera signal in each channel is the blackbody photon spectrum
integrated through typical one-shot-colour filter curves (Gaussians standing for a Sony
IMX sensor behind an IR-cut filter: B 465 nm, G 535 nm, R 605 nm, FWHM 90/90/80 nm,
nothing past 690 nm). After calibration a star of the chosen white reference is white
(R = G = B): ``expected_ratios(bv, white)`` is its R/G and B/G relative to that
reference. White references: ``"g2v"`` (B-V 0.65, a solar-type star, Siril's choice)
and ``"galaxy"`` (B-V 0.75, the integrated colour of an average Sb-Sc spiral, about
0.7-0.8 in de Vaucouleurs' RC3 colours; PixInsight's "average spiral galaxy").

The steps
---------
1. Background levels per channel: sigma-clipped medians of star-free pixels of the
   whole image, of a drawn region, or of boxes around background samples.
2. Factors ``k = (k_R, 1, k_B)`` (G fixed at 1):
   * basic: make the average unsaturated star white: geometric mean (sigma-clipped in
     log space) of the per-star R/G and B/G ratios from aperture photometry with a
     local annulus background (photutils);
   * photometric: plate-solve (:mod:`.solve`), take catalogue stars in the field
     (:mod:`.catalog`), match them to detected stars through the WCS, measure them
     the same way and fit ``k`` so that measured ratios equal ``expected_ratios``;
     too few matched stars -> basic, said in the messages.
3. Apply: ``out_c = k_c (data_c - bg_c) + bg_G`` so the background ends neutral at
   the green level (neutralisation alone is ``k = 1``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

from .stats import MAD_SIGMA, mad_sigma

from .errors import BadInputError
from .progress import report

__all__ = ["WHITE_BV", "bv_to_temperature", "channel_response", "expected_ratios",
           "background_levels", "measure_stars", "apply_calibration", "ColorCalibration",
           "calibrate_color", "basic_factors", "photometric_factors", "match_catalog"]

#: Assumed scatter of real stars about the blackbody colour model (relative), the floor
#: of every star's error in the photometric fit.
MODEL_SCATTER = 0.02

#: Images with more pixels than this are searched for stars at 2x2 binning.
BIN_DETECTION_ABOVE = 12_000_000

#: B-V of the white references.
WHITE_BV = {"g2v": 0.65, "galaxy": 0.75}

# Typical OSC filter curves (centre, FWHM in nm); see the module docstring.
_FILTERS = ((605.0, 80.0), (535.0, 90.0), (465.0, 90.0))
_IR_CUT_NM = 690.0


def bv_to_temperature(bv: Any) -> np.ndarray:
    """Effective temperature [K] from B-V [mag] (Ballesteros 2012)."""
    bv = np.asarray(bv, dtype=np.float64)
    return 4600.0 * (1.0 / (0.92 * bv + 1.7) + 1.0 / (0.92 * bv + 0.62))


@functools.lru_cache(maxsize=1)
def _response_table() -> tuple[np.ndarray, np.ndarray]:
    bv = np.linspace(-0.5, 3.5, 801)
    lam = np.arange(360.0, 721.0, 1.0) * 1e-9  # m
    t = bv_to_temperature(bv)[:, None]
    hc_k = 6.62607015e-34 * 2.99792458e8 / 1.380649e-23
    # photon flux density of a blackbody: B_lambda * lambda / (h c) ~ lambda^-4 / (exp - 1)
    photons = lam ** -4 / np.expm1(hc_k / (lam * t))
    curves = np.stack([np.exp(-0.5 * ((lam * 1e9 - c) / (w / 2.3548)) ** 2) for c, w in _FILTERS])
    curves[:, lam * 1e9 > _IR_CUT_NM] = 0.0
    resp = photons @ curves.T  # (n_bv, 3)
    return bv, resp / resp[:, 1:2]


def channel_response(bv: Any) -> np.ndarray:
    """Camera signal R, G, B of a star of colour ``bv``, normalised to G = 1; (..., 3)."""
    table_bv, table = _response_table()
    bv = np.clip(np.asarray(bv, dtype=np.float64), table_bv[0], table_bv[-1])
    return np.stack([np.interp(bv, table_bv, table[:, c]) for c in range(3)], axis=-1)


def expected_ratios(bv: Any, white: str = "g2v") -> np.ndarray:
    """R/G and B/G a star of colour ``bv`` has once the image is white-balanced on ``white``.

    Returns
    -------
    ndarray, shape (..., 2)
        1.0 for a star of the reference's own B-V.
    """
    if white not in WHITE_BV:
        raise ValueError(f"white reference must be one of {sorted(WHITE_BV)}, got {white!r}")
    r = channel_response(bv) / channel_response(WHITE_BV[white])
    return r[..., [0, 2]]


# ----------------------------------------------------------------------------- background

def _clipped_stats(values: np.ndarray, k: float = 3.0, n_iter: int = 5) -> tuple[float, float, int]:
    """Sigma-clipped (MAD) median, standard deviation and count of finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    for _ in range(n_iter):
        med = np.median(v)
        sig = mad_sigma(v)
        if sig == 0:
            break
        keep = np.abs(v - med) < k * sig
        if keep.all():
            break
        v = v[keep]
    return float(np.median(v)), float(np.std(v)), int(v.size)


def background_levels(data: np.ndarray, *, region: Sequence[int] | None = None,
                      points: np.ndarray | None = None, box: int = 15,
                      name: str = "image") -> np.ndarray:
    """Background level of each channel (data units), robust to stars and nebulae.

    Parameters
    ----------
    data : ndarray, shape (3, H, W)
    region : (y0, x0, y1, x1), optional
        A user-drawn box of pure background (pixel rows/cols, end exclusive).
    points : ndarray, shape (N, 2), optional
        Background samples (row, col): the median of a ``box`` x ``box`` box around
        each, then the median over samples (per channel).
    box : int, default 15
        Sample box size, pixels.

    Without a region or points: sigma-clipped median of about 250 000 pixels spread
    over the whole image (stars and bright nebula are clipped out; a background
    covering less than half the image needs a region).
    """
    c, h, w = data.shape
    if region is not None:
        y0, x0, y1, x1 = (int(v) for v in region)
        y0, y1 = max(0, min(y0, y1)), min(h, max(y0, y1))
        x0, x1 = max(0, min(x0, x1)), min(w, max(x0, x1))
        if y1 - y0 < 3 or x1 - x0 < 3:
            raise BadInputError("region", f"background region {tuple(region)} is empty or outside "
                                f"the {w}x{h} image")
        return np.array([_clipped_stats(data[i, y0:y1, x0:x1].ravel())[0] for i in range(c)])
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        half = max(1, box // 2)
        vals = []
        for r, q in pts:
            r, q = int(round(r)), int(round(q))
            if not (0 <= r < h and 0 <= q < w):
                continue
            patch = data[:, max(0, r - half):r + half + 1, max(0, q - half):q + half + 1]
            vals.append([_clipped_stats(patch[i].ravel())[0] for i in range(c)])
        if not vals:
            raise BadInputError("points", "no background sample lies inside the image")
        return np.nanmedian(np.asarray(vals), axis=0)
    step = max(1, int(np.sqrt(h * w / 250_000)))
    sub = data[:, ::step, ::step].reshape(c, -1)
    ok = np.all(np.isfinite(sub), axis=0)
    if ok.sum() < 100:
        raise BadInputError(name, "no valid background pixels")
    sub = sub[:, ok]
    # clip on the luminance so that all channels drop the same (star/nebula) pixels
    lum = sub.mean(axis=0)
    med = np.median(lum)
    for _ in range(6):
        sig = MAD_SIGMA * np.median(np.abs(lum - med))  # about the running median
        keep = np.abs(lum - med) < 3.0 * sig if sig > 0 else np.ones_like(lum, bool)
        new = np.median(lum[keep])
        if new == med:
            break
        med = new
    return np.array([float(np.median(sub[i, keep])) for i in range(c)])


def apply_calibration(data: np.ndarray, factors: Sequence[float],
                      levels: Sequence[float]) -> np.ndarray:
    """``out_c = k_c (data_c - bg_c) + bg_G``: white balance with a neutral background.

    Parameters
    ----------
    data : ndarray, shape (3, H, W), float32
    factors : 3 floats
        ``k_R, k_G, k_B`` (``k_G`` normally 1).
    levels : 3 floats
        Background level of each channel before calibration.
    """
    k = np.asarray(factors, dtype=np.float64)
    bg = np.asarray(levels, dtype=np.float64)
    pedestal = bg[1] * k[1]
    out = np.empty_like(data, dtype=np.float32)
    for c in range(3):
        # one fused pass per channel: k*x + (pedestal - k*bg)
        np.multiply(data[c], np.float32(k[c]), out=out[c])
        out[c] += np.float32(pedestal - k[c] * bg[c])
    return out


# ----------------------------------------------------------------------------- photometry

def measure_stars(data: np.ndarray, xy: np.ndarray, fwhm: float, *,
                  saturation: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aperture photometry of stars in each channel with a local annulus background.

    Parameters
    ----------
    data : ndarray, shape (3, H, W)
    xy : ndarray, shape (N, 2)
        Star centres (column, row), 0-based.
    fwhm : float
        Typical FWHM [px]: aperture radius 1.5 FWHM (at least 3 px: 99.8% of a Gaussian
        star, the same fraction in every channel), annulus 3-5 FWHM.
    saturation : 3 floats, optional
        Per-channel levels at which a star counts as saturated (default: 97% of the
        channel's maximum when many pixels reach it, else none).

    Returns
    -------
    flux : ndarray, shape (N, 3)
        Background-subtracted fluxes (data units x px).
    ok : ndarray of bool, shape (N,)
        Unsaturated, fully inside the image, positive flux in every channel.
    flux_err : ndarray, shape (N, 3)
        Sky-noise error of each flux (annulus scatter x sqrt(aperture area), plus the
        error of the annulus median); the star's own photon noise is not included
        (no gain is known for a stack).
    """
    from photutils.aperture import CircularAnnulus, CircularAperture

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0, bool), np.zeros((0, 3))
    r = max(3.0, 1.5 * fwhm)
    r_in, r_out = max(r + 2.0, 3.0 * fwhm), max(r + 6.0, 5.0 * fwhm)
    _, h, w = data.shape
    inside = ((xy[:, 0] > r_out) & (xy[:, 0] < w - 1 - r_out)
              & (xy[:, 1] > r_out) & (xy[:, 1] < h - 1 - r_out))
    flux = np.full((n, 3), np.nan)
    err = np.full((n, 3), np.nan)
    ok = inside.copy()
    if not inside.any():
        return flux, ok, err
    # photutils' masks (exact aperture overlap) applied per star with plain numpy:
    # ApertureStats with a sigma-clipped annulus took ~15 ms a star and channel
    # (400 stars: 20 s on a 6000x4000 image); this loop takes ~0.1 ms.
    ap_masks = CircularAperture(xy[inside], r=r).to_mask(method="exact")
    ann_masks = CircularAnnulus(xy[inside], r_in=r_in, r_out=r_out).to_mask(method="center")
    idx = np.flatnonzero(inside)
    for c in range(3):
        img = data[c]
        if saturation is not None:
            sat = float(saturation[c])
        else:
            top = float(np.nanmax(img))
            sat = 0.97 * top if np.count_nonzero(img >= 0.97 * top) >= 5 else np.inf
        for k, (am, bm) in enumerate(zip(ap_masks, ann_masks)):
            cut = am.cutout(img, fill_value=np.nan)
            wts = am.data
            total = float(np.sum(cut * wts))
            area = float(np.sum(wts))
            peak = float(np.max(cut[wts > 0]))
            sky = bm.get_values(img)
            med, sd, n_sky = _clipped_stats(sky)
            f = total - med * area
            i = idx[k]
            flux[i, c] = f
            err[i, c] = sd * np.sqrt(area + 1.57 * area ** 2 / max(n_sky, 1))
            ok[i] &= bool(np.isfinite(f) and f > 0 and peak < sat)
    return flux, ok, err


def _robust_log_mean(values: np.ndarray, weights: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of log ratios with joint 3 MAD-sigma clipping.

    Parameters
    ----------
    values : ndarray, shape (N, 2)
        Per-star ratios (R and B channel); a star deviating in either is dropped from
        both, so both means describe the same stars.
    weights : ndarray, shape (N,) or (N, 2), optional
        Per-star (per-column) weights; default equal.

    Returns
    -------
    mean : ndarray (2,)
        Mean log ratio per column.
    error : ndarray (2,)
        Standard error of the mean (scatter / sqrt(N)), i.e. relative error of exp(mean).
    kept : ndarray of bool, shape (N,)
    """
    v = np.log(np.asarray(values, dtype=np.float64).reshape(-1, 2))
    wts = np.ones_like(v) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64).reshape(len(v), -1), v.shape)
    keep = np.all(np.isfinite(v) & np.isfinite(wts) & (wts > 0), axis=1)
    for _ in range(10):
        med = np.median(v[keep], axis=0)
        sig = np.maximum(MAD_SIGMA * np.median(np.abs(v[keep] - med), axis=0), 1e-4)
        new = keep & np.all(np.abs(v - med) < 3.0 * sig, axis=1)
        if new.sum() < 3:
            break
        if (new == keep).all():
            break
        keep = new
    w = wts[keep]
    m = np.sum(w * v[keep], axis=0) / np.sum(w, axis=0)
    n = int(keep.sum())
    spread = np.std(v[keep], axis=0) if n > 1 else np.zeros(2)
    return m, spread / np.sqrt(max(1, n)), keep


# ----------------------------------------------------------------------------- calibration

@dataclasses.dataclass
class ColorCalibration:
    """Result of :func:`calibrate_color`.

    Attributes
    ----------
    data : ndarray, shape (3, H, W), float32
        Calibrated image.
    factors : (float, float, float)
        ``k_R, 1, k_B`` applied after background subtraction.
    levels : (float, float, float)
        Background level of each channel before calibration (data units).
    method : str
        Method actually used ("photometric", "basic" after a fallback, "neutralize").
    stars : ndarray, shape (N, 2)
        (row, col) of the stars used in the fit (for a Points layer).
    star_bv : ndarray, shape (N,)
        Catalogue B-V of those stars (photometric), NaN otherwise.
    messages : list of str
    solution : PlateSolution or None
        The plate solution (photometric).
    factor_errors : (float, float)
        Relative standard errors of ``k_R`` and ``k_B`` (fit scatter / sqrt(N)).
    """

    data: np.ndarray
    factors: tuple[float, float, float]
    levels: tuple[float, float, float]
    method: str
    stars: np.ndarray
    star_bv: np.ndarray
    messages: list[str]
    solution: Any = None
    factor_errors: tuple[float, float] = (float("nan"), float("nan"))


def _detect(data: np.ndarray, levels: np.ndarray, max_stars: int):
    from .stars import detect_stars

    # float32 sum in place: no (3, H, W) temporary (6000x4000: 4 s -> 0.2 s)
    lum = np.add(data[0], data[1], dtype=np.float32)
    lum += data[2]
    lum *= np.float32(1.0 / 3.0)
    lum -= np.float32(np.mean(levels))
    np.nan_to_num(lum, copy=False, nan=0.0)
    h, w = lum.shape
    if h * w <= BIN_DETECTION_ABOVE:
        return detect_stars(lum, sigma=5.0, max_stars=max_stars)
    # Big images: detect on the 2x2-binned luminance (6000x4000: 7 s -> 1.5 s). Colour
    # needs positions good to a few tenths of a pixel (apertures of 1.5 FWHM, matching
    # within 2.5 px), not the full-resolution centroids; a 2x2 bin also averages hot
    # pixels away, so the minimum FWHM can drop to what a sharp star binned gives.
    b = lum[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    st = detect_stars(b, sigma=5.0, max_stars=max_stars, fwhm_guess=1.5, min_fwhm=0.5)
    # binned pixel i covers pixels 2i and 2i+1: centre 2i + 0.5
    st.x = 2.0 * st.x + 0.5
    st.y = 2.0 * st.y + 0.5
    st.fwhm = 2.0 * st.fwhm
    return st


def basic_factors(data: np.ndarray, levels: np.ndarray, *, stars: Any = None,
                  max_stars: int = 400, name: str = "image") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Factors that make the average unsaturated star white.

    Returns
    -------
    factors : ndarray (3,)
    errors : ndarray (2,)
        Relative standard errors of k_R, k_B.
    xy_used : ndarray (N, 2)
        (column, row) of the stars kept by the fit.
    n : int
        Number of stars used.
    """
    if stars is None:
        stars = _detect(data, levels, max_stars)
    if len(stars) < 3:
        raise BadInputError(name, f"basic colour calibration needs stars; found {len(stars)}")
    fwhm = float(np.median(stars.fwhm))
    xy = np.column_stack([stars.x, stars.y])
    flux, ok, _ = measure_stars(data, xy, fwhm)
    if ok.sum() < 3:
        raise BadInputError(name, f"basic colour calibration: only {int(ok.sum())} unsaturated "
                            "stars could be measured")
    # "the average star": every well-measured star counts the same (an SNR weight would
    # let the few brightest stars' own colours set the balance)
    snr = np.nan_to_num(np.asarray(stars.snr, dtype=np.float64), posinf=1e6)
    good = ok & (snr >= 20.0)
    if good.sum() >= 8:
        ok = good
    f = flux[ok]
    m, e, keep = _robust_log_mean(f[:, [0, 2]] / f[:, 1:2])
    factors = np.array([np.exp(-m[0]), 1.0, np.exp(-m[1])])
    return factors, e, xy[ok][keep], int(keep.sum())


def match_catalog(solution: Any, shape2d: tuple[int, int], stars: Any, *,
                  mag_limit: float | None = None, tolerance_px: float | None = None):
    """Catalogue stars in a solved field matched to detected stars.

    Returns
    -------
    det_index : ndarray of int
        Indices into ``stars`` of the matched detections.
    cat : structured ndarray
        The matched catalogue rows (:data:`.catalog.CATALOG_DTYPE`).
    """
    from scipy.spatial import cKDTree

    from .catalog import angular_separation, stars_in_cone

    h, w = shape2d
    wcs = solution.wcs
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    sky = wcs.all_pix2world(corners, 0)
    radius = float(np.max(angular_separation(solution.ra_deg, solution.dec_deg, sky[:, 0], sky[:, 1])))
    cat = stars_in_cone(solution.ra_deg, solution.dec_deg, radius * 1.02 + 0.01, mag_limit=mag_limit)
    empty = (np.zeros(0, int), cat[:0])
    if len(cat) == 0 or len(stars) == 0:
        return empty
    pix = wcs.all_world2pix(np.column_stack([cat["ra"], cat["dec"]]), 0)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] <= w - 1) & (pix[:, 1] >= 0) & (pix[:, 1] <= h - 1)
    cat, pix = cat[inside], pix[inside]
    if len(cat) == 0:
        return empty
    fwhm = float(np.median(stars.fwhm))
    tol = tolerance_px if tolerance_px is not None else max(2.5, 1.5 * fwhm)
    det = np.column_stack([stars.x, stars.y])
    d, j = cKDTree(det).query(pix, distance_upper_bound=tol)
    hit = np.isfinite(d)
    # isolation: no other catalogue star within the photometry annulus (blends)
    ctree = cKDTree(pix)
    crowd = np.array([len(ctree.query_ball_point(p, max(6.0, 5.0 * fwhm))) > 1 for p in pix])
    hit &= ~crowd
    # a detection claimed by two catalogue stars is ambiguous
    jj = j[hit]
    uniq, counts = np.unique(jj, return_counts=True)
    dup = set(uniq[counts > 1].tolist())
    sel = np.flatnonzero(hit)
    sel = np.array([i for i in sel if j[i] not in dup], dtype=int)
    if len(sel) == 0:
        return empty
    return j[sel].astype(int), cat[sel]


def photometric_factors(data: np.ndarray, levels: np.ndarray, solution: Any, *,
                        white: str = "g2v", stars: Any = None, max_stars: int = 2000,
                        mag_limit: float | None = None):
    """Factors fitted on catalogue stars; see the module docstring.

    Returns
    -------
    factors : ndarray (3,), errors : ndarray (2,), xy_used : ndarray (N, 2), bv_used :
    ndarray (N,), n_matched : int (matched catalogue stars before measurement/clipping)
    """
    if stars is None:
        stars = _detect(data, levels, max_stars)
    det_idx, cat = match_catalog(solution, data.shape[1:], stars, mag_limit=mag_limit)
    if len(det_idx) == 0:
        return None, None, np.zeros((0, 2)), np.zeros(0), 0
    fwhm = float(np.median(stars.fwhm))
    xy = np.column_stack([np.asarray(stars.x)[det_idx], np.asarray(stars.y)[det_idx]])
    flux, ok, ferr = measure_stars(data, xy, fwhm)
    if ok.sum() < 3:
        return None, None, np.zeros((0, 2)), np.zeros(0), int(len(det_idx))
    f, fe, bv = flux[ok], ferr[ok], np.asarray(cat["bv"], dtype=np.float64)[ok]
    exp = expected_ratios(bv, white)
    # inverse-variance weights of each log ratio: sky noise of both channels plus a 2%
    # floor for the colour model itself (real spectra are not blackbodies)
    rel = (fe / f) ** 2
    var = rel[:, [0, 2]] + rel[:, 1:2] + MODEL_SCATTER ** 2
    wts = 1.0 / var
    m, e, keep = _robust_log_mean(exp * f[:, 1:2] / f[:, [0, 2]], wts)
    factors = np.array([np.exp(m[0]), 1.0, np.exp(m[1])])
    return factors, e, xy[ok][keep], bv[keep], int(len(det_idx))


def calibrate_color(image: Any, *, method: str = "photometric", white: str = "g2v",
                    region: Sequence[int] | None = None, points: np.ndarray | None = None,
                    min_stars: int = 8, timeout: float = 60.0, solution: Any = None,
                    progress: Any = None, cancel: Any = None) -> ColorCalibration:
    """Colour-calibrate a linear RGB :class:`~napari_astro.core.image.AstroImage`.

    Parameters
    ----------
    image : AstroImage
        Colour, ``(3, H, W)``, linear (before any stretch), background not yet
        neutralised or already so (either works).
    method : {"photometric", "basic", "neutralize"}
    white : {"g2v", "galaxy"}
        White reference of the photometric method (see :data:`WHITE_BV`).
    region, points : optional
        Where the background is (see :func:`background_levels`).
    min_stars : int, default 8
        Measured catalogue stars needed by the photometric fit; fewer -> basic. (The
        catalogue stops at V ~ 10.5: a 1 x 0.7 degree field far from the Milky Way
        holds only about 5, a third of them saturated in a typical stack.)
    timeout : float, default 60
        Plate-solve time limit, seconds.
    solution : PlateSolution, optional
        Reuse a plate solution (skips the solve); by default an existing WCS in the
        header is NOT trusted blindly: the image is solved.

    Raises
    ------
    BadInputError
        Grayscale input; a failed or timed-out solve (photometric).
    """
    name = image.path or "image"
    if not image.is_color:
        raise BadInputError(name, "colour calibration needs an RGB image, this one is grayscale")
    if method not in ("photometric", "basic", "neutralize"):
        raise BadInputError("method", f"unknown colour calibration method {method!r}")
    if white not in WHITE_BV:
        raise BadInputError("white", f"unknown white reference {white!r}")
    data = image.data
    report(progress, 0.05, 1.0, "background levels", cancel)
    levels = background_levels(data, region=region, points=points, name=name)
    if not np.all(np.isfinite(levels)):
        raise BadInputError(name, "background level is not finite in every channel")
    messages: list[str] = []
    factors = np.ones(3)
    errors = np.array([np.nan, np.nan])
    used_xy = np.zeros((0, 2))
    used_bv = np.zeros(0)
    used = method
    if method == "photometric":
        from .solve import solve_image

        report(progress, 0.1, 1.0, "plate solving", cancel)
        # catalogue stars (V < 10.5) are among the brightest few hundred detections
        stars = _detect(data, levels, 600)
        if solution is None:
            solution = solve_image(image, stars=stars.brightest(150) if len(stars) > 150 else stars,
                                   timeout=timeout, cancel=cancel)
        messages.append(solution.summary())
        report(progress, 0.6, 1.0, "catalogue photometry", cancel)
        k, e, xy, bv, n_match = photometric_factors(data, levels, solution, white=white, stars=stars)
        if k is None or len(xy) < min_stars:
            messages.append(f"photometric calibration fell back to basic: {len(xy)} usable "
                            f"catalogue stars in the field ({n_match} matched; {min_stars} needed)")
            used = "basic"
            factors, errors, used_xy, _ = basic_factors(data, levels, stars=stars, name=name)
            used_bv = np.full(len(used_xy), np.nan)
        else:
            factors, errors, used_xy, used_bv = k, e, xy, bv
            messages.append(f"photometric: {len(xy)} catalogue stars (white {white}); "
                            f"factors R {k[0]:.4f} (±{100 * e[0]:.1f}%) G 1 "
                            f"B {k[2]:.4f} (±{100 * e[1]:.1f}%)")
    elif method == "basic":
        report(progress, 0.3, 1.0, "star photometry", cancel)
        factors, errors, used_xy, n = basic_factors(data, levels, name=name)
        used_bv = np.full(len(used_xy), np.nan)
        messages.append(f"basic: {n} stars made white on average; factors R {factors[0]:.4f} "
                        f"G 1 B {factors[2]:.4f}")
    else:
        messages.append("background neutralised: levels R {:.5g} G {:.5g} B {:.5g}".format(*levels))
    report(progress, 0.9, 1.0, "applying", cancel)
    out = apply_calibration(data, factors, levels)
    return ColorCalibration(data=out, factors=tuple(float(v) for v in factors),
                            levels=tuple(float(v) for v in levels), method=used,
                            stars=np.asarray(used_xy)[:, ::-1].copy() if len(used_xy) else np.zeros((0, 2)),
                            star_bv=np.asarray(used_bv, dtype=np.float64), messages=messages,
                            solution=solution,
                            factor_errors=tuple(float(v) for v in errors))
