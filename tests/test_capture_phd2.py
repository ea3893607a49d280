"""PHD2Guider against a stand-in of PHD2's event server (tests/fake_phd2.py: PHD2's
documented protocol over TCP, a simulated guide star behind it): start with
calibration and settling, statistics from GuideStep events, dither and settle, a
settle that fails, pause/resume, flip, stop, and servers that are not there."""

from __future__ import annotations

import math
import threading
import time

import pytest

from fake_phd2 import FakePHD2
from napari_astro.capture.guide import GuideError
from napari_astro.capture.phd2 import PHD2Guider
from napari_astro.capture.server import free_port


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_phd2_start_stats_dither_pause_flip_stop():
    steps, logs = [], []
    with FakePHD2(noise_px=0.1) as phd:
        g = PHD2Guider("localhost", phd.port, log=logs.append, timeout=5,
                       on_step=lambda ra, dec, rms: steps.append((ra, dec, rms, threading.current_thread())))
        g.start_settle_time = 0.2
        g.start(calibrate=True, timeout=10)
        # calibrated, guiding, settled (SettleDone Status 0 came after the settle time)
        assert phd.calibrations == 1 and g.running and g.version == "2.6.13"
        assert phd.sent_of("SettleDone")[-1]["Status"] == 0
        assert any("CalibrationComplete" in m for m in logs)
        req = phd.requests[0]
        assert req["method"] == "guide" and req["params"]["recalibrate"] is True
        assert req["params"]["settle"] == {"pixels": 1.5, "time": 0.2, "timeout": 10}

        # statistics are the GuideStep events' raw distances, in order
        assert _wait(lambda: len(g.stats.ra) >= 20)
        sent = phd.sent_of("GuideStep")
        st = g.stats
        n = len(st.ra)
        assert st.ra == [m["RADistanceRaw"] for m in sent[:n]]
        assert st.dec == [m["DECDistanceRaw"] for m in sent[:n]]
        assert steps[0][3] is not threading.current_thread()
        assert steps[n - 1][:2] == (st.ra[-1], st.dec[-1])
        # settled guiding: the star's seeing noise of 0.1 px per axis
        assert 0.03 < g.rms(10) < 0.4

        # dither: PHD2's offset returned, blocks until settled within 0.5 px for 0.3 s
        t0 = time.monotonic()
        dx, dy = g.dither(3.0, settle_px=0.5, settle_time=0.3, timeout=10)
        took = time.monotonic() - t0
        event = phd.sent_of("GuidingDithered")[-1]
        assert (dx, dy) == (event["dx"], event["dy"]) and max(abs(dx), abs(dy)) <= 3.0
        assert took >= 0.3
        done = phd.sent_of("SettleDone")[-1]
        assert done["Status"] == 0
        last = phd.sent_of("Settling")[-1]
        assert last["Distance"] <= 0.5 and last["Time"] >= 0.3
        dreq = [r for r in phd.requests if r["method"] == "dither"][-1]
        assert dreq["params"]["amount"] == 3.0 and dreq["params"]["settle"]["pixels"] == 0.5

        # pause: no guide frames; resume: frames again
        g.pause()
        assert phd.state == "Paused"
        n = len(g.stats.ra)
        time.sleep(0.3)
        assert len(g.stats.ra) <= n + 1          # at most one already on the wire
        g.resume()
        assert phd.state == "Guiding"
        assert _wait(lambda: len(g.stats.ra) >= n + 5)

        g.flip()
        assert phd.flipped == 1

        # start without recalibrating on a second client: PHD2 keeps its calibration
        g.start(calibrate=True)                 # already guiding: nothing sent
        assert sum(r["method"] == "guide" for r in phd.requests) == 1
        g.stop()
        g.stop()
        assert not g.running and phd.state == "Stopped"
        g2 = PHD2Guider("localhost", phd.port, timeout=5)
        g2.start_settle_time = 0.1
        g2.start(calibrate=False, timeout=10)
        assert phd.calibrations == 1 and g2.running
        g2.stop()


def test_phd2_errors_settle_failure_and_method_errors():
    # a star too noisy to stay within 0.2 px: PHD2's SettleDone Status 1 -> GuideError
    with FakePHD2(noise_px=1.0) as phd:
        g = PHD2Guider("localhost", phd.port, timeout=5)
        with pytest.raises(GuideError, match="cannot dither if not guiding"):
            g.dither(2.0)                      # PHD2's own error message, named
        g.start_settle_px, g.start_settle_time = 10.0, 0.1
        g.start(calibrate=True, timeout=10)
        t0 = time.monotonic()
        with pytest.raises(GuideError, match=f"PHD2 at localhost:{phd.port}: dither did not "
                                             "settle: timed-out waiting for guider to settle"):
            g.dither(2.0, settle_px=0.2, settle_time=0.5, timeout=0.6)
        assert 0.5 < time.monotonic() - t0 < 5
        assert phd.sent_of("SettleDone")[-1]["Status"] == 1
        with pytest.raises(GuideError, match="method not found"):
            g.call("no_such_method")
        g.stop()


def test_phd2_not_there_or_silent_is_a_quick_error():
    port = free_port()                          # nobody listens
    t0 = time.monotonic()
    with pytest.raises(GuideError, match=f"PHD2 at localhost:{port}: does not answer"):
        PHD2Guider("localhost", port, timeout=5).start()
    assert time.monotonic() - t0 < 2
    with FakePHD2(silent=True) as phd:         # accepts, never speaks
        t0 = time.monotonic()
        with pytest.raises(GuideError, match="sent no Version event"):
            PHD2Guider("localhost", phd.port, timeout=0.5).start()
        assert time.monotonic() - t0 < 3
    assert math.isnan(PHD2Guider("localhost", port).rms())
