"""Recipes: a chain of registered steps with their parameters, as TOML.

A recipe file is a list of ``[[step]]`` tables::

    [[step]]
    id = "post.tgv"          # a step of the registry
    mask = "inverted"        # optional: luminance|inverted|stars or a mask file
    strength = 0.6           # any of the step's parameters; omitted ones = defaults

:func:`run_recipe` runs the chain (each step through
:func:`registry.run_step`, so every step writes its HISTORY line, which records the
mask too); :func:`recipe_from_history` reads the post-processing lines of an image's
HISTORY back into a recipe, so what was done in napari can be saved and replayed on
another image, or on the command line, with the same pixels.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..core.errors import BadInputError
from ..core.image import AstroImage
from . import registry
from .params import StepParams

__all__ = ["RecipeEntry", "load_recipe", "loads_recipe", "dumps_recipe", "save_recipe",
           "run_recipe", "recipe_from_history", "default_recipe", "DEFAULT_RECIPE_PATH",
           "cli_process"]

DEFAULT_RECIPE_PATH = Path(__file__).with_name("recipes_default.toml")


@dataclasses.dataclass(frozen=True)
class RecipeEntry:
    """One step of a recipe: its parameters and the mask it is applied through."""

    params: StepParams
    mask: str | None = None

    @property
    def step_id(self) -> str:
        return self.params.STEP_ID

    def to_table(self, *, full: bool = False) -> dict[str, Any]:
        """The TOML table (``full``: every parameter; else only non-defaults)."""
        table: dict[str, Any] = {"id": self.step_id}
        if self.mask:
            table["mask"] = self.mask
        table.update(self.params.to_dict() if full else self.params.changed())
        return table


def _entry_from_table(table: dict[str, Any], where: str) -> RecipeEntry:
    table = dict(table)
    step_id = table.pop("id", None)
    if not isinstance(step_id, str):
        raise BadInputError(where, "a [[step]] table has no id = \"...\"")
    try:
        step = registry.get_step(step_id)
    except BadInputError as exc:
        raise BadInputError(where, exc.problem) from None
    mask = table.pop("mask", None)
    if mask is not None and not isinstance(mask, str):
        raise BadInputError(where, f"{step_id}: mask must be a name or a file path")
    if mask is not None and not step.maskable:
        raise BadInputError(where, f"{step_id} cannot be applied through a mask")
    try:
        params = step.params.from_dict(table)
    except BadInputError as exc:
        raise BadInputError(where, exc.message) from None
    return RecipeEntry(params=params, mask=mask)


def loads_recipe(text: str, *, where: str = "recipe") -> list[RecipeEntry]:
    """Parse TOML text into recipe entries (BadInputError naming ``where``)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(where, f"is not valid TOML ({exc})") from None
    unknown = set(doc) - {"step", "name", "description"}
    if unknown:
        raise BadInputError(where, f"unknown key(s) {', '.join(sorted(unknown))} "
                                   "(a recipe holds [[step]] tables)")
    tables = doc.get("step", [])
    if not isinstance(tables, list) or not tables:
        raise BadInputError(where, "holds no [[step]] tables")
    return [_entry_from_table(t, where) for t in tables]


def load_recipe(path: "str | os.PathLike[str]") -> list[RecipeEntry]:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(p, "recipe file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(p, f"cannot read the recipe ({exc})") from None
    return loads_recipe(text, where=str(p))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dumps_recipe(entries: Iterable[RecipeEntry], *, full: bool = False,
                 name: str | None = None) -> str:
    """Recipe entries as TOML text (None values are left out: they mean the default
    'auto', which is what an absent key gives)."""
    lines = []
    if name:
        lines += [f"name = {_toml_value(name)}", ""]
    for e in entries:
        lines.append("[[step]]")
        for k, v in e.to_table(full=full).items():
            if v is None:
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def save_recipe(entries: Iterable[RecipeEntry], path: "str | os.PathLike[str]", *,
                full: bool = True) -> Path:
    """Write a recipe atomically (``full``: every parameter, so later changes of the
    defaults do not change what it does)."""
    from ..core.io._atomic import atomic_output

    p = Path(path)
    with atomic_output(p, overwrite=True) as tmp:
        tmp.write_text(dumps_recipe(entries, full=full), encoding="utf-8")
    return p


def default_recipe() -> list[RecipeEntry]:
    """The seed's nine-step post-processing of a typical night."""
    return load_recipe(DEFAULT_RECIPE_PATH)


def recipe_from_history(history: Sequence[str]) -> list[RecipeEntry]:
    """The registered image steps in ``history`` (HISTORY lines, oldest first), in
    order; pre-processing lines and other notes are skipped."""
    out = []
    known = registry.steps()
    for line in history:
        step_id, _, rest = line.strip().partition(" ")
        if step_id not in known:
            continue
        try:
            data = json.loads(rest) if rest.strip() else {}
        except json.JSONDecodeError:
            continue
        mask = data.pop("mask", None)
        out.append(RecipeEntry(params=known[step_id].params.from_dict(data), mask=mask))
    return out


def run_recipe(image: AstroImage, entries: Sequence[RecipeEntry], *, progress: Any = None,
               cancel: Any = None,
               inputs: Callable[[RecipeEntry, AstroImage], dict] | None = None,
               on_step: Callable[[int, RecipeEntry, "registry.StepResult"], None] | None = None,
               ) -> "registry.StepResult":
    """Run ``entries`` in order on ``image``.

    Parameters
    ----------
    inputs : callable, optional
        ``f(entry, current_image) -> dict`` of extra inputs for a step (e.g. the
        coverage map for an automatic crop).
    on_step : callable, optional
        Called after each step with (index, entry, result) (napari adds a layer per
        step with it).

    Returns
    -------
    StepResult
        The last step's result; ``messages`` gathers every step's remarks.
    """
    from ..core.progress import SubProgress, report
    from .stepcli import resolve_mask_spec

    if not entries:
        raise BadInputError(None, "the recipe has no steps")
    current = image
    messages: list[str] = []
    result = None
    carried: dict[str, Any] = {}
    n = len(entries)
    for i, entry in enumerate(entries):
        report(progress, i, n, entry.params.TITLE or entry.step_id, cancel)
        mask, spec = resolve_mask_spec(entry.mask, current)
        extra = inputs(entry, current) if inputs is not None else {}
        step = registry.get_step(entry.step_id)
        # The background samples a previous step kept are the sky: a later step that
        # takes sample points (colour calibration's background levels) gets them. On
        # the demo night the sky's channels end 0.3 % apart instead of 2.2 % (the
        # whole-image levels are biased by the red nebula).
        for key, value in carried.items():
            extra.setdefault(key, value)
        extra = {k: v for k, v in extra.items() if k in step.input_names}
        result = registry.run_step(step, current, entry.params, mask=mask, mask_spec=spec,
                                   progress=SubProgress(progress, i, i + 1, n,
                                                        entry.params.TITLE or entry.step_id),
                                   cancel=cancel, **extra)
        messages += [f"{entry.step_id}: {m}" for m in result.messages]
        if result.image.shape2d != current.shape2d:
            carried.clear()  # a crop: earlier coordinates no longer apply
        points = _used_sample_points(result.extras.get("samples"))
        if points is not None:
            carried["points"] = points
        if on_step is not None:
            on_step(i, entry, result)
        current = result.image
    report(progress, n, n, "done", cancel)
    assert result is not None
    result.messages = messages
    return result


def _used_sample_points(samples: Any):
    """(N, 2) row/col of the used background samples in a step's ``extras["samples"]``
    (columns x, y, used), or None."""
    import numpy as np

    if not isinstance(samples, dict) or "x" not in samples or "y" not in samples:
        return None
    x = np.asarray(samples["x"], dtype=float)
    y = np.asarray(samples["y"], dtype=float)
    used = np.asarray(samples.get("used", np.ones(x.shape, bool)), dtype=bool)
    if x.shape != y.shape or used.shape != x.shape or not used.any():
        return None
    return np.column_stack([y[used], x[used]])


def _coverage_input(path: str) -> Callable[[RecipeEntry, AstroImage], dict]:
    """Extra inputs of a recipe run from a file: the stack's coverage map (written by
    integration beside it, named by its COVERAGE header key) for the crop step."""
    cache: dict[str, Any] = {}

    def inputs(entry: RecipeEntry, image: AstroImage) -> dict:
        if "coverage" not in registry.get_step(entry.step_id).input_names:
            return {}
        if "coverage" not in cache:
            cache["coverage"] = _find_coverage(path, image)
        cov = cache["coverage"]
        return {"coverage": cov} if cov is not None and cov.shape == image.shape2d else {}

    return inputs


def _find_coverage(path: str, image: AstroImage):
    from ..core.io import read_image
    from .post.crop import find_coverage_file

    found = find_coverage_file(path, image.header)
    return read_image(found).data if found else None


def cli_process(args: Any) -> int:
    """``napari-astro process IN -o OUT [--recipe FILE.toml]``."""
    from ..core.io import read_image, write_image
    from ..core.progress import TqdmProgress
    from .stepcli import check_output_path

    entries = load_recipe(args.recipe) if args.recipe else default_recipe()
    check_output_path(args.output, overwrite=getattr(args, "overwrite", False))
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise BadInputError(args.output, "the output would replace the input")
    image = read_image(args.input)
    with TqdmProgress(desc="process", disable=None if sys.stderr.isatty() else True) as bar:
        result = run_recipe(image, entries, progress=bar, inputs=_coverage_input(args.input))
    write_image(result.image, args.output, overwrite=getattr(args, "overwrite", False))
    for line in result.messages:
        print(line, file=sys.stderr)
    if getattr(args, "save_recipe", None):
        save_recipe(recipe_from_history(result.image.history[len(image.history):]),
                    args.save_recipe)
    print(f"{args.output}: {len(entries)} steps")
    return 0
