"""Step parameter dataclasses: one frozen dataclass per step, with a stable id.

The widget, the CLI, recipes (TOML) and the FITS HISTORY all read the same
dataclass, so defaults, choices, units, ranges and help live in exactly one place.
Register a new step's parameters with :func:`register_step`; look one up by id with
:func:`step_class`. (The runner of a step is registered beside it with
:func:`napari_astro.pipeline.registry.define_step`.)

Conventions
-----------
* ``STEP_ID`` (ClassVar) is stable: ``"pre.calibrate"``, ``"post.arcsinh"``...
* every field is declared with :func:`param`: its default, one line of help, and
  where they apply a unit, a range (``min``/``max``) and choices (a ``Literal``
  annotation, or ``choices=``). Values are validated and coerced on construction; a
  bad value is a :class:`~napari_astro.core.errors.BadInputError` naming the field
  (``"post.arcsinh.stretch: 5000 is above the maximum 1000"``).
* fields are plain JSON-able values (str, int, float, bool, tuples); strategies
  that are objects in the library (rejections, weightings) are named here by strings
  and built by the pipeline.
* ``params.to_dict()`` / ``cls.from_dict(d)`` round-trip exactly; unknown keys are
  an error that names the key (a recipe typo must not pass silently).
* execution settings (threads, memory budget, scheduler) are not image parameters:
  they live in :class:`Execution`, never in a step's dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, ClassVar, Literal, Mapping, Optional, TypeVar

from ..core.errors import BadInputError

__all__ = ["StepParams", "register_step", "step_class", "all_steps", "param", "Execution",
           "field_info", "FieldInfo"]

_REGISTRY: dict[str, type["StepParams"]] = {}

T = TypeVar("T", bound="StepParams")

_META_KEYS = {"help", "unit", "min", "max", "step", "choices", "label", "cli", "widget",
              "advanced", "decimals"}


def param(default: Any, *, help: str, unit: str | None = None, min: float | None = None,
          max: float | None = None, step: float | None = None,
          choices: "tuple | list | None" = None, label: str | None = None,
          cli: "bool | str" = True, widget: str | None = None, advanced: bool = False,
          decimals: int | None = None) -> Any:
    """Declare a step parameter (a dataclass field with its documentation).

    Parameters
    ----------
    default : object
        The default value (immutable: use a tuple, not a list).
    help : str
        One line, no unit (the unit is shown beside it), no default (shown too).
    unit : str, optional
        Unit of the value: ``"px"``, ``"s"``, ``"deg C"``, ``"sigma"``, ``"of full
        scale"``...
    min, max : float, optional
        Inclusive range; checked on construction, used by spin boxes.
    step : float, optional
        Spin-box increment.
    choices : sequence, optional
        Allowed values when the annotation is not a ``Literal``.
    label : str, optional
        Form label (default: the field name with spaces).
    cli : bool or str
        False hides the field from the command line; a string renames the option
        (e.g. ``"--no-clamp"``).
    widget : str, optional
        magicgui widget type to use instead of the inferred one (``"FloatSlider"``).
    advanced : bool
        Shown in the widget's collapsed "Advanced" section.
    decimals : int, optional
        Decimals shown by a float spin box.
    """
    meta = {"help": help}
    for key, value in (("unit", unit), ("min", min), ("max", max), ("step", step),
                       ("choices", None if choices is None else tuple(choices)),
                       ("label", label), ("widget", widget), ("decimals", decimals)):
        if value is not None:
            meta[key] = value
    if cli is not True:
        meta["cli"] = cli
    if advanced:
        meta["advanced"] = True
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What the faces (CLI, widget, docs) need to know about one field."""

    name: str
    base: Any                 # bool, int, float, str, tuple (after Optional is removed)
    optional: bool            # None allowed
    default: Any
    help: str
    unit: str | None
    min: float | None
    max: float | None
    step: float | None
    choices: tuple | None
    label: str
    cli: "bool | str"
    widget: str | None
    advanced: bool
    decimals: int | None

    def describe(self) -> str:
        """Help text with unit, range and default, e.g. for ``--help`` and tooltips."""
        parts = [self.help.rstrip(".")]
        if self.unit:
            parts[0] += f" [{self.unit}]"
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            parts.append(f"range {lo}..{hi}")
        if self.choices:
            parts.append("one of " + "|".join("auto" if c is None else str(c)
                                               for c in self.choices))
        d = self.default
        if d is None:
            parts.append("default: auto")
        elif isinstance(d, bool):
            parts.append(f"default: {'on' if d else 'off'}")
        elif isinstance(d, tuple):
            parts.append("default: " + (",".join(map(str, d)) if d else "none"))
        else:
            parts.append(f"default: {d}")
        return "; ".join(parts)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return tp, False


@functools.lru_cache(maxsize=None)
def _infos(cls: type) -> tuple[FieldInfo, ...]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolved names: use the raw annotations
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        meta = dict(f.metadata or {})
        unknown = set(meta) - _META_KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown metadata {sorted(unknown)}")
        tp, optional = _unwrap_optional(hints.get(f.name, f.type))
        choices = meta.get("choices")
        if typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
            kinds = {type(c) for c in choices}
            tp = kinds.pop() if len(kinds) == 1 else str
        origin = typing.get_origin(tp)
        if origin is tuple or tp is tuple:
            tp = tuple
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(FieldInfo(
            name=f.name, base=tp, optional=optional or default is None, default=default,
            help=meta.get("help", ""), unit=meta.get("unit"), min=meta.get("min"),
            max=meta.get("max"), step=meta.get("step"), choices=choices,
            label=meta.get("label", f.name.replace("_", " ")), cli=meta.get("cli", True),
            widget=meta.get("widget"), advanced=bool(meta.get("advanced", False)),
            decimals=meta.get("decimals")))
    return tuple(out)


def field_info(cls: "type[StepParams] | StepParams") -> tuple[FieldInfo, ...]:
    """The :class:`FieldInfo` of every field of a step's dataclass, in order."""
    return _infos(cls if isinstance(cls, type) else type(cls))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(info: FieldInfo, value: Any, where: str) -> Any:
    """``value`` as the field's type, checked against choices and range."""
    if value is None:
        if info.optional:
            return None
        raise BadInputError(where, "a value is required")
    if isinstance(value, str) and info.optional and value.strip().lower() in ("", "auto", "none"):
        return None
    base = info.base
    try:
        if base is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError(f"{value!r} is not true or false")
                value = low in _TRUE
            elif not isinstance(value, (bool, int)) or value not in (0, 1):
                raise ValueError(f"{value!r} is not true or false")
            value = bool(value)
        elif base is int:
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a whole number")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{value!r} is not a whole number")
            value = int(str(value).strip()) if isinstance(value, str) else int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        elif base is tuple:
            if isinstance(value, str):
                parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
                value = tuple(_number_or_text(p) for p in parts)
            else:
                value = tuple(value)
        elif base is str:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not text")
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        if not msg.startswith(repr(value)) and "is not" not in msg:
            msg = f"{value!r} is not a valid {getattr(base, '__name__', base)}"
        raise BadInputError(where, msg) from None
    if info.choices is not None and value not in info.choices:
        shown = "|".join(str(c) for c in info.choices if c is not None)
        raise BadInputError(where, f"{value!r} is not one of {shown}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if info.min is not None and value < info.min:
            raise BadInputError(where, f"{value:g} is below the minimum {info.min:g}")
        if info.max is not None and value > info.max:
            raise BadInputError(where, f"{value:g} is above the maximum {info.max:g}")
    return value


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


@dataclasses.dataclass(frozen=True)
class StepParams:
    """Base of all step parameter dataclasses (validated on construction)."""

    STEP_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for info in field_info(type(self)):
            where = f"{self.STEP_ID or type(self).__name__}.{info.name}"
            value = _coerce(info, getattr(self, info.name), where)
            object.__setattr__(self, info.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (override; raise BadInputError naming the field)."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the defaults (for short recipes and logs)."""
        default = type(self)()
        return {k: v for k, v in self.to_dict().items() if getattr(default, k) != getattr(self, k)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any] | None = None, **overrides: Any) -> T:
        """Build from a mapping (HISTORY JSON, a recipe table); ``overrides`` that are
        not None replace values. Unknown keys raise BadInputError naming the key."""
        merged = dict(data or {})
        merged.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        for key in merged:
            if key not in names:
                raise BadInputError(cls.STEP_ID or cls.__name__,
                                    f"unknown parameter {key!r} (known: {', '.join(sorted(names))})")
        return cls(**merged)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def history(self) -> str:
        """The HISTORY line of this step: ``"<id> {json}"`` (reads back with
        :meth:`from_history`)."""
        from ..core.image import format_history
        return format_history(self.STEP_ID, self.to_dict())

    @staticmethod
    def parse_history(line: str) -> tuple[str, dict[str, Any]]:
        """``"<id> {json}"`` -> (id, dict)."""
        import json

        step_id, _, rest = line.strip().partition(" ")
        return step_id, (json.loads(rest) if rest.strip() else {})

    @classmethod
    def from_history(cls: type[T], line: str) -> T:
        step_id, data = StepParams.parse_history(line)
        if step_id != cls.STEP_ID:
            raise BadInputError(None, f"HISTORY line is of step {step_id!r}, not {cls.STEP_ID!r}")
        data.pop("mask", None)
        return cls.from_dict(data)


def register_step(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` findable by its ``STEP_ID``."""
    if not cls.STEP_ID:
        raise TypeError(f"{cls.__name__} has no STEP_ID")
    if cls.STEP_ID in _REGISTRY and _REGISTRY[cls.STEP_ID].__qualname__ != cls.__qualname__:
        raise TypeError(f"duplicate step id {cls.STEP_ID}")
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
    field_info(cls)  # fail at import on bad metadata
    _REGISTRY[cls.STEP_ID] = cls
    return cls


def step_class(step_id: str) -> type[StepParams]:
    """The parameter class of ``step_id`` (importing every step module first)."""
    if step_id not in _REGISTRY:
        from . import registry

        registry.load_all()
    try:
        return _REGISTRY[step_id]
    except KeyError:
        raise BadInputError(None, f"unknown step {step_id!r}") from None


def all_steps() -> dict[str, type[StepParams]]:
    from . import registry

    registry.load_all()
    return dict(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a run executes, not what it computes (never in HISTORY or fingerprints).

    Parameters
    ----------
    workers : int
        Threads for every stage; 0 = all cores.
    memory_limit : str
        Budget for large arrays, e.g. ``"2GB"``: masters and integration work in row
        bands / tiles sized from it.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); None = local.
    """

    workers: int = param(0, min=0, max=512, unit="threads",
                         help="threads for every stage (0 = all cores)")
    memory_limit: str = param("2GB", help="budget for large arrays, e.g. 500MB or 2GB "
                              "(masters and integration work in bands sized from it)")
    scheduler: Optional[str] = param(None, help="Dask distributed scheduler address "
                                     "(tcp://host:8786); empty = run locally")
