"""The whole pre-processing run (`napari-astro stack`) against the simulator's truth,
on the real Seestar frames, after an interruption, and on bad input."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_astro.cli import main
from napari_astro.core.io import read_image
from napari_astro.core.simulate import NightParams, load_truth, simulate_night
from napari_astro.core.stars import detect_stars
from napari_astro.pipeline.demo import compare_to_truth
from napari_astro.pipeline.stack import plan_stack, run_stack
from napari_astro.pipeline.steps import RegisterParams

NAPARI_ASTRO = Path(sys.executable).with_name("napari-astro")


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("night") / "night"
    simulate_night(root, NightParams(width=480, height=360, n_lights=8, n_darks=5, n_flats=5,
                                     n_biases=5, seed=3))
    return root


@pytest.fixture(scope="module")
def stacked(night, tmp_path_factory):
    out = tmp_path_factory.mktemp("stack") / "out.fits"
    truth = load_truth(night)
    result = run_stack([night], out, register=RegisterParams(reference=str(truth.lights[0])))
    return out, result, truth


def _hash(folder: Path) -> dict:
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_stack_matches_truth(stacked):
    out, result, truth = stacked
    img = read_image(out)
    assert img.is_color and img.shape2d == truth.sky.shape[-2:]
    figures = compare_to_truth(img.data, truth.sky, img.mask)
    single = read_image(next((out.parent / "out.fits.work").glob("calibrated_*/light_0001_cal.fits")))
    single_fig = compare_to_truth(single.data, truth.sky)
    n = len(truth.lights) - sum(1 for r in result.quality[""] if not r["accepted"])
    for ch, one in zip(figures["channels"], single_fig["channels"]):
        # linear: stack = truth within 2% in scale
        assert abs(ch["scale"] - 1) < 0.02
        # flat-fielded: no residual vignetting or dust (< 0.2% of the sky level)
        assert ch["large_scale_std"] < 0.002 * ch["sky_level"]
        # noise went down close to sqrt(N) (rejection and interpolation cost a little)
        assert ch["noise"] < one["noise"] / np.sqrt(n) * 1.35


def test_stack_removes_hot_pixels_cosmics_and_trail(stacked):
    out, result, truth = stacked
    img = read_image(out)
    fig = compare_to_truth(img.data, truth.sky, img.mask)
    valid = img.mask if img.mask is not None else np.ones(img.shape2d, bool)
    # Only where every frame covers the field (at the dithered borders a few frames
    # are all there is and nothing can be rejected).
    margin = int(np.ceil(max(np.abs(np.asarray(m)[:2, 2]).max() for m in truth.transforms))) + 4
    valid = valid.copy()
    valid[:margin] = valid[-margin:] = False
    valid[:, :margin] = valid[:, -margin:] = False
    for c, ch in enumerate(fig["channels"]):
        resid = (img.data[c] - ch["offset"]) / ch["scale"] - truth.sky[c]
        bright = truth.sky[c] > np.percentile(truth.sky[c], 99.0)  # star cores: PSF/saturation
        core = valid & ~bright
        # no isolated outliers: hot pixels, cosmic rays and the satellite trail are gone
        assert np.abs(resid[core]).max() < 10 * ch["noise"], f"channel {c}"
    sat = truth.info["satellite"]
    assert sat is not None


def test_stack_on_reference_grid(stacked):
    out, _, truth = stacked
    img = read_image(out)
    stars = detect_stars(img.luminance(), sigma=10)
    t = truth.stars
    ok = ~np.asarray(t["saturated"], bool)
    ref = np.column_stack([t["x"][ok], t["y"][ok]])
    xy = np.column_stack([stars.x, stars.y])
    d2 = ((xy[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    j = d2.argmin(1)
    close = d2[np.arange(len(xy)), j] < 1.0
    assert close.sum() >= 20
    offset = (xy[close] - ref[j[close]]).mean(0)
    assert np.all(np.abs(offset) < 0.05), offset


def test_stack_coverage_is_the_frames_per_pixel(stacked):
    """The coverage map (counted by the combine kernel) equals the count of the valid
    pixels of the registered frames that were integrated."""
    from napari_astro.core.coverage import coverage_map

    out, result, _ = stacked
    used = [Path(r["output"]) for r in result.quality[""] if r["accepted"]]
    want = coverage_map(used)
    np.testing.assert_array_equal(result.coverage[""], want)
    np.testing.assert_array_equal(read_image(out.with_name("out_coverage.fits")).data, want)
    assert want.min() < len(used) == want.max()       # dithered edges have fewer frames


def test_stack_log_and_quality(stacked):
    out, result, _ = stacked
    log = result.log_path.read_text()
    assert "pedestal" in log and "weight" in log and "time integrate" in log
    rows = result.quality[""]
    assert len(rows) == 8 and all(r["accepted"] for r in rows)
    assert sum(r["reference"] for r in rows) == 1


def test_dry_run_writes_nothing(night, tmp_path, capsys):
    before = _hash(night)
    out = tmp_path / "dry.fits"
    assert main(["stack", str(night), "-o", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "8 lights" in text and "master" in text.lower()
    assert not out.exists() and not list(tmp_path.iterdir())
    assert _hash(night) == before


def test_interrupted_run_resumes_to_the_same_result(night, tmp_path):
    """Kill the run mid-registration (SIGKILL); a second run resumes and gives the
    same stack as an uninterrupted run."""
    ref = str(load_truth(night).lights[0])
    full = tmp_path / "full.fits"
    assert main(["stack", str(night), "-o", str(full), "--reference", ref]) == 0

    out = tmp_path / "resumed.fits"
    work = tmp_path / "resumed.fits.work"
    errfile = tmp_path / "stderr.txt"
    proc = subprocess.Popen([str(NAPARI_ASTRO), "stack", str(night), "-o", str(out),
                             "--reference", ref], stdout=subprocess.DEVNULL,
                            stderr=errfile.open("w"))
    killed = False
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        reg = list((work / "registered_none").glob("r_*.fits")) if work.exists() else []
        if len(reg) >= 2:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait()
    assert killed, ("the run finished before it could be interrupted: "
                    + errfile.read_text()[-2000:])
    n_done = len(list((work / "registered_none").glob("r_*.fits")))
    assert 2 <= n_done < 8
    assert not out.exists()
    assert main(["stack", str(night), "-o", str(out), "--reference", ref]) == 0
    log = out.with_name("resumed.log").read_text()
    assert "reusing 8 calibrated lights" in log
    a, b = read_image(full), read_image(out)
    np.testing.assert_allclose(a.data, b.data, atol=1e-6)


def test_bad_file_stops_before_computing(night, tmp_path, capsys):
    session = tmp_path / "session"
    shutil.copytree(night, session)
    bad = session / "lights" / "light_0099.fits"
    bad.write_bytes((session / "lights" / "light_0001.fits").read_bytes()[:5000])
    before = _hash(session)
    out = tmp_path / "o.fits"
    assert main(["stack", str(session), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "light_0099.fits" in err[0]
    assert not out.exists() and not (tmp_path / "o.fits.work").exists()
    assert _hash(session) == before
    # --skip-bad goes on without it and says so in the log
    assert main(["stack", str(session), "-o", str(out), "--skip-bad"]) == 0
    assert "light_0099.fits" in out.with_name("o.log").read_text()


def test_frame_of_another_size_and_unknown_type(night, tmp_path, capsys):
    from astropy.io import fits

    session = tmp_path / "s"
    shutil.copytree(night / "lights", session / "lights")
    data = fits.getdata(night / "lights" / "light_0001.fits")
    hdr = fits.getheader(night / "lights" / "light_0001.fits")
    fits.PrimaryHDU(data[:100, :100], hdr).writeto(session / "lights" / "small.fits")
    assert main(["stack", str(session), "-o", str(tmp_path / "a.fits")]) == 2
    err = capsys.readouterr().err
    assert "small.fits" in err and "size" in err
    (session / "lights" / "small.fits").unlink()
    hdr["IMAGETYP"] = "Sky Thing"
    other = tmp_path / "elsewhere"
    other.mkdir()
    fits.PrimaryHDU(data, hdr).writeto(other / "mystery.fits")
    assert main(["stack", str(session), str(other), "-o", str(tmp_path / "b.fits")]) == 2
    err = capsys.readouterr().err
    assert "mystery.fits" in err and "frame type" in err


def test_no_lights_is_bad_input(night, tmp_path, capsys):
    assert main(["stack", str(night / "darks"), "-o", str(tmp_path / "x.fits")]) == 2
    assert "no light frames" in capsys.readouterr().err


# --------------------------------------------------------------------- real frames
def test_real_seestar_m94_two_sessions(shared_data, tmp_path):
    """Lights only, one-shot colour, alt-az drift and a re-centring jump: the two M94
    sessions stack together and every frame is used."""
    s1, s2 = shared_data / "seestar_m94" / "session1", shared_data / "seestar_m94" / "session2"
    before = _hash(shared_data / "seestar_m94")
    result = run_stack([s1, s2], tmp_path / "m94.fits")
    rows = result.quality["IRCUT"] if "IRCUT" in result.quality else next(iter(result.quality.values()))
    assert len(rows) == 16
    assert all(r["accepted"] for r in rows), [r["reason"] for r in rows if not r["accepted"]]
    img = read_image(tmp_path / "m94.fits")
    assert img.is_color and img.shape2d == (1920, 1080)
    lum = img.luminance()
    st = detect_stars(lum, sigma=8)
    assert len(st) > 20
    # stars stay sharp and round after stacking 16 frames of a drifting alt-az mount
    assert np.median(st.roundness) > 0.7
    # neutral background after calibration: channel background medians within 10%
    bg = [np.median(c[img.mask] if img.mask is not None else c) for c in img.data]
    assert max(bg) / min(bg) < 1.5
    assert _hash(shared_data / "seestar_m94") == before


def test_real_seestar_ngc7023(shared_data, tmp_path):
    result = run_stack([shared_data / "seestar_ngc7023"], tmp_path / "n.fits")
    rows = next(iter(result.quality.values()))
    assert len(rows) == 4 and all(r["accepted"] for r in rows)
    img = read_image(tmp_path / "n.fits")
    assert img.is_color and np.isfinite(img.data).all()


def test_several_filters_and_rgb(tmp_path):
    """Mono lights of three filters (with their flats): one stack per filter, and
    --rgb combines them, aligned, into a colour image."""
    from astropy.io import fits

    src = tmp_path / "mono"
    simulate_night(src, NightParams(width=320, height=240, n_lights=4, n_darks=3, n_flats=3,
                                    n_biases=3, mono=True, seed=5))
    session = tmp_path / "session"
    for sub in ("bias", "darks"):
        shutil.copytree(src / sub, session / sub)
    for k, filt in enumerate("RGB"):
        for sub in ("lights", "flats"):
            (session / sub).mkdir(parents=True, exist_ok=True)
            for f in sorted((src / sub).glob("*.fits")):
                with fits.open(f) as hdul:
                    hdul[0].header["FILTER"] = filt
                    hdul.writeto(session / sub / f"{filt}_{f.name}")
    out = tmp_path / "m.fits"
    assert main(["stack", str(session), "-o", str(out), "--rgb", "R,G,B", "-q", "--clean"]) == 0
    assert not (tmp_path / "m.fits.work").exists()  # --clean removed the intermediates
    for filt in "RGB":
        img = read_image(tmp_path / f"m_{filt}.fits")
        assert not img.is_color and img.get("FILTER") == filt
        assert "flat" in (tmp_path / "m.log").read_text()
    rgb = read_image(tmp_path / "m_RGB.fits")
    assert rgb.is_color
    # the same sky through three filters: channels agree after alignment
    a, b = rgb.data[0], rgb.data[2]
    core = (slice(20, -20), slice(20, -20))
    assert np.corrcoef(a[core].ravel(), b[core].ravel())[0, 1] > 0.99


def test_float16_intermediates_halve_disk_and_keep_the_result(night, stacked, tmp_path):
    from astropy.io import fits

    out, _, truth = stacked
    small = tmp_path / "f16.fits"
    assert main(["stack", str(night), "-o", str(small), "--float16", "-q",
                 "--reference", str(truth.lights[0])]) == 0
    cal16 = sorted((tmp_path / "f16.fits.work").glob("calibrated_*/*.fits"))
    cal32 = sorted((out.parent / "out.fits.work").glob("calibrated_*/*.fits"))
    assert fits.getheader(cal16[0])["BITPIX"] == 16
    assert sum(p.stat().st_size for p in cal16) < 0.55 * sum(p.stat().st_size for p in cal32)
    a, b = read_image(out).data, read_image(small).data
    diff = np.abs(a - b)
    noise = min(ch["noise"] for ch in compare_to_truth(a, truth.sky)["channels"])
    # 16-bit quantisation is far below the noise; a few rejection decisions flip
    assert np.median(diff) < 0.05 * noise and np.percentile(diff, 99.9) < 1.5 * noise
    for ch in compare_to_truth(b, truth.sky)["channels"]:
        assert abs(ch["scale"] - 1) < 0.02
