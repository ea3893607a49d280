"""The widget house: forms generated from the step registry, docks that fit a
1920x1080 screen, progress that never goes back, the reader napari uses, colour and
CFA display, and the generic live preview.

Run under a display: ``xvfb-run -a python -m pytest tests/test_widget_house.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_astro.core.image import AstroImage  # noqa: E402
from napari_astro.core.progress import report  # noqa: E402
from napari_astro.pipeline.params import StepParams, all_steps, field_info, param  # noqa: E402
from napari_astro.pipeline.registry import steps as registry_steps  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "src" / "napari_astro" / "napari.yaml"


def _all_param_classes() -> list[type]:
    classes = dict(all_steps())
    for step in registry_steps().values():
        classes.setdefault(step.params.STEP_ID, step.params)
    return [classes[k] for k in sorted(classes)]


# --------------------------------------------------------------------------- 1. forms
@pytest.mark.parametrize("cls", _all_param_classes(), ids=lambda c: c.STEP_ID)
def test_form_agrees_with_the_dataclass(qtbot, cls):
    """Every field: its control, default, choices, range, unit and tooltip come from
    the dataclass; the form's value is the dataclass's defaults."""
    from napari_astro.widgets._form import ParamsForm

    form = ParamsForm(cls)
    qtbot.addWidget(form.native)
    assert form.value() == cls()
    infos = field_info(cls)
    assert form.names() == [i.name for i in infos]
    for info in infos:
        ctl = form[info.name]
        if ctl.kind not in ("tuple", "text"):  # text is parsed by the dataclass
            assert ctl.value == info.default, info.name
        assert ctl.tooltip == info.describe()
        assert ctl.native.toolTip() == info.describe() or ctl.kind == "magicgui"
        assert ctl.label_widget.toolTip() == info.describe()
        if info.choices is not None:
            assert ctl.kind == "choice"
            assert [c for c in ctl.choices if c is not None] == [c for c in info.choices
                                                                  if c is not None]
            assert (None in ctl.choices) == info.optional
        elif info.base is bool:
            assert ctl.kind == "bool"
        elif info.base in (int, float):
            assert ctl.kind == ("int" if info.base is int else "float")
            spin = ctl.spin
            if info.min is not None:
                assert spin.minimum() == pytest.approx(info.min)
            if info.max is not None:
                assert spin.maximum() == pytest.approx(info.max)
            if info.step is not None:
                assert spin.singleStep() == pytest.approx(info.step)
            if info.unit:
                shown = spin.suffix() + ctl.label_widget.text()
                assert info.unit in shown, (info.name, info.unit)
            assert (ctl._auto is not None) == info.optional
        if info.advanced:
            assert form.advanced is not None
            assert form.advanced.body.isAncestorOf(ctl.native)


@dataclasses.dataclass(frozen=True)
class _FormToy(StepParams):
    STEP_ID = "test.formtoy"
    radius: float = param(2.5, min=0.5, max=20, unit="px", help="star radius")
    iterations: int = param(3, min=1, max=10, help="passes")
    sigma: float | None = param(None, min=0, max=10, unit="sigma", help="threshold")
    black: float = param(0.0005, min=0, max=0.2, unit="of full scale", help="black point")
    mode: Literal["fast", "exact"] = param("fast", help="algorithm")
    detail: float = param(0.25, min=0, max=1, advanced=True, help="detail kept")


def test_form_controls_behave(qtbot):
    from napari_astro.widgets._form import ParamsForm

    form = ParamsForm(_FormToy)
    qtbot.addWidget(form.native)
    assert form["radius"].spin.suffix() == " px"
    assert "(of full scale)" in form["black"].label_widget.text()  # long unit: label
    assert form["black"].spin.decimals() >= 4  # 0.0005 shown exactly
    assert form["sigma"].auto and form.value().sigma is None
    form["sigma"].value = 3.0
    assert form.value().sigma == 3.0
    # Spin boxes keep values inside the dataclass's range.
    form["iterations"].spin.setValue(99)
    assert form.value().iterations == 10
    assert not form.advanced.expanded and not form["detail"].native.isVisibleTo(form.native)
    seen = []
    form.connect(lambda: seen.append(1))
    form["mode"].value = "exact"
    assert seen and form.value().mode == "exact"
    form.set_value(_FormToy(radius=4.0))
    assert form.value() == _FormToy(radius=4.0)


# --------------------------------------------------------------------------- 2. docks at 1920x1080
def _manifest_widgets() -> list:
    import npe2

    mf = npe2.PluginManifest.from_file(MANIFEST)
    cmds = {c.id: c for c in mf.contributions.commands}
    out = []
    for w in mf.contributions.widgets:
        py = cmds[w.command].python_name
        module, _, attr = py.partition(":")
        marks = []
        try:
            mod = importlib.import_module(module)
            if not hasattr(mod, attr):
                marks = [pytest.mark.skip(reason=f"{py}: {attr} not defined yet")]
        except ModuleNotFoundError as exc:
            marks = [pytest.mark.skip(reason=f"{module} does not exist yet ({exc.name})")]
        except ImportError as exc:  # an optional dependency (INDI) missing
            marks = [pytest.mark.skip(reason=f"{module} does not import: {exc}")]
        out.append(pytest.param(w.display_name, id=w.display_name, marks=marks))
    return out


@pytest.mark.parametrize("name", _manifest_widgets())
def test_dock_widget_run_button_inside_1920x1080(make_napari_viewer, qtbot, name):
    """Docked in a 1920x1080 window with data loaded, the Run button is on screen
    whatever the length of the form."""
    from qtpy.QtCore import QPoint, QRect
    from qtpy.QtWidgets import QApplication

    from napari_astro._sample_data import sample_stack

    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1920, 1080)
    for data, kw, _ in sample_stack(200, 150):
        viewer.add_image(data, **kw)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-astro", name)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)
    assert win.width() <= 1920 and win.height() <= 1080
    button = widget.run_button
    assert button.isVisible(), name
    top_left = button.mapTo(win, QPoint(0, 0))
    rect = QRect(top_left, button.size())
    assert win.rect().contains(rect), (name, rect, win.rect())
    assert not button.visibleRegion().isEmpty(), f"{name}: Run is hidden"
    assert widget.progress_bar.isVisible() and widget.cancel_button.isVisible()
    # Long content scrolls instead of pushing Run off screen.
    assert widget.scroll.isAncestorOf(widget.body)
    assert not widget.scroll.isAncestorOf(button)


# --------------------------------------------------------------------------- progress
@dataclasses.dataclass(frozen=True)
class _Stages(StepParams):
    STEP_ID = "test.stages"
    n: int = param(5, min=1, max=50, help="reports per stage")


def _two_stages(image, params, *, progress=None, cancel=None):
    """A library call whose second stage restarts its count at 0."""
    for stage in range(2):
        for i in range(params.n + 1):
            report(progress, i, params.n, f"stage {stage}", cancel)
            time.sleep(0.03)
    return image


def test_progress_never_goes_backwards(make_napari_viewer, qtbot):
    from napari_astro.widgets._base import ImageStepWidget
    from napari_astro.widgets._layers import image_to_layer_data

    class W(ImageStepWidget):
        params_class = _Stages
        function = _two_stages

    viewer = make_napari_viewer()
    data, kw, _ = image_to_layer_data(AstroImage(np.ones((20, 20), np.float32)), "x")
    viewer.add_image(data, **kw)
    w = W(viewer)
    qtbot.addWidget(w)
    values: list[int] = []
    w.progress_bar.valueChanged.connect(values.append)
    worker = w.run()
    pbar_n: list[int] = []
    worker.yielded.connect(lambda _: pbar_n.append(worker.pbar.n))
    qtbot.waitUntil(lambda: not w.running, timeout=20_000)
    assert w.last_error is None
    assert values and values[-1] == 1000
    assert all(b >= a for a, b in zip(values, values[1:])), values
    assert all(b >= a for a, b in zip(pbar_n, pbar_n[1:])), pbar_n


# --------------------------------------------------------------------------- 3. quality table
def test_registration_quality_table_is_short_and_has_no_duplicates(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    from napari_astro.widgets.registration import RegistrationWidget

    viewer = make_napari_viewer()
    w = RegistrationWidget(viewer)
    qtbot.addWidget(w)
    keys = ["name", "path", "accepted", "reason", "n_stars", "fwhm", "fwhm_arcsec",
            "roundness", "background", "noise", "n_matches", "rms", "weight", "dx", "dy",
            "rotation", "scale", "snr", "eccentricity", "exposure", "temperature"]
    rows = []
    for i in range(4):
        r = {k: float(i + j) for j, k in enumerate(keys)}
        r.update(name=f"light_{i:03d}.fits", path=f"/data/light_{i:03d}.fits",
                 accepted=i != 2, reason="" if i != 2 else "FWHM 2.1 x median")
        rows.append(r)
    from napari_astro.widgets._tables import quality_rows

    w.quality = quality_rows(rows)
    w._fill()
    headers = [w.table.horizontalHeaderItem(c).text() for c in range(w.table.columnCount())]
    assert len(headers) <= 10, headers
    assert len(set(headers)) == len(headers), headers
    assert "frame" in headers and "name" not in headers
    for useful in ("fwhm", "n stars", "background", "rms"):
        assert useful in headers
    # Every other value is in the row's tooltip.
    tip = w.table.item(0, headers.index("frame")).toolTip()
    for hidden in ("eccentricity", "temperature", "snr"):
        assert hidden in tip
    # The include check box still drives the frame's inclusion.
    item = w.table.item(1, 0)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert w.included()[int(item.data(Qt.ItemDataRole.UserRole + 1))] is False


# --------------------------------------------------------------------------- 4. reader priority
def _colour_fits(path: Path, cast=(1.6, 1.0, 0.55)) -> AstroImage:
    from napari_astro.core.io import write_image

    rng = np.random.default_rng(5)
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stars = np.zeros((h, w), np.float32)
    for x, y, f in rng.uniform((5, 5, 0.05), (w - 5, h - 5, 0.6), size=(30, 3)):
        stars += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.4 ** 2))
    sky = np.float32(0.04)
    data = np.stack([c * sky + stars * c for c in cast]).astype(np.float32)
    data += rng.normal(0, 0.002, data.shape).astype(np.float32)
    img = AstroImage(np.clip(data, 0, 1).astype(np.float32))
    write_image(img, path)
    return img


@pytest.mark.parametrize("suffix", [".fit", ".fits", ".FIT"])
def test_open_without_naming_a_plugin_uses_napari_astro(make_napari_viewer, tmp_path, suffix):
    """napari's File > Open / drag-and-drop path (and ``viewer.open(path,
    plugin=None)``) picks napari-astro for FITS, with no reader dialog."""
    from napari.settings import get_settings

    from napari_astro._reader import prefer_napari_astro

    viewer = make_napari_viewer(show=True)  # napari's test viewer starts from fresh settings
    added = prefer_napari_astro()  # what loading any napari-astro module does
    assert f"*{suffix}" in added or f"*{suffix}" in get_settings().plugins.extension2reader
    path = tmp_path / f"m94{suffix}"
    _colour_fits(path)
    (layer,) = viewer.open(str(path), plugin=None)
    assert layer.source.reader_plugin == "napari-astro"
    assert layer.rgb and layer.data.dtype == np.float32
    # The GUI route (File > Open, a dropped file): no dialog, our reader.
    viewer.layers.clear()
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    assert len(viewer.layers) == 1 and viewer.layers[0].source.reader_plugin == "napari-astro"


def test_a_users_own_reader_choice_is_kept(make_napari_viewer, tmp_path):
    from napari.settings import get_settings

    from napari_astro._reader import prefer_napari_astro

    make_napari_viewer()
    settings = get_settings().plugins
    settings.extension2reader = {**settings.extension2reader, "*.fits": "napari"}
    prefer_napari_astro()
    assert settings.extension2reader["*.fits"] == "napari"
    assert settings.extension2reader["*.fit"] == "napari-astro"


# --------------------------------------------------------------------------- 5. colour display
_CACHE = Path(tempfile.gettempdir()) / "napari-astro-test-cache"


@pytest.fixture(scope="module")
def colour_stack(tmp_path_factory):
    """The real Seestar M94 stack (made once with the CLI, cached in the temp folder),
    else a simulated stack with a strong green cast."""
    from conftest import SHARED_DATA

    session = SHARED_DATA / "seestar_m94" / "session1"
    if session.is_dir():
        _CACHE.mkdir(exist_ok=True)
        out = _CACHE / "seestar_m94_session1.fits"
        if not out.exists():
            exe = Path(sys.executable).with_name("napari-astro")
            subprocess.run([str(exe), "stack", str(session), "-o", str(out),
                            "--work-dir", str(tmp_path_factory.mktemp("m94work"))],
                           check=True, capture_output=True, timeout=900)
        from napari_astro.core.io import read_image

        return "seestar", read_image(out)
    img = _colour_fits(tmp_path_factory.mktemp("cast") / "cast.fits", cast=(0.35, 1.0, 0.3))
    return "simulated", img


def test_colour_stack_shows_every_channels_sky(make_napari_viewer, colour_stack, tmp_path):
    """Unlinked display (default): each channel's sky median is between that channel's
    black and white points and shows as dim grey; linked keeps the cast."""
    from napari_astro.core.io import write_image
    from napari_astro.widgets._layers import layer_to_image, set_linked_display

    kind, img = colour_stack
    path = write_image(img, tmp_path / "stack.fits")
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(path), plugin="napari-astro")
    meta = layer.metadata["astro"]
    assert meta["display"]["mode"] == "unlinked"
    shown = np.asarray(layer.data)
    lo_cl, hi_cl = layer.contrast_limits
    skies = []
    for c in range(3):
        lo, hi = meta["display"]["limits"][c]
        sky = float(np.nanmedian(img.data[c]))
        assert lo < sky < hi, (kind, c, lo, sky, hi)
        disp_sky = float(np.median(shown[..., c]))
        assert lo_cl < disp_sky < hi_cl
        skies.append(disp_sky)
        assert 0.1 < disp_sky < 0.45, (kind, c, disp_sky)
    assert max(skies) - min(skies) < 0.08  # a neutral grey sky, not one colour
    np.testing.assert_array_equal(layer_to_image(layer).data, img.data)  # linear kept
    # Linked: one pair of limits on the linear data; a cast then shows.
    set_linked_display(layer, True)
    assert meta["display"]["mode"] == "linked"
    assert np.shares_memory(np.asarray(layer.data), meta["linear"])
    np.testing.assert_array_equal(layer_to_image(layer).data, img.data)
    set_linked_display(layer, False)
    assert meta["display"]["mode"] == "unlinked"
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].reshape(-1, 3).astype(float)
    assert rgb.std() > 5
    med = np.median(rgb, axis=0)
    assert med.max() - med.min() < 30, med  # the displayed sky is not one colour


# --------------------------------------------------------------------------- 6. CFA preview
def _checker(a: np.ndarray) -> float:
    """Amplitude of the (-1)^(x+y) component relative to the mean: the CFA moiré."""
    h, w = a.shape
    sign = np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0)
    a = np.asarray(a, np.float64)
    return abs(float(np.mean(sign * (a - a.mean())))) / float(a.mean())


def _raw_light(path: Path) -> AstroImage:
    from napari_astro.core.debayer import mosaic
    from napari_astro.core.io import write_image

    truth = np.asarray(_colour_fits(path.with_suffix(".truth.fits"),
                                    cast=(0.5, 1.0, 0.4)).data)
    raw = AstroImage(mosaic(truth, "GRBG").astype(np.float32), bayer="GRBG")
    raw.header["IMAGETYP"] = "Light"
    write_image(raw, path)
    return raw


def test_raw_cfa_frame_opens_as_colour_preview(make_napari_viewer, tmp_path):
    from napari_astro.widgets._layers import layer_to_image

    path = tmp_path / "Light_M94_10.0s_IRCUT_001.fit"
    raw = _raw_light(path)
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(path), plugin="napari-astro")
    assert layer.rgb and layer.metadata["astro"]["kind"] == "cfa-preview"
    shown = np.asarray(layer.data)
    lum = shown.mean(axis=-1)
    shown_mosaic = raw.data  # what the old reader showed
    assert _checker(shown_mosaic) > 0.1
    assert _checker(lum) < 0.1 * _checker(shown_mosaic), (_checker(lum), _checker(shown_mosaic))
    back = layer_to_image(layer)
    assert back.bayer == "GRBG" and np.array_equal(back.data, raw.data)


def test_real_seestar_frame_preview(make_napari_viewer, shared_data):
    files = sorted((shared_data / "seestar_m94" / "session1").glob("*.fit*"))
    if not files:
        pytest.skip("no Seestar M94 frames")
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(files[0]), plugin="napari-astro")
    assert layer.rgb and layer.metadata["astro"]["bayer"] == "GRBG"
    mosaic = np.asarray(layer.metadata["astro"]["mosaic"], np.float64)
    sub = (slice(200, 600), slice(200, 600))
    assert _checker(np.asarray(layer.data)[sub].mean(axis=-1)) < 0.2 * _checker(mosaic[sub])


# --------------------------------------------------------------------------- 7. live preview
@dataclasses.dataclass(frozen=True)
class _Gain(StepParams):
    STEP_ID = "test.gain"
    gain: float = param(2.0, min=0, max=10, help="factor")
    delay: float = param(0.0, min=0, max=5, unit="s", help="work time")


def _gain(image, params, *, progress=None, cancel=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < params.delay:
        report(progress, time.monotonic() - t0, params.delay, "working", cancel)
        time.sleep(0.01)
    return image.derive(image.data * np.float32(params.gain), params.STEP_ID, params.to_dict())


def _gain_widget(viewer):
    from napari_astro.widgets._base import ImageStepWidget

    class GainWidget(ImageStepWidget):
        params_class = _Gain
        function = _gain

    return GainWidget(viewer)


def test_live_preview_on_the_region_in_view(make_napari_viewer, qtbot):
    from napari_astro.widgets._base import PREVIEW_LAYER, PREVIEW_MAX
    from napari_astro.widgets._layers import image_to_layer_data, layer_to_image

    viewer = make_napari_viewer(show=True)
    rng = np.random.default_rng(0)
    img = AstroImage(rng.random((1200, 1500), dtype=np.float32) * 0.1 + 0.05)
    data, kw, _ = image_to_layer_data(img, "big")
    viewer.add_image(data, **kw)
    w = _gain_widget(viewer)
    qtbot.addWidget(w)
    viewer.reset_view()
    w.preview_box.setChecked(True)
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers, timeout=10_000)
    qtbot.waitUntil(lambda: not w.previewing, timeout=10_000)
    y0, x0, y1, x1 = w.preview_region
    assert 0 < y1 - y0 <= PREVIEW_MAX and 0 < x1 - x0 <= PREVIEW_MAX
    prev = viewer.layers[PREVIEW_LAYER]
    assert tuple(prev.translate) == (y0, x0)
    np.testing.assert_allclose(layer_to_image(prev).data, img.data[y0:y1, x0:x1] * 2.0,
                               rtol=1e-6)
    names = [layer.name for layer in w.image_picker.widget.choices]
    assert "big" in names and PREVIEW_LAYER not in names  # the preview is never an input
    # Zoomed in, the region is the part in view (centre and size follow the camera).
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    ch, cw = viewer.canvas.size
    runs = w.preview_runs
    cam.center = (0, 600, 700)[-len(cam.center):]
    cam.zoom = ch / 100.0
    qtbot.waitUntil(lambda: w.preview_runs > runs and not w.previewing, timeout=10_000)
    qtbot.wait(400)
    qtbot.waitUntil(lambda: not w.previewing, timeout=10_000)
    zy0, zx0, zy1, zx1 = w.preview_region
    assert abs((zy1 - zy0) - 100) <= 3 and abs((zx1 - zx0) - 100 * cw / ch) <= 3
    assert abs((zy0 + zy1) / 2 - 600) <= 2 and abs((zx0 + zx1) / 2 - 700) <= 2
    viewer.reset_view()
    qtbot.wait(400)
    qtbot.waitUntil(lambda: not w.previewing, timeout=10_000)
    y0, x0, y1, x1 = w.preview_region
    # A burst of edits runs one preview (debounced), with the last value.
    runs = w.preview_runs
    for g in (3.0, 4.0, 5.0):
        w.form["gain"].value = g
    qtbot.waitUntil(lambda: w.preview_runs > runs and not w.previewing, timeout=10_000)
    qtbot.wait(400)
    assert w.preview_runs == runs + 1
    np.testing.assert_allclose(layer_to_image(viewer.layers[PREVIEW_LAYER]).data,
                               img.data[y0:y1, x0:x1] * 5.0, rtol=1e-6)
    # A slow preview is cancelled by the next edit; only the newest is shown.
    w.form["delay"].value = 3.0
    qtbot.waitUntil(lambda: w.previewing, timeout=5_000)
    slow = w.preview_worker
    w.form["delay"].value = 0.0
    w.form["gain"].value = 7.0
    qtbot.waitUntil(lambda: slow.cancel_token.cancelled, timeout=5_000)
    qtbot.waitUntil(lambda: not w.previewing and w.preview_runs >= runs + 3, timeout=10_000)
    qtbot.wait(200)
    np.testing.assert_allclose(layer_to_image(viewer.layers[PREVIEW_LAYER]).data,
                               img.data[y0:y1, x0:x1] * 7.0, rtol=1e-6)
    # A Shapes rectangle picks the region; Apply removes the stale preview.
    shapes = viewer.add_shapes([[[100, 200], [100, 330], [180, 330], [180, 200]]],
                               shape_type="rectangle", name="roi")
    w.region_picker.value = shapes
    qtbot.waitUntil(lambda: w.preview_region == (100, 200, 180, 330) and not w.previewing,
                    timeout=10_000)
    qtbot.wait(100)
    assert viewer.layers[PREVIEW_LAYER].data.shape == (80, 130)
    w.preview_box.setChecked(False)
    assert PREVIEW_LAYER not in viewer.layers
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=10_000)
    assert w.last_error is None and "big [test.gain]" in viewer.layers


def test_step_widget_display_toggle_links_colour_channels(make_napari_viewer, qtbot, tmp_path):
    from napari_astro.widgets._layers import layer_to_image

    img = _colour_fits(tmp_path / "cast.fits", cast=(0.35, 1.0, 0.3))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "cast.fits"), plugin="napari-astro")
    w = _gain_widget(viewer)
    qtbot.addWidget(w)
    w.image_picker.value = layer
    assert w.link_box.isEnabled() and not w.link_box.isChecked()
    unlinked = np.median(np.asarray(layer.data), axis=(0, 1))
    w.link_box.setChecked(True)
    assert layer.metadata["astro"]["display"]["mode"] == "linked"
    # Linked, the green cast shows: red and blue sky well below green on screen.
    lo, hi = layer.contrast_limits
    shown = (np.median(np.asarray(layer.data), axis=(0, 1)) - lo) / (hi - lo)
    assert shown[1] > 2 * max(shown[0], shown[2])
    assert unlinked.max() - unlinked.min() < 0.08
    np.testing.assert_array_equal(layer_to_image(layer).data, img.data)
    w.link_box.setChecked(False)
    assert layer.metadata["astro"]["display"]["mode"] == "unlinked"


def test_colour_stack_layer_shows_a_lazy_unlinked_display():
    """Registered colour frames: a per-channel display computed frame by frame (no
    copy of the stack); the frames read back linear."""
    from napari_astro.widgets._layers import images_to_stack_layer_data, layer_to_images

    rng = np.random.default_rng(2)
    cast = np.array([0.3, 1.0, 0.4], np.float32)[:, None, None]
    frames = [AstroImage((0.05 + rng.normal(0, 0.003, (3, 40, 50))).astype(np.float32) * cast)
              for _ in range(3)]
    data, kw, _ = images_to_stack_layer_data(frames, "registered")
    astro = kw["metadata"]["astro"]
    assert type(data).__module__.startswith("dask")
    assert data.shape == (3, 40, 50, 3) and astro["display"]["mode"] == "unlinked"
    shown = np.asarray(data[1])
    sky = np.median(shown.reshape(-1, 3), axis=0)
    assert np.all((0.1 < sky) & (sky < 0.45)) and np.ptp(sky) < 0.08, sky

    class _Layer:  # the attributes layer_to_images reads
        name, rgb, multiscale = "registered", True, False

    layer = _Layer()
    layer.data, layer.metadata = data, kw["metadata"]
    back = layer_to_images(layer)
    assert len(back) == 3
    for b, f in zip(back, frames):
        np.testing.assert_array_equal(b.data, f.data)
