"""The night of a sequence (capture/night.py) on the real INDI simulators: waiting for
the target to rise, the altitude limit, the meridian flip, re-centring after a drift,
refocusing when the HFR grows; and the sky arithmetic against astropy."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing

NEEDS_SIM = pytest.mark.skipif(simulators_missing() is not None, reason=str(simulators_missing()))

#: The Double Cluster: bright stars for the simulator and the solver, J2000 degrees.
TARGET = (34.75, 57.13)


def _astropy_conf():
    """astropy's IERS tables without downloads (the test machine is offline)."""
    from astropy.utils import iers

    return iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None)


# -- the sky arithmetic against astropy ------------------------------------------------------
def test_sidereal_time_altitude_and_rise_time_agree_with_astropy():
    import warnings

    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    from napari_astro.capture.night import (SIDEREAL_RATE, altitude, hour_angle,
                                            seconds_to_altitude, sidereal_time)

    a, b = _astropy_conf()
    with a, b, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time("2024-06-01T22:00:00")
        for lon in (0.0, 10.0, 250.0):
            lst = t.sidereal_time("apparent", longitude=lon * u.deg).hour
            assert abs(((sidereal_time(lon, t.unix) - lst + 12) % 24) - 12) * 3600 < 1.0   # < 1 s
        # altitude of date coordinates against astropy's AltAz (no refraction)
        loc = EarthLocation(lat=40 * u.deg, lon=10 * u.deg)
        c = SkyCoord(TARGET[0] * u.deg, TARGET[1] * u.deg).transform_to(
            AltAz(obstime=t, location=loc))
        from napari_astro.capture.coords import j2000_to_jnow

        with _frozen_now(t.unix):
            ra_h, dec = j2000_to_jnow(*TARGET)
        ha = hour_angle(ra_h, sidereal_time(10.0, t.unix))
        assert altitude(ha, dec, 40.0) == pytest.approx(c.alt.deg, abs=0.02)
    # rising to 30 deg: the altitude after the computed wait is 30 deg
    for ha0 in (-8.0, -6.5, 6.0):
        assert altitude(ha0, 20.0, 40.0) < 30.0
        wait = seconds_to_altitude(ha0, 20.0, 40.0, 30.0)
        after = altitude(ha0 + wait * SIDEREAL_RATE / 3600, 20.0, 40.0)
        assert after == pytest.approx(30.0, abs=1e-6)
        assert wait * SIDEREAL_RATE / 3600 < 24
    assert seconds_to_altitude(0.0, 20.0, 40.0, 30.0) == 0.0          # above it now
    assert seconds_to_altitude(0.0, -60.0, 40.0, 0.0) is None           # never rises


class _frozen_now:
    """``Time.now()`` fixed (the precession of ``j2000_to_jnow`` is of "now")."""

    def __init__(self, unix):
        self.unix = unix

    def __enter__(self):
        from astropy.time import Time

        self.saved = Time.now
        Time.now = classmethod(lambda cls: Time(self.unix, format="unix"))

    def __exit__(self, *exc):
        from astropy.time import Time

        Time.now = self.saved


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad, words", [
    ("min_altitude = 95", ["min_altitude", "above the maximum"]),
    ('guiding = "phd3"', ["guiding", "phd3"]),
    ("refocus_hfr = 0.2", ["refocus_hfr", "needs a focuser"]),
    ('guiding = "builtin"', ["guiding", "needs a guider"]),
    ("flip_afterr = 5", ["flip_afterr"]),
    ('guiding = "phd2"\nphd2_port = PORT', ["phd2_port", "no PHD2 server answers"]),
])
def test_bad_night_settings_exit_2_with_one_line(tmp_path, bad, words, cli_inprocess):
    from napari_astro.capture.server import free_port

    f = tmp_path / "bad.toml"
    f.write_text(f'[sequence]\nra = 10\ndec = 10\n{bad.replace("PORT", str(free_port()))}\n'
                 '[[line]]\ntype = "bias"\n')
    r = cli_inprocess("capture", "--server", f"localhost:{free_port()}", str(f),
                      "-o", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "o").exists()


# -- on the simulators -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rig():
    from napari_astro.capture.devices import Equipment
    from napari_astro.capture.testing import simulator_rig

    with simulator_rig(["indi_simulator_ccd", "indi_simulator_telescope",
                        "indi_simulator_focus"]) as (server, client):
        eq = Equipment.from_names(client, camera="CCD Simulator", mount="Telescope Simulator",
                                  focuser="Focuser Simulator")
        eq.connect()
        yield client, eq


def _put_target_at(eq, hour_angle_h: float, lat: float = 30.0) -> None:
    """Move the mount's site in longitude so that TARGET is at ``hour_angle_h`` now."""
    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.night import sidereal_time

    ra_h, _ = j2000_to_jnow(*TARGET)
    lon = ((ra_h + hour_angle_h - sidereal_time(0.0, time.time())) * 15.0) % 360.0
    eq.mount.set_site(lat, lon)


def _write(tmp_path, settings: str, lines: str):
    from napari_astro.capture.sequence import load_sequence

    f = tmp_path / "night.toml"
    f.write_text(f'[sequence]\nobject = "NGC869"\nra = {TARGET[0]}\ndec = {TARGET[1]}\n'
                 f"focuser = \"Focuser Simulator\"\nsettle = 0.2\n{settings}\n{lines}")
    return load_sequence(f)


LIGHT_BIAS = ('[[line]]\ntype = "light"\nexposure = 0.2\ncount = 2\n\n'
              '[[line]]\ntype = "bias"\ncount = 1\n')


@NEEDS_SIM
def test_lights_wait_for_the_target_to_rise(rig, tmp_path):
    from astropy.io import fits

    from napari_astro.capture.night import Sky
    from napari_astro.capture.sequence import SequenceRunner

    client, eq = rig
    _put_target_at(eq, -3.0)                    # rising, ~0.0035 deg/s
    sky = Sky(TARGET, eq.mount.site())
    rate = (sky.altitude(60) - sky.altitude()) / 60
    assert rate > 0.002
    limit = sky.altitude() + 4.0 * rate          # four seconds from now
    seq = _write(tmp_path, f"slew = false\nmin_altitude = {limit:.5f}\nwait_timeout = 0.01",
                 LIGHT_BIAS)
    t0 = time.time()
    runner = SequenceRunner(seq, client, tmp_path / "out")
    frames = runner.run()
    assert len(frames) == 3 and runner.stopped is None
    waits = [e for e in runner.night.events if e[0] == "wait"]
    assert waits and 2.0 < waits[0][2] < 6.0
    from astropy.time import Time

    first = Time(fits.getheader(frames[0])["DATE-OBS"], scale="utc").unix
    assert first - t0 >= 3.0                     # not exposed before it rose
    assert sky.altitude(first - time.time()) >= limit - 1e-4


@NEEDS_SIM
def test_lights_stop_when_the_target_is_low_and_a_later_run_takes_them(rig, tmp_path):
    from napari_astro.capture.night import Sky
    from napari_astro.capture.sequence import SequenceRunner

    client, eq = rig
    _put_target_at(eq, 3.0)                      # setting
    sky = Sky(TARGET, eq.mount.site())
    limit = sky.altitude() + 1.0
    seq = _write(tmp_path, f"slew = false\nmin_altitude = {limit:.4f}", LIGHT_BIAS)
    runner = SequenceRunner(seq, client, tmp_path / "out")
    frames = runner.run()
    assert len(frames) == 1 and "setting" in runner.stopped       # the bias only
    bias_mtime = frames[0].stat().st_mtime_ns
    # the same sequence "earlier in the night" (the clock 2 h back: 10+ deg higher)
    again = SequenceRunner(seq, client, tmp_path / "out", clock=lambda: time.time() - 7200)
    frames2 = again.run()
    assert len(frames2) == 3 and again.stopped is None
    assert frames[0] in frames2 and frames[0].stat().st_mtime_ns == bias_mtime
    # a target that never climbs above min_altitude at this site: bad input, nothing written
    from napari_astro.core.errors import BadInputError

    seq = _write(tmp_path, f"slew = false\nmin_altitude = {sky.max_altitude() + 1:.2f}", LIGHT_BIAS)
    with pytest.raises(BadInputError, match="never above"):
        SequenceRunner(seq, client, tmp_path / "never").run()
    assert not (tmp_path / "never").exists()
    # a target that rises after wait_timeout: skipped at once with the reason
    _put_target_at(eq, -3.0)
    later = Sky(TARGET, eq.mount.site()).altitude() + 5
    seq = _write(tmp_path, f"slew = false\nmin_altitude = {later:.3f}\nwait_timeout = 0.1",
                 LIGHT_BIAS)
    t0 = time.monotonic()
    late = SequenceRunner(seq, client, tmp_path / "out2")
    assert len(late.run()) == 1 and "wait_timeout" in late.stopped
    assert time.monotonic() - t0 < 15


def _solve_file(path):
    from astropy.io import fits

    from napari_astro.capture.centre import solve_frame
    from napari_astro.capture.devices import Frame
    from napari_astro.core.catalog import angular_separation

    with fits.open(path) as h:
        frame = Frame(np.array(h[0].data), h[0].header.copy())
    sol = solve_frame(frame)
    return float(angular_separation(sol.ra_deg, sol.dec_deg, *TARGET)) * 60


@NEEDS_SIM
@pytest.mark.slow
def test_meridian_flip_and_recentring_after_a_drift(rig, tmp_path):
    from astropy.io import fits
    from astropy.time import Time

    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.night import Sky
    from napari_astro.capture.sequence import SequenceRunner
    from napari_astro.core.solve import index_files

    if not index_files():
        pytest.skip("no astrometry.net index files (astrometry-data-tycho2)")
    client, eq = rig
    eq.mount.set_focal_length(300)               # 3.6"/px: a field the indexes solve
    # crossing the meridian ~35 s from now: after the slew (~15 s), centring, the
    # re-centring after light 2 (~22 s from now) and before light 8 (~38 s)
    _put_target_at(eq, -35 / 3600)
    t_cross = time.time() + 35
    sky = Sky(TARGET, eq.mount.site())
    seq = _write(tmp_path, "centre = true\ncentre_exposure = 1\nrecentre_drift = 3\n"
                 "meridian_flip = true\nflip_after = 0\nflip_pause = true",
                 '[[line]]\ntype = "light"\nexposure = 1\ncount = 8\n\n'
                 '[[line]]\ntype = "bias"\ncount = 1\n')
    ra_h, dec = j2000_to_jnow(*TARGET)

    def on_frame(path, frame, header):
        if path.name.endswith("0001.fits") and header["IMAGETYP"] == "Light Frame":
            eq.mount.sync(ra_h, dec + 0.2)        # a 12' pointing error
        if path.name.endswith("0004.fits") and header["IMAGETYP"] == "Light Frame":
            # a fast machine would finish the lights before the crossing: light 5
            # starts about a second before it, whatever the machine's speed
            time.sleep(max(0.0, t_cross - 1.0 - time.time()))

    runner = SequenceRunner(seq, client, tmp_path / "out", on_frame=on_frame, log=print)
    frames = runner.run()
    lights = frames[:8]
    assert len(frames) == 9 and len(set(frames)) == 9
    assert sorted((tmp_path / "out").rglob("*.fits")) == sorted(frames)
    kinds = [e[0] for e in runner.night.events]
    flips = [e for e in runner.night.events if e[0] == "flip"]
    assert len(flips) == 1 and flips[0][2] == ("W", "E"), runner.night.events
    n_before = flips[0][1]
    assert 2 <= n_before <= 7                   # timing under load: after the re-centring
    sides = [fits.getheader(p)["PIERSIDE"] for p in lights]
    assert sides == ["WEST"] * n_before + ["EAST"] * (8 - n_before)
    # no light crossed the meridian on the west pier side (start and end hour angles)
    for p, side in zip(lights, sides):
        h = fits.getheader(p)
        start = Time(h["DATE-OBS"], scale="utc").unix - time.time()
        ha0, ha1 = sky.hour_angle(start), sky.hour_angle(start + h["EXPTIME"])
        assert (ha1 < 0.0) if side == "WEST" else (ha0 >= 0.0), (p.name, ha0, ha1)
    # the 12' error after light 1 is measured on light 2 and re-centred before light 3
    drift = dict(runner.night.drift)
    name = [str(p.relative_to(tmp_path / "out")) for p in lights]
    assert 9 < drift[name[1]] < 15
    recentres = [e for e in runner.night.events if e[0] == "recentre"]
    assert recentres and recentres[0][1] == 2 and recentres[0][2][0] > 9, runner.night.events
    for n in name[2:]:
        assert drift[n] <= 1.5, (n, drift)
    # an independent check of the last light (after flip and re-centring)
    last = _solve_file(lights[-1])
    assert last <= 1.5
    print(f"\nflip after light {n_before}: pier {sides}; drift {[round(drift[n], 2) for n in name]}"
          f" arcmin; re-centring {[round(e, 2) for e in recentres[0][2]]}; last light {last:.2f}'")


@NEEDS_SIM
@pytest.mark.slow
def test_refocus_when_the_hfr_grows(rig, tmp_path):
    from napari_astro.capture.sequence import SequenceRunner

    client, eq = rig
    eq.mount.set_focal_length(900)               # the simulator's default: 0.86"/px
    _put_target_at(eq, 1.0)
    # ground truth: the focuser simulator's star FWHM is a parabola in the position
    xs = [28000, 36000, 44000]
    fwhm = []
    for x in xs:
        eq.focuser.move_to(x)
        fwhm.append(client.number("Focuser Simulator", "FWHM")["SIM_FWHM"])
    k2, k1, _ = np.polyfit(xs, fwhm, 2)
    truth = -k1 / (2 * k2)
    eq.focuser.move_to(int(truth))
    seq = _write(tmp_path, "refocus_hfr = 0.2\nfocus_step = 4000\nfocus_points = 7\n"
                 "focus_exposure = 0.5",
                 '[[line]]\ntype = "light"\nexposure = 0.5\ncount = 5\n')

    def on_frame(path, frame, header):
        if path.name.endswith("0002.fits"):
            eq.focuser.move_to(int(truth) + 14000)   # the focus slips

    runner = SequenceRunner(seq, client, tmp_path / "out", on_frame=on_frame)
    frames = runner.run()
    assert len(frames) == 5
    hfr = dict(runner.night.hfr)
    h = [hfr[str(p.relative_to(tmp_path / "out"))] for p in frames]
    af = [e for e in runner.night.events if e[0] == "autofocus"]
    assert len(af) == 1 and af[0][2][0].startswith("HFR") and af[0][1] == 3, runner.night.events
    assert h[2] > 1.2 * h[0]                      # the slipped light
    assert max(h[3:]) < 1.15 * h[0] and max(h[3:]) < 0.9 * h[2]
    assert abs(eq.focuser.position() - truth) <= 3000
    print(f"HFR {[round(v, 2) for v in h]} px, focus {eq.focuser.position()} (truth "
          f"{truth:.0f})")


def test_refocus_is_due_after_the_temperature_changed_by_the_set_amount():
    """The temperature trigger (no INDI): with ``refocus_temperature = 1`` a change of
    0.4 C since the last autofocus runs none, 1.2 C runs one before the next light, and
    its reference is then the new temperature (the focuser's sensor first)."""
    import types

    from napari_astro.capture.night import Night
    from napari_astro.capture.sequence import SequenceParams

    class Focuser:
        temp = 10.0

        def temperature(self):
            return self.temp

    class Camera:
        def temperature(self):          # not used: the focuser has a sensor
            raise AssertionError("the focuser's temperature comes first")

    foc = Focuser()
    settings = SequenceParams(ra=10.0, dec=20.0, mount=None, focuser="Focuser Simulator",
                              refocus_temperature=1.0)
    runner = types.SimpleNamespace(seq=types.SimpleNamespace(settings=settings),
                                   eq=types.SimpleNamespace(focuser=foc, camera=Camera(),
                                                            mount=None),
                                   target=None, log=lambda m: None)
    night = Night(runner)
    ran = []

    def fake_autofocus(why):
        ran.append(why)
        night.temp_ref = night._temperature()

    night.autofocus = fake_autofocus
    night.on_target = True
    night.temp_ref = night._temperature()
    foc.temp = 10.4
    assert night.before_light(1.0) and ran == []
    foc.temp = 11.2
    assert night.before_light(1.0) and ran == ["temperature 10.0 -> 11.2 C"]
    assert night.temp_ref == 11.2
    foc.temp = 11.9                      # 0.7 C from the new reference: no refocus
    assert night.before_light(1.0) and len(ran) == 1
