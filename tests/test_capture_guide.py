"""Built-in guider on the real INDI guide-camera simulator: calibration finds two
independent pulse directions, guiding holds the star within 1 px RMS with the
simulator's polar error and drift on, and settles after a dither."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=str(simulators_missing()))


@pytest.mark.slow
def test_guider_calibrates_holds_the_star_and_settles_after_a_dither():
    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.devices import Equipment
    from napari_astro.capture.guide import Guider
    from napari_astro.capture.testing import simulator_rig

    with simulator_rig(["indi_simulator_guide", "indi_simulator_telescope"]) as (_, client):
        eq = Equipment.from_names(client, mount="Telescope Simulator", guider="Guide Simulator")
        eq.connect()
        # the guide simulator of indi 1.9.9 offers polar error and drift (its periodic
        # error settings exist only in the main CCD simulator)
        client.set_number("Guide Simulator", "SIMULATOR_SETTINGS",
                          {"SIM_POLAR": 1.0, "SIM_POLARDRIFT": 1.0}, wait=10)
        eq.mount.goto(*j2000_to_jnow(56.75, 24.12))
        eq.mount.track(True)
        eq.guider.set_binning(2)                          # 1.1"/px, a usual guiding scale
        g = Guider(eq.guider, eq.mount, exposure=0.5)
        g.select_star()
        ra_vec, dec_vec = g.calibrate()
        # 1 s at the default guide rate moves the star ~6 px (binned): both axes found
        # and nearly perpendicular
        assert 3 < np.hypot(*ra_vec) * 1000 < 12 and 3 < np.hypot(*dec_vec) * 1000 < 12
        cos = abs(np.dot(ra_vec, dec_vec)) / (np.hypot(*ra_vec) * np.hypot(*dec_vec))
        assert cos < 0.2
        stats = g.guide(12)
        assert stats.rms <= 1.0, (stats.ra, stats.dec)
        frames = g.dither(4.0, 3.0)                       # the lock moves 5 px
        assert frames <= 10
        after = g.guide(4)
        assert after.rms <= 1.0
