"""The observing logic of a sequence's lights: the target's altitude and hour angle,
waiting for it to rise, the altitude limit, the meridian flip, periodic re-centring,
refocusing, and guiding (built-in or PHD2) around all of it.

:class:`Night` is owned by :class:`~.sequence.SequenceRunner`; the runner asks it
before each light (:meth:`Night.before_light`: may wait, flip, re-centre, refocus, or
say the lights must stop) and tells it after each light (:meth:`Night.after_light`:
HFR and plate solve of the frame just taken).

Sky positions: the target's J2000 position precessed to the equinox of date (as
INDI's mounts use it), the site from the mount's ``GEOGRAPHIC_COORD``, the apparent
sidereal time from ERFA (astropy's) with UT1 taken as UTC (< 0.9 s: 0.004 deg, no
IERS table needed offline). Altitudes are geometric (no refraction: < 0.1 deg above
25 deg altitude).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from ..core.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from .sequence import SequenceRunner

__all__ = ["sidereal_time", "hour_angle", "altitude", "seconds_to_altitude", "Sky", "Night"]

#: Sidereal seconds per solar second.
SIDEREAL_RATE = 1.00273790935


def sidereal_time(lon_deg: float, when: float) -> float:
    """Local apparent sidereal time [h] at east longitude ``lon_deg``, unix time ``when``."""
    import erfa
    from astropy.time import Time

    t = Time(when, format="unix", scale="utc")
    tt = t.tt
    gst = erfa.gst06a(t.jd1, t.jd2, tt.jd1, tt.jd2)      # UT1 ~ UTC
    return (math.degrees(gst) / 15.0 + lon_deg / 15.0) % 24.0


def hour_angle(ra_h: float, lst_h: float) -> float:
    """Hour angle [h] in [-12, 12): negative east of the meridian (rising)."""
    return (lst_h - ra_h + 12.0) % 24.0 - 12.0


def altitude(ha_h: float, dec_deg: float, lat_deg: float) -> float:
    """Geometric altitude [deg] at hour angle ``ha_h``."""
    h, d, p = math.radians(ha_h * 15.0), math.radians(dec_deg), math.radians(lat_deg)
    s = math.sin(p) * math.sin(d) + math.cos(p) * math.cos(d) * math.cos(h)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def seconds_to_altitude(ha_h: float, dec_deg: float, lat_deg: float,
                        alt_deg: float) -> float | None:
    """Seconds until a rising target reaches ``alt_deg`` (0 if above it now; None if it
    never does)."""
    if altitude(ha_h, dec_deg, lat_deg) >= alt_deg:
        return 0.0
    p, d = math.radians(lat_deg), math.radians(dec_deg)
    den = math.cos(p) * math.cos(d)
    if abs(den) < 1e-12:
        return None
    c = (math.sin(math.radians(alt_deg)) - math.sin(p) * math.sin(d)) / den
    if c > 1.0:
        return None                      # never that high at this site
    h0 = math.degrees(math.acos(max(-1.0, c))) / 15.0
    dh = (-h0 - ha_h) % 24.0             # sidereal hours to the rising crossing
    return dh * 3600.0 / SIDEREAL_RATE


class Sky:
    """The target's place in the sky over the mount's site, at ``clock()`` times."""

    def __init__(self, target_j2000: tuple[float, float], site: tuple[float, float],
                 clock: Callable[[], float] = time.time) -> None:
        from .coords import j2000_to_jnow

        self.ra_h, self.dec = j2000_to_jnow(*target_j2000)
        self.lat, self.lon = float(site[0]), float(site[1])
        self.clock = clock

    def hour_angle(self, after: float = 0.0) -> float:
        return hour_angle(self.ra_h, sidereal_time(self.lon, self.clock() + after))

    def altitude(self, after: float = 0.0) -> float:
        return altitude(self.hour_angle(after), self.dec, self.lat)

    def max_altitude(self) -> float:
        return 90.0 - abs(self.lat - self.dec)

    def seconds_to(self, alt_deg: float) -> float | None:
        return seconds_to_altitude(self.hour_angle(), self.dec, self.lat, alt_deg)


def target_altitude(mount, ra_deg: float, dec_deg: float, *, after: float = 0.0) -> float:
    """Geometric altitude [deg] of a J2000 target over ``mount``'s site
    (``GEOGRAPHIC_COORD``) now (or ``after`` s from now)."""
    return Sky((float(ra_deg), float(dec_deg)), mount.site()).altitude(after)


class Night:
    """Policies of one runner's lights (see the module docstring)."""

    def __init__(self, runner: "SequenceRunner", clock: Callable[[], float] = time.time) -> None:
        self.r = runner
        self.s = runner.seq.settings
        self.clock = clock
        self.sky: Sky | None = None
        self.on_target = False          # slewed (and centred) since the last connect
        self.slew_ha: float | None = None   # hour angle at the last slew
        self.flipped = False                # flipped since the last slew (once per side)
        self.guide: Any = None
        self._calibrated = False
        self.stopped: str | None = None  # why the lights stopped (altitude, timeout)
        #: (what, lights done, detail, time.monotonic() at the end) of each action
        self.events: list[tuple[str, int, Any, float]] = []
        #: (time.monotonic(), RA, Dec error [guide px]) of each guide frame
        self.guide_steps: list[tuple[float, float, float]] = []
        self.hfr_ref: float | None = None
        self.temp_ref: float | None = None
        self.hfr: list[tuple[str, float]] = []          # (file name, HFR px) of lights
        self.drift: list[tuple[str, float]] = []        # (file name, arcmin) of solved lights
        self._recentre_due = False
        self._refocus_due: str | None = None
        self._since_check = 0
        self.lights = 0

    def _event(self, item: tuple) -> None:
        self.events.append((*item, time.monotonic()))

    def _on_guide_step(self, ra: float, dec: float, rms: float) -> None:
        self.guide_steps.append((time.monotonic(), float(ra), float(dec)))

    # -- checks before anything moves -------------------------------------------------
    def needs_sky(self) -> bool:
        s = self.s
        return s.min_altitude is not None or s.meridian_flip

    def attach_site(self) -> None:
        """Read the site (a read, nothing moves) and check the target can be observed."""
        if not self.needs_sky() or self.r.target is None or self.r.eq.mount is None:
            return
        self.sky = Sky(self.r.target, self.r.eq.mount.site(), self.clock)
        top = self.sky.max_altitude()
        if self.s.min_altitude is not None and top < self.s.min_altitude:
            raise BadInputError("sequence.min_altitude", f"{self.s.object} culminates at "
                                f"{top:.1f} deg at this site (lat {self.sky.lat:.2f}): never "
                                f"above {self.s.min_altitude:g} deg")

    # -- waits ------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self.r.cancel is not None:
                self.r.cancel.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))

    def _altitude_ok(self, exposure: float) -> bool:
        """True when the lights may go on; False (and ``stopped`` set) when they stop.
        Waits for a rising target up to ``wait_timeout``."""
        lim = self.s.min_altitude
        if lim is None or self.sky is None:
            return True
        while True:
            now, end = self.sky.altitude(), self.sky.altitude(exposure)
            if min(now, end) >= lim:
                return True
            ha = self.sky.hour_angle()
            if ha >= 0 or end < now:          # setting: done for tonight
                self.stopped = (f"{self.s.object} is at {now:.2f} deg and setting, below "
                                f"min_altitude {lim:g} deg: lights stopped")
                return False
            wait = self.sky.seconds_to(lim + 1e-4)
            if wait is None or wait > self.s.wait_timeout * 3600.0:
                when = "never" if wait is None else f"in {wait / 3600:.2f} h"
                self.stopped = (f"{self.s.object} is at {now:.2f} deg, reaches min_altitude "
                                f"{lim:g} deg {when}: beyond wait_timeout "
                                f"{self.s.wait_timeout:g} h, lights skipped")
                return False
            self.r.log(f"waiting {wait:.0f} s for {self.s.object} to rise above {lim:g} deg "
                       f"(now {now:.3f} deg)")
            self._event(("wait", self.lights, wait))
            self._sleep(min(wait + 0.5, 60.0))

    # -- mount moves ------------------------------------------------------------------
    @contextlib.contextmanager
    def guiding_paused(self):
        g = self.guide
        if g is None or not getattr(g, "running", False):
            yield
            return
        g.pause()
        try:
            yield
        finally:
            self._resume()

    def _resume(self) -> None:
        from .guide import GuideError

        try:
            self.guide.resume()
        except GuideError as exc:          # star lost after the move: start afresh
            self.r.log(f"guiding did not resume ({exc}); restarting it")
            self.stop_guiding()
            self.start_guiding()

    def slew(self, *, centre: bool | None = None) -> None:
        """Slew to the target (and centre when asked) with guiding paused."""
        with self.guiding_paused():
            self.r.slew_to_target(centre=self.s.centre if centre is None else centre)
        if self.sky is not None:
            self.slew_ha = self.sky.hour_angle()
        self.flipped = False
        self.on_target = True

    def recentre(self, why: str) -> None:
        from .centre import centre_on

        with self.guiding_paused():
            res = centre_on(self.r.eq, *self.r.target, exposure=self.s.centre_exposure,
                            tolerance_arcmin=self.s.centre_tolerance, log=self.r.log)
        self.r.log(f"re-centred ({why}): {res.error_arcmin:.2f}' from the target")
        self._event(("recentre", self.lights, res.errors_arcmin))
        time.sleep(self.s.settle)

    def _flip_side(self) -> bool:
        """True while the mount is on the side that must flip (pointing east of the
        meridian: INDI's PIER_WEST, or slewed there before the meridian)."""
        if self.flipped:                     # once: a mount that kept its side is not
            return False                     # sent through the flip again and again
        pier = self.r.eq.mount.pier_side()
        if pier is not None:
            return pier == "W"
        return self.slew_ha is not None and self.slew_ha < 0

    def meridian(self, exposure: float) -> None:
        """Flip when the target is ``flip_after`` minutes past the meridian; with
        ``flip_pause`` a light that would end past that point waits for the flip."""
        if not self.s.meridian_flip or self.sky is None or self.r.eq.mount is None:
            return
        if not self._flip_side():
            return
        limit = self.s.flip_after / 60.0
        ha = self.sky.hour_angle()
        end = ha + exposure * SIDEREAL_RATE / 3600.0
        if ha < limit and end > limit and self.s.flip_pause:
            wait = (limit - ha) * 3600.0 / SIDEREAL_RATE + 0.5
            self.r.log(f"meridian flip in {wait:.0f} s: the next light would cross it, waiting")
            self._event(("flip_wait", self.lights, wait))
            self._sleep(wait)
            ha = self.sky.hour_angle()
        if ha >= limit:
            self.flip()

    def flip(self) -> None:
        m = self.r.eq.mount
        before = m.pier_side()
        self.r.log(f"meridian flip (hour angle {self.sky.hour_angle() * 60:+.1f} min, "
                   f"pier {before})")
        with self.guiding_paused():
            self.r.slew_to_target(centre=self.s.centre or self._recentring())
            if self.guide is not None:
                self.guide.flip()
        self.slew_ha = self.sky.hour_angle()
        self.flipped = True
        if self.s.centre or self._recentring():
            self._recentre_due = False          # centred on the new side just now
        after = m.pier_side()
        if before is not None and after == before:
            self.r.log(f"warning: pier side still {after} after the flip slew")
        self._event(("flip", self.lights, (before, after)))

    def _recentring(self) -> bool:
        return bool(self.s.recentre_every or self.s.recentre_drift)

    # -- focus --------------------------------------------------------------------------
    def _temperature(self) -> float | None:
        f = self.r.eq.focuser
        t = f.temperature() if f is not None else None
        if t is None and self.r.eq.camera is not None:
            t = self.r.eq.camera.temperature()
        return t

    def autofocus(self, why: str) -> None:
        from .focus import autofocus

        foc = self.r.eq.focuser
        start = foc.position()
        t0 = time.monotonic()
        with self.guiding_paused():
            try:
                res = autofocus(self.r.eq, step=self.s.focus_step, points=self.s.focus_points,
                                exposure=self.s.focus_exposure, log=self.r.log)
                detail = (why, start, res.best, res.fit[0], t0)
            except (RuntimeError, ValueError) as exc:   # a failed fit: stay where it was
                self.r.log(f"autofocus failed ({exc}); focuser back at {start}")
                foc.move_to(start)
                detail = (why, start, start, float("nan"), t0)
        self._event(("autofocus", self.lights, detail))
        self.hfr_ref = None                   # the next light sets it
        self.temp_ref = self._temperature()

    # -- guiding --------------------------------------------------------------------------
    def start_guiding(self) -> None:
        s = self.s
        if s.guiding == "off":
            return
        if self.guide is None:
            if s.guiding == "phd2":
                from .phd2 import PHD2Guider

                self.guide = PHD2Guider(s.phd2_host, s.phd2_port, log=self.r.log,
                                        on_step=self._on_guide_step)
            else:
                from .guide import GuideLoop, Guider

                eq = self.r.eq
                port = eq.mount if (s.guide_port == "mount" and eq.mount) else eq.camera
                # RA pulses move the star by cos(dec) less: longer calibration pulses
                # there keep both axes measurable (as PHD2's calibration step does)
                dec = self.r.target[1] if self.r.target is not None else 0.0
                ms = min(4000.0, 1500.0 / max(math.cos(math.radians(dec)), 0.375))
                self.guide = GuideLoop(Guider(eq.guider, port, exposure=s.guide_exposure,
                                              calibration_ms=ms),
                                       log=self.r.log, on_step=self._on_guide_step)
        if not self.guide.running:
            from .guide import GuideError

            try:
                self.guide.start(calibrate=not self._calibrated, timeout=120)
            except GuideError as exc:      # unguided lights beat no lights
                self.r.log(f"warning: guiding did not start ({exc}); lights unguided")
                self._event(("guide_failed", self.lights, str(exc)))
                return
            self._calibrated = True
            self._event(("guiding", self.lights, s.guiding))
            self.r.log(f"guiding ({s.guiding})")

    def stop_guiding(self) -> None:
        if self.guide is not None and getattr(self.guide, "running", False):
            with contextlib.suppress(Exception):
                self.guide.stop()

    def dither(self) -> tuple[float, float]:
        """A dither through the guider; blocks until settled (or the settle timeout)."""
        from .guide import GuideError

        s = self.s
        t0 = time.monotonic()
        try:
            dx, dy = self.guide.dither(s.dither_pixels, settle_px=s.settle_px,
                                       settle_time=s.settle_time, timeout=s.settle_timeout,
                                       rng=self.r.rng)
        except GuideError as exc:
            self.r.log(f"dither did not settle ({exc}); going on")
            self._event(("dither_unsettled", self.lights, str(exc)))
            return (float("nan"), float("nan"))
        took = time.monotonic() - t0
        self.r.log(f"dither ({dx:+.2f}, {dy:+.2f}) guide px settled in {took:.1f} s")
        self._event(("dither", self.lights, (float(dx), float(dy), took)))
        return dx, dy

    def guide_rms(self, exposure: float) -> float | None:
        """RMS guide error [guide px] over the light that just ended: the guide frames
        of its last ``exposure`` s (plus one guide exposure: a frame ending in it began
        before), at least the last frame. By time, not by a count of frames: guide
        frames come slower than ``guide_exposure`` (download, pulses, a loaded
        machine), and a count reached back into the settling before the light."""
        g = self.guide
        if g is None or not getattr(g, "running", False) or not self.guide_steps:
            return None
        since = time.monotonic() - exposure - self.s.guide_exposure
        steps = [s for s in self.guide_steps if s[0] >= since] or self.guide_steps[-1:]
        v = math.sqrt(sum(ra * ra + dec * dec for _, ra, dec in steps) / len(steps))
        return v if math.isfinite(v) else None

    # -- around each light ------------------------------------------------------------------
    def before_light(self, exposure: float) -> bool:
        """Everything due before the next light; False when the lights must stop."""
        if self.stopped is not None:
            return False
        if not self._altitude_ok(exposure):
            self.r.log(self.stopped)
            return False
        if not self.on_target:
            self.begin_lights()
        if self._refocus_due is None and self.s.refocus_temperature and self.temp_ref is not None:
            t = self._temperature()
            if t is not None and abs(t - self.temp_ref) >= self.s.refocus_temperature:
                self._refocus_due = f"temperature {self.temp_ref:.1f} -> {t:.1f} C"
        if self._refocus_due is not None:
            why, self._refocus_due = self._refocus_due, None
            self.autofocus(why)
        if self._recentre_due:
            self._recentre_due = False
            self.recentre("drift")
        self.meridian(exposure)           # last: nothing may delay the light after it
        return True

    def begin_lights(self) -> None:
        """Slew, centre, autofocus at the start, guide (also after a reconnect)."""
        self.stop_guiding()
        if self.r.eq.mount is not None and self.r.target is not None and self.s.slew:
            self.slew()
        self.on_target = True
        if self.s.autofocus_start and not any(e[0] == "autofocus" for e in self.events):
            self.autofocus("start")
        if self.temp_ref is None:
            self.temp_ref = self._temperature()
        self.start_guiding()

    def after_light(self, name: str, frame) -> None:
        """HFR and plate solve of the light just taken; schedules refocus/re-centre."""
        s = self.s
        self.lights += 1
        if s.refocus_hfr:
            from .focus import frame_hfr

            value, n = frame_hfr(frame.data)
            if math.isfinite(value) and n >= 3:
                self.hfr.append((name, value))
                if self.hfr_ref is None:
                    self.hfr_ref = value
                elif value > self.hfr_ref * (1.0 + s.refocus_hfr):
                    self._refocus_due = f"HFR {self.hfr_ref:.2f} -> {value:.2f} px"
        self._since_check += 1
        periodic = bool(s.recentre_every) and self._since_check >= s.recentre_every
        if not (s.recentre_drift or periodic) or self.r.target is None:
            return
        self._since_check = 0
        from ..core.catalog import angular_separation
        from .centre import solve_frame

        try:
            sol = solve_frame(frame)
        except (BadInputError, RuntimeError, ValueError) as exc:
            self.r.log(f"{name}: not solved ({exc}); no drift check")
            return
        err = float(angular_separation(sol.ra_deg, sol.dec_deg, *self.r.target)) * 60.0
        self.drift.append((name, err))
        limit = s.recentre_drift if s.recentre_drift else s.centre_tolerance
        if (s.recentre_drift and err > s.recentre_drift) or (periodic and err > s.centre_tolerance):
            self.r.log(f"{name}: {err:.2f}' from the target (limit {limit:g}'): re-centring")
            self._recentre_due = True
