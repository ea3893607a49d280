"""Autofocus: half-flux radius (HFR) of the stars at a run of focuser positions, a
hyperbola fitted through them, the focuser moved to its vertex.

HFR of a star = sum(flux_i * r_i) / sum(flux_i) over its background-subtracted pixels
within a radius (the definition NINA and Ekos use); a frame's HFR is the median over
its brightest unsaturated stars. Near focus HFR(x) follows a hyperbola
``a * sqrt(1 + ((x - c) / b)^2)`` (the geometric defocus blur added to the seeing
disc), whose vertex ``c`` is the best focus.

Units: focuser positions in focuser steps, HFR in pixels of the camera frame.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..core.progress import CancelToken

__all__ = ["frame_hfr", "hyperbola", "fit_hyperbola", "autofocus", "FocusResult"]


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


def hyperbola(x, a: float, b: float, c: float) -> np.ndarray:
    """The focus model ``a * sqrt(1 + ((x - c) / b)^2)``: HFR [px] at positions ``x``
    [steps], ``a`` the HFR at the vertex [px], ``b`` the half-width [steps] where the
    HFR is ``a * sqrt(2)``, ``c`` the vertex (best focus) [steps]."""
    x = np.asarray(x, dtype=float)
    return a * np.sqrt(1.0 + ((x - c) / b) ** 2)


def fit_hyperbola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Fit :func:`hyperbola` to HFR ``y`` [px] at positions ``x`` [steps] (NaN HFRs
    left out); returns (a [px], b [steps], c [steps])."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    i = int(np.argmin(y))
    span = float(x.max() - x.min()) or 1.0

    p0 = (float(y[i]), span / 4, float(x[i]))
    (a, b, c), _ = curve_fit(hyperbola, x, y, p0=p0, bounds=([1e-3, span / 1000, x.min() - span],
                                                      [np.inf, np.inf, x.max() + span]),
                             maxfev=5000)
    return float(a), float(abs(b)), float(c)


@dataclasses.dataclass
class FocusResult:
    """Positions tried [steps] (sorted), their HFR [px], the fit (a [px], b [steps],
    c [steps]) of :func:`hyperbola` and the position chosen [steps]."""

    positions: list
    hfr: list
    fit: tuple
    best: int

    def curve(self, x) -> np.ndarray:
        """The fitted hyperbola's HFR [px] at focuser positions ``x`` [steps] (a
        number or an array; returns an array of ``x``'s shape)."""
        return hyperbola(x, *self.fit)


def autofocus(eq, *, step: int = 2000, points: int = 9, exposure: float = 1.0,
              centre: int | None = None, max_passes: int = 3,
              log: Callable[[str], None] | None = None,
              on_point: Callable[[int, float], None] | None = None,
              cancel: CancelToken | None = None) -> FocusResult:
    """Run the focuser through ``points`` positions ``step`` [focuser steps] apart
    around ``centre`` [steps] (default: where it is), exposing ``exposure`` [s] at
    each, fit the hyperbola, move to its vertex. When the lowest HFR is at an end of
    the run the run is shifted there and repeated (up to ``max_passes``).

    ``on_point(position [steps], hfr [px])`` is called after each measurement (on the
    calling thread; the HFR is NaN when no star was measured). ``cancel`` is checked
    before each focuser move: a cancelled run raises
    :class:`~napari_astro.core.progress.Cancelled` and leaves the focuser where that
    last measurement was taken (the caller decides where it goes)."""
    log = log or (lambda m: None)
    foc, cam = eq.focuser, eq.camera
    centre = foc.position() if centre is None else int(centre)
    positions: list[int] = []
    hfr: list[float] = []
    for _ in range(max_passes):
        run = [max(int(centre + (k - (points - 1) / 2) * step), 0) for k in range(points)]
        for p in run:
            if p in positions:
                continue
            if cancel is not None:
                cancel.check()
            foc.move_to(p)
            value, n = frame_hfr(cam.expose(exposure, "light").data)
            positions.append(p)
            hfr.append(value)
            log(f"focus {p}: HFR {value:.2f} px ({n} stars)")
            if on_point is not None:
                on_point(p, value)
        order = np.argsort(positions)
        xs, ys = np.array(positions)[order], np.array(hfr)[order]
        i = int(np.nanargmin(ys))
        if 0 < i < len(xs) - 1:
            break
        centre = int(xs[i])
    a, b, c = fit_hyperbola(xs, ys)
    best = int(round(c))
    if cancel is not None:
        cancel.check()
    foc.move_to(best)
    log(f"best focus {best} (HFR {a:.2f} px at the vertex)")
    return FocusResult(list(map(int, xs)), list(map(float, ys)), (a, b, c), best)
