"""The default recipe on whole nights: the simulated demo night (measured against the
simulator's truth) and the real Seestar M94 stack.

What a careful astrophotographer checks on a finished picture: a neutral dark-grey
background (channel medians within a few % of each other, median 0.08-0.22 of full
scale), no gradient left, stars not bloated by the noise reduction (FWHM within 15 %
of the same stretch without it), the object brighter than the sky, no NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_astro.core.io import read_image
from napari_astro.pipeline.demo import finish_with_recipe, run_demo
from napari_astro.pipeline.recipes import default_recipe

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
M94 = DATA / "seestar_m94" / "session1"

#: Steps of the default recipe that change how the picture looks but not its
#: sharpness: the reference the noise reduction's star sizes are measured against.
SHARPNESS_NEUTRAL = ("post.crop", "post.background", "post.color", "post.stf", "post.arcsinh")


def _sky_medians(data: np.ndarray, sky: np.ndarray) -> np.ndarray:
    return np.array([np.median(c[sky]) for c in data])


def _block_sky_medians(lum: np.ndarray, sky: np.ndarray, n: int = 6) -> np.ndarray:
    """Medians of the sky pixels of an n x n grid of blocks (NaN where too few)."""
    h, w = lum.shape
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            ys, xs = slice(i * h // n, (i + 1) * h // n), slice(j * w // n, (j + 1) * w // n)
            v = lum[ys, xs][sky[ys, xs]]
            if v.size > 200:
                out[i, j] = np.median(v)
    return out


def _truth_sky_mask(truth_sky: np.ndarray, box) -> np.ndarray:
    """Pixels of pure sky in the truth (no star, no nebula above 0.3 % of the sky),
    in the crop ``box``: the smooth background is a degree-2 surface fitted to the
    truth's faintest pixels and refitted without what stands above it."""
    from scipy import ndimage

    lum = truth_sky.mean(axis=0).astype(np.float64)
    h, w = lum.shape
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx - w / 2) / w, (yy - h / 2) / h
    a = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).reshape(-1, 6)
    keep = lum.ravel() < np.percentile(lum, 40)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(a[keep], lum.ravel()[keep], rcond=None)
        res = lum.ravel() - a @ coef
        keep = res < 0.003 * np.median(lum)
    objects = (res >= 0.003 * np.median(lum)).reshape(h, w)
    objects = ndimage.binary_dilation(objects, iterations=4)  # star wings, soft edges
    x0, y0, x1, y1 = box
    return ~objects[y0:y1, x0:x1]


def _fwhm_ratio(img, ref) -> tuple[float, int]:
    """Median FWHM ratio of the stars found in both (matched within 1.5 px)."""
    from scipy.spatial import cKDTree

    from napari_astro.core.stars.detect import detect_stars

    a = detect_stars(img.luminance(), sigma=8.0, max_stars=300)
    b = detect_stars(ref.luminance(), sigma=8.0, max_stars=300)
    ok_a, ok_b = ~np.asarray(a.saturated), ~np.asarray(b.saturated)
    pa = np.stack([a.y[ok_a], a.x[ok_a]], 1)
    pb = np.stack([b.y[ok_b], b.x[ok_b]], 1)
    d, j = cKDTree(pb).query(pa, distance_upper_bound=1.5)
    m = np.isfinite(d)
    ratio = np.asarray(a.fwhm)[ok_a][m] / np.asarray(b.fwhm)[ok_b][j[m]]
    return float(np.median(ratio)), int(m.sum())


# --------------------------------------------------------------------------- demo night
@pytest.fixture(scope="module")
def demo_night(tmp_path_factory):
    from napari_astro.core.crop import auto_box
    from napari_astro.core.simulate import load_truth

    out = tmp_path_factory.mktemp("night") / "demo"
    report = run_demo(out, size=(480, 360), lights=5, seed=3, log=lambda s: None)
    stack = read_image(out / "stack.fits")
    cov = read_image(out / "stack_coverage.fits").data
    box = auto_box(stack, cov)
    final = finish_with_recipe(stack, out / "stack.fits")
    truth = load_truth(out / "night")
    sky = _truth_sky_mask(truth.sky, box)
    return dict(out=out, report=report, stack=stack, box=box, final=final, sky=sky)


def test_demo_night_background_neutral_dark_grey_flat(demo_night):
    img = demo_night["final"]["image"]
    sky = demo_night["sky"]
    x0, y0, x1, y1 = demo_night["box"]
    assert img.shape2d == (y1 - y0, x1 - x0) and sky.shape == img.shape2d
    assert sky.mean() > 0.15  # enough pure sky to judge by (the nebula fills much of it)
    assert np.isfinite(img.data).all()
    med = _sky_medians(img.data, sky)
    # neutral: channels within 3 % of each other (the simulated sky is orange: 1.3/1/0.7)
    assert med.max() / med.min() < 1.03, med
    # dark grey, neither black (crushed) nor washed out
    assert 0.08 < np.median(med) < 0.22, med
    # no gradient left: the sky's block medians (6 x 6) agree to a few % of the
    # level, where the same stretch without background extraction does not
    blocks = _block_sky_medians(img.luminance(), sky)
    spread = np.nanmax(blocks) - np.nanmin(blocks)
    no_bg = [e for e in default_recipe() if e.step_id != "post.background"]
    raw = finish_with_recipe(demo_night["stack"], demo_night["out"] / "stack.fits",
                             entries=no_bg)["image"]
    raw_blocks = _block_sky_medians(raw.luminance(), sky)
    raw_spread = np.nanmax(raw_blocks) - np.nanmin(raw_blocks)
    assert spread < 0.03, f"sky block medians span {spread:.3f}"
    assert raw_spread > 2 * spread, (raw_spread, spread)


def test_demo_night_stars_not_bloated_and_colour_kept(demo_night):
    final = demo_night["final"]["image"]
    ref_entries = [e for e in default_recipe() if e.step_id in SHARPNESS_NEUTRAL]
    ref = finish_with_recipe(demo_night["stack"], demo_night["out"] / "stack.fits",
                             entries=ref_entries)["image"]
    ratio, n = _fwhm_ratio(final, ref)
    assert n >= 20 and ratio < 1.15, f"FWHM x{ratio:.3f} over {n} stars"
    # the nebula keeps its colour: off the sky, the chroma is above the sky's
    sky = demo_night["sky"]
    chroma = final.data.max(axis=0) - final.data.min(axis=0)
    lum = final.luminance()
    neb = ~sky & (lum > np.median(lum[sky]) + 0.05) & (lum < 0.6)
    assert neb.sum() > 500
    assert np.median(chroma[neb]) > 3 * np.median(chroma[sky])


def test_demo_report_has_the_recipe(demo_night):
    out = demo_night["out"]
    text = (out / "report.txt").read_text()
    assert "post-processing (default recipe, 9 steps)" in text
    assert "Background extraction" in text
    # the simulated sky is not the real one: the photometric colour calibration
    # falls back to basic and says why, where a direct photometric run stops
    assert "post.color: photometric calibration fell back to basic: plate solve" in text
    from napari_astro.core.errors import BadInputError
    from napari_astro.pipeline.registry import run_step

    with pytest.raises(BadInputError, match="plate solve"):
        run_step("post.color", demo_night["stack"], {"method": "photometric"})
    assert (out / "final_recipe.toml").exists()
    from napari_astro.pipeline.recipes import load_recipe

    assert [e.step_id for e in load_recipe(out / "final_recipe.toml")] == \
        [e.step_id for e in default_recipe()]


# --------------------------------------------------------------------------- real M94
@pytest.fixture(scope="session")
def m94_stack(tmp_path_factory):
    if not M94.is_dir():
        pytest.skip(f"real Seestar frames not present ({M94})")
    from napari_astro.pipeline.stack import run_stack

    # four of the ten subs (linked, not copied) keep the stack under ~30 s
    src = tmp_path_factory.mktemp("m94_subs")
    for f in sorted(os.listdir(M94))[:4]:
        os.symlink(M94 / f, src / f)
    out = tmp_path_factory.mktemp("m94") / "m94.fits"
    res = run_stack([src], out, work_dir=out.with_suffix(".work"), overwrite=True, log=None)
    path = next(iter(res.outputs.values()))
    return path, read_image(path)


def test_m94_finished_neutral_galaxy_above_sky(m94_stack):
    from scipy import ndimage

    path, stack = m94_stack
    final = finish_with_recipe(stack, path)["image"]
    data = final.data
    assert np.isfinite(data).all()
    lum = final.luminance()
    # sky: below the luminance's 60th percentile after a light blur (stars, galaxy out)
    sm = ndimage.uniform_filter(lum, 15)
    sky = sm < np.percentile(sm, 60)
    med = _sky_medians(data, sky)
    assert med.max() / med.min() < 1.03, med
    assert 0.08 < np.median(med) < 0.22, med
    # the galaxy (the Seestar centres its target): the brightest 41 px region lies
    # near the centre and far above the sky
    big = ndimage.median_filter(lum[::4, ::4], 11)
    r, c = np.unravel_index(np.argmax(big), big.shape)
    h, w = lum.shape
    assert abs(4 * r - h / 2) < 0.15 * h and abs(4 * c - w / 2) < 0.15 * w, (4 * r, 4 * c)
    # (+0.13 of full scale with these four subs, +0.25 with all ten)
    assert big[r, c] > np.median(lum[sky]) + 0.08
    noise = 1.4826 * np.median(np.abs(lum[sky] - np.median(lum[sky])))
    assert big[r, c] > np.median(lum[sky]) + 10 * noise
