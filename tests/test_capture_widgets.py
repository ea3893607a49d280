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
