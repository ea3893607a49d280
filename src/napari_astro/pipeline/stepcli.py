"""Subcommands generated from the step registry: ``napari-astro COMMAND IN OUT``.

For each command of :func:`registry.commands` (``stretch``, ``denoise``, ...) one
parser takes ``IN OUT``, ``--method`` (when several steps share the command), the
options of every method's dataclass (merged by name), ``--mask`` and
``--overwrite``, plus each step's own extra options. The handler checks everything
before any work (input readable, output writable and absent, options belong to the
chosen method, mask size), runs the step through :func:`registry.run_step` with a
tqdm bar, and writes the output atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..core.errors import BadInputError
from . import registry
from .cliargs import add_params_arguments, given_fields, option_names

__all__ = ["add_step_commands", "cli_step", "check_output_path", "resolve_mask_spec",
           "OUTPUT_EXTENSIONS"]

#: Extensions an image step can write (FITS/XISF float32; the rest as 8/16-bit
#: pictures through core.io.export).
OUTPUT_EXTENSIONS = (".fits", ".fit", ".fts", ".xisf", ".tif", ".tiff", ".png", ".jpg", ".jpeg")


def add_step_commands(sub: "argparse._SubParsersAction", *, skip: set[str] = frozenset()) -> set[str]:
    """Add one parser per registry command; returns the command names added."""
    added = set()
    for command, steps in registry.commands().items():
        if command in skip:
            continue
        first = steps[0]
        methods = [s.method for s in steps if s.method]
        helptext = first.title if len(steps) == 1 else f"{command} (" + "|".join(methods) + ")"
        p = sub.add_parser(command, help=helptext, description=_description(command, steps),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("input", metavar="IN", help="input image (FITS, XISF, TIFF)")
        p.add_argument("output", metavar="OUT", help="output image (" +
                       " ".join(OUTPUT_EXTENSIONS) + ")")
        if len(steps) > 1 or first.method:
            p.add_argument("--method", choices=methods, default=None,
                           help=f"which {command} (default {methods[0]})")
        if any(s.maskable for s in steps):
            p.add_argument("--mask", default=None, metavar="luminance|inverted|stars|FILE",
                           help="apply through a mask: one made from the input's luminance "
                                "(inverted: its inverse; stars: a star mask) or a mask image "
                                "file (FITS/XISF/TIFF, values 0..1, same size)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
        seen: list[str] = [a for act in p._actions for a in act.option_strings]
        for step in steps:
            label = f"--method {step.method}" if step.method else step.title
            g = p.add_argument_group(f"{label}: {step.title}" if step.method else label)
            add_params_arguments(g, step.params, existing=seen)
            seen = [a for act in p._actions for a in act.option_strings]
            if step.add_cli_arguments is not None:
                before = len(p._actions)
                step.add_cli_arguments(g)
                seen = [a for act in p._actions[before:] for a in act.option_strings] + seen
        p.set_defaults(_step_command=command)
        added.add(command)
    return added


def _description(command: str, steps: list) -> str:
    lines = []
    for s in steps:
        doc = (s.params.__doc__ or "").strip().splitlines()
        head = doc[0] if doc else s.title
        lines.append(f"{('--method ' + s.method + ': ') if s.method else ''}{head}")
    return "\n".join(lines)


def _choose(command: str, args: argparse.Namespace) -> "registry.Step":
    steps = registry.steps_for_command(command)
    method = getattr(args, "method", None)
    # A command of one step whose own params have a ``method`` field (``color
    # --method basic``): the option is that field, not a choice between steps.
    if method is None or not any(s.method for s in steps):
        return steps[0]
    for s in steps:
        if s.method == method:
            return s
    raise BadInputError("--method", f"unknown method {method!r}")


def _foreign_options(step: "registry.Step", args: argparse.Namespace) -> list[str]:
    """Options the user gave that belong to another method of the command."""
    mine = set(option_names(step.params))
    given = []
    for other in registry.steps_for_command(step.command or ""):
        if other is step:
            continue
        for name, opt in option_names(other.params).items():
            if name not in mine and getattr(args, name, None) is not None:
                given.append(opt)
    return sorted(set(given))


def check_output_path(path: str, *, overwrite: bool, extensions=OUTPUT_EXTENSIONS) -> None:
    """Refuse, before any work, an output we could not or should not write."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise BadInputError(path, f"cannot write {ext or 'files without an extension'} "
                                  f"(use one of {' '.join(extensions)})")
    if os.path.isdir(path):
        raise BadInputError(path, "is a folder, not an output file")
    if os.path.exists(path) and not overwrite:
        raise BadInputError(path, "exists (use --overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadInputError(folder, "output folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(folder, "output folder is not writable")
    try:  # root passes os.access; an immutable folder still refuses the file
        import tempfile

        fd, probe = tempfile.mkstemp(dir=folder, prefix=".napari-astro-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInputError(folder, f"output folder is not writable ({exc.strerror})") from None


def resolve_mask_spec(spec: str | None, image: Any) -> "tuple[Any, str | None]":
    """``--mask`` / recipe ``mask =`` -> (mask array or None, spec). Named masks are
    built from ``image`` by the ``post.mask`` step's module."""
    if spec is None:
        return None, None
    import numpy as np

    from ..core.image import AstroImage

    named = _named_masks()
    if spec in named:
        return named[spec](image), spec
    if not os.path.exists(spec):
        raise BadInputError(spec, "is neither a mask name (" + "|".join(sorted(named)) +
                            ") nor an existing mask file")
    from ..core.io import read_image

    m: AstroImage = read_image(spec)
    data = m.luminance() if m.is_color else m.data
    if not np.all(np.isfinite(data)):
        raise BadInputError(spec, "mask has NaN or infinite values")
    return np.clip(data, 0.0, 1.0).astype(np.float32), spec


def _named_masks() -> dict:
    """Mask names understood everywhere: provided by ``pipeline/post/mask.py``
    (``NAMED_MASKS``: name -> f(image) -> (H, W) float array)."""
    try:
        from .post import mask as mask_module  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return dict(getattr(mask_module, "NAMED_MASKS", {}))


def cli_step(args: argparse.Namespace) -> int:
    """Handler of every registry command."""
    from ..core.io import read_image, write_image
    from ..core.progress import TqdmProgress

    command = args._step_command
    step = _choose(command, args)
    foreign = _foreign_options(step, args)
    if foreign:
        raise BadInputError(foreign[0], f"is not an option of {command}"
                                        f"{' --method ' + step.method if step.method else ''}")
    params = step.params.from_dict(given_fields(step.params, args))
    check_output_path(args.output, overwrite=args.overwrite)
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise BadInputError(args.output, "the output would replace the input")
    image = read_image(args.input)
    extra = step.cli_inputs(args, image) if step.cli_inputs is not None else {}
    mask, spec = resolve_mask_spec(getattr(args, "mask", None), image)
    with TqdmProgress(desc=f"{command}" + (f" {step.method}" if step.method else ""),
                      disable=None if sys.stderr.isatty() else True) as bar:
        result = registry.run_step(step, image, params, mask=mask, mask_spec=spec,
                                   progress=bar, **extra)
    if step.write_output is not None:
        step.write_output(args, result)
    else:
        write_image(result.image, args.output, overwrite=args.overwrite)
    if step.cli_outputs is not None:
        step.cli_outputs(args, result)
    for line in result.messages:
        print(line, file=sys.stderr)
    if step.summary is not None:
        print(step.summary(result))
    return 0
