"""The npe2 adapters in a real napari: reader, writers, sample data, menus, screenshot.

Run under a display: ``xvfb-run -a python -m pytest tests/test_napari_plugin.py``
(napari's canvas needs a GL context, which the offscreen Qt platform cannot make).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_astro._reader import napari_get_reader, read_layers  # noqa: E402
from napari_astro.core.errors import BadInputError  # noqa: E402
from napari_astro.core.image import AstroImage  # noqa: E402
from napari_astro.core.io import read_image, write_image  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

H, W = 120, 160


def _colour_image(seed: int = 0) -> AstroImage:
    """A linear colour frame: sky + a gradient + a few Gaussian stars, distinct channels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    sky = 0.05 + 0.02 * xx / W
    stars = np.zeros((H, W), np.float32)
    for x, y, f in rng.uniform((5, 5, 0.1), (W - 5, H - 5, 0.8), size=(25, 3)):
        stars += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2))
    data = np.stack([sky * 1.3 + stars, sky + stars, sky * 0.7 + 0.9 * stars])
    data += rng.normal(0, 0.003, data.shape).astype(np.float32)
    img = AstroImage(np.clip(data, 0, 1).astype(np.float32))
    img.header["OBJECT"] = "Test field"
    img.header["EXPTIME"] = 120.0
    img.add_history("pre.integrate", {"rejection": "winsorized"})
    return img


# --------------------------------------------------------------------------- reader
def test_get_reader_accepts_astro_files_only(tmp_path):
    assert napari_get_reader(str(tmp_path / "a.fits")) is read_layers
    assert napari_get_reader(str(tmp_path / "a.FIT")) is read_layers
    assert napari_get_reader([str(tmp_path / "a.fits"), str(tmp_path / "b.xisf")]) is read_layers
    assert napari_get_reader(str(tmp_path / "a.cr2")) is read_layers
    assert napari_get_reader(str(tmp_path / "a.png")) is None
    assert napari_get_reader([str(tmp_path / "a.fits"), str(tmp_path / "b.png")]) is None
    assert napari_get_reader(str(tmp_path)) is None  # folders are not ours
    # Never raises, whatever it is given.
    for weird in (None, 123, object(), [None], b"x.fits"):
        assert napari_get_reader(weird) is None


def test_reader_extensions_match_core_io():
    from napari_astro import _reader
    from napari_astro.core.io import FITS_EXTENSIONS, RAW_EXTENSIONS, XISF_EXTENSIONS

    import fnmatch

    import npe2

    mf = npe2.PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml")
    patterns = [p for r in mf.contributions.readers for p in r.filename_patterns]
    for ext in FITS_EXTENSIONS + XISF_EXTENSIONS + RAW_EXTENSIONS:
        assert ext in _reader._EXTENSIONS, ext
        # napari offers our reader for every file type core.io reads.
        assert any(fnmatch.fnmatch("night" + ext, p) for p in patterns), ext


def test_reader_names_a_bad_file(tmp_path):
    bad = tmp_path / "notes.fits"
    bad.write_text("this is not FITS")
    reader = napari_get_reader(str(bad))
    assert reader is not None
    with pytest.raises(BadInputError) as err:
        reader(str(bad))
    assert "notes.fits" in str(err.value)


def test_colour_fits_opens_as_one_rgb_layer(make_napari_viewer, tmp_path):
    img = _colour_image()
    path = write_image(img, tmp_path / "stack.fits")
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-astro")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.rgb and layer.data.shape == (H, W, 3)
    meta = layer.metadata["astro"]
    # The linear data are kept exactly (what steps and writers read)...
    from napari_astro.widgets._layers import layer_to_image

    np.testing.assert_array_equal(layer_to_image(layer).data, img.data)
    assert meta["header"]["OBJECT"] == "Test field"
    assert any(h.startswith("pre.integrate") for h in meta["history"])
    # ...and shown with one auto-stretch per channel: each channel's sky (median) is
    # between that channel's black and white points and shows as a dim grey.
    assert meta["display"]["mode"] == "unlinked"
    shown = np.asarray(layer.data)
    for c in range(3):
        lo, hi = meta["display"]["limits"][c]
        sky = float(np.median(img.data[c]))
        assert lo < sky < hi
        assert 0.1 < float(np.median(shown[..., c])) < 0.45
    assert tuple(layer.contrast_limits) == (0.0, 1.0)


def test_cfa_fits_opens_as_debayered_preview_with_the_mosaic_kept(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(1)
    mosaic = AstroImage(rng.uniform(0.1, 0.2, (H, W)).astype(np.float32), bayer="GRBG")
    mosaic.header["IMAGETYP"] = "Light Frame"
    path = write_image(mosaic, tmp_path / "light_001.fits")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-astro")
    assert layer.rgb and layer.data.shape == (H, W, 3)  # a colour preview
    meta = layer.metadata["astro"]
    assert meta["bayer"] == "GRBG" and meta["kind"] == "cfa-preview"
    assert "CFA GRBG" in layer.name
    np.testing.assert_array_equal(np.asarray(meta["mosaic"]), mosaic.data)
    from napari_astro.widgets._layers import layer_to_image

    back = layer_to_image(layer)  # a step or writer sees the file's mosaic
    assert back.bayer == "GRBG"
    np.testing.assert_array_equal(back.data, mosaic.data)
    # The mosaic itself on request.
    ((data, kw, _),) = read_layers(str(path), cfa="mosaic")
    assert not kw["rgb"] and np.array_equal(data, mosaic.data)


# --------------------------------------------------------------------------- writers
@pytest.mark.parametrize("ext", [".fits", ".xisf"])
def test_writer_round_trip_keeps_data_and_history(make_napari_viewer, tmp_path, ext):
    if ext == ".xisf":
        pytest.importorskip("napari_astro.core.io.xisf")
    img = _colour_image(2)
    src = write_image(img, tmp_path / "in.fits")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(src), plugin="napari-astro")
    out = tmp_path / f"out{ext}"
    viewer.layers.save(str(out), selected=False, plugin="napari-astro")
    back = read_image(out)
    np.testing.assert_array_equal(back.data, img.data)
    assert back.header["OBJECT"] == "Test field"
    assert any(h.startswith("pre.integrate") for h in back.history)


def test_writer_accepts_plain_napari_layers(tmp_path):
    """A uint8 RGB picture made in napari (no astro metadata) saves as [0,1] FITS."""
    from napari_astro._writer import write_fits_layer

    data = np.zeros((20, 30, 3), np.uint8)
    data[..., 0] = 255
    data[5, 7] = (0, 51, 102)
    (path,) = write_fits_layer(str(tmp_path / "pic.fits"), data, {"rgb": True, "name": "pic"})
    back = read_image(path)
    assert back.data.shape == (3, 20, 30)
    assert back.data[0, 0, 0] == 1.0 and back.data[1, 0, 0] == 0.0
    np.testing.assert_allclose(back.data[:, 5, 7], [0.0, 0.2, 0.4], atol=1e-6)


def test_tiff_writer(tmp_path):
    pytest.importorskip("napari_astro.core.io.export")
    import tifffile

    from napari_astro._writer import write_tiff_layer

    img = _colour_image(3)
    (path,) = write_tiff_layer(str(tmp_path / "out.tif"), np.moveaxis(img.data, 0, -1),
                               {"rgb": True, "name": "x"})
    arr = tifffile.imread(path)
    assert arr.dtype == np.uint16
    chan_last = arr if arr.shape[-1] == 3 else np.moveaxis(arr, 0, -1)
    np.testing.assert_allclose(chan_last / 65535.0, np.moveaxis(img.data, 0, -1), atol=1 / 65535)


# --------------------------------------------------------------------------- manifest/menus
def test_plugins_menu_lists_widgets_in_workflow_order(make_napari_viewer):
    import npe2

    mf = npe2.PluginManager.instance().get_manifest("napari-astro")
    names = [w.display_name for w in mf.contributions.widgets]
    # Capture first, then the pre-processing steps in order, then post-processing.
    pre = ["Calibration", "Registration", "Integration", "Stack a night"]
    idx = [names.index(n) for n in pre]
    assert idx == sorted(idx)
    capture = [n for n in ("Equipment", "Focus and guiding", "Capture sequence", "Live stack")
               if n in names]
    assert all(names.index(c) < idx[0] for c in capture)
    assert all(names.index(n) > idx[-1] for n in names if n not in pre and n not in capture)
    viewer = make_napari_viewer()
    menu = viewer.window.plugins_menu
    texts = []

    def walk(m):
        for action in m.actions():
            if action.menu() is not None:
                walk(action.menu())
            elif action.text():
                texts.append(action.text().replace("&&", "&"))

    walk(menu)
    ours = [t for t in texts if t in names]
    assert ours == names, texts


def test_each_widget_docks_from_the_plugin(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("Calibration", "Registration", "Integration", "Stack a night"):
        dock, widget = viewer.window.add_plugin_dock_widget("napari-astro", name)
        assert widget.run_button.isEnabled()
        # The viewer handed to the widget is a proxy of ours.
        assert widget.viewer.layers is not None


# --------------------------------------------------------------------------- sample data + screenshot
def _not_blank(shot: np.ndarray) -> None:
    rgb = shot[..., :3].astype(np.float32)
    assert rgb.std() > 5.0, f"screenshot is blank (std {rgb.std():.2f})"
    h, w = rgb.shape[:2]
    centre = rgb[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    assert centre.std() > 3.0, "centre of the screenshot is uniform"
    assert len(np.unique(centre.reshape(-1, 3), axis=0)) > 50


def test_sample_data_and_screenshot(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_astro._sample_data")
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("napari-astro", "simulated_stack")
    assert layers, "the sample returned no layers"
    for layer in layers:  # a linear colour stack: one RGB layer or R/G/B layers
        data = np.asarray(layer.data)
        assert data.dtype == np.float32 and data.shape[:2] == layers[0].data.shape[:2]
        assert 0.0 <= float(data.min()) and float(data.max()) <= 1.0
    viewer.window._qt_window.resize(900, 700)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    _not_blank(shot)
    from PIL import Image

    Image.fromarray(shot).save(tmp_path / "sample.png")


def test_open_fits_then_screenshot_is_not_blank(make_napari_viewer, tmp_path):
    path = write_image(_colour_image(4), tmp_path / "field.fits")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin="napari-astro")
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    _not_blank(shot)


def test_session_sample_is_raw_lights(make_napari_viewer):
    pytest.importorskip("napari_astro._sample_data")
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-astro", "simulated_session")
    assert layers
    for layer in layers:
        assert not layer.rgb  # raw mosaics/mono frames, not debayered
        assert float(np.std(np.asarray(layer.data[..., :50, :50]))) > 0
