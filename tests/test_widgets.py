"""The napari widgets: the shared pattern and the four pre-processing docks.

Each widget test builds the widget on a ``make_napari_viewer`` viewer, sets its
inputs the way a user would, clicks Run, *waits for the worker* and checks the
result layers against known truth (the simulator's sky and transforms).
Run under a display: ``xvfb-run -a python -m pytest tests/test_widgets.py``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal, Optional

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_astro.core.image import AstroImage  # noqa: E402
from napari_astro.core.progress import report  # noqa: E402
from napari_astro.pipeline import steps as _steps  # noqa: E402,F401 - registers the pre.* steps
from napari_astro.pipeline.params import StepParams, all_steps  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]

WAIT_MS = 120_000


# --------------------------------------------------------------------------- helpers
def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _blocks(a: np.ndarray, n: int = 5) -> np.ndarray:
    """Means of n x n blocks inside a 10 px border (averages the noise of one frame)."""
    a = np.asarray(a, np.float64)[10:-10, 10:-10]
    h, w = a.shape[0] // n * n, a.shape[1] // n * n
    return a[:h, :w].reshape(h // n, n, w // n, n).mean(axis=(1, 3))


def _wait(qtbot, widget, timeout: int = WAIT_MS) -> None:
    """Wait for the widget's worker to finish, then fail on its error (if any)."""
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    if widget.last_error is not None:
        raise widget.last_error


def _linear(layer) -> np.ndarray:
    """The linear image behind a layer (colour: channel-first; the layer itself may
    show a per-channel display stretch)."""
    from napari_astro.widgets._layers import layer_to_image

    return layer_to_image(layer).data


def _run(qtbot, widget, timeout: int = WAIT_MS):
    worker = widget.run()
    assert worker is not None, widget.status.text()
    _wait(qtbot, widget, timeout)
    return widget.last_result


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A small simulated colour night (300x200, 4 lights, 3 of each calibration type)."""
    sim = pytest.importorskip("napari_astro.core.simulate")
    root = tmp_path_factory.mktemp("night")
    return sim.simulate_night(root, sim.NightParams(width=300, height=200, n_lights=4, n_darks=3,
                                                    n_flats=3, n_biases=3, seed=3))


# --------------------------------------------------------------------------- the pattern
@dataclasses.dataclass(frozen=True)
class ToyParams(StepParams):
    STEP_ID = "test.toy"
    gain: float = 2.0
    steps: int = 6
    delay: float = 0.02
    mode: Literal["a", "b"] = "a"
    note: Optional[str] = None
    box: tuple = (1, 2)
    rejection: str = dataclasses.field(default="winsorized",
                                       metadata={"choices": ("none", "winsorized")})


def toy_step(image, params, *, progress=None, cancel=None):
    """A library-style step: reports progress per iteration, honours cancel."""
    for i in range(params.steps):
        report(progress, i, params.steps, f"step {i}", cancel)
        time.sleep(params.delay)
    report(progress, params.steps, params.steps, "done", cancel)
    return image.derive(image.data * np.float32(params.gain), params.STEP_ID, params.to_dict())


def _toy_widget_class():
    from napari_astro.widgets._base import ImageStepWidget

    class ToyWidget(ImageStepWidget):
        params_class = ToyParams
        function = toy_step

    return ToyWidget


def _add_image(viewer, img, name):
    from napari.layers import Layer

    from napari_astro.widgets._layers import image_to_layer_data

    return viewer.add_layer(Layer.create(*image_to_layer_data(img, name)))


@pytest.mark.parametrize("cls", sorted(all_steps().values(), key=lambda c: c.STEP_ID),
                         ids=lambda c: c.STEP_ID)
def test_params_form_round_trips_every_step(qtbot, cls):
    """Fields are generated from every registered step dataclass; defaults survive."""
    from napari_astro.widgets._base import ParamsForm

    form = ParamsForm(cls)
    assert form.value() == cls()
    names = [w.name for w in form.container]
    assert names == [f.name for f in dataclasses.fields(cls)]


def test_params_form_widgets_and_parsing(qtbot):
    from napari_astro.core.errors import BadInputError
    from napari_astro.widgets._base import ParamsForm

    form = ParamsForm(ToyParams)
    assert form["mode"].choices == ("a", "b")
    assert form["rejection"].choices == ("none", "winsorized")
    form["gain"].value = 0.5
    form["note"].value = "flat 2"
    form["box"].value = "3, 4.5"
    form["mode"].value = "b"
    assert form.value() == ToyParams(gain=0.5, note="flat 2", box=(3, 4.5), mode="b")
    form["note"].value = ""
    assert form.value().note is None  # blank Optional = None
    form.set_value(ToyParams(gain=7.0, box=(9,)))
    assert form.value() == ToyParams(gain=7.0, box=(9,))
    # Optional numbers: an "auto" box + a spin box (auto = None), never free text.
    fform = ParamsForm(all_steps()["pre.integrate"])
    assert fform["low"].auto and fform.value().low is None
    fform["low"].value = 2.5
    assert not fform["low"].auto and fform.value().low == 2.5
    fform["low"].value = None
    assert fform.value().low is None
    # Text the dataclass cannot take is a BadInputError naming the field.
    form["mode"].value = "a"
    form["gain"].value = 1.0
    with pytest.raises(BadInputError, match="note"):
        form.value(note=5)


def test_image_step_runs_in_a_worker_with_progress(make_napari_viewer, qtbot):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    img = AstroImage(np.random.default_rng(0).random((3, 40, 50), dtype=np.float32))
    img.add_history("pre.integrate", {})
    _add_image(viewer, img, "stack")
    widget = _toy_widget_class()(viewer)
    widget.form["gain"].value = 3.0
    seen, ticks = [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    worker = widget.run()
    worker.yielded.connect(lambda item: item and seen.append(item))
    # The napari activity-dock progress bar exists while the worker runs.
    pbar = worker.pbar
    _wait(qtbot, widget)
    timer.stop()
    out = viewer.layers["stack [test.toy]"]
    # The layer shows a per-channel display stretch; the linear result is behind it.
    from napari_astro.widgets._layers import layer_to_image

    np.testing.assert_allclose(layer_to_image(out).data, img.data * 3.0, rtol=1e-6)
    assert out.metadata["astro"]["display"]["mode"] == "unlinked"
    hist = out.metadata["astro"]["history"]
    assert hist[0].startswith("pre.integrate") and hist[-1].startswith("test.toy")
    assert '"gain": 3.0' in hist[-1]
    assert seen and seen[-1][:2] == (6.0, 6.0)
    assert pbar.total == 1000 and pbar.n == 1000
    assert widget.progress_bar.value() == 1000
    assert "done" in widget.status.text()
    # The GUI thread kept running while the step worked (~120 ms of sleeps).
    assert len(ticks) >= 3
    # A re-run refreshes the same layer instead of adding another.
    widget.form["gain"].value = 1.0
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("stack [test.toy]") == 1
    np.testing.assert_allclose(_linear(viewer.layers["stack [test.toy]"]), img.data, rtol=1e-6)


def test_cancel_stops_the_job_and_adds_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _add_image(viewer, AstroImage(np.ones((30, 30), np.float32)), "frame")
    widget = _toy_widget_class()(viewer)
    widget.form["steps"].value = 400
    widget.form["delay"].value = 0.01
    t0 = time.monotonic()
    widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() > 0, timeout=10_000)
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert time.monotonic() - t0 < 3.0  # 400 x 10 ms would take 4 s
    from napari_astro.core.progress import Cancelled

    assert isinstance(widget.last_error, Cancelled)
    assert widget.status.text() == "cancelled"
    assert "frame [test.toy]" not in viewer.layers
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_input_is_reported_not_raised(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _toy_widget_class()(viewer)  # no layer to pick
    assert widget.run() is None
    assert "pick an image layer" in widget.status.text()


def test_layer_picker_follows_the_layer_list(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _toy_widget_class()(viewer)
    assert widget.image_picker.value is None
    layer = _add_image(viewer, AstroImage(np.zeros((10, 10), np.float32)), "a")
    assert widget.image_picker.value is layer
    viewer.layers.remove(layer)
    assert widget.image_picker.value is None


def test_stack_layer_round_trip_and_exclusion():
    """Stack layers carry per-frame provenance; excluded frames are left out."""
    from napari.layers import Layer

    from napari_astro.widgets._layers import (images_to_stack_layer_data, included_frame_stats,
                                              layer_to_images)

    rng = np.random.default_rng(5)
    frames = []
    for i in range(3):
        im = AstroImage(rng.random((3, 8, 9), dtype=np.float32), path=f"/x/f{i}.fits")
        im.add_history("pre.register", {"i": i})
        frames.append(im)
    data = images_to_stack_layer_data(frames, "registered")
    data[1]["metadata"]["astro"]["stats"] = [{"fwhm": 2.0 + i} for i in range(3)]
    data[1]["metadata"]["astro"]["reference"] = 2
    layer = Layer.create(*data)
    assert layer.rgb and layer.data.shape == (3, 8, 9, 3)
    back = layer_to_images(layer)
    assert [b.path for b in back] == [f.path for f in frames]
    for b, f in zip(back, frames):
        np.testing.assert_array_equal(b.data, f.data)
        assert b.history == f.history
    layer.metadata["astro"]["include"] = [True, False, True]
    back = layer_to_images(layer)
    assert [b.path for b in back] == ["/x/f0.fits", "/x/f2.fits"]
    stats, ref = included_frame_stats(layer)
    assert stats == [{"fwhm": 2.0}, {"fwhm": 4.0}] and ref == 1


# --------------------------------------------------------------------------- calibration
def test_calibration_widget(make_napari_viewer, qtbot, night):
    pytest.importorskip("napari_astro.pipeline.calibrate")
    from napari_astro.widgets.calibration import CalibrationWidget

    viewer = make_napari_viewer()
    widget = CalibrationWidget(viewer)
    widget.sources.add([night.root / "bias", night.root / "darks", night.root / "flats"], "auto")
    widget.sources.add([night.root / "lights"], "light")
    # The plan: groups and which master each light gets, from headers only.
    widget.scan()
    qtbot.waitUntil(lambda: widget.scan_button.isEnabled() and len(widget.frames) > 0,
                    timeout=WAIT_MS)
    assert len(widget.frames) == 4 + 3 + 3 + 3
    assert widget.plan_table.rowCount() == 4
    headers = [widget.plan_table.horizontalHeaderItem(c).text()
               for c in range(widget.plan_table.columnCount())]
    dark_col = headers.index("dark")
    assert all(widget.plan_table.item(r, dark_col).text().startswith("dark")
               for r in range(4))
    assert widget.groups_table.rowCount() >= 4  # light, dark, flat, bias groups
    run = _run(qtbot, widget)
    masters = [layer.name for layer in viewer.layers if layer.name.startswith("master ")]
    assert any("bias" in n for n in masters)
    assert any("dark" in n for n in masters)
    assert any("flat" in n for n in masters)
    preview = viewer.layers["calibrated preview"]
    assert preview.rgb and preview.data.shape == (200, 300, 3)  # debayered
    # The calibrated reference light is the simulated sky (up to scale and offset).
    cal = _linear(preview)
    for c in range(3):
        got, want = _blocks(cal[c]), _blocks(night.sky[c])
        print("calibration block corr", c, _corr(got, want))
        assert _corr(got, want) > 0.97
    assert run.preview.history and any("pre.calibrate" in h for h in run.preview.history)


def test_calibration_widget_accepts_layers(make_napari_viewer, qtbot, night):
    pytest.importorskip("napari_astro.pipeline.calibrate")
    from napari_astro.widgets.calibration import CalibrationWidget

    viewer = make_napari_viewer()
    for p in night.biases:
        viewer.open(str(p), plugin="napari-astro")
    widget = CalibrationWidget(viewer)
    widget.layers_picker.widget.value = list(viewer.layers)
    widget.sources.add_type.setCurrentText("bias")
    written = widget.add_picked_layers()
    assert len(written) == 3
    assert [t for t, _ in widget.sources.sources()] == ["bias"] * 3
    _run(qtbot, widget)
    (name,) = [layer.name for layer in viewer.layers if layer.name.startswith("master ")]
    master = np.asarray(viewer.layers[name].data)
    raw = np.mean([_linear(layer) for layer in viewer.layers  # the mosaics behind the previews
                   if not layer.name.startswith("master")], axis=0)
    assert master.shape == raw.shape
    # Three biases averaged (with rejection): close to their plain mean.
    assert float(np.median(np.abs(master - raw))) < 2e-4


# --------------------------------------------------------------------------- registration
def test_registration_widget(make_napari_viewer, qtbot, night):
    pytest.importorskip("napari_astro.pipeline.register")
    from napari_astro.widgets.registration import REGISTERED_LAYER, STARS_LAYER, RegistrationWidget

    viewer = make_napari_viewer()
    widget = RegistrationWidget(viewer)
    widget.files.set_paths([str(p) for p in night.lights])
    widget.form["reference"].value = str(night.lights[0])
    _run(qtbot, widget)
    result = widget.result
    assert widget.table.rowCount() == 4
    assert all(r["accepted"] for r in widget.quality)
    # Transforms recovered: each light's matrix maps like the simulator's.
    xy = np.array([[50.0, 40.0, 1.0], [250.0, 160.0, 1.0]]).T
    for i, t in enumerate(result.transforms):
        got = (t.matrix @ xy)[:2]
        want = (np.asarray(night.transforms[i]) @ xy)[:2]
        assert np.abs(got - want).max() < 0.3, (i, got, want)
    stack = viewer.layers[REGISTERED_LAYER]
    assert stack.rgb and stack.data.shape == (4, 200, 300, 3)
    stars = viewer.layers[STARS_LAYER]
    assert len(stars.data) >= 10
    # Detected stars sit on true stars of the reference (within 1 px).
    truth = np.column_stack([night.stars["y"], night.stars["x"]])
    d = np.sqrt(((stars.data[:, None, :] - truth[None]) ** 2).sum(-1)).min(1)
    assert np.median(d) < 1.0
    assert set(widget.plot.series) == {"FWHM", "stars", "background"}
    # Excluding a frame in the table drops it from what Integration will stack.
    from qtpy.QtCore import Qt

    from napari_astro.widgets._layers import layer_to_images

    col = [widget.table.horizontalHeaderItem(c).text()
           for c in range(widget.table.columnCount())].index("include")
    widget.table.item(2, col).setCheckState(Qt.CheckState.Unchecked)
    excluded = widget.table.item(2, col).data(Qt.ItemDataRole.UserRole + 1)
    assert widget.included().count(False) == 1
    assert stack.metadata["astro"]["include"][excluded] is False
    assert len(layer_to_images(stack)) == 3
    assert widget.plot.excluded == {excluded}


# --------------------------------------------------------------------------- integration
def test_integration_widget(make_napari_viewer, qtbot, night):
    pytest.importorskip("napari_astro.pipeline.integrate")
    from napari.layers import Layer

    from napari_astro.widgets._layers import images_to_stack_layer_data
    from napari_astro.widgets.integration import IntegrationWidget

    # Registered frames with known truth: the sky + independent noise (+ one hot streak).
    rng = np.random.default_rng(7)
    sky = night.sky.astype(np.float32)
    frames = []
    sigma = 0.01
    for i in range(6):
        data = sky + rng.normal(0, sigma, sky.shape).astype(np.float32)
        if i == 2:
            data[:, 100, :] = 1.0  # a satellite trail
        frames.append(AstroImage(np.clip(data, 0, 1), path=f"r_{i}.fits"))
    viewer = make_napari_viewer()
    layer = viewer.add_layer(Layer.create(*images_to_stack_layer_data(frames, "registered")))
    widget = IntegrationWidget(viewer)
    widget.layers_picker.widget.value = [layer]
    widget.form["weighting"].value = "none"
    t0 = time.monotonic()
    _run(qtbot, widget)
    print("integration widget run", time.monotonic() - t0)
    out = viewer.layers["integration"]
    assert out.rgb and out.data.shape == (200, 300, 3)
    stacked = _linear(out)
    resid = stacked - sky
    # Noise down by ~sqrt(6) (Winsorized rejection costs a little), trail rejected.
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    assert noise < 1.25 * sigma / np.sqrt(6)
    assert np.abs(resid[:, 100, :]).max() < 8 * sigma / np.sqrt(5)
    high = viewer.layers["rejection high"]
    assert high.data.shape == (200, 300)
    assert float(high.data[100].mean()) > 0.1  # the trail row is where rejection happened
    assert float(np.median(high.data)) < 0.05
    assert widget.table.rowCount() == 6
    # Excluding frames in the layer (as the Registration widget does) integrates fewer.
    layer.metadata["astro"]["include"] = [True, True, False, True, True, True]
    _run(qtbot, widget)
    assert widget.table.rowCount() == 5
    assert "NCOMBINE" in viewer.layers["integration"].metadata["astro"]["header"]
    assert viewer.layers["integration"].metadata["astro"]["header"]["NCOMBINE"] == 5


# --------------------------------------------------------------------------- stack
def test_stack_widget(make_napari_viewer, qtbot, night, tmp_path):
    pytest.importorskip("napari_astro.pipeline.stack")
    from napari_astro.widgets.stack import StackWidget

    viewer = make_napari_viewer()
    widget = StackWidget(viewer)
    widget.inputs.set_paths([str(night.root / d) for d in ("bias", "darks", "flats", "lights")])
    widget.output.set_path(tmp_path / "stack.fits")
    widget.show_plan()
    qtbot.waitUntil(lambda: widget.plan is not None or (widget.plan_worker is None
                                                        and widget.last_error is not None),
                    timeout=WAIT_MS)
    if widget.last_error is not None:
        raise widget.last_error
    assert widget.plan_table.rowCount() == 4
    # The truth is in light 0's grid: make it the reference.
    widget.forms["register"]["reference"].value = str(night.lights[0])
    widget.run()
    _wait_or_skip_unbuilt(qtbot, widget)
    out = viewer.layers["stack"]
    assert out.rgb and out.data.shape == (200, 300, 3)
    stacked = _linear(out)
    for c in range(3):
        print("stack corr", c, _corr(_blocks(stacked[c]), _blocks(night.sky[c])))
        assert _corr(_blocks(stacked[c]), _blocks(night.sky[c])) > 0.98
    assert (tmp_path / "stack.fits").is_file()
    assert widget.quality_table.rowCount() == 4
    assert "rejection high" in viewer.layers and "rejection low" in viewer.layers


def _wait_or_skip_unbuilt(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    if isinstance(widget.last_error, NotImplementedError):
        pytest.skip("pipeline.stack.run_stack is not built yet")
    if widget.last_error is not None:
        raise widget.last_error


def test_stack_widget_cancel(make_napari_viewer, qtbot, night, tmp_path):
    pytest.importorskip("napari_astro.pipeline.stack")
    from napari_astro.widgets.stack import StackWidget

    viewer = make_napari_viewer()
    widget = StackWidget(viewer)
    widget.inputs.set_paths([str(night.root / d) for d in ("bias", "darks", "flats", "lights")])
    widget.output.set_path(tmp_path / "stack.fits")
    widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() > 0 or not widget.running,
                    timeout=WAIT_MS)
    t0 = time.monotonic()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    print("stack cancel took", time.monotonic() - t0, widget.last_error)
    if isinstance(widget.last_error, NotImplementedError):
        pytest.skip("pipeline.stack.run_stack is not built yet")
    from napari_astro.core.progress import Cancelled

    if widget.last_error is None:  # finished before the cancel arrived (tiny night)
        assert "stack" in viewer.layers
    else:
        assert isinstance(widget.last_error, Cancelled)
        assert "stack" not in viewer.layers
        assert not (tmp_path / "stack.fits").exists()


def test_docked_plugin_widget_runs_through_the_viewer_proxy(make_napari_viewer, qtbot):
    """Docked from the Plugins menu the widget gets napari's public-only viewer proxy:
    reading layers, running and adding results must work through it."""
    from napari.layers import Layer

    from napari_astro.widgets._layers import images_to_stack_layer_data

    rng = np.random.default_rng(11)
    base = rng.random((40, 50), dtype=np.float32) * 0.5
    frames = [AstroImage(base + rng.normal(0, 0.01, base.shape).astype(np.float32))
              for _ in range(5)]
    viewer = make_napari_viewer()
    layer = viewer.add_layer(Layer.create(*images_to_stack_layer_data(frames, "registered")))
    _, widget = viewer.window.add_plugin_dock_widget("napari-astro", "Integration")
    assert widget.viewer is not viewer  # a proxy
    widget.layers_picker.widget.value = [widget.layers_picker.widget.choices[0]]
    _run(qtbot, widget)
    out = _linear(viewer.layers["integration"])
    assert out.shape == base.shape
    assert np.abs(out - base).std() < 0.01 / np.sqrt(5) * 1.3
    assert layer in viewer.layers
