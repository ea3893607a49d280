"""The Masks dock: build a luminance / inverted / star mask from an image, show it as
an overlay, touch it up with napari's brushes, and use it in any step.

The mask is an **Image layer** (float32 in [0, 1], colormap ``magenta``, opacity 0.5,
``additive`` blending: 0 adds nothing, so the picture shows through unchanged where the
mask is off, and glows magenta where a step will act). Image layers are what every
step widget's *mask* picker lists, so the layer is usable at once.

Painting (napari 0.9): an Image layer cannot be painted, and a Labels layer holds
integers, not a soft mask. So *Paint…* adds a Labels layer of the same size on top,
selected in paint mode with label 1 ("add": the mask becomes 1 there); label 2 is
"erase" (0); napari's brush, fill, eraser and undo all work on it. *Apply paint*
merges the strokes into the mask with feathered edges
(:func:`napari_astro.core.masks.paint_mask`), updates the mask layer in place and
removes the paint layer. The soft values of the computed mask are kept everywhere
the user did not paint, which thresholding the mask into a Labels layer would lose.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton

from ._base import ImageStepWidget
from ._layers import ASTRO_KEY, add_layers, mask_layer_data

__all__ = ["MaskWidget", "MASK_COLORMAP", "MASK_OPACITY", "MASK_BLENDING", "PAINT_SUFFIX"]

MASK_COLORMAP = "magenta"
MASK_OPACITY = 0.5
MASK_BLENDING = "additive"
#: Name suffix of the paint (Labels) layer of a mask layer.
PAINT_SUFFIX = " [paint]"


class MaskWidget(ImageStepWidget):
    """Make a mask from the picked image and show it as an overlay layer."""

    step_id = "post.mask"
    run_text = "Make mask"
    previewable = False

    def build_after_form(self) -> None:
        super().build_after_form()
        self.mask_layer_picker = self.add_picker("paint on", allow_none=True)
        self.mask_layer_picker.widget.tooltip = "the mask layer to touch up with a brush"
        row = QHBoxLayout()
        self.paint_button = QPushButton("Paint…")
        self.paint_button.setObjectName("paint")
        self.paint_button.setToolTip("add a Labels layer to paint on: label 1 adds to the "
                                     "mask, label 2 erases; then Apply paint")
        self.paint_button.clicked.connect(self.start_paint)
        self.apply_paint_button = QPushButton("Apply paint")
        self.apply_paint_button.setObjectName("apply_paint")
        self.apply_paint_button.clicked.connect(self.apply_paint)
        self.feather = QDoubleSpinBox()
        self.feather.setObjectName("feather")
        self.feather.setRange(0.0, 50.0)
        self.feather.setValue(2.0)
        self.feather.setSuffix(" px")
        self.feather.setToolTip("Gaussian sigma of the painted strokes' edges")
        row.addWidget(self.paint_button)
        row.addWidget(self.apply_paint_button)
        row.addWidget(QLabel("feather"))
        row.addWidget(self.feather)
        self._layout.addLayout(row)

    # -- result --------------------------------------------------------------------------
    def prepare(self):
        job = super().prepare()
        self._mask_type = self.params().type  # the form may change while the job runs
        return job

    def result_name(self) -> str:
        return f"{self._input_name} [mask {self._mask_type}]"

    def show_result(self, result: Any) -> None:
        image = result.image
        name = self.result_name()
        data = mask_layer_data(image.data, name, colormap=MASK_COLORMAP, opacity=MASK_OPACITY,
                               blending=MASK_BLENDING, contrast_limits=(0.0, 1.0))
        data[1]["metadata"] = {ASTRO_KEY: {"header": image.header, "history": list(image.history),
                                           "bayer": None, "path": None, "mask": None,
                                           "kind": "mask"}}
        layers = add_layers(self.viewer, [data])
        for layer in layers:  # an updated layer keeps its old blending otherwise
            layer.blending = MASK_BLENDING
            layer.contrast_limits = (0.0, 1.0)
        self.mask_layer_picker.value = layers[0]
        if result.messages:
            self.set_status("; ".join(result.messages))

    # -- painting ------------------------------------------------------------------------
    def _mask_layer(self):
        from ..core.errors import BadInputError

        layer = self.mask_layer_picker.value
        if layer is None:
            raise BadInputError(None, "make a mask (or pick a mask layer under 'paint on') first")
        return layer

    def start_paint(self) -> Any:
        """Add (or select) the paint Labels layer over the picked mask layer."""
        import numpy as np

        from ..core.errors import BadInputError
        from ..core.masks import PAINT_ADD

        try:
            layer = self._mask_layer()
        except BadInputError as exc:
            self.set_status(str(exc), error=True)
            return None
        name = layer.name + PAINT_SUFFIX
        if name in self.viewer.layers:
            paint = self.viewer.layers[name]
        else:
            shape = np.asarray(layer.data).shape[:2]
            paint = self.viewer.add_labels(np.zeros(shape, dtype=np.uint8), name=name,
                                           opacity=0.6, translate=layer.translate,
                                           scale=layer.scale)
        paint.selected_label = PAINT_ADD
        paint.brush_size = 20
        self.viewer.layers.selection.active = paint
        paint.mode = "paint"
        self.set_status("paint with label 1 to add, label 2 to erase; then Apply paint")
        return paint

    def apply_paint(self) -> bool:
        """Merge the paint layer into the mask layer (feathered) and remove it."""
        import numpy as np

        from ..core.errors import BadInputError
        from ..core.masks import paint_mask

        try:
            layer = self._mask_layer()
        except BadInputError as exc:
            self.set_status(str(exc), error=True)
            return False
        name = layer.name + PAINT_SUFFIX
        if name not in self.viewer.layers:
            self.set_status("nothing painted yet: click Paint… first", error=True)
            return False
        paint = self.viewer.layers[name]
        try:
            merged = paint_mask(np.asarray(layer.data), np.asarray(paint.data),
                                feather=self.feather.value())
        except ValueError as exc:
            self.set_status(str(exc), error=True)
            return False
        layer.data = merged
        layer.contrast_limits = (0.0, 1.0)
        meta = layer.metadata.get(ASTRO_KEY) if isinstance(layer.metadata, dict) else None
        if isinstance(meta, dict):
            meta.setdefault("history", []).append("post.mask.paint {\"feather\": %g}"
                                                   % self.feather.value())
        self.viewer.layers.remove(paint)
        self.viewer.layers.selection.active = layer
        self.set_status(f"paint merged into {layer.name}")
        return True
