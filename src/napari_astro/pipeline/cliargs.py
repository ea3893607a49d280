"""Command-line options generated from a step's parameter dataclass.

:func:`add_params_arguments` turns every field into an option (``--field-name``;
booleans as ``--field`` / ``--no-field``; Literal choices as ``choices=``; help with
unit, range and default from :meth:`FieldInfo.describe`). Every option's default is
None, so :func:`params_from_args` takes only what the user typed and the dataclass
supplies the rest: defaults live in one place.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable, Sequence

from .params import FieldInfo, StepParams, field_info

__all__ = ["add_params_arguments", "params_from_args", "option_names", "given_fields"]


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _option(info: FieldInfo, prefix: str) -> str:
    """The option string of a field: its ``cli=`` name, ``--no-x`` / ``--x`` for a
    boolean defaulting to True / False, else ``--field-name``."""
    if isinstance(info.cli, str):
        return info.cli
    stem = (prefix + info.name).replace("_", "-")
    if info.base is bool:
        return f"--no-{stem}" if info.default else f"--{stem}"
    return f"--{stem}"


def option_names(cls: type[StepParams], *, prefix: str = "",
                 exclude: Iterable[str] = ()) -> dict[str, str]:
    """Field name -> its option string (for tests and messages)."""
    skip = set(exclude)
    out = {}
    for info in field_info(cls):
        if info.name in skip or info.cli is False:
            continue
        out[info.name] = _option(info, prefix)
    return out


def add_params_arguments(parser: "argparse.ArgumentParser | argparse._ArgumentGroup",
                         cls: type[StepParams], *, prefix: str = "",
                         exclude: Iterable[str] = (), existing: Sequence[str] = ()) -> list[str]:
    """Add one option per field of ``cls``; returns the dest names added.

    Parameters
    ----------
    parser : ArgumentParser or argument group
    cls : type of StepParams
    prefix : str
        Prepended to option and dest names (``"masters_"`` -> ``--masters-rejection``),
        for commands that take the options of several steps.
    exclude : iterable of str
        Fields not offered (the command sets them itself).
    existing : sequence of str
        Option strings already defined on the parser (shared between methods of one
        command): skipped here, read by :func:`params_from_args` all the same.
    """
    skip = set(exclude)
    dests = []
    for info in field_info(cls):
        if info.name in skip or info.cli is False:
            continue
        dest = _dest(prefix, info.name)
        desc = info.describe().replace("%", "%%")  # argparse formats help with %
        if info.base is bool:
            opt = _option(info, prefix)
            value = False if opt.startswith("--no-") else True
            if opt in existing:
                continue
            parser.add_argument(opt, dest=dest, action="store_const", const=value, default=None,
                                help=desc)
        else:
            opt = _option(info, prefix)
            if opt in existing:
                continue
            kwargs: dict[str, Any] = dict(dest=dest, default=None, help=desc)
            if info.choices is not None:
                kwargs["choices"] = [c for c in info.choices if c is not None]
                kwargs["type"] = type(kwargs["choices"][0]) if kwargs["choices"] else str
                kwargs["metavar"] = "|".join(str(c) for c in kwargs["choices"])
            elif info.base is int:
                kwargs["type"] = int
                kwargs["metavar"] = "N"
            elif info.base is float:
                kwargs["type"] = float
                kwargs["metavar"] = "X"
            elif info.base is tuple:
                kwargs["metavar"] = "A,B,..."
            else:
                kwargs["metavar"] = "TEXT"
            parser.add_argument(opt, **kwargs)
        dests.append(dest)
    return dests


def given_fields(cls: type[StepParams], args: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` that the user set on the command line."""
    out = {}
    for info in field_info(cls):
        value = getattr(args, _dest(prefix, info.name), None)
        if value is not None:
            out[info.name] = value
    return out


def params_from_args(cls: type[StepParams], args: argparse.Namespace, *, prefix: str = "",
                     base: StepParams | None = None, **fixed: Any) -> StepParams:
    """Build ``cls`` from parsed options (only those given), over ``base`` or the
    defaults; ``fixed`` fields override both. Bad values raise BadInputError naming
    the field."""
    data = base.to_dict() if base is not None else {}
    data.update(given_fields(cls, args, prefix=prefix))
    data.update({k: v for k, v in fixed.items()})
    return cls.from_dict(data)
