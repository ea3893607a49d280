"""Export dock widget: write the selected layer as JPEG/PNG/TIFF/XISF/FITS.

The form is ``post.export``'s parameters (max size, bits, JPEG quality, ICC); the
file name (its extension is the format) is picked here. The job runs the step
(downscale) and the writer in a worker (:func:`napari_astro.core.io.export.export`);
the file is written atomically and an existing one only replaced when asked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLineEdit,
                            QPushButton, QWidget)

from ._base import StepWidget
from ._controls import labelled

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["ExportWidget"]

#: Format shown in the combo box -> extension written.
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "XISF": ".xisf", "FITS": ".fits"}


class ExportWidget(StepWidget):
    """Write the picked image layer to a file (format from the extension)."""

    title = "Export"
    run_text = "Export"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        from ..pipeline.registry import get_step

        type(self).params_class = get_step("post.export").params
        super().__init__(viewer, parent)

    def build(self) -> None:
        self.image_picker = self.add_picker("image")
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        self.path_edit = QLineEdit()
        self.path_edit.setObjectName("export_path")
        self.path_edit.setPlaceholderText("output file (.jpg .png .tif .xisf .fits)")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        lay.addWidget(self.path_edit, 1)
        lay.addWidget(self.browse_button)
        self._layout.addWidget(labelled("file", row))
        self.format_combo = QComboBox()
        self.format_combo.setObjectName("export_format")
        self.format_combo.addItems(list(FORMATS))
        self.format_combo.setToolTip("sets the file name's extension")
        self.format_combo.currentTextChanged.connect(self._format_changed)
        self._layout.addWidget(labelled("format", self.format_combo))
        self.overwrite_box = QCheckBox("replace an existing file")
        self.overwrite_box.setObjectName("export_overwrite")
        self._layout.addWidget(self.overwrite_box)
        self.last_path: str | None = None

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path_edit.text(),
                                              "Pictures and images (*.jpg *.png *.tif *.xisf *.fits)")
        if path:
            self.path_edit.setText(path)

    def _format_changed(self, name: str) -> None:
        text = self.path_edit.text().strip()
        if text:
            self.path_edit.setText(os.path.splitext(text)[0] + FORMATS[name])

    def prepare(self) -> Callable[..., Any]:
        from ..core.errors import BadInputError
        from ..pipeline.post.export import check_export
        from ..pipeline.stepcli import check_output_path
        from ._layers import layer_to_image

        layer = self.image_picker.value
        if layer is None:
            raise BadInputError(None, "pick an image layer first")
        path = self.path_edit.text().strip()
        if not path:
            raise BadInputError("file", "give an output file name")
        path = os.path.abspath(os.path.expanduser(path))
        overwrite = self.overwrite_box.isChecked()
        check_output_path(path, overwrite=overwrite)
        params = self.params()
        check_export(path, params)
        image = layer_to_image(layer)

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.post.export import write_export
            from ..pipeline.registry import run_step

            result = run_step("post.export", image, params, progress=progress, cancel=cancel)
            write_export(result.image, path, params, overwrite=overwrite)
            return path, result.image.shape2d

        return job

    def show_result(self, result: Any) -> None:
        path, (h, w) = result
        self.last_path = path
        self.set_status(f"wrote {path} ({w}x{h} px)")
