"""Background extraction dock widget: samples on a Points layer, the model follows.

* **Samples** puts boxes on a grid (per row, box size from the form) on the
  "background samples" Points layer: squares the size of the box, green when used,
  red when rejected, each labelled with its value (the layer's ``features``:
  ``value``, ``used``, ``reason``, ``label``).
* Adding, moving or deleting points (napari's own Points tools) re-measures and
  re-fits in a worker, debounced (:data:`REFIT_DELAY_MS`), on the reduced grid: the
  "background model" layer follows within a fraction of a second.
* **Apply** runs the step at full resolution with the layer's points (or the grid
  when there is no samples layer) and adds the corrected image and the full model.
* Samples are saved to and loaded from CSV (``x, y`` px).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QPushButton

from ._base import ImageStepWidget, add_layers, start_job

__all__ = ["BackgroundWidget", "SAMPLES_NAME", "MODEL_NAME", "REFIT_DELAY_MS"]

SAMPLES_NAME = "background samples"
MODEL_NAME = "background model"
#: Quiet time after the last edit of the samples before the model is re-fitted.
REFIT_DELAY_MS = 300

_USED = np.array([0.2, 0.9, 0.3, 1.0])
_REJECTED = np.array([1.0, 0.25, 0.25, 1.0])


class BackgroundWidget(ImageStepWidget):
    """Background extraction with interactive samples."""

    step_id = "post.background"
    previewable = False

    def build(self) -> None:
        super().build()
        row = QHBoxLayout()
        self.samples_button = QPushButton("Samples")
        self.samples_button.setObjectName("make_samples")
        self.samples_button.setToolTip("place samples on a grid (per row, box size) and fit the model")
        self.samples_button.clicked.connect(self.make_samples)
        self.load_button = QPushButton("Load CSV…")
        self.load_button.setObjectName("load_samples")
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button = QPushButton("Save CSV…")
        self.save_button.setObjectName("save_samples")
        self.save_button.clicked.connect(self._save_dialog)
        for b in (self.samples_button, self.load_button, self.save_button):
            row.addWidget(b)
        self._layout.addLayout(row)
        self.live_box = QCheckBox("Re-fit the model as samples change")
        self.live_box.setObjectName("live_fit")
        self.live_box.setChecked(True)
        self._layout.addWidget(self.live_box)
        self._samples = None
        self.fit_worker: Any = None
        self.fit_runs = 0
        self.fit_error: BaseException | None = None
        self.last_fit: Any = None
        self._refit_pending = False
        self._refit_timer = QTimer(self)
        self._refit_timer.setSingleShot(True)
        self._refit_timer.setInterval(REFIT_DELAY_MS)
        self._refit_timer.timeout.connect(self.refit)

    # -- layers ------------------------------------------------------------------------
    def _image_layer(self):
        return self.image_picker.value

    def samples_layer(self, *, create: bool = False):
        """The samples Points layer (made, empty, when ``create``)."""
        layers = self.viewer.layers
        if SAMPLES_NAME in layers:
            layer = layers[SAMPLES_NAME]
        elif create:
            image = self._image_layer()
            kw = {}
            if image is not None:
                kw = dict(scale=image.scale[-2:], translate=image.translate[-2:])
            layer = self.viewer.add_points(np.zeros((0, 2)), name=SAMPLES_NAME, symbol="square",
                                           size=self._box_size(), face_color="transparent",
                                           border_color=_USED, border_width=0.08,
                                           border_width_is_relative=True, **kw)
        else:
            return None
        if layer is not self._samples:
            self._samples = layer
            layer.events.data.connect(self._samples_changed)
        return layer

    def _box_size(self) -> int:
        from ..core.background import default_box_size

        p = self.params()
        layer = self._image_layer()
        if p.box_size:
            return int(p.box_size)
        if layer is None:
            return 25
        return default_box_size(self._shape2d(layer), p.per_row)

    @staticmethod
    def _shape2d(layer) -> tuple[int, int]:
        shape = layer.data.shape
        return tuple(shape[:2]) if getattr(layer, "rgb", False) else tuple(shape[-2:])

    def points(self) -> np.ndarray | None:
        """The samples (N, 2) row/col in the image's pixel coordinates, or None."""
        layer = self.samples_layer()
        image = self._image_layer()
        if layer is None or image is None or not len(layer.data):
            return None
        world = np.asarray(layer.data)[:, -2:] * np.asarray(layer.scale[-2:]) + np.asarray(layer.translate[-2:])
        return (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])

    def set_points(self, points: np.ndarray) -> None:
        """Put ``points`` (N, 2 row/col, image pixels) on the samples layer (a data
        event: the model is re-fitted)."""
        layer = self.samples_layer(create=True)
        image = self._image_layer()
        pts = np.asarray(points, float).reshape(-1, 2)
        if image is not None:
            world = pts * np.asarray(image.scale[-2:]) + np.asarray(image.translate[-2:])
            pts = (world - np.asarray(layer.translate[-2:])) / np.asarray(layer.scale[-2:])
        layer.size = self._box_size()
        layer.data = pts

    def make_samples(self) -> None:
        """Samples on the grid of the form's per-row and box size."""
        from ..core.background import grid_points

        layer = self._image_layer()
        if layer is None:
            self.set_status("pick an image layer first", error=True)
            return
        p = self.params()
        self.set_points(grid_points(self._shape2d(layer), p.per_row, p.box_size))

    # -- the model follows the samples ---------------------------------------------------
    def _samples_changed(self, event: Any = None) -> None:
        action = str(getattr(getattr(event, "action", None), "value", getattr(event, "action", "")))
        if action.endswith("ing"):  # adding / changing / removing: wait for the -ed event
            return
        if self.live_box.isChecked():
            self._refit_timer.start()

    @property
    def fitting(self) -> bool:
        return self.fit_worker is not None or self._refit_timer.isActive()

    def refit(self) -> Any:
        """Re-measure the samples and re-fit the model on the reduced grid (worker)."""
        from ..core.errors import BadInputError

        if self.fit_worker is not None:
            self._refit_pending = True
            return self.fit_worker
        pts = self.points()
        if pts is None:
            return None
        try:
            image = self.input_image()
            params = self.params()
        except (BadInputError, ValueError) as exc:
            self.set_status(str(exc), error=True)
            return None
        self._refit_pending = False
        self.fit_error = None
        name = self._image_layer().name

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.post.background import preview_background

            return preview_background(image, params, pts, cancel=cancel)

        def done(result: Any) -> None:
            table, fit = result
            self.last_fit = result
            self.fit_runs += 1
            self._show_table(table)
            self._show_model(fit.coarse, name, step=(fit.ys, fit.xs))
            k = int(table.used.sum())
            self.set_status(f"{k} of {len(table)} samples used; model on a "
                            f"{fit.xs.size}x{fit.ys.size} grid")

        def failed(exc: BaseException) -> None:
            self.fit_error = exc
            self.fit_runs += 1
            self.set_status(str(exc), error=True)

        def finished() -> None:
            self.fit_worker = None
            if self._refit_pending:
                self._refit_timer.start()

        self.fit_worker = start_job(job, title="background model", on_result=done,
                                    on_error=failed, on_finished=finished)
        return self.fit_worker

    def _show_table(self, table) -> None:
        layer = self.samples_layer()
        if layer is None or len(layer.data) != len(table):
            return  # the user changed the points meanwhile: a re-fit is coming
        v = table.values
        label = ["—" if not np.isfinite(row).all() else "/".join(f"{x:.4f}" for x in row)
                 for row in v]
        layer.features = {"value": np.nanmean(v, axis=1) if np.isfinite(v).any() else v[:, 0],
                          "used": table.used.astype(bool), "reason": list(table.reason),
                          "label": label}
        layer.border_color = np.where(table.used[:, None], _USED, _REJECTED)
        layer.text = {"string": "{label}", "size": 7, "color": "white",
                      "anchor": "upper_left"}

    def _show_model(self, coarse: np.ndarray, name: str, *, step=None) -> None:
        """The model as its own layer, placed over the image (reduced grid: scaled)."""
        image = self._image_layer()
        data = np.moveaxis(coarse, 0, -1) if coarse.shape[0] == 3 else coarse[0]
        rgb = coarse.shape[0] == 3
        scale = np.asarray(image.scale[-2:], float) if image is not None else np.ones(2)
        translate = np.asarray(image.translate[-2:], float) if image is not None else np.zeros(2)
        if step is not None:
            ys, xs = step
            sy = (ys[-1] - ys[0]) / max(ys.size - 1, 1)
            sx = (xs[-1] - xs[0]) / max(xs.size - 1, 1)
            scale = scale * np.array([sy, sx])
        lo, hi = float(np.nanmin(coarse)), float(np.nanmax(coarse))
        kwargs = dict(name=f"{name} {MODEL_NAME}", rgb=rgb, scale=tuple(scale),
                      translate=tuple(translate), contrast_limits=(lo, hi if hi > lo else lo + 1e-6),
                      metadata={"background_model": True})
        if not rgb:
            kwargs["colormap"] = "gray"
        full = f"{name} {MODEL_NAME}"
        if full in self.viewer.layers:
            old = self.viewer.layers[full]
            if old.data.shape == data.shape and getattr(old, "rgb", False) == rgb:
                old.data = data
                old.scale, old.translate = kwargs["scale"], kwargs["translate"]
                old.contrast_limits = kwargs["contrast_limits"]
                return
        add_layers(self.viewer, [(data, kwargs, "image")])
        self.viewer.layers.selection.active = self.samples_layer() or self.viewer.layers[full]

    # -- CSV -----------------------------------------------------------------------------
    def load_samples(self, path: str) -> None:
        """Samples from a CSV file (x, y px); bad rows raise BadInputError naming the row."""
        from ..core.background import check_points, read_samples_csv

        pts = read_samples_csv(path)
        layer = self._image_layer()
        if layer is not None:
            check_points(pts, self._shape2d(layer), path)
        self.set_points(pts)

    def save_samples(self, path: str) -> None:
        """The samples (with their last values and use) to CSV."""
        from ..core.background import SampleTable, write_samples_csv

        pts = self.points()
        if pts is None:
            raise ValueError("no samples to save")
        table = self.last_fit[0] if self.last_fit is not None else None
        if table is None or len(table) != len(pts) or not np.allclose(table.points, pts):
            n = len(pts)
            table = SampleTable(x=pts[:, 1], y=pts[:, 0], values=np.full((n, 1), np.nan),
                                used=np.ones(n, bool), spread=np.full(n, np.nan), reason=[""] * n,
                                box_size=self._box_size())
        write_samples_csv(table, path)

    def _load_dialog(self) -> None:
        from ..core.errors import BadInputError

        path, _ = QFileDialog.getOpenFileName(self, "Load samples", "", "CSV (*.csv)")
        if path:
            try:
                self.load_samples(path)
            except BadInputError as exc:
                self.set_status(str(exc), error=True)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save samples", "samples.csv", "CSV (*.csv)")
        if path:
            try:
                self.save_samples(path)
                self.set_status(f"saved {path}")
            except (OSError, ValueError) as exc:
                self.set_status(str(exc), error=True)

    # -- Apply ---------------------------------------------------------------------------
    def extra_inputs(self) -> dict[str, Any]:
        pts = self.points()
        return {} if pts is None else {"points": pts}

    def show_extras(self, result: Any) -> None:
        table = result.extras.get("sample_table")
        if table is not None:
            layer = self.samples_layer(create=True)
            if len(layer.data) != len(table):
                live = self.live_box.isChecked()
                self.live_box.setChecked(False)  # showing the grid is not an edit
                try:
                    self.set_points(table.points)
                finally:
                    self.live_box.setChecked(live)
            self._show_table(table)
        model = result.extras.get("model")
        if model is not None:
            data = model.data if model.is_color else model.data[None]
            self._show_model(data, self._input_name)
