"""Masks against the simulator's truth: luminance, inverted, stars; masked steps;
the ``mask`` CLI and bad input; the mask widget under Xvfb.

The simulated linear image (``core.simulate_post.simulate_linear``) gives the nebula,
the star images and the star table separately, so "high on the nebula, low on the sky"
and "covers the bright star cores and little else" are measured, not eyeballed.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_astro.core import masks
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_post import simulate_linear
from napari_astro.pipeline.registry import get_step, run_step


@pytest.fixture(scope="module")
def sim():
    img, truth = simulate_linear((300, 400), stars=150, nebula=0.03, gradient=0.0, sky=0.03,
                                 border="none", seed=1)
    stars = truth.stars.max(axis=0)
    neb = truth.nebula.max(axis=0)
    regions = {
        "nebula": (neb > 0.5 * neb.max()) & (stars < 1e-3),
        "sky": (neb < 1e-3) & (stars < 1e-3),
    }
    return img, truth, regions


def _bright_cores(truth, shape, *, snr: float = 20.0, edge: int = 5):
    """(row, col) of the stars peaking above ``snr`` sky sigmas, away from the edges."""
    st = truth.star_table
    x, y = np.round(st["x"]).astype(int), np.round(st["y"]).astype(int)
    h, w = shape
    keep = ((st["peak"] > snr * truth.noise) & (x >= edge) & (x < w - edge)
            & (y >= edge) & (y < h - edge))
    return y[keep], x[keep]


def test_luminance_mask_is_high_on_the_nebula_and_low_on_the_sky(sim):
    img, truth, reg = sim
    m = masks.luminance_mask(img)
    assert m.shape == img.shape2d and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    assert np.median(m[reg["nebula"]]) > 0.5
    assert np.median(m[reg["sky"]]) < 0.02
    assert np.percentile(m[reg["sky"]], 95) < 0.1
    # monotone in the signal: the brighter half of the nebula is brighter in the mask
    neb = truth.nebula.max(axis=0)
    inner = (neb > 0.8 * neb.max()) & reg["nebula"]
    outer = (neb > 0.3 * neb.max()) & (neb < 0.5 * neb.max()) & (truth.stars.max(0) < 1e-3)
    assert np.median(m[inner]) > np.median(m[outer]) + 0.05


def test_luminance_mask_of_a_stretched_image_equals_the_linear_one(sim):
    """A linear image is auto-stretched first; giving the stretched image gives the same."""
    from napari_astro.core.stretch import mtf, stf_parameters

    img = sim[0]
    lum = masks.mask_luminance(img)
    c0, mid, c1 = stf_parameters(lum)
    stretched = AstroImage(mtf(mid, np.clip((lum - c0) / (c1 - c0), 0, 1)))
    np.testing.assert_allclose(masks.luminance_mask(stretched), masks.luminance_mask(img),
                               atol=1e-5)


def test_levels_blur_and_gamma(sim):
    img = sim[0]
    base = masks.luminance_mask(img, low=0.3, high=0.8)
    lum = masks.stretched_luminance(img)
    from scipy import ndimage

    expect = np.clip((ndimage.gaussian_filter(lum, 2.0, mode="nearest", truncate=3.0) - 0.3)
                     / 0.5, 0, 1)
    np.testing.assert_allclose(base, expect, atol=1e-6)
    wide = masks.luminance_mask(img, low=0.3, high=0.8, gamma=0.5)
    np.testing.assert_allclose(wide, np.sqrt(base), atol=1e-6)
    sharp = masks.luminance_mask(img, blur=0, low=0.3, high=0.8)
    assert sharp.std() > base.std()  # the blur removes the noise's share


def test_inverted_mask_is_one_minus_the_luminance_mask(sim):
    img = sim[0]
    lum = run_step("post.mask", img, {"type": "luminance"}).image.data
    inv = run_step("post.mask", img, {"type": "inverted"}).image.data
    np.testing.assert_allclose(inv, 1.0 - lum, atol=1e-7)


def test_star_mask_covers_the_bright_star_cores_and_little_else(sim):
    img, truth, reg = sim
    m = masks.star_mask(img)
    ys, xs = _bright_cores(truth, img.shape2d)
    assert ys.size >= 10
    covered = np.mean(m[ys, xs] >= 0.5)
    assert covered > 0.95, covered
    starlight = truth.stars.max(axis=0)
    # little else: the mask lies on star light (above 0.5 sky sigma, the Moffat wings
    # included), not on the sky or the nebula
    assert np.mean(starlight[m >= 0.5] < 0.5 * truth.noise) < 0.1
    assert np.mean(m >= 0.5) < 1.2 * np.mean(starlight > 0.5 * truth.noise)
    assert np.mean(m[reg["nebula"]] >= 0.5) < 0.02
    assert np.mean(m[reg["sky"]] > 0) < 0.03
    # soft edges: values between 0 and 1 exist, around every disc
    assert np.count_nonzero((m > 0.05) & (m < 0.95)) > np.count_nonzero(m >= 0.95) * 0.3


def test_mask_step_output_and_history(sim):
    img = sim[0]
    res = run_step("post.mask", img, {"type": "stars", "star_size": 2.0})
    assert res.image.data.shape == img.shape2d and not res.image.is_color
    assert res.image.history[-1].startswith("post.mask ")
    from napari_astro.pipeline.post.mask import MaskParams

    back = MaskParams.from_history(res.image.history[-1])
    assert back.type == "stars" and back.star_size == 2.0
    assert not get_step("post.mask").maskable
    with pytest.raises(BadInputError):
        run_step("post.mask", img, mask=np.ones(img.shape2d, np.float32))


def test_named_masks_are_the_default_mask_step(sim):
    from napari_astro.pipeline.post.mask import NAMED_MASKS
    from napari_astro.pipeline.stepcli import resolve_mask_spec

    img = sim[0]
    assert set(NAMED_MASKS) == {"luminance", "inverted", "stars"}
    for name, fn in NAMED_MASKS.items():
        m = fn(img)
        assert m.shape == img.shape2d and m.dtype == np.float32
        np.testing.assert_array_equal(m, run_step("post.mask", img, {"type": name}).image.data)
    m, spec = resolve_mask_spec("inverted", img)
    assert spec == "inverted" and m.shape == img.shape2d


def test_masked_step_follows_the_blend_formula(sim):
    """result = original + mask * (processed - original); unchanged where mask = 0."""
    from napari_astro.core.stretch import auto_stretch

    img = auto_stretch(sim[0], linked=True)
    h, w = img.shape2d
    mask = np.zeros((h, w), np.float32)
    mask[:, w // 2:] = np.linspace(0, 1, w - w // 2, dtype=np.float32)[None, :]
    params = {"saturation": 1.5, "rgb": (0.25, 0.35, 0.75, 0.8)}
    full = run_step("post.curves", img, params).image.data
    res = run_step("post.curves", img, params, mask=mask, mask_spec="ramp")
    out = res.image.data
    np.testing.assert_array_equal(out[:, :, : w // 2 + 1], img.data[:, :, : w // 2 + 1])
    np.testing.assert_allclose(out, img.data + mask * (full - img.data), atol=1e-6)
    assert np.abs(full - img.data).max() > 0.05
    from napari_astro.pipeline.params import StepParams

    step_id, record = StepParams.parse_history(res.image.history[-1])
    assert step_id == "post.curves" and record["mask"] == "ramp"
    assert record["saturation"] == 1.5 and record["rgb"] == [0.25, 0.35, 0.75, 0.8]


def test_mask_of_another_size_is_refused(sim):
    img = sim[0]
    with pytest.raises(BadInputError, match="mask is 399x300 px"):
        run_step("post.curves", img, {"saturation": 1.2}, mask=np.ones((300, 399), np.float32))


def test_bad_levels_name_the_field(sim):
    with pytest.raises(BadInputError, match=r"post\.mask\.high"):
        run_step("post.mask", sim[0], {"low": 0.6, "high": 0.5})
    with pytest.raises(BadInputError, match=r"post\.mask\.type"):
        run_step("post.mask", sim[0], {"type": "galaxies"})


# --------------------------------------------------------------------------- CLI
def _cli(*args):
    from napari_astro.cli import main

    return main([str(a) for a in args])


def test_mask_cli_writes_the_mask_and_other_steps_read_it(sim, tmp_path, capsys):
    from napari_astro.core.io import read_image, write_image

    img = sim[0]
    src = tmp_path / "in.fits"
    write_image(img, src)
    before = src.read_bytes()
    out = tmp_path / "stars.fits"
    assert _cli("mask", src, out, "--type", "stars") == 0
    m = read_image(out)
    assert m.data.shape == img.shape2d
    np.testing.assert_allclose(m.data, masks.star_mask(img), atol=1e-6)
    assert any(h.startswith("post.mask ") for h in m.history)
    # that file is a mask for another step
    curved = tmp_path / "curved.fits"
    assert _cli("curves", src, curved, "--saturation", "1.3", "--mask", out) == 0
    c = read_image(curved)
    zero = m.data == 0
    np.testing.assert_array_equal(c.data[:, zero], img.data[:, zero])
    assert src.read_bytes() == before


def test_cli_mask_of_another_size_exits_2(sim, tmp_path, capsys):
    from napari_astro.core.io import write_image

    write_image(sim[0], tmp_path / "in.fits")
    write_image(AstroImage(np.ones((50, 60), np.float32)), tmp_path / "small.fits")
    out = tmp_path / "out.fits"
    code = _cli("curves", tmp_path / "in.fits", out, "--saturation", "1.3",
                "--mask", tmp_path / "small.fits")
    err = capsys.readouterr().err
    assert code == 2
    assert "small.fits" in err and "60x50" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# --------------------------------------------------------------------------- widget (Xvfb)
def _add_image(viewer, img, name):
    from napari_astro.widgets._layers import add_layers, image_to_layer_data

    return add_layers(viewer, [image_to_layer_data(img, name)])[0]


def _wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    if widget.last_error is not None:
        raise widget.last_error


@pytest.mark.gui
def test_mask_widget_overlay_paint_and_use_as_a_step_mask(make_napari_viewer, qtbot, sim):
    pytest.importorskip("pytestqt")
    from napari_astro.widgets.curves import CurvesWidget
    from napari_astro.widgets.masks import PAINT_SUFFIX, MaskWidget

    img = sim[0]
    viewer = make_napari_viewer()
    layer = _add_image(viewer, img, "sim")
    w = MaskWidget(viewer)
    qtbot.addWidget(w)
    w.image_picker.value = layer
    w.form["type"].value = "luminance"
    assert w.run() is not None
    _wait(qtbot, w)
    name = "sim [mask luminance]"
    assert name in viewer.layers
    m = viewer.layers[name]
    assert m.colormap.name == "magenta" and m.opacity == pytest.approx(0.5)
    assert str(m.blending) == "additive" and tuple(m.contrast_limits) == (0.0, 1.0)
    assert list(viewer.layers).index(m) > list(viewer.layers).index(layer)  # on top
    np.testing.assert_allclose(m.data, masks.luminance_mask(img), atol=1e-6)

    # paint: label 1 adds, label 2 erases, feathered edges, the rest kept
    before = np.array(m.data)
    paint = w.start_paint()
    assert paint.name == name + PAINT_SUFFIX and paint.mode == "paint"
    strokes = np.zeros(img.shape2d, np.uint8)
    strokes[10:40, 10:40] = 1
    strokes[150:200, 150:200] = 2
    paint.data = strokes
    assert w.apply_paint()
    assert name + PAINT_SUFFIX not in viewer.layers
    assert np.all(m.data[10:40, 10:40] == 1) and np.all(m.data[150:200, 150:200] == 0)
    assert 0 < m.data[41, 25] < 1 or before[41, 25] > 0  # a soft edge
    np.testing.assert_array_equal(m.data[:, 300:], before[:, 300:])

    # the mask layer is the mask input of another step
    c = CurvesWidget(viewer)
    qtbot.addWidget(c)
    c.image_picker.value = layer
    assert m in [v for _, v in c.mask_picker._choices()]
    c.mask_picker.value = m
    c.form["saturation"].value = 1.5
    assert c.run() is not None
    _wait(qtbot, c)
    out = viewer.layers["sim [post.curves]"]
    expect = run_step("post.curves", img, {"saturation": 1.5}, mask=np.asarray(m.data))
    np.testing.assert_allclose(np.moveaxis(np.asarray(out.data), -1, 0), expect.image.data,
                               atol=1e-6)
    hist = out.metadata["astro"]["history"][-1]
    assert hist.startswith("post.curves ") and name in hist
    zero = np.asarray(m.data) == 0
    np.testing.assert_array_equal(np.moveaxis(np.asarray(out.data), -1, 0)[:, zero],
                                  img.data[:, zero])
