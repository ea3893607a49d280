"""The widget pattern every napari-astro step follows (STYLE.md conventions 3, 6, 8).

A step widget is thin: it reads layers (or files), builds the step's frozen parameter
dataclass from a form, calls the library in napari's ``thread_worker`` and adds the
result as layers when the worker returns. It does no numerics and never blocks the
event loop.

Building blocks
---------------
:class:`ParamsForm`
    magicgui fields generated from a :class:`~napari_astro.pipeline.params.StepParams`
    dataclass (bool -> check box, int/float -> spin box, str with choices -> combo box,
    ``Literal[...]`` -> combo box, ``Optional`` -> blank means None, tuples -> "a, b").
    Choices, ranges, labels and tooltips come from the dataclass field's ``metadata``
    (``choices``, ``min``, ``max``, ``step``, ``label``, ``tooltip``) or from the
    ``choices=``/``options=`` arguments.
:func:`start_job`
    Runs ``fn(progress=..., cancel=...)`` in a napari ``thread_worker``; the library's
    progress callback is mapped to worker yields, so napari's activity dock (and the
    widget's own bar) shows progress; a :class:`~napari_astro.core.progress.CancelToken`
    stops it.
:class:`StepWidget`
    Form + Run/Cancel + progress bar + status line. Subclasses implement
    :meth:`StepWidget.prepare` (main thread: read inputs, return the job function) and
    :meth:`StepWidget.show_result` (main thread: add layers).
:class:`ImageStepWidget`
    The one-image-in, one-image-out step (all post-processing steps): a layer picker,
    the form, and ``compute(image, params, progress=, cancel=) -> AstroImage``.
    A post-processing widget is typically::

        class ArcsinhWidget(ImageStepWidget):
            params_class = ArcsinhParams
            function = "napari_astro.core.stretch:arcsinh_stretch"   # f(image, params, *, progress, cancel)

Plus small Qt helpers shared by the widgets: :class:`LayerPicker`,
:class:`PathList`, :func:`fill_table` and :class:`Sparklines`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import queue
import threading
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from ..core.image import AstroImage
    from ..pipeline.params import StepParams

__all__ = ["ParamsForm", "start_job", "StepWidget", "ImageStepWidget", "LayerPicker",
           "PathList", "fill_table", "Sparklines", "add_layers", "import_object"]

_PROGRESS_STEPS = 1000  # resolution of the progress bars
_DONE = object()


# =========================================================================== params form
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolved forward refs: fall back to the raw strings
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    if isinstance(tp, str) and tp.startswith("Optional["):
        return tp[len("Optional["):-1], True
    return tp, False


def _default_step(value: float) -> float:
    if not value:
        return 0.001
    return 10.0 ** math.floor(math.log10(abs(value))) / 10.0


class ParamsForm:
    """magicgui fields for the fields of a step parameter dataclass.

    Parameters
    ----------
    params_class : type of StepParams
        A frozen dataclass (pipeline/steps.py and the post-processing modules).
    choices : mapping, optional
        Field name -> allowed values (a combo box), overriding field metadata.
    options : mapping, optional
        Field name -> extra magicgui options (``min``, ``max``, ``step``,
        ``label``, ``tooltip``, ``widget_type``...).
    exclude : sequence of str
        Fields the widget sets itself (e.g. a reference frame picked elsewhere);
        they keep their default unless passed to :meth:`value`.
    initial : StepParams, optional
        Start values (default: the dataclass defaults).

    Attributes
    ----------
    container : magicgui.widgets.Container
        The form; ``container.native`` is the QWidget.
    """

    def __init__(self, params_class: "type[StepParams]", *, choices: Mapping[str, Sequence] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None, exclude: Sequence[str] = (),
                 initial: "StepParams | None" = None) -> None:
        from magicgui.widgets import Container

        self.params_class = params_class
        self.exclude = set(exclude)
        self._choices = dict(choices or {})
        self._options = {k: dict(v) for k, v in (options or {}).items()}
        self._kinds: dict[str, tuple[str, bool]] = {}
        types = _field_types(params_class)
        widgets = []
        for f in dataclasses.fields(params_class):
            if f.name in self.exclude or not f.init:
                continue
            default = getattr(initial, f.name) if initial is not None else self._default(f)
            widgets.append(self._make_widget(f, types.get(f.name, f.type), default))
        self.container = Container(widgets=widgets, labels=True)
        self.container.native.setObjectName(f"params_{params_class.__name__}")

    @staticmethod
    def _default(f: dataclasses.Field) -> Any:
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            return f.default_factory()  # type: ignore[misc]
        return None

    def _make_widget(self, f: dataclasses.Field, tp: Any, default: Any):
        from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

        meta = dict(f.metadata or {})
        opts = {k: meta[k] for k in ("min", "max", "step", "tooltip") if k in meta}
        opts.update(self._options.get(f.name, {}))
        label = opts.pop("label", meta.get("label", f.name.replace("_", " ")))
        tooltip = opts.pop("tooltip", None)
        widget_type = opts.pop("widget_type", None)
        base, optional = _unwrap_optional(tp)
        choices = self._choices.get(f.name, meta.get("choices"))
        if choices is None and typing.get_origin(base) is typing.Literal:
            choices = typing.get_args(base)
        common = dict(name=f.name, label=label, tooltip=tooltip)
        if widget_type is not None:
            from magicgui.widgets import create_widget

            w = create_widget(value=default, name=f.name, label=label, widget_type=widget_type,
                              options=opts)
            kind = "raw"
        elif choices is not None:
            values = list(choices)
            if optional and None not in values:
                values = [None, *values]
            pairs = [("(auto)" if v is None else str(v), v) for v in values]
            w = ComboBox(choices=pairs, value=default if default in values else values[0], **common)
            kind = "raw"
        elif base in (bool, "bool"):
            w = CheckBox(value=bool(default), **common)
            kind = "raw"
        elif base in (int, "int") and not optional:
            w = SpinBox(value=int(default or 0), min=opts.pop("min", -(2**31) + 1),
                        max=opts.pop("max", 2**31 - 1), step=opts.pop("step", 1), **common)
            kind = "raw"
        elif base in (float, "float") and not optional:
            w = FloatSpinBox(value=float(default or 0.0), min=opts.pop("min", -1e9),
                             max=opts.pop("max", 1e9),
                             step=opts.pop("step", _default_step(float(default or 0.0))), **common)
            kind = "raw"
        else:
            # str, Optional[...] and tuples: free text; blank = None for Optional.
            text = "" if default is None else (", ".join(map(str, default))
                                               if isinstance(default, tuple) else str(default))
            w = LineEdit(value=text, **common)
            kind = "tuple" if isinstance(default, tuple) else ("text")
            if base in (int, "int"):
                kind = "int"
            elif base in (float, "float"):
                kind = "float"
        self._kinds[f.name] = (kind, optional)
        return w

    def __getitem__(self, name: str):
        return self.container[name]

    @property
    def native(self) -> QWidget:
        return self.container.native

    def _read(self, name: str, widget: Any) -> Any:
        kind, optional = self._kinds[name]
        value = widget.value
        if kind == "raw":
            return value
        text = str(value).strip()
        if text == "" and optional:
            return None
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "tuple":
            parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
            out = []
            for p in parts:
                try:
                    out.append(int(p) if p.lstrip("+-").isdigit() else float(p))
                except ValueError:
                    out.append(p)
            return tuple(out)
        return text

    def value(self, **fixed: Any) -> "StepParams":
        """The parameter dataclass built from the form (``fixed`` overrides fields).

        Raises
        ------
        napari_astro.core.errors.BadInputError
            For text that does not parse, naming the field.
        """
        from ..core.errors import BadInputError

        kwargs = {}
        for name in self._kinds:
            try:
                kwargs[name] = self._read(name, self.container[name])
            except ValueError as exc:
                raise BadInputError(name, f"cannot read the value ({exc})") from None
        kwargs.update(fixed)
        return self.params_class(**kwargs)

    def set_value(self, params: "StepParams") -> None:
        """Show ``params`` in the form."""
        for name, (kind, _) in self._kinds.items():
            v = getattr(params, name)
            w = self.container[name]
            if kind == "raw":
                w.value = v
            elif v is None:
                w.value = ""
            elif isinstance(v, tuple):
                w.value = ", ".join(map(str, v))
            else:
                w.value = str(v)


# =========================================================================== worker
def _job_generator(fn: Callable[..., Any], cancel: Any, min_interval: float = 0.05):
    """Run ``fn(progress=, cancel=)`` in a helper thread; yield its progress reports.

    Runs inside napari's worker thread. The library calls ``progress`` from the
    helper thread; reports go through a queue and come out here as yields (the only
    way to turn a callback into a generator without rewriting the library), coalesced
    to one yield per ``min_interval`` seconds so the GUI thread is not flooded.
    """
    q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    box: dict[str, Any] = {}

    def progress(done: float, total: float, message: str = "") -> None:
        q.put((float(done), float(total), str(message)))

    def target() -> None:
        try:
            box["result"] = fn(progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the worker thread
            box["error"] = exc
        finally:
            q.put(_DONE)

    helper = threading.Thread(target=target, name="napari-astro-job", daemon=True)
    helper.start()
    try:
        pending = None
        last_yield = 0.0
        finished = False
        while not finished:
            try:
                item = q.get(timeout=min_interval * 4)
            except queue.Empty:
                item = None
            while item is not None:  # drain: only the newest report matters
                if item is _DONE:
                    finished = True
                    break
                pending = item
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if pending is not None and (finished or now - last_yield >= min_interval):
                last_yield = now
                out, pending = pending, None
                yield out
            elif now - last_yield >= 0.5:
                # Heartbeat: lets the worker notice an abort request between reports.
                last_yield = now
                yield None
        helper.join()
    finally:
        if helper.is_alive():  # the worker was aborted (napari's activity dock): stop the job
            cancel.cancel()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def start_job(fn: Callable[..., Any], *, title: str,
              on_progress: Callable[[float, float, str], None] | None = None,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              cancel: Any = None):
    """Start ``fn(progress=..., cancel=...)`` in napari's thread_worker.

    Parameters
    ----------
    fn : callable
        The library call; must accept keyword arguments ``progress`` and ``cancel``
        (see :mod:`napari_astro.core.progress`) and touch no Qt object.
    title : str
        Shown in napari's activity dock.
    on_progress : callable, optional
        ``(fraction in [0, 1], total, message)`` in the GUI thread.
    on_result, on_error, on_finished : callable, optional
        Called in the GUI thread when the job returns, raises, or ends either way.
    cancel : CancelToken, optional
        Made if not given; available as ``worker.cancel_token``.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        Already started. ``worker.cancel_token.cancel()`` stops the job at the
        library's next check; aborting the worker (napari's activity dock) does too.
    """
    from napari.qt.threading import create_worker

    from ..core.progress import CancelToken

    token = cancel if cancel is not None else CancelToken()
    # With an error handler we show the error ourselves; without one napari re-raises
    # it in the GUI thread (its notification manager shows it).
    worker = create_worker(_job_generator, fn, token, _progress={"desc": title},
                           _start_thread=False, _ignore_errors=on_error is not None)
    worker.cancel_token = token
    pbar = getattr(worker, "pbar", None)
    state = {"n": 0, "returned": False}

    def _returned(_: Any) -> None:
        state["returned"] = True

    def _yielded(item: "tuple[float, float, str] | None") -> None:
        # Heartbeats carry nothing; a report handled after the result is stale.
        if item is None or state["returned"]:
            return
        done, total, message = item
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        # The widget first: updating napari's progress object below can process
        # pending events (the result among them) before it returns.
        if on_progress is not None:
            on_progress(frac, total, message)
        if pbar is not None and not state["returned"]:
            try:
                if pbar.total != _PROGRESS_STEPS:
                    pbar.total = _PROGRESS_STEPS
                n = int(round(frac * _PROGRESS_STEPS))
                if n != state["n"]:
                    pbar.update(n - state["n"])
                    state["n"] = n
                if message:
                    pbar.set_description(f"{title}: {message}"[:80])
            except Exception:  # noqa: BLE001 - a display glitch must not kill the job
                pass

    worker.returned.connect(_returned)
    worker.yielded.connect(_yielded)
    worker.aborted.connect(token.cancel)
    if on_result is not None:
        worker.returned.connect(on_result)
    if on_error is not None:
        worker.errored.connect(on_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def import_object(spec: "str | Callable[..., Any]") -> Callable[..., Any]:
    """``"package.module:name"`` -> the object (lazy import of heavy library code)."""
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _is_layer(layer: Any, layer_type: str) -> bool:
    """``isinstance`` by napari layer type name (works through napari's plugin proxies,
    which forbid private attributes such as ``_type_string``)."""
    import napari.layers

    cls = getattr(napari.layers, layer_type.capitalize(), None)
    return cls is not None and isinstance(layer, cls)


def add_layers(viewer: Any, layer_data: Sequence[tuple], *, replace: bool = True) -> list:
    """Add ``LayerDataTuple`` s to the viewer; a layer of the same name is updated.

    Re-running a step then refreshes its output instead of piling up copies.
    """
    from napari.layers import Layer

    out = []
    for data, kwargs, layer_type in layer_data:
        name = kwargs.get("name")
        old = None
        if replace and name is not None and name in viewer.layers:
            old = viewer.layers[name]
        if (old is not None and layer_type == "image" and _is_layer(old, "image")
                and getattr(old, "rgb", False) == kwargs.get("rgb", False)
                and old.data.ndim == getattr(data, "ndim", -1)):
            old.data = data
            for key in ("metadata", "contrast_limits", "gamma", "colormap", "opacity"):
                if key in kwargs:
                    setattr(old, key, kwargs[key])
            out.append(old)
            continue
        if old is not None:
            viewer.layers.remove(old)
        out.append(viewer.add_layer(Layer.create(data, kwargs, layer_type)))
    return out


# =========================================================================== Qt helpers
class LayerPicker:
    """A combo box (or multi-select list) of the viewer's image layers, kept current.

    Parameters
    ----------
    viewer : napari.Viewer
    label : str
    multiple : bool, default False
        A list with multiple selection instead of a combo box.
    layer_type : str, default "image"
    """

    def __init__(self, viewer: Any, label: str = "image", *, multiple: bool = False,
                 layer_type: str = "image", allow_none: bool = False) -> None:
        from magicgui.widgets import ComboBox, Select

        self.viewer = viewer
        self.layer_type = layer_type
        cls = Select if multiple else ComboBox
        opts: dict[str, Any] = {"choices": self._choices, "label": label, "name": label}
        if not multiple:
            opts["nullable"] = allow_none
        self.widget = cls(**opts)
        if multiple:
            self.widget.native.setMaximumHeight(110)

    def _choices(self, *_: Any) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers
                if _is_layer(layer, self.layer_type)]

    def reset_choices(self, *_: Any) -> None:
        self.widget.reset_choices()

    @property
    def value(self) -> Any:
        return self.widget.value

    @value.setter
    def value(self, layer: Any) -> None:
        self.reset_choices()
        self.widget.value = layer

    @property
    def native(self) -> QWidget:
        return self.widget.native


class PathList(QWidget):
    """A list of input files/folders with Add files… / Add folder… / Remove / Clear.

    ``paths()`` returns them in order; ``set_paths`` / ``add_paths`` for scripts and
    tests. Emits ``changed`` when the list changes.
    """

    changed = Signal()

    def __init__(self, title: str = "Inputs", *, file_filter: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.file_filter = file_filter or ("Images (*.fit *.fits *.fts *.fz *.xisf *.cr2 *.cr3 "
                                           "*.nef *.arw *.dng *.tif *.tiff);;All files (*)")
        self.title = title
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel(f"<b>{title}</b>"))
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMaximumHeight(90)
        lay.addWidget(self.list)
        row = QHBoxLayout()
        for text, slot in (("Add files…", self._add_files), ("Add folder…", self._add_folder),
                           ("Remove", self._remove), ("Clear", self.clear)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        lay.addLayout(row)

    def paths(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def add_paths(self, paths: Sequence["str | os.PathLike[str]"]) -> None:
        have = set(self.paths())
        for p in paths:
            s = os.fspath(p)
            if s not in have:
                self.list.addItem(s)
                have.add(s)
        self.changed.emit()

    def set_paths(self, paths: Sequence["str | os.PathLike[str]"]) -> None:
        self.list.clear()
        self.add_paths(paths)

    def clear(self) -> None:
        self.list.clear()
        self.changed.emit()

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, f"{self.title}: add files", "",
                                                self.file_filter)
        if files:
            self.add_paths(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"{self.title}: add a folder")
        if folder:
            self.add_paths([folder])

    def _remove(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self.changed.emit()


class _NumItem(QTableWidgetItem):
    """Sorts numerically (QTableWidgetItem sorts text: "10" < "9")."""

    def __lt__(self, other: QTableWidgetItem) -> bool:  # type: ignore[override]
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        return super().__lt__(other)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, Path):
        return value.name
    return str(value)


def fill_table(table: QTableWidget, rows: Sequence[Mapping[str, Any]],
               columns: Sequence[str] | None = None, *, checkable: str | None = None) -> None:
    """Show ``rows`` (dicts) in ``table``, sortable, numbers sorted as numbers.

    Parameters
    ----------
    columns : sequence of str, optional
        Keys to show, in order (default: the first row's keys).
    checkable : str, optional
        A bool key shown as a check box in the first column (e.g. "include").
    """
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(columns))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels([c.replace("_", " ") for c in columns])
    for r, row in enumerate(rows):
        for c, key in enumerate(columns):
            value = row.get(key)
            item = _NumItem(_fmt(value))
            item.setData(Qt.ItemDataRole.UserRole,
                         float(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                         else value if isinstance(value, (str,)) else r)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            if key == checkable:
                item.setText("")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if value else Qt.CheckState.Unchecked)
                item.setData(Qt.ItemDataRole.UserRole + 1, r)  # the row's index in `rows`
            if isinstance(value, Path) or (isinstance(value, str) and os.sep in value):
                item.setToolTip(str(value))
            table.setItem(r, c, item)
    table.setSortingEnabled(True)
    table.resizeColumnsToContents()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)


def make_table(min_height: int = 120) -> QTableWidget:
    t = QTableWidget()
    t.setMinimumHeight(min_height)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().setVisible(False)
    return t


class Sparklines(QWidget):
    """Small per-frame line plots (one row per series), drawn with QPainter.

    matplotlib is not a dependency and a full plot widget would be overkill for
    "which frames are bad": each series gets a band with its min/max and the frames
    marked ``excluded`` are drawn in red.
    """

    COLORS = ("#66c2ff", "#ffcc66", "#99e699", "#ff99cc")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[float]] = {}
        self.excluded: set[int] = set()
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_series(self, series: Mapping[str, Sequence[float]], excluded: Sequence[int] = ()) -> None:
        self.series = {k: [float(v) if v is not None else math.nan for v in vals]
                       for k, vals in series.items()}
        self.excluded = set(excluded)
        self.setMinimumHeight(max(60, 42 * len(self.series)))
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if not self.series:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        band = h / len(self.series)
        left, right = 96, 8
        fg = self.palette().windowText().color()
        for k, (name, vals) in enumerate(self.series.items()):
            top = k * band + 4
            bh = band - 10
            finite = [v for v in vals if math.isfinite(v)]
            p.setPen(fg)
            lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
            p.drawText(QRectF(2, top, left - 6, bh), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                       f"{name}\n{_fmt(lo)}–{_fmt(hi)}")
            if len(vals) < 1 or not finite:
                continue
            span = hi - lo or 1.0
            n = len(vals)

            def xy(i: int, v: float) -> QPointF:
                x = left + (w - left - right) * (i / (n - 1) if n > 1 else 0.5)
                y = top + bh - (v - lo) / span * bh
                return QPointF(x, y)

            p.setPen(QPen(QColor("#555555"), 1))
            p.drawLine(QPointF(left, top + bh), QPointF(w - right, top + bh))
            pts = [xy(i, v) for i, v in enumerate(vals) if math.isfinite(v)]
            p.setPen(QPen(QColor(self.COLORS[k % len(self.COLORS)]), 1.6))
            p.drawPolyline(QPolygonF(pts))
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    continue
                bad = i in self.excluded
                p.setBrush(QColor("#ff4444") if bad else QColor(self.COLORS[k % len(self.COLORS)]))
                p.setPen(Qt.PenStyle.NoPen)
                r = 3.5 if bad else 2.2
                p.drawEllipse(xy(i, v), r, r)
        p.end()


# =========================================================================== step widgets
class StepWidget(QWidget):
    """Base of every napari-astro dock widget: form, Run/Cancel, progress, status.

    Subclasses set :attr:`params_class` (or pass ``None`` for widgets that build
    several dataclasses) and implement :meth:`prepare` and :meth:`show_result`.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Injected by napari (a proxy when created from the plugin menu).
    """

    params_class: ClassVar["type[StepParams] | None"] = None
    #: ``ParamsForm`` keyword arguments (choices, options, exclude).
    form_options: ClassVar[dict] = {}
    title: ClassVar[str] = ""
    run_text: ClassVar[str] = "Run"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.worker: Any = None
        self.last_result: Any = None
        self.last_error: BaseException | None = None
        self._pickers: list[LayerPicker] = []
        self.setObjectName(type(self).__name__)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 6, 6, 6)
        self.form: ParamsForm | None = None
        self.build()
        if self.params_class is not None:
            self.form = ParamsForm(self.params_class, **self.form_options)
            self._layout.addWidget(self.form.native)
        self.build_after_form()
        self._build_run_row()
        self._layout.addStretch(1)
        # Keep pickers current when the widget is not docked by napari (which
        # connects reset_choices itself for docked widgets).
        events = getattr(getattr(viewer, "layers", None), "events", None)
        if events is not None:
            for name in ("inserted", "removed", "reordered"):
                getattr(events, name).connect(self.reset_choices)

    # -- hooks for subclasses ----------------------------------------------------
    def build(self) -> None:
        """Add input widgets above the form (``self._layout``)."""

    def build_after_form(self) -> None:
        """Add widgets between the form and the Run row (tables, plots)."""

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
        self._layout.addWidget(_labelled(label, picker.native) if not kwargs.get("multiple")
                               else _stacked(label, picker.native))
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
        self._layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, _PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self._layout.addWidget(self.progress_bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._layout.addWidget(self.status)

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
        self.progress_bar.setValue(int(round(frac * _PROGRESS_STEPS)))
        if message:
            self.set_status(message)

    def _on_result(self, result: Any) -> None:
        self.last_result = result
        self.progress_bar.setValue(_PROGRESS_STEPS)
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


def _labelled(label: str, widget: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(QLabel(label))
    lay.addWidget(widget, 1)
    return box


def _stacked(label: str, widget: QWidget) -> QWidget:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(QLabel(label))
    lay.addWidget(widget)
    return box


class ImageStepWidget(StepWidget):
    """One image layer in, one image layer out: the post-processing step pattern.

    Set :attr:`params_class` and :attr:`function` (``"module:name"``, imported when
    the step runs, called as ``function(image, params, progress=, cancel=)`` and
    returning an :class:`AstroImage`), or override :meth:`compute`. The result is
    added as ``"<input> [<STEP_ID>]"`` (updated in place on a re-run).
    """

    function: ClassVar["str | None"] = None
    run_text = "Apply"

    def build(self) -> None:
        self.image_picker = self.add_picker("image")

    def input_image(self) -> "AstroImage":
        from ..core.errors import BadInputError
        from ._layers import layer_to_image

        layer = self.image_picker.value
        if layer is None:
            raise BadInputError(None, "pick an image layer first")
        return layer_to_image(layer)

    def compute(self, image: "AstroImage", params: "StepParams", *, progress: Any = None,
                cancel: Any = None) -> "AstroImage":
        """Worker thread: the library call (no Qt here)."""
        if self.function is None:
            raise NotImplementedError(f"{type(self).__name__} sets no function")
        # Looked up on the class: a plain function stored as a class attribute must
        # not become a bound method.
        return import_object(type(self).function)(image, params, progress=progress, cancel=cancel)

    def prepare(self) -> Callable[..., Any]:
        image = self.input_image()
        params = self.params()
        self._input_name = self.image_picker.value.name

        def job(*, progress: Any = None, cancel: Any = None) -> "AstroImage":
            return self.compute(image, params, progress=progress, cancel=cancel)

        return job

    def result_name(self) -> str:
        step = getattr(self.params_class, "STEP_ID", "") or type(self).__name__
        return f"{self._input_name} [{step}]"

    def show_result(self, result: "AstroImage") -> None:
        from ._layers import image_to_layer_data

        add_layers(self.viewer, [image_to_layer_data(result, self.result_name())])
