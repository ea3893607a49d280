"""Curves and saturation: PCHIP curves through their points, identity, CIELab
saturation measured with scikit-image's independent rgb2lab, the seed's saturation /
desaturation pair through the luminance mask and its inverse, HISTORY round trip,
bad input; the curves editor widget under Xvfb.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from napari_astro.core import curves
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.pipeline.registry import run_step


def _lab(data: np.ndarray) -> np.ndarray:
    """(3, H, W) sRGB -> (3, H, W) Lab with scikit-image (the independent reference)."""
    return np.moveaxis(rgb2lab(np.moveaxis(np.asarray(data, np.float64), 0, -1)), -1, 0)


def _chroma_hue(lab: np.ndarray):
    return np.hypot(lab[1], lab[2]), np.arctan2(lab[2], lab[1])


@pytest.fixture(scope="module")
def colours() -> AstroImage:
    """Random moderately saturated colours (inside the gamut after a 1.3 chroma boost)."""
    rng = np.random.default_rng(3)
    lab = np.stack([rng.uniform(30, 80, 20000), rng.uniform(-25, 25, 20000),
                    rng.uniform(-25, 25, 20000)])[:, None, :]
    boosted = lab * np.array([1.0, 1.35, 1.35])[:, None, None]
    # keep the colours whose boosted version is inside the sRGB gamut (lab2rgb clips:
    # a round trip that comes back unchanged means no clipping)
    back = _lab(np.moveaxis(lab2rgb(np.moveaxis(boosted, 0, -1)), -1, 0))
    inside = np.abs(back - boosted).max(axis=0)[0] < 0.05
    lab = lab[:, :, inside][:, :, :4800].reshape(3, 60, 80)
    rgb = np.moveaxis(lab2rgb(np.moveaxis(lab, 0, -1)), -1, 0)
    return AstroImage(rgb.astype(np.float32))


@pytest.fixture(scope="module")
def stretched_sim():
    from napari_astro.core.simulate_post import simulate_linear
    from napari_astro.core.stretch import auto_stretch

    img, truth = simulate_linear((240, 320), stars=80, nebula=0.04, gradient=0.0, sky=0.03,
                                 border="none", seed=2)
    return auto_stretch(img, linked=True), truth


# --------------------------------------------------------------------------- the curve
def test_pchip_curve_passes_through_its_points_and_is_monotone():
    pts = (0.0, 0.0, 0.1, 0.3, 0.15, 0.32, 0.5, 0.6, 0.9, 0.95, 1.0, 1.0)
    f = curves.curve_function(pts)
    xy = np.asarray(pts).reshape(-1, 2)
    np.testing.assert_allclose(f(xy[:, 0]), xy[:, 1], atol=1e-12)
    x = np.linspace(0, 1, 10001)
    y = f(x)
    assert np.all(np.diff(y) >= -1e-12)
    # no overshoot between the close points 0.1 -> 0.15 (a cubic spline rings there)
    seg = (x >= 0.1) & (x <= 0.15)
    assert y[seg].min() >= 0.3 - 1e-12 and y[seg].max() <= 0.32 + 1e-12
    lut = curves.curve_lut(pts)
    np.testing.assert_allclose(curves.apply_lut(np.float32(xy[:, 0]), lut), xy[:, 1], atol=1e-6)


def test_fixed_ends_are_added():
    np.testing.assert_allclose(curves.curve_points((0.5, 0.7)),
                               [[0, 0], [0.5, 0.7], [1, 1]])
    assert curves.is_identity(()) and curves.is_identity("0:0,0.4:0.4,1:1")
    assert not curves.is_identity("0.4:0.5")


def test_identity_curves_change_nothing(colours):
    for params in ({}, {"rgb": "0:0,1:1"}, {"red": (0.3, 0.3)}, {"lightness": "0.5:0.5"},
                   {"saturation": 1.0}):
        out = run_step("post.curves", colours, params).image.data
        np.testing.assert_array_equal(out, colours.data)


def test_rgb_and_channel_curves_follow_the_spline(colours):
    pts = (0.25, 0.15, 0.7, 0.85)
    f = curves.curve_function(pts)
    out = run_step("post.curves", colours, {"rgb": pts}).image.data
    np.testing.assert_allclose(out, f(colours.data.astype(np.float64)), atol=2e-6)
    g = curves.curve_function("0.5:0.3")
    out = run_step("post.curves", colours, {"rgb": pts, "green": "0.5:0.3"}).image.data
    np.testing.assert_allclose(out[1], g(f(colours.data[1].astype(np.float64))), atol=5e-6)
    np.testing.assert_allclose(out[[0, 2]], f(colours.data[[0, 2]].astype(np.float64)), atol=2e-6)


def test_saturation_raises_chroma_30_percent_keeping_hue_and_lightness(colours):
    lab0 = _lab(colours.data)
    out = run_step("post.curves", colours, {"saturation": 1.3}).image.data
    lab1 = _lab(out)
    c0, h0 = _chroma_hue(lab0)
    c1, h1 = _chroma_hue(lab1)
    coloured = c0 > 5
    assert coloured.mean() > 0.8
    ratio = c1[coloured] / c0[coloured]
    assert abs(np.median(ratio) - 1.3) < 0.01 and np.percentile(np.abs(ratio - 1.3), 99) < 0.02
    dh = np.angle(np.exp(1j * (h1 - h0)))[coloured]
    assert np.abs(dh).max() < np.radians(1.0)
    assert np.abs(lab1[0] - lab0[0]).max() < 1.0  # L* within 1 (of 100)
    lum0 = colours.data.mean(axis=0)
    assert np.abs(out.mean(axis=0) - lum0).mean() < 0.01 * lum0.mean() + 0.01


def test_out_of_gamut_boost_keeps_hue_and_lightness():
    # saturated primaries: a 3x boost cannot fit; chroma is reduced, not the hue
    rgb = np.array([[0.9, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.3, 0.9], [0.8, 0.8, 0.1]],
                   np.float32).T.reshape(3, 1, 4)
    img = AstroImage(np.repeat(rgb, 2, axis=1))
    out = run_step("post.curves", img, {"saturation": 3.0}).image.data
    assert out.min() >= 0 and out.max() <= 1
    lab0, lab1 = _lab(img.data), _lab(out)
    c0, h0 = _chroma_hue(lab0)
    c1, h1 = _chroma_hue(lab1)
    assert np.all(c1 >= c0 - 0.5)
    assert np.abs(np.angle(np.exp(1j * (h1 - h0)))).max() < np.radians(2.0)
    assert np.abs(lab1[0] - lab0[0]).max() < 0.5


def test_lightness_curve_matches_scikit_image_lab(colours):
    pts = "0.3:0.2,0.6:0.75"
    out = run_step("post.curves", colours, {"lightness": pts}).image.data
    lab = _lab(colours.data)
    lab[0] = 100 * curves.curve_function(pts)(lab[0] / 100)
    ref = np.moveaxis(lab2rgb(np.moveaxis(lab, 0, -1)), -1, 0)
    # where scikit-image's result is inside the gamut (it clips, we reduce chroma)
    inside = (ref > 1e-3).all(axis=0) & (ref < 1 - 1e-3).all(axis=0)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(out[:, inside], ref[:, inside], atol=2e-4)


def test_mono_curves_and_messages():
    rng = np.random.default_rng(0)
    mono = AstroImage(rng.uniform(0, 1, (40, 50)).astype(np.float32))
    res = run_step("post.curves", mono, {"rgb": (0.5, 0.7), "red": (0.5, 0.2), "saturation": 1.3})
    f = curves.curve_function((0.5, 0.7))
    np.testing.assert_allclose(res.image.data, f(mono.data.astype(np.float64)), atol=2e-6)
    assert any("mono" in m for m in res.messages)
    # L* curve on grey = the same curve on the L* of grey pixels
    out = run_step("post.curves", mono, {"lightness": (0.5, 0.7)}).image.data
    grey = np.repeat(mono.data[None], 3, axis=0)
    lab = _lab(grey)
    lab[0] = 100 * f(lab[0] / 100)
    ref = np.moveaxis(lab2rgb(np.moveaxis(lab, 0, -1)), -1, 0)[0]
    np.testing.assert_allclose(out, ref, atol=2e-4)


def test_nan_pixels_stay_nan(colours):
    data = colours.data.copy()
    data[:, 5, 7] = np.nan
    out = run_step("post.curves", AstroImage(data), {"saturation": 1.3, "rgb": (0.4, 0.5)}).image.data
    assert np.isnan(out[:, 5, 7]).all() and np.isfinite(np.delete(out.reshape(3, -1), 5 * 80 + 7, 1)).all()


# --------------------------------------------------------------------------- the seed's pair
def test_seed_saturation_through_luminance_mask_then_desaturation_through_inverse(stretched_sim):
    from napari_astro.pipeline.post.mask import NAMED_MASKS

    img, truth = stretched_sim
    lum_mask = NAMED_MASKS["luminance"](img)
    step1 = run_step("post.curves", img, {"saturation": 1.3}, mask=lum_mask,
                     mask_spec="luminance").image
    inv_mask = NAMED_MASKS["inverted"](step1)
    step2 = run_step("post.curves", step1, {"saturation": 0.7}, mask=inv_mask,
                     mask_spec="inverted").image
    neb = truth.nebula.max(axis=0)
    stars = truth.stars.max(axis=0)
    nebula = (neb > 0.5 * neb.max()) & (stars < 1e-3)
    sky = (neb < 1e-3) & (stars < 1e-3)
    c0, _ = _chroma_hue(_lab(img.data))
    c2, _ = _chroma_hue(_lab(step2.data))
    assert np.median(c2[nebula]) > 1.08 * np.median(c0[nebula])
    assert np.median(c2[sky]) < 0.8 * np.median(c0[sky])
    assert [h.split(" ")[0] for h in step2.history[-2:]] == ["post.curves", "post.curves"]


# --------------------------------------------------------------------------- params
def test_params_canonical_form_and_history_round_trip(colours):
    from napari_astro.pipeline.post.curves import CurvesParams

    p = CurvesParams(rgb=("0.25:0.2", "0.75:0.85"), lightness=[0.5, 0.55], saturation=1.3)
    assert p.rgb == (0.25, 0.2, 0.75, 0.85)
    assert CurvesParams(rgb=((0.25, 0.2), (0.75, 0.85))) == CurvesParams(rgb=p.rgb)
    res = run_step("post.curves", colours, p)
    back = CurvesParams.from_history(res.image.history[-1])
    assert back == p
    np.testing.assert_array_equal(run_step("post.curves", colours, back).image.data, res.image.data)


@pytest.mark.parametrize("value, match", [
    ((0.2, 0.3, 1.2, 1.0), r"post\.curves\.rgb.*outside \[0, 1\]"),
    ((0.5, 0.3, 0.4, 0.6), r"post\.curves\.rgb.*x must increase"),
    ((0.5, 0.3, 0.5, 0.6), r"post\.curves\.rgb.*x must increase"),
    ((0.5, 0.3, 0.7), r"post\.curves\.rgb.*even count"),
    (("a:b",), r"post\.curves\.rgb.*not a number"),
])
def test_bad_points_name_the_field(value, match):
    from napari_astro.pipeline.post.curves import CurvesParams

    with pytest.raises(BadInputError, match=match):
        CurvesParams(rgb=value)


def test_bad_saturation_names_the_field():
    from napari_astro.pipeline.post.curves import CurvesParams

    with pytest.raises(BadInputError, match=r"post\.curves\.saturation"):
        CurvesParams(saturation=-1)


def test_curves_cli(tmp_path, colours, capsys):
    from napari_astro.cli import main
    from napari_astro.core.io import read_image, write_image
    from napari_astro.pipeline.post.curves import CurvesParams

    src = tmp_path / "in.fits"
    write_image(colours, src)
    out = tmp_path / "out.fits"
    assert main(["curves", str(src), str(out), "--saturation", "1.3",
                 "--rgb", "0.25:0.2,0.75:0.85"]) == 0
    got = read_image(out)
    expect = run_step("post.curves", colours, {"saturation": 1.3, "rgb": (0.25, 0.2, 0.75, 0.85)})
    np.testing.assert_allclose(got.data, expect.image.data, atol=1e-6)
    line = [h for h in got.history if h.startswith("post.curves")][-1]
    assert CurvesParams.from_history(line) == CurvesParams(saturation=1.3, rgb=(0.25, 0.2, 0.75, 0.85))
    capsys.readouterr()
    bad = tmp_path / "bad.fits"
    assert main(["curves", str(src), str(bad), "--rgb", "0.6:0.5,0.4:0.6"]) == 2
    err = capsys.readouterr().err
    assert "post.curves.rgb" in err and len(err.strip().splitlines()) == 1
    assert not bad.exists()


# --------------------------------------------------------------------------- widget (Xvfb)
def _mouse(widget, kind, x, y, button=None):
    """Send a real mouse event at data point (x, y) of the curve editor."""
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    btn = Qt.MouseButton.LeftButton if button is None else button
    pos = widget.to_pixel(x, y)
    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}
    ev = QMouseEvent(types[kind], pos, widget.mapToGlobal(pos),
                     Qt.MouseButton.NoButton if kind == "move" else btn,
                     btn if kind != "release" else Qt.MouseButton.NoButton,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def _wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    if widget.last_error is not None:
        raise widget.last_error


@pytest.mark.gui
def test_curves_editor_add_move_delete_changes_curve_and_result(make_napari_viewer, qtbot,
                                                                  colours):
    pytest.importorskip("pytestqt")
    from napari_astro.widgets._layers import add_layers, image_to_layer_data
    from napari_astro.widgets.curves import CurvesWidget

    viewer = make_napari_viewer()
    layer = add_layers(viewer, [image_to_layer_data(colours, "col", stretch=False)])[0]
    w = CurvesWidget(viewer)
    qtbot.addWidget(w)
    w.show()
    w.image_picker.value = layer
    ed = w.editor
    ed.resize(300, 300)
    assert ed.hist is not None and np.asarray(ed.hist[0]).shape == (3, 256)

    def result():
        assert w.run() is not None
        _wait(qtbot, w)
        return np.moveaxis(np.asarray(viewer.layers["col [post.curves]"].data), -1, 0).copy()

    # click adds a point where clicked
    _mouse(ed, "press", 0.5, 0.7)
    _mouse(ed, "release", 0.5, 0.7)
    assert len(ed.points) == 3
    x, y = ed.points[1]
    assert abs(x - 0.5) < 0.01 and abs(y - 0.7) < 0.01
    p = w.params()
    assert p.rgb == ed.flat_points() and len(p.rgb) == 6
    out1 = result()
    f1 = curves.curve_function(p.rgb)
    np.testing.assert_allclose(out1, f1(colours.data.astype(np.float64)), atol=2e-6)
    assert out1.mean() > colours.data.mean() + 0.02  # lifted midtones

    # drag it down: the curve and the result follow
    _mouse(ed, "press", 0.5, 0.7)
    _mouse(ed, "move", 0.5, 0.5)
    _mouse(ed, "move", 0.52, 0.3)
    _mouse(ed, "release", 0.52, 0.3)
    assert len(ed.points) == 3 and abs(ed.points[1][1] - 0.3) < 0.01
    p2 = w.params()
    assert curves.curve_function(p2.rgb)(0.52) == pytest.approx(ed.points[1][1], abs=1e-3)
    out2 = result()
    np.testing.assert_allclose(out2, curves.curve_function(p2.rgb)(colours.data.astype(np.float64)),
                               atol=2e-6)
    assert out2.mean() < colours.data.mean() - 0.02

    # another channel keeps its own curve; right-click deletes
    w.set_curve("red", (0.5, 0.6))
    assert w.params().red == (0.0, 0.0, 0.5, 0.6, 1.0, 1.0) and w.params().rgb == p2.rgb
    w.channel.setCurrentText("RGB/K")
    assert ed.flat_points() == p2.rgb
    _mouse(ed, "press", *ed.points[1], button=__import__("qtpy.QtCore").QtCore.Qt.MouseButton.RightButton)
    assert len(ed.points) == 2 and w.params().rgb == ()

    # live preview on the region in view follows the edit
    w.preview_box.setChecked(True)
    ed.set_points((0.5, 0.8), emit=True)
    qtbot.waitUntil(lambda: w.preview_runs > 0 and not w.previewing
                    and "preview" in viewer.layers, timeout=60_000)
    y0, x0, y1, x1 = w.preview_region
    prev = np.moveaxis(np.asarray(viewer.layers["preview"].data), -1, 0)
    expect = run_step("post.curves", colours, w.params()).image.data[:, y0:y1, x0:x1]
    np.testing.assert_allclose(prev, expect, atol=2e-6)
    w.preview_box.setChecked(False)


def test_transfer_tables_are_exact_to_2e_6():
    """The kernel's tabulated sRGB decode/encode and CIE f(t) against the formulas."""
    dec, enc, f = curves._tf_tables()
    u = np.random.default_rng(0).uniform(0, 1, 200_000)

    def tab(lut, x):
        t = np.clip(x, 0, 1) * (lut.size - 1)
        k = np.minimum(t.astype(int), lut.size - 2)
        return lut[k] + (t - k) * (lut[k + 1] - lut[k])

    exact_dec = np.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055) ** 2.4)
    exact_enc = np.where(u <= 0.0031308, 12.92 * u, 1.055 * u ** (1 / 2.4) - 0.055)
    exact_f = np.where(u > 0.008856, np.cbrt(u), 7.787 * u + 16 / 116)
    assert np.abs(tab(dec, u) - exact_dec).max() < 2e-6
    assert np.abs(tab(enc, np.sqrt(u)) - exact_enc).max() < 2e-6
    assert np.abs(tab(f, np.sqrt(u)) - exact_f).max() < 2e-6


@pytest.mark.parametrize("command", ["curves", "mask"])
def test_help_renders(command, capsys):
    from napari_astro.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--saturation" in capsys.readouterr().out or command == "mask"


def test_one_step_equals_the_curves_applied_in_order(colours):
    """RGB/K, then R/G/B, then L* and saturation: one step = the same steps in a row."""
    both = run_step("post.curves", colours, {"rgb": (0.4, 0.45), "red": (0.5, 0.6),
                                             "lightness": (0.5, 0.55), "saturation": 1.2})
    seq = colours
    for p in ({"rgb": (0.4, 0.45)}, {"red": (0.5, 0.6)}, {"lightness": (0.5, 0.55),
                                                         "saturation": 1.2}):
        seq = run_step("post.curves", seq, p).image
    np.testing.assert_allclose(both.image.data, seq.data, atol=2e-6)
    only_red = run_step("post.curves", colours, {"red": (0.5, 0.6), "saturation": 1.2}).image
    red_then_sat = run_step("post.curves", run_step("post.curves", colours,
                                                    {"red": (0.5, 0.6)}).image,
                            {"saturation": 1.2}).image
    np.testing.assert_allclose(only_red.data, red_then_sat.data, atol=2e-6)
    assert np.abs(only_red.data - colours.data).max() > 0.02


def test_recipe_holds_the_seed_pair_and_replays_from_history(stretched_sim):
    """The seed's last two steps as a TOML recipe; the output's HISTORY gives the same
    recipe back, and replaying it gives the same pixels."""
    from napari_astro.pipeline.recipes import (dumps_recipe, loads_recipe, recipe_from_history,
                                               run_recipe)

    img = stretched_sim[0]
    text = """
[[step]]
id = "post.curves"
mask = "luminance"
saturation = 1.3
lightness = ["0.5:0.55"]

[[step]]
id = "post.curves"
mask = "inverted"
saturation = 0.7
"""
    entries = loads_recipe(text)
    out = run_recipe(img, entries).image
    again = recipe_from_history(out.history)
    assert [(e.step_id, e.mask, e.params) for e in again] == \
        [(e.step_id, e.mask, e.params) for e in entries]
    replay = run_recipe(img, loads_recipe(dumps_recipe(again))).image
    np.testing.assert_array_equal(replay.data, out.data)
