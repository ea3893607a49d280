"""Mount on the real INDI simulators: slew and park; plate-solve and centre (the
simulator's gotos end a few arcmin off) ends within 1 arcmin; docs' example parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from napari_astro.capture.testing import simulators_missing

NEEDS_SIM = pytest.mark.skipif(simulators_missing() is not None, reason=str(simulators_missing()))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "CAPTURE.md"


def test_docs_example_sequence_is_valid(tmp_path):
    from napari_astro.capture.sequence import load_sequence

    block = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.S)[0]
    (tmp_path / "doc.toml").write_text(block)
    seq = load_sequence(tmp_path / "doc.toml")
    assert {ln.type for ln in seq.lines} == {"light", "dark", "bias", "flat", "darkflat"}


@NEEDS_SIM
@pytest.mark.slow
def test_slew_park_and_centre_within_one_arcmin():
    from napari_astro.capture.centre import centre_on, solve_frame
    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.devices import Equipment
    from napari_astro.capture.testing import simulator_rig
    from napari_astro.core.catalog import angular_separation
    from napari_astro.core.solve import index_files

    if not index_files():
        pytest.skip("no astrometry.net index files (astrometry-data-tycho2)")
    with simulator_rig(["indi_simulator_ccd", "indi_simulator_telescope",
                        "indi_simulator_focus"]) as (_, client):
        eq = Equipment.from_names(client, camera="CCD Simulator", mount="Telescope Simulator",
                                  focuser="Focuser Simulator")
        eq.connect()
        # 300 mm: 3.6"/px, a 1.3 x 1.0 deg field the Tycho-2 indexes solve
        eq.mount.set_focal_length(300)
        ra, dec = 83.82, -5.39                                  # M42
        eq.mount.goto(*j2000_to_jnow(ra, dec))
        eq.mount.track(True)
        assert eq.mount.tracking and not eq.mount.parked
        res = centre_on(eq, ra, dec, exposure=1.0)
        assert res.error_arcmin <= 1.0
        # an independent check: a fresh frame solved again
        sol = solve_frame(eq.camera.expose(1.0))
        assert angular_separation(sol.ra_deg, sol.dec_deg, ra, dec) * 60 <= 1.0
        eq.mount.park()
        assert eq.mount.parked


def test_focus_result_curve_is_the_fitted_hyperbola():
    """FocusResult.curve evaluates a * sqrt(1 + ((x - c) / b)^2) [px] at x [steps]; the
    fit of noiseless samples of a known hyperbola finds it again."""
    import numpy as np

    from napari_astro.capture.focus import FocusResult, fit_hyperbola

    a, b, c = 2.5, 3000.0, 41234.0                      # HFR 2.5 px at 41234 steps
    res = FocusResult([], [], (a, b, c), int(c))
    assert res.curve(c) == pytest.approx(a)
    assert res.curve([c - b, c + b]) == pytest.approx([a * np.sqrt(2)] * 2)
    assert res.curve(c + 4 * b) == pytest.approx(a * np.sqrt(17))
    xs = np.arange(29000, 54001, 3000)
    ys = a * np.sqrt(1 + ((xs - c) / b) ** 2)
    assert res.curve(xs).shape == xs.shape and np.allclose(res.curve(xs), ys)
    fit = fit_hyperbola(xs, np.where(xs == 35000, np.nan, ys))   # a starless frame: NaN
    assert fit == pytest.approx((a, b, c), rel=1e-4)
    assert np.allclose(FocusResult(list(xs), list(ys), fit, int(c)).curve(xs), ys, rtol=1e-4)


@NEEDS_SIM
@pytest.mark.slow
def test_autofocus_ends_near_the_simulators_best_focus():
    import numpy as np

    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.devices import Equipment
    from napari_astro.capture.focus import autofocus
    from napari_astro.capture.testing import simulator_rig
    from napari_astro.core.progress import Cancelled, CancelToken

    with simulator_rig(["indi_simulator_ccd", "indi_simulator_telescope",
                        "indi_simulator_focus"]) as (_, client):
        eq = Equipment.from_names(client, camera="CCD Simulator", mount="Telescope Simulator",
                                  focuser="Focuser Simulator")
        eq.connect()
        # ground truth: the simulator's own star FWHM against position (a parabola)
        xs = np.arange(26000, 48001, 4000)
        fwhm = []
        for x in xs:
            eq.focuser.move_to(int(x))
            fwhm.append(client.number("Focuser Simulator", "FWHM")["SIM_FWHM"])
        k2, k1, _ = np.polyfit(xs, fwhm, 2)
        truth = -k1 / (2 * k2)
        eq.focuser.move_to(50000)
        eq.mount.goto(*j2000_to_jnow(56.75, 24.12))      # the Pleiades: bright stars
        eq.mount.track(True)
        eq.camera.set_roi(320, 256, 640, 512)             # half the sensor: faster frames
        seen = []
        res = autofocus(eq, step=3000, points=7, exposure=0.5,
                        on_point=lambda p, hfr: seen.append((p, hfr)))
        assert abs(res.best - truth) <= 1500                # within half an autofocus step
        assert eq.focuser.position() == res.best
        assert min(res.hfr) < 0.8 * res.hfr[res.positions.index(50000)]
        seen.sort()                                          # each point, as measured
        assert [p for p, _ in seen] == res.positions
        assert np.allclose([h for _, h in seen], res.hfr, equal_nan=True)
        # cancelled after its second point: no further focuser move, Cancelled raised
        token, seen = CancelToken(), []

        def second_cancels(p, hfr):
            seen.append(p)
            if len(seen) == 2:
                token.cancel()

        with pytest.raises(Cancelled):
            autofocus(eq, step=3000, points=7, exposure=0.5, on_point=second_cancels,
                      cancel=token)
        assert len(seen) == 2 and eq.focuser.position() == seen[-1]
