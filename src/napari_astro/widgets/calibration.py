"""Calibration widget: masters from bias/dark/flat frames, calibrated lights.

Thin over :mod:`napari_astro.pipeline.calflow` (the flow ``napari-astro calibrate`` runs). The user adds files or folders
(classified by IMAGETYP / folder name, or forced to a type) or image layers; the
widget shows the frame groups and the plan -- which master bias/dark/flat each light
gets -- then builds the masters and calibrates in a worker with progress, and adds
the masters and a calibrated preview (the first light) as layers. With an output
folder, every light is calibrated and written there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..pipeline.calflow import CalibrationRun, scan_sources
from ..pipeline.steps import CalibrateParams, MastersParams
from ._base import ParamsForm, StepWidget, add_layers, fill_table, make_table, start_job
from ._tables import frame_rows, group_rows, plan_rows
from .stack import PathEdit

__all__ = ["CalibrationWidget", "FrameSources", "FRAME_TYPES", "run_calibration"]

#: Types a source can be forced to ("auto" = IMAGETYP, else the folder name).
FRAME_TYPES = ("auto", "light", "dark", "flat", "bias", "darkflat")


class FrameSources(QWidget):
    """Files/folders with a frame type each (``auto`` = from the header or folder)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("<b>Frames</b> (files or folders; type from IMAGETYP or the "
                             "folder name unless forced)"))
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["type", "path"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(170)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(QLabel("add as"))
        self.add_type = QComboBox()
        self.add_type.addItems(FRAME_TYPES)
        row.addWidget(self.add_type)
        for text, slot in (("Files…", self._add_files), ("Folder…", self._add_folder),
                           ("Remove", self._remove), ("Clear", self.clear)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        lay.addLayout(row)

    def add(self, paths: Sequence["str | os.PathLike[str]"], frame_type: str | None = None) -> None:
        """Add paths with a type (``None``/``"auto"``: classify from headers)."""
        ftype = frame_type or self.add_type.currentText()
        for p in paths:
            r = self.table.rowCount()
            self.table.insertRow(r)
            combo = QComboBox()
            combo.addItems(FRAME_TYPES)
            combo.setCurrentText(ftype)
            self.table.setCellWidget(r, 0, combo)
            item = QTableWidgetItem(os.fspath(p))
            item.setToolTip(os.fspath(p))
            self.table.setItem(r, 1, item)

    def sources(self) -> list[tuple[str | None, str]]:
        """``[(type or None, path), ...]`` in order."""
        out = []
        for r in range(self.table.rowCount()):
            t = self.table.cellWidget(r, 0).currentText()
            out.append((None if t == "auto" else t, self.table.item(r, 1).text()))
        return out

    def clear(self) -> None:
        self.table.setRowCount(0)

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Add frames", "", "Images (*.fit *.fits *.fts *.fz *.xisf *.cr2 *.cr3 *.nef "
            "*.arw *.dng *.tif *.tiff);;All files (*)")
        if files:
            self.add(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of frames")
        if folder:
            self.add([folder])

    def _remove(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)


def iter_masters(master_set: Any) -> list[tuple[str, Any]]:
    """``[(group label, AstroImage), ...]`` of the built masters of a ``MasterSet``."""
    if master_set is None:
        return []
    return [(str(m.key), m.image) for m in master_set.all() if m.image is not None]


class CalibrationWidget(StepWidget):
    """Dock widget: masters + calibrated lights.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    title = "Calibration"
    run_text = "Build masters + calibrate"
    params_class = CalibrateParams
    form_options: dict = {}

    def build(self) -> None:
        self.frames: list = []
        self.sources = FrameSources()
        self._layout.addWidget(self.sources)
        self.layers_picker = self.add_picker("layers", multiple=True)
        b = QPushButton("Add picked layers as the chosen type")
        b.clicked.connect(self.add_picked_layers)
        self._layout.addWidget(b)
        row = QHBoxLayout()
        row.addWidget(QLabel("Calibrated lights to"))
        self.out_dir = PathEdit("(optional) folder; empty = preview the first light only",
                                folder=True)
        row.addWidget(self.out_dir, 1)
        self._layout.addLayout(row)
        self.overwrite = QCheckBox("Replace existing files in that folder")
        self._layout.addWidget(self.overwrite)
        self.scan_button = QPushButton("Scan frames and show the plan")
        self.scan_button.clicked.connect(self.scan)
        self._layout.addWidget(self.scan_button)
        self.masters_form = ParamsForm(MastersParams)
        self._layout.addWidget(QLabel("<b>Masters</b>"))
        self._layout.addWidget(self.masters_form.native)
        self._layout.addWidget(QLabel("<b>Calibration</b>"))

    def build_after_form(self) -> None:
        self.tabs = QTabWidget()
        self.groups_table = make_table()
        self.plan_table = make_table()
        self.frames_table = make_table()
        self.tabs.addTab(self.groups_table, "Groups")
        self.tabs.addTab(self.plan_table, "Plan (light → masters)")
        self.tabs.addTab(self.frames_table, "Frames")
        self._layout.addWidget(self.tabs)

    # -- layers as inputs -----------------------------------------------------------------
    def add_picked_layers(self) -> list[Path]:
        """Write the picked layers as FITS into a temporary folder and add them as sources.

        The library works on files (it groups by header keys and streams frames), so
        in-memory layers become files with ``IMAGETYP`` set to the chosen type.
        """
        from ..core.io import write_image
        from ._layers import layer_to_images

        ftype = self.sources.add_type.currentText()
        layers = list(self.layers_picker.value or [])
        if not layers:
            self.set_status("pick layers first", error=True)
            return []
        if not hasattr(self, "_tmp"):
            self._tmp = tempfile.TemporaryDirectory(prefix="napari-astro-layers-")
        written = []
        for layer in layers:
            for i, img in enumerate(layer_to_images(layer)):
                if ftype != "auto":
                    img.header["IMAGETYP"] = ftype.capitalize() if ftype != "darkflat" else "Dark Flat"
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name)
                path = Path(self._tmp.name) / f"{safe}_{i:04d}.fits"
                written.append(write_image(img, path, overwrite=True))
        self.sources.add(written, ftype)
        self.set_status(f"added {len(written)} frames from {len(layers)} layers")
        return written

    # -- scan + plan ----------------------------------------------------------------------
    def _inputs(self) -> tuple[list, MastersParams, CalibrateParams]:
        from ..core.errors import BadInputError

        sources = self.sources.sources()
        if not sources:
            raise BadInputError(None, "add bias/dark/flat/light files or folders first")
        return sources, self.masters_form.value(), self.params()

    def scan(self) -> Any:
        """Classify the frames and plan the calibration in a worker (headers only)."""
        from ..core.errors import BadInputError

        try:
            sources, mparams, cparams = self._inputs()
        except (BadInputError, ValueError) as exc:
            self.set_status(str(exc), error=True)
            return None

        def job(*, progress: Any = None, cancel: Any = None) -> CalibrationRun:
            frames = scan_sources(sources)
            return CalibrationRun(frames=frames, plan=_plan(frames, None, mparams, cparams))

        self.scan_button.setEnabled(False)
        self.set_status("reading headers…")
        self.scan_worker = start_job(job, title="Calibration plan", on_result=self._show_scan,
                                     on_error=self._on_error,
                                     on_finished=lambda: self.scan_button.setEnabled(True))
        return self.scan_worker

    def _show_scan(self, run: CalibrationRun) -> None:
        self.frames = run.frames
        self._show_tables(run)
        counts: dict[str, int] = {}
        for f in run.frames:
            counts[f.type.value] = counts.get(f.type.value, 0) + 1
        self.set_status(", ".join(f"{n} {t}" for t, n in counts.items()) or "no frames")

    def _show_tables(self, run: CalibrationRun) -> None:
        from ..core.frames import FrameType

        fill_table(self.groups_table, group_rows(run.frames))
        fill_table(self.frames_table, frame_rows(run.frames),
                   ["file", "type", "exposure", "filter", "temperature", "gain", "size", "cfa"])
        lights = [f for f in run.frames if f.type == FrameType.LIGHT]
        rows = plan_rows(run.plan, lights)
        fill_table(self.plan_table, rows)
        self.tabs.setCurrentWidget(self.plan_table if rows else self.groups_table)

    # -- run ---------------------------------------------------------------------------------
    def prepare(self) -> Callable[..., Any]:
        sources, mparams, cparams = self._inputs()
        out_dir = self.out_dir.path()
        overwrite = self.overwrite.isChecked()

        def job(*, progress: Any = None, cancel: Any = None) -> CalibrationRun:
            return run_calibration(sources, mparams, cparams, out_dir=out_dir,
                                   overwrite=overwrite, progress=progress, cancel=cancel)

        return job

    def show_result(self, run: CalibrationRun) -> None:
        from ._layers import image_to_layer_data

        self.frames = run.frames
        self._show_tables(run)
        layers = [image_to_layer_data(img, f"master {name}", visible=False)
                  for name, img in iter_masters(run.masters)]
        if run.preview is not None:
            layers.append(image_to_layer_data(run.preview, "calibrated preview"))
        add_layers(self.viewer, layers)
        n_masters = len(iter_masters(run.masters))
        text = f"{n_masters} masters built"
        if run.written:
            text += f"; {len(run.written)} calibrated lights written"
        elif run.preview is not None:
            text += "; first light calibrated as a preview"
        self.set_status(text)


def _plan(frames: list, master_set: Any, mparams: MastersParams, cparams: CalibrateParams) -> list:
    """Calibration plan for the lights, from built masters or from the frames' groups."""
    from ..core.frames import FrameType
    from ..pipeline.calibrate import plan_calibration
    from ..pipeline.masters import MasterSet

    lights = [f for f in frames if f.type == FrameType.LIGHT]
    if not lights:
        return []
    if master_set is None:
        master_set = MasterSet.from_frames([f for f in frames if f.type != FrameType.LIGHT],
                                           mparams)
    return list(plan_calibration(lights, master_set, cparams))


def run_calibration(sources: Sequence[tuple[str | None, str]], mparams: MastersParams,
                    cparams: CalibrateParams, *, out_dir: "Path | None" = None,
                    overwrite: bool = False, progress: Any = None,
                    cancel: Any = None) -> CalibrationRun:
    """Scan the sources, then the same flow as ``napari-astro calibrate``
    (:func:`napari_astro.pipeline.calflow.run_calibration`): masters, and every light
    into ``out_dir`` or, without one, the first light as a preview. Worker thread."""
    from ..pipeline.calflow import run_calibration as flow

    frames = scan_sources(sources)
    return flow(frames, out_dir, masters_params=mparams, params=cparams, require_lights=False,
                overwrite=overwrite, progress=progress, cancel=cancel)
