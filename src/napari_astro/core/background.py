"""Background extraction: samples, rejection, a smooth model, subtraction or division.

The approach of PixInsight's DBE, Siril's background extraction and GraXpert, in
four separable pieces (find, then apply: the model exists before it is applied):

1. :func:`grid_points` puts sample boxes on a grid (``per_row`` across, rows to
   match the aspect ratio); users may give their own points instead.
2. :func:`measure_samples` gives each box a robust value per channel: stars are
   masked (pixels well above the box's level after light smoothing, dilated), then
   a sigma-clipped median of the rest. It also measures how "background-like" the
   box is: the spread of its pixels about a plane against the noise from pixel
   differences (1 for pure noise, more on nebulosity or star halos).
3. :func:`reject_samples` keeps boxes that look like sky: a box is rejected when its
   spread ratio is high (structure inside the box) or when its value stands more
   than ``tolerance`` robust spreads above a low-order surface through the samples
   (nebulosity, galaxy halos, bright star haloes: the model would make a dark halo
   around them), iterated until stable. The spread is the MAD of the samples'
   residuals, floored at the sample noise.
4. :func:`fit_model` fits, per channel, a thin-plate RBF with smoothing
   (:class:`scipy.interpolate.RBFInterpolator`; the smoothing chosen by k-fold
   cross-validation when not given) or a polynomial of degree 1-4, evaluated on a
   reduced grid and upsampled with a bicubic spline
   (:class:`scipy.interpolate.RectBivariateSpline`), so fitting is interactive.
   :func:`apply_model` subtracts it (adding back its median, so the sky level is
   kept) or divides by it normalised to its median (vignetting).

:func:`extract_background` chains them. Samples travel as a :class:`SampleTable`
(x, y in px, value per channel, used), saved/loaded as CSV.
"""


from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional, Sequence

import numpy as np

from .errors import BadInputError
from .image import AstroImage
from .progress import report
from .background_samples import (SCATTER_LIMIT, SPREAD_LIMIT, SampleTable, _clipped_median,  # noqa: F401
                                 _poly_design, _poly_terms, _valid_pixels, check_points,
                                 default_box_size, grid_points, measure_samples,
                                 read_samples_csv, reject_samples, sample_scatter,
                                 write_samples_csv)

__all__ = ["SampleTable", "BackgroundModel", "grid_points", "measure_samples",
           "reject_samples", "fit_model", "apply_model", "extract_background",
           "read_samples_csv", "write_samples_csv", "default_box_size", "MODELS"]

MODELS = ("rbf", "poly1", "poly2", "poly3", "poly4")


@dataclasses.dataclass
class BackgroundModel:
    """A fitted background model.

    Attributes
    ----------
    coarse : ndarray (C, h, w)
        The model on the reduced grid (nodes at rows ``ys``, columns ``xs``).
    ys, xs : ndarray
        Node positions, px (first 0, last H-1 / W-1).
    shape2d : (H, W)
        Full image size.
    kind : str
        ``"rbf"`` or ``"polyN"``.
    smoothing : list of float
        RBF smoothing per channel (empty for polynomials).
    """

    coarse: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    shape2d: tuple[int, int]
    kind: str
    smoothing: list

    @property
    def step(self) -> float:
        """Node spacing of the reduced grid, px."""
        return float(self.xs[1] - self.xs[0]) if self.xs.size > 1 else 1.0

    def full(self, *, progress=None) -> np.ndarray:
        """``(C, H, W)`` float32 model at full resolution (bicubic spline through the
        reduced grid's nodes)."""
        from scipy.interpolate import RectBivariateSpline

        h, w = self.shape2d
        c = self.coarse.shape[0]
        out = np.empty((c, h, w), np.float32)
        if self.ys.size == h and self.xs.size == w:
            out[:] = self.coarse
            return out
        ky, kx = min(3, self.ys.size - 1), min(3, self.xs.size - 1)
        yf, xf = np.arange(h, dtype=float), np.arange(w, dtype=float)
        band = max(1, int(8e6 // max(w, 1)))  # rows per chunk: bounds the float64 temporaries
        for k in range(c):
            spl = RectBivariateSpline(self.ys, self.xs, self.coarse[k], kx=kx, ky=ky, s=0)
            for r0 in range(0, h, band):
                out[k, r0:r0 + band] = spl(yf[r0:r0 + band], xf)
            report(progress, k + 1, c, "model at full resolution")
        return out


def _reduced_grid(shape2d, step: Optional[float] = None, max_nodes: int = 256):
    h, w = shape2d
    if step is None:
        step = max(1.0, max(h, w) / max_nodes)
    ny = max(int(math.ceil((h - 1) / step)) + 1, 2)
    nx = max(int(math.ceil((w - 1) / step)) + 1, 2)
    return np.linspace(0, h - 1, min(ny, h)), np.linspace(0, w - 1, min(nx, w))


def _rbf_cv_smoothing(xy: np.ndarray, y: np.ndarray, candidates: Sequence[float], folds: int = 5,
                      seed: int = 0) -> float:
    """Smoothing with the least k-fold cross-validation error (thin-plate RBF)."""
    from scipy.interpolate import RBFInterpolator

    n = y.size
    if n < 2 * folds:
        return float(candidates[len(candidates) // 2])
    order = np.random.default_rng(seed).permutation(n)
    groups = np.array_split(order, folds)
    best, best_err = candidates[0], math.inf
    for sm in candidates:
        err = 0.0
        for g in groups:
            train = np.ones(n, bool)
            train[g] = False
            f = RBFInterpolator(xy[train], y[train], kernel="thin_plate_spline", smoothing=sm, degree=_rbf_degree(n))
            err += float(np.sum((f(xy[g]) - y[g]) ** 2))
        if err < best_err * (1 - 1e-9):
            best, best_err = sm, err
    return float(best)


def _rbf_degree(n: int) -> int:
    """Polynomial degree under the thin-plate RBF for ``n`` samples.

    Smoothing pulls the RBF towards this polynomial rather than a plane. Degree 4
    (when there are samples enough to carry its 15 terms twice) follows a
    vignetting's r^4 fall-off across a hole left by a rejected nebula: with exact
    sample values the residual was 0.11 % of the sky at degree 2, 0.015 % at 4.
    """
    return 4 if n >= 30 else 3 if n >= 20 else 2 if n >= 12 else 1


#: Smoothing values tried by cross-validation (coordinates scaled to the longer side).
SMOOTHING_GRID = tuple(10.0 ** e for e in np.arange(-7.0, 0.5, 0.5))


def fit_model(table: SampleTable, shape2d: tuple[int, int], *, model: str = "rbf",
              smoothing: Optional[float] = None, step: Optional[float] = None,
              max_nodes: int = 256) -> BackgroundModel:
    """Fit the background model to the used samples, per channel.

    Parameters
    ----------
    table : SampleTable
    shape2d : (H, W)
    model : {"rbf", "poly1", "poly2", "poly3", "poly4"}
        Thin-plate RBF with smoothing (default) or a polynomial of total degree N.
    smoothing : float, optional
        RBF smoothing (coordinates scaled to the image's longer side = 1); None
        chooses it by 5-fold cross-validation among :data:`SMOOTHING_GRID`.
    step : float, optional
        Node spacing of the reduced evaluation grid, px (default: longer side /
        ``max_nodes``).

    Raises
    ------
    BadInputError
        Too few used samples for the model.
    """
    if model not in MODELS:
        raise BadInputError("model", f"{model!r} is not one of {'|'.join(MODELS)}")
    used = np.asarray(table.used, bool)
    k = int(used.sum())
    deg = int(model[4:]) if model.startswith("poly") else None
    need = len(_poly_terms(deg)) if deg else 3
    if k < need:
        raise BadInputError(None, f"no background left to model: {k} of {len(table)} samples "
                                  f"survived (star/nebula rejection), {model} needs at least {need}; "
                                  "raise the tolerance or place samples on the sky by hand")
    h, w = shape2d
    s = max(h, w)
    ys, xs = _reduced_grid(shape2d, step, max_nodes)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    nodes = np.stack([gy.ravel() / s, gx.ravel() / s], axis=1)
    xy = np.stack([table.y[used] / s, table.x[used] / s], axis=1)
    c = table.values.shape[1]
    coarse = np.empty((c, ys.size, xs.size), np.float32)
    smooths = []
    if deg:
        # centred, scaled coordinates keep the normal equations well conditioned
        cu, cv = (w - 1) / 2 / s, (h - 1) / 2 / s
        a = _poly_design(xy[:, 1] - cu, xy[:, 0] - cv, deg)
        an = _poly_design(nodes[:, 1] - cu, nodes[:, 0] - cv, deg)
        for ch in range(c):
            coef, *_ = np.linalg.lstsq(a, table.values[used, ch], rcond=None)
            coarse[ch] = (an @ coef).reshape(ys.size, xs.size)
    else:
        from scipy.interpolate import RBFInterpolator

        for ch in range(c):
            y = table.values[used, ch].astype(float)
            # fit about the mean with unit scale so one smoothing grid suits any level
            mu, sd = float(np.mean(y)), float(np.std(y)) or 1.0
            yn = (y - mu) / sd
            sm = smoothing if smoothing is not None else _rbf_cv_smoothing(xy, yn, SMOOTHING_GRID)
            f = RBFInterpolator(xy, yn, kernel="thin_plate_spline", smoothing=sm, degree=_rbf_degree(yn.size))
            coarse[ch] = (f(nodes) * sd + mu).reshape(ys.size, xs.size)
            smooths.append(float(sm))
    return BackgroundModel(coarse=coarse, ys=ys, xs=xs, shape2d=(h, w), kind=model,
                           smoothing=smooths)


def apply_model(image: AstroImage, model_full: np.ndarray, *,
                mode: Literal["subtract", "divide"] = "subtract") -> np.ndarray:
    """Correct ``image`` with a full-resolution model ``(C, H, W)``.

    subtract: ``image - model + median(model)`` per channel (the sky level and the
    channel balance are kept); divide: ``image / (model / median(model))``
    (vignetting; the level at the model's median is kept). NaN pixels stay NaN;
    the result is clipped to [0, 1].
    """
    data = image.data if image.is_color else image.data[None]
    out = np.empty_like(data, dtype=np.float32)
    for k in range(data.shape[0]):
        m = model_full[k]
        med = float(np.median(m[:: max(1, m.shape[0] // 512), :: max(1, m.shape[1] // 512)]))
        if mode == "subtract":
            np.subtract(data[k], m, out=out[k])
            out[k] += med
        elif mode == "divide":
            if med <= 0:
                raise BadInputError(image.path or "image", "the background model is not positive: "
                                                          "division is meaningless (use subtract)")
            norm = np.maximum(m / med, 1e-3).astype(np.float32)
            np.divide(data[k], norm, out=out[k])
        else:
            raise BadInputError("mode", f"{mode!r} is not subtract|divide")
    np.clip(out, 0.0, 1.0, out=out)
    return out if image.is_color else out[0]


# =========================================================================== chain
def sample_background(image: AstroImage, points: Optional[np.ndarray] = None, *,
                      per_row: int = 12, box_size: Optional[int] = None,
                      tolerance: float = 2.0, cancel=None) -> SampleTable:
    """Measure and classify samples (grid if ``points`` is None), see the module doc."""
    shape = image.shape2d
    b = int(box_size or default_box_size(shape, per_row))
    if points is None:
        pts = grid_points(shape, per_row, b)
    else:
        pts = np.asarray(points, float).reshape(-1, 2)
    valid = _valid_pixels(image)
    values, spread, _ = measure_samples(image, pts, box_size=b, valid=valid, cancel=cancel)
    # expected noise of a box median: 1.2533 sigma / sqrt(n) (sigma from the image)
    sig = _noise_sigma(image, valid)
    sample_noise = np.full(len(pts), 1.2533 * sig / b)
    used, reason = reject_samples(pts, values, spread, shape, tolerance=tolerance,
                                  sample_noise=sample_noise)
    scatter = sample_scatter(pts, values, used, shape, float(sample_noise[0]) if len(pts) else 0.0)
    table = SampleTable(x=pts[:, 1].copy(), y=pts[:, 0].copy(), values=values, used=used,
                        spread=spread, reason=reason, box_size=b, scatter=scatter)
    if scatter > SCATTER_LIMIT:
        raise BadInputError(image.path or "image",
                            f"no background left: the {int(used.sum())} samples that pass the "
                            f"rejection scatter {scatter:.0f} times their noise about any smooth "
                            "surface (nebulosity or a galaxy everywhere?); place samples on the "
                            "sky by hand")
    if not used.any():
        raise BadInputError(image.path or "image",
                            f"no background left: all {len(pts)} samples were rejected as stars, "
                            "nebulosity or empty pixels (raise the tolerance or place samples by hand)")
    return table


def _noise_sigma(image: AstroImage, valid: np.ndarray, bin: int = 2) -> float:
    """Per-pixel noise sigma that predicts the noise of a box mean (``sigma / b`` for
    a ``b x b`` box).

    A stack's noise is correlated between neighbours (debayering, registration's
    interpolation), so the difference of adjacent pixels underestimates the noise of
    a box mean. The noise of ``bin x bin`` block means times ``bin`` does not; second
    differences of the blocks (``b[i-1] - 2 b[i] + b[i+1]``, sigma = MAD / sqrt 6)
    keep smooth structure out of it. Measured (sigma, and the scatter of the
    surviving samples in units of the sample noise; SCATTER_LIMIT refuses above 12):
    demo stack 1.3e-4 from pixel differences (scatter 12.7: a false refusal) vs
    2.1e-4 (7.9); Seestar M94 stack 2.5e-4 (4.8) vs 4.0e-4 (3.0; 4x4 blocks give
    4.1e-4: the correlation is caught); the all-nebula test images 2.1e-3 (37) vs
    2.1e-3 (37) and 1.8e-3 (56) vs 1.9e-3 (55). On white noise both agree.
    """
    lum = image.luminance()
    step = max(1, lum.shape[0] // 2048)
    sub = np.where(valid, lum, np.nan)[::step, ::step]
    k = bin if min(sub.shape) >= 16 * bin else 1
    h, w = sub.shape[0] // k * k, sub.shape[1] // k * k
    blocks = sub[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    d = (blocks[:, 2:] - 2.0 * blocks[:, 1:-1] + blocks[:, :-2]).ravel()
    d = d[np.isfinite(d)]
    if d.size < 10:
        return 0.0
    return float(k * 1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(6.0))


@dataclasses.dataclass
class BackgroundResult:
    """What :func:`extract_background` returns."""

    image: AstroImage          # corrected
    model: AstroImage          # full-resolution model
    samples: SampleTable
    fit: BackgroundModel


def extract_background(image: AstroImage, points: Optional[np.ndarray] = None, *,
                       per_row: int = 12, box_size: Optional[int] = None,
                       tolerance: float = 2.0, model: str = "rbf",
                       smoothing: Optional[float] = None,
                       mode: Literal["subtract", "divide"] = "subtract",
                       progress=None, cancel=None) -> BackgroundResult:
    """Sample, fit and correct the background of a linear image.

    Parameters
    ----------
    image : AstroImage
        Linear mono or colour image (not modified).
    points : ndarray (N, 2), optional
        Sample centres (row, col) px; default a grid of ``per_row`` across.
    per_row : int
        Grid samples across the width.
    box_size : int, optional
        Sample box side, px (default :func:`default_box_size`).
    tolerance : float
        Rejection threshold in robust spreads of the background samples.
    model : {"rbf", "poly1", ..., "poly4"}
    smoothing : float, optional
        RBF smoothing (None: cross-validated).
    mode : {"subtract", "divide"}
    progress, cancel
        See :mod:`napari_astro.core.progress`.

    Returns
    -------
    BackgroundResult

    Raises
    ------
    BadInputError
        No sample survives (an image with no background left), too few for the model.
    """
    report(progress, 0, 4, "measuring samples")
    table = sample_background(image, points, per_row=per_row, box_size=box_size,
                              tolerance=tolerance, cancel=cancel)
    if cancel is not None:
        cancel.check()
    report(progress, 1, 4, f"fitting {model} to {int(table.used.sum())}/{len(table)} samples")
    fit = fit_model(table, image.shape2d, model=model, smoothing=smoothing)
    if cancel is not None:
        cancel.check()
    report(progress, 2, 4, "model at full resolution")
    full = fit.full()
    if cancel is not None:
        cancel.check()
    report(progress, 3, 4, mode)
    data = apply_model(image, full, mode=mode)
    out = image.replace(data=data)
    model_img = AstroImage(data=full if image.is_color else full[0], header=image.header.copy(),
                           history=list(image.history), path=None)
    report(progress, 4, 4, "done")
    return BackgroundResult(image=out, model=model_img, samples=table, fit=fit)


# =========================================================================== CSV
