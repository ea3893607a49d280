"""Crop: the maximal-rectangle search, the automatic box on a dithered, rotated
stack, the WCS shift, the CLI (--box / --auto with the coverage file) and the widget
(a Shapes rectangle drawn by the user)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astro.core.crop import auto_box, check_box, crop_image, largest_rectangle
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_post import simulate_linear


def _brute_force(ok: np.ndarray) -> int:
    """Area of the largest all-True rectangle by exhaustion over row spans (for each
    span, the longest run of columns True on every row of it): O(H^2 W), the truth
    for small cases."""
    h, w = ok.shape
    best = 0
    for y0 in range(h):
        cols = np.ones(w, bool)
        for y1 in range(y0 + 1, h + 1):
            cols &= ok[y1 - 1]
            if not cols.any():
                break
            padded = np.concatenate([[0], cols.astype(np.int8), [0]])
            edges = np.flatnonzero(np.diff(padded))
            run = int((edges[1::2] - edges[::2]).max())
            best = max(best, run * (y1 - y0))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_largest_rectangle_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    ok = rng.random((11, 14)) > (0.05 + 0.05 * seed)
    y0, x0, y1, x1 = largest_rectangle(ok)
    assert ok[y0:y1, x0:x1].all()
    assert (y1 - y0) * (x1 - x0) == _brute_force(ok)


def _footprint_truth(cov: np.ndarray) -> int:
    """Largest full-coverage box area on a small map, by brute force."""
    return _brute_force(cov == cov.max())


@pytest.mark.parametrize("seed", [1, 2])
def test_auto_box_on_dithered_rotated_stack(seed):
    # 8 frames dithered by up to 12 px and rotated by up to 3 degrees: a small case so
    # that the brute force stays quick
    img, truth = simulate_linear((60, 80), stars=20, nebula=0, frames=8, dither=6,
                                 rotation=3, seed=seed)
    cov = truth.coverage
    assert cov.min() < cov.max()  # the borders really are partly covered
    x0, y0, x1, y1 = auto_box(img, cov)
    assert (cov[y0:y1, x0:x1] == cov.max()).all()  # no pixel covered by fewer frames
    area = (x1 - x0) * (y1 - y0)
    assert area >= 0.95 * _footprint_truth(cov)


def test_auto_box_reduced_grid_keeps_full_coverage():
    # a coverage map larger than max_grid: searched on a reduced grid, then grown
    img, truth = simulate_linear((300, 420), stars=0, nebula=0, frames=6, dither=20,
                                 rotation=2, seed=4, noise=0.0)
    cov = truth.coverage
    full = auto_box(img, cov)
    red = auto_box(img, cov, max_grid=64)
    x0, y0, x1, y1 = red
    assert (cov[y0:y1, x0:x1] == cov.max()).all()
    a_full = (full[2] - full[0]) * (full[3] - full[1])
    assert (x1 - x0) * (y1 - y0) >= 0.95 * a_full


def test_auto_box_without_coverage_uses_nan_zero_and_low_borders():
    rng = np.random.default_rng(0)
    data = (0.1 + rng.normal(0, 0.002, (3, 100, 120))).astype(np.float32)
    data[:, :7] = np.nan          # NaN top rows
    data[:, :, -5:] = 0.0         # zero right columns
    data[:, -4:, :] = 0.02        # a low-signal bottom band (normalised partial coverage)
    data[:, 40:50, 50:60] = 0.03  # a dark blob inside the field: not a border
    box = auto_box(AstroImage(data=data))
    assert box == (0, 7, 115, 96)


@pytest.mark.parametrize("gradient, vignetting", [(0.3, 0.0), (0.09, 0.3)])
def test_auto_box_without_coverage_keeps_a_gradient(gradient, vignetting):
    # A gradient's or vignetting's dark side is sky, not a low-signal border (the
    # demo night once lost 228 of 772 columns); a real border on it is still cut.
    img, _ = simulate_linear((240, 320), gradient=gradient, vignetting=vignetting,
                             border="none", stars=60, seed=2)
    assert auto_box(img) == (0, 0, 320, 240)
    data = img.data.copy()
    data[:, :, :6] *= 0.25  # a normalised partial-coverage band on the left
    assert auto_box(AstroImage(data=data)) == (6, 0, 320, 240)


def test_crop_shifts_the_wcs():
    from astropy.wcs import WCS

    img, _ = simulate_linear((50, 70), stars=5, seed=0)
    h = img.header
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=35.5, CRPIX2=25.5, CRVAL1=150.0,
             CRVAL2=30.0, CDELT1=-0.0005, CDELT2=0.0005, CRPIX1A=10.0, CRPIX2A=12.0)
    h["COVERAGE"] = "stack_coverage.fits"
    out = crop_image(img, (10, 5, 60, 45))
    assert out.data.shape == (3, 40, 50)
    np.testing.assert_array_equal(out.data, img.data[:, 5:45, 10:60])
    w0, w1 = WCS(img.header), WCS(out.header)
    # the same sky position for the same physical pixel
    for x, y in [(0, 0), (20, 17), (49, 39)]:
        a = w0.pixel_to_world_values(x + 10, y + 5)
        b = w1.pixel_to_world_values(x, y)
        np.testing.assert_allclose(a, b, atol=1e-12)
    assert out.header["CRPIX1A"] == 0.0 and out.header["CRPIX2A"] == 7.0
    assert "COVERAGE" not in out.header
    assert img.header["CRPIX1"] == 35.5  # input untouched
    assert out.mask.shape == (40, 50)


@pytest.mark.parametrize("box, problem", [((0, 0, 80, 10), "outside"), ((-1, 0, 10, 10), "outside"),
                                          ((5, 5, 5, 20), "zero size"), ((5, 9, 20, 3), "zero size")])
def test_bad_boxes(box, problem):
    with pytest.raises(BadInputError, match=problem):
        check_box(box, (40, 70))


def test_run_step_records_history_and_box():
    from napari_astro.pipeline.registry import run_step

    img, truth = simulate_linear((60, 80), stars=10, frames=6, dither=6, seed=3)
    res = run_step("post.crop", img, {}, coverage=truth.coverage)
    x0, y0, x1, y1 = res.extras["box"]
    assert res.image.data.shape == (3, y1 - y0, x1 - x0)
    assert res.image.history[-1].startswith("post.crop ")
    res2 = run_step("post.crop", img, {"box": [1, 2, 30, 40]})
    assert res2.image.data.shape == (3, 38, 29)


# --------------------------------------------------------------------------- CLI
def _cli(*args, cwd, capsys, monkeypatch):
    """Run the CLI in-process (as ``napari-astro ARGS`` in ``cwd``): (status, stdout,
    stderr)."""
    from napari_astro.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def stack_files(tmp_path):
    from napari_astro.core.io import write_image

    img, truth = simulate_linear((80, 100), stars=20, frames=8, dither=8, rotation=2, seed=5)
    img.header["COVERAGE"] = "night_coverage.fits"
    write_image(img, tmp_path / "night.fits")
    write_image(AstroImage(data=truth.coverage.astype(np.float32)), tmp_path / "night_coverage.fits")
    return tmp_path, img, truth


def test_cli_crop_auto_uses_coverage_file(stack_files, capsys, monkeypatch):
    from napari_astro.core.io import read_image

    d, img, truth = stack_files
    rc, out, err = _cli("crop", "night.fits", "out.fits", "--auto", cwd=d, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 0, err
    res = read_image(d / "out.fits")
    x0, y0, x1, y1 = auto_box(img, truth.coverage)
    assert res.data.shape == (3, y1 - y0, x1 - x0)
    assert (truth.coverage[y0:y1, x0:x1] == 8).all()
    assert "coverage map" in err
    rc, out, err = _cli("crop", "night.fits", "box.fits", "--box", "10,20,50,70", cwd=d,
                        capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 0, err
    assert read_image(d / "box.fits").data.shape == (3, 50, 40)


@pytest.mark.parametrize("args, text", [
    (["--box", "10,20,500,70"], "outside"),
    (["--box", "10,20,10,70"], "zero size"),
    ([], "--box"),
    (["--box", "1,2,3,4", "--auto"], "either"),
])
def test_cli_crop_bad_input(stack_files, args, text, capsys, monkeypatch):
    d, *_ = stack_files
    before = (d / "night.fits").read_bytes()
    rc, out, err = _cli("crop", "night.fits", "bad.fits", *args, cwd=d, capsys=capsys,
                        monkeypatch=monkeypatch)
    assert rc == 2
    assert text in err and len(err.strip().splitlines()) == 1
    assert not (d / "bad.fits").exists()
    assert (d / "night.fits").read_bytes() == before


# --------------------------------------------------------------------------- widget
@pytest.mark.gui
def test_widget_crop_from_drawn_rectangle(make_napari_viewer, qtbot):
    pytest.importorskip("pytestqt")
    from napari_astro.widgets._layers import image_to_layer_data, layer_to_image
    from napari_astro.widgets.crop import CropWidget, vertices_from_box

    viewer = make_napari_viewer()
    img, truth = simulate_linear((60, 90), stars=10, frames=6, dither=6, seed=2)
    data, kw, _ = image_to_layer_data(img, "stack")
    kw["metadata"]["coverage"] = truth.coverage
    viewer.add_image(data, **kw)
    w = CropWidget(viewer)
    w.image_picker.value = viewer.layers["stack"]
    # the user draws a rectangle over columns 12..47, rows 8..39
    w.start_drawing()
    shapes = viewer.layers["crop box"]
    shapes.add_rectangles(vertices_from_box((12, 8, 48, 40)))
    assert w.form["box"].value == "12, 8, 48, 40"
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    assert w.last_error is None
    out = layer_to_image(viewer.layers["stack [post.crop]"])
    assert out.data.shape == (3, 32, 36)
    np.testing.assert_allclose(out.data, img.data[:, 8:40, 12:48])
    # Auto proposes the full-coverage box and draws it
    box = w.auto()
    x0, y0, x1, y1 = box
    assert (truth.coverage[y0:y1, x0:x1] == truth.coverage.max()).all()
    assert w.form["box"].value == ", ".join(map(str, box))
    assert w.drawn_box() == box
