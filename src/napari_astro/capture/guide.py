"""A built-in guider: one guide star on the guide camera, calibrated pulse directions,
proportional corrections through the mount's guide port.

Calibration pulses west then north (and back) and measures how far the star moves
per millisecond: two vectors in guide-camera pixels (out-and-back, so a steady drift
cancels). A guide step measures the star
(intensity-weighted centroid in a box around its last position), splits its offset
from the lock position onto the two vectors, and sends
``-aggressiveness * offset`` as pulses, skipping moves under ``min_move`` pixels;
``hysteresis`` blends in the previous correction (as PHD2's hysteresis algorithm);
``integral`` adds a fraction of the summed past errors, which learns a steady drift
(periodic error, polar misalignment) so the star is not always one frame behind.

:class:`GuideLoop` runs a :class:`Guider` in a daemon thread for the sequence runner
and the docks: start (star selection, calibration), pause/resume around slews and
autofocus, dither with settling, flip after a meridian flip, live RA/Dec errors.
:class:`~.phd2.PHD2Guider` offers the same methods over PHD2's JSON-RPC server.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Callable

import numpy as np

__all__ = ["Guider", "GuideStats", "GuideRecord", "GuideLoop", "GuideError"]


class GuideError(RuntimeError):
    """Guiding failed: no or lost guide star, calibration failed, settling timed out."""


@dataclasses.dataclass
class GuideStats:
    """Errors [px] of the guide frames (RA/Dec axes of the calibration) and their RMS."""

    ra: list
    dec: list

    @property
    def rms(self) -> float:
        e = np.hypot(self.ra, self.dec)
        return float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")

    @property
    def rms_ra(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.ra)))) if len(self.ra) else float("nan")

    @property
    def rms_dec(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.dec)))) if len(self.dec) else float("nan")

    def last(self, n: int) -> "GuideStats":
        return GuideStats(list(self.ra[-n:]), list(self.dec[-n:]))


class Guider:
    """Guide with ``camera`` (a :class:`~.devices.GuideCamera`, a camera's
    :class:`~.devices.GuideHead`, anything with ``expose(seconds, kind, timeout=)``)
    through ``port`` (the mount or the camera's ST-4: anything with
    ``guide_pulse(direction, ms)``).

    Parameters
    ----------
    exposure : float, default 1.0
        Guide exposure [s].
    aggressiveness : float, default 0.8
        Fraction of the measured error corrected at each frame (0-1).
    min_move : float, default 0.1
        Errors below this [guide px] on an axis get no pulse.
    hysteresis : float, default 0.1
        Weight of the previous correction blended into the new one (0-1).
    calibration_ms : float, default 1000
        Length of each calibration pulse [ms]; aim for a few px of motion.
    box : int, default 24
        Half-size of the box the star is measured in [px].
    integral : float, default 0.15
        Fraction of the summed past errors added to each correction (0 = off).
    """

    def __init__(self, camera, port, *, exposure: float = 1.0, aggressiveness: float = 0.8,
                 min_move: float = 0.1, hysteresis: float = 0.1, calibration_ms: float = 1000.0,
                 box: int = 24, integral: float = 0.15,
                 log: Callable[[str], None] | None = None) -> None:
        self.camera, self.port = camera, port
        self.exposure, self.aggressiveness = exposure, aggressiveness
        self.integral = integral
        self._sum = np.zeros(2)                   # integrated error [ms of pulse]
        self._moved = False                       # lock moved (dither), star not there yet
        self.min_move, self.hysteresis, self.calibration_ms = min_move, hysteresis, calibration_ms
        self.box = box
        self.log = log or (lambda m: None)
        self.star: np.ndarray | None = None       # last position (x, y)
        self.lock: np.ndarray | None = None       # where the star is kept
        self.ra_vec = self.dec_vec = None         # px per ms of a W / N pulse
        self._last = np.zeros(2)
        self._full_scale = 0.0
        self.stats = GuideStats([], [])

    # -- measuring --------------------------------------------------------------------
    def _frame(self) -> np.ndarray:
        # a lost guide image costs ~15 s and one retry, not a minute
        frame = self.camera.expose(self.exposure, "light", timeout=self.exposure + 15, retries=1)
        self._full_scale = float(getattr(frame, "full_scale", 0.0) or 0.0)
        return frame.data.astype(np.float32)

    def find_stars(self, img: np.ndarray, snr: float = 12.0) -> np.ndarray:
        """Candidate guide stars: rows (x, y, peak above background), brightest first.

        Local maxima of the lightly smoothed frame ``snr`` noise levels above the
        median (guide frames are small and often undersampled: a star may be 1-2 px
        wide, below what the stacking detector accepts).
        """
        from scipy import ndimage

        sm = ndimage.uniform_filter(img, 3)
        med = float(np.median(sm))
        noise = 1.4826 * float(np.median(np.abs(sm - med))) or float(np.std(sm)) or 1.0
        peaks = (sm == ndimage.maximum_filter(sm, 7)) & (sm > med + snr * noise)
        ys, xs = np.nonzero(peaks)
        if not len(xs):
            return np.zeros((0, 3))
        order = np.argsort(-sm[ys, xs])
        ys, xs = ys[order], xs[order]
        out = []
        for x, y in zip(xs, ys):   # intensity-weighted centroid in a 7x7 window
            y0, x0 = max(y - 3, 0), max(x - 3, 0)
            cut = np.clip(img[y0:y + 4, x0:x + 4] - med, 0.0, None)
            yy, xx = np.mgrid[0:cut.shape[0], 0:cut.shape[1]]
            tot = float(cut.sum()) or 1.0
            out.append((x0 + float((cut * xx).sum()) / tot, y0 + float((cut * yy).sum()) / tot,
                        float(img[y, x]) - med))
        return np.array(out)

    def select_star(self) -> np.ndarray:
        """Pick the brightest unsaturated, isolated star away from the edges."""
        img = self._frame()
        stars = self.find_stars(img)
        h, w = img.shape
        full = self._full_scale or float(img.max())
        sat = 0.8 * full
        margin = min(2 * self.box, max(h, w) // 6)
        for x, y, _ in stars:
            if not (margin < x < w - margin and margin < y < h - margin):
                continue
            if img[int(round(y)), int(round(x))] >= sat:
                continue
            d = np.hypot(stars[:, 0] - x, stars[:, 1] - y)
            if np.any((d > 1.0) & (d < self.box)):   # a neighbour inside the box
                continue
            self.star = np.array([x, y])
            self.lock = self.star.copy()
            self.log(f"guide star at ({x:.1f}, {y:.1f})")
            return self.star
        raise GuideError(f"no guide star found ({len(stars)} candidates, none unsaturated, "
                         f"isolated and {margin} px from the edges)")

    def reacquire(self, radius: float | None = None) -> np.ndarray:
        """Find the guide star again near its lock position (after a pause: a slew
        back, a focus run) and keep the lock; else select a new star and lock there."""
        if self.lock is None:
            return self.select_star()
        radius = 2.0 * self.box if radius is None else radius
        stars = self.find_stars(self._frame())
        if len(stars):
            d = np.hypot(stars[:, 0] - self.lock[0], stars[:, 1] - self.lock[1])
            i = int(np.argmin(d))
            if d[i] <= radius:
                self.star = stars[i, :2].copy()
                self.log(f"guide star found again at ({self.star[0]:.1f}, {self.star[1]:.1f}), "
                         f"{d[i]:.1f} px from the lock")
                return self.star
        self.log("guide star not found near its lock position: selecting a new one")
        return self.select_star()

    #: a star fainter than this (smoothed peak / sky noise) in its box counts as lost
    lost_snr = 8.0

    def measure(self) -> np.ndarray:
        """The guide star's position in a new frame.

        In the box around its last position: the significant peak nearest to that
        position, then the intensity-weighted centroid of that peak's own blob (the
        connected pixels 3 noise levels above the sky). Only the star's own pixels
        count: a centroid over the whole box is pulled by every neighbour that enters
        it, and the pull grows as the box follows the pulled centroid (in a crowded
        field such as M 45 a 3 px dither then ran away by tens of px).
        """
        from scipy import ndimage

        img = self._frame()
        b = self.box
        x, y = self.star
        h, w = img.shape
        x0, y0 = int(round(x)) - b, int(round(y)) - b
        x0, y0 = min(max(x0, 0), max(w - 2 * b - 1, 0)), min(max(y0, 0), max(h - 2 * b - 1, 0))
        cut = img[y0:y0 + 2 * b + 1, x0:x0 + 2 * b + 1]
        f = cut - np.median(cut)
        # lost (clouds, a slew, a wrong pulse): nothing in the box stands
        # ``lost_snr`` noise levels above the sky once lightly smoothed
        sm = ndimage.uniform_filter(f, 3)
        base = float(np.median(sm))
        noise = 1.4826 * float(np.median(np.abs(sm - base))) or 1e-3
        level = base + self.lost_snr * noise
        if float(sm.max()) < level:
            raise GuideError(f"guide star lost (nothing {self.lost_snr:.0f} sigma above the sky "
                             f"within {b} px of ({x:.1f}, {y:.1f}))")
        ys, xs = np.nonzero((sm == ndimage.maximum_filter(sm, 5)) & (sm >= level))
        sky = max(float(np.std(cut[f < np.percentile(f, 80)])), 1e-3)
        labels, _ = ndimage.label(f > 3 * sky)
        sizes = np.bincount(labels.ravel())
        blob = None
        # nearest first; a blob of 1-2 pixels (a hot pixel, a cosmic ray) is no star
        for i in np.argsort(np.hypot(xs + x0 - x, ys + y0 - y)):
            py, px = int(ys[i]), int(xs[i])
            lab = labels[py, px]
            if blob is None or (lab and sizes[lab] >= 3):
                blob = labels == lab if lab else np.zeros(f.shape, bool)
                if not lab:   # a peak of the smoothed frame over a dip: its 3x3 pixels
                    blob[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2] = True
                if lab and sizes[lab] >= 3:
                    break
        wgt = np.where(blob, np.clip(f, 0.0, None), 0.0)
        if wgt.sum() <= 0:
            raise GuideError("guide star lost")
        yy, xx = np.mgrid[0:cut.shape[0], 0:cut.shape[1]]
        self.star = np.array([x0 + (wgt * xx).sum() / wgt.sum(), y0 + (wgt * yy).sum() / wgt.sum()])
        return self.star

    # -- calibration and guiding ------------------------------------------------------------
    def calibrate(self) -> tuple[np.ndarray, np.ndarray]:
        """Measure the star's motion per ms of W and N pulses (and pulse back)."""
        if self.star is None:
            self.select_star()
        vecs = []
        start = self.measure()
        for go, back in (("W", "E"), ("N", "S")):
            self.port.guide_pulse(go, self.calibration_ms)
            mid = self.measure()
            self.port.guide_pulse(back, self.calibration_ms)
            end = self.measure()
            # out and back: a steady drift (periodic error, polar misalignment) adds
            # the same to both legs and cancels in their difference
            moved = ((mid - start) - (end - mid)) / 2.0
            vecs.append(moved / self.calibration_ms)
            self.log(f"calibration {go}: {np.hypot(*moved):.2f} px in {self.calibration_ms:.0f} ms")
            start = end
        for v, d in zip(vecs, "WN"):
            if np.hypot(*v) * self.calibration_ms < 1.0:
                raise GuideError(f"calibration failed: the star moved {np.hypot(*v) * self.calibration_ms:.2f} px "
                                 f"on a {self.calibration_ms:.0f} ms {d} pulse (is the port "
                                 f"connected, the mount tracking?)")
        (ax, ay), (bx, by) = vecs
        sin = abs(ax * by - ay * bx) / (np.hypot(ax, ay) * np.hypot(bx, by))
        if sin < 0.5:   # the two directions less than 30 degrees apart: no usable basis
            raise GuideError(f"calibration failed: the W and N pulses moved the star along "
                             f"nearly the same line ({np.degrees(np.arcsin(sin)):.0f} deg apart)")
        self.ra_vec, self.dec_vec = vecs
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
        # integral term: a steady drift (periodic error between its turning points,
        # polar misalignment) is learnt and corrected ahead; errors over 2 px (a gust)
        # and those on the way to a dithered lock (until within 1 px of it) are left
        # out of it: a dither's step is no drift (integrated, it overshot the new lock
        # and broke the settling streak)
        if self._moved and math.hypot(ra_px, dec_px) <= 1.0:
            self._moved = False
        small = np.abs([ra_px, dec_px]) <= 2.0
        if not self._moved:
            self._sum = self._sum + np.where(small, ms, 0.0)
        corr = corr - self.integral * self._sum
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

    def move_lock(self, dx: float, dy: float) -> None:
        """Move the lock position by (dx, dy) px (a dither): the integral term waits
        until the star is within 1 px of the new lock."""
        self.lock = self.lock + np.array([dx, dy])
        self._moved = True

    def dither(self, dx: float, dy: float, *, settle_px: float = 1.0, timeout_frames: int = 20) -> int:
        """Move the lock position by (dx, dy) px and guide until the star is within
        ``settle_px`` of it; returns the frames it took."""
        self.move_lock(dx, dy)
        for n in range(1, timeout_frames + 1):
            ra, dec = self.step()
            if math.hypot(ra, dec) <= settle_px:
                return n
        raise GuideError(f"guiding did not settle within {timeout_frames} frames")


class GuideRecord:
    """What both guiding engines (:class:`GuideLoop`, :class:`.phd2.PHD2Guider`) report:
    the errors of their guide frames, kept in ``self._stats`` under ``self._cv``."""

    _cv: threading.Condition
    _stats: GuideStats

    @property
    def stats(self) -> GuideStats:
        """RA/Dec errors [px] of every guide frame since :meth:`start`."""
        with self._cv:
            return GuideStats(list(self._stats.ra), list(self._stats.dec))

    def rms(self, last: int = 20) -> float:
        """Total RMS error [px] of the last ``last`` guide frames."""
        return self.stats.last(last).rms


class GuideLoop(GuideRecord):
    """Guide continuously with ``guider`` in a daemon thread.

    ``on_step(ra_px, dec_px, rms_px)`` is called from the loop thread after each guide
    frame (``rms_px``: RMS of the last 20 frames); ``log(message)`` likewise. A lost
    star is looked for again near its lock position for a few frames, then the loop
    ends and the next :meth:`dither` (or :attr:`error`) reports it.
    """

    #: frames in a row without the star before the loop gives up
    lost_frames = 5

    def __init__(self, guider: Guider, *, log: Callable[[str], None] | None = None,
                 on_step: Callable[[float, float, float], None] | None = None) -> None:
        self.guider = guider
        self.log = log or guider.log
        if log is not None:
            guider.log = log
        self.on_step = on_step
        self._stats = GuideStats([], [])
        self._times: list[float] = []           # monotonic time of each guide frame
        self._cv = threading.Condition()        # notified after each frame and on exit
        self._busy = threading.Lock()           # held while a frame is taken/corrected
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- state ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # -- control -------------------------------------------------------------------
    def start(self, *, calibrate: bool = True, timeout: float = 120.0) -> None:
        """Select a star (if none), calibrate (if asked or never done) and guide in a
        thread; returns after the first guide frame (GuideError if none in ``timeout`` s)."""
        if self.running:
            return
        g = self.guider
        try:
            fresh = g.star is None
            if fresh:
                g.select_star()
            if calibrate or g.ra_vec is None:
                g.calibrate()
            elif not fresh:
                g.reacquire()
        except GuideError:
            raise
        except Exception as exc:  # noqa: BLE001 - device errors, named
            raise GuideError(f"guiding could not start: {exc}") from exc
        with self._cv:
            self._stats = GuideStats([], [])
            self._times = []
        self.error = None
        self._stop.clear()
        self._paused.clear()
        self._thread = threading.Thread(target=self._run, name="napari-astro-guide", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._times and self.error is None and self._thread.is_alive():
                if not self._cv.wait(min(0.5, max(0.0, deadline - time.monotonic()))) \
                        and time.monotonic() >= deadline:
                    break
        if self.error is not None or not self._times:
            why = self.error or f"no guide frame within {timeout:.0f} s"
            self.stop()
            raise GuideError(f"guiding did not start: {why}")
        self.log(f"guiding on the star at ({g.lock[0]:.1f}, {g.lock[1]:.1f})")

    def stop(self) -> None:
        """End the loop (waits for the frame in progress). Safe to call twice."""
        self._stop.set()
        self._paused.clear()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
        self._thread = None
        with self._cv:
            self._cv.notify_all()

    def pause(self) -> None:
        """No exposures or pulses until :meth:`resume` (returns once the frame in
        progress is done)."""
        self._paused.set()
        with self._busy:   # the current frame finishes
            pass

    def resume(self) -> None:
        """Guide again: the star is looked for near its lock position (else a new one
        is selected and locked)."""
        if not self._paused.is_set():
            return
        with self._busy:
            try:
                self.guider.reacquire()
            except Exception as exc:  # noqa: BLE001
                raise GuideError(f"guiding could not resume: {exc}") from exc
            self.guider._last = np.zeros(2)   # noqa: SLF001 - no memory across a pause:
            self.guider._sum = np.zeros(2)    # noqa: SLF001 - a slew changes the drift
            self._paused.clear()

    def flip(self) -> None:
        """After a meridian flip: the image turned 180 degrees relative to the pulses,
        so both calibration vectors are reversed; a star is selected again."""
        g = self.guider
        was_paused = self._paused.is_set()
        self.pause()
        with self._busy:
            if g.ra_vec is None:
                raise GuideError("flip: the guider is not calibrated")
            g.ra_vec, g.dec_vec = -np.asarray(g.ra_vec), -np.asarray(g.dec_vec)
            g._last = np.zeros(2)   # noqa: SLF001
            g._sum = np.zeros(2)    # noqa: SLF001
            try:
                g.select_star()
            except Exception as exc:  # noqa: BLE001
                raise GuideError(f"flip: {exc}") from exc
            self.log("calibration flipped (meridian flip); new guide star selected")
            if not was_paused:
                self._paused.clear()

    def dither(self, pixels: float, *, settle_px: float = 1.0, settle_time: float = 2.0,
               timeout: float = 60.0, rng=None) -> tuple[float, float]:
        """Move the lock position by ``pixels`` guide-camera px in a random direction
        and wait until the error stayed <= ``settle_px`` for ``settle_time`` s.

        Returns the offset (dx, dy) [px]; GuideError if not settled within ``timeout``
        s or if the loop is not guiding.
        """
        if not self.running:
            raise GuideError(f"dither: not guiding ({self.error or 'the loop is stopped'})")
        if self._paused.is_set():
            raise GuideError("dither: guiding is paused")
        rng = np.random.default_rng() if rng is None else rng
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        dx, dy = pixels * math.cos(angle), pixels * math.sin(angle)
        with self._busy:
            self.guider.move_lock(dx, dy)
            with self._cv:
                n0 = len(self._times)
        self.log(f"dither by ({dx:+.2f}, {dy:+.2f}) px")
        self.wait_settled(settle_px, settle_time, timeout, since=n0)
        return dx, dy

    def wait_settled(self, settle_px: float = 1.0, settle_time: float = 2.0,
                     timeout: float = 60.0, *, since: int | None = None) -> float:
        """Block until the guide frames after frame ``since`` (default: now) kept the
        error <= ``settle_px`` for ``settle_time`` s; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        with self._cv:
            n = len(self._times) if since is None else since
            streak: float | None = None      # time of the first frame of the good run
            while True:
                while n < len(self._times):
                    err = math.hypot(self._stats.ra[n], self._stats.dec[n])
                    if err <= settle_px:
                        streak = self._times[n] if streak is None else streak
                        if self._times[n] - streak >= settle_time:
                            self.log(f"settled in {time.monotonic() - t0:.1f} s")
                            return time.monotonic() - t0
                    else:
                        streak = None
                    n += 1
                if self.error is not None or not (self._thread and self._thread.is_alive()):
                    raise GuideError(f"guiding stopped while settling: {self.error or 'stopped'}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuideError(f"guiding did not settle within {timeout:.0f} s "
                                     f"(last error {self._last_error():.2f} px > {settle_px} px)")
                self._cv.wait(min(left, 0.5))

    def _last_error(self) -> float:
        if not self._stats.ra:
            return float("nan")
        return math.hypot(self._stats.ra[-1], self._stats.dec[-1])

    # -- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        lost = 0
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    self._stop.wait(0.1)
                    continue
                with self._busy:
                    if self._paused.is_set() or self._stop.is_set():
                        continue
                    try:
                        ra, dec = self.guider.step()
                    except GuideError as exc:
                        lost += 1
                        self.log(f"{exc} ({lost}/{self.lost_frames})")
                        if lost >= self.lost_frames:
                            raise
                        try:
                            self.guider.reacquire()
                        except GuideError:
                            pass
                        continue
                    lost = 0
                    with self._cv:
                        self._stats.ra.append(ra)
                        self._stats.dec.append(dec)
                        self._times.append(time.monotonic())
                        rms = self._stats.last(20).rms
                        self._cv.notify_all()
                cb = self.on_step
                if cb is not None:
                    try:
                        cb(ra, dec, rms)
                    except Exception:  # noqa: BLE001 - a display error must not stop guiding
                        pass
        except BaseException as exc:  # noqa: BLE001 - reported through .error
            self.error = exc
            self.log(f"guiding stopped: {exc}")
        finally:
            with self._cv:
                self._cv.notify_all()
