"""Faults on the real INDI simulators: indiserver killed mid-sequence and restarted
(the mount back at the pole, drivers from scratch) -> every planned frame present
once, the frames taken before the fault untouched, the mount back on the target."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=str(simulators_missing()))

SEQUENCE = """
[sequence]
object = "M45"
ra = 56.75
dec = 24.12
settle = 0.3
mount = "Telescope Simulator"
reconnect_timeout = 60

[[line]]
type = "light"
exposure = 0.3
count = 5

[[line]]
type = "dark"
exposure = 0.3
count = 2
"""


@pytest.mark.slow
def test_killed_server_is_reconnected_and_no_frame_is_lost_or_duplicated(tmp_path):
    from astropy.io import fits

    from napari_astro.capture.sequence import SequenceRunner, load_sequence
    from napari_astro.capture.testing import simulator_rig

    drivers = ["indi_simulator_ccd", "indi_simulator_telescope"]
    (tmp_path / "s.toml").write_text(SEQUENCE)
    seq = load_sequence(tmp_path / "s.toml")
    with simulator_rig(drivers) as (server, client):
        stamps: dict = {}
        restarted = threading.Event()

        def on_frame(path, frame, header):
            stamps[path] = path.stat().st_mtime_ns
            if len(stamps) == 2 and not restarted.is_set():
                server.kill()            # a crash: server and drivers gone at once

                def later():
                    time.sleep(2.0)
                    server.start()
                    restarted.set()
                threading.Thread(target=later, daemon=True).start()

        runner = SequenceRunner(seq, client, tmp_path / "out", on_frame=on_frame)
        frames = runner.run()
        assert restarted.is_set() and runner.reconnects >= 1
        assert len(frames) == seq.planned() == 7 and len(set(frames)) == 7
        on_disk = sorted(p for p in (tmp_path / "out").rglob("*.fits"))
        assert on_disk == sorted(frames)               # nothing extra, nothing half-written
        first_two = list(stamps)[:2]
        for p in first_two:
            assert p.stat().st_mtime_ns == stamps[p]   # taken before the fault, untouched
        # after the restart the mount started at the pole: the runner slewed back, so
        # the lights after the fault show the same star field as before it
        from skimage.registration import phase_cross_correlation
        a = fits.getdata(frames[0]).astype(float)
        b = fits.getdata(frames[4]).astype(float)
        assert b.max() > 1000                           # stars, not an empty pole field
        shift = phase_cross_correlation(a, b, upsample_factor=4)[0]
        assert np.hypot(*shift) < 30
