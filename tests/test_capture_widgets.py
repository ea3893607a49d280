"""Capture docks on the real INDI simulators: connect, expose, a live frame shown as a
layer (updated in place by the next one); the live-stack dock stacks a folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_astro.capture.testing import simulators_missing


@pytest.mark.skipif(simulators_missing() is not None, reason=str(simulators_missing()))
def test_equipment_dock_shows_a_live_frame(make_napari_viewer, qtbot):
    from napari_astro.widgets.capture import SESSION, EquipmentWidget

    viewer = make_napari_viewer()
    w = EquipmentWidget(viewer)
    try:
        w.start_simulators()
        status = w.connect_equipment()
        assert set(status.values()) == {"connected"} and len(status) == 6
        SESSION.equipment.camera.set_binning(2)
        w.expose(0.2)
        qtbot.waitUntil(lambda: w.frames_shown >= 1, timeout=60000)
        layer = viewer.layers[w.LAYER]
        assert layer.data.shape == (512, 640)
        first = layer.data.copy()
        w.expose(0.2)
        qtbot.waitUntil(lambda: w.frames_shown >= 2, timeout=60000)
        assert len([lay for lay in viewer.layers if lay.name == w.LAYER]) == 1   # in place
        assert viewer.layers[w.LAYER] is layer and not np.array_equal(layer.data, first)
        lo, hi = layer.contrast_limits
        assert lo < np.median(layer.data) < hi                   # auto-stretched display
    finally:
        w.shutdown()


def test_live_stack_dock_stacks_a_folder(make_napari_viewer, qtbot, shared_data, tmp_path):
    from napari_astro.widgets.capture import LiveStackWidget

    files = sorted((shared_data / "seestar_m94" / "session1").glob("*.fit"))[:3]
    viewer = make_napari_viewer()
    w = LiveStackWidget(viewer)
    folder = tmp_path / "in"
    folder.mkdir()
    w.start(folder, poll=0.2)
    try:
        for i, f in enumerate(files, 1):
            shutil.copy(f, folder / f.name)
            qtbot.waitUntil(lambda: w.table.rowCount() >= i, timeout=60000)
        assert w.updates == 3 and w.stack.n_accepted == 3
        layer = viewer.layers[w.LAYER]
        assert layer.rgb and layer.data.shape == (1920, 1080, 3)
        assert layer.metadata["frames"] == 3
    finally:
        w.stop()


# -- the docks on one simulator rig ---------------------------------------------------------
@pytest.fixture(scope="module")
def rig():
    from napari_astro.capture.testing import simulator_rig

    if simulators_missing() is not None:
        pytest.skip(str(simulators_missing()))
    with simulator_rig() as (server, client):
        yield server, client


@pytest.fixture
def equipment(rig, make_napari_viewer):
    """An Equipment dock connected to the rig's client (shared through SESSION)."""
    from napari_astro.widgets.capture import SESSION, EquipmentWidget

    server, client = rig
    viewer = make_napari_viewer()
    SESSION.client = client
    w = EquipmentWidget(viewer)
    w.server_edit.setText(f"localhost:{server.port}")
    w.connect_equipment()
    yield viewer, w
    w._polling.clear()
    SESSION.server = SESSION.client = SESSION.equipment = None   # the rig stops them


@pytest.mark.slow
def test_sequence_dock_builds_saves_loads_and_runs(equipment, qtbot, tmp_path):
    from astropy.io import fits

    from napari_astro.capture.sequence import LineParams, load_sequence
    from napari_astro.widgets.capture import SequenceWidget

    viewer, _ = equipment
    w = SequenceWidget(viewer)
    # build it in the dock: lights 2 x 1 s dithered between them, a dark, a bias
    w.form["object"].value = "M45"
    w.form["dither_every"].value = 1
    w.form["dither_pixels"].value = 4.0
    w.form["settle"].value = 0.2
    w.form["wheel"].value = ""
    w.form["panel"].value = ""
    w.table.set_lines([])
    for line in (LineParams(type="light", exposure=1.0), LineParams(type="dark", exposure=1.0),
                 LineParams(type="bias")):
        w.table.add_line(line)
    w.table.cellWidget(0, 1).setValue(2)                     # the lights' count, edited
    seq = w.sequence()
    assert [(ln.type, ln.count, ln.exposure) for ln in seq.lines] == [
        ("light", 2, 1.0), ("dark", 1, 1.0), ("bias", 1, None)]
    w.save(tmp_path / "seq.toml")
    assert load_sequence(tmp_path / "seq.toml") == seq
    other = SequenceWidget(viewer)                            # loads into a fresh dock
    other.load(tmp_path / "seq.toml")
    assert other.sequence() == seq

    w.out_edit.setText(str(tmp_path / "night"))
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.result is not None, timeout=120000)
    assert not isinstance(w.result, Exception), w.result
    assert w.bar.value() == 1000 and w.frames_shown == 4
    assert [lay.name for lay in viewer.layers].count(w.LAYER) == 1      # updated in place
    layer = viewer.layers[w.LAYER]
    assert layer.metadata["path"] == str(w.result[-1])
    kinds = [fits.getheader(p)["IMAGETYP"] for p in w.result]
    assert kinds == ["Light Frame", "Light Frame", "Dark Frame", "Bias Frame"]
    assert all(p.is_file() and p.is_relative_to(tmp_path / "night") for p in w.result)


@pytest.mark.slow
def test_focus_and_guiding_dock_on_the_simulators(equipment, qtbot):
    import numpy as np

    from napari_astro.widgets.capture import SESSION
    from napari_astro.widgets.focusguide import FocusGuideWidget

    viewer, eq_dock = equipment
    eq = SESSION.equipment
    client = eq.client
    # ground truth: the simulator's own star FWHM against position (a parabola)
    xs = np.array([26000, 38000, 50000])
    fwhm = []
    for x in xs:
        eq.focuser.move_to(int(x))
        fwhm.append(client.number("Focuser Simulator", "FWHM")["SIM_FWHM"])
    k2, k1, _ = np.polyfit(xs, fwhm, 2)
    truth = -k1 / (2 * k2)
    # the Pleiades (bright stars), by name from the Equipment dock's mount controls
    eq_dock.target_edit.textEdited.emit("pleia")              # typed: the completer offers
    assert "Pleiades" in eq_dock._completer_model.stringList()
    assert eq_dock.look_up("Pleiades") is not None
    assert (eq_dock.ra_spin.value(), eq_dock.dec_spin.value()) == pytest.approx((56.87, 24.11),
                                                                               abs=0.01)
    from napari_astro.capture.night import target_altitude

    alt = target_altitude(eq.mount, 56.87, 24.11)
    before = eq.mount.coordinates()
    eq_dock.alt_limit.setValue(min(alt + 5.0, 89.0))          # above the target: refused
    eq_dock.slew().join(30)
    qtbot.waitUntil(lambda: "altitude limit" in eq_dock.status.text(), timeout=5000)
    assert eq.mount.coordinates() == pytest.approx(before, abs=0.01)   # it did not move
    eq_dock.alt_limit.setValue(alt - 5.0)                     # below it (any hour of the day)
    eq_dock.slew().join(120)
    qtbot.waitUntil(lambda: eq_dock.mount_state.get("tracking") is True, timeout=10000)
    assert "tracking" in eq_dock.mount_status.text()
    eq.camera.set_roi(320, 256, 640, 512)                    # half the sensor: faster frames

    w = FocusGuideWidget(viewer)
    # each point as it reaches the GUI (after the dock's own slot): plotted, run not over
    arrived = []
    w.bridge.focus_point.connect(lambda p, hfr: arrived.append(
        (p, len(w.focus_plot.series["measured"]["x"]), w.result is None, w.run_btn.isEnabled())))
    try:
        w.step.setValue(4000)
        w.points.setValue(5)
        w.focus_exposure.setValue(0.5)
        w.run_autofocus()
        qtbot.waitUntil(lambda: w.result is not None, timeout=120000)
        assert not isinstance(w.result, Exception), w.result
        assert len(arrived) >= 5
        assert [n for _, n, _, _ in arrived] == list(range(1, len(arrived) + 1))  # growing
        assert all(running and not enabled for _, _, running, enabled in arrived)
        assert sorted(p for p, *_ in arrived) == w.result.positions
        measured = w.focus_plot.series["measured"]
        assert len(measured["x"]) == len(arrived)
        curve = w.focus_plot.series["hyperbola"]
        assert len(curve["x"]) > 50
        assert np.allclose(curve["y"], w.result.curve(curve["x"]))
        (best,) = w.focus_plot.markers.values()
        assert abs(best - truth) <= 2000                     # within half an autofocus step
        assert eq.focuser.position() == int(best)

        # Cancel during a run: it stops before the next move, the focuser goes back
        start, arrived[:] = int(best), []
        w.step.setValue(6000)
        thread = w.run_autofocus()
        qtbot.waitUntil(lambda: len(arrived) >= 1, timeout=60000)
        assert w.cancel_button.isEnabled()
        w.cancel_button.click()
        qtbot.waitUntil(lambda: w.result is not None, timeout=60000)
        thread.join(10)
        from napari_astro.core.progress import Cancelled

        assert isinstance(w.result, Cancelled) and not thread.is_alive()
        assert 1 <= len(arrived) < 5 and "hyperbola" not in w.focus_plot.series
        assert eq.focuser.position() == start
        assert w.status.text().startswith(f"autofocus cancelled after {len(arrived)} positions")
        assert f"back at {start} steps" in w.status.text()
        assert w.run_btn.isEnabled() and not w.cancel_button.isEnabled()

        w.guide_exposure.setValue(0.5)
        w.start_guiding()
        qtbot.waitUntil(lambda: len(w._ra) >= 4, timeout=90000)
        assert len(w.guide_plot.series["RA"]["y"]) >= 4 and len(w.guide_plot.series["Dec"]["y"]) >= 4
        assert np.isfinite(w.rms) and w.rms < 2.0
        assert w.rms_label.text().startswith(f"RMS: {w.rms:.2f} px")
    finally:
        loop = w.loop
        w.shutdown()
    assert loop is not None and not loop.running
