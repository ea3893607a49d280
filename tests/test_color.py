"""Colour calibration (``post.color``) against the simulated catalogue field's truth, on the
real Seestar stacks, through the CLI and in the napari widget."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from napari_astro.core.catalog import angular_separation
from napari_astro.core.color import (WHITE_BV, background_levels, bv_to_temperature,
                                     calibrate_color, channel_response, expected_ratios)
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_field import simulate_field
from napari_astro.core.solve import index_files
from napari_astro.pipeline.registry import run_step

needs_index = pytest.mark.skipif(not index_files(), reason="no astrometry.net index files "
                                 "installed (apt-get install astrometry-data-tycho2)")


@pytest.fixture(scope="module")
def field():
    """Catalogue field near NGC 7023 (2 x 1.3 degrees, about 30 measurable catalogue
    stars) with a strong cast and channel offsets."""
    return simulate_field(315.40, 68.17, shape=(800, 1200), scale_arcsec=6.0, rotation_deg=25.0,
                          cast=(1.25, 1.0, 0.78), offsets=(0.012, 0.004, 0.02), seed=3)


def _background_mask(truth, noise=0.0015) -> np.ndarray:
    """Pixels where no star adds more than 1 noise sigma in any channel."""
    from scipy import ndimage

    star = truth.noiseless - truth.background[:, None, None]
    return ~ndimage.binary_dilation((star > noise).any(axis=0), iterations=3)


def _true_colours_at(truth, rowcol):
    """True R, G, B fluxes (before the cast) of the rendered stars at ``rowcol``."""
    from scipy.spatial import cKDTree

    d, j = cKDTree(np.column_stack([truth.stars["y"], truth.stars["x"]])).query(rowcol)
    assert np.all(d < 1.0)
    return truth.stars["rgb"][j]


# --------------------------------------------------------------------------- the model
def test_colour_model():
    assert bv_to_temperature(0.65) == pytest.approx(5780, abs=40)  # the Sun
    assert bv_to_temperature(0.0) == pytest.approx(10000, rel=0.1)  # Vega-like A0
    np.testing.assert_allclose(expected_ratios(WHITE_BV["g2v"], "g2v"), [1.0, 1.0])
    np.testing.assert_allclose(expected_ratios(WHITE_BV["galaxy"], "galaxy"), [1.0, 1.0])
    bv = np.linspace(-0.3, 2.0, 24)
    rg, bg = expected_ratios(bv).T
    assert np.all(np.diff(rg) > 0) and np.all(np.diff(bg) < 0)  # redder stars: more R, less B
    # a galaxy white reference is redder than G2V: a G2V star then looks bluish
    rg_g, bg_g = expected_ratios(0.65, "galaxy")
    assert rg_g < 1.0 < bg_g
    np.testing.assert_allclose(channel_response(0.3)[1], 1.0)


# --------------------------------------------------------------------------- simulated field
def test_neutralize_equalises_background(field):
    img, truth = field
    before = img.data.copy()
    res = calibrate_color(img, method="neutralize")
    np.testing.assert_array_equal(img.data, before)  # input untouched
    np.testing.assert_allclose(res.levels, truth.background, rtol=0, atol=3e-4)
    bg = _background_mask(truth)
    med = np.array([np.median(res.data[c][bg]) for c in range(3)])
    sky = truth.background[1]
    assert np.max(np.abs(med - med[1])) < 0.01 * sky
    assert res.factors == (1.0, 1.0, 1.0)


def test_neutralize_from_region_and_points(field):
    img, truth = field
    bg = _background_mask(truth)
    rows, cols = np.nonzero(bg[100:160, 100:160])
    assert len(rows) > 2000
    res = calibrate_color(img, method="neutralize", region=(100, 100, 160, 160))
    np.testing.assert_allclose(res.levels, truth.background, atol=3e-4)
    rng = np.random.default_rng(0)
    yy, xx = np.nonzero(bg[20:-20, 20:-20])
    pick = rng.choice(len(yy), 40, replace=False)
    pts = np.column_stack([yy[pick] + 20, xx[pick] + 20]).astype(float)
    res2 = calibrate_color(img, method="neutralize", points=pts)
    np.testing.assert_allclose(res2.levels, truth.background, atol=3e-4)
    with pytest.raises(BadInputError, match="region"):
        background_levels(img.data, region=(0, 0, 1, 1))


def test_basic_makes_the_average_star_white(field):
    img, truth = field
    res = calibrate_color(img, method="basic")
    assert res.method == "basic" and len(res.stars) >= 8
    colours = _true_colours_at(truth, res.stars)  # the unsaturated stars it measured
    calibrated = colours * truth.cast * np.asarray(res.factors)
    rg = np.exp(np.mean(np.log(calibrated[:, 0] / calibrated[:, 1])))
    bg = np.exp(np.mean(np.log(calibrated[:, 2] / calibrated[:, 1])))
    assert abs(rg - 1) < 0.03 and abs(bg - 1) < 0.03
    # and the background is left neutral
    mask = _background_mask(truth)
    med = np.array([np.median(res.data[c][mask]) for c in range(3)])
    assert np.max(np.abs(med - med[1])) < 0.01 * truth.background[1]


@needs_index
def test_photometric_recovers_the_white_balance(field):
    img, truth = field
    result = run_step("post.color", img, {"method": "photometric", "white": "g2v"})
    ex = result.extras
    assert ex["method"] == "photometric", result.messages
    np.testing.assert_allclose(ex["factors"], truth.true_factors, rtol=0.01)
    assert len(ex["stars"]) >= 20 and np.all(np.isfinite(ex["star_bv"]))
    # the WCS is in the output header, centred where the truth is
    from astropy.wcs import WCS

    wcs = WCS(result.image.header, naxis=2)
    c_true = truth.wcs.all_pix2world([[599.5, 399.5]], 0)[0]
    c_out = wcs.all_pix2world([[599.5, 399.5]], 0)[0]
    assert angular_separation(*c_true, *c_out) * 3600 < 1.0
    assert result.image.history[-1].startswith("post.color ")
    # the galaxy white reference differs by exactly the model's G2V -> galaxy ratio
    sol = ex["solution"]
    gal = calibrate_color(img, method="photometric", white="galaxy", solution=sol)
    ratio = np.asarray(gal.factors) / np.asarray(ex["factors"])
    r_rg, r_bg = expected_ratios(WHITE_BV["g2v"], "galaxy")
    np.testing.assert_allclose(ratio[[0, 2]], [r_rg, r_bg], rtol=0.003)
    # too few stars for the fit -> basic, and the user is told
    few = run_step("post.color", img, {"method": "photometric", "min_stars": 500})
    assert few.extras["method"] == "basic"
    assert any("fell back to basic" in m for m in few.messages)


def test_grayscale_is_refused(field):
    img, _ = field
    grey = AstroImage(img.data[1], path="grey.fits")
    with pytest.raises(BadInputError, match=r"^grey\.fits: .*(grayscale|colour)"):
        run_step("post.color", grey, {"method": "basic"})


# --------------------------------------------------------------------------- CLI
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "napari_astro.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_color_and_bad_input(field, tmp_path):
    from napari_astro.cli import main
    from napari_astro.core.io import read_image, write_image

    img, truth = field
    src = tmp_path / "field.fits"
    write_image(img, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out.fits"
    assert main(["color", str(src), str(out), "--white", "g2v", "--min-stars", "500",
                 "--region", "100,100,160,160"]) == 0
    back = read_image(out)
    assert back.history[-1].startswith("post.color ") and '"min_stars": 500' in back.history[-1]
    bg = _background_mask(truth)
    med = np.array([np.median(back.data[c][bg]) for c in range(3)])
    assert np.max(np.abs(med - med[1])) < 0.01 * truth.background[1]
    # grayscale input: exit 2, one line naming the file, nothing written
    grey = tmp_path / "grey.fits"
    write_image(AstroImage(img.data[1]), grey)
    bad_out = tmp_path / "bad.fits"
    proc = _cli("color", grey, bad_out)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(grey) in proc.stderr
    assert not bad_out.exists()
    # a region outside the image
    proc = _cli("color", src, bad_out, "--region", "0,0,5000,10")
    assert proc.returncode == 2 and "--region" in proc.stderr and not bad_out.exists()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_cli_method_option(field, tmp_path, capsys):
    from napari_astro.cli import main
    from napari_astro.core.io import write_image

    img, _ = field
    src = tmp_path / "field.fits"
    write_image(img, src)
    rc = main(["color", str(src), str(tmp_path / "n.fits"), "--method", "neutralize"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert '"method": "neutralize"' in (tmp_path / "n.fits").read_bytes().decode("latin-1")


@needs_index
def test_cli_failed_solve_is_bad_input(tmp_path):
    from napari_astro.core.io import write_image

    # random "stars" on a flat sky: a field astrometry.net cannot solve
    rng = np.random.default_rng(1)
    data = np.full((3, 400, 400), 0.05, np.float32)
    yy, xx = np.mgrid[0:400, 0:400]
    for y, x in rng.uniform(20, 380, (40, 2)):
        data += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 3.0)[None]
    data += rng.normal(0, 0.002, data.shape).astype(np.float32)
    src = tmp_path / "nosky.fits"
    write_image(AstroImage(data), src)
    out = tmp_path / "out.fits"
    proc = _cli("color", src, out, "--solve-timeout", "8")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(str(src)) and "plate solve" in line
    assert not out.exists()


# --------------------------------------------------------------------------- real stacks
_OBJECTS = {"seestar_m94": ("M 94", 192.721, 41.120), "seestar_ngc7023": ("NGC 7023", 315.40, 68.17)}


@pytest.fixture(scope="session")
def real_stacks(shared_data):
    """Stacks of the Seestar sessions, made once and cached under the temp dir (about
    a minute each; reused while the frames and the package version are unchanged)."""
    import napari_astro

    cache = Path(tempfile.gettempdir()) / "napari-astro-test-stacks"
    cache.mkdir(exist_ok=True)
    out = {}
    for folder, session in (("seestar_m94", "session1"), ("seestar_ngc7023", "")):
        src = shared_data / folder / session if session else shared_data / folder
        if not src.is_dir():
            continue
        key = hashlib.sha1((napari_astro.__version__ + "".join(
            f"{p.name}{p.stat().st_size}" for p in sorted(src.iterdir()))).encode()).hexdigest()[:12]
        path = cache / f"{folder}-{key}.fits"
        if not path.exists():
            work = Path(tempfile.mkdtemp(prefix="stack-", dir=cache))
            tmp = work / "stack.fits"
            exe = Path(sys.executable).with_name("napari-astro")
            cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_astro.cli"]
            proc = subprocess.run(cmd + ["stack", str(src), "-o", str(tmp), "--work-dir",
                                         str(work / "w"), "-q"], capture_output=True, text=True,
                                  timeout=900)
            if proc.returncode != 0 or not tmp.exists():
                pytest.skip(f"could not stack {src}: {proc.stderr.strip()[-200:]}")
            os.replace(tmp, path)
            shutil.rmtree(work, ignore_errors=True)
        out[folder] = path
    if not out:
        pytest.skip("no Seestar sessions in the shared data")
    return out


@needs_index
@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(_OBJECTS))
def test_real_stack_solves_and_is_neutral(real_stacks, folder):
    from napari_astro.core.io import read_image

    if folder not in real_stacks:
        pytest.skip(f"{folder} not in the shared data")
    name, ra, dec = _OBJECTS[folder]
    img = read_image(real_stacks[folder])
    result = run_step("post.color", img, {"method": "photometric"})
    sol = result.extras["solution"]
    assert sol is not None
    # the Seestar centres its target: the solved centre is the object's, within a few arcmin
    assert angular_separation(ra, dec, sol.ra_deg, sol.dec_deg) * 60 < 5.0, sol.summary()
    assert sol.scale_arcsec == pytest.approx(2.39, rel=0.02)
    assert result.image.header["PLTSOLVD"] and result.image.header["CTYPE1"].startswith("RA---TAN")
    # photometric, or basic with the reason given (these fields hold few V < 10.5 stars)
    assert result.extras["method"] == "photometric" or any(
        "fell back to basic" in m for m in result.messages)
    after = background_levels(result.image.data)
    assert np.max(np.abs(after - after[1])) < 0.01 * after[1]
    k = np.asarray(result.extras["factors"])
    assert np.all((k > 0.5) & (k < 2.0))


# --------------------------------------------------------------------------- widget
@pytest.mark.gui
def test_color_widget_shows_stars_and_factors(make_napari_viewer, qtbot, field):
    pytest.importorskip("pytestqt")
    from napari.layers import Layer

    from napari_astro.widgets._layers import image_to_layer_data, layer_to_image
    from napari_astro.widgets.color import STARS_SUFFIX, ColorWidget

    img, truth = field
    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*image_to_layer_data(img, "field")))
    shapes = viewer.add_shapes([np.array([[100, 100], [160, 160]])], shape_type="rectangle",
                               name="bg box")
    widget = ColorWidget(viewer)
    widget.image_picker.value = viewer.layers["field"]
    widget.region_layer_picker.value = shapes
    widget.form["method"].value = "basic"
    worker = widget.run()
    assert worker is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    if widget.last_error is not None:
        raise widget.last_error
    out = layer_to_image(viewer.layers["field [post.color]"])
    np.testing.assert_allclose(widget.last_result.extras["levels"], truth.background, atol=3e-4)
    mask = _background_mask(truth)
    med = np.array([np.median(out.data[c][mask]) for c in range(3)])
    assert np.max(np.abs(med - med[1])) < 0.01 * truth.background[1]
    pts = viewer.layers["field" + STARS_SUFFIX]
    assert len(pts.data) == len(widget.last_result.extras["stars"]) >= 8
    assert "factors R" in widget.factors_label.text()
