"""Capture against the real INDI simulators: devices connect, an exposure arrives and is
written with full headers, the CCD simulator draws the catalogue's stars (gsc stand-in)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing

pytestmark = pytest.mark.skipif(simulators_missing() is not None,
                                reason=str(simulators_missing()))


@pytest.fixture(scope="module")
def rig():
    from napari_astro.capture.devices import Equipment
    from napari_astro.capture.testing import SIM_SEQUENCE_DEVICES, simulator_rig

    with simulator_rig() as (server, client):
        eq = Equipment.from_names(client, **SIM_SEQUENCE_DEVICES)
        eq.connect()
        yield server, client, eq


def test_gsc_stand_in_lists_catalogue_stars_in_simulator_format():
    from napari_astro.capture.gsc import format_lines
    from napari_astro.core.catalog import stars_in_cone

    lines = format_lines(56.75, 24.12, 30.0, 0, 17, 3000)
    truth = stars_in_cone(56.75, 24.12, 0.5)
    assert len(lines) == len(truth) > 20
    # the fields the simulator's sscanf("%10s %f %f %f %f %f %d %d %4s %2s %f %d") reads
    first = lines[0].split()
    assert len(first) == 12 and len(first[0]) <= 10
    assert float(first[1]) == pytest.approx(truth["ra"][0], abs=1e-5)
    assert float(first[2]) == pytest.approx(truth["dec"][0], abs=1e-5)
    assert float(first[4]) == pytest.approx(truth["vmag"][0], abs=0.01)


def test_all_six_devices_connect(rig):
    _, _, eq = rig
    status = eq.status()
    assert len(status) == 6 and set(status.values()) == {"connected"}
    assert eq.wheel.names()[:3] == ["Red", "Green", "Blue"]


def test_exposure_arrives_with_full_headers_and_real_stars(rig, tmp_path):
    from napari_astro.capture.coords import j2000_to_jnow
    from napari_astro.capture.output import frame_header, write_frame
    from napari_astro.core.frames import FrameType, frame_info
    from napari_astro.core.io import read_image
    from napari_astro.core.stars import detect_stars

    _, client, eq = rig
    eq.mount.goto(*j2000_to_jnow(56.75, 24.12))   # the Pleiades
    eq.mount.track(True)
    eq.wheel.select("Green")
    eq.camera.set_binning(2)
    frame = eq.camera.expose(0.5, "light", timeout=30)
    assert frame.data.dtype == np.uint16 and frame.data.shape == (512, 640)
    header = frame_header(frame, kind="light", exposure=0.5, object="M45", filter=eq.wheel.current(),
                          gain=eq.camera.gain(), offset=eq.camera.offset(),
                          temperature=eq.camera.temperature(), binning=2, ra_deg=56.75,
                          dec_deg=24.12, focus=eq.focuser.position(), telescope=eq.mount.name,
                          camera=eq.camera.name)
    path = write_frame(frame, header, tmp_path / "M45_0001.fits")
    info = frame_info(path)
    assert info.type == FrameType.LIGHT and info.exposure == 0.5 and info.filter == "Green"
    assert info.binning == (2, 2) and info.gain is not None
    for key in ("IMAGETYP", "EXPTIME", "CCD-TEMP", "GAIN", "OFFSET", "FILTER", "XBINNING",
                "BAYERPAT", "DATE-OBS", "RA", "DEC", "OBJECT", "FOCUSPOS", "TELESCOP", "INSTRUME"):
        assert key in info.header, key
    assert info.header["FOCUSPOS"] == eq.focuser.position()
    assert info.header["OBJECT"] == "M45"
    img = read_image(path)
    # the stand-in made the simulator draw the catalogue's stars: at least the bright
    # ones inside the field (25 x 20 arcmin at 1.19"/px) are detected
    from napari_astro.core.catalog import stars_in_cone
    stars = detect_stars(img.data, sigma=5.0, max_stars=200)
    cat = stars_in_cone(56.75, 24.12, 0.3, mag_limit=9.5)
    inside = ((np.abs((cat["ra"] - 56.75) * np.cos(np.radians(24.12))) < 0.19)
              & (np.abs(cat["dec"] - 24.12) < 0.15))
    assert inside.sum() >= 3
    assert len(stars.x) >= 0.7 * inside.sum()
    # integers kept exactly (16-bit with BZERO)
    from astropy.io import fits
    assert np.array_equal(fits.getdata(path), frame.data)


def test_a_camera_that_never_delivers_times_out_naming_it(rig):
    """With the driver saving images on its own disk (UPLOAD_LOCAL) no image ever reaches
    the client: expose() aborts, tries again once, then fails naming the camera."""
    import time

    from napari_astro.capture.client import IndiError

    _, client, eq = rig
    client.set_switch("CCD Simulator", "UPLOAD_MODE", ["UPLOAD_LOCAL"])
    try:
        t0 = time.monotonic()
        with pytest.raises(IndiError, match=r"CCD Simulator: no image arrived within 2 s .*\(2 tries\)"):
            eq.camera.expose(0.1, timeout=2.0, retries=1)
        assert time.monotonic() - t0 < 15
    finally:
        client.set_switch("CCD Simulator", "UPLOAD_MODE", ["UPLOAD_CLIENT"])
    assert eq.camera.expose(0.1).data.size > 0          # delivers again afterwards


def test_capture_cli_says_which_device_failed_and_exits_2(tmp_path, monkeypatch, capsys):
    """A device failure during a run (after the runner's own retries) ends the CLI with
    exit 2 and one line naming the server and the device, not a traceback."""
    from napari_astro import cli
    from napari_astro.capture import cli as capture_cli
    from napari_astro.capture.client import IndiError
    from napari_astro.capture.sequence import SequenceRunner

    seq = tmp_path / "s.toml"
    seq.write_text('[sequence]\nobject = "t"\nmount = ""\n\n[[line]]\ntype = "bias"\ncount = 1\n')

    class _Client:
        def __init__(self, *a, **k): pass
        def connect(self): return self
        def disconnect(self): pass

    def fail(self):
        raise IndiError("CCD Simulator: no image arrived within 61 s of a 1 s exposure (2 tries)")

    monkeypatch.setattr("napari_astro.capture.client.IndiClient", _Client)
    monkeypatch.setattr(capture_cli, "check_devices", lambda client, seq: None)
    monkeypatch.setattr(SequenceRunner, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(SequenceRunner, "check", lambda self: None)
    monkeypatch.setattr(SequenceRunner, "run", fail)
    code = cli.main(["capture", "--server", "localhost:1", str(seq), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("localhost:1: CCD Simulator: no image arrived") and "same -o" in err[0]
