"""Opening cost of the napari display conventions (widgets/_layers.py).

Times, on the real Seestar M94 frames of ../shared/data (else simulated ones of the
same size): the per-channel (unlinked) display copy of a colour stack
(``colour_display``: STF per channel + histogram transformation) and the debayered
preview of one raw CFA frame (``cfa_preview_layer_data``: bilinear demosaic + the
colour display). No peer: napari shows the mosaic as it is. Prints min and max of
``--reps`` runs.

    python benchmarks/bench_display.py [--reps 5] [--stack STACK.fits]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--stack", type=Path, help="a colour stack (default: simulated 1920x1080)")
    args = ap.parse_args()
    from napari_astro.core.image import AstroImage
    from napari_astro.core.io import read_image
    from napari_astro.widgets._layers import cfa_preview_layer_data, colour_display

    if args.stack:
        stack = read_image(args.stack)
    else:
        stack = AstroImage(np.random.default_rng(0).random((3, 1920, 1080), np.float32) * 0.2)
    raws = sorted((ROOT.parent / "shared" / "data" / "seestar_m94" / "session1").glob("*.fit"))
    raw = read_image(raws[0]) if raws else AstroImage(
        np.random.default_rng(1).random((1920, 1080), np.float32) * 0.2, bayer="GRBG")
    jobs = {f"colour_display 3x{stack.data.shape[1]}x{stack.data.shape[2]}":
            lambda: colour_display(stack.data),
            f"cfa_preview {raw.data.shape[0]}x{raw.data.shape[1]}":
            lambda: cfa_preview_layer_data(raw)}
    for f in jobs.values():  # numba compilation, caches
        f()
    for name, f in jobs.items():
        ts = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        print(f"{name}: {min(ts) * 1000:.0f} ms (min of {args.reps}; max {max(ts) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
