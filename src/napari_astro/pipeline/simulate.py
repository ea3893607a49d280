"""``napari-astro simulate``: write a simulated night (raw frames + truth) to a folder."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from ..core.errors import BadInputError

__all__ = ["cli_simulate", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``"2000x1500"`` -> ``(2000, 1500)``; BadInputError naming ``--size`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(text))
    if not m:
        raise BadInputError("--size", f"expected WxH such as 2000x1500, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 16 or h < 16 or w > 20000 or h > 20000:
        raise BadInputError("--size", f"{w}x{h} is out of range (16..20000 per side)")
    if w % 2 or h % 2:
        raise BadInputError("--size", f"{w}x{h}: width and height must be even")
    return w, h


def cli_simulate(args: argparse.Namespace) -> int:
    """Run the ``simulate`` subcommand (see cli.py for the options).

    Refuses an existing non-empty folder unless ``--overwrite`` (exit 2).
    """
    from ..core.progress import TqdmProgress
    from ..core.simulate import NightParams, simulate_night

    out = Path(args.dir)
    w, h = parse_size(args.size)
    counts = {}
    for opt, field in (("lights", "n_lights"), ("darks", "n_darks"), ("flats", "n_flats"),
                       ("biases", "n_biases")):
        v = getattr(args, opt, None)
        if v is not None:
            if v < 0:
                raise BadInputError(f"--{opt}", f"must not be negative (got {v})")
            counts[field] = int(v)
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise BadInputError(out, "folder exists and is not empty (use --overwrite)")
    from .inputs import check_output_dir

    check_output_dir(out)
    params = NightParams(width=w, height=h, mono=bool(args.mono), bayer=args.bayer.upper(),
                         seed=int(args.seed), **counts)
    t0 = time.perf_counter()
    with TqdmProgress(desc="simulate", disable=not sys.stderr.isatty()) as bar:
        truth = simulate_night(out, params, progress=bar, overwrite=bool(args.overwrite))
    n = (len(truth.lights) + len(truth.darks) + len(truth.flats) + len(truth.biases)
         + len(truth.darkflats))
    print(f"{out}: {n} frames ({len(truth.lights)} lights, {len(truth.darks)} darks, "
          f"{len(truth.flats)} flats, {len(truth.biases)} biases) {w}x{h} "
          f"{'mono' if params.mono else params.bayer} in {time.perf_counter() - t0:.1f} s; "
          f"truth in {out / 'truth'}")
    return 0
