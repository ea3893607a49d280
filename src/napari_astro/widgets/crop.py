"""Crop dock widget: draw the box as a Shapes rectangle, type it, or press Auto.

The box field of the form (``x0, y0, x1, y1`` px, end-exclusive) is what runs; a
rectangle drawn on the "crop box" Shapes layer fills it, and Auto fills both with
the largest box every frame covered (the coverage map in the image layer's
``metadata["coverage"]`` or beside its file, else the NaN/zero/low-signal borders).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QPushButton

from ._base import ImageStepWidget

__all__ = ["CropWidget", "SHAPES_NAME", "box_from_vertices", "vertices_from_box"]

SHAPES_NAME = "crop box"


def box_from_vertices(vertices: np.ndarray, shape2d: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` px of a rectangle's vertices ``(4, 2)`` (row, col) in the
    image's data coordinates. napari puts pixel centres on integers, so a pixel's
    edges are at +-0.5: the box holds the pixels whose centres lie inside."""
    v = np.asarray(vertices, float).reshape(-1, 2)[:, -2:]
    h, w = shape2d
    y0, x0 = np.floor(v.min(axis=0) + 0.5).astype(int)
    y1, x1 = np.floor(v.max(axis=0) + 0.5).astype(int)
    return (int(np.clip(x0, 0, w)), int(np.clip(y0, 0, h)), int(np.clip(x1, 0, w)),
            int(np.clip(y1, 0, h)))


def vertices_from_box(box) -> np.ndarray:
    """The rectangle (row, col) vertices on the pixel edges of ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    return np.array([[y0 - 0.5, x0 - 0.5], [y0 - 0.5, x1 - 0.5], [y1 - 0.5, x1 - 0.5],
                     [y1 - 0.5, x0 - 0.5]], float)


class CropWidget(ImageStepWidget):
    """Crop the picked image to the box (typed, drawn or automatic)."""

    step_id = "post.crop"
    previewable = False

    def build(self) -> None:
        super().build()
        row = QHBoxLayout()
        self.draw_button = QPushButton("Draw box")
        self.draw_button.setObjectName("draw_box")
        self.draw_button.setToolTip(f"add the '{SHAPES_NAME}' Shapes layer in rectangle mode: "
                                    "drag a rectangle on the image; the box field follows")
        self.draw_button.clicked.connect(self.start_drawing)
        self.auto_button = QPushButton("Auto")
        self.auto_button.setObjectName("auto_box")
        self.auto_button.setToolTip("propose the largest box every frame covered (coverage map, "
                                    "else the NaN/zero/low-signal borders)")
        self.auto_button.clicked.connect(self.auto)
        row.addWidget(self.draw_button)
        row.addWidget(self.auto_button)
        self._layout.addLayout(row)
        self._shapes = None

    # -- the Shapes layer ------------------------------------------------------------
    def shapes_layer(self, *, create: bool = False):
        """The "crop box" Shapes layer (made when ``create``)."""
        layers = self.viewer.layers
        if SHAPES_NAME in layers:
            layer = layers[SHAPES_NAME]
        elif create:
            image = self.image_picker.value
            kw = {}
            if image is not None:  # draw in the image's coordinates
                kw = dict(scale=image.scale[-2:], translate=image.translate[-2:])
            layer = self.viewer.add_shapes(name=SHAPES_NAME, edge_color="yellow", edge_width=2,
                                           face_color="transparent", **kw)
        else:
            return None
        if layer is not self._shapes:
            self._shapes = layer
            layer.events.data.connect(self._shapes_changed)
        return layer

    def start_drawing(self) -> None:
        layer = self.shapes_layer(create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def _image_shape(self) -> tuple[int, int] | None:
        layer = self.image_picker.value
        if layer is None:
            return None
        shape = layer.data.shape
        return tuple(shape[:2]) if getattr(layer, "rgb", False) else tuple(shape[-2:])

    def _shapes_changed(self, event: Any = None) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(getattr(action, "value", action)) not in ("added", "changed"):
            return
        box = self.drawn_box()
        if box is not None:
            self.form["box"].value = ", ".join(map(str, box))

    def drawn_box(self) -> tuple[int, int, int, int] | None:
        """The box of the last rectangle on the Shapes layer (image pixels), or None."""
        layer = self.shapes_layer()
        shape = self._image_shape()
        if layer is None or shape is None or not len(layer.data):
            return None
        verts = np.asarray(layer.data[-1])[:, -2:]
        image = self.image_picker.value
        # Shapes data coordinates -> world -> the image's data coordinates.
        world = verts * np.asarray(layer.scale[-2:]) + np.asarray(layer.translate[-2:])
        pix = (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
        return box_from_vertices(pix, shape)

    def show_box(self, box) -> None:
        """Draw ``box`` as the Shapes layer's only rectangle."""
        layer = self.shapes_layer(create=True)
        image = self.image_picker.value
        verts = vertices_from_box(box)
        world = verts * np.asarray(image.scale[-2:]) + np.asarray(image.translate[-2:])
        data = (world - np.asarray(layer.translate[-2:])) / np.asarray(layer.scale[-2:])
        layer.data = [data]
        layer.shape_type = ["rectangle"]

    # -- Auto --------------------------------------------------------------------------
    def coverage(self) -> np.ndarray | None:
        """The coverage map: the layer's ``metadata["coverage"]`` (an array or a file
        name), else the file beside the image's own (COVERAGE key or
        ``<stem>_coverage.fits``)."""
        from ..pipeline.post.crop import find_coverage_file

        layer = self.image_picker.value
        if layer is None:
            return None
        cov = layer.metadata.get("coverage")
        if cov is None:
            astro = layer.metadata.get("astro") or {}
            if astro.get("path"):
                cov = find_coverage_file(astro["path"], astro.get("header"))
        if isinstance(cov, str):
            from ..core.io import read_image

            cimg = read_image(cov)
            cov = cimg.luminance() if cimg.is_color else cimg.data
        return None if cov is None else np.asarray(cov)

    def auto(self) -> tuple[int, int, int, int] | None:
        """Fill the box field (and the rectangle) with the automatic box."""
        from ..core.crop import auto_box
        from ..core.errors import BadInputError

        try:
            image = self.input_image()
            params = self.params(box=None)
            box = auto_box(image, self.coverage(), low_signal=params.low_signal)
        except (BadInputError, ValueError) as exc:
            self.set_status(str(exc), error=True)
            return None
        self.form["box"].value = ", ".join(map(str, box))
        self.show_box(box)
        w, h = box[2] - box[0], box[3] - box[1]
        self.set_status(f"automatic box {w}x{h} px")
        return box

    # -- running -----------------------------------------------------------------------
    def extra_inputs(self) -> dict[str, Any]:
        if self.form["box"].value:
            return {}
        cov = self.coverage()
        return {} if cov is None else {"coverage": cov}

    def show_extras(self, result: Any) -> None:
        layer = self.shapes_layer()
        if layer is not None:
            layer.visible = False  # the box now is the whole result
