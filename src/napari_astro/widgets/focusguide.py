"""Focus and guiding dock: autofocus with its HFR curve, the built-in guider with its
RA/Dec error plot and RMS.

Thin over :mod:`napari_astro.capture.focus` and :mod:`napari_astro.capture.guide`, on
the connection the Equipment dock made (:data:`~.capture.SESSION`). Device work runs
in plain threads; every result reaches the GUI through a Qt signal of the dock's
:class:`~.capture._Bridge`, so napari's event loop never waits on a camera. Autofocus
points are plotted as they are measured; Cancel stops a run before the next focuser
move and sends the focuser back where it was.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from qtpy.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QLabel, QProgressBar,
                            QPushButton, QSpinBox, QWidget)

from ._plots import XYPlot
from .capture import SESSION, _Bridge, _pinned_layout, _row, _spin

__all__ = ["FocusGuideWidget"]

#: Guide-camera choices: the Equipment dock's Guider device, or the main camera's
#: guide head (a CCD driver's second chip, INDI's ``GUIDER_*`` properties).
GUIDE_DEVICE, GUIDE_HEAD = "guide camera", "main camera's guide head"


class FocusGuideWidget(QWidget):
    """Autofocus (settings, Run, the HFR-vs-position curve) and guiding (settings,
    Start/Stop/Dither, RA/Dec error over time, RMS) on the connected equipment."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.message.connect(lambda t: self.status.setText(t))
        self.bridge.finished.connect(self._on_focus_done)
        self.bridge.point.connect(self._on_guide_step)
        self.bridge.focus_point.connect(self._on_focus_point)

        focus = QGroupBox("Autofocus")
        form = QFormLayout(focus)
        self.step = QSpinBox()
        self.step.setRange(1, 100000)
        self.step.setValue(2000)
        self.step.setSuffix(" steps")
        self.step.setToolTip("focuser steps between two positions of the run")
        self.points = QSpinBox()
        self.points.setRange(5, 31)
        self.points.setValue(9)
        self.points.setSuffix(" positions")
        self.points.setToolTip("positions measured, centred on the focuser's position")
        self.focus_exposure = _spin(0.001, 600.0, 1.0, suffix=" s", decimals=3,
                                    tip="exposure of each focus frame")
        form.addRow("Step", self.step)
        form.addRow("Points", self.points)
        form.addRow("Exposure", self.focus_exposure)
        self.focus_plot = XYPlot("focuser position [steps]", "HFR [px]")
        self.focus_plot.setToolTip("half-flux radius at each position (as measured), the "
                                   "fitted hyperbola and the best focus chosen (dashed)")
        form.addRow(self.focus_plot)
        self.focus_label = QLabel("best focus: -")
        self.focus_label.setWordWrap(True)
        form.addRow(self.focus_label)

        guide = QGroupBox("Guiding")
        gform = QFormLayout(guide)
        self.guide_camera = QComboBox()
        self.guide_camera.addItems([GUIDE_DEVICE, GUIDE_HEAD])
        self.guide_camera.setToolTip("guide camera: the Equipment dock's Guider device (Guide "
                                     "Simulator) or the main camera's guide head")
        self.guide_exposure = _spin(0.01, 60.0, 1.0, suffix=" s", decimals=2,
                                    tip="exposure of each guide frame")
        self.aggressiveness = _spin(0.0, 2.0, 0.8, suffix=" x", decimals=2, step=0.05,
                                    tip="fraction of the measured error corrected each frame")
        self.min_move = _spin(0.0, 10.0, 0.1, suffix=" px", decimals=2, step=0.05,
                              tip="errors smaller than this are not corrected")
        self.dither_px = _spin(0.5, 50.0, 5.0, suffix=" px", decimals=1,
                               tip="dither: move the guide star's lock position this far")
        gform.addRow("Camera", self.guide_camera)
        gform.addRow("Exposure", self.guide_exposure)
        gform.addRow("Aggressiveness", self.aggressiveness)
        gform.addRow("Min move", self.min_move)
        gform.addRow("Dither", self.dither_px)
        self.guide_plot = XYPlot("time [s]", "error [px]", fixed_y=1.0)
        self.guide_plot.setToolTip("the guide star's error along RA and Dec, each guide frame")
        gform.addRow(self.guide_plot)
        self.rms_label = QLabel("RMS: -")
        self.rms_label.setWordWrap(True)
        self.rms_label.setToolTip("RMS of the total error over the last 20 guide frames")
        gform.addRow(self.rms_label)

        self.run_btn = QPushButton("Run autofocus")
        self.run_btn.setToolTip("measure HFR at each position, fit, move to the best focus")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("stop autofocus before its next focuser move; the focuser "
                                   "goes back where it was")
        self.cancel_btn.setEnabled(False)
        self.start_btn, self.stop_btn = QPushButton("Start guiding"), QPushButton("Stop")
        self.start_btn.setToolTip("pick a star, calibrate, guide until Stop")
        self.stop_btn.setToolTip("stop guiding after the current frame")
        self.dither_btn = QPushButton("Dither")
        self.dither_btn.setToolTip("move the lock position by the dither distance and settle")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("connect the equipment in the Equipment dock")
        self.status.setWordWrap(True)
        self.run_button, self.cancel_button = self.run_btn, self.cancel_btn
        _pinned_layout(self, [focus, guide, 1],
                       [_row(self.run_btn, self.cancel_btn),
                        _row(self.start_btn, self.dither_btn, self.stop_btn),
                        self.progress_bar, self.status])
        self.run_btn.clicked.connect(lambda: self.run_autofocus())
        self.cancel_btn.clicked.connect(lambda: self.cancel_autofocus())
        self.start_btn.clicked.connect(lambda: self.start_guiding())
        self.stop_btn.clicked.connect(lambda: self.stop_guiding())
        self.dither_btn.clicked.connect(lambda: self.dither())
        self.result = None                   # the last FocusResult (or the exception)
        self.loop = None                     # the running guide loop
        self.focus_thread: threading.Thread | None = None
        self._focus_cancel = None            # the running autofocus's CancelToken
        self._focus_points = 0               # positions the run measures
        self._focus_x: list[int] = []        # points measured so far: steps, HFR [px]
        self._focus_y: list[float] = []
        self._t0 = 0.0
        self._times: list[float] = []
        self._ra: list[float] = []
        self._dec: list[float] = []
        self.rms = math.nan

    # -- autofocus ----------------------------------------------------------------------
    def run_autofocus(self) -> threading.Thread | None:
        """Autofocus in a thread: points plotted as measured, the fit drawn at the end."""
        from ..core.progress import CancelToken

        eq = SESSION.equipment
        if eq is None or eq.camera is None or eq.focuser is None:
            self.status.setText("connect a camera and a focuser first (Equipment dock)")
            return None
        if self.focus_thread is not None and self.focus_thread.is_alive():
            return None
        step, points, exposure = self.step.value(), self.points.value(), self.focus_exposure.value()
        self.focus_plot.clear()
        self.focus_label.setText("best focus: -")
        self.progress_bar.setValue(0)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.result = None
        self._focus_x, self._focus_y, self._focus_points = [], [], points
        cancel = self._focus_cancel = CancelToken()
        guiding = self.loop if self.loop is not None and self.loop.running else None

        def work() -> None:
            from ..capture.focus import autofocus
            from ..core.progress import Cancelled

            try:
                if guiding is not None:   # no guide pulses while the focuser moves
                    guiding.pause()
                start = eq.focuser.position()          # where the focuser goes on Cancel
                self.bridge.finished.emit(autofocus(
                    eq, step=step, points=points, exposure=exposure, centre=start,
                    log=self.bridge.message.emit, cancel=cancel,
                    on_point=lambda p, hfr: self.bridge.focus_point.emit(int(p), float(hfr))))
            except Cancelled:
                try:
                    eq.focuser.move_to(start)
                    done = Cancelled(f"the focuser is back at {start} steps, where it was")
                except Exception as exc:  # noqa: BLE001 - shown to the user
                    done = Cancelled(f"the focuser did not go back to {start} steps: {exc}")
                self.bridge.finished.emit(done)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.finished.emit(exc)
            finally:
                if guiding is not None:
                    try:
                        guiding.resume()
                    except Exception as exc:  # noqa: BLE001 - shown to the user
                        self.bridge.message.emit(f"guiding did not resume: {exc}")

        self.focus_thread = threading.Thread(target=work, daemon=True)
        self.focus_thread.start()
        return self.focus_thread

    def cancel_autofocus(self) -> None:
        """Stop a running autofocus before its next focuser move (the focuser then
        goes back where it was before the run)."""
        if self._focus_cancel is not None and self.focus_thread is not None \
                and self.focus_thread.is_alive():
            self._focus_cancel.cancel()
            self.cancel_btn.setEnabled(False)
            self.status.setText("cancelling autofocus after the current frame...")

    def _on_focus_point(self, position: int, hfr: float) -> None:
        self._focus_x.append(position)
        self._focus_y.append(hfr)
        order = np.argsort(self._focus_x)
        self.focus_plot.set_series("measured", np.asarray(self._focus_x)[order],
                                   np.asarray(self._focus_y)[order], color="#66c2ff")
        total = max(self._focus_points, len(self._focus_x))   # a shifted run measures more
        self.progress_bar.setValue(int(1000 * len(self._focus_x) / (total + 1)))

    def _on_focus_done(self, res: Any) -> None:
        from ..core.progress import Cancelled

        self.result = res
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if isinstance(res, Cancelled):
            self.status.setText(f"autofocus cancelled after {len(self._focus_x)} positions; {res}")
            self.focus_label.setText("best focus: - (cancelled)")
            return
        if isinstance(res, Exception):
            self.status.setText(f"autofocus failed: {res}")
            return
        self.progress_bar.setValue(1000)
        self.focus_plot.set_series("measured", res.positions, res.hfr, color="#66c2ff")
        xs = np.linspace(min(res.positions), max(res.positions), 101)
        self.focus_plot.set_series("hyperbola", xs, res.curve(xs), points=False, line=True,
                                   color="#ffcc66")
        self.focus_plot.set_marker(f"best {res.best}", res.best)
        self.focus_label.setText(f"best focus: {res.best} steps (HFR {res.fit[0]:.2f} px at "
                                 "the vertex)")
        self.status.setText(f"focuser moved to {res.best}")

    # -- guiding ---------------------------------------------------------------------------
    def _refresh_cameras(self) -> None:
        """Name the Guider device in the camera choice (e.g. "Guide Simulator")."""
        eq = SESSION.equipment
        guider = getattr(eq, "guider", None)
        self.guide_camera.setItemText(0, guider.name if guider is not None else GUIDE_DEVICE)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self._refresh_cameras()
        super().showEvent(event)

    def _guide_camera(self):
        eq = SESSION.equipment
        self._refresh_cameras()
        if self.guide_camera.currentIndex() == 1:
            from ..capture.devices import GuideHead

            return GuideHead(eq.camera.client, eq.camera.name) if eq.camera is not None else None
        return eq.guider

    def start_guiding(self) -> threading.Thread | None:
        """Select a star, calibrate and guide (in threads) until :meth:`stop_guiding`."""
        from ..capture.guide import GuideLoop, Guider

        eq = SESSION.equipment
        if eq is None:
            self.status.setText("connect the equipment first (Equipment dock)")
            return None
        if self.loop is not None and self.loop.running:
            return None
        cam = self._guide_camera()
        # a guide head guides through its camera's ST-4 port (as the CCD simulator's does);
        # a guide camera through the mount
        port = cam if self.guide_camera.currentIndex() == 1 else (eq.mount or eq.camera)
        if cam is None or port is None:
            self.status.setText("connect a guide camera and a mount first (Equipment dock)")
            return None
        guider = Guider(cam, port, exposure=self.guide_exposure.value(),
                        aggressiveness=self.aggressiveness.value(),
                        min_move=self.min_move.value(), log=self.bridge.message.emit)
        self.loop = GuideLoop(guider, log=self.bridge.message.emit,
                                on_step=lambda ra, dec, rms: self.bridge.point.emit((ra, dec, rms)))
        self._times, self._ra, self._dec = [], [], []
        self.guide_plot.clear()
        self.start_btn.setEnabled(False)
        self.status.setText("guiding: selecting a star and calibrating...")
        loop = self.loop

        def work() -> None:
            try:
                loop.start(calibrate=True, timeout=120)
                self.bridge.message.emit("guiding")
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.message.emit(f"guiding failed: {exc}")

        t = threading.Thread(target=work, daemon=True)
        t.start()
        return t

    def stop_guiding(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.stop()
            self.status.setText("guiding stopped")
        self.start_btn.setEnabled(True)

    def dither(self) -> threading.Thread | None:
        loop = self.loop
        if loop is None or not loop.running:
            self.status.setText("start guiding first")
            return None
        pixels = self.dither_px.value()

        def work() -> None:
            try:
                loop.dither(pixels)
                self.bridge.message.emit(f"dithered {pixels:g} px and settled")
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.message.emit(f"dither failed: {exc}")

        self.status.setText(f"dithering {pixels:g} px...")
        t = threading.Thread(target=work, daemon=True)
        t.start()
        return t

    def _on_guide_step(self, step: Any) -> None:
        ra, dec, rms = step
        now = time.monotonic()
        if not self._times:
            self._t0 = now
        self._times.append(now - self._t0)
        self._ra.append(ra)
        self._dec.append(dec)
        self.rms = rms
        self.guide_plot.set_series("RA", self._times, self._ra, line=True, color="#66c2ff")
        self.guide_plot.set_series("Dec", self._times, self._dec, line=True, color="#ff6666")
        self.rms_label.setText(f"RMS: {rms:.2f} px over the last {min(len(self._ra), 20)} "
                               f"frames (RA {ra:+.2f}, Dec {dec:+.2f} px now)")

    def shutdown(self) -> None:
        """Cancel autofocus, stop guiding (the connection belongs to the Equipment dock)."""
        if self._focus_cancel is not None:
            self._focus_cancel.cancel()
        self.stop_guiding()
