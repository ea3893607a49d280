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
    "masters": "napari_astro.pipeline.calibrate:cli_masters",
    "calibrate": "napari_astro.pipeline.calibrate:cli_calibrate",
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
    "process": "napari_astro.pipeline.post:cli_process",
    "capture": "napari_astro.capture.cli:cli_capture",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own status)
        self.exit(2, f"{self.prog}: {message}\n")


def _integrate_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("integration")
    g.add_argument("--rejection", default=None,
                   choices=["none", "sigma", "winsorized", "linear-fit", "percentile", "gesd",
                            "minmax"], help="pixel rejection (default winsorized)")
    g.add_argument("--low", type=float, default=None,
                   help="low rejection threshold (sigma; percentile: fraction of the median; "
                        "minmax: count; gesd: max outlier fraction)")
    g.add_argument("--high", type=float, default=None,
                   help="high rejection threshold (gesd: significance)")
    g.add_argument("--weighting", default=None, choices=["none", "noise", "fwhm", "stars"])
    g.add_argument("--normalization", default=None,
                   choices=["none", "additive", "multiplicative", "additive-scaling"])
    g.add_argument("--combine", default=None, choices=["average", "median", "sum"])
    g.add_argument("--rejection-maps", metavar="DIR", default=None,
                   help="write low/high rejection maps into DIR")
    g.add_argument("--memory-limit", default=None, help="e.g. 2GB (default 2GB)")
    g.add_argument("--scheduler", default=None, help="Dask distributed scheduler address")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-astro",
                     description="From the telescope to the finished picture (see CLI.md).")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("demo", help="simulate a night and run the whole workflow")
    p.add_argument("-o", "--output", default="napari-astro-demo", help="output folder")
    p.add_argument("--size", default="1200x900", help="WxH of the simulated sensor")
    p.add_argument("--lights", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("simulate", help="simulate a night's raw frames with known truth")
    p.add_argument("dir", help="output folder")
    p.add_argument("--size", default="2000x1500", help="WxH (default 2000x1500)")
    p.add_argument("--lights", type=int, default=20)
    p.add_argument("--darks", type=int, default=None)
    p.add_argument("--flats", type=int, default=None)
    p.add_argument("--biases", type=int, default=None)
    p.add_argument("--mono", action="store_true", help="mono sensor instead of one-shot colour")
    p.add_argument("--bayer", default="RGGB", choices=["RGGB", "BGGR", "GRBG", "GBRG"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("masters", help="build master bias/dark/flat/flat-dark")
    p.add_argument("sessions", nargs="+", metavar="SESSION")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--rejection", default=None)
    p.add_argument("--low", type=float, default=None)
    p.add_argument("--high", type=float, default=None)
    p.add_argument("--temp-tolerance", type=float, default=None)
    p.add_argument("--memory-limit", default=None,
                   help="combine groups larger than this in row bands (default 2GB)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("calibrate", help="calibrate lights with masters")
    p.add_argument("sessions", nargs="+", metavar="SESSION")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--no-debayer", action="store_true")
    p.add_argument("--debayer-method", default=None, choices=["rcd", "vng", "bilinear", "superpixel"])
    p.add_argument("--bayer", default=None, choices=["RGGB", "BGGR", "GRBG", "GBRG"])
    p.add_argument("--dark-mode", default=None, choices=["match", "scale", "optimize"])
    p.add_argument("--no-cosmetic", action="store_true")
    p.add_argument("--equalize-cfa", action="store_true")
    p.add_argument("--masters", default=None, metavar="DIR", help="reuse masters from DIR")
    p.add_argument("--bad-pixel-map", default=None, metavar="FILE",
                   help="hot/cold pixel map (FITS or CSV) to correct in every light")
    p.add_argument("--save-bad-pixel-map", default=None, metavar="FILE",
                   help="write the detected hot/cold pixel map (FITS or CSV)")
    p.add_argument("--pedestal", type=float, default=None,
                   help="(minimum) pedestal added after calibration, [0,1] units")
    p.add_argument("--temp-tolerance", type=float, default=None,
                   help="deg C for grouping and dark matching (default 2)")
    p.add_argument("--rejection", default=None, help="rejection for the masters")
    p.add_argument("--low", type=float, default=None)
    p.add_argument("--high", type=float, default=None)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("register", help="align frames onto a reference")
    p.add_argument("frames", nargs="+", metavar="FRAMES")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--reference", default=None, metavar="FILE")
    p.add_argument("--model", default=None, choices=["shift", "similarity", "affine", "homography"])
    p.add_argument("--interpolation", default=None, choices=["lanczos3", "bicubic", "bilinear"])
    p.add_argument("--no-clamp", action="store_true", help="no ringing clamp for Lanczos/bicubic")
    p.add_argument("--detection-sigma", type=float, default=None, help="star threshold (default 5)")
    p.add_argument("--max-stars", type=int, default=None, help="stars per frame (default 250)")
    p.add_argument("--max-fwhm-ratio", type=float, default=None,
                   help="reject frames with FWHM > ratio x session median (default 1.5)")
    p.add_argument("--min-stars-ratio", type=float, default=None,
                   help="reject frames with stars < ratio x session median (default 0.3)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("integrate", help="stack registered frames")
    p.add_argument("frames", nargs="+", metavar="FRAMES")
    p.add_argument("-o", "--output", required=True, metavar="OUT.fits")
    _integrate_options(p)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("stack", help="a night's folder(s) to a stacked master")
    p.add_argument("sessions", nargs="+", metavar="SESSION")
    p.add_argument("-o", "--output", required=True, metavar="OUT.fits")
    p.add_argument("--reference", default=None, metavar="FILE")
    _integrate_options(p)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--workers", type=int, default=None, help="threads for every stage "
                   "(default: all cores)")
    p.add_argument("--float16", action="store_true",
                   help="16-bit calibrated intermediates: half the disk; stored as scaled "
                        "16-bit integers, finer than float16 over [0, 1]")
    p.add_argument("-q", "--quiet", action="store_true", help="only the progress bar on stderr")
    p.add_argument("--rgb", default=None, metavar="R,G,B",
                   help="combine these three mono filter stacks into OUT_RGB.fits")
    p.add_argument("--clean", action="store_true", help="delete intermediate files at the end")
    p.add_argument("--no-debayer", action="store_true")
    p.add_argument("--bayer", default=None, choices=["RGGB", "BGGR", "GRBG", "GBRG"])
    p.add_argument("--overwrite", action="store_true")

    for name, helptext in [("crop", "crop an image"), ("background", "background extraction"),
                           ("color", "colour calibration"), ("denoise", "noise reduction"),
                           ("stretch", "stretch"), ("curves", "saturation curves"),
                           ("export", "export 8/16-bit TIFF/PNG/JPEG")]:
        p = sub.add_parser(name, help=helptext + " (not built yet)")
        p.add_argument("input", metavar="IN")
        p.add_argument("output", metavar="OUT")
        p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("process", help="post-processing recipe (not built yet)")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--recipe", default=None)
    p = sub.add_parser("capture", help="run a capture sequence over INDI (not built yet)")
    p.add_argument("--server", default="localhost:7624")
    p.add_argument("sequence", metavar="SEQUENCE.toml")
    p.add_argument("-o", "--output", required=True)
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
    """Make glibc serve every allocation over 128 KiB with mmap, so a freed frame goes
    back to the system at once. By default glibc raises that threshold after the first
    frees and keeps freed frames in its heap: the stack of 20 colour 2000x1500 lights
    peaked at 620 MB RSS that way, 515 MB with this (same wall time within noise)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; also stops the dynamic raise
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
