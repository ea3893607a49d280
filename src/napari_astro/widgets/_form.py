"""The parameter form of every step widget, generated from the step's dataclass.

One form for every widget (STYLE.md convention 3): the fields, their order, labels,
defaults, choices, ranges, units and tooltips all come from
:func:`napari_astro.pipeline.params.field_info`, so the form cannot disagree with the
CLI, recipes or HISTORY. Per field:

==========================  ==================================================
field                       control
==========================  ==================================================
choices / ``Literal``       combo box (``None`` shown as "auto")
``bool``                    check box
``int`` / ``float``         spin box with the field's range, step, decimals and
                            unit as a suffix (``" px"``)
``Optional[int | float]``   an "auto" check box + the spin box (auto = None)
``str`` / ``Optional[str]`` line edit (blank = None for Optional)
``tuple``                   line edit ``"a, b"`` (parsed by the dataclass)
``widget=`` metadata        that magicgui widget type (e.g. ``"FloatSlider"``)
==========================  ==================================================

Every control's tooltip (and its label's) is :meth:`FieldInfo.describe` (help, unit,
range, default); ``advanced=True`` fields sit in a collapsed "Advanced" section.
Plain Qt controls rather than magicgui's: magicgui's integer spin box cannot show a
unit suffix, and a uniform small API (``value``, ``changed``, ``min``/``max``,
``choices``, ``tooltip``, ``native``) keeps the form and its tests simple.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline.params import FieldInfo, StepParams

__all__ = ["ParamsForm", "FieldControl", "float_decimals", "default_step", "AUTO_TEXT"]

#: How ``None`` (the step decides) is shown in every control.
AUTO_TEXT = "auto"
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e9
#: Units short enough for a spin-box suffix; longer ones go into the label.
_SUFFIX_MAX = 8


def default_step(value: float, lo: float | None = None, hi: float | None = None) -> float:
    """A spin-box increment for a float field: a tenth of its order of magnitude.

    ``3.0 -> 0.1``, ``50 -> 1``, ``0.02 -> 0.001``; a default of 0 takes a hundredth
    of the range when it is known (else 0.01).
    """
    if value:
        return 10.0 ** math.floor(math.log10(abs(value))) / 10.0
    if lo is not None and hi is not None and hi > lo:
        return 10.0 ** math.floor(math.log10((hi - lo) / 100.0))
    return 0.01


def float_decimals(*values: float | None, cap: int = 6) -> int:
    """Decimals that show every value exactly (at least 2, at most ``cap``)."""
    need = 2
    for v in values:
        if v is None or not math.isfinite(v):
            continue
        for d in range(need, cap + 1):
            if abs(round(v, d) - v) <= 1e-12 * max(1.0, abs(v)):
                need = max(need, d)
                break
        else:
            need = cap
    return need


class FieldControl(QObject):
    """One field's control: a small uniform API over a Qt (or magicgui) widget.

    Attributes
    ----------
    name : str
    info : FieldInfo
    native : QWidget
        What goes into the form layout.
    kind : str
        ``"choice"``, ``"bool"``, ``"int"``, ``"float"``, ``"text"``, ``"tuple"`` or
        ``"magicgui"``.
    choices : tuple or None
        Values of a combo box (``None`` = auto).
    min, max, step : float or None
        Spin-box range and increment.
    changed : Signal
        Emitted on every edit.
    """

    changed = Signal()

    def __init__(self, info: "FieldInfo", default: Any, *, choices: Sequence | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        opts = dict(options or {})
        self.info = info
        self.name = info.name
        self.optional = info.optional
        self.choices: tuple | None = None
        self.min = opts.pop("min", info.min)
        self.max = opts.pop("max", info.max)
        self.step = opts.pop("step", info.step)
        self.unit = info.unit
        self.label = opts.pop("label", info.label)
        self.tooltip = opts.pop("tooltip", None) or info.describe()
        widget_type = opts.pop("widget_type", info.widget)
        self._auto: QCheckBox | None = None
        choices = choices if choices is not None else info.choices
        base = info.base
        if widget_type is not None:
            self._make_magicgui(widget_type, default, opts)
        elif choices is not None:
            self._make_choice(tuple(choices), default)
        elif base is bool:
            self.kind = "bool"
            self.widget = QCheckBox()
            self.widget.setChecked(bool(default))
            self.widget.toggled.connect(self._emit)
        elif base in (int, float):
            self._make_number(base, default)
        else:
            self.kind = "tuple" if base is tuple else "text"
            self.widget = QLineEdit()
            if self.optional:
                self.widget.setPlaceholderText(AUTO_TEXT)
            self._set_text(default)
            self.widget.textChanged.connect(self._emit)
        if self.kind != "magicgui":
            self.widget.setToolTip(self.tooltip)
        if self._auto is not None:
            self._auto.setToolTip(self.tooltip)
        self.widget.setObjectName(f"field_{self.name}")

    # -- construction ----------------------------------------------------------------
    def _emit(self, *_: Any) -> None:
        self.changed.emit()

    def _make_magicgui(self, widget_type: str, default: Any, opts: dict) -> None:
        from magicgui.widgets import create_widget

        for key in ("min", "max", "step"):
            if getattr(self, key) is not None:
                opts.setdefault(key, getattr(self, key))
        self.kind = "magicgui"
        self._mgui = create_widget(value=default, name=self.name, widget_type=widget_type,
                                   options=opts)
        self._mgui.tooltip = self.tooltip
        self._mgui.changed.connect(self._emit)
        self.widget = self._mgui.native

    def _make_choice(self, values: tuple, default: Any) -> None:
        self.kind = "choice"
        if self.optional and None not in values:
            values = (None, *values)
        self.choices = values
        self.widget = QComboBox()
        self.widget.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.widget.setMinimumContentsLength(8)
        for v in values:
            self.widget.addItem(AUTO_TEXT if v is None else str(v))
        self._set_choice(default)
        self.widget.currentIndexChanged.connect(self._emit)

    def _make_number(self, base: type, default: Any) -> None:
        is_int = base is int
        self.kind = "int" if is_int else "float"
        limit = _INT_LIMIT if is_int else _FLOAT_LIMIT
        lo = -limit if self.min is None else self.min
        hi = limit if self.max is None else self.max
        start = default if default is not None else (self.min if self.min is not None
                                                     else max(lo, min(hi, 0)))
        if is_int:
            spin: QSpinBox | QDoubleSpinBox = QSpinBox()
            spin.setRange(int(max(lo, -limit)), int(min(hi, limit)))
            spin.setSingleStep(int(self.step or 1))
            self.step = spin.singleStep()
        else:
            spin = QDoubleSpinBox()
            if self.step is None:
                self.step = default_step(float(start or 0.0), self.min, self.max)
            decimals = self.info.decimals if self.info.decimals is not None else \
                float_decimals(start, self.step, self.min, self.max)
            spin.setDecimals(decimals)
            spin.setRange(float(lo), float(hi))
            spin.setSingleStep(float(self.step))
        spin.setKeyboardTracking(False)  # one change per edit, not per key stroke
        if self.unit and len(self.unit) <= _SUFFIX_MAX:
            spin.setSuffix(f" {self.unit}")
        spin.setValue(start)
        spin.valueChanged.connect(self._emit)
        # Grows with the form; an explicit minimum width overrides Qt's hint (sized
        # for the widest value of the range, e.g. 10 digits for an unbounded int),
        # which would otherwise make a narrow dock scroll sideways.
        spin.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        spin.setMinimumWidth(110)
        self.spin = spin
        if not self.optional:
            self.widget = spin
            return
        # Optional number: "auto" (None) or a value; the value is kept while auto.
        box = QWidget()
        lay = QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self._auto = QCheckBox(AUTO_TEXT)
        self._auto.setObjectName(f"auto_{self.name}")
        self._auto.setChecked(default is None)
        spin.setEnabled(default is not None)
        self._auto.toggled.connect(lambda on: (spin.setEnabled(not on), self._emit()))
        lay.addWidget(self._auto)
        lay.addWidget(spin, 1)
        self.widget = box

    # -- value ---------------------------------------------------------------------------
    def _set_choice(self, value: Any) -> None:
        assert self.choices is not None
        idx = self.choices.index(value) if value in self.choices else 0
        self.widget.setCurrentIndex(idx)

    def _set_text(self, value: Any) -> None:
        if value is None:
            text = ""
        elif isinstance(value, (tuple, list)):
            text = ", ".join(map(str, value))
        else:
            text = str(value)
        self.widget.setText(text)

    @property
    def native(self) -> QWidget:
        return self.widget

    @property
    def auto(self) -> bool:
        """True when an optional number is left to the step (None)."""
        return self._auto is not None and self._auto.isChecked()

    @property
    def value(self) -> Any:
        """The field's value as the dataclass takes it (text is parsed by the dataclass)."""
        kind = self.kind
        if kind == "magicgui":
            return self._mgui.value
        if kind == "choice":
            return self.choices[self.widget.currentIndex()]
        if kind == "bool":
            return self.widget.isChecked()
        if kind in ("int", "float"):
            if self.auto:
                return None
            v = self.spin.value()
            return int(v) if kind == "int" else float(v)
        text = self.widget.text().strip()
        if text == "" and self.optional:
            return None
        return text

    @value.setter
    def value(self, value: Any) -> None:
        kind = self.kind
        if kind == "magicgui":
            self._mgui.value = value
        elif kind == "choice":
            self._set_choice(value)
        elif kind == "bool":
            self.widget.setChecked(bool(value))
        elif kind in ("int", "float"):
            if self._auto is not None:
                self._auto.setChecked(value is None)
            if value is not None:
                self.spin.setValue(value)
        else:
            self._set_text(value)

    def describe_value(self) -> str:
        v = self.value
        return AUTO_TEXT if v is None else str(v)


class _Collapsible(QWidget):
    """A titled section whose body is hidden until its arrow is clicked."""

    def __init__(self, title: str, body: QWidget, *, expanded: bool = False) -> None:
        super().__init__()
        self.body = body
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setChecked(expanded)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.button.toggled.connect(self.set_expanded)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(self.button)
        lay.addWidget(body)
        self.set_expanded(expanded)

    def set_expanded(self, on: bool) -> None:
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)
        if self.button.isChecked() != on:
            self.button.setChecked(on)

    @property
    def expanded(self) -> bool:
        return self.button.isChecked()


class _FormWidget(QWidget):
    changed = Signal()


class ParamsForm:
    """The form of a step parameter dataclass (see the module docstring).

    Parameters
    ----------
    params_class : type of StepParams
        A frozen dataclass (``pipeline/steps.py``, ``pipeline/post/*``).
    choices : mapping, optional
        Field name -> allowed values (a combo box), overriding the dataclass.
    options : mapping, optional
        Field name -> overrides: ``min``, ``max``, ``step``, ``label``, ``tooltip``,
        ``widget_type`` (a magicgui widget type).
    exclude : sequence of str
        Fields the widget sets itself (e.g. a reference frame picked elsewhere);
        they keep their default unless passed to :meth:`value`.
    initial : StepParams, optional
        Start values (default: the dataclass defaults).

    Attributes
    ----------
    fields : dict of str -> FieldControl
        In the dataclass's order.
    changed : Signal
        Emitted when any field is edited (the live preview listens to it).
    advanced : _Collapsible or None
        The collapsed section of ``advanced`` fields.
    """

    def __init__(self, params_class: "type[StepParams]", *,
                 choices: Mapping[str, Sequence] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 exclude: Sequence[str] = (), initial: "StepParams | None" = None) -> None:
        from ..pipeline.params import field_info

        self.params_class = params_class
        self.exclude = set(exclude)
        choices = dict(choices or {})
        options = dict(options or {})
        self.fields: dict[str, FieldControl] = {}
        self._widget = _FormWidget()
        self._widget.setObjectName(f"params_{params_class.__name__}")
        outer = QVBoxLayout(self._widget)
        outer.setContentsMargins(0, 0, 0, 0)
        main = QFormLayout()
        adv_body = QWidget()
        adv = QFormLayout(adv_body)
        adv.setContentsMargins(12, 0, 0, 0)
        for lay in (main, adv):
            lay.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            lay.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        n_adv = 0
        for info in field_info(params_class):
            if info.name in self.exclude:
                continue
            default = getattr(initial, info.name) if initial is not None else info.default
            ctl = FieldControl(info, default, choices=choices.get(info.name),
                               options=options.get(info.name))
            ctl.changed.connect(self._widget.changed.emit)
            self.fields[info.name] = ctl
            text = ctl.label
            if ctl.unit and len(ctl.unit) > _SUFFIX_MAX and ctl.kind != "bool":
                text = f"{text} ({ctl.unit})"
            label = QLabel(text)
            label.setToolTip(ctl.tooltip)
            label.setObjectName(f"label_{info.name}")
            ctl.label_widget = label
            if info.advanced:
                adv.addRow(label, ctl.native)
                n_adv += 1
            else:
                main.addRow(label, ctl.native)
        outer.addLayout(main)
        self.advanced: _Collapsible | None = None
        if n_adv:
            self.advanced = _Collapsible(f"Advanced ({n_adv})", adv_body)
            outer.addWidget(self.advanced)

    # -- access --------------------------------------------------------------------------
    def __getitem__(self, name: str) -> FieldControl:
        return self.fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def names(self) -> list[str]:
        return list(self.fields)

    @property
    def container(self) -> list[FieldControl]:
        """The field controls in order (kept for code written against the magicgui form)."""
        return list(self.fields.values())

    @property
    def native(self) -> QWidget:
        return self._widget

    @property
    def changed(self) -> Any:
        return self._widget.changed

    def connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever a field changes."""
        self._widget.changed.connect(callback)

    def value(self, **fixed: Any) -> "StepParams":
        """The parameter dataclass as the form shows it (``fixed`` overrides fields).

        Raises
        ------
        napari_astro.core.errors.BadInputError
            From the dataclass's validation, naming the field (e.g. text in a tuple
            field that does not parse).
        """
        kwargs = {name: ctl.value for name, ctl in self.fields.items()}
        kwargs.update(fixed)
        return self.params_class(**kwargs)

    def set_value(self, params: "StepParams") -> None:
        """Show ``params`` in the form (one ``changed`` signal, not one per field)."""
        self._widget.blockSignals(True)
        try:
            for name, ctl in self.fields.items():
                ctl.value = getattr(params, name)
        finally:
            self._widget.blockSignals(False)
        self._widget.changed.emit()
