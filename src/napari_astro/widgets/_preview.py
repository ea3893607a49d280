"""The generic live preview of one-image steps (:class:`ImageStepWidget` uses it).

With *Preview* ticked, every form edit (debounced by :data:`PREVIEW_DELAY_MS`, a
running preview cancelled) runs the widget's ``compute`` on a region -- the Shapes
rectangle picked under "preview region", else the part of the image in view, at
most :data:`PREVIEW_MAX` px square around the view centre -- and shows it as the
:data:`PREVIEW_LAYER` layer translated onto that region. Display only: the input
layer is not changed, and Apply removes the (then stale) preview.
"""

from __future__ import annotations

from typing import Any

from ._jobs import start_job
from ._layers import add_layers

__all__ = ["PreviewMixin", "PREVIEW_LAYER", "PREVIEW_MAX", "PREVIEW_DELAY_MS"]

#: Name of the live preview layer.
PREVIEW_LAYER = "preview"
#: Largest preview region (rows, columns): a step on 600x600 px answers in well under
#: a second for every post step, which keeps the preview "live".
PREVIEW_MAX = 600
#: Debounce of the preview: a burst of edits (dragging a spin box) runs it once.
PREVIEW_DELAY_MS = 300


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    camera = getattr(scene, "camera", None)
    return camera if camera is not None else getattr(viewer, "camera", None)


class PreviewMixin:
    """The preview half of :class:`~napari_astro.widgets._base.ImageStepWidget`.

    Expects of the widget: ``viewer``, ``image_picker``, ``region_picker`` (or None),
    ``preview_box``, ``previewable``, ``title``, ``input_image()``, ``params()``,
    ``input_mask()``, ``extra_inputs()``, ``compute()`` and ``set_status()``.
    """

    preview_worker: Any = None
    preview_region: "tuple[int, int, int, int] | None" = None
    preview_error: "BaseException | None" = None
    preview_runs: int = 0

    def preview_inputs(self, inputs: dict[str, Any],
                       region: tuple[int, int, int, int]) -> dict[str, Any]:
        """The extra inputs cut to a preview region ``(y0, x0, y1, x1)``.

        Generic rules: ``points`` (N, 2 row/col) are shifted into the region and those
        outside dropped; a ``region`` box is intersected; ``coverage`` maps are cut.
        Override for other inputs.
        """
        import numpy as np

        y0, x0, y1, x1 = region
        out = dict(inputs)
        pts = out.get("points")
        if pts is not None:
            p = np.asarray(pts, dtype=float).reshape(-1, 2) - (y0, x0)
            keep = (p[:, 0] >= 0) & (p[:, 0] < y1 - y0) & (p[:, 1] >= 0) & (p[:, 1] < x1 - x0)
            out["points"] = p[keep]
        box = out.get("region")
        if box is not None:
            by0, bx0, by1, bx1 = box
            out["region"] = (max(by0, y0) - y0, max(bx0, x0) - x0,
                             min(by1, y1) - y0, min(bx1, x1) - x0)
        cov = out.get("coverage")
        if cov is not None and np.ndim(cov) == 2:
            out["coverage"] = np.asarray(cov)[y0:y1, x0:x1]
        return out

    # -- live preview ------------------------------------------------------------------
    @property
    def previewing(self) -> bool:
        """True while a preview job runs."""
        return self.preview_worker is not None

    def _preview_toggled(self, on: bool) -> None:
        if on:
            self.schedule_preview()
        else:
            self._preview_timer.stop()
            self._cancel_preview()
            self._remove_preview_layer()

    def _camera_moved(self, *_: Any) -> None:
        # Only the region in view depends on the camera; a Shapes region does not.
        if self.region_picker is None or self.region_picker.value is None:
            self.schedule_preview()

    def schedule_preview(self, *_: Any) -> None:
        """Run the preview after :data:`PREVIEW_DELAY_MS` of quiet (restarts the wait)."""
        try:
            if self.previewable and self.preview_box.isChecked():
                self._preview_timer.start()
        except RuntimeError:  # the widget was deleted
            pass

    def view_region(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)`` of the input layer's pixels in view (data coordinates),
        at most :data:`PREVIEW_MAX` square around the view centre, or the picked
        Shapes layer's last rectangle; clipped to ``shape`` (rows, columns)."""
        import numpy as np

        h, w = int(shape[0]), int(shape[1])
        layer = self.image_picker.value
        box = None
        shapes = self.region_picker.value if self.region_picker is not None else None
        if shapes is not None and len(shapes.data):
            verts = np.asarray(shapes.data[-1], dtype=float)
            if layer is not None:
                try:  # Shapes data -> world -> the image's pixels
                    verts = np.array([np.asarray(layer.world_to_data(shapes.data_to_world(v)))
                                      for v in verts])
                except (ValueError, IndexError):  # dimensionality mismatch: raw coords
                    pass
            verts = verts[:, -2:]
            lo, hi = verts.min(axis=0), verts.max(axis=0)
            box = (lo[0], lo[1], hi[0], hi[1])
        else:
            cam = _camera(self.viewer)
            centre = np.asarray(cam.center, dtype=float)[-2:]
            # napari >= 0.9: the canvas model's size, (height, width) in screen px.
            size = getattr(getattr(self.viewer, "canvas", None), "size", None)
            zoom = float(cam.zoom) or 1.0
            half = (np.asarray(size, dtype=float)[-2:] / zoom / 2.0) if size is not None \
                else np.array([h, w]) / 2.0
            lo_w, hi_w = centre - half, centre + half
            if layer is not None:
                nd = layer.ndim
                pad = [0.0] * (nd - 2)
                lo = np.asarray(layer.world_to_data(pad + list(lo_w)))[-2:]
                hi = np.asarray(layer.world_to_data(pad + list(hi_w)))[-2:]
                c = np.asarray(layer.world_to_data(pad + list(centre)))[-2:]
            else:
                lo, hi, c = lo_w, hi_w, centre
            lo = np.maximum(lo, c - PREVIEW_MAX / 2)
            hi = np.minimum(hi, c + PREVIEW_MAX / 2)
            box = (lo[0], lo[1], hi[0], hi[1])
        y0 = int(np.clip(np.floor(box[0]), 0, h))
        x0 = int(np.clip(np.floor(box[1]), 0, w))
        y1 = int(np.clip(np.ceil(box[2]), 0, h))
        x1 = int(np.clip(np.ceil(box[3]), 0, w))
        if shapes is None:  # rounding outwards must not exceed the cap
            y1, x1 = min(y1, y0 + PREVIEW_MAX), min(x1, x0 + PREVIEW_MAX)
        if y1 - y0 < 8 or x1 - x0 < 8:  # nothing of the image in view: its centre
            cy, cx = h // 2, w // 2
            s = PREVIEW_MAX // 2
            y0, y1, x0, x1 = max(0, cy - s), min(h, cy + s), max(0, cx - s), min(w, cx + s)
        return y0, x0, y1, x1

    def update_preview(self) -> Any:
        """Run the step on the preview region now (cancelling a running preview).

        Returns the preview worker, or None when nothing runs (no input, bad values:
        the problem is shown in the status line).
        """
        from ..core.errors import BadInputError

        self._cancel_preview()
        if not (self.previewable and self.preview_box.isChecked()):
            return None
        try:
            image = self.input_image()
            params = self.params()
            region = self.view_region(image.data.shape[-2:])
            y0, x0, y1, x1 = region
            crop = image.derive(image.data[..., y0:y1, x0:x1].copy(), "preview.region",
                                {"region": [y0, x0, y1, x1]})
            if image.mask is not None:
                crop.mask = image.mask[y0:y1, x0:x1]
            mask, mask_spec = self.input_mask()
            kwargs = self.preview_inputs(dict(self.extra_inputs()), region)
            if mask is not None:
                kwargs.update(mask=mask[y0:y1, x0:x1], mask_spec=mask_spec)
        except (BadInputError, ValueError) as exc:
            self.preview_error = exc
            self.set_status(f"preview: {exc}", error=True)
            return None
        self.preview_region = region
        self.preview_error = None

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            return self.compute(crop, params, progress=progress, cancel=cancel, **kwargs)

        ref: list = []  # the worker, once started

        def done(result: Any) -> None:
            if self.preview_worker is not ref[0]:
                return  # superseded by a newer preview
            self._show_preview(result, region)

        def failed(exc: BaseException) -> None:
            from ..core.progress import Cancelled

            if not isinstance(exc, Cancelled):
                self.preview_error = exc
                self.set_status(f"preview: {exc}", error=True)

        worker = start_job(job, title=f"{self.title or type(self).__name__} preview",
                           on_result=done, on_error=failed,
                           on_finished=lambda: self._preview_finished(ref[0]))
        ref.append(worker)
        self.preview_worker = worker
        self.preview_runs += 1
        return worker

    def _preview_finished(self, worker: Any) -> None:
        if self.preview_worker is worker:
            self.preview_worker = None

    def _cancel_preview(self) -> None:
        if self.preview_worker is not None:
            self.preview_worker.cancel_token.cancel()
            self.preview_worker = None

    def _show_preview(self, result: Any, region: tuple[int, int, int, int]) -> None:
        from ..pipeline.registry import StepResult
        from ._layers import image_to_layer_data

        image = result.image if isinstance(result, StepResult) else result
        y0, x0 = region[0], region[1]
        src = self.image_picker.value
        translate = [0.0] * (2 if image.data.ndim == 2 or image.is_color else image.data.ndim)
        base = list(getattr(src, "translate", [0.0, 0.0]))[-2:] if src is not None else [0.0, 0.0]
        scale = list(getattr(src, "scale", [1.0, 1.0]))[-2:] if src is not None else [1.0, 1.0]
        translate[-2:] = [base[0] + y0 * scale[0], base[1] + x0 * scale[1]]
        data = image_to_layer_data(image, PREVIEW_LAYER, translate=translate, scale=scale)
        data[1]["metadata"]["astro"]["preview"] = True
        data[1]["metadata"]["astro"]["region"] = list(region)
        layers = add_layers(self.viewer, [data])
        for layer in layers:
            layer.translate = translate
        self.set_status(f"preview: {region[2] - region[0]}x{region[3] - region[1]} px at "
                        f"row {y0}, column {x0}")

    def _remove_preview_layer(self) -> None:
        try:
            if PREVIEW_LAYER in self.viewer.layers:
                self.viewer.layers.remove(PREVIEW_LAYER)
        except (RuntimeError, KeyError, ValueError):
            pass
