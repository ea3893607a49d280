"""Integration widget: registered frames to a stacked image with rejection maps.

Thin over :func:`napari_astro.pipeline.integrate.integrate_with_params` (what
``napari-astro integrate`` calls): the frames come from
image layers (a registered-stack layer counts as its frames, minus those excluded in
the Registration widget) or from files; the options are the
:class:`~napari_astro.pipeline.steps.IntegrateParams` form; the result and the low/high
rejection maps arrive as layers (the coverage map in the stack layer's metadata,
key ``"coverage"``), the per-frame weights and rejected fractions in a table.
"""

from __future__ import annotations

from typing import Any, Callable

from qtpy.QtWidgets import QLabel

from ..pipeline.steps import IntegrateParams
from ._base import PathList, StepWidget, add_layers, fill_table, make_table
from ._tables import ordered_columns
from .stack import with_coverage

__all__ = ["IntegrationWidget", "per_frame_rows"]


class IntegrationWidget(StepWidget):
    """Dock widget: integrate registered frames (layers or files).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    title = "Integration"
    run_text = "Integrate"

    params_class = IntegrateParams
    # Rejection maps on by default: the widget shows them as layers.
    form_options = {"initial": IntegrateParams(rejection_maps=True)}

    def build(self) -> None:
        self._layout.addWidget(QLabel("Registered frames: pick layers (a stack layer counts "
                                      "as its frames) or add files"))
        self.layers_picker = self.add_picker("layers", multiple=True)
        self.files = PathList("…or files")
        self._layout.addWidget(self.files)

    def build_after_form(self) -> None:
        self.table = make_table()
        self._layout.addWidget(self.table)

    def input_frames(self) -> tuple[list, list | None, int]:
        """Frames (AstroImages from layers, or paths), per-frame stats, reference index.

        Main thread. Stats (FWHM, star count) come with a Registration widget's stack
        layer, for FWHM / star-count weighting.
        """
        from ..core.errors import BadInputError
        from ._layers import included_frame_stats, layer_to_images

        files = self.files.paths()
        if files:
            from ..pipeline.inputs import expand

            return list(expand(files)), None, 0
        frames: list = []
        stats: list | None = []
        reference = 0
        layers = list(self.layers_picker.value or [])
        for layer in layers:
            imgs = layer_to_images(layer)
            s, ref = included_frame_stats(layer)
            if layer is layers[0]:
                reference = ref
            if stats is not None and s is not None:
                stats.extend(s)
            else:
                stats = None
            frames.extend(imgs)
        if not frames:
            raise BadInputError(None, "pick the registered frames (layers) or add files")
        return frames, (stats or None), reference

    def prepare(self) -> Callable[..., Any]:
        frames, stats, reference = self.input_frames()
        params = self.params()

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.integrate import integrate_with_params

            return integrate_with_params(frames, params, reference=reference, frame_stats=stats,
                                         progress=progress, cancel=cancel)

        return job

    def show_result(self, result: Any) -> None:
        from ._layers import image_to_layer_data, mask_layer_data

        layers = [with_coverage(image_to_layer_data(result.image, "integration"),
                                getattr(result, "coverage", None))]
        if getattr(result, "low_map", None) is not None:
            layers.append(mask_layer_data(result.low_map, "rejection low", colormap="blue",
                                          visible=False))
        if getattr(result, "high_map", None) is not None:
            layers.append(mask_layer_data(result.high_map, "rejection high", colormap="red",
                                          visible=False))
        add_layers(self.viewer, layers)
        rows = per_frame_rows(result)
        if rows:
            cols = ordered_columns(rows, hide=("include", "path"))
            fill_table(self.table, rows, cols[:10], details=cols[10:])
        self.set_status(f"{len(rows)} frames integrated")


def per_frame_rows(result: Any) -> list[dict]:
    """Per-frame weight and rejected fractions of an ``IntegrationResult``."""
    names = list(getattr(result, "names", None) or [])
    rows = []
    for i, w in enumerate(result.weights):
        rows.append({"index": i, "frame": names[i] if i < len(names) else f"frame {i}",
                     "weight": float(w), "rejected_low": float(result.rejected_low[i]),
                     "rejected_high": float(result.rejected_high[i])})
    return rows
