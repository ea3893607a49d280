"""Stretch steps against their definitions, on simulated linear images with truth.

* STF (post.stf, default parameters): background median 0.25 within 0.02 and the
  output equal to the histogram transformation written out from the definition
  (per channel and linked as Siril defines it);
* HT: explicit and per-channel values, ``auto`` = STF;
* arcsinh: colour ratios kept within 1 % (no channel clipped) and, with highlight
  protection, in the stars too; the mono formula;
* GHS: equal to a direct evaluation of Siril's formulas (its coefficient form, an
  independent writing of the same maths) for several parameter sets, monotonic,
  0 -> 0 and 1 -> 1;
* CLI (default method, HISTORY, bad input) and the widgets under Xvfb.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_post import simulate_linear
from napari_astro.pipeline.registry import run_step

SHAPE = (240, 320)


@pytest.fixture(scope="module")
def colour():
    return simulate_linear(SHAPE, color=True, sky=0.05, gradient=0.0, nebula=0.01, stars=120,
                           cast=(1.1, 1.0, 0.8), noise=0.002, border="none", seed=3)


@pytest.fixture(scope="module")
def mono():
    return simulate_linear(SHAPE, color=False, sky=0.08, gradient=0.0, nebula=0.0, stars=80,
                           noise=0.003, border="none", seed=4)


def _background(truth) -> np.ndarray:
    """(H, W) True where no object adds more than a tenth of the noise."""
    return np.all(truth.objects < 0.1 * truth.noise, axis=0)


def _mtf(m, x):
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    return (m - 1) * x / ((2 * m - 1) * x - m)


def _stf_definition(channels, *, linked, clip=-2.8, target=0.25):
    """(c0, m) per channel written out from the STF definition (exact statistics)."""
    meds = [float(np.median(c)) for c in channels]
    mads = [1.4826 * float(np.median(np.abs(c - md))) for c, md in zip(channels, meds)]
    if linked:  # Siril's find_linked_midtones_balance: averages of the channel stats
        c0 = max(0.0, float(np.mean([md + clip * sd for md, sd in zip(meds, mads)])))
        m = _mtf(target, np.mean(meds) - c0)
        return [(c0, float(m))] * len(channels)
    out = []
    for md, sd in zip(meds, mads):
        c0 = max(0.0, md + clip * sd)
        out.append((c0, float(_mtf(target, md - c0))))
    return out


@pytest.mark.parametrize("kind", ["colour", "mono"])
def test_stf_default_background_at_target_and_formula(kind, colour, mono):
    img, truth = colour if kind == "colour" else mono
    result = run_step("post.stf", img)
    out = result.image.data
    chans = img.channel_views()
    outs = [out] if out.ndim == 2 else list(out)
    bg = _background(truth)
    for c, (c0, m) in enumerate(_stf_definition(chans, linked=False)):
        expected = _mtf(m, (chans[c].astype(np.float64) - c0) / (1 - c0))
        np.testing.assert_allclose(outs[c], expected, atol=2e-5)
        assert abs(float(np.median(outs[c][bg])) - 0.25) < 0.02
        assert result.extras["stf"][c][0] == pytest.approx(c0, abs=1e-6)
    assert result.image.history[-1].startswith("post.stf ")
    assert np.array_equal(img.data, colour[0].data if kind == "colour" else mono[0].data)


def test_stf_linked_uses_sirils_channel_averages(colour):
    img, truth = colour
    result = run_step("post.stf", img, {"linked": True})
    (c0, m), = set(_stf_definition(img.channel_views(), linked=True))
    expected = _mtf(m, (img.data.astype(np.float64) - c0) / (1 - c0))
    np.testing.assert_allclose(result.image.data, expected, atol=2e-5)
    assert len(set(result.extras["stf"])) == 1
    # Linked keeps the cast (red above blue); the mean background still at the target.
    bg = _background(truth)
    meds = [float(np.median(ch[bg])) for ch in result.image.data]
    assert meds[0] > meds[2]
    assert abs(np.mean(meds) - 0.25) < 0.02


def test_ht_explicit_per_channel_and_auto(colour):
    img, _ = colour
    x = img.data.astype(np.float64)
    s, m, h = (0.01, 0.02, 0.03), (0.2, 0.3, 0.4), (0.9, 0.95, 1.0)
    out = run_step("post.ht", img, {"shadows": s, "midtones": m, "highlights": h}).image.data
    for c in range(3):
        expected = _mtf(m[c], (x[c] - s[c]) / (h[c] - s[c]))
        np.testing.assert_allclose(out[c], expected, atol=2e-5)
    one = run_step("post.ht", img, {"shadows": (0.02,), "midtones": (0.1,)}).image.data
    np.testing.assert_allclose(one, _mtf(0.1, (x - 0.02) / 0.98), atol=2e-5)
    auto = run_step("post.ht", img, {"auto": True}).image.data
    np.testing.assert_allclose(auto, run_step("post.stf", img).image.data, atol=1e-6)
    ident = run_step("post.ht", img).image.data  # defaults: 0, 0.5, 1 = identity
    np.testing.assert_allclose(ident, np.clip(img.data, 0, 1), atol=2e-6)


def test_ht_bad_values_are_refused():
    from napari_astro.core.errors import BadInputError
    from napari_astro.pipeline.post.stretch import HtParams

    with pytest.raises(BadInputError, match="post.ht.midtones"):
        HtParams(midtones=(1.0,))
    with pytest.raises(BadInputError, match="post.ht.highlights"):
        HtParams(shadows=(0.5,), highlights=(0.4,))
    with pytest.raises(BadInputError, match="1 or 3 values"):
        HtParams(shadows=(0.1, 0.2))


def test_arcsinh_keeps_colour_ratios(colour):
    img, _ = colour
    x = img.data.astype(np.float64)
    out = run_step("post.arcsinh", img).image.data.astype(np.float64)  # defaults
    # Everywhere (highlight protection rescales a pixel instead of clipping it) the
    # ratios to green are kept; compare where all channels are well above zero.
    ok = np.all(x > 0.01, axis=0)
    assert ok.mean() > 0.9
    for c in (0, 2):
        ratio_in = x[c][ok] / x[1][ok]
        ratio_out = out[c][ok] / out[1][ok]
        assert np.max(np.abs(ratio_out / ratio_in - 1)) < 0.01
    # The factor is the one of the Rec.709 luminance where nothing is rescaled.
    lum = 0.2126 * x[0] + 0.7152 * x[1] + 0.0722 * x[2]
    f = np.arcsinh(50 * lum) / (lum * np.arcsinh(50))
    free = ok & (np.max(x * f, axis=0) < 1)
    np.testing.assert_allclose(out[:, free], (x * f)[:, free], rtol=1e-4)
    # Stars that would clip are scaled down with their colour (max channel = 1).
    over = ok & (np.max(x * f, axis=0) > 1.05)
    if over.any():
        assert np.allclose(out[:, over].max(axis=0), 1.0, atol=1e-5)


def test_arcsinh_mono_black_point_and_clip(mono):
    img, _ = mono
    x = img.data.astype(np.float64)
    out = run_step("post.arcsinh", img, {"stretch": 20, "black_point": 0.02,
                                         "protect_highlights": False}).image.data
    xp = np.maximum(0, (x - 0.02) / 0.98)
    np.testing.assert_allclose(out, np.clip(np.arcsinh(20 * xp) / np.arcsinh(20), 0, 1), atol=2e-6)


# --------------------------------------------------------------------------- GHS
def _siril_ghs(x: float, D: float, B: float, SP: float, LP: float, HP: float) -> float:
    """Siril's generalised hyperbolic stretch (ght.c, normal stretch) in its own
    coefficient form: q0/q1 are the curve at 0 and 1, q the normalisation, and each
    segment a closed form. D here is the user's value (Siril uses expm1(D))."""
    D = math.expm1(D)
    x = min(max(x, 0.0), 1.0)
    if B == -1:
        qlp = -math.log1p(D * (SP - LP))
        q0 = qlp - D * LP / (1 + D * (SP - LP))
        qwp = math.log1p(D * (HP - SP))
        q1 = qwp + D * (1 - HP) / (1 + D * (HP - SP))
        q = 1 / (q1 - q0)
        # (Siril's own x < LP slope for b = -1 is the reciprocal of this one, a
        # discontinuity at LP; the tests use LP = 0 with b = -1, where it never applies.)
        b1 = D / (1 + D * (SP - LP)) * q
        if x < LP:
            return b1 * x
        if x < SP:
            return -q0 * q - q * math.log(1 + D * SP - D * x)
        if x < HP:
            return -q0 * q + q * math.log(1 - D * SP + D * x)
        b4 = q * D / (1 + D * (HP - SP))
        return (qwp - q0 - D * HP / (1 + D * (HP - SP))) * q + b4 * x
    if B < 0:
        c = -B
        qlp = (1 - (1 + D * c * (SP - LP)) ** ((c - 1) / c)) / (c - 1)
        q0 = qlp - D * LP * (1 + D * c * (SP - LP)) ** (-1 / c)
        qwp = ((1 + D * c * (HP - SP)) ** ((c - 1) / c) - 1) / (c - 1)
        q1 = qwp + D * (1 - HP) * (1 + D * c * (HP - SP)) ** (-1 / c)
        q = 1 / (q1 - q0)
        if x < LP:
            return D * (1 + D * c * (SP - LP)) ** (-1 / c) * q * x
        if x < SP:
            return (1 / (c - 1) - q0) * q - q / (c - 1) * (1 + D * c * SP - D * c * x) ** ((c - 1) / c)
        if x < HP:
            return (-1 / (c - 1) - q0) * q + q / (c - 1) * (1 - D * c * SP + D * c * x) ** ((c - 1) / c)
        b4 = D * (1 + D * c * (HP - SP)) ** (-1 / c) * q
        return (qwp - q0 - D * HP * (1 + D * c * (HP - SP)) ** (-1 / c)) * q + b4 * x
    if B == 0:
        qlp = math.exp(-D * (SP - LP))
        q0 = qlp - D * LP * math.exp(-D * (SP - LP))
        qwp = 2 - math.exp(-D * (HP - SP))
        q1 = qwp + D * (1 - HP) * math.exp(-D * (HP - SP))
        q = 1 / (q1 - q0)
        if x < LP:
            return D * math.exp(-D * (SP - LP)) * q * x
        if x < SP:
            return -q0 * q + q * math.exp(-D * SP + D * x)
        if x < HP:
            return (2 - q0) * q - q * math.exp(D * SP - D * x)
        b4 = D * math.exp(-D * (HP - SP)) * q
        return (qwp - q0 - D * HP * math.exp(-D * (HP - SP))) * q + b4 * x
    qlp = (1 + D * B * (SP - LP)) ** (-1 / B)
    q0 = qlp - D * LP * (1 + D * B * (SP - LP)) ** (-(1 + B) / B)
    qwp = 2 - (1 + D * B * (HP - SP)) ** (-1 / B)
    q1 = qwp + D * (1 - HP) * (1 + D * B * (HP - SP)) ** (-(1 + B) / B)
    q = 1 / (q1 - q0)
    if x < LP:
        return D * (1 + D * B * (SP - LP)) ** (-(1 + B) / B) * q * x
    if x < SP:
        return -q0 * q + q * (1 + D * B * SP - D * B * x) ** (-1 / B)
    if x < HP:
        return (2 - q0) * q - q * (1 - D * B * SP + D * B * x) ** (-1 / B)
    b4 = D * (1 + D * B * (HP - SP)) ** (-(1 + B) / B) * q
    return (qwp - q0 - D * HP * (1 + D * B * (HP - SP)) ** (-(B + 1) / B)) * q + b4 * x


GHS_SETS = [
    dict(D=2.0, b=0.0, SP=0.1, LP=0.02, HP=0.9),
    dict(D=3.0, b=5.0, SP=0.05, LP=0.01, HP=0.95),
    dict(D=1.5, b=-3.0, SP=0.2, LP=0.1, HP=0.8),
    dict(D=4.0, b=-1.0, SP=0.1, LP=0.0, HP=0.9),
    dict(D=2.5, b=1.0, SP=0.0, LP=0.0, HP=1.0),
    dict(D=6.0, b=12.0, SP=0.3, LP=0.25, HP=0.6),
]


@pytest.mark.parametrize("p", GHS_SETS, ids=lambda p: f"D{p['D']}-b{p['b']}")
def test_ghs_matches_sirils_formulas(p):
    from napari_astro.core.stretch import ghs_curve

    x = np.concatenate([np.linspace(0, 1, 2001), [p["LP"], p["SP"], p["HP"]]])
    ours = ghs_curve(x, **p).astype(np.float64)
    ref = np.array([_siril_ghs(v, p["D"], p["b"], p["SP"], p["LP"], p["HP"]) for v in x])
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    dense = ghs_curve(np.linspace(0, 1, 100_001), **p)
    assert np.all(np.diff(dense.astype(np.float64)) >= -1e-7)  # float32 rounding only
    assert float(ghs_curve(np.array([0.0]), **p)[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(ghs_curve(np.array([1.0]), **p)[0]) == pytest.approx(1.0, abs=1e-6)


def test_ghs_step_default_and_colour_models(colour):
    img, truth = colour
    res = run_step("post.ghs", img)  # defaults: SP = the luminance median
    assert res.extras["SP"] == pytest.approx(float(np.median(img.luminance())), abs=1e-4)
    bg = _background(truth)
    assert np.median(res.image.data[1][bg]) > 2 * np.median(img.data[1][bg])  # stretched
    human = run_step("post.ghs", img, {"colour": "human", "D": 3, "SP": 0.04}).image.data
    x = img.data.astype(np.float64)
    ok = np.all(x > 0.01, axis=0) & (human.max(axis=0) < 0.999)
    # Luminance model: where nothing needed the blend, one factor for all channels.
    r_in, r_out = x[0][ok] / x[1][ok], human[0][ok] / human[1][ok]
    assert np.median(np.abs(r_out / r_in - 1)) < 0.01
    with pytest.raises(Exception, match="LP"):
        run_step("post.ghs", img, {"SP": 0.1, "LP": 0.2})


# --------------------------------------------------------------------------- CLI
def test_cli_stretch_default_is_stf_and_bad_input(tmp_path, colour, capsys):
    from napari_astro.cli import main
    from napari_astro.core.io import read_image, write_image

    src = tmp_path / "in.fits"
    write_image(colour[0], src)
    before = src.read_bytes()
    out = tmp_path / "out.fits"
    assert main(["stretch", str(src), str(out)]) == 0
    res = read_image(out)
    assert any(h.startswith("post.stf ") for h in res.history)
    np.testing.assert_allclose(res.data, run_step("post.stf", colour[0]).image.data, atol=1e-6)
    assert main(["stretch", str(src), str(tmp_path / "g.fits"), "--method", "ghs", "--D", "3",
                 "--b", "2", "--SP", "0.05"]) == 0
    assert src.read_bytes() == before
    capsys.readouterr()
    for argv, needle in [
        (["--method", "ghs", "--SP", "0.1", "--LP", "0.3"], "post.ghs.LP"),
        (["--method", "arcsinh", "--D", "3"], "--D"),
        (["--method", "ht", "--midtones", "1.5"], "post.ht.midtones"),
        (["--target-background", "2"], "target_background"),
    ]:
        bad = tmp_path / "bad.fits"
        assert main(["stretch", str(src), str(bad), *argv]) == 2
        assert needle in capsys.readouterr().err
        assert not bad.exists()
    with pytest.raises(SystemExit) as e:
        main(["stretch", str(src), str(tmp_path / "x.fits"), "--method", "nope"])
    assert e.value.code == 2


# --------------------------------------------------------------------------- widgets
WAIT_MS = 30_000


def _rgb_layer(viewer, img, name="sky"):
    from napari_astro.widgets._layers import image_to_layer_data

    data, kw, _ = image_to_layer_data(img, name)  # as the reader shows it
    return viewer.add_image(data, **kw)


def layer_to_image(layer):
    from napari_astro.widgets._layers import layer_to_image as convert

    return convert(layer)


def test_autostretch_widget_display_and_apply(make_napari_viewer, qtbot, colour):
    from napari_astro.core.stretch import display_stretch
    from napari_astro.widgets.stretch import AutoStretchWidget

    viewer = make_napari_viewer()
    img = colour[0]
    layer = _rgb_layer(viewer, img)
    w = AutoStretchWidget(viewer)
    w.image_picker.value = layer
    w.display_stretch()
    assert np.array_equal(np.asarray(layer.data), np.moveaxis(img.data, 0, -1))  # linear shown
    lo, hi, gamma = display_stretch(img.data, linked=True)[0]
    assert tuple(layer.contrast_limits) == pytest.approx((lo, hi), abs=1e-6)
    assert layer.gamma == pytest.approx(gamma, abs=1e-6) and gamma < 1
    assert np.array_equal(layer_to_image(layer).data, img.data)  # display only
    # Back it off: a lower target background gives a gentler gamma, live.
    w.target_spin.setValue(0.15)
    assert layer.gamma > gamma
    assert w.plot.counts and len(w.plot.counts) == 3  # the histogram is drawn
    # Apply permanently through the HT with the STF values (per channel).
    w.linked_box.setChecked(False)
    w.target_spin.setValue(0.25)
    w.use_stf_values()
    p = w.params()
    assert len(p.shadows) == 3 and w.plot.curves
    n = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT_MS)
    assert w.last_error is None, w.last_error
    assert len(viewer.layers) == n + 1
    new = viewer.layers[-1]
    stretched = layer_to_image(new).data  # the linear data behind any display copy
    expected = run_step("post.stf", img).image.data
    np.testing.assert_allclose(stretched, expected, atol=2e-4)  # the form rounds to 1e-6
    assert np.array_equal(layer_to_image(layer).data, img.data)


@pytest.mark.parametrize("which", ["arcsinh", "ghs"])
def test_arcsinh_and_ghs_widgets_add_stretched_layer(make_napari_viewer, qtbot, colour, which):
    from napari_astro.widgets.stretch import ArcsinhWidget, GHSWidget

    viewer = make_napari_viewer()
    img = colour[0]
    layer = _rgb_layer(viewer, img)
    cls = ArcsinhWidget if which == "arcsinh" else GHSWidget
    w = cls(viewer)
    w.image_picker.value = layer
    if which == "ghs":
        w.refresh_plot()
        assert "GHS" in w.plot.curves
    n = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT_MS)
    assert w.last_error is None, w.last_error
    assert len(viewer.layers) == n + 1
    got = layer_to_image(viewer.layers[-1]).data
    expected = run_step(f"post.{which}", img).image.data
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_stretch_widgets_dock_from_the_plugin(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("Auto-stretch / histogram", "Arcsinh stretch", "Generalised hyperbolic stretch"):
        _, widget = viewer.window.add_plugin_dock_widget("napari-astro", name)
        assert widget.run_button.isEnabled() and widget.viewer.layers is not None
