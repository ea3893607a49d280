"""Sequences on the real INDI simulators: lights with dithering, darks, bias,
auto-exposed flats with the light panel, restart where it stopped, the CLI's bad input."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing

NEEDS_SIM = pytest.mark.skipif(simulators_missing() is not None, reason=str(simulators_missing()))

SEQUENCE = """
[sequence]
object = "M45"
ra = 56.75
dec = 24.12
dither_every = 2
dither_pixels = 8
settle = 0.5
wheel = "Filter Simulator"
panel = "Light Panel Simulator"

[[line]]
type = "light"
filter = "Red"
exposure = 0.5
count = 4

[[line]]
type = "dark"
exposure = 0.5
count = 2

[[line]]
type = "bias"
count = 2

[[line]]
type = "flat"
filter = "Red"
exposure = 0.01
count = 2
"""


def _shift(a, b):
    from skimage.registration import phase_cross_correlation

    return np.asarray(phase_cross_correlation(a.astype(float), b.astype(float),
                                              upsample_factor=20)[0])


@pytest.fixture(scope="module")
def rig():
    from napari_astro.capture.testing import simulator_rig

    with simulator_rig() as (server, client):
        # small frames keep the test fast: 2x2 binning of the 1280x1024 sensor
        yield server, client


@NEEDS_SIM
@pytest.mark.slow
def test_sequence_produces_the_planned_frames(rig, tmp_path):
    from astropy.io import fits

    from napari_astro.capture.sequence import PROGRESS_FILE, SequenceRunner, load_sequence
    from napari_astro.core.frames import FrameType, frame_info

    _, client = rig
    (tmp_path / "seq.toml").write_text(SEQUENCE)
    seq = load_sequence(tmp_path / "seq.toml")
    out = tmp_path / "night"
    runner = SequenceRunner(seq, client, out, seed=3)
    frames = runner.run()
    assert len(frames) == seq.planned() == 10
    assert (out / PROGRESS_FILE).is_file()
    kinds = [frame_info(p).type for p in frames]
    assert kinds == [FrameType.LIGHT] * 4 + [FrameType.DARK] * 2 + [FrameType.BIAS] * 2 \
        + [FrameType.FLAT] * 2
    lights = [fits.getdata(p) for p in frames[:4]]
    assert min(a.max() for a in lights) > 1000, "no stars drawn"
    # dithers after lights 2 (one dither in 4 lights with dither_every = 2)
    assert len(runner.dithers) == 1 and runner.dithers[0][0] == 2
    assert np.hypot(*_shift(lights[0], lights[1])) <= 1.0
    assert np.hypot(*_shift(lights[2], lights[3])) <= 1.0
    assert np.hypot(*_shift(lights[1], lights[2])) >= 4.0      # 8 px asked
    for p in frames[8:]:
        med = np.median(fits.getdata(p)) / 65535
        assert 0.4 <= med <= 0.6
        assert fits.getheader(p)["FILTER"].strip() == "Red"
    assert frame_info(frames[6]).exposure == pytest.approx(runner.eq.camera.min_exposure())
    assert frame_info(frames[4]).exposure == 0.5
    assert not runner.eq.panel.lit          # switched off after the flats

    # restart: one frame lost (deleted), the rest untouched; only it is taken again
    before = {p: p.stat().st_mtime_ns for p in frames}
    frames[5].unlink()
    again = SequenceRunner(seq, client, out, seed=3).run()
    assert again == frames
    for p in frames:
        if p != frames[5]:
            assert p.stat().st_mtime_ns == before[p]
    assert not list(out.rglob(".*.part*"))     # no half-written temporaries


@NEEDS_SIM
def test_sequence_round_trips_through_toml(tmp_path):
    from napari_astro.capture.sequence import load_sequence, save_sequence

    (tmp_path / "a.toml").write_text(SEQUENCE)
    seq = load_sequence(tmp_path / "a.toml")
    save_sequence(seq, tmp_path / "b.toml")
    assert load_sequence(tmp_path / "b.toml") == seq


@pytest.mark.parametrize("bad, words", [
    ('[[line]]\ntype = "light"\nexposure = 1\ncolour = "red"\n', ["[[line]] 1", "colour"]),
    ('[[line]]\ntype = "flatdark"\nexposure = 1\n', ["[[line]] 1.type", "flatdark"]),
    ('[[line]]\ntype = "light"\nexposure = -1\n', ["[[line]] 1.exposure", "below the minimum"]),
    ('[sequence]\nobjekt = "M42"\n[[line]]\ntype = "bias"\n', ["[sequence]", "objekt"]),
])
def test_bad_sequence_files_exit_2_with_one_line(tmp_path, bad, words, cli_inprocess):
    from napari_astro.capture.server import free_port

    f = tmp_path / "bad.toml"
    f.write_text(bad)
    r = cli_inprocess("capture", "--server", f"localhost:{free_port()}", str(f),
                      "-o", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0]
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "o").exists()


def test_server_that_does_not_answer_exits_2(tmp_path, cli_inprocess):
    from napari_astro.capture.server import free_port

    f = tmp_path / "s.toml"
    f.write_text('[sequence]\nra = 10\ndec = 10\n[[line]]\ntype = "bias"\n')
    port = free_port()
    r = cli_inprocess("capture", "--server", f"localhost:{port}", str(f),
                      "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"localhost:{port}" in lines[0] and "does not answer" in lines[0]
    assert not (tmp_path / "o").exists()


def test_driver_not_installed_exits_2(tmp_path, cli_inprocess):
    f = tmp_path / "d.toml"
    f.write_text(textwrap.dedent('''
        [sequence]
        ra = 10
        dec = 10
        drivers = ["indi_simulator_ccd", "indi_no_such_camera"]
        [[line]]
        type = "bias"
        '''))
    r = cli_inprocess("capture", "--start-server", "--server", "localhost:7999", str(f), "-o",
             str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "indi_no_such_camera" in lines[0] and "not installed" in lines[0]


@NEEDS_SIM
def test_device_missing_on_the_server_exits_2_before_anything_moves(rig, tmp_path, cli_inprocess):
    server, client = rig
    f = tmp_path / "m.toml"
    f.write_text('[sequence]\nra = 10\ndec = 10\nmount = "Mount Nowhere"\n[[line]]\ntype = "bias"\n')
    import time

    client.connect_device("Telescope Simulator")
    time.sleep(1.5)     # the first position report after connecting
    dec_before = client.number("Telescope Simulator", "EQUATORIAL_EOD_COORD")["DEC"]
    park_before = client.switch("Telescope Simulator", "TELESCOPE_PARK")
    r = cli_inprocess("capture", "--server", server.address, str(f), "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Mount Nowhere" in lines[0] and "sequence.mount" in lines[0]
    assert not (tmp_path / "o").exists()
    # nothing moved (a parked or idle mount's RA follows sidereal time: compare Dec)
    assert client.number("Telescope Simulator", "EQUATORIAL_EOD_COORD")["DEC"] == \
        pytest.approx(dec_before, abs=1e-6)
    assert client.switch("Telescope Simulator", "TELESCOPE_PARK") == park_before
