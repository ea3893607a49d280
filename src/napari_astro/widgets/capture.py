"""Capture docks: equipment (INDI), capture sequences, live stack.

Thin widgets over :mod:`napari_astro.capture`: device work runs in plain Python threads
(pyindi-client calls back on its own thread anyway) and every result reaches the GUI
through a Qt signal, so layers are only touched on the GUI thread. Frames update one
image layer in place (auto-stretched for display, data linear), so a looping preview
or a growing live stack does not pile up layers.

The three docks share one connection (:data:`SESSION`): connect in Equipment, run a
sequence in Capture sequence, and watch the lights stack up in Live stack.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QCheckBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                            QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton,
                            QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ._layers import display_settings

__all__ = ["EquipmentWidget", "SequenceWidget", "LiveStackWidget", "SESSION", "show_frame"]


class _Session:
    """The connection shared by the capture docks."""

    def __init__(self) -> None:
        self.server = None        # IndiServer started from the dock (local simulators)
        self.client = None        # IndiClient
        self.equipment = None     # Equipment
        self.lock = threading.Lock()

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
        if self.server is not None:
            self.server.stop()
        self.server = self.client = self.equipment = None


SESSION = _Session()


def show_frame(viewer: Any, data: np.ndarray, name: str, *, metadata: dict | None = None):
    """Put ``data`` in the image layer ``name``, in place when it exists (GUI thread)."""
    data = np.asarray(data)
    rgb = data.ndim == 3 and data.shape[0] == 3
    if rgb:
        data = np.moveaxis(data, 0, -1)
    shown = np.nan_to_num(data.astype(np.float32, copy=False))
    settings = display_settings(shown, rgb=rgb)
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == shown.shape:
            layer.data = shown
            layer.contrast_limits = settings["contrast_limits"]
            layer.gamma = settings["gamma"]
            if metadata:
                layer.metadata.update(metadata)
            return layer
        viewer.layers.remove(layer)
    return viewer.add_image(shown, name=name, rgb=rgb, metadata=dict(metadata or {}), **settings)


class _Bridge(QObject):
    """Signals from worker threads to the GUI thread."""

    frame = Signal(object, str, object)      # data, layer name, metadata
    message = Signal(str)
    progress = Signal(float, float, str)
    finished = Signal(object)


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w



def _pinned_layout(widget: QWidget, body_items: list, pinned_items: list) -> None:
    """Lay ``widget`` out as every napari-astro dock: its content (``body_items``:
    widgets, layouts or the int 1 for a stretch) in a scroll area, and the main
    action row, progress bar and status (``pinned_items``) pinned below it, always
    visible at 1920x1080 (sets ``widget.scroll`` and ``widget.body``)."""
    from qtpy.QtWidgets import QFrame, QScrollArea

    widget.body = QWidget()
    inner = QVBoxLayout(widget.body)
    inner.setContentsMargins(0, 0, 0, 0)
    for item in body_items:
        if item == 1:
            inner.addStretch(1)
        elif isinstance(item, QWidget):
            inner.addWidget(item)
        else:
            inner.addLayout(item)
    widget.scroll = QScrollArea()
    widget.scroll.setWidgetResizable(True)
    # Wide enough for its rows (the Equipment dock's exposure row was cut at 1920x1080).
    widget.body.setMinimumWidth(widget.body.sizeHint().width())
    widget.setMinimumWidth(min(widget.body.sizeHint().width() + 30, 720))
    widget.scroll.setFrameShape(QFrame.Shape.NoFrame)
    widget.scroll.setWidget(widget.body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(6, 6, 6, 6)
    outer.addWidget(widget.scroll, 1)
    for item in pinned_items:
        outer.addWidget(item)


class EquipmentWidget(QWidget):
    """Connect INDI devices by name, see their status, take single or looping exposures."""

    LAYER = "Camera frame"

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.frame.connect(self._on_frame)
        self.bridge.message.connect(self._on_message)
        self._looping = threading.Event()
        self._busy = threading.Lock()
        from ..capture.testing import SIM_SEQUENCE_DEVICES

        form = QFormLayout()
        self.server_edit = QLineEdit("localhost:7624")
        self.server_edit.setToolTip("indiserver HOST:PORT")
        form.addRow("Server", self.server_edit)
        self.device_edits: dict[str, QLineEdit] = {}
        for role, name in SIM_SEQUENCE_DEVICES.items():
            edit = QLineEdit(name)
            edit.setToolTip(f"INDI device name of the {role} (empty: none)")
            self.device_edits[role] = edit
            form.addRow(role.capitalize(), edit)
        self.start_sims = QPushButton("Start simulators")
        self.start_sims.setToolTip("start a local indiserver with INDI's simulators "
                                   "(stars from the shipped catalogue)")
        self.connect_btn = QPushButton("Connect")
        self.exposure = QDoubleSpinBox()
        self.exposure.setRange(0.0, 3600.0)
        self.exposure.setDecimals(3)
        self.exposure.setValue(1.0)
        self.exposure.setSuffix(" s")
        self.expose_btn = QPushButton("Expose")
        self.loop = QCheckBox("Loop")
        self.status = QLabel("not connected")
        self.status.setWordWrap(True)
        # The pinned row: Expose is the dock's main action ("run"), Stop ends a loop.
        self.run_button = self.expose_btn
        self.cancel_button = QPushButton("Stop")
        self.cancel_button.setToolTip("stop a looping preview after the current frame")
        self.cancel_button.clicked.connect(self._looping.clear)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        _pinned_layout(self, [form, _row(self.start_sims, self.connect_btn),
                              _row(QLabel("Exposure"), self.exposure, self.loop), 1],
                       [_row(self.expose_btn, self.cancel_button), self.progress_bar,
                        self.status])
        self.start_sims.clicked.connect(lambda: self.start_simulators())
        self.connect_btn.clicked.connect(lambda: self.connect_equipment())
        self.expose_btn.clicked.connect(lambda: self.expose())
        self.loop.toggled.connect(self._loop_toggled)
        self.frames_shown = 0

    # -- actions (callable from tests and scripts) ----------------------------------
    def start_simulators(self) -> str:
        """Start a local indiserver with the simulators; returns its address."""
        from ..capture.server import SIMULATORS, IndiServer

        with SESSION.lock:
            if SESSION.server is None:
                SESSION.server = IndiServer(list(SIMULATORS)).start()
        self.server_edit.setText(SESSION.server.address)
        self._on_message(f"simulators running on {SESSION.server.address}")
        return SESSION.server.address

    def connect_equipment(self) -> dict[str, str]:
        """Connect to the server and every named device; returns their status."""
        from ..capture.client import IndiClient
        from ..capture.devices import Equipment
        from ..capture.server import parse_server

        host, port = parse_server(self.server_edit.text())
        names = {role: e.text().strip() or None for role, e in self.device_edits.items()}
        with SESSION.lock:
            if SESSION.client is None or not SESSION.client.connected:
                SESSION.client = IndiClient(host, port).connect()
            SESSION.equipment = Equipment.from_names(SESSION.client, **names)
            SESSION.equipment.connect()
        status = SESSION.equipment.status()
        self._on_message(", ".join(f"{k}: {v}" for k, v in status.items()))
        return status

    def expose(self, seconds: float | None = None) -> threading.Thread:
        """One exposure in a thread; the frame lands in the "Camera frame" layer."""
        seconds = float(self.exposure.value() if seconds is None else seconds)
        t = threading.Thread(target=self._expose_worker, args=(seconds,), daemon=True)
        t.start()
        return t

    def _expose_worker(self, seconds: float) -> None:
        eq = SESSION.equipment
        if eq is None or eq.camera is None:
            self.bridge.message.emit("connect a camera first")
            return
        with self._busy:
            while True:
                try:
                    frame = eq.camera.expose(seconds, "light", timeout=seconds + 60)
                except Exception as exc:  # noqa: BLE001 - shown to the user
                    self.bridge.message.emit(f"exposure failed: {exc}")
                    return
                self.bridge.frame.emit(frame.data.astype(np.float32) / frame.full_scale, self.LAYER,
                                       {"header": frame.header})
                if not self._looping.is_set():
                    return

    def _loop_toggled(self, on: bool) -> None:
        if on:
            self._looping.set()
            self.expose()
        else:
            self._looping.clear()

    # -- GUI thread ---------------------------------------------------------------------
    def _on_frame(self, data: Any, name: str, meta: Any) -> None:
        show_frame(self.viewer, data, name, metadata=meta)
        self.frames_shown += 1

    def _on_message(self, text: str) -> None:
        self.status.setText(text)

    def shutdown(self) -> None:
        """Stop looping and the simulators this dock started."""
        self._looping.clear()
        SESSION.stop()


class SequenceWidget(QWidget):
    """Build, load, save and run a capture sequence (TOML) with progress; frames are
    shown as they arrive."""

    LAYER = "Capture frame"

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.frame.connect(lambda d, n, m: show_frame(self.viewer, d, n, metadata=m))
        self.bridge.progress.connect(self._on_progress)
        self.bridge.message.connect(lambda t: self.status.setText(t))
        self.bridge.finished.connect(self._on_finished)
        self.editor = QPlainTextEdit(_EXAMPLE)
        self.editor.setToolTip("the sequence as TOML: [sequence] settings and [[line]] tables")
        self.out_edit = QLineEdit(str(Path.home() / "napari-astro-capture"))
        self.load_btn, self.save_btn = QPushButton("Load..."), QPushButton("Save...")
        self.run_btn, self.cancel_btn = QPushButton("Run"), QPushButton("Cancel")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.run_button, self.cancel_button, self.progress_bar = self.run_btn, self.cancel_btn, self.bar
        _pinned_layout(self, [_row(self.load_btn, self.save_btn), self.editor,
                              _row(QLabel("Output"), self.out_edit)],
                       [_row(self.run_btn, self.cancel_btn), self.bar, self.status])
        self.load_btn.clicked.connect(self._load_dialog)
        self.save_btn.clicked.connect(self._save_dialog)
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self._cancel = None
        self.thread: threading.Thread | None = None
        self.result: Any = None

    def sequence(self):
        """The editor's sequence, checked (BadInputError on bad input)."""
        import tempfile

        from ..capture.sequence import load_sequence

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "sequence.toml"
            p.write_text(self.editor.toPlainText())
            return load_sequence(p)

    def load(self, path: "str | Path") -> None:
        from ..capture.sequence import load_sequence

        load_sequence(path)        # checked before it replaces the editor's text
        self.editor.setPlainText(Path(path).read_text())

    def save(self, path: "str | Path") -> None:
        from ..capture.sequence import save_sequence

        save_sequence(self.sequence(), path)

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load sequence", "", "TOML (*.toml)")
        if path:
            self.load(path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sequence", "", "TOML (*.toml)")
        if path:
            self.save(path)

    def run(self) -> threading.Thread | None:
        from ..core.errors import BadInputError
        from ..core.progress import CancelToken

        try:
            seq = self.sequence()
        except BadInputError as exc:
            self.status.setText(exc.message)
            return None
        if SESSION.client is None:
            self.status.setText("connect the equipment first (Equipment dock)")
            return None
        self._cancel = CancelToken()
        out = self.out_edit.text()

        def work() -> None:
            from ..capture.sequence import SequenceRunner

            try:
                runner = SequenceRunner(
                    seq, SESSION.client, out, cancel=self._cancel,
                    progress=lambda d, t, m="": self.bridge.progress.emit(d, t, m),
                    log=self.bridge.message.emit,
                    on_frame=lambda p, f, h: self.bridge.frame.emit(
                        f.data.astype(np.float32) / f.full_scale, self.LAYER, {"path": str(p)}))
                self.bridge.finished.emit(runner.run())
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.finished.emit(exc)

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return self.thread

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def _on_progress(self, done: float, total: float, message: str) -> None:
        self.bar.setValue(int(1000 * done / total) if total else 0)
        self.status.setText(message)

    def _on_finished(self, result: Any) -> None:
        self.result = result
        if isinstance(result, Exception):
            self.status.setText(f"stopped: {result}")
        else:
            self.status.setText(f"done: {len(result)} frames")


class LiveStackWidget(QWidget):
    """Stack the lights appearing in a folder as they arrive: one layer updated in
    place, with the frame-quality table filling in (bad frames marked left out)."""

    LAYER = "Live stack"
    COLUMNS = ("name", "accepted", "reason", "n_stars", "fwhm", "roundness", "dx", "dy", "seconds")

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.frame.connect(self._on_update)
        self.bridge.message.connect(lambda t: self.status.setText(t))
        self.folder_edit = QLineEdit(str(Path.home() / "napari-astro-capture"))
        self.masters_edit = QLineEdit("")
        self.masters_edit.setPlaceholderText("masters folder (optional)")
        self.start_btn, self.stop_btn = QPushButton("Start"), QPushButton("Stop")
        self.save_btn = QPushButton("Save stack...")
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.status = QLabel("")
        self.run_button, self.cancel_button = self.start_btn, self.stop_btn
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("%v frames")
        _pinned_layout(self, [_row(QLabel("Folder"), self.folder_edit), self.masters_edit,
                              _row(self.save_btn), self.table],
                       [_row(self.start_btn, self.stop_btn), self.progress_bar, self.status])
        self.start_btn.clicked.connect(lambda: self.start())
        self.stop_btn.clicked.connect(self.stop)
        self.save_btn.clicked.connect(self._save_dialog)
        self._stop = threading.Event()
        self.stack = None
        self.updates = 0

    def start(self, folder: "str | Path | None" = None, poll: float = 0.5) -> threading.Thread:
        from ..capture.live import FolderWatcher, LiveStack, load_masters

        folder = Path(folder or self.folder_edit.text())
        self.folder_edit.setText(str(folder))
        self.stack = LiveStack(masters=load_masters(self.masters_edit.text().strip() or None))
        watcher = FolderWatcher(folder)
        self._stop.clear()

        def work() -> None:
            while not self._stop.is_set():
                try:
                    new = watcher.poll() if folder.is_dir() else []
                    for p in new:
                        if self._stop.is_set():
                            break
                        row = self.stack.add(p)
                        img = self.stack.image if row.accepted else None
                        self.bridge.frame.emit(None if img is None else img.data, self.LAYER,
                                               row.to_dict())
                except Exception as exc:  # noqa: BLE001 - shown to the user
                    self.bridge.message.emit(f"live stack: {exc}")
                self._stop.wait(poll)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def _on_update(self, data: Any, name: str, row: Any) -> None:
        if data is not None:
            show_frame(self.viewer, data, name, metadata={"frames": self.stack.n_accepted})
            self.updates += 1
        self.progress_bar.setMaximum(max(1000, self.table.rowCount() + 1))
        self.progress_bar.setValue(self.table.rowCount() + 1)
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, key in enumerate(self.COLUMNS):
            v = row.get(key)
            text = f"{v:.2f}" if isinstance(v, float) else str(v)
            self.table.setItem(r, c, QTableWidgetItem(text))
        self.status.setText(f"{self.stack.n_accepted} of {len(self.stack.frames)} frames stacked")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save live stack", "", "FITS (*.fits)")
        if path and self.stack is not None:
            self.stack.save(path)


_EXAMPLE = """[sequence]
object = "M45"
ra = 56.75
dec = 24.12
dither_every = 2
dither_pixels = 6
wheel = "Filter Simulator"
panel = "Light Panel Simulator"

[[line]]
type = "light"
filter = "Red"
exposure = 1.0
count = 4

[[line]]
type = "dark"
exposure = 1.0
count = 2

[[line]]
type = "bias"
count = 2

[[line]]
type = "flat"
filter = "Red"
exposure = 0.05
count = 2
"""
