"""Capture sequence dock: build, load, save and run a capture sequence
(:mod:`napari_astro.capture.sequence`) on the connection the Equipment dock made
(:data:`~.capture.SESSION`), frames shown as they arrive in one layer updated in place.

Split from ``capture.py`` (which re-exports :class:`SequenceWidget`, so the manifest's
``napari_astro.widgets.capture:SequenceWidget`` keeps working). The run happens in a
plain thread; results reach the GUI through the dock's :class:`~.capture._Bridge`.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (QAbstractSpinBox, QFileDialog, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QTableWidget, QWidget)

from .capture import SESSION, _Bridge, _pinned_layout, _row, _spin, show_frame

__all__ = ["SequenceWidget"]


#: The settings shown at the top of the Sequence dock; the others are under "More".
_SEQ_MAIN = ("object", "ra", "dec", "camera", "mount", "wheel", "panel", "guider",
             "dither_every", "dither_pixels", "settle")


class _LinesTable(QTableWidget):
    """The lines of a sequence, one row each: type, count, exposure, filter, binning,
    gain. Line keys not shown (flat median...) are kept from a loaded file."""

    COLUMNS = ("type", "count [frames]", "exposure [s]", "filter", "binning [px]", "gain")
    TYPES = ("light", "dark", "bias", "flat", "darkflat")

    def __init__(self) -> None:
        super().__init__(0, len(self.COLUMNS))
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.setToolTip("one row per line; exposure 'auto': bias at the camera's minimum, "
                        "flats from trial frames")
        self.setMinimumHeight(150)
        self._base: list = []

    def add_line(self, line=None) -> None:
        from qtpy.QtWidgets import QComboBox, QSpinBox

        from ..capture.sequence import LineParams

        line = line or LineParams(type="light", exposure=1.0)
        r = self.rowCount()
        self.insertRow(r)
        self._base.append(line)
        kind = QComboBox()
        kind.addItems(self.TYPES)
        kind.setCurrentText(line.type)
        count = QSpinBox()
        count.setRange(1, 100000)
        count.setValue(line.count)
        count.setToolTip("frames to take")
        exposure = _spin(0.0, 36000.0, line.exposure or 0.0, suffix=" s", decimals=3,
                         tip="exposure (auto: bias at the camera's minimum, flats found)")
        exposure.setSpecialValueText("auto")
        filt = QLineEdit(line.filter or "")
        filt.setPlaceholderText("none")
        filt.setToolTip("filter name or slot (needs a wheel)")
        binning = QSpinBox()
        binning.setRange(1, 16)
        binning.setValue(line.binning)
        binning.setSuffix(" x")
        binning.setToolTip("binning (N x N pixels)")
        gain = _spin(-1.0, 100000.0, -1.0 if line.gain is None else line.gain, suffix="",
                     decimals=0, tip="sensor gain, in the camera's units (leave: as it is set)")
        gain.setSpecialValueText("leave")
        for c, w in enumerate((kind, count, exposure, filt, binning, gain)):
            if hasattr(w, "setButtonSymbols"):   # narrow cells: every column on screen
                w.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            self.setCellWidget(r, c, w)
        self.resizeColumnsToContents()
        self.setMinimumWidth(self.verticalHeader().width() + 4 + sum(
            self.columnWidth(c) for c in range(self.columnCount())))

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.selectedIndexes()} or {self.rowCount() - 1},
                      reverse=True)
        for r in rows:
            if 0 <= r < self.rowCount():
                self.removeRow(r)
                del self._base[r]

    def set_lines(self, lines) -> None:
        self.setRowCount(0)
        self._base = []
        for ln in lines:
            self.add_line(ln)

    def lines(self) -> tuple:
        """The rows as LineParams (BadInputError naming the row on bad input)."""
        from ..core.errors import BadInputError

        out = []
        for r, base in enumerate(self._base):
            kind, count, exposure, filt, binning, gain = (self.cellWidget(r, c)
                                                          for c in range(len(self.COLUMNS)))
            values = dict(type=kind.currentText(), count=count.value(),
                          exposure=exposure.value() or None, filter=filt.text().strip() or None,
                          binning=binning.value(), gain=None if gain.value() < 0 else gain.value())
            try:
                out.append(dataclasses.replace(base, **values))
            except BadInputError as exc:
                raise BadInputError(f"line {r + 1}", exc.problem) from None
        return tuple(out)


class SequenceWidget(QWidget):
    """Build, load, save and run a capture sequence with progress; frames are shown
    as they arrive (one layer updated in place)."""

    LAYER = "Capture frame"

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..capture.sequence import LineParams, SequenceParams
        from ._form import ParamsForm, _Collapsible

        self.viewer = napari_viewer
        self.bridge = _Bridge()
        self.bridge.frame.connect(self._on_frame)
        self.bridge.progress.connect(self._on_progress)
        self.bridge.message.connect(lambda t: self.status.setText(t))
        self.bridge.finished.connect(self._on_finished)
        rest = [f.name for f in dataclasses.fields(SequenceParams) if f.name not in _SEQ_MAIN]
        start = SequenceParams(object="M45", ra=56.75, dec=24.12)
        self.form = ParamsForm(SequenceParams, exclude=rest, initial=start)
        self.more = ParamsForm(SequenceParams, exclude=_SEQ_MAIN, initial=start)
        more = _Collapsible(f"More settings ({len(self.more.fields)})", self.more.native)
        self.table = _LinesTable()
        self.table.set_lines([LineParams(type="light", exposure=1.0, count=4),
                              LineParams(type="dark", exposure=1.0, count=2),
                              LineParams(type="bias", count=2)])
        self.add_btn, self.remove_btn = QPushButton("Add line"), QPushButton("Remove line")
        self.add_btn.clicked.connect(lambda: self.table.add_line())
        self.remove_btn.clicked.connect(self.table.remove_selected)
        self.out_edit = QLineEdit(str(Path.home() / "napari-astro-capture"))
        self.out_edit.setToolTip("folder the frames are written to (a run restarts there)")
        self.load_btn, self.save_btn = QPushButton("Load..."), QPushButton("Save...")
        self.run_btn, self.cancel_btn = QPushButton("Run"), QPushButton("Cancel")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.run_button, self.cancel_button, self.progress_bar = self.run_btn, self.cancel_btn, self.bar
        _pinned_layout(self, [_row(self.load_btn, self.save_btn), self.form.native, more,
                              QLabel("Lines"), self.table, _row(self.add_btn, self.remove_btn),
                              _row(QLabel("Output"), self.out_edit)],
                       [_row(self.run_btn, self.cancel_btn), self.bar, self.status])
        self.load_btn.clicked.connect(self._load_dialog)
        self.save_btn.clicked.connect(self._save_dialog)
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self._cancel = None
        self.thread: threading.Thread | None = None
        self.result: Any = None
        self.frames_shown = 0

    def sequence(self):
        """The sequence the dock shows, checked (BadInputError on bad input)."""
        from ..capture.sequence import Sequence

        settings = self.form.value(**{n: c.value for n, c in self.more.fields.items()})
        lines = self.table.lines()
        if not lines:
            from ..core.errors import BadInputError

            raise BadInputError("lines", "no lines: nothing to capture")
        return Sequence(settings, lines)

    def set_sequence(self, seq) -> None:
        self.form.set_value(seq.settings)
        self.more.set_value(seq.settings)
        self.table.set_lines(seq.lines)

    def load(self, path: "str | Path") -> None:
        from ..capture.sequence import load_sequence

        self.set_sequence(load_sequence(path))
        self.status.setText(f"loaded {path}")

    def save(self, path: "str | Path") -> None:
        from ..capture.sequence import save_sequence

        save_sequence(self.sequence(), path)
        self.status.setText(f"saved {path}")

    def _load_dialog(self) -> None:
        from ..core.errors import BadInputError

        path, _ = QFileDialog.getOpenFileName(self, "Load sequence", "", "TOML (*.toml)")
        if path:
            try:
                self.load(path)
            except BadInputError as exc:
                self.status.setText(str(exc))

    def _save_dialog(self) -> None:
        from ..core.errors import BadInputError

        path, _ = QFileDialog.getSaveFileName(self, "Save sequence", "", "TOML (*.toml)")
        if path:
            try:
                self.save(path)
            except BadInputError as exc:
                self.status.setText(str(exc))

    def run(self) -> threading.Thread | None:
        from ..core.errors import BadInputError
        from ..core.progress import CancelToken

        try:
            seq = self.sequence()
        except BadInputError as exc:
            self.status.setText(str(exc))
            return None
        if SESSION.client is None:
            self.status.setText("connect the equipment first (Equipment dock)")
            return None
        self._cancel = CancelToken()
        out = self.out_edit.text()
        self.bar.setValue(0)

        def work() -> None:
            from ..capture.sequence import SequenceRunner

            try:
                runner = SequenceRunner(
                    seq, SESSION.client, out, cancel=self._cancel,
                    progress=lambda d, t, m="": self.bridge.progress.emit(d, t, m),
                    log=self.bridge.message.emit,
                    on_frame=lambda p, f, h: self.bridge.frame.emit(
                        f.data.astype(np.float32) / f.full_scale, self.LAYER,
                        {"path": str(p), "IMAGETYP": h.get("IMAGETYP")}))
                self.bridge.finished.emit(runner.run())
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.bridge.finished.emit(exc)

        self.run_btn.setEnabled(False)
        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return self.thread

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def _on_frame(self, data: Any, name: str, meta: Any) -> None:
        show_frame(self.viewer, data, name, metadata=meta)
        self.frames_shown += 1

    def _on_progress(self, done: float, total: float, message: str) -> None:
        self.bar.setValue(int(1000 * done / total) if total else 0)
        self.status.setText(message)

    def _on_finished(self, result: Any) -> None:
        self.result = result
        self.run_btn.setEnabled(True)
        if isinstance(result, Exception):
            self.status.setText(f"stopped: {result}")
        else:
            self.status.setText(f"done: {len(result)} frames")
