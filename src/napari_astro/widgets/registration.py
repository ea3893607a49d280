"""Registration widget: align frames on a reference, judge each frame, exclude bad ones.

Thin over :func:`napari_astro.pipeline.register.register_frames`. Shows the frame
quality table (sortable; a check box per frame to keep or exclude it), a small plot of
FWHM, star count and background per frame, the detected stars as a Points layer on
the reference, and the registered frames as one stack layer whose
``metadata["astro"]["include"]`` follows the check boxes -- the Integration widget
stacks only the included frames.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton

from ..pipeline.steps import RegisterParams
from ._base import PathList, Sparklines, StepWidget, add_layers, fill_table, make_table
from ._tables import quality_columns, quality_rows
from .stack import PathEdit

__all__ = ["RegistrationWidget"]

REGISTERED_LAYER = "registered"
STARS_LAYER = "stars (reference)"

# Quality keys plotted per frame (first found of each group).
_PLOT_KEYS = (("FWHM", ("fwhm", "fwhm_px", "median_fwhm")),
              ("stars", ("n_stars", "stars", "star_count")),
              ("background", ("background", "bkg", "sky")))


class RegistrationWidget(StepWidget):
    """Dock widget: register frames (layers or files) and review their quality.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    title = "Registration"
    run_text = "Register"
    params_class = RegisterParams

    def build(self) -> None:
        self.quality: list[dict] = []
        self._frame_names: list[str] = []
        self._layout.addWidget(QLabel("Frames: pick layers (a stack layer counts as its "
                                      "frames) or add files/folders"))
        self.layers_picker = self.add_picker("layers", multiple=True)
        self.files = PathList("…or files")
        self._layout.addWidget(self.files)
        row = QHBoxLayout()
        row.addWidget(QLabel("Save registered frames to"))
        self.out_dir = PathEdit("(optional) folder; empty = keep in memory", folder=True)
        row.addWidget(self.out_dir, 1)
        self._layout.addLayout(row)
        self.overwrite = QCheckBox("Replace existing files in that folder")
        self._layout.addWidget(self.overwrite)

    def build_after_form(self) -> None:
        self.table = make_table(160)
        self.table.itemChanged.connect(self._item_changed)
        self._layout.addWidget(self.table)
        self.plot = Sparklines()
        self._layout.addWidget(self.plot)
        row = QHBoxLayout()
        b = QPushButton("Exclude rejected")
        b.clicked.connect(lambda: self.set_included([bool(r.get("accepted", True))
                                                     for r in self.quality]))
        row.addWidget(b)
        b = QPushButton("Include all")
        b.clicked.connect(lambda: self.set_included([True] * len(self.quality)))
        row.addWidget(b)
        self._layout.addLayout(row)

    # -- inputs -----------------------------------------------------------------------
    def input_frames(self) -> list:
        from ..core.errors import BadInputError
        from ._layers import layer_to_images

        files = self.files.paths()
        if files:
            from ..core.frames import expand_inputs

            return list(expand_inputs(files))
        frames: list = []
        for layer in self.layers_picker.value or []:
            frames.extend(layer_to_images(layer))
        if len(frames) < 2:
            raise BadInputError(None, f"registration needs at least 2 frames, found {len(frames)}")
        return frames

    def prepare(self) -> Callable[..., Any]:
        frames = self.input_frames()
        params = self.params()
        out_dir = self.out_dir.path()
        overwrite = self.overwrite.isChecked()
        from pathlib import Path

        self._frame_names = [Path(f).name if not hasattr(f, "data") else
                             (Path(f.path).name if f.path else f"frame {i}")
                             for i, f in enumerate(frames)]

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.register import register_frames

            result = register_frames(frames, out_dir, params, overwrite=overwrite,
                                     progress=progress, cancel=cancel)
            # Read written frames back here, not in the GUI thread.
            return result, _registered_images(result)

        return job

    # -- results ----------------------------------------------------------------------
    def show_result(self, out: Any) -> None:
        from ._layers import images_to_stack_layer_data

        result, (images, self._stack_rows) = out
        self.result = result

        rows = quality_rows(result.rows)
        for i, r in enumerate(rows):
            r["frame"] = r.get("name") or (self._frame_names[i] if i < len(self._frame_names)
                                           else f"frame {i}")
        self.quality = rows
        # The registered stack holds the accepted frames only (rejected ones have no
        # image); _stack_rows maps stack index -> table row.
        layers = []
        if images:
            data = images_to_stack_layer_data(images, REGISTERED_LAYER)
            astro = data[1]["metadata"]["astro"]
            astro["stats"] = [{"fwhm": rows[i].get("fwhm"), "n_stars": rows[i].get("n_stars")}
                              for i in self._stack_rows]
            ref = result.reference_index
            astro["reference"] = self._stack_rows.index(ref) if ref in self._stack_rows else 0
            layers.append(data)
        stars = result.reference_stars
        if stars is not None and len(stars.x) > 0:
            fwhm = np.nan_to_num(np.asarray(stars.fwhm, dtype=np.float32), nan=3.0)
            coords = np.column_stack([np.asarray(stars.y), np.asarray(stars.x)])
            layers.append((coords, {"name": STARS_LAYER, "size": np.clip(3 * fwhm, 6, 40),
                                    "face_color": "transparent", "border_color": "lime",
                                    "border_width": 0.1, "symbol": "disc",
                                    "features": {"fwhm": fwhm}}, "points"))
        add_layers(self.viewer, layers)
        if images:
            # Show the reference frame under its stars.
            astro = self.viewer.layers[REGISTERED_LAYER].metadata["astro"]
            self.viewer.dims.set_current_step(0, astro["reference"])
        self._fill()
        n_ok = sum(1 for r in rows if r.get("accepted", True))
        self.set_status(f"{n_ok} of {len(rows)} frames accepted")

    def _fill(self) -> None:
        self.table.blockSignals(True)
        # At most 10 columns (no duplicated name/path); the rest in each row's tooltip.
        shown, hidden = quality_columns(self.quality)
        fill_table(self.table, self.quality, shown, checkable="include", details=hidden)
        self.table.blockSignals(False)
        self._sync()

    def _item_changed(self, item: Any) -> None:
        idx = item.data(Qt.ItemDataRole.UserRole + 1)
        if idx is None or not (item.flags() & Qt.ItemFlag.ItemIsUserCheckable):
            return
        self.quality[int(idx)]["include"] = item.checkState() == Qt.CheckState.Checked
        self._sync()

    def included(self) -> list[bool]:
        """Per frame: kept for stacking (the check boxes)."""
        return [bool(r.get("include", True)) for r in self.quality]

    def set_included(self, include: list[bool]) -> None:
        """Set the check boxes (and the registered layer's ``include``)."""
        for r, inc in zip(self.quality, include):
            r["include"] = bool(inc)
        self._fill()

    def _sync(self) -> None:
        include = self.included()
        if REGISTERED_LAYER in self.viewer.layers:
            meta = self.viewer.layers[REGISTERED_LAYER].metadata.get("astro")
            rows = getattr(self, "_stack_rows", [])
            if meta is not None and len(meta.get("include", [])) == len(rows):
                meta["include"] = [include[i] for i in rows]
        series = {}
        for label, keys in _PLOT_KEYS:
            for k in keys:
                if any(k in r for r in self.quality):
                    series[label] = [_num(r.get(k)) for r in self.quality]
                    break
        self.plot.set_series(series, [i for i, inc in enumerate(include) if not inc])


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _registered_images(result: Any) -> tuple[list, list[int]]:
    """Registered frames (in memory, or read back from the output folder) + their rows."""
    out, rows = [], []
    n = len(result.rows)
    images = list(result.images or [None] * n)
    outputs = list(result.outputs or [None] * n)
    for i in range(n):
        img = images[i] if i < len(images) else None
        if img is None and i < len(outputs) and outputs[i] is not None:
            from ..core.io import read_image

            img = read_image(outputs[i])
        if img is not None:
            out.append(img)
            rows.append(i)
    return out, rows
