"""Resume keyed on content: a re-run of `stack` into the same work folder redoes
exactly the stages whose inputs or parameters changed, and its result is the one a
fresh run with the new parameters gives. Also the coverage map beside the stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_astro.cli import main
from napari_astro.core.io import read_image
from napari_astro.core.simulate import NightParams, simulate_night


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "night"
    truth = simulate_night(root, NightParams(width=320, height=240, n_lights=5, n_darks=3,
                                             n_flats=3, n_biases=3, seed=11, dither=12.0))
    return root, truth


def _stack(night, out: Path, work: Path, *extra: str) -> str:
    root, truth = night
    assert main(["stack", str(root), "-o", str(out), "--work-dir", str(work), "-q",
                 "--reference", str(truth.lights[0]), *extra]) == 0
    return out.with_name(out.stem + ".log").read_text()


def _mtimes(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.fits"))}


def _said(log: str, stage: str) -> str:
    """How the log says ``stage`` was handled: reused / resumed / redone / computed."""
    for line in log.splitlines():
        if f"{stage}: " in line and "fingerprint" in line:
            return line.split(f"{stage}: ", 1)[1].split(":")[0].split(" (")[0]
    raise AssertionError(f"no line about {stage} in the log")


def _same(a: Path, b: Path) -> None:
    x, y = read_image(a), read_image(b)
    np.testing.assert_array_equal(np.isnan(x.data), np.isnan(y.data))
    np.testing.assert_allclose(x.data, y.data, atol=1e-6)


def test_rerun_redoes_exactly_what_changed(night, tmp_path):
    work = tmp_path / "work"
    log1 = _stack(night, tmp_path / "a.fits", work)
    assert _said(log1, "masters") == "computed"
    cal = _mtimes(work / "calibrated_none")
    assert len(cal) == 5
    measured = {p.name: p.stat().st_mtime_ns
                for p in (work / "registered_none" / ".measure").glob("light*.json")}
    assert len(measured) >= 5

    # 1. another interpolation: registration redone, calibration and stars reused
    log2 = _stack(night, tmp_path / "b.fits", work, "--interpolation", "bilinear")
    assert _said(log2, "masters") == "reused"
    assert _said(log2, "[none] calibrate") == "reused"
    assert "reusing 5 calibrated lights" in log2
    assert _said(log2, "[none] star measurements") == "reused"
    assert _said(log2, "[none] register") == "redone"
    assert _said(log2, "[none] integrate") == "redone"
    assert _mtimes(work / "calibrated_none") == cal            # not rewritten
    assert {p.name: p.stat().st_mtime_ns for p in
            (work / "registered_none" / ".measure").glob("light*.json")} == measured
    _stack(night, tmp_path / "fresh_b.fits", tmp_path / "w_b", "--interpolation", "bilinear")
    _same(tmp_path / "b.fits", tmp_path / "fresh_b.fits")
    a, b = read_image(tmp_path / "a.fits").data, read_image(tmp_path / "b.fits").data
    assert np.nanmax(np.abs(a - b)) > 1e-4       # the new parameter did change the result

    # 2. another rejection: only integration redone
    log3 = _stack(night, tmp_path / "c.fits", work, "--interpolation", "bilinear",
                  "--rejection", "sigma")
    for stage in ("masters", "[none] calibrate", "[none] star measurements", "[none] register"):
        assert _said(log3, stage) == "reused", stage
    assert _said(log3, "[none] integrate") == "redone"
    _stack(night, tmp_path / "fresh_c.fits", tmp_path / "w_c", "--interpolation", "bilinear",
           "--rejection", "sigma")
    _same(tmp_path / "c.fits", tmp_path / "fresh_c.fits")
    assert '"rejection": "sigma"' in "\n".join(read_image(tmp_path / "c.fits").history)

    # 3. nothing changed: nothing redone, the same result
    before = {d.name: _mtimes(d) for d in work.iterdir() if d.is_dir()}
    log4 = _stack(night, tmp_path / "d.fits", work, "--interpolation", "bilinear",
                  "--rejection", "sigma")
    for stage in ("masters", "[none] calibrate", "[none] star measurements", "[none] register",
                  "[none] integrate"):
        assert _said(log4, stage) == "reused", stage
    assert "redone" not in log4 and "calibrating" not in log4
    assert {d.name: _mtimes(d) for d in work.iterdir() if d.is_dir()} == before
    _same(tmp_path / "c.fits", tmp_path / "d.fits")


def test_changed_masters_parameter_redoes_masters_and_calibration(night, tmp_path):
    work = tmp_path / "work"
    _stack(night, tmp_path / "a.fits", work)
    log = _stack(night, tmp_path / "b.fits", work, "--masters-rejection", "sigma")
    assert _said(log, "masters") == "redone"
    assert _said(log, "[none] calibrate") == "redone"


def test_coverage_map_counts_the_frames_at_each_pixel(night, tmp_path):
    root, truth = night
    out = tmp_path / "s.fits"
    _stack(night, out, tmp_path / "w")
    img = read_image(out)
    cov_path = tmp_path / "s_coverage.fits"
    assert img.header["COVERAGE"] == cov_path.name
    n = img.header["NCOMBINE"]
    assert n == len(truth.lights)
    cov = read_image(cov_path).data
    assert cov.dtype == np.float32 and cov.shape == img.shape2d
    assert cov.max() == n and cov.min() >= 0
    # the stack's HISTORY reads back into the parameters of every step it ran
    from napari_astro.pipeline.steps import (CalibrateParams, IntegrateParams, RegisterParams,
                                             StackParams)

    for params in (CalibrateParams(), RegisterParams(reference=str(truth.lights[0])),
                   IntegrateParams(), StackParams()):
        line = [h for h in img.history if h.startswith(params.STEP_ID + " ")][-1]
        assert type(params).from_history(line) == params
    # the dithered frames' footprints from the simulator's true transforms: a pixel
    # is covered by each frame that reaches it (the kernel may cost a few edge pixels)
    h, w = img.shape2d
    yy, xx = np.mgrid[0:h, 0:w]
    inner = np.zeros((h, w), int)
    outer = np.zeros((h, w), int)
    for t in truth.transforms:
        inv = np.linalg.inv(t)
        lx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
        ly = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
        inner += (lx >= 4) & (lx <= w - 5) & (ly >= 4) & (ly <= h - 5)
        outer += (lx >= -1) & (lx <= w) & (ly >= -1) & (ly <= h)
    assert np.all(cov >= inner) and np.all(cov <= outer)
    # full depth in the middle, less in the corners
    assert cov[h // 2, w // 2] == n
    assert max(cov[0, 0], cov[0, -1], cov[-1, 0], cov[-1, -1]) < n
