"""Autofocus: half-flux radius (HFR) of the stars at a run of focuser positions, a
hyperbola fitted through them, the focuser moved to its vertex.

HFR of a star = sum(flux_i * r_i) / sum(flux_i) over its background-subtracted pixels
within a radius (the definition NINA and Ekos use); a frame's HFR is the median over
its brightest unsaturated stars. Near focus HFR(x) follows a hyperbola
``a * sqrt(1 + ((x - c) / b)^2)`` (the geometric defocus blur added to the seeing
disc), whose vertex ``c`` is the best focus.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

__all__ = ["frame_hfr", "fit_hyperbola", "autofocus", "FocusResult"]


def frame_hfr(data: np.ndarray, *, max_stars: int = 40, radius: int = 12) -> tuple[float, int]:
    """Median HFR [px] of the brightest unsaturated stars, and how many were used."""
    from ..core.stars import detect_stars

    img = np.asarray(data, dtype=np.float32)
    stars = detect_stars(img, sigma=5.0, max_stars=max_stars * 2)
    h, w = img.shape
    sat = 0.95 * float(img.max())
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    rr = np.hypot(yy, xx)
    inside = rr <= radius
    ring = (rr > radius - 2) & inside
    order = np.argsort(-np.asarray(stars.flux))
    hfrs = []
    for i in order:
        x, y = int(round(float(stars.x[i]))), int(round(float(stars.y[i])))
        if not (radius <= x < w - radius and radius <= y < h - radius):
            continue
        cut = img[y - radius:y + radius + 1, x - radius:x + radius + 1]
        if cut.max() >= sat:
            continue
        f = cut - np.median(cut[ring])
        f = np.where(inside & (f > 0), f, 0.0)
        total = f.sum()
        if total <= 0:
            continue
        # centroid first: the HFR is about the star's centre, not the pixel grid's
        cy, cx = (f * yy).sum() / total, (f * xx).sum() / total
        r = np.hypot(yy - cy, xx - cx)
        hfrs.append(float((f * r).sum() / total))
        if len(hfrs) >= max_stars:
            break
    return (float(np.median(hfrs)) if hfrs else float("nan")), len(hfrs)


def fit_hyperbola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Fit ``a * sqrt(1 + ((x - c) / b)^2)``; returns (a, b, c)."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    i = int(np.argmin(y))
    span = float(x.max() - x.min()) or 1.0

    def f(x, a, b, c):
        return a * np.sqrt(1.0 + ((x - c) / b) ** 2)

    p0 = (float(y[i]), span / 4, float(x[i]))
    (a, b, c), _ = curve_fit(f, x, y, p0=p0, bounds=([1e-3, span / 1000, x.min() - span],
                                                      [np.inf, np.inf, x.max() + span]),
                             maxfev=5000)
    return float(a), float(abs(b)), float(c)


@dataclasses.dataclass
class FocusResult:
    """Positions tried, their HFR [px], the fit (a, b, c) and the position chosen."""

    positions: list
    hfr: list
    fit: tuple
    best: int


def autofocus(eq, *, step: int = 2000, points: int = 9, exposure: float = 1.0,
              centre: int | None = None, max_passes: int = 3,
              log: Callable[[str], None] | None = None) -> FocusResult:
    """Run the focuser through ``points`` positions ``step`` apart around ``centre``
    (default: where it is), fit the hyperbola, move to its vertex. When the lowest
    HFR is at an end of the run the run is shifted there and repeated (up to
    ``max_passes``)."""
    log = log or (lambda m: None)
    foc, cam = eq.focuser, eq.camera
    centre = foc.position() if centre is None else int(centre)
    positions: list[int] = []
    hfr: list[float] = []
    for _ in range(max_passes):
        run = [int(centre + (k - (points - 1) / 2) * step) for k in range(points)]
        for p in run:
            if p in positions:
                continue
            foc.move_to(max(p, 0))
            value, n = frame_hfr(cam.expose(exposure, "light").data)
            positions.append(p)
            hfr.append(value)
            log(f"focus {p}: HFR {value:.2f} px ({n} stars)")
        order = np.argsort(positions)
        xs, ys = np.array(positions)[order], np.array(hfr)[order]
        i = int(np.nanargmin(ys))
        if 0 < i < len(xs) - 1:
            break
        centre = int(xs[i])
    a, b, c = fit_hyperbola(xs, ys)
    best = int(round(c))
    foc.move_to(best)
    log(f"best focus {best} (HFR {a:.2f} px at the vertex)")
    return FocusResult(list(map(int, xs)), list(map(float, ys)), (a, b, c), best)
