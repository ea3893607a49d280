"""Background extraction against the simulator's truth: gradient gone (default
parameters, automatic samples), no dark halo around the nebula or bright stars,
division removing vignetting, bad input (all nebula, bad CSV), the CLI, and the
widget (samples placed, moved and deleted on the Points layer; the model follows)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astro.core.background import (extract_background, fit_model, read_samples_csv,
                                          sample_background, write_samples_csv)
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_post import _smooth_noise, block_residual_rms, simulate_linear


def _block_medians(d: np.ndarray, b: int = 32) -> np.ndarray:
    c, h, w = d.shape
    nby, nbx = h // b, w // b
    blocks = d[:, :nby * b, :nbx * b].reshape(c, nby, b, nbx, b).transpose(0, 1, 3, 2, 4)
    return np.median(blocks.reshape(c, nby, nbx, -1), axis=-1)


def _halo(model: np.ndarray, truth, *, model_is_background: bool = True):
    """Block medians (32 px) of how far the result's background lies BELOW the truth,
    offset removed, in % of the sky; and the masks of blocks in the nebula's
    outskirts and around bright stars."""
    d = _block_medians(model - truth.background)
    d = (d - d.mean(axis=(1, 2), keepdims=True)) / truth.sky_level * 100
    neb = _block_medians(truth.nebula).max(axis=0) / truth.sky_level
    ring = (neb > 0.0005) & (neb < 0.05)       # outskirts: 0.05 % .. 5 % of the sky
    stars = np.zeros(neb.shape, bool)
    st = truth.star_table
    for i in np.nonzero(st["peak"] > 0.3)[0]:
        by, bx = int(st["y"][i] // 32), int(st["x"][i] // 32)
        stars[max(by - 1, 0):by + 2, max(bx - 1, 0):bx + 2] = True
    return d, ring, stars


@pytest.mark.parametrize("seed, color", [(0, True), (1, False)])
def test_gradient_removed_with_defaults(seed, color):
    img, truth = simulate_linear(seed=seed, color=color)  # 9 % gradient + faint nebula
    before = block_residual_rms(truth.background, truth.background.mean(axis=(1, 2), keepdims=True))
    assert before / truth.sky_level > 0.015  # there is a real gradient to remove
    res = extract_background(img)
    model = res.model.data if color else res.model.data[None]
    # the large-scale residual of the result's background (the result minus the
    # truth's objects and noise is exactly truth.background - model + const)
    rms = block_residual_rms(model, truth.background)
    assert rms / truth.sky_level < 0.0010, f"{100 * rms / truth.sky_level:.3f} % of the sky"
    # the sky level is kept: result background = truth background at the model median
    out = res.image.data if color else res.image.data[None]
    left = out - truth.objects - (img.data if color else img.data[None]) + truth.signal
    lvl = np.median(left, axis=(1, 2))
    np.testing.assert_allclose(lvl, np.median(truth.background, axis=(1, 2)), rtol=0.02)
    # no dark halo: no block in the nebula's outskirts or around bright stars
    # significantly below the truth
    d, ring, stars = _halo(model, truth)
    assert ring.sum() > 20 and stars.sum() > 5
    assert d[:, ring].max() < 0.25 and d[:, stars].max() < 0.25
    assert d[:, ring].mean() < 0.1
    # the used samples avoid the nebula core
    table = res.samples
    core = truth.nebula.max(axis=0)[table.y.round().astype(int), table.x.round().astype(int)]
    assert not table.used[core > 0.05 * truth.sky_level].any()


def test_without_rejection_the_nebula_leaves_a_dark_halo(monkeypatch):
    # the halo test above is sensitive: with rejection off the nebula pulls the model up
    import napari_astro.core.background as bg

    monkeypatch.setattr(bg, "SCATTER_LIMIT", np.inf)
    img, truth = simulate_linear(seed=0)
    res = extract_background(img, tolerance=1e6)
    d, ring, _ = _halo(res.model.data, truth)
    assert d.max() > 0.5


def test_division_removes_vignetting():
    img, truth = simulate_linear(seed=1, vignetting=0.3, gradient=0.0)
    res = extract_background(img, mode="divide")
    norm = res.model.data / np.median(res.model.data, axis=(1, 2), keepdims=True)
    left = truth.background / norm  # the background the division leaves
    before = block_residual_rms(truth.background, 0 * left)
    after = block_residual_rms(left, 0 * left)
    assert before / truth.sky_level > 0.05
    assert after / truth.sky_level < 0.0010, f"{100 * after / truth.sky_level:.3f} %"


@pytest.mark.parametrize("model", ["poly2", "poly4"])
def test_polynomial_models(model):
    img, truth = simulate_linear((300, 400), seed=3, nebula=0.0, stars=80)
    res = extract_background(img, model=model)
    rms = block_residual_rms(res.model.data, truth.background) / truth.sky_level
    assert rms < (0.003 if model == "poly2" else 0.0012)


def test_user_points_and_model_follows():
    img, truth = simulate_linear((300, 400), seed=4, stars=60)
    t = sample_background(img, per_row=10)
    # a point on the nebula core is rejected; points on the sky are used
    ny, nx = np.unravel_index(np.argmax(truth.nebula[0]), truth.nebula[0].shape)
    pts = np.vstack([t.points, [[ny, nx]]])
    t2 = sample_background(img, pts, per_row=10)
    assert not t2.used[-1] and t2.reason[-1] in ("high", "structure")
    f1 = fit_model(t2, img.shape2d)
    assert f1.coarse.shape[0] == 3 and f1.coarse.shape[1:] == (f1.ys.size, f1.xs.size)
    full = f1.full()
    assert full.shape == (3, 300, 400)
    assert block_residual_rms(full, truth.background) / truth.sky_level < 0.002


def test_all_nebula_is_bad_input():
    rng = np.random.default_rng(0)
    h, w = 300, 400
    tex = sum(_smooth_noise((h, w), s, rng) * a for s, a in ((8, 0.03), (20, 0.05), (60, 0.05)))
    data = 0.1 + tex + rng.normal(0, 0.002, (h, w))
    img = AstroImage(data=np.stack([data, 0.8 * data, 0.9 * data]), path="nebula.fits")
    with pytest.raises(BadInputError, match="no background left") as exc:
        extract_background(img)
    assert exc.value.path == "nebula.fits"


def test_samples_csv_round_trip_and_bad_rows(tmp_path):
    img, _ = simulate_linear((200, 300), seed=5, stars=30)
    t = sample_background(img, per_row=6)
    p = tmp_path / "s.csv"
    write_samples_csv(t, p)
    head = p.read_text().splitlines()[0]
    assert head == "x,y,value_r,value_g,value_b,used"
    np.testing.assert_allclose(read_samples_csv(p), t.points, atol=1e-4)
    for text, problem in [("x,y\n1,2\n3,oops\n", "row 3"), ("a,b\n1,2\n", "no x and y"),
                          ("x,y\n1,2\n5\n", "row 3"), ("x,y\n", "no sample rows"),
                          ("x,y\n1,nan\n", "row 2")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(BadInputError, match=problem) as exc:
            read_samples_csv(bad)
        assert exc.value.path == str(bad)


# --------------------------------------------------------------------------- CLI
def _cli(args, cwd, capsys, monkeypatch):
    from napari_astro.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_background(tmp_path, capsys, monkeypatch):
    from napari_astro.core.io import read_image, write_image

    img, truth = simulate_linear((240, 320), seed=6, stars=60)
    write_image(img, tmp_path / "in.fits")
    before = (tmp_path / "in.fits").read_bytes()
    rc, out, err = _cli(["background", "in.fits", "out.fits", "--model-out", "model.fits",
                         "--per-row", "10", "--model", "poly3"], tmp_path, capsys, monkeypatch)
    assert rc == 0, err
    res, model = read_image(tmp_path / "out.fits"), read_image(tmp_path / "model.fits")
    assert res.data.shape == model.data.shape == (3, 240, 320)
    assert block_residual_rms(model.data, truth.background) / truth.sky_level < 0.002
    assert any(h.startswith("post.background ") and '"poly3"' in h for h in res.history)
    assert "samples used" in err
    # samples from a CSV
    (tmp_path / "s.csv").write_text("x,y\n" + "\n".join(f"{x},{y}" for y in (10, 60, 120, 180, 230)
                                                        for x in (10, 80, 160, 240, 310)))
    rc, out, err = _cli(["background", "in.fits", "out2.fits", "--samples", "s.csv",
                         "--model", "poly2"], tmp_path, capsys, monkeypatch)
    assert rc == 0, err
    assert "of 25 samples" in err
    assert (tmp_path / "in.fits").read_bytes() == before


@pytest.mark.parametrize("csv_text, problem", [("x,y\n10,10\n20,abc\n", "row 3"),
                                               ("x,y\n10,10\n9000,5\n", "outside")])
def test_cli_bad_samples_csv(tmp_path, capsys, monkeypatch, csv_text, problem):
    from napari_astro.core.io import write_image

    img, _ = simulate_linear((100, 120), seed=7, stars=10)
    write_image(img, tmp_path / "in.fits")
    (tmp_path / "s.csv").write_text(csv_text)
    rc, out, err = _cli(["background", "in.fits", "out.fits", "--samples", "s.csv",
                         "--model-out", "m.fits"], tmp_path, capsys, monkeypatch)
    assert rc == 2
    assert err.startswith("s.csv: ") and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.fits").exists() and not (tmp_path / "m.fits").exists()


def test_cli_all_nebula_exit_2(tmp_path, capsys, monkeypatch):
    from napari_astro.core.io import write_image

    rng = np.random.default_rng(1)
    tex = sum(_smooth_noise((200, 260), s, rng) * a for s, a in ((8, 0.03), (20, 0.05), (60, 0.05)))
    write_image(AstroImage(data=(0.1 + tex + rng.normal(0, 0.002, tex.shape))), tmp_path / "neb.fits")
    rc, out, err = _cli(["background", "neb.fits", "out.fits"], tmp_path, capsys, monkeypatch)
    assert rc == 2 and "no background left" in err and "neb.fits" in err
    assert not (tmp_path / "out.fits").exists()


# --------------------------------------------------------------------------- widget
@pytest.mark.gui
def test_widget_samples_place_move_delete(make_napari_viewer, qtbot):
    pytest.importorskip("pytestqt")
    from napari_astro.widgets._layers import image_to_layer_data
    from napari_astro.widgets.background import MODEL_NAME, SAMPLES_NAME, BackgroundWidget

    viewer = make_napari_viewer()
    img, truth = simulate_linear((240, 320), seed=8, stars=50)
    data, kw, _ = image_to_layer_data(img, "stack")
    viewer.add_image(data, **kw)
    w = BackgroundWidget(viewer)
    w.image_picker.value = viewer.layers["stack"]
    w.form["per_row"].value = 8

    def wait_fit(n):
        qtbot.waitUntil(lambda: w.fit_runs >= n and not w.fitting, timeout=60_000)
        assert w.fit_error is None, w.fit_error

    w.make_samples()  # grid: 8 x 6
    wait_fit(1)
    layer = viewer.layers[SAMPLES_NAME]
    n0 = len(layer.data)
    assert n0 == 48
    assert list(layer.features["used"]).count(True) >= 30
    model_layer = viewer.layers[f"stack {MODEL_NAME}"]
    m1 = np.array(model_layer.data, copy=True)
    table, fit = w.last_fit
    assert block_residual_rms(fit.full(), truth.background) / truth.sky_level < 0.003

    # place: one more sample (napari's add), the model is re-fitted with it
    runs = w.fit_runs
    layer.add(np.array([[120.0, 200.0]]))
    wait_fit(runs + 1)
    assert len(w.last_fit[0]) == n0 + 1
    # move: drag sample 0 to a patch of sky with a brighter gradient; the model follows
    runs = w.fit_runs
    pts = np.array(layer.data)
    pts[5] = [200.0, 40.0]
    layer.data = pts
    wait_fit(runs + 1)
    t = w.last_fit[0]
    assert np.allclose(t.points[5], [200.0, 40.0])
    # delete three samples: the model follows with n0 - 2
    runs = w.fit_runs
    layer.selected_data = {0, 1, 2}
    layer.remove_selected()
    wait_fit(runs + 1)
    assert len(w.last_fit[0]) == n0 - 2
    assert not np.array_equal(np.asarray(model_layer.data), m1)
    # the colours say which are used
    colors = np.asarray(layer.border_color)
    used = np.asarray(layer.features["used"], bool)
    assert np.allclose(colors[used][:, :3], [0.2, 0.9, 0.3]) and np.allclose(colors[~used][:, :3], [1, 0.25, 0.25])

    # Apply: full resolution with the layer's samples
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    assert w.last_error is None, w.last_error
    res = w.last_result
    assert res.extras["samples"]["x"].size == n0 - 2
    assert "stack [post.background]" in viewer.layers
    assert block_residual_rms(res.extras["model"].data, truth.background) / truth.sky_level < 0.003


def test_recipe_crop_then_background():
    from napari_astro.core.simulate_post import block_residual_rms as rms
    from napari_astro.pipeline.recipes import loads_recipe, run_recipe

    img, truth = simulate_linear((300, 400), seed=9, stars=60, frames=6, dither=10)
    entries = loads_recipe('[[step]]\nid = "post.crop"\n\n[[step]]\nid = "post.background"\n'
                           'per_row = 10\n')
    seen = {}
    res = run_recipe(img, entries, inputs=lambda e, im: {"coverage": truth.coverage},
                     on_step=lambda i, e, r: seen.setdefault(i, r))
    x0, y0, x1, y1 = seen[0].extras["box"]
    assert (truth.coverage[y0:y1, x0:x1] == 6).all()
    assert res.image.data.shape == (3, y1 - y0, x1 - x0)
    model = res.extras["model"].data
    bg = truth.background[:, y0:y1, x0:x1]
    assert rms(model, bg) / truth.sky_level < 0.002
    assert [h.split()[0] for h in res.image.history[-2:]] == ["post.crop", "post.background"]
