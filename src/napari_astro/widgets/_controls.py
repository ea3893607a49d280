"""Small Qt controls shared by the widgets: layer pickers, path lists, tables.

No numerics, no library calls: :class:`LayerPicker` (a combo box or multi-select list
of the viewer's layers, kept current), :class:`PathList` (files/folders with Add/Remove
buttons), :func:`fill_table` / :func:`make_table` (sortable tables whose numbers sort
as numbers; long values and extra columns in tooltips) and two layout helpers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._layers import _is_layer

__all__ = ["LayerPicker", "PathList", "fill_table", "make_table", "labelled", "stacked",
           "fmt_value"]


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
        else:
            # A long layer name must not widen the whole dock.
            from qtpy.QtWidgets import QComboBox

            self.widget.native.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.widget.native.setMinimumContentsLength(12)

    def _choices(self, *_: Any) -> list:
        # The live preview layer is a by-product, never an input.
        return [(layer.name, layer) for layer in self.viewer.layers
                if _is_layer(layer, self.layer_type) and not _is_preview(layer)]

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


def _is_preview(layer: Any) -> bool:
    meta = getattr(layer, "metadata", None)
    astro = meta.get("astro") if isinstance(meta, Mapping) else None
    return bool(isinstance(astro, Mapping) and astro.get("preview"))


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
               columns: Sequence[str] | None = None, *, checkable: str | None = None,
               details: Sequence[str] = ()) -> None:
    """Show ``rows`` (dicts) in ``table``, sortable, numbers sorted as numbers.

    Parameters
    ----------
    columns : sequence of str, optional
        Keys to show, in order (default: the first row's keys).
    checkable : str, optional
        A bool key shown as a check box in the first column (e.g. "include").
    details : sequence of str
        Keys not shown as columns but listed in every cell's tooltip (``key: value``
        lines), so a short table loses nothing.
    """
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(columns))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels([c.replace("_", " ") for c in columns])
    for r, row in enumerate(rows):
        tip = "\n".join(f"{k.replace('_', ' ')}: {row[k] if isinstance(row.get(k), (str, Path)) else _fmt(row.get(k))}"
                        for k in details if k in row and row.get(k) is not None)
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
                item.setToolTip(str(value) + ("\n" + tip if tip else ""))
            elif tip:
                item.setToolTip(tip)
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


def labelled(label: str, widget: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(QLabel(label))
    lay.addWidget(widget, 1)
    return box


def stacked(label: str, widget: QWidget) -> QWidget:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(QLabel(label))
    lay.addWidget(widget)
    return box


_labelled, _stacked = labelled, stacked
fmt_value = _fmt
