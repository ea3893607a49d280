"""Background samples: where they go, what each measures, which ones are sky.

Steps 1-3 of :mod:`napari_astro.core.background` (grid, robust box values with stars
masked, rejection of boxes on stars or nebulosity) and the samples' CSV format; the
model fitted through the samples is in :mod:`.background`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Optional

import numpy as np

from .errors import BadInputError
from .image import AstroImage

__all__ = ["SampleTable", "grid_points", "measure_samples", "reject_samples", "sample_scatter",
           "read_samples_csv", "write_samples_csv", "check_points", "default_box_size",
           "SCATTER_LIMIT", "SPREAD_LIMIT"]


MODELS = ("rbf", "poly1", "poly2", "poly3", "poly4")

#: Samples that scatter more than this many times their expected noise about a
#: smooth surface are not a sky background (measured: 1-3 on simulated skies with
#: a 9 % gradient, 30 % vignetting and a nebula; ~30 on an image all nebula).
SCATTER_LIMIT = 12.0

#: A box whose pixel spread about a plane exceeds this many times the noise from
#: pixel differences has structure inside it (nebulosity, unmasked star halos).
SPREAD_LIMIT = 1.5


# =========================================================================== samples
@dataclasses.dataclass
class SampleTable:
    """Background samples.

    Attributes
    ----------
    x, y : ndarray (N,)
        Box centres, px (0-based, x = column, y = row).
    values : ndarray (N, C)
        Robust background value per channel (NaN when the box had too few valid
        pixels).
    used : ndarray (N,) of bool
        Whether the sample enters the model.
    spread : ndarray (N,)
        Pixel spread about a plane / noise (1 = pure noise).
    reason : list of str
        Why a sample is not used ("" when used): "invalid", "structure", "high",
        "low".
    box_size : int
        Box side, px.
    scatter : float
        Scatter of the used samples about a smooth surface in units of their
        expected noise (see :func:`sample_scatter`).
    """

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    used: np.ndarray
    spread: np.ndarray
    reason: list
    box_size: int
    scatter: float = 0.0

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def points(self) -> np.ndarray:
        """``(N, 2)`` (row, col): napari Points order."""
        return np.stack([self.y, self.x], axis=1).astype(float)

    def as_dict(self) -> dict:
        """Columns ``x, y, value`` (mono) or ``value_r, value_g, value_b``, ``used``."""
        out = {"x": self.x, "y": self.y}
        names = ["value"] if self.values.shape[1] == 1 else ["value_r", "value_g", "value_b"]
        for k, n in enumerate(names):
            out[n] = self.values[:, k]
        out["used"] = self.used
        return out


def default_box_size(shape2d: tuple[int, int], per_row: int) -> int:
    """Half the grid spacing, odd, within 9..101 px (larger boxes average more noise;
    smaller ones fit between stars and nebulae)."""
    spacing = shape2d[1] / max(per_row, 1)
    b = int(np.clip(round(spacing * 0.5), 9, 101))
    return b if b % 2 else b + 1


def grid_points(shape2d: tuple[int, int], per_row: int = 12, box_size: Optional[int] = None) -> np.ndarray:
    """Sample centres on a regular grid, as ``(N, 2)`` (row, col).

    Parameters
    ----------
    shape2d : (H, W)
    per_row : int
        Samples across the width; rows are spaced the same (``round(per_row H / W)``
        rows, at least 2).
    box_size : int, optional
        Box side, px (default :func:`default_box_size`): the grid keeps boxes inside
        the image.
    """
    h, w = shape2d
    b = box_size or default_box_size(shape2d, per_row)
    nx = max(int(per_row), 2)
    ny = max(int(round(nx * h / w)), 2)
    # The outer boxes are centred a quarter box from the edge (partly outside: their
    # value is the plane through their pixels, taken at the centre), so the model
    # is not extrapolated into the corners, where vignetting is steepest (measured:
    # 1.2 % of the sky at a corner with boxes kept inside, 30 % vignetting).
    inset = b / 4.0
    xs = np.linspace(inset, w - 1 - inset, nx)
    ys = np.linspace(inset, h - 1 - inset, ny)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def _clipped_median(v: np.ndarray, k: float = 2.5, iters: int = 5) -> float:
    """Sigma-clipped median (MAD sigma), the usual robust sky estimate."""
    for _ in range(iters):
        if v.size < 5:
            break
        m = np.median(v)
        s = 1.4826 * np.median(np.abs(v - m))
        if s <= 0:
            break
        keep = np.abs(v - m) < k * s
        if keep.all():
            break
        v = v[keep]
    return float(np.median(v)) if v.size else math.nan


def measure_samples(image: AstroImage, points: np.ndarray, *, box_size: int,
                    valid: Optional[np.ndarray] = None, star_sigma: float = 3.0,
                    cancel=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust value of each box, per channel, on star-masked pixels.

    Parameters
    ----------
    image : AstroImage
    points : ndarray (N, 2)
        Box centres (row, col), px.
    box_size : int
        Box side, px.
    valid : ndarray (H, W) of bool, optional
        Pixels holding data (default: finite and not zero in every channel, and the
        image's own mask).
    star_sigma : float
        Star mask threshold, in noise sigmas of the lightly smoothed box.

    Returns
    -------
    values : ndarray (N, C)
        Sigma-clipped medians; NaN for boxes with less than half their pixels valid
        or outside the image.
    spread : ndarray (N,)
        Robust spread of the unmasked pixels about a fitted plane, over the noise
        from horizontal pixel differences (about 1 for pure sky).
    masked : ndarray (N,)
        Fraction of the box's valid pixels masked as stars.
    """
    from scipy import ndimage

    data = image.data if image.is_color else image.data[None]
    c, h, w = data.shape
    if valid is None:
        valid = _valid_pixels(image)
    pts = np.asarray(points, float).reshape(-1, 2)
    n = pts.shape[0]
    values = np.full((n, c), np.nan)
    spread = np.full(n, np.nan)
    masked = np.zeros(n)
    half = box_size // 2
    struct = ndimage.generate_binary_structure(2, 2)
    for i, (r, q) in enumerate(pts):
        if cancel is not None and i % 16 == 0:
            cancel.check()
        y0, y1 = int(round(r)) - half, int(round(r)) + half + 1
        x0, x1 = int(round(q)) - half, int(round(q)) + half + 1
        y0c, y1c, x0c, x1c = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if y1c - y0c < 3 or x1c - x0c < 3:
            continue
        ok = valid[y0c:y1c, x0c:x1c]
        if ok.sum() < 0.25 * box_size * box_size:
            continue
        patch = data[:, y0c:y1c, x0c:x1c].astype(np.float64)
        lum = patch.mean(axis=0)
        # noise from horizontal differences of valid neighbours: blind to smooth
        # structure, so it measures the noise even on a nebula
        dif = (lum[:, 1:] - lum[:, :-1])[ok[:, 1:] & ok[:, :-1]]
        noise = 1.4826 * np.median(np.abs(dif - np.median(dif))) / math.sqrt(2.0) if dif.size > 8 else 0.0
        # The gradient across a box is not structure: work on residuals from a plane
        # (fitted twice, the second time without the bright outliers), else the
        # star mask eats the box's upper side and biases the value low (measured:
        # -1e-3 at the corners of a 30 % vignetting, 13 sample-noise sigmas).
        yy, xx = np.nonzero(ok)
        a = np.stack([np.ones(yy.size), yy - half, xx - half], axis=1)
        keep = np.ones(yy.size, bool)
        for _ in range(2):
            coef, *_ = np.linalg.lstsq(a[keep], lum[yy[keep], xx[keep]], rcond=None)
            res = lum[yy, xx] - a @ coef
            keep = res < 3.0 * noise if noise > 0 else keep
            if keep.sum() < 9:
                keep = np.ones(yy.size, bool)
        flat = np.zeros_like(lum)
        flat[yy, xx] = res
        # star mask: 3x3 mean lowers the noise 3x; stars stand out; dilate to take
        # their wings
        sm = ndimage.uniform_filter(flat, 3, mode="nearest")
        star = (sm > star_sigma * noise / 3.0) & ok if noise > 0 else np.zeros_like(ok)
        if star.any():
            star = ndimage.binary_dilation(star, struct, iterations=max(2, box_size // 12))
        use = ok & ~star
        masked[i] = 1.0 - use.sum() / max(ok.sum(), 1)
        if use.sum() < 0.25 * ok.sum() or use.sum() < 9:
            spread[i] = math.inf  # mostly stars/bright structure: no value, and why
            continue
        uy, ux = np.nonzero(use)
        au = np.stack([np.ones(uy.size), uy - half, ux - half], axis=1)
        for k in range(c):
            vk = patch[k][uy, ux]
            ck, *_ = np.linalg.lstsq(au, vk, rcond=None)
            # value at the box centre = plane there + clipped median of the residuals
            cy, cx = r - y0c - half, q - x0c - half
            values[i, k] = ck[0] + ck[1] * cy + ck[2] * cx + _clipped_median(vk - au @ ck)
        lres = flat[uy, ux] - np.median(flat[uy, ux])
        s = 1.4826 * np.median(np.abs(lres))
        spread[i] = s / noise if noise > 0 else (1.0 if s == 0 else math.inf)
    return values, spread, masked


def _valid_pixels(image: AstroImage) -> np.ndarray:
    data = image.data if image.is_color else image.data[None]
    ok = np.all(np.isfinite(data), axis=0) & np.any(data != 0, axis=0)
    if image.mask is not None:
        ok &= image.mask
    return ok


def _poly_terms(deg: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(deg + 1) for j in range(deg + 1 - i)]


def _poly_design(u: np.ndarray, v: np.ndarray, deg: int) -> np.ndarray:
    return np.stack([u ** i * v ** j for i, j in _poly_terms(deg)], axis=-1)


def reject_samples(points: np.ndarray, values: np.ndarray, spread: np.ndarray,
                   shape2d: tuple[int, int], *, tolerance: float = 2.0,
                   sample_noise: Optional[np.ndarray] = None,
                   iterations: int = 10) -> tuple[np.ndarray, list]:
    """Which samples are background.

    Parameters
    ----------
    points : ndarray (N, 2)
        (row, col), px.
    values : ndarray (N, C)
    spread : ndarray (N,)
        From :func:`measure_samples`.
    shape2d : (H, W)
    tolerance : float
        A sample more than ``tolerance`` robust spreads above the surface through
        the samples (or ``2 * tolerance`` below) is rejected; a sample whose pixel
        spread exceeds :data:`SPREAD_LIMIT` times the noise is rejected (structure).
    sample_noise : ndarray (N,) or (N, C), optional
        Expected noise of each value: floors the robust spread.
    iterations : int
        Maximum re-fits of the surface.

    Returns
    -------
    used : ndarray (N,) of bool
    reason : list of str
    """
    n, c = values.shape
    reason = [""] * n
    finite = np.all(np.isfinite(values), axis=1) & np.isfinite(spread)
    for i in np.nonzero(~finite)[0]:
        # no value because the box was mostly masked as stars (measure_samples sets
        # an infinite spread) is structure, not empty pixels
        reason[i] = "structure" if np.isposinf(spread[i]) else "invalid"
    struct = finite & (spread > SPREAD_LIMIT)
    for i in np.nonzero(struct)[0]:
        reason[i] = "structure"
    used = finite & ~struct
    h, w = shape2d
    s = max(h, w) / 2.0
    u = (points[:, 1] - (w - 1) / 2) / s
    v = (points[:, 0] - (h - 1) / 2) / s
    for _ in range(iterations):
        k = int(used.sum())
        # the degree the samples can carry: a 9 % gradient (ramp + dome) plus a 30 %
        # vignetting leaves < 0.5 sample-noise of misfit at degree 4, 1.5 at degree 3
        deg = 4 if k >= 40 else 3 if k >= 25 else 2 if k >= 12 else 1 if k >= 6 else 0
        a = _poly_design(u, v, deg)
        score = np.zeros(n)
        sign = np.zeros(n)
        for ch in range(c):
            y = values[:, ch]
            coef, *_ = np.linalg.lstsq(a[used], y[used], rcond=None)
            r = np.where(finite, y - a @ coef, 0.0)
            sig = 1.4826 * np.median(np.abs(r[used] - np.median(r[used]))) if k else 0.0
            if sample_noise is not None:
                sn = np.asarray(sample_noise, float)
                sn = sn[:, ch] if sn.ndim == 2 else sn
                floor = float(np.nanmedian(sn[used])) if k else 0.0
                sig = max(sig, floor)
            if sig <= 0:
                continue
            z = r / sig
            # positive outliers count fully, negative ones at half weight
            zz = np.where(z > 0, z, -0.5 * z)
            sign = np.where(zz > score, np.sign(z), sign)
            score = np.maximum(score, zz)
        new = finite & ~struct & (score <= tolerance)
        if np.array_equal(new, used):
            break
        used = new
    for i in np.nonzero(finite & ~struct & ~used)[0]:
        reason[i] = "high" if sign[i] >= 0 else "low"
    return used, reason


def sample_scatter(points: np.ndarray, values: np.ndarray, used: np.ndarray,
                   shape2d: tuple[int, int], sample_noise: float) -> float:
    """Robust scatter of the used samples about a low-order surface, in units of
    their expected noise (about 1-2 on a real sky; tens on an image with no
    background left, e.g. nebulosity everywhere)."""
    k = int(used.sum())
    if k < 6 or sample_noise <= 0:
        return 0.0
    h, w = shape2d
    s = max(h, w) / 2.0
    u = (points[used, 1] - (w - 1) / 2) / s
    v = (points[used, 0] - (h - 1) / 2) / s
    deg = 4 if k >= 40 else 3 if k >= 25 else 2 if k >= 12 else 1
    a = _poly_design(u, v, deg)
    out = 0.0
    for ch in range(values.shape[1]):
        y = values[used, ch]
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        r = y - a @ coef
        out = max(out, 1.4826 * float(np.median(np.abs(r - np.median(r)))) / sample_noise)
    return out


# =========================================================================== model

def read_samples_csv(path: "str | os.PathLike[str]") -> np.ndarray:
    """Sample positions from a CSV file with ``x`` and ``y`` columns (px, 0-based;
    other columns ignored), as ``(N, 2)`` (row, col).

    Raises
    ------
    BadInputError
        Missing file, no x/y header, a row whose x or y is not a finite number, or
        no rows; the message names the file and the row.
    """
    name = os.fspath(path)
    try:
        fh = open(name, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BadInputError(name, f"cannot read the samples file ({exc.strerror})") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise BadInputError(name, "is empty (expected a header with x,y columns)") from None
        except csv.Error as exc:
            raise BadInputError(name, f"is not CSV ({exc})") from None
        cols = [h.strip().lower() for h in header]
        if "x" not in cols or "y" not in cols:
            raise BadInputError(name, f"header {','.join(header)!r} has no x and y columns")
        ix, iy = cols.index("x"), cols.index("y")
        pts = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(ix, iy):
                    raise BadInputError(name, f"row {line}: {len(row)} fields, x and y need {max(ix, iy) + 1}")
                try:
                    x, y = float(row[ix]), float(row[iy])
                except ValueError:
                    raise BadInputError(name, f"row {line}: x={row[ix]!r}, y={row[iy]!r} are not numbers") from None
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise BadInputError(name, f"row {line}: x={row[ix]!r}, y={row[iy]!r} are not finite")
                pts.append((y, x))
        except csv.Error as exc:
            raise BadInputError(name, f"row {reader.line_num}: {exc}") from None
    if not pts:
        raise BadInputError(name, "has no sample rows")
    return np.asarray(pts, float)


def check_points(points: np.ndarray, shape2d: tuple[int, int], name: str) -> None:
    """Refuse sample positions outside the image (naming the file and the row)."""
    h, w = shape2d
    for i, (r, q) in enumerate(np.asarray(points).reshape(-1, 2)):
        if not (0 <= r <= h - 1 and 0 <= q <= w - 1):
            raise BadInputError(name, f"row {i + 2}: sample x={q:g}, y={r:g} is outside the "
                                      f"{w}x{h} px image")


def write_samples_csv(table: SampleTable, path: "str | os.PathLike[str]", *,
                      overwrite: bool = True) -> None:
    """Write ``x, y, value(s), used`` (atomically)."""
    from .io._atomic import atomic_output

    d = table.as_dict()
    names = list(d)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(names)
            for i in range(len(table)):
                row = []
                for n in names:
                    v = d[n][i]
                    row.append(int(bool(v)) if n == "used" else f"{float(v):.7g}")
                wr.writerow(row)
