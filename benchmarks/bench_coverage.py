"""Cost of the stack's coverage map (``core.coverage.coverage_map``) on registered frames.

The peer, measured alternately in the same run, is reading the same frames whole
(``core.io.read_image``): what a coverage map computed the naive way would cost.
Frames: ``N`` colour float32 FITS of ``W x H`` with NaN outside a dithered footprint,
as registration writes them (in the page cache after the first pass).

    .venv/bin/python benchmarks/bench_coverage.py [--frames 20] [--size 2000x1500] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_frames(folder: Path, n: int, w: int, h: int) -> list[Path]:
    from astropy.io import fits

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        data = rng.random((3, h, w), dtype=np.float32)
        dx, dy = rng.integers(0, 40, 2)
        data[:, :dy] = np.nan
        data[:, :, w - dx:] = np.nan
        p = folder / f"r_{i:03d}.fits"
        hdu = fits.PrimaryHDU(data)
        hdu.header["FOOTPRNT"] = "NAN"   # as registration marks its outputs
        hdu.writeto(p)
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", default="2000x1500")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    from napari_astro.core.coverage import coverage_map
    from napari_astro.core.io import read_image

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_frames(Path(tmp), a.frames, w, h)
        runs = {"coverage_map": [], "read whole": []}

        def whole():
            out = np.zeros((h, w), np.float32)
            for p in paths:
                img = read_image(p)
                out += img.mask if img.mask is not None else True
            return out

        for rep in range(a.reps):
            order = [("coverage_map", lambda: coverage_map(paths)), ("read whole", whole)]
            if rep % 2:
                order.reverse()
            for name, fn in order:
                t0 = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - t0)
    for name, ts in runs.items():
        print(f"{name}: median {statistics.median(ts):.2f} s (min {min(ts):.2f}, "
              f"max {max(ts):.2f}) over {len(ts)} runs")
    ratio = statistics.median(runs["coverage_map"]) / statistics.median(runs["read whole"])
    print(f"ratio coverage_map / read whole: {ratio:.2f}")


if __name__ == "__main__":
    main()
