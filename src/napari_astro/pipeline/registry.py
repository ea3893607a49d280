"""The step registry: ``id -> (params class, runner, inputs, command)``.

Every image step (post-processing, masks, export) is defined once, in its own module
under ``pipeline/post/``, by a parameter dataclass (:mod:`.params`) and one
:func:`define_step` call. The command line (``napari-astro <command> --method``), the
generic napari widget, recipes (``process --recipe``) and HISTORY all dispatch through
:func:`run_step`, so a new step is its params, its core function and one entry.

A runner has the signature::

    def run_arcsinh(image: AstroImage, params: ArcsinhParams, *, progress=None,
                    cancel=None, **inputs) -> AstroImage | StepResult

``inputs`` are the step's declared extra inputs by name (``points``: ``(N, 2)``
float array of (row, col) sample positions; ``region``: ``(y0, x0, y1, x1)``
ints; ``reference``: an AstroImage...). A runner does NOT add its HISTORY line and
does not apply a mask: :func:`run_step` does both, the same way for every step.
Masks: ``result = original + mask * (processed - original)`` with ``mask`` float in
[0, 1], ``(H, W)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import BadInputError
from ..core.image import AstroImage
from .params import StepParams, register_step

__all__ = ["Step", "StepResult", "define_step", "get_step", "steps", "steps_for_command",
           "commands", "run_step", "apply_mask", "load_all", "STEP_PACKAGES"]

#: Packages whose modules define steps; every module in them is imported by
#: :func:`load_all` (so adding a step needs no edit here).
STEP_PACKAGES = ("napari_astro.pipeline.post",)

_STEPS: dict[str, "Step"] = {}
_LOADED = False


@dataclasses.dataclass
class StepResult:
    """What a step produced.

    Attributes
    ----------
    image : AstroImage
        The processed image (with the step's HISTORY line once :func:`run_step`
        returns).
    extras : dict
        Named by-products shown as extra layers or written by the CLI: e.g.
        ``"model"`` (AstroImage, the background model), ``"samples"`` (a table),
        ``"stars"`` (``(N, 2)`` row/col), ``"factors"`` (tuple of 3 floats),
        ``"histogram"``...
    messages : list of str
        One-line remarks for the user ("fell back to basic calibration: 4 catalogue
        stars in the field"); the CLI prints them, the widget shows them.
    """

    image: AstroImage
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Step:
    """One registered step.

    Attributes
    ----------
    id : str
        ``params.STEP_ID``.
    params : type of StepParams
    runner : callable
        See the module docstring.
    inputs : tuple of str
        Extra named inputs; a trailing ``?`` marks an optional one (``"points?"``).
        Every step accepts an optional mask (``run_step(..., mask=)``) unless
        ``maskable`` is False.
    command : str, optional
        CLI subcommand (``"stretch"``); several steps may share one command, told
        apart by ``method``.
    method : str, optional
        Value of ``--method`` selecting this step within ``command``.
    color_only : bool
        Refuses grayscale images (BadInputError naming the image).
    maskable : bool
        Whether a mask may be given.
    add_cli_arguments : callable, optional
        ``f(parser)``: extra options of the subcommand (``--samples FILE.csv``...).
    cli_inputs : callable, optional
        ``f(args, image) -> dict`` of extra inputs read from those options (checked
        before any work: raise BadInputError).
    cli_outputs : callable, optional
        ``f(args, result)``: write by-products (``--model-out``); called after the
        main output is written.
    summary : callable, optional
        ``f(result) -> str``: one line the CLI prints when the step is done.
    write_output : callable, optional
        ``f(args, result)``: writes OUT itself (atomically, honouring
        ``args.overwrite``) instead of the generic writer (export at 16 bits...).
    """

    id: str
    params: type[StepParams]
    runner: Callable[..., Any]
    inputs: tuple[str, ...] = ()
    command: str | None = None
    method: str | None = None
    color_only: bool = False
    maskable: bool = True
    add_cli_arguments: Callable[[Any], None] | None = None
    cli_inputs: Callable[[Any, AstroImage], dict] | None = None
    cli_outputs: Callable[[Any, StepResult], None] | None = None
    summary: Callable[[StepResult], str] | None = None
    write_output: Callable[[Any, StepResult], None] | None = None

    @property
    def title(self) -> str:
        return self.params.TITLE or self.id

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.rstrip("?") for i in self.inputs)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        return tuple(i for i in self.inputs if not i.endswith("?"))


def define_step(params: type[StepParams], runner: Callable[..., Any], *,
                inputs: Sequence[str] = (), command: str | None = None,
                method: str | None = None, color_only: bool = False, maskable: bool = True,
                add_cli_arguments: Callable | None = None, cli_inputs: Callable | None = None,
                cli_outputs: Callable | None = None,
                summary: Callable | None = None,
                write_output: Callable | None = None) -> Step:
    """Register ``params`` (if not yet) and its runner; returns the :class:`Step`."""
    register_step(params)
    step = Step(id=params.STEP_ID, params=params, runner=runner, inputs=tuple(inputs),
                command=command, method=method, color_only=color_only, maskable=maskable,
                add_cli_arguments=add_cli_arguments, cli_inputs=cli_inputs,
                cli_outputs=cli_outputs, summary=summary, write_output=write_output)
    old = _STEPS.get(step.id)
    if old is not None and old.runner.__qualname__ != runner.__qualname__:
        raise TypeError(f"duplicate step id {step.id}")
    if command is not None:
        for other in _STEPS.values():
            if other.id != step.id and other.command == command and other.method == method:
                raise TypeError(f"{step.id} and {other.id} both claim {command} --method {method}")
    _STEPS[step.id] = step
    return step


def load_all() -> None:
    """Import every step module (idempotent)."""
    global _LOADED
    if _LOADED:
        return
    importlib.import_module("napari_astro.pipeline.steps")
    for pkg_name in STEP_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError:
            continue
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    _LOADED = True


def get_step(step_id: str) -> Step:
    load_all()
    try:
        return _STEPS[step_id]
    except KeyError:
        known = ", ".join(sorted(_STEPS))
        raise BadInputError(None, f"unknown step {step_id!r} (known: {known})") from None


def steps() -> dict[str, Step]:
    load_all()
    return dict(_STEPS)


def commands() -> dict[str, list[Step]]:
    """CLI subcommand -> its steps (in registration order)."""
    out: dict[str, list[Step]] = {}
    for s in steps().values():
        if s.command:
            out.setdefault(s.command, []).append(s)
    return out


def steps_for_command(command: str) -> list[Step]:
    return commands().get(command, [])


def apply_mask(original: np.ndarray, processed: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``original + mask * (processed - original)``; mask ``(H, W)`` in [0, 1]."""
    if mask is None:
        return processed
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    if processed.shape != original.shape:
        raise BadInputError(None, "a masked step must keep the image's shape")
    # In place on a private copy of ``processed``: three full-size temporaries made a
    # masked step on a 6000x4000 colour image peak ~1 GB above its unmasked run.
    out = np.array(processed, dtype=np.float32, copy=True)
    out -= original
    out *= m
    out += original
    return out


def run_step(step: "str | Step", image: AstroImage, params: "StepParams | Mapping[str, Any] | None" = None,
             *, mask: np.ndarray | None = None, mask_spec: str | None = None,
             progress: Any = None, cancel: Any = None, **inputs: Any) -> StepResult:
    """Run one registered step on ``image``.

    Parameters
    ----------
    step : str or Step
        Step id (``"post.arcsinh"``) or the Step.
    image : AstroImage
        Input (not modified).
    params : StepParams or mapping, optional
        Parameters (default: the dataclass defaults); a mapping goes through
        ``from_dict``.
    mask : ndarray, optional
        ``(H, W)`` float in [0, 1]: the step acts where the mask is 1.
    mask_spec : str, optional
        How the mask was made (``"luminance"``, ``"inverted"``, a file), recorded in
        the HISTORY line so a recipe can replay it.
    progress, cancel
        See :mod:`napari_astro.core.progress`.
    **inputs
        The step's extra inputs (see :class:`Step`).

    Returns
    -------
    StepResult
    """
    if isinstance(step, str):
        step = get_step(step)
    if params is None:
        params = step.params()
    elif not isinstance(params, StepParams):
        params = step.params.from_dict(params)
    elif type(params) is not step.params:
        raise BadInputError(None, f"{step.id} takes {step.params.__name__}, not {type(params).__name__}")
    name = image.path or "image"
    if step.color_only and not image.is_color:
        raise BadInputError(name, f"{step.title} needs a colour image; this one is grayscale")
    for req in step.required_inputs:
        if inputs.get(req) is None:
            raise BadInputError(name, f"{step.title} needs its {req!r} input")
    unknown = set(inputs) - set(step.input_names)
    if unknown:
        raise TypeError(f"{step.id} has no input(s) {sorted(unknown)}")
    if mask is not None:
        if not step.maskable:
            raise BadInputError(name, f"{step.title} cannot be applied through a mask")
        mask = np.asarray(mask)
        if mask.shape != image.shape2d:
            raise BadInputError(mask_spec or "mask",
                                f"mask is {mask.shape[1]}x{mask.shape[0]} px, the image "
                                f"{image.shape2d[1]}x{image.shape2d[0]} px")
    out = step.runner(image, params, progress=progress, cancel=cancel,
                      **{k: v for k, v in inputs.items() if v is not None})
    result = out if isinstance(out, StepResult) else StepResult(image=out)
    if result.image is image:  # never touch the caller's image
        result.image = image.replace()
    if mask is not None:
        result.image = result.image.replace(data=apply_mask(image.data, result.image.data, mask))
    record = params.to_dict()
    if mask is not None:
        record["mask"] = mask_spec or "custom"
    result.image.add_history(step.id, record)
    return result
