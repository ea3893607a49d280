"""The ``napari-astro`` command line (see CLI.md for the contract).

This module only parses arguments and dispatches; each subcommand's work is a
``cli_<name>(args) -> int`` function in ``pipeline/`` (or ``capture/``), imported
lazily so ``napari-astro --help`` stays fast. Exit status: 0 ok, 2 bad usage or bad
input (one line ``"<file>: <problem>"`` on stderr), 1 internal failure, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .core.errors import BadInputError, NotBuiltError

# subcommand -> "module:function" implementing it
HANDLERS: dict[str, str] = {
    "demo": "napari_astro.pipeline.demo:cli_demo",
    "simulate": "napari_astro.pipeline.simulate:cli_simulate",
    "masters": "napari_astro.pipeline.masters:cli_masters",
    "calibrate": "napari_astro.pipeline.calflow:cli_calibrate",
    "register": "napari_astro.pipeline.register:cli_register",
    "integrate": "napari_astro.pipeline.integrate:cli_integrate",
    "stack": "napari_astro.pipeline.stack:cli_stack",
    "crop": "napari_astro.pipeline.post:cli_crop",
    "background": "napari_astro.pipeline.post:cli_background",
    "color": "napari_astro.pipeline.post:cli_color",
    "denoise": "napari_astro.pipeline.post:cli_denoise",
    "stretch": "napari_astro.pipeline.post:cli_stretch",
    "curves": "napari_astro.pipeline.post:cli_curves",
    "export": "napari_astro.pipeline.post:cli_export",
    "process": "napari_astro.pipeline.recipes:cli_process",
    "capture": "napari_astro.capture.cli:cli_capture",
    "live": "napari_astro.capture.cli:cli_live",
}

# Commands whose parser and handler come from the step registry (pipeline/stepcli.py)
# once a step claims them; until then they say "not built yet".
_REGISTRY_COMMANDS = {"crop", "background", "color", "denoise", "stretch", "curves", "export"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own status)
        self.exit(2, f"{self.prog}: {message}\n")


def _pre_options(p: argparse.ArgumentParser, *steps: str) -> None:
    """The options of the pre-processing steps, generated from their dataclasses
    (``pipeline/steps.py``: defaults, units, ranges and choices live there only)."""
    from .pipeline import steps as st
    from .pipeline.cliargs import add_params_arguments

    for name in steps:
        if name == "masters-prefixed":
            g = p.add_argument_group("masters (of the calibration frames)")
            add_params_arguments(g, st.MastersParams, prefix="masters_")
            continue
        cls = {"masters": st.MastersParams, "calibrate": st.CalibrateParams,
               "register": st.RegisterParams, "integrate": st.IntegrateParams,
               "stack": st.StackParams}[name]
        add_params_arguments(p.add_argument_group(cls.TITLE.lower()), cls)
        if name == "integrate":
            p.add_argument("--rejection-maps", metavar="DIR", default=None,
                           help="write the low/high rejection maps into DIR")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names when its parser is a fixed one (in ``HANDLERS``,
    not generated from the step registry), else None."""
    for a in argv:
        if a in ("-h", "--help", "--version"):
            return None
        if not a.startswith("-"):
            return a if a in HANDLERS and a not in _REGISTRY_COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``napari-astro`` parser with every subcommand, or only the subcommand
    ``only`` (one of ``HANDLERS`` not generated from the step registry), which then
    parses its arguments exactly as in the whole parser. :func:`main` builds only the
    command given: the whole parser imports the step registry and every
    post-processing step module, 25-30 ms of a stack run's CPU for parsers it never
    uses."""
    from .pipeline.steps import add_execution_arguments

    def want(name: str) -> bool:
        return only is None or only == name

    parser = _Parser(prog="napari-astro",
                     description="From the telescope to the finished picture (see CLI.md).")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    if want("demo"):
        p = sub.add_parser("demo", help="simulate a night and run the whole workflow",
                           formatter_class=fmt)
        p.add_argument("-o", "--output", default="napari-astro-demo", help="output folder")
        p.add_argument("--size", default="1200x900", help="WxH of the simulated sensor [px]")
        p.add_argument("--lights", type=int, default=12, help="light frames")
        p.add_argument("--seed", type=int, default=1, help="random seed")
        p.add_argument("--overwrite", action="store_true",
                       help="replace what an earlier demo wrote in the folder (nothing else)")

    if want("simulate"):
        p = sub.add_parser("simulate", help="simulate a night's raw frames with known truth",
                           formatter_class=fmt)
        p.add_argument("dir", help="output folder")
        p.add_argument("--size", default="2000x1500", help="WxH [px]")
        p.add_argument("--lights", type=int, default=20, help="light frames")
        p.add_argument("--darks", type=int, default=None, help="dark frames (default: simulator's)")
        p.add_argument("--flats", type=int, default=None, help="flat frames (default: simulator's)")
        p.add_argument("--biases", type=int, default=None,
                       help="bias frames (default: simulator's)")
        p.add_argument("--mono", action="store_true", help="mono sensor instead of one-shot colour")
        p.add_argument("--bayer", default="RGGB", choices=["RGGB", "BGGR", "GRBG", "GBRG"],
                       help="CFA pattern of the one-shot-colour sensor")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        p.add_argument("--overwrite", action="store_true")

    if want("masters"):
        p = sub.add_parser("masters", help="build master bias/dark/flat/flat-dark")
        p.add_argument("sessions", nargs="+", metavar="SESSION")
        p.add_argument("-o", "--output", required=True, metavar="DIR")
        _pre_options(p, "masters")
        add_execution_arguments(p, workers=False)
        p.add_argument("--overwrite", action="store_true")

    if want("calibrate"):
        p = sub.add_parser("calibrate", help="calibrate lights with masters")
        p.add_argument("sessions", nargs="+", metavar="SESSION")
        p.add_argument("-o", "--output", required=True, metavar="DIR")
        p.add_argument("--masters", default=None, metavar="DIR", help="reuse masters from DIR")
        p.add_argument("--bad-pixel-map", default=None, metavar="FILE",
                       help="hot/cold pixel map (FITS or CSV) to correct in every light")
        p.add_argument("--save-bad-pixel-map", default=None, metavar="FILE",
                       help="write the detected hot/cold pixel map (FITS or CSV)")
        _pre_options(p, "calibrate", "masters-prefixed")
        add_execution_arguments(p, workers=False)
        p.add_argument("--overwrite", action="store_true")

    if want("register"):
        p = sub.add_parser("register", help="align frames onto a reference")
        p.add_argument("frames", nargs="+", metavar="FRAMES")
        p.add_argument("-o", "--output", required=True, metavar="DIR")
        _pre_options(p, "register")
        add_execution_arguments(p, memory=False)
        p.add_argument("--overwrite", action="store_true")

    if want("integrate"):
        p = sub.add_parser("integrate", help="stack registered frames")
        p.add_argument("frames", nargs="+", metavar="FRAMES")
        p.add_argument("-o", "--output", required=True, metavar="OUT.fits")
        _pre_options(p, "integrate")
        add_execution_arguments(p, workers=False, scheduler=True)
        p.add_argument("--overwrite", action="store_true")

    if want("stack"):
        p = sub.add_parser("stack", help="a night's folder(s) to a stacked master")
        p.add_argument("sessions", nargs="+", metavar="SESSION")
        p.add_argument("-o", "--output", required=True, metavar="OUT.fits")
        p.add_argument("--work-dir", default=None, metavar="DIR",
                       help="intermediate files (default OUT.work); a re-run reuses what is "
                            "unchanged there")
        p.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")
        p.add_argument("-q", "--quiet", action="store_true", help="only the progress bar on stderr")
        _pre_options(p, "stack", "masters-prefixed", "calibrate", "register", "integrate")
        add_execution_arguments(p, scheduler=True)
        p.add_argument("--overwrite", action="store_true")

    if only is None:
        # Image steps (post-processing, masks, export): generated from the step registry.
        from .pipeline.stepcli import add_step_commands

        built = add_step_commands(sub, skip=set(HANDLERS) - _REGISTRY_COMMANDS)
        for name, helptext in [("crop", "crop an image"), ("background", "background extraction"),
                               ("color", "colour calibration"), ("denoise", "noise reduction"),
                               ("stretch", "stretch"), ("curves", "saturation curves"),
                               ("export", "export 8/16-bit TIFF/PNG/JPEG")]:
            if name in built:
                continue
            p = sub.add_parser(name, help=helptext + " (not built yet)")
            p.add_argument("input", metavar="IN")
            p.add_argument("output", metavar="OUT")
            p.add_argument("rest", nargs=argparse.REMAINDER)
    if want("process"):
        p = sub.add_parser("process", help="run a post-processing recipe (default: the nine-step "
                           "post-processing of a night)")
        p.add_argument("input", metavar="IN", help="linear stack (FITS/XISF)")
        p.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="result (.fits .xisf .tif .png .jpg)")
        p.add_argument("--recipe", default=None, metavar="FILE.toml",
                       help="[[step]] tables (default: the built-in nine-step recipe)")
        p.add_argument("--save-recipe", default=None, metavar="FILE.toml",
                       help="also write the steps as run, every parameter spelled out")
        p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    if want("capture"):
        p = sub.add_parser("capture", help="run a capture sequence over INDI (docs/CAPTURE.md)")
        p.add_argument("--server", default="localhost:7624", metavar="HOST:PORT",
                       help="indiserver to use (default localhost:7624)")
        p.add_argument("--start-server", action="store_true",
                       help="start a local indiserver on --server's port with the sequence's "
                       "drivers (default: the INDI simulators) and stop it at the end")
        p.add_argument("sequence", metavar="SEQUENCE.toml")
        p.add_argument("-o", "--output", required=True, metavar="DIR",
                       help="folder of the frames (a stopped run restarts where it stopped)")
        p.add_argument("-q", "--quiet", action="store_true", help="only the progress bar on stderr")
    if want("live"):
        p = sub.add_parser("live", help="live stack: calibrate, register and add each new light "
                           "that appears in DIR; writes the stack on Ctrl-C")
        p.add_argument("folder", metavar="DIR")
        p.add_argument("-o", "--output", default=None, metavar="OUT.fits",
                       help="stack file (default DIR/live-stack.fits)")
        p.add_argument("--masters", default=None, metavar="DIR",
                       help="master bias/dark/flat to calibrate with")
        p.add_argument("--poll", type=float, default=1.0, metavar="S",
                       help="folder polling interval")
        p.add_argument("--once", action="store_true", help="stack what is there and stop")
        p.add_argument("--overwrite", action="store_true")
    return parser


def _resolve(command: str) -> Callable[[argparse.Namespace], int]:
    target = HANDLERS[command]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise NotBuiltError(command) from None
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise NotBuiltError(command)
    return func


def _return_freed_frames_to_the_os() -> None:
    """Tune glibc's malloc for frame-sized buffers: an allocation of 4.5 MB or more
    (a float32 plane of a Seestar frame is 8.3 MB) is its own mmap, given back to the
    system when freed; smaller ones (row bands, masks, 16-bit raw frames) come from
    one heap that keeps up to 8 MB free at its top for the next, shared by every
    thread (one arena: frame threads free what reader threads allocated).

    Tried and not kept (2026-12-03): 16 MB / 32 MB keeps the float32 planes in the
    heap and halves the minor faults (seestar-m94-s2 39-44 k -> 21-24 k, night20
    117-155 k -> 25-28 k) and, on the loaded machine, the system time (night20 3.0-4.6
    -> 1.5-2.6 s); on the quiet machine the wall times were the same (ngc7023 0.65-0.71
    against 0.62-0.93 s, s2 0.80-0.85 against 0.80-0.81 s, 3 runs each, interleaved)
    while the peak RSS of the small Seestar sessions rose by 7-10 MB: ngc7023 145-146
    -> 152-156 MB, at Siril's own 147-170 MB, where this setting stays below it.

    By default glibc raises its mmap threshold after the first frees and keeps freed
    frames in per-thread heaps: the stack of 20 colour 2000x1500 lights peaked at
    620 MB RSS that way, 515 MB with every allocation over 128 KB mapped (the setting
    before this one). That one page-faulted every band and mask anew: 2.17 M minor
    faults and 4.5-4.9 s of system time of night20's 19-21 s CPU, 430 k faults and
    1.0-1.3 s of seestar-m94-both's 7.4 s; with this, 0.20-0.25 M faults and
    1.6-1.8 s (CPU 15.6-17.4 s), 100-115 k and 0.65-0.8 s (6.9-7.5 s), peak RSS
    244 against 237-242 MB and 195-214 against 210-218 MB (3 runs each, alternating,
    2 shared cores, ``/usr/bin/time``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4_500_000)  # M_MMAP_THRESHOLD; also stops the dynamic raise
        libc.mallopt(-1, 8 * 2**20)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 1)          # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``napari-astro ARGV`` and return the exit status.

    Without ``argv`` this is the command line itself (``sys.argv``): the process then
    ends here, without the interpreter's teardown (see :func:`_exit_now`)."""
    if argv is None:
        try:
            code = _main(sys.argv[1:])
        except SystemExit as exc:  # argparse: --help, a usage error
            if not isinstance(exc.code, (int, type(None))):
                raise
            code = exc.code or 0
        _exit_now(code)
        return code  # only when tracing or profiling
    return _main(argv)


def _exit_now(code: int) -> None:
    """End the process as the interpreter would, less its teardown.

    What an exit does that matters is done first: non-daemon threads and thread pools
    are joined (``threading._shutdown``, as ``Py_FinalizeEx`` does), ``atexit``
    handlers run (logging, multiprocessing, temporary folders), stdout and stderr are
    flushed. Then ``os._exit`` skips freeing every module, array and numba/LLVM object
    one by one: after a stack run that teardown took 0.35 s CPU and 0.4 s wall of the
    4-light Seestar session's 5.9 s CPU (``/usr/bin/time``, median of 3, load ~2).
    Not under a tracer or profiler (coverage, cProfile), which report at the end."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return
    import atexit
    import os
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a private API: fall back to a normal exit
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
    os._exit(code if isinstance(code, int) and 0 <= code <= 255 else 1)


def _main(argv: Sequence[str]) -> int:
    parser = build_parser(only=_command_of(argv))
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    _return_freed_frames_to_the_os()
    try:
        if getattr(args, "_step_command", None):
            from .pipeline.stepcli import cli_step
            return int(cli_step(args) or 0)
        handler = _resolve(args.command)
        return int(handler(args) or 0)
    except NotBuiltError:
        print(f"napari-astro {args.command}: not built yet", file=sys.stderr)
        return 2
    except BadInputError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # internal failure: one line + where the details are
        import traceback
        import tempfile
        import os
        log = os.path.join(tempfile.gettempdir(), "napari-astro-crash.log")
        with open(log, "w") as fh:
            traceback.print_exc(file=fh)
        print(f"napari-astro {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(traceback in {log})", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
