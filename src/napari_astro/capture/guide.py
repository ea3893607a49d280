"""A built-in guider: one guide star on the guide camera, calibrated pulse directions,
proportional corrections through the mount's guide port.

Calibration pulses west then north (and back) and measures how far the star moves
per millisecond: two vectors in guide-camera pixels. A guide step measures the star
(intensity-weighted centroid in a box around its last position), splits its offset
from the lock position onto the two vectors, and sends
``-aggressiveness * offset`` as pulses, skipping moves under ``min_move`` pixels;
``hysteresis`` blends in the previous correction (as PHD2's hysteresis algorithm).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

__all__ = ["Guider", "GuideStats"]


@dataclasses.dataclass
class GuideStats:
    """Errors [px] of the guide frames (RA/Dec axes of the calibration) and their RMS."""

    ra: list
    dec: list

    @property
    def rms(self) -> float:
        e = np.hypot(self.ra, self.dec)
        return float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")


class Guider:
    """Guide with ``camera`` (a :class:`~.devices.Camera`) through ``port`` (the mount
    or the camera's ST-4: anything with ``guide_pulse(direction, ms)``)."""

    def __init__(self, camera, port, *, exposure: float = 1.0, aggressiveness: float = 0.8,
                 min_move: float = 0.1, hysteresis: float = 0.1, calibration_ms: float = 1000.0,
                 box: int = 24, log: Callable[[str], None] | None = None) -> None:
        self.camera, self.port = camera, port
        self.exposure, self.aggressiveness = exposure, aggressiveness
        self.min_move, self.hysteresis, self.calibration_ms = min_move, hysteresis, calibration_ms
        self.box = box
        self.log = log or (lambda m: None)
        self.star: np.ndarray | None = None       # last position (x, y)
        self.lock: np.ndarray | None = None       # where the star is kept
        self.ra_vec = self.dec_vec = None         # px per ms of a W / N pulse
        self._last = np.zeros(2)
        self.stats = GuideStats([], [])

    # -- measuring --------------------------------------------------------------------
    def _frame(self) -> np.ndarray:
        return self.camera.expose(self.exposure, "light", timeout=self.exposure + 60).data.astype(np.float32)

    def select_star(self) -> np.ndarray:
        """Pick the brightest unsaturated, isolated star away from the edges."""
        from ..core.stars import detect_stars

        img = self._frame()
        stars = detect_stars(img, sigma=8.0, max_stars=50)
        h, w = img.shape
        sat = 0.9 * float(img.max())
        for i in np.argsort(-np.asarray(stars.flux)):
            x, y = float(stars.x[i]), float(stars.y[i])
            if not (2 * self.box < x < w - 2 * self.box and 2 * self.box < y < h - 2 * self.box):
                continue
            if img[int(round(y)), int(round(x))] >= sat:
                continue
            self.star = np.array([x, y])
            self.lock = self.star.copy()
            self.log(f"guide star at ({x:.1f}, {y:.1f})")
            return self.star
        raise RuntimeError("no guide star found")

    def measure(self) -> np.ndarray:
        """The guide star's position in a new frame (centroid in a box)."""
        img = self._frame()
        b = self.box
        x, y = self.star
        h, w = img.shape
        for _ in range(2):   # re-centre the box once: the star may have moved
            x0, y0 = int(round(x)) - b, int(round(y)) - b
            x0, y0 = min(max(x0, 0), w - 2 * b - 1), min(max(y0, 0), h - 2 * b - 1)
            cut = img[y0:y0 + 2 * b + 1, x0:x0 + 2 * b + 1]
            f = cut - np.median(cut)
            f = np.where(f > 3 * max(np.std(cut[f < np.percentile(f, 80)]), 1e-3), f, 0.0)
            if f.sum() <= 0:
                raise RuntimeError("guide star lost")
            yy, xx = np.mgrid[0:cut.shape[0], 0:cut.shape[1]]
            x, y = x0 + (f * xx).sum() / f.sum(), y0 + (f * yy).sum() / f.sum()
        self.star = np.array([x, y])
        return self.star

    # -- calibration and guiding ------------------------------------------------------------
    def calibrate(self) -> tuple[np.ndarray, np.ndarray]:
        """Measure the star's motion per ms of W and N pulses (and pulse back)."""
        if self.star is None:
            self.select_star()
        vecs = []
        for go, back in (("W", "E"), ("N", "S")):
            start = self.measure()
            self.port.guide_pulse(go, self.calibration_ms)
            moved = self.measure() - start
            self.port.guide_pulse(back, self.calibration_ms)
            vecs.append(moved / self.calibration_ms)
            self.log(f"calibration {go}: {np.hypot(*moved):.2f} px in {self.calibration_ms:.0f} ms")
        self.ra_vec, self.dec_vec = vecs
        (ax, ay), (bx, by) = self.ra_vec, self.dec_vec
        if abs(ax * by - ay * bx) < 1e-9:   # parallel or zero: no 2-D basis
            raise RuntimeError("calibration failed: the star did not move (is the mount tracking?)")
        self.measure()
        self.lock = self.star.copy()
        return self.ra_vec, self.dec_vec

    def _split(self, offset: np.ndarray) -> np.ndarray:
        """Offset [px] -> (ms of W pulse, ms of N pulse) that would cause it."""
        m = np.column_stack([self.ra_vec, self.dec_vec])
        return np.linalg.solve(m, offset)

    def step(self) -> tuple[float, float]:
        """One guide frame: measure, correct. Returns the (RA, Dec) error [px]."""
        pos = self.measure()
        offset = pos - self.lock
        ms = self._split(offset)                      # what this offset corresponds to
        # errors along the calibration axes, in px
        ra_px = ms[0] * np.hypot(*self.ra_vec)
        dec_px = ms[1] * np.hypot(*self.dec_vec)
        self.stats.ra.append(float(ra_px))
        self.stats.dec.append(float(dec_px))
        corr = -self.aggressiveness * ((1 - self.hysteresis) * ms + self.hysteresis * self._last)
        self._last = corr / -max(self.aggressiveness, 1e-9)
        for value, (pos_dir, neg_dir), vec in ((corr[0], ("W", "E"), self.ra_vec),
                                               (corr[1], ("N", "S"), self.dec_vec)):
            if abs(value) * np.hypot(*vec) < self.min_move:
                continue
            self.port.guide_pulse(pos_dir if value > 0 else neg_dir, min(abs(value), 5000.0))
        return float(ra_px), float(dec_px)

    def guide(self, frames: int) -> GuideStats:
        """Guide for ``frames`` frames; returns the statistics of those frames."""
        start = len(self.stats.ra)
        for _ in range(frames):
            self.step()
        return GuideStats(self.stats.ra[start:], self.stats.dec[start:])

    def dither(self, dx: float, dy: float, *, settle_px: float = 1.0, timeout_frames: int = 20) -> int:
        """Move the lock position by (dx, dy) px and guide until the star is within
        ``settle_px`` of it; returns the frames it took."""
        self.lock = self.lock + np.array([dx, dy])
        for n in range(1, timeout_frames + 1):
            ra, dec = self.step()
            if math.hypot(ra, dec) <= settle_px:
                return n
        raise RuntimeError(f"guiding did not settle within {timeout_frames} frames")
