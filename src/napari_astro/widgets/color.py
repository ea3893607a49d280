"""The colour calibration dock (``post.color``).

The form (method, white reference, advanced: min stars, solve time limit) comes from
the step's params. Optional inputs: a Shapes layer whose last rectangle is pure
background (neutralisation region), or a Points layer of background samples. After a
run the stars used by the fit are shown as a Points layer (green circles; photometric:
coloured by their catalogue B-V) and the fitted factors, background levels and the
plate solution are shown in the dock. No numerics here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QLabel

from ._base import ImageStepWidget
from ._layers import add_layers

__all__ = ["ColorWidget", "STARS_SUFFIX"]

#: Name suffix of the matched-stars Points layer.
STARS_SUFFIX = " [colour stars]"


class ColorWidget(ImageStepWidget):
    """Neutralise the background and white-balance an RGB image (photometric or basic)."""

    step_id = "post.color"
    run_text = "Calibrate"
    previewable = False  # a photometric run plate-solves the whole field

    def build_after_form(self) -> None:
        super().build_after_form()
        self.region_layer_picker = self.add_picker("background region", layer_type="shapes",
                                                   allow_none=True)
        self.region_layer_picker.widget.tooltip = (
            "optional: a Shapes layer whose last rectangle is pure background (the "
            "neutralisation reference); none = the whole image's background")
        self.region_layer_picker.value = None
        self.samples_picker = self.add_picker("background samples", layer_type="points",
                                              allow_none=True)
        self.samples_picker.widget.tooltip = ("optional: a Points layer of background samples "
                                              "(e.g. the background extraction's)")
        self.samples_picker.value = None
        self.factors_label = QLabel("")
        self.factors_label.setObjectName("factors")
        self.factors_label.setWordWrap(True)
        self._layout.addWidget(self.factors_label)

    # -- inputs ------------------------------------------------------------------------
    def extra_inputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        shapes = self.region_layer_picker.value
        if shapes is not None and len(shapes.data):
            v = np.asarray(shapes.data[-1], dtype=float)[:, -2:]
            y0, x0 = np.floor(v.min(axis=0)).astype(int)
            y1, x1 = np.ceil(v.max(axis=0)).astype(int)
            out["region"] = (int(y0), int(x0), int(y1), int(x1))
        points = self.samples_picker.value
        if points is not None and len(points.data):
            out["points"] = np.asarray(points.data, dtype=float)[:, -2:]
        return out

    # -- result ------------------------------------------------------------------------
    def show_extras(self, result: Any) -> None:
        ex = result.extras
        k, lv = ex.get("factors"), ex.get("levels")
        lines = []
        if k is not None:
            err = ex.get("factor_errors") or (float("nan"), float("nan"))
            lines.append(f"{ex.get('method')}: factors R {k[0]:.4f} (±{100 * err[0]:.1f}%)  "
                         f"G {k[1]:.4f}  B {k[2]:.4f} (±{100 * err[1]:.1f}%)")
        if lv is not None:
            lines.append(f"background before: R {lv[0]:.5g}  G {lv[1]:.5g}  B {lv[2]:.5g}")
        sol = ex.get("solution")
        if sol is not None:
            lines.append(sol.summary())
        self.factors_label.setText("\n".join(lines))
        stars = np.asarray(ex.get("stars", np.zeros((0, 2))), dtype=float).reshape(-1, 2)
        name = f"{self._input_name}{STARS_SUFFIX}"
        if len(stars) == 0:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            return
        bv = np.asarray(ex.get("star_bv", np.full(len(stars), np.nan)), dtype=float)
        props = {"bv": bv if len(bv) == len(stars) else np.full(len(stars), np.nan)}
        kwargs = {"name": name, "size": 14, "face_color": "transparent", "border_width": 0.1,
                  "border_width_is_relative": True, "properties": props, "symbol": "ring"}
        if np.isfinite(props["bv"]).any():
            kwargs["text"] = {"string": "{bv:.2f}", "size": 8, "color": "yellow",
                              "anchor": "upper_left"}
        kwargs["border_color"] = "lime"
        add_layers(self.viewer, [(stars, kwargs, "points")])
