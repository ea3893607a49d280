"""``napari-astro demo``: the whole workflow on a simulated night.

Simulates a night (bias, darks, flats, lights with known truth), stacks it with
:func:`pipeline.stack.run_stack`, stretches the result for display and writes
``DIR/stack.fits``, ``DIR/final.jpg`` and ``DIR/report.txt`` with figures measured
against the simulator's truth. It grows with the project: post-processing steps join
the chain as they land.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..core.errors import BadInputError

__all__ = ["run_demo", "cli_demo", "compare_to_truth"]


def compare_to_truth(stack_data: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Fit ``stack = a * truth + b`` per channel and report the residual figures.

    Returns a dict with the fit coefficients, the robust residual noise (sigma of the
    residual in faint-sky pixels, in units of the truth) and the residual's large-scale
    structure (std of 32x32 block means).
    """
    s = np.atleast_3d(stack_data.reshape((-1,) + stack_data.shape[-2:]))
    t = np.atleast_3d(truth.reshape((-1,) + truth.shape[-2:]))
    out = {"channels": []}
    for c in range(s.shape[0]):
        sc, tc = s[c].astype(np.float64), t[c].astype(np.float64)
        valid = np.isfinite(sc) & np.isfinite(tc)
        if mask is not None:
            valid &= mask
        # Star cores that saturated in the raw frames are clipped in any stack but not
        # in the truth: fit and measure below the brightest 0.5% of the truth.
        valid &= tc < np.percentile(tc[valid], 99.5)
        A = np.vstack([tc[valid], np.ones(valid.sum())]).T
        (a, b), *_ = np.linalg.lstsq(A, sc[valid], rcond=None)
        resid = (sc - b) / a - tc
        faint = valid & (tc < np.percentile(tc[valid], 50))
        r = resid[faint]
        noise = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        h, w = resid.shape
        bh, bw = h // 32 * 32, w // 32 * 32
        blocks = np.where(valid, resid, np.nan)[:bh, :bw].reshape(bh // 32, 32, bw // 32, 32)
        block_means = np.nanmedian(blocks, axis=(1, 3))
        out["channels"].append({"scale": float(a), "offset": float(b), "noise": noise,
                                "large_scale_std": float(np.nanstd(block_means)),
                                "sky_level": float(np.median(tc[valid]))})
    return out


def run_demo(out_dir: str | Path, *, size: tuple[int, int] = (1200, 900), lights: int = 12,
             seed: int = 1, overwrite: bool = False, log=print) -> dict:
    """Simulate a night and run the workflow; return the report as a dict."""
    from ..core.io import read_image
    from ..core.io.export import export_image
    from ..core.progress import TqdmProgress
    from ..core.simulate import NightParams, simulate_night
    from ..core.stretch import auto_stretch
    from .stack import run_stack
    from .steps import RegisterParams, StackParams

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BadInputError(out, "output folder is not empty (use --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    n_cal = max(5, lights // 2)
    params = NightParams(width=size[0], height=size[1], n_lights=lights, n_darks=n_cal,
                         n_flats=n_cal, n_biases=n_cal, seed=seed)
    log(f"simulating a {size[0]}x{size[1]} colour night: {lights} lights, {n_cal} each of "
        f"bias, dark and flat")
    truth = simulate_night(out / "night", params)
    timings["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with TqdmProgress("stack") as bar:
        # The truth is in light 0's grid: make it the reference so the figures compare.
        result = run_stack([out / "night"], out / "stack.fits", stack=StackParams(),
                           register=RegisterParams(reference=str(truth.lights[0])),
                           work_dir=out / "work", overwrite=True, progress=bar, log=None)
    timings["stack"] = time.perf_counter() - t0
    stack_path = next(iter(result.outputs.values()))
    stacked = read_image(stack_path)

    t0 = time.perf_counter()
    final = auto_stretch(stacked, linked=False)
    export_image(final, out / "final.jpg", bits=8, max_size=2048, overwrite=True)
    timings["post"] = time.perf_counter() - t0

    figures = compare_to_truth(stacked.data, truth.sky, stacked.mask)
    report = {"timings_s": timings, "truth_comparison": figures,
              "frames": result.quality}
    lines = ["napari-astro demo report", "",
             f"night: {size[0]}x{size[1]} colour, {lights} lights, {n_cal} bias/dark/flat",
             f"output: {stack_path}", f"preview: {out / 'final.jpg'}", ""]
    for k, v in timings.items():
        lines.append(f"time {k}: {v:.1f} s")
    for c, ch in enumerate(figures["channels"]):
        lines.append(f"channel {'RGB'[c] if len(figures['channels']) == 3 else 'L'}: "
                     f"stack = {ch['scale']:.4f} * truth + {ch['offset']:.5f}; residual noise "
                     f"{ch['noise']:.2e} ({ch['noise'] / max(ch['sky_level'], 1e-12) * 100:.2f}% of sky); "
                     f"large-scale residual {ch['large_scale_std'] / max(ch['sky_level'], 1e-12) * 100:.3f}% of sky")
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        log(line)
    return report


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInputError("--size", f"expected WxH, got {text!r}") from None
    if w < 64 or h < 64:
        raise BadInputError("--size", "at least 64x64")
    return w, h


def cli_demo(args) -> int:
    run_demo(args.output, size=_parse_size(args.size), lights=args.lights, seed=args.seed,
             overwrite=args.overwrite, log=lambda s: print(s, file=sys.stdout, flush=True))
    return 0
