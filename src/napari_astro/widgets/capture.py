"""Capture docks: equipment (INDI), capture sequences, live stack.

Thin widgets over :mod:`napari_astro.capture`: device work runs in plain Python threads
(pyindi-client calls back on its own thread anyway) and every result reaches the GUI
through a Qt signal, so layers are only touched on the GUI thread. Frames update one
image layer in place (auto-stretched for display, data linear), so a looping preview
or a growing live stack does not pile up layers.

The docks share one connection (:data:`SESSION`): connect in Equipment, focus and
guide in Focus and guiding (``focusguide.py``), run a sequence in Capture sequence, and
watch the lights stack up in Live stack.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QStringListModel, Qt, Signal
from qtpy.QtWidgets import (QCheckBox, QCompleter, QDoubleSpinBox, QFileDialog, QFormLayout,
                            QGroupBox, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
                            QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ._layers import display_settings

__all__ = ["EquipmentWidget", "SequenceWidget", "LiveStackWidget", "SESSION", "show_frame"]

#: Names that live in ``capture_sequence.py`` (the Capture sequence dock), re-exported
#: here lazily: that module imports this one, so an import at the top would be circular.
_SEQUENCE_NAMES = ("SequenceWidget", "_LinesTable", "_SEQ_MAIN")


def __getattr__(name: str) -> Any:   # PEP 562: ``capture:SequenceWidget`` in napari.yaml
    if name in _SEQUENCE_NAMES:
        from . import capture_sequence

        return getattr(capture_sequence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """Put ``data`` in the image layer ``name``, in place when it exists (GUI thread).

    Mono frames show their linear data auto-stretched; colour ``(3, H, W)`` frames
    show the house's unlinked display (one auto-STF per channel, so an uncalibrated
    colour cast does not paint the picture green), the linear data kept in
    ``metadata["astro"]["linear"]`` where steps and writers read them.
    """
    from ._layers import ASTRO_KEY, colour_display

    data = np.asarray(data)
    rgb = data.ndim == 3 and data.shape[0] == 3
    meta = dict(metadata or {})
    if rgb:
        linear = np.nan_to_num(np.moveaxis(data.astype(np.float32, copy=False), 0, -1))
        shown, info = colour_display(data)
        settings = {"contrast_limits": (0.0, 1.0), "gamma": 1.0}
        meta[ASTRO_KEY] = {"linear": linear, "display": info, "kind": "image"}
    else:
        shown = np.nan_to_num(data.astype(np.float32, copy=False))
        settings = display_settings(shown)
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == shown.shape and bool(layer.rgb) == rgb:
            layer.data = shown
            layer.contrast_limits = settings["contrast_limits"]
            layer.gamma = settings["gamma"]
            layer.metadata.update(meta)
            return layer
        viewer.layers.remove(layer)
    return viewer.add_image(shown, name=name, rgb=rgb, metadata=meta, **settings)


class _Bridge(QObject):
    """Signals from worker threads to the GUI thread."""

    frame = Signal(object, str, object)      # data, layer name, metadata
    message = Signal(str)
    progress = Signal(float, float, str)
    finished = Signal(object)
    mount = Signal(object)                   # the mount's state (dict)
    point = Signal(object)                   # one guide step (the focus and guiding dock)
    focus_point = Signal(int, float)         # one autofocus measurement: steps, HFR [px]


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


def _spin(lo: float, hi: float, value: float, *, suffix: str, decimals: int = 2,
          tip: str = "", step: float | None = None) -> QDoubleSpinBox:
    """A float spin box with its unit as a suffix and a one-line help."""
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setValue(value)
    spin.setSuffix(suffix)
    if step is not None:
        spin.setSingleStep(step)
    spin.setToolTip(tip)
    return spin


def _objects():
    """The offline object catalogue (``capture.objects``), or None while absent."""
    try:
        from ..capture import objects
    except ImportError:
        return None
    return objects


class EquipmentWidget(QWidget):
    """Connect INDI devices by name, see their status, take single or looping exposures;
    point the mount at an object name or coordinates, park and track."""

    LAYER = "Camera frame"

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.frame.connect(self._on_frame)
        self.bridge.message.connect(self._on_message)
        self.bridge.mount.connect(self._on_mount)
        self._looping = threading.Event()
        self._busy = threading.Lock()
        self._polling = threading.Event()
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
        self.exposure = _spin(0.0, 3600.0, 1.0, suffix=" s", decimals=3,
                              tip="exposure of a preview frame")
        self.expose_btn = QPushButton("Expose")
        self.loop = QCheckBox("Loop")
        self.loop.setToolTip("expose again as soon as a frame arrives")
        mount_box = self._mount_box()
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
                              _row(QLabel("Exposure"), self.exposure, self.loop), mount_box, 1],
                       [_row(self.expose_btn, self.cancel_button), self.progress_bar,
                        self.mount_status, self.status])
        self.start_sims.clicked.connect(lambda: self.start_simulators())
        self.connect_btn.clicked.connect(lambda: self.connect_equipment())
        self.expose_btn.clicked.connect(lambda: self.expose())
        self.loop.toggled.connect(self._loop_toggled)
        self.frames_shown = 0
        self.mount_state: dict = {}

    def _mount_box(self) -> QGroupBox:
        box = QGroupBox("Mount")
        form = QFormLayout(box)
        self.target_edit = QLineEdit("")
        self.target_edit.setPlaceholderText("object name (M42, NGC 7000...)")
        self.target_edit.setToolTip("an object of the offline catalogue: RA/Dec are filled in")
        self._completer_model = QStringListModel([])
        completer = QCompleter(self._completer_model, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.target_edit.setCompleter(completer)
        self.target_edit.textEdited.connect(self._complete)
        self.target_edit.editingFinished.connect(lambda: self.look_up())
        completer.activated.connect(lambda text: self.look_up(text))
        self.ra_spin = _spin(0.0, 360.0, 0.0, suffix=" deg", decimals=4,
                             tip="target right ascension, J2000 degrees")
        self.dec_spin = _spin(-90.0, 90.0, 0.0, suffix=" deg", decimals=4,
                              tip="target declination, J2000 degrees")
        form.addRow("Target", self.target_edit)
        form.addRow("RA", self.ra_spin)
        form.addRow("Dec", self.dec_spin)
        self.alt_limit = _spin(-90.0, 89.0, 10.0, suffix=" deg", decimals=1,
                               tip="refuse slews to targets below this altitude over the "
                               "mount's site (horizon, trees, roof)")
        form.addRow("Altitude limit", self.alt_limit)
        self.slew_btn = QPushButton("Slew")
        self.slew_btn.setToolTip("slew to RA/Dec and track there")
        self.centre_btn = QPushButton("Slew + centre")
        self.centre_btn.setToolTip("slew, then plate-solve and re-slew until the target is "
                                   "within 1 arcmin of the frame centre (exposure above)")
        self.park_btn, self.unpark_btn = QPushButton("Park"), QPushButton("Unpark")
        self.tracking_box = QCheckBox("Tracking")
        self.tracking_box.setToolTip("sidereal tracking on or off")
        form.addRow(_row(self.slew_btn, self.centre_btn))
        form.addRow(_row(self.park_btn, self.unpark_btn, self.tracking_box))
        self.mount_status = QLabel("mount: -")
        self.mount_status.setWordWrap(True)
        self.mount_status.setToolTip("the mount's position (JNow) and state, updated every second")
        self.slew_btn.clicked.connect(lambda: self.slew())
        self.centre_btn.clicked.connect(lambda: self.slew(centre=True))
        self.park_btn.clicked.connect(lambda: self._mount_job("park", lambda m: m.park()))
        self.unpark_btn.clicked.connect(lambda: self._mount_job("unpark", lambda m: m.unpark()))
        self.tracking_box.clicked.connect(
            lambda on: self._mount_job("tracking", lambda m: m.track(bool(on))))
        return box

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
        if SESSION.equipment.mount is not None and not self._polling.is_set():
            self._polling.set()
            threading.Thread(target=self._poll_mount, daemon=True).start()
        return status

    def expose(self, seconds: float | None = None) -> threading.Thread:
        """One exposure in a thread; the frame lands in the "Camera frame" layer."""
        seconds = float(self.exposure.value() if seconds is None else seconds)
        t = threading.Thread(target=self._expose_worker, args=(seconds,), daemon=True)
        t.start()
        return t

    def look_up(self, name: str | None = None) -> tuple[float, float] | None:
        """Fill RA/Dec from the offline catalogue; returns (ra, dec) J2000 degrees."""
        name = (self.target_edit.text() if name is None else name).strip()
        if not name:
            return None
        objects = _objects()
        if objects is None:
            self._on_message("no object catalogue installed: give RA and Dec")
            return None
        found = objects.lookup(name)
        if found is None:
            self._on_message(f"{name!r} is not in the offline catalogue: give RA and Dec")
            return None
        self.ra_spin.setValue(found[0])
        self.dec_spin.setValue(found[1])
        self._on_message(f"{name}: RA {found[0]:.4f} deg, Dec {found[1]:+.4f} deg (J2000)")
        return found

    def slew(self, *, centre: bool = False) -> threading.Thread | None:
        """Slew (and with ``centre`` plate-solve and centre) on RA/Dec, in a thread."""
        ra, dec = self.ra_spin.value(), self.dec_spin.value()
        exposure = self.exposure.value()
        limit = self.alt_limit.value()

        def work(m) -> None:
            from ..capture.coords import j2000_to_jnow
            from ..capture.night import target_altitude

            alt = target_altitude(m, ra, dec)
            if alt < limit:
                raise RuntimeError(f"the target is {alt:.1f} deg high, below the "
                                   f"{limit:.1f} deg altitude limit: not slewing")
            m.unpark()
            m.goto(*j2000_to_jnow(ra, dec))
            m.track(True)
            self.bridge.message.emit(f"at RA {ra:.4f} deg, Dec {dec:+.4f} deg (J2000)")
            if centre:
                from ..capture.centre import centre_on

                res = centre_on(SESSION.equipment, ra, dec, exposure=max(exposure, 0.5),
                                log=self.bridge.message.emit)
                self.bridge.message.emit(f"centred within {res.error_arcmin:.2f} arcmin")

        return self._mount_job("slew + centre" if centre else "slew", work)

    def _mount_job(self, what: str, fn) -> threading.Thread | None:
        eq = SESSION.equipment
        if eq is None or eq.mount is None:
            self._on_message("connect a mount first")
            return None

        def work() -> None:
            try:
                fn(eq.mount)
                self.bridge.message.emit(f"{what}: done")
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.message.emit(f"{what} failed: {exc}")

        self._on_message(f"{what}...")
        t = threading.Thread(target=work, daemon=True)
        t.start()
        return t

    def _poll_mount(self) -> None:
        while self._polling.is_set():
            eq = SESSION.equipment
            m = eq.mount if eq is not None else None
            if m is None:
                break
            try:
                ra_h, dec = m.coordinates()
                self.bridge.mount.emit(dict(ra_h=ra_h, dec=dec, parked=m.parked,
                                            tracking=m.tracking))
            except Exception:  # noqa: BLE001 - a disconnected mount: try again later
                pass
            time.sleep(1.0)
        self._polling.clear()

    def _complete(self, prefix: str) -> None:
        objects = _objects()
        if objects is not None and prefix.strip():
            self._completer_model.setStringList(list(objects.complete(prefix.strip(), limit=20)))

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

    def _on_mount(self, state: Any) -> None:
        ra_h, dec = state["ra_h"], state["dec"]
        h, m = int(ra_h), (ra_h % 1) * 60
        flags = ", ".join(f for f, on in (("parked", state["parked"]),
                                         ("tracking", state["tracking"])) if on) or "idle"
        self.mount_status.setText(f"mount: RA {h:02d}h{m:04.1f}m  Dec {dec:+.3f} deg (JNow), {flags}")
        self.tracking_box.setChecked(bool(state["tracking"]))
        self.mount_state = state

    def shutdown(self) -> None:
        """Stop looping, the mount poll and the simulators this dock started."""
        self._looping.clear()
        self._polling.clear()
        SESSION.stop()


class LiveStackWidget(QWidget):
    """Stack the lights appearing in a folder as they arrive: one layer updated in
    place, with the frame-quality table filling in (bad frames marked left out)."""

    LAYER = "Live stack"
    COLUMNS = ("name", "accepted", "reason", "n_stars", "fwhm", "roundness", "dx", "dy", "seconds")
    HEADERS = {"n_stars": "stars", "fwhm": "FWHM [px]", "dx": "dx [px]", "dy": "dy [px]",
               "seconds": "time [s]"}

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
        self.table.setHorizontalHeaderLabels([self.HEADERS.get(c, c) for c in self.COLUMNS])
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
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), 160))   # long file names
        self.status.setText(f"{self.stack.n_accepted} of {len(self.stack.frames)} frames stacked")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save live stack", "", "FITS (*.fits)")
        if path and self.stack is not None:
            self.stack.save(path)
