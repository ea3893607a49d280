"""Step parameter dataclasses: one frozen dataclass per step, with a stable id.

The widget, the CLI, recipes (TOML) and the FITS HISTORY all read the same
dataclass, so defaults live in exactly one place. Register a new step with
:func:`register_step`; look one up by id with :func:`step_class`.

Conventions
-----------
* ``STEP_ID`` (ClassVar) is stable: ``"pre.calibrate"``, ``"post.arcsinh"``...
* fields are plain JSON-able values (str, int, float, bool, tuples); strategies
  that are objects in the library (rejections, weightings) are named here by strings
  and built by the pipeline.
* ``params.to_dict()`` / ``cls.from_dict(d)`` round-trip; unknown keys are an error
  that names the key (a recipe typo must not pass silently).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, TypeVar

from ..core.errors import BadInputError

__all__ = ["StepParams", "register_step", "step_class", "all_steps"]

_REGISTRY: dict[str, type["StepParams"]] = {}

T = TypeVar("T", bound="StepParams")


@dataclasses.dataclass(frozen=True)
class StepParams:
    """Base of all step parameter dataclasses."""

    STEP_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any] | None = None, **overrides: Any) -> T:
        merged = dict(data or {})
        merged.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name: f for f in dataclasses.fields(cls)}
        for key in merged:
            if key not in names:
                raise BadInputError(cls.STEP_ID or cls.__name__,
                                    f"unknown parameter {key!r} (known: {', '.join(names)})")
        kwargs = {}
        for key, value in merged.items():
            default = names[key].default
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def history(self) -> str:
        from ..core.image import format_history
        return format_history(self.STEP_ID, self.to_dict())


def register_step(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` findable by its ``STEP_ID``."""
    if not cls.STEP_ID:
        raise TypeError(f"{cls.__name__} has no STEP_ID")
    if cls.STEP_ID in _REGISTRY and _REGISTRY[cls.STEP_ID] is not cls:
        raise TypeError(f"duplicate step id {cls.STEP_ID}")
    _REGISTRY[cls.STEP_ID] = cls
    return cls


def step_class(step_id: str) -> type[StepParams]:
    try:
        return _REGISTRY[step_id]
    except KeyError:
        raise BadInputError(None, f"unknown step {step_id!r}") from None


def all_steps() -> dict[str, type[StepParams]]:
    return dict(_REGISTRY)
