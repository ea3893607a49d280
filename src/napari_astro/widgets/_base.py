"""The widget pattern every napari-astro step follows (STYLE.md conventions 3, 6, 8).

A step widget is thin: it reads layers (or files), builds the step's frozen parameter
dataclass from a form, calls the library in napari's ``thread_worker`` and adds the
result as layers when the worker returns. It does no numerics and never blocks the
event loop.

:class:`StepWidget`
    Inputs + form + tables in a scroll area; the Run/Cancel buttons, the progress bar
    (never going backwards) and the status line pinned below it, so they stay visible
    however long the form (a 1920x1080 screen holds every dock). Subclasses implement
    :meth:`StepWidget.prepare` (main thread: read inputs, return the job function) and
    :meth:`StepWidget.show_result` (main thread: add layers).
:class:`ImageStepWidget`
    One image in, one image out (every post-processing step): a layer picker, the
    form, ``compute(image, params, progress=, cancel=)``, and a generic live
    **Preview** of the step on the part of the image in view (or a Shapes
    rectangle). A post-processing widget is typically::

        class ArcsinhWidget(ImageStepWidget):
            step_id = "post.arcsinh"

The pieces live in their own modules and are re-exported here (import them from
either place): :mod:`._form` (:class:`ParamsForm`), :mod:`._jobs` (:func:`start_job`,
:func:`import_object`), :mod:`._controls` (:class:`LayerPicker`, :class:`PathList`,
:func:`fill_table`, :func:`make_table`), :mod:`._plots` (:class:`Sparklines`,
:class:`CurvePlot`), :mod:`._layers` (:func:`add_layers`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from ._controls import LayerPicker, PathList, fill_table, labelled, make_table, stacked
from ._form import ParamsForm
from ._jobs import PROGRESS_STEPS, _job_generator, import_object, start_job
from ._layers import _is_layer, add_layers
from ._plots import CurvePlot, Sparklines

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from ..core.image import AstroImage
    from ..pipeline.params import StepParams

__all__ = ["ParamsForm", "start_job", "StepWidget", "ImageStepWidget", "LayerPicker",
           "PathList", "fill_table", "make_table", "Sparklines", "CurvePlot", "add_layers",
           "import_object", "PREVIEW_LAYER", "PREVIEW_MAX"]

_PROGRESS_STEPS = PROGRESS_STEPS
# Names kept for code that imported the private helpers from here.
_labelled, _stacked = labelled, stacked
_ = (_job_generator, _is_layer)

from ._preview import PREVIEW_DELAY_MS, PREVIEW_LAYER, PREVIEW_MAX, PreviewMixin, _camera


def _register_reader_preference() -> None:
    # Any napari-astro widget being loaded means the plugin is in use: make it the
    # reader of FITS/XISF/raw (see _reader.prefer_napari_astro; never overrides a
    # user's own choice).
    try:
        from .._reader import prefer_napari_astro

        prefer_napari_astro()
    except Exception:  # noqa: BLE001 - a settings problem must not break the widget
        pass


# =========================================================================== step widgets
class StepWidget(QWidget):
    """Base of every napari-astro dock widget: form, Run/Cancel, progress, status.

    Subclasses set :attr:`params_class` (or leave it ``None`` for widgets that build
    several dataclasses) and implement :meth:`prepare` and :meth:`show_result`. They
    add their own controls to ``self._layout`` (inside the scroll area) in
    :meth:`build` (above the form) and :meth:`build_after_form` (below it).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Injected by napari (a proxy when created from the plugin menu).
    """

    params_class: ClassVar["type[StepParams] | None"] = None
    #: ``ParamsForm`` keyword arguments (choices, options, exclude, initial).
    form_options: ClassVar[dict] = {}
    title: ClassVar[str] = ""
    run_text: ClassVar[str] = "Run"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _register_reader_preference()
        self.viewer = viewer
        self.worker: Any = None
        self.last_result: Any = None
        self.last_error: BaseException | None = None
        self._pickers: list[LayerPicker] = []
        self._t0 = time.monotonic()
        self.setObjectName(type(self).__name__)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(4)
        # Everything but the run controls scrolls: a long form (Stack, Calibration)
        # must never push Run/Cancel below the screen.
        self.scroll = QScrollArea()
        self.scroll.setObjectName("scroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.body = QWidget()
        self.body.setObjectName("body")
        self._layout = QVBoxLayout(self.body)
        self._layout.setContentsMargins(2, 2, 2, 2)
        self.scroll.setWidget(self.body)
        outer.addWidget(self.scroll, 1)
        self.form: ParamsForm | None = None
        self.build()
        if self.params_class is not None:
            self.form = ParamsForm(self.params_class, **self.form_options)
            self._layout.addWidget(self.form.native)
        self.build_after_form()
        self._layout.addStretch(1)
        self.footer = QWidget()
        self.footer.setObjectName("footer")
        self._footer_layout = QVBoxLayout(self.footer)
        self._footer_layout.setContentsMargins(0, 0, 0, 0)
        self._build_run_row()
        outer.addWidget(self.footer, 0)
        self._fit_width()
        # Keep pickers current when the widget is not docked by napari (which
        # connects reset_choices itself for docked widgets).
        events = getattr(getattr(viewer, "layers", None), "events", None)
        if events is not None:
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self.reset_choices)

    def _fit_width(self) -> None:
        # The scroll area scrolls vertically; it should not need to scroll sideways.
        # A long one-line label sets the body's minimum width to its whole text: wrap
        # the long ones (form labels are short and stay on one line).
        for label in self.body.findChildren(QLabel):
            if not label.wordWrap() and len(label.text()) > 40:
                label.setWordWrap(True)
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        need = self.body.minimumSizeHint().width() + bar + 4
        # At least a readable form, at most a third of a 1920 px window.
        self.scroll.setMinimumWidth(min(max(need, 380), 720))

    # -- hooks for subclasses ----------------------------------------------------
    def build(self) -> None:
        """Add input widgets above the form (``self._layout``)."""

    def build_after_form(self) -> None:
        """Add widgets between the form and the Run row (tables, plots)."""

    def build_footer(self, row: QHBoxLayout) -> None:
        """Add controls to the pinned Run row (after Run and Cancel)."""

    def prepare(self) -> Callable[..., Any]:
        """Main thread: read inputs and params; return ``fn(progress=, cancel=)``.

        Raise :class:`~napari_astro.core.errors.BadInputError` for bad input: it is
        shown in the status line and nothing runs.
        """
        raise NotImplementedError

    def show_result(self, result: Any) -> None:
        """Main thread: turn the job's result into layers (and tables)."""

    # -- layout helpers ------------------------------------------------------------
    def add_picker(self, label: str = "image", **kwargs: Any) -> LayerPicker:
        picker = LayerPicker(self.viewer, label, **kwargs)
        self._pickers.append(picker)
        self._layout.addWidget(labelled(label, picker.native) if not kwargs.get("multiple")
                               else stacked(label, picker.native))
        return picker

    def reset_choices(self, *_: Any) -> None:
        """Refresh layer pickers (napari calls this when layers change)."""
        for picker in self._pickers:
            try:
                picker.reset_choices()
            except RuntimeError:  # the Qt widget was deleted (dock closed)
                pass

    def _build_run_row(self) -> None:
        row = QHBoxLayout()
        self.run_button = QPushButton(self.run_text)
        self.run_button.setObjectName("run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        self.build_footer(row)
        self._footer_layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progress")
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self._footer_layout.addWidget(self.progress_bar)
        self.status = QLabel("")
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._footer_layout.addWidget(self.status)

    # -- running -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def params(self, **fixed: Any) -> "StepParams":
        """The step's parameter dataclass as the form shows it."""
        assert self.form is not None
        return self.form.value(**fixed)

    def set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        self.status.setStyleSheet("color: #ff6b6b;" if error else "")

    def run(self) -> Any:
        """Start the job (Run button). Returns the worker, or None if input is bad."""
        from ..core.errors import BadInputError

        if self.running:
            return self.worker
        self.last_result = None
        self.last_error = None
        try:
            fn = self.prepare()
        except (BadInputError, ValueError) as exc:
            self.last_error = exc
            self.set_status(str(exc), error=True)
            return None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setValue(0)
        self.set_status("running…")
        self._t0 = time.monotonic()
        self.worker = start_job(fn, title=self.title or type(self).__name__,
                                on_progress=self._on_progress, on_result=self._on_result,
                                on_error=self._on_error, on_finished=self._on_finished)
        return self.worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress check (Cancel button)."""
        if self.worker is not None:
            self.worker.cancel_token.cancel()
            self.set_status("cancelling…")

    def _on_progress(self, frac: float, total: float, message: str) -> None:
        if self.worker is None:  # a late report after the job ended
            return
        # Never backwards: a multi-stage job restarting its count at 0 for the next
        # stage (or a late report) must not make the bar jump back.
        value = int(round(frac * PROGRESS_STEPS))
        if value > self.progress_bar.value():
            self.progress_bar.setValue(value)
        if message:
            self.set_status(message)

    def _on_result(self, result: Any) -> None:
        self.last_result = result
        self.progress_bar.setValue(PROGRESS_STEPS)
        self.set_status("")
        try:
            self.show_result(result)
        except Exception as exc:  # noqa: BLE001 - show it, do not crash napari
            self._on_error(exc)
            return
        elapsed = f"{time.monotonic() - self._t0:.1f} s"
        summary = self.status.text()  # show_result may have set a summary
        self.set_status(f"{summary} ({elapsed})" if summary else f"done in {elapsed}")

    def _on_error(self, exc: BaseException) -> None:
        from ..core.errors import BadInputError
        from ..core.progress import Cancelled

        self.last_error = exc
        if isinstance(exc, Cancelled):
            self.set_status("cancelled")
        elif isinstance(exc, BadInputError):
            self.set_status(str(exc), error=True)
        else:
            self.set_status(f"failed: {type(exc).__name__}: {exc}", error=True)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


# =========================================================================== one image in/out
class ImageStepWidget(PreviewMixin, StepWidget):
    """One image layer in, one image layer out: the post-processing step pattern.

    Set :attr:`step_id` (a step of :mod:`napari_astro.pipeline.registry`): the form
    comes from its params, the job runs :func:`registry.run_step` (HISTORY and the mask
    handled there), the result is added as ``"<input> [<STEP_ID>]"`` (updated in place
    on a re-run). Hooks: :meth:`extra_inputs` (main thread: the step's extra inputs,
    e.g. a Points layer's coordinates), :meth:`preview_inputs` (the same, cut to the
    preview region) and :meth:`show_extras` (main thread: layers for
    ``StepResult.extras``). A mask picker (an optional image layer, values 0..1) is
    offered when the step is maskable.

    **Live preview**: with *Preview* ticked, every form edit (debounced by
    :data:`PREVIEW_DELAY_MS`, a running preview cancelled) runs :meth:`compute` on a
    region -- the Shapes rectangle picked under "preview region", else the part of
    the image in view, at most :data:`PREVIEW_MAX` px square around the view centre --
    and shows it as the :data:`PREVIEW_LAYER` layer translated onto that region.
    Set :attr:`previewable` False for steps whose result is not a same-place image.

    The older form (``params_class`` + ``function = "module:name"`` called as
    ``function(image, params, progress=, cancel=)``) still works.
    """

    step_id: ClassVar["str | None"] = None
    function: ClassVar["str | None"] = None
    run_text = "Apply"
    previewable: ClassVar[bool] = True

    # The annotation must not be quoted (with ``from __future__ import annotations`` a
    # quoted one becomes "'napari.viewer.Viewer'", which napari cannot resolve, and
    # then it does not inject the viewer when docking the widget).
    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        if self.step_id is not None and self.params_class is None:
            from ..pipeline.registry import get_step

            step = get_step(self.step_id)
            type(self).params_class = step.params
            if not type(self).title:
                type(self).title = step.title
        self.preview_worker: Any = None
        self.preview_region: tuple[int, int, int, int] | None = None
        self.preview_error: BaseException | None = None
        self.preview_runs = 0
        super().__init__(viewer, parent)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.update_preview)
        self._sync_link_box()
        if self.form is not None:
            self.form.connect(self.schedule_preview)
        self.image_picker.widget.changed.connect(self.schedule_preview)
        camera = _camera(viewer)
        if camera is not None:  # a pan/zoom moves the region in view
            camera.events.center.connect(self._camera_moved)
            camera.events.zoom.connect(self._camera_moved)

    @property
    def step(self):
        from ..pipeline.registry import get_step

        return get_step(self.step_id) if self.step_id else None

    def build(self) -> None:
        self.image_picker = self.add_picker("image")
        # The display of a colour input: one auto-stretch per channel (default) or one
        # for all (shows a colour cast as it is). Display only: the data are not changed.
        self.link_box = QCheckBox("link colour channels in the display")
        self.link_box.setObjectName("link_display")
        self.link_box.setToolTip("off: each channel of the picked colour layer is auto-"
                                 "stretched on its own (a cast is hidden); on: one stretch "
                                 "for all channels. Display only, the data stay linear.")
        self.link_box.toggled.connect(self._link_toggled)
        self._layout.addWidget(self.link_box)
        self.image_picker.widget.changed.connect(self._sync_link_box)
        step = self.step
        self.mask_picker = None
        if step is not None and step.maskable:
            self.mask_picker = self.add_picker("mask", allow_none=True)
            self.mask_picker.widget.tooltip = ("optional: an image layer (values 0..1, same "
                                               "size) through which the step is applied")
            self.mask_picker.value = None

    def build_after_form(self) -> None:
        if not self.previewable:
            self.region_picker = None
            return
        self.region_picker = self.add_picker("preview region", layer_type="shapes",
                                             allow_none=True)
        self.region_picker.widget.tooltip = (
            "preview on this Shapes layer's last rectangle; none = the part of the image "
            f"in view (at most {PREVIEW_MAX}x{PREVIEW_MAX} px)")
        self.region_picker.value = None
        self.region_picker.widget.changed.connect(self.schedule_preview)

    def build_footer(self, row: QHBoxLayout) -> None:
        self.preview_box = QCheckBox("Preview")
        self.preview_box.setObjectName("preview")
        self.preview_box.setToolTip(
            "run the step live on the region in view (or the preview-region rectangle) "
            "whenever a value changes; the result is the 'preview' layer")
        self.preview_box.setVisible(self.previewable)
        self.preview_box.toggled.connect(self._preview_toggled)
        row.addWidget(self.preview_box)

    # -- inputs ------------------------------------------------------------------------
    def _sync_link_box(self, *_: Any) -> None:
        layer = self.image_picker.value
        rgb = bool(getattr(layer, "rgb", False))
        self.link_box.setEnabled(rgb)
        mode = ((getattr(layer, "metadata", {}) or {}).get("astro") or {}).get("display") or {}
        self.link_box.blockSignals(True)
        self.link_box.setChecked(rgb and mode.get("mode") == "linked")
        self.link_box.blockSignals(False)

    def _link_toggled(self, on: bool) -> None:
        from ._layers import set_linked_display

        layer = self.image_picker.value
        if layer is not None and getattr(layer, "rgb", False):
            set_linked_display(layer, on)

    def input_image(self) -> "AstroImage":
        from ..core.errors import BadInputError
        from ._layers import layer_to_image

        layer = self.image_picker.value
        if layer is None:
            raise BadInputError(None, "pick an image layer first")
        return layer_to_image(layer)

    def input_mask(self) -> "tuple[Any, str | None]":
        """Main thread: the mask layer's data as (H, W) float32 in [0, 1], and its name."""
        import numpy as np

        if self.mask_picker is None or self.mask_picker.value is None:
            return None, None
        layer = self.mask_picker.value
        data = np.asarray(layer.data, dtype=np.float32)
        if data.ndim == 3:
            data = data.mean(axis=-1 if getattr(layer, "rgb", False) else 0)
        return np.clip(data, 0.0, 1.0), layer.name

    def extra_inputs(self) -> dict[str, Any]:
        """Main thread: the step's extra inputs (``{"points": array}``...)."""
        return {}

    # -- the step ----------------------------------------------------------------------
    def compute(self, image: "AstroImage", params: "StepParams", *, progress: Any = None,
                cancel: Any = None, mask: Any = None, mask_spec: str | None = None,
                **inputs: Any) -> Any:
        """Worker thread: the library call (no Qt here)."""
        if self.step_id is not None:
            from ..pipeline.registry import run_step

            return run_step(self.step_id, image, params, mask=mask, mask_spec=mask_spec,
                            progress=progress, cancel=cancel, **inputs)
        if self.function is None:
            raise NotImplementedError(f"{type(self).__name__} sets no step_id or function")
        # Looked up on the class: a plain function stored as a class attribute must
        # not become a bound method.
        return import_object(type(self).function)(image, params, progress=progress, cancel=cancel)

    def prepare(self) -> Callable[..., Any]:
        image = self.input_image()
        params = self.params()
        self._input_name = self.image_picker.value.name
        mask, mask_spec = self.input_mask()
        kwargs = dict(self.extra_inputs())
        if mask is not None:
            kwargs.update(mask=mask, mask_spec=mask_spec)

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            return self.compute(image, params, progress=progress, cancel=cancel, **kwargs)

        return job

    def result_name(self) -> str:
        step = getattr(self.params_class, "STEP_ID", "") or type(self).__name__
        return f"{self._input_name} [{step}]"

    def show_result(self, result: Any) -> None:
        from ..pipeline.registry import StepResult
        from ._layers import image_to_layer_data

        image = result.image if isinstance(result, StepResult) else result
        add_layers(self.viewer, [image_to_layer_data(image, self.result_name())])
        # The preview showed this very result on a region: it is stale now.
        self._remove_preview_layer()
        if isinstance(result, StepResult):
            self.show_extras(result)
            if result.messages:
                self.set_status("; ".join(result.messages))

    def show_extras(self, result: Any) -> None:
        """Main thread: layers or tables for ``result.extras`` (override)."""

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self._preview_timer.stop()
        self._cancel_preview()
        super().closeEvent(event)

