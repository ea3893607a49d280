"""One pass per light (issue 13, ``pipeline/onepass.py``): with the reference known up
front, a lights-only session is calibrated, measured, resampled and written registered
in one go per light. The stack equals the two-pass run's, each intermediate is
written once (no calibrated frames at all), and resume keeps working."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import napari_astro.core.io as nio
from napari_astro.core.io import read_image
from napari_astro.core.simulate import NightParams, simulate_night
from napari_astro.pipeline.demo import compare_to_truth
from napari_astro.pipeline.stack import run_stack
from napari_astro.pipeline.steps import RegisterParams


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("onepass") / "night"
    truth = simulate_night(root, NightParams(width=320, height=240, n_lights=5, n_darks=1,
                                             n_flats=1, n_biases=1, seed=21, dither=10.0))
    # the lights alone: the smart telescope's case (no calibration frames)
    return root / "lights", truth


@pytest.fixture(scope="module")
def runs(night, tmp_path_factory):
    """The same session stacked in two passes and in one pass, every FITS write counted."""
    lights, truth = night
    reg = RegisterParams(reference=str(truth.lights[2]))  # not the first light
    out = {}
    orig = nio.write_fits
    for mode in (False, True):
        writes: Counter = Counter()

        def counting(image, path, **kw):
            writes[Path(path)] += 1
            return orig(image, path, **kw)

        nio.write_fits = counting
        try:
            d = tmp_path_factory.mktemp(f"onepass{int(mode)}")
            res = run_stack([lights], d / "s.fits", register=reg, one_pass=mode)
        finally:
            nio.write_fits = orig
        out[mode] = (d, res, writes)
    return out


def _registered(d: Path) -> dict:
    return {p.name: p for p in sorted((d / "s.fits.work").glob("registered_*/r_*.fits"))}


def test_one_pass_equals_two_pass(runs, night):
    _, truth = night
    (d2, r2, _), (d1, r1, _) = runs[False], runs[True]
    a, b = read_image(d2 / "s.fits"), read_image(d1 / "s.fits")
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(b.data, a.data, rtol=0, atol=1e-6)
    # the registered frames too, and the same quality table and transforms
    reg2, reg1 = _registered(d2), _registered(d1)
    assert list(reg1) == list(reg2) and len(reg1) == 5
    for name in reg2:
        x, y = read_image(reg2[name]), read_image(reg1[name])
        np.testing.assert_array_equal(x.mask, y.mask)
        np.testing.assert_allclose(y.data, x.data, rtol=0, atol=1e-6)
    q2, q1 = r2.quality[""], r1.quality[""]
    for u, v in zip(q2, q1):
        assert (u["name"], u["accepted"], u["reference"], u["n_stars"]) == \
            (v["name"], v["accepted"], v["reference"], v["n_stars"])
        np.testing.assert_allclose(v["matrix"], u["matrix"], atol=1e-9)
    assert q1[2]["reference"]
    # and the stack follows the noiseless sky (uncalibrated lights: vignetting and
    # the bias offset stay, so a linear fit, not a scale of 1) better than one light
    core = (slice(20, -20), slice(20, -20))
    fit = compare_to_truth(b.data[(slice(None),) + core], truth.sky[(slice(None),) + core])
    one = read_image(reg1[sorted(reg1)[2]])  # the reference frame, registered
    fit1 = compare_to_truth(one.data[(slice(None),) + core], truth.sky[(slice(None),) + core])
    for ch, ch1 in zip(fit["channels"], fit1["channels"]):
        assert ch["noise"] < 0.7 * ch1["noise"]
    assert "in one pass" in (d1 / "s.log").read_text()


def test_intermediates_are_written_once(runs):
    (d2, _, w2), (d1, _, w1) = runs[False], runs[True]
    reg1 = set(_registered(d1).values())
    inter1 = {p: n for p, n in w1.items() if ".work" in str(p) and "integrated" not in str(p)}
    # one pass: every registered frame written once, no calibrated frame at all
    assert set(inter1) == reg1 and set(inter1.values()) == {1}
    assert not list((d1 / "s.fits.work").glob("calibrated_*/*.fits"))
    # two passes: each light written calibrated, then registered, once each
    cal2 = [p for p in w2 if "calibrated_" in str(p)]
    assert len(cal2) == 5 and all(w2[p] == 1 for p in cal2)
    assert all(w2[p] == 1 for p in _registered(d2).values())


def _said(log: str, stage: str) -> str:
    for line in log.splitlines():
        if f"{stage}: " in line and "fingerprint" in line:
            return line.split(f"{stage}: ", 1)[1].split(":")[0].split(" (")[0]
    raise AssertionError(f"no line about {stage} in the log")


def test_one_pass_resumes(runs, night):
    lights, truth = night
    d1, _, _ = runs[True]
    work, out = d1 / "s.fits.work", d1 / "again.fits"
    reg = RegisterParams(reference=str(truth.lights[2]))
    first = read_image(d1 / "s.fits").data
    stamps = {n: p.stat().st_mtime_ns for n, p in _registered(d1).items()}

    # nothing changed: nothing redone, nothing read or written but the outputs
    run_stack([lights], out, register=reg, work_dir=work)
    log = out.with_name("again.log").read_text()
    for stage in ("[none] star measurements", "[none] register", "[none] integrate"):
        assert _said(log, stage) == "reused", stage
    assert "calibrating" not in log
    assert {n: p.stat().st_mtime_ns for n, p in _registered(d1).items()} == stamps

    # interrupted midway: two registered frames missing, the stage unfinished
    rdir = next(work.glob("registered_*"))
    for p in sorted(rdir.glob("r_*.fits"))[1:3]:
        p.unlink()
    state = json.loads((rdir / "stage.json").read_text())
    (rdir / "stage.json").write_text(json.dumps({**state, "done": False}))
    run_stack([lights], out, register=reg, work_dir=work, overwrite=True)
    log = out.with_name("again.log").read_text()
    assert _said(log, "[none] register") == "resumed"
    assert "2 lights in one pass (3 reused)" in log
    np.testing.assert_allclose(read_image(out).data, first, rtol=0, atol=1e-6)

    # another interpolation: registration redone (in one pass), the stars kept
    reg_b = RegisterParams(reference=str(truth.lights[2]), interpolation="bilinear")
    run_stack([lights], out, register=reg_b, work_dir=work, overwrite=True)
    log = out.with_name("again.log").read_text()
    assert _said(log, "[none] star measurements") == "reused"
    assert _said(log, "[none] register") == "redone"
    assert _said(log, "[none] integrate") == "redone"
    assert "interpolation" in log or "bilinear" in json.dumps(
        json.loads((rdir / "transforms.json").read_text())["params"])
    changed = read_image(out).data
    assert not np.allclose(changed, first, atol=1e-6)


def test_one_pass_with_masters_and_external_reference(night, tmp_path):
    """``one_pass=True`` also serves a night with masters (the masters applied in the
    pass); an external reference (not one of the lights) falls back to two passes."""
    lights, truth = night
    root = lights.parent
    reg = RegisterParams(reference=str(truth.lights[0]))
    a = run_stack([root], tmp_path / "two.fits", register=reg, one_pass=False)
    b = run_stack([root], tmp_path / "one.fits", register=reg, one_pass=True)
    assert "in one pass" in (tmp_path / "one.log").read_text()
    x, y = a.images[""], b.images[""]
    np.testing.assert_array_equal(x.mask, y.mask)
    np.testing.assert_allclose(y.data, x.data, rtol=0, atol=1e-6)
    # the reference is a copy outside the session: two passes, no error
    import shutil

    ext = tmp_path / "ref.fits"
    shutil.copyfile(truth.lights[0], ext)
    run_stack([lights], tmp_path / "ext.fits", register=RegisterParams(reference=str(ext)),
              one_pass=True)
    assert "in one pass" not in (tmp_path / "ext.log").read_text()
    assert list((tmp_path / "ext.fits.work").glob("calibrated_*/*.fits"))


def test_rejected_frames_are_not_redone(night, tmp_path):
    """A frame rejected relative to the session has no registered file: a re-run of a
    finished one-pass stage must not take it for unfinished work."""
    lights, truth = night
    reg = RegisterParams(reference=str(truth.lights[2]), max_fwhm_ratio=1.0)
    res = run_stack([lights], tmp_path / "r.fits", register=reg)
    rows = res.quality[""]
    rejected = [r for r in rows if not r["accepted"]]
    assert rejected and all(r["output"] is None for r in rejected)
    rdir = next((tmp_path / "r.fits.work").glob("registered_*"))
    assert len(list(rdir.glob("r_*.fits"))) == len(rows) - len(rejected)
    run_stack([lights], tmp_path / "r.fits", register=reg, overwrite=True)
    log = (tmp_path / "r.log").read_text()
    assert _said(log, "[none] register") == "reused" and "calibrating" not in log



def test_register_pipeline_writes_what_in_memory_registration_returns(night, tmp_path):
    """register_frames into a folder (one frame resampled at a time, read ahead and
    written behind in threads) writes, frame for frame, the images an in-memory run
    returns (frame threads)."""
    from napari_astro.pipeline.register import register_frames

    lights, truth = night
    frames = sorted(lights.glob("*.fits"))
    params = RegisterParams(reference=str(frames[1]))
    mem = register_frames(frames, None, params)
    disk = register_frames(frames, tmp_path / "reg", params)
    assert mem.accepted == disk.accepted and sum(disk.accepted) == len(frames)
    for img, out in zip(mem.images, disk.outputs):
        got = read_image(out)
        want = np.where(img.mask, img.data, 0) if img.mask is not None else img.data
        np.testing.assert_array_equal(got.data, want)
        np.testing.assert_array_equal(got.mask if got.mask is not None else True,
                                      img.mask if img.mask is not None else True)
