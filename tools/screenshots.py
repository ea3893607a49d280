"""Screenshots of every napari-astro dock widget, docked with data loaded.

Run under a 1920x1080 virtual screen::

    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python tools/screenshots.py [--out docs/widgets]

For each widget of ``napari.yaml`` whose module imports, the viewer (1920x1080) gets
data the widget works on -- the Seestar M94 frames of ``../shared/data`` where present
(the Calibration, Registration and Stack widgets list them as inputs; one raw frame
is opened as its debayered preview), and the simulated colour stack for the
post-processing widgets -- the widget is docked, and the whole window is saved as
``<out>/<widget>.png``. Widgets whose module does not exist yet are listed and skipped.

The capture docks are shot live on INDI's simulators (when installed): Equipment
connected with a frame from the camera at the Pleiades, Focus and guiding after an
autofocus run and a few guide frames (``--no-run``: docked empty).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _shrink(path):
    """Re-save as a 256-colour PNG: about half the size of Qt's RGB PNG (19 -> 8.6 MB
    for the 19 docks), still exact enough to read every label."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _widgets() -> list[tuple[str, str]]:
    import npe2

    mf = npe2.PluginManifest.from_file(ROOT / "src" / "napari_astro" / "napari.yaml")
    cmds = {c.id: c.python_name for c in mf.contributions.commands}
    return [(w.display_name, cmds[w.command]) for w in mf.contributions.widgets]


def _importable(python_name: str) -> str | None:
    module, _, attr = python_name.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return f"{module} does not import ({exc})"
    return None if hasattr(mod, attr) else f"{python_name} not defined"


def _settle(app, ms: int = 400) -> None:
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < ms / 1000:
        app.processEvents()
        time.sleep(0.02)


def _wait(app, done, timeout_s: float) -> None:
    import time

    t0 = time.monotonic()
    while not done() and time.monotonic() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.05)


CAPTURE = ("Equipment", "Focus and guiding", "Capture sequence", "Live stack")


def _capture_live(name, widget, viewer, app, state) -> None:
    """Connect the capture docks to a simulator rig (started once) and fill them."""
    import contextlib

    from napari_astro.capture.testing import simulator_rig, simulators_missing

    if simulators_missing() is not None:
        print(f"{name}: docked empty ({simulators_missing()})")
        return
    from napari_astro.widgets.capture import SESSION, EquipmentWidget

    if "rig" not in state:
        stack = state["stack"] = contextlib.ExitStack()
        server, client = state["rig"] = stack.enter_context(simulator_rig())
        SESSION.client = client
        eq = EquipmentWidget(viewer)
        eq.server_edit.setText(f"localhost:{server.port}")
        eq.connect_equipment()
        eq.look_up("Pleiades")
        eq.slew().join(300)
        eq.expose(1.0)                  # the "Camera frame" layer every capture dock shows
        _wait(app, lambda: eq.frames_shown >= 1, 120)
        state["equipment_dock"] = eq
    eq = state["equipment_dock"]
    if name == "Equipment":
        widget.server_edit.setText(eq.server_edit.text())
        widget.connect_equipment()
        widget.target_edit.setText("Pleiades")
        widget.look_up()
        widget.exposure.setValue(1.0)
        widget.expose()
        _wait(app, lambda: widget.frames_shown >= 1 and bool(widget.mount_state), 120)
        widget._polling.clear()
    elif name == "Focus and guiding":
        SESSION.equipment.camera.set_roi(320, 256, 640, 512)
        widget.step.setValue(4000)
        widget.points.setValue(7)
        widget.focus_exposure.setValue(0.5)
        widget.run_autofocus()
        _wait(app, lambda: widget.result is not None, 300)
        SESSION.equipment.camera.full_frame()
        SESSION.equipment.guider.set_binning(2)             # 1.1"/px, a usual guiding scale
        widget.guide_exposure.setValue(0.5)
        widget.start_guiding()
        _wait(app, lambda: len(widget._ra) >= 12, 300)
        widget.stop_guiding()
    elif name == "Capture sequence":
        widget.out_edit.setText("~/napari-astro-capture/M45")
    elif name == "Live stack":
        import shutil
        import tempfile

        frames = sorted((SHARED / "seestar_m94" / "session1").glob("*.fit*"))[:4]
        if frames:
            folder = Path(state["stack"].enter_context(tempfile.TemporaryDirectory()))
            for f in frames:
                shutil.copy(f, folder / f.name)
            widget.start(folder, poll=0.2)
            _wait(app, lambda: widget.table.rowCount() >= len(frames), 300)
            widget.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "widgets")
    ap.add_argument("--only", nargs="*", help="display names to shoot (default: all)")
    ap.add_argument("--no-run", dest="run", action="store_false",
                    help="do not run registration / the live previews before shooting")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_astro._reader import prefer_napari_astro
    from napari_astro._sample_data import sample_stack

    viewer = napari.Viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1920, 1080)
    app = QApplication.instance()
    prefer_napari_astro()
    seestar = sorted((SHARED / "seestar_m94" / "session1").glob("*.fit*"))
    for data, kw, _ in sample_stack():
        viewer.add_image(data, **kw)
    if seestar:
        viewer.open(str(seestar[0]), plugin=None)  # the reader napari picks: ours
    viewer.reset_view()
    seestar_layer = viewer.layers[-1].name if seestar else None
    made, skipped = [], []
    live: dict = {}
    for name, python_name in _widgets():
        if args.only and name not in args.only:
            continue
        problem = _importable(python_name)
        if problem:
            skipped.append((name, problem))
            continue
        try:
            dock, widget = viewer.window.add_plugin_dock_widget("napari-astro", name)
        except Exception as exc:  # noqa: BLE001 - report it, shoot the others
            skipped.append((name, f"does not dock: {type(exc).__name__}: {exc}"))
            continue
        inputs = getattr(widget, "inputs", None) or getattr(widget, "files", None)
        if seestar and hasattr(inputs, "set_paths"):
            inputs.set_paths([str(p.parent) if name == "Stack a night" else str(p)
                              for p in (seestar[:1] if name == "Stack a night" else seestar[:5])])
        sources = getattr(widget, "sources", None)
        if seestar and sources is not None and hasattr(sources, "add"):
            try:
                sources.add([str(p) for p in seestar[:5]], "light")
            except Exception:  # noqa: BLE001 - a screenshot, not a test
                pass
        picker = getattr(widget, "image_picker", None)
        if picker is not None:  # post-processing: only the stack, fitted to the view
            for layer in [lyr for lyr in viewer.layers if lyr.name != "simulated stack"]:
                viewer.layers.remove(layer)
        # Post-processing widgets work on the stack; pre-processing ones on raw frames.
        shown = "simulated stack" if picker is not None or not seestar else seestar_layer
        if shown not in viewer.layers:
            shown = "simulated stack"
        for layer in viewer.layers:
            layer.visible = layer.name == shown
        if picker is not None and "simulated stack" in viewer.layers:
            picker.value = viewer.layers["simulated stack"]
        if picker is not None and name == "Curves":
            # Curves work on a stretched image: give them the auto-stretched stack.
            try:
                from napari_astro.pipeline.registry import run_step
                from napari_astro.widgets._layers import (add_layers, image_to_layer_data,
                                                          layer_to_image)

                stretched = run_step("post.stf", layer_to_image(viewer.layers["simulated stack"]))
                image = getattr(stretched, "image", stretched)
                (lyr,) = add_layers(viewer, [image_to_layer_data(image, "stretched stack")])
                viewer.layers["simulated stack"].visible = False
                picker.value = lyr
            except Exception as exc:  # noqa: BLE001 - a screenshot, not a test
                print(f"Curves: no stretched input ({exc})")
        viewer.reset_view()
        _settle(app)
        if args.run and name == "Registration" and seestar:
            # The quality table and plots filled: register the first Seestar frames.
            widget.files.set_paths([str(p) for p in seestar[:4]])
            widget.run()
            _wait(app, lambda: not widget.running, 600)
            for layer in viewer.layers:
                layer.visible = layer.name in ("registered", "stars (reference)")
            viewer.reset_view()
        if args.run and name in CAPTURE:
            try:
                _capture_live(name, widget, viewer, app, live)
            except Exception as exc:  # noqa: BLE001 - a screenshot, not a test
                print(f"{name}: not filled ({type(exc).__name__}: {exc})")
            shown = next((n for n in ("Live stack", "Camera frame") if n in viewer.layers
                          and (n != "Live stack" or name == "Live stack")), "simulated stack")
            for layer in viewer.layers:
                layer.visible = layer.name == shown
            viewer.reset_view()
        box = getattr(widget, "preview_box", None)
        if args.run and box is not None and box.isVisible():
            box.setChecked(True)  # the live preview on the part in view
            _wait(app, lambda: "preview" in viewer.layers and not widget.previewing, 60)
        _settle(app)
        path = args.out / f"{_slug(name)}.png"
        win.grab().save(str(path))
        _shrink(path)
        made.append(path)
        if box is not None:
            box.setChecked(False)
        viewer.window.remove_dock_widget(dock)
        _settle(app, 100)
    for p in made:
        print("wrote", p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    for name, why in skipped:
        print(f"skipped {name}: {why}")
    if "stack" in live:
        from napari_astro.widgets.capture import SESSION

        live["equipment_dock"]._polling.clear()
        SESSION.server = SESSION.client = SESSION.equipment = None
        live["stack"].close()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
