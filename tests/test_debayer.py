"""Debayering: every CFA pattern and ROWORDER gives the right colours, RCD beats
bilinear on stars, superpixel is exact, and real Seestar lights come out neutral."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from napari_astro.core.debayer import (cfa_luminance, cfa_plane_slices, debayer, debayer_array,
                                       equalize_cfa, mosaic)
from napari_astro.core.errors import BadInputError
from napari_astro.core.frames import scan_frames
from napari_astro.core.image import BAYER_PATTERNS, AstroImage
from napari_astro.core.io import read_image
from napari_astro.pipeline.calibrate import MasterSet, calibrate_light, plan_calibration
from napari_astro.pipeline.steps import CalibrateParams

H, W = 96, 128
STARS = {(30, 40): (1.0, 0.3, 0.15),      # red (an M star through an OSC camera)
         (60, 90): (0.35, 1.0, 0.4),      # green
         (70, 30): (0.2, 0.45, 1.0)}      # blue
GREY = 0.1


def _scene() -> np.ndarray:
    """Grey sky with a red, a green and a blue Gaussian star (FWHM 3 px)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.full((3, H, W), GREY, np.float32)
    for (y0, x0), col in STARS.items():
        g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.27 ** 2)).astype(np.float32)
        for c in range(3):
            rgb[c] += 0.8 * col[c] * g
    return rgb


def _write_cfa(path: Path, cfa_topdown: np.ndarray, pattern: str, roworder: str) -> None:
    """Store a camera (top-down) mosaic as a 16-bit FITS in the given ROWORDER."""
    data = cfa_topdown[::-1] if roworder == "BOTTOM-UP" else cfa_topdown
    h = fits.Header([("BAYERPAT", pattern), ("ROWORDER", roworder), ("IMAGETYP", "Light"),
                     ("EXPTIME", 10.0)])
    fits.PrimaryHDU(np.round(data * 65535).astype(np.uint16), header=h).writeto(path)


@pytest.mark.parametrize("method", ["rcd", "bilinear", "superpixel"])
@pytest.mark.parametrize("roworder", ["TOP-DOWN", "BOTTOM-UP"])
@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_star_colours_for_every_pattern_and_roworder(tmp_path, pattern, roworder, method):
    scene = _scene()
    path = tmp_path / "f.fits"
    _write_cfa(path, mosaic(scene, pattern), pattern, roworder)
    img = read_image(path)
    rgb = debayer(img, method=method).data
    scale = 2 if method == "superpixel" else 1
    for (y0, x0), col in STARS.items():
        y = (H - 1 - y0) if roworder == "BOTTOM-UP" else y0     # rows stay in FITS order
        y, x, r = y // scale, x0 // scale, 4 // scale
        # the star's flux in each channel (7x7 box, sky subtracted)
        flux = (rgb[:, y - r:y + r + 1, x - r:x + r + 1] - GREY).reshape(3, -1).sum(axis=1)
        want = int(np.argmax(col))
        assert int(np.argmax(flux)) == want, (pattern, roworder, method, flux)
        # colour ratios within 15 % of the truth
        ratios = flux / flux[want]
        np.testing.assert_allclose(ratios, np.array(col) / col[want], atol=0.15,
                                   err_msg=f"{pattern} {roworder} {method}")
    # the sky stays grey
    bg = np.median(rgb.reshape(3, -1), axis=1)
    np.testing.assert_allclose(bg, GREY, rtol=0.01)


def test_rcd_beats_bilinear_on_stars_without_colour_fringes():
    rng = np.random.default_rng(0)
    h, w = 200, 240
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.full((3, h, w), 0.05, np.float32)
    for _ in range(60):      # white stars, FWHM 2.5 px: colour must stay neutral
        x0, y0 = rng.uniform(10, w - 10), rng.uniform(10, h - 10)
        g = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.06 ** 2)).astype(np.float32)
        rgb += rng.uniform(0.1, 0.8) * g[None]
    cfa = mosaic(rgb, "RGGB")
    errs, fringe = {}, {}
    for m in ("bilinear", "rcd"):
        out = debayer_array(cfa, "RGGB", method=m)[:, 8:-8, 8:-8]
        ref = rgb[:, 8:-8, 8:-8]
        errs[m] = float(np.sqrt(np.mean((out - ref) ** 2)))
        # colour fringes: deviation of R and B from G on white stars
        fringe[m] = float(np.abs(out[0] - out[1]).max() + np.abs(out[2] - out[1]).max())
    assert errs["rcd"] < 0.8 * errs["bilinear"], errs
    assert fringe["rcd"] < 0.8 * fringe["bilinear"], fringe


def test_superpixel_is_exact_and_halves_size():
    rng = np.random.default_rng(1)
    cfa = rng.uniform(0, 1, (10, 14)).astype(np.float32)
    out = debayer(AstroImage(cfa, bayer="GBRG"), method="superpixel").data
    assert out.shape == (3, 5, 7)
    np.testing.assert_allclose(out[0], cfa[1::2, 0::2])
    np.testing.assert_allclose(out[2], cfa[0::2, 1::2])
    np.testing.assert_allclose(out[1], 0.5 * (cfa[0::2, 0::2] + cfa[1::2, 1::2]))


def test_vng_alias_and_pipeline_superpixel(tmp_path):
    cfa = mosaic(_scene(), "GRBG")
    img = AstroImage(cfa, bayer="GRBG", mask=np.ones(cfa.shape, bool))
    vng = debayer(img, method="vng")
    np.testing.assert_array_equal(vng.data, debayer(img, method="rcd").data)
    assert "vng runs rcd" in vng.history[-1]
    sp = debayer(img, method="superpixel")
    assert sp.data.shape == (3, H // 2, W // 2) and sp.mask.shape == (H // 2, W // 2)


def test_cfa_luminance_weights_and_equalize():
    rgb = np.stack([np.full((40, 50), v, np.float32) for v in (0.4, 0.2, 0.1)])
    for p in BAYER_PATTERNS:
        cfa = mosaic(rgb, p)
        np.testing.assert_allclose(cfa_luminance(cfa, p), 0.25 * 0.4 + 0.5 * 0.2 + 0.25 * 0.1,
                                   rtol=1e-6)
        eq, f = equalize_cfa(cfa, p, return_factors=True)
        for name, sl in cfa_plane_slices(p).items():
            np.testing.assert_allclose(np.median(eq[sl]), 0.2, rtol=1e-6)
        np.testing.assert_allclose(f, [0.5, 1, 1, 2], rtol=1e-6)


def test_bad_debayer_input():
    with pytest.raises(BadInputError, match="no CFA pattern"):
        debayer(AstroImage(np.zeros((20, 20), np.float32)))
    with pytest.raises(BadInputError, match="already colour"):
        debayer(AstroImage(np.zeros((3, 20, 20), np.float32)))
    with pytest.raises(BadInputError, match="unknown debayer method"):
        debayer_array(np.zeros((20, 20), np.float32), "RGGB", method="magic")


def test_seestar_lights_debayer_to_neutral_background(shared_data):
    """Real GRBG lights-only frames: calibrated (no masters: pedestal only), CFA
    equalisation, RCD: the sky background of R, G and B agrees within 5 %."""
    files = sorted((shared_data / "seestar_m94" / "session1").glob("*.fit"))[:1]
    lights = scan_frames(files)
    assert lights[0].bayer == "GRBG"
    params = CalibrateParams(equalize_cfa=True, cosmetic=False)
    item = plan_calibration(lights, MasterSet(), params)[0]
    assert item.pattern == "GRBG" and item.dark is None and item.flat is None
    out = calibrate_light(lights[0], item, MasterSet(), params)
    assert out.data.shape == (3, 1920, 1080)
    assert any("pre.debayer" in h for h in out.history)
    # background: the median of each channel over the frame (M94 is small)
    bg = np.median(out.data[:, ::3, ::3].reshape(3, -1), axis=1)
    assert bg.max() / bg.min() < 1.05, bg
    # without equalisation the raw sensor colour is far from neutral: the test measures
    raw = calibrate_light(lights[0], item, MasterSet(), CalibrateParams(cosmetic=False))
    bg_raw = np.median(raw.data[:, ::3, ::3].reshape(3, -1), axis=1)
    assert bg_raw.max() / bg_raw.min() > 1.05, bg_raw


def test_debayer_array_out_buffer():
    """``out=``: the same values written into the caller's buffer (reused twice),
    every method; a buffer of the wrong shape, type or layout is refused."""
    rng = np.random.default_rng(4)
    cfa = rng.random((64, 48)).astype(np.float32) - 0.01   # negative: RCD's offset path
    for method in ("rcd", "bilinear", "superpixel"):
        ref = debayer_array(cfa, "RGGB", method=method)
        buf = np.full(ref.shape, np.nan, np.float32)
        for _ in range(2):
            got = debayer_array(cfa, "RGGB", method=method, out=buf)
            assert got is buf
            np.testing.assert_array_equal(got, ref)
            buf[...] = 7.0
    img = AstroImage(cfa, bayer="RGGB")
    buf = np.empty((3, 64, 48), np.float32)
    assert debayer(img, out=buf).data is buf
    for bad in (np.empty((3, 64, 47), np.float32), np.empty((3, 64, 48), np.float64),
                np.empty((3, 48, 64), np.float32).transpose(0, 2, 1)):
        with pytest.raises(ValueError):
            debayer_array(cfa, "RGGB", out=bad)
