"""Stack widget: a night's folders to a stacked linear master, in one run.

Thin over :mod:`napari_astro.pipeline.stack`: the user adds session folders (or
files), looks at the plan (which frames, which master goes to which light, disk
needed) computed from headers by ``plan_stack``, and runs ``run_stack`` in a worker
with progress in napari's activity dock and a Cancel button. The result, the frame
quality table and the rejection maps arrive as layers / a table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QToolBox,
    QWidget,
)

from ._base import ParamsForm, PathList, StepWidget, add_layers, fill_table, make_table, start_job
from ._tables import plan_rows, quality_columns, quality_rows

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["StackWidget", "with_coverage"]


def with_coverage(layer_data: tuple, coverage: Any) -> tuple:
    """``layer_data`` with the stack's frames-per-pixel map in its metadata
    (``"coverage"``), where the crop step finds it."""
    if coverage is not None:
        data, opts, kind = layer_data
        opts = dict(opts)
        opts["metadata"] = {**opts.get("metadata", {}), "coverage": coverage}
        layer_data = (data, opts, kind)
    return layer_data


class PathEdit(QWidget):
    """A path line edit with a Browse… button (file to save, or folder)."""

    def __init__(self, placeholder: str = "", *, folder: bool = False,
                 file_filter: str = "FITS (*.fits *.fit);;XISF (*.xisf)") -> None:
        super().__init__()
        self.folder, self.file_filter = folder, file_filter
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        lay.addWidget(self.edit, 1)
        b = QPushButton("Browse…")
        b.clicked.connect(self._browse)
        lay.addWidget(b)

    def _browse(self) -> None:
        if self.folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Output file", self.edit.text(),
                                                  self.file_filter)
        if path:
            self.edit.setText(path)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: "str | os.PathLike[str] | None") -> None:
        self.edit.setText("" if path is None else os.fspath(path))


class StackWidget(StepWidget):
    """Dock widget: choose folders, see the plan, stack in a worker, get layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    title = "Stack"
    run_text = "Stack"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        self.plan = None
        self.plan_worker: Any = None
        super().__init__(viewer, parent)

    # -- layout -------------------------------------------------------------------
    def build(self) -> None:
        from ..pipeline.params import Execution
        from ..pipeline.steps import (CalibrateParams, IntegrateParams, MastersParams,
                                      RegisterParams, StackParams)

        self.inputs = PathList("Session folders or files")
        self._layout.addWidget(self.inputs)
        row = QHBoxLayout()
        row.addWidget(QLabel("Output"))
        self.output = PathEdit("stack.fits (default: beside the first input)")
        row.addWidget(self.output, 1)
        self._layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Work folder"))
        self.work_dir = PathEdit("default: <output>.work (resumable)", folder=True)
        row.addWidget(self.work_dir, 1)
        self._layout.addLayout(row)
        self.overwrite = QCheckBox("Replace an existing output")
        self._layout.addWidget(self.overwrite)

        # One form per step dataclass: the same defaults as the CLI and recipes.
        self.forms: dict[str, ParamsForm] = {}
        self.toolbox = QToolBox()
        for key, cls, initial in (
                ("stack", StackParams, None),
                ("masters", MastersParams, None),
                ("calibrate", CalibrateParams, None),
                ("register", RegisterParams, None),
                # Rejection maps on: the widget shows them as layers.
                ("integrate", IntegrateParams, IntegrateParams(rejection_maps=True)),
                # threads / memory / scheduler: how the run executes, not what it computes
                ("execution", Execution, None)):
            form = ParamsForm(cls, initial=initial)
            self.forms[key] = form
            self.toolbox.addItem(form.native, getattr(cls, "TITLE", "") or cls.__name__)
        self._layout.addWidget(self.toolbox)

        self.plan_button = QPushButton("Show plan")
        self.plan_button.clicked.connect(self.show_plan)
        self._layout.addWidget(self.plan_button)

    def build_after_form(self) -> None:
        self.tabs = QTabWidget()
        self.plan_table = make_table()
        self.quality_table = make_table()
        self.tabs.addTab(self.plan_table, "Plan")
        self.tabs.addTab(self.quality_table, "Frame quality")
        self._layout.addWidget(self.tabs)
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self._layout.addWidget(self.plan_label)

    # -- parameters ---------------------------------------------------------------
    def step_params(self) -> dict[str, Any]:
        """The five parameter dataclasses and the Execution as the forms show them."""
        return {key: form.value() for key, form in self.forms.items()}

    def input_paths(self) -> list[str]:
        from ..core.errors import BadInputError

        paths = self.inputs.paths()
        if not paths:
            raise BadInputError(None, "add at least one session folder or file")
        return paths

    def output_path(self) -> Path:
        out = self.output.path()
        if out is None:
            first = Path(self.input_paths()[0])
            base = first if first.is_dir() else first.parent
            out = base.parent / f"{base.name}-stack.fits"
            self.output.set_path(out)
        return out

    # -- plan (dry run) -------------------------------------------------------------
    def show_plan(self) -> Any:
        """Compute the plan in a worker (headers only) and show it in the Plan tab."""
        from ..core.errors import BadInputError

        try:
            inputs = self.input_paths()
            p = self.step_params()
        except (BadInputError, ValueError) as exc:
            self.set_status(str(exc), error=True)
            return None

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.stack import plan_stack

            return plan_stack(inputs, stack=p["stack"], masters=p["masters"],
                              calibrate=p["calibrate"])

        self.plan_button.setEnabled(False)
        self.set_status("reading headers…")
        self.plan_worker = start_job(job, title="Stack plan", on_result=self._show_plan,
                                     on_error=self._on_error, on_finished=self._plan_finished)
        return self.plan_worker

    def _plan_finished(self) -> None:
        self.plan_worker = None
        self.plan_button.setEnabled(True)

    def _show_plan(self, plan: Any) -> None:
        self.plan = plan
        rows = []
        for filt, lights in plan.lights_by_filter.items():
            rows.extend(plan_rows(plan.plan_items.get(filt, []), lights))
        fill_table(self.plan_table, rows)
        self.tabs.setCurrentWidget(self.plan_table)
        lines = plan.describe() if hasattr(plan, "describe") else []
        head = [ln for ln in lines if not ln.startswith("  ")]
        self.plan_label.setText("\n".join(head))
        self.set_status(f"plan: {len(rows)} lights")

    # -- run -------------------------------------------------------------------------
    def prepare(self) -> Callable[..., Any]:
        inputs = self.input_paths()
        output = self.output_path()
        p = self.step_params()
        work_dir = self.work_dir.path()
        overwrite = self.overwrite.isChecked()
        maps_dir = None
        if p["integrate"].rejection_maps:
            maps_dir = output.parent / f"{output.stem}-rejection"

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            from ..pipeline.stack import run_stack

            return run_stack(inputs, output, stack=p["stack"], masters=p["masters"],
                             calibrate=p["calibrate"], register=p["register"],
                             integrate=p["integrate"], execution=p["execution"],
                             work_dir=work_dir, overwrite=overwrite,
                             rejection_maps_dir=maps_dir, progress=progress, cancel=cancel)

        return job

    def show_result(self, result: Any) -> None:
        from ._layers import image_to_layer_data, mask_layer_data

        layers = []
        multi = len(result.images) > 1
        for filt, image in result.images.items():
            suffix = f" {filt}" if (multi and filt) else ""
            name = f"stack{suffix}"
            layers.append(with_coverage(image_to_layer_data(image, name),
                                        (result.coverage or {}).get(filt)))
            maps = (result.rejection_maps or {}).get(filt)
            if maps is not None:
                low, high = maps[0], maps[1]
                if low is not None:
                    layers.append(mask_layer_data(low, f"rejection low{suffix}", colormap="blue",
                                                  visible=False))
                if high is not None:
                    layers.append(mask_layer_data(high, f"rejection high{suffix}", colormap="red",
                                                  visible=False))
        add_layers(self.viewer, layers)
        rows = []
        for filt, table in (result.quality or {}).items():
            for r in quality_rows(table):
                if multi:
                    r["filter"] = filt
                rows.append(r)
        if rows:
            shown, hidden = quality_columns(rows)
            if multi and "filter" not in shown:
                shown = ["filter", *shown[:9]]
            fill_table(self.quality_table, rows, shown, details=hidden)
            self.tabs.setCurrentWidget(self.quality_table)
        self.quality = rows
        outputs = ", ".join(str(p) for p in (result.outputs or {}).values())
        self.set_status(f"stacked: {outputs}" if outputs else "stacked")
