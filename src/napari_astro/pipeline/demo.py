"""``napari-astro demo``: the whole workflow on a simulated night.

Simulates a night (bias, darks, flats, lights with known truth), stacks it with
:func:`pipeline.stack.run_stack`, finishes it with the default post-processing recipe
(:func:`pipeline.recipes.default_recipe`: crop, background, colour, noise reduction,
stretch, saturation) and writes ``DIR/stack.fits`` (linear), ``DIR/final.jpg`` (the
recipe's result), ``DIR/final_recipe.toml`` (the recipe as run, every parameter, to
replay with ``napari-astro process --recipe``) and ``DIR/report.txt`` with figures
measured against the simulator's truth and the recipe's timings and messages.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..core.errors import BadInputError

__all__ = ["run_demo", "cli_demo", "compare_to_truth", "finish_with_recipe", "MANIFEST",
           "DEMO_PRODUCTS"]

#: What the demo writes in its folder (``--overwrite`` removes these and nothing else).
DEMO_PRODUCTS = ("night", "work", "stack.fits", "stack_coverage.fits", "stack.log",
                 "final.jpg", "final_recipe.toml", "report.txt")
#: The list of the demo's own files, kept in its folder.
MANIFEST = ".napari-astro-demo.json"


def _write_manifest(out: Path, names) -> None:
    import json

    (out / MANIFEST).write_text(json.dumps({"written_by": "napari-astro demo",
                                            "entries": sorted(names)}, indent=1))


def _remove_previous(out: Path) -> None:
    """Remove what an earlier demo wrote in ``out`` (its manifest says what), only that:
    a folder the demo did not write is refused rather than emptied."""
    import json

    try:
        entries = json.loads((out / MANIFEST).read_text())["entries"]
    except (OSError, ValueError, KeyError):
        raise BadInputError(out, "folder holds files the demo did not write (no "
                                 f"{MANIFEST}): choose an empty or new folder") from None
    for name in entries:
        p = out / name
        if Path(name).name != name:  # a manifest entry is a plain name inside ``out``
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    (out / MANIFEST).unlink()


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
    from .stack import run_stack
    from .steps import RegisterParams, StackParams

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BadInputError(out, "output folder is not empty (use --overwrite)")
        _remove_previous(out)
    from .inputs import check_output_dir
    from .recipes import save_recipe

    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    # Listed before they are written, so an interrupted demo is cleaned up too.
    _write_manifest(out, DEMO_PRODUCTS)
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
    post = finish_with_recipe(stacked, stack_path, log=log)
    export_image(post["image"], out / "final.jpg", bits=8, max_size=2048, overwrite=True)
    save_recipe(post["entries"], out / "final_recipe.toml")
    timings["post"] = time.perf_counter() - t0

    figures = compare_to_truth(stacked.data, truth.sky, stacked.mask)
    report = {"timings_s": timings, "truth_comparison": figures,
              "frames": result.quality, "recipe_timings_s": post["timings"],
              "recipe_messages": post["messages"]}
    lines = ["napari-astro demo report", "",
             f"night: {size[0]}x{size[1]} colour, {lights} lights, {n_cal} bias/dark/flat",
             f"output: {stack_path}", f"finished: {out / 'final.jpg'} (default recipe, "
             f"{out / 'final_recipe.toml'})", ""]
    for k, v in timings.items():
        lines.append(f"time {k}: {v:.1f} s")
    for c, ch in enumerate(figures["channels"]):
        lines.append(f"channel {'RGB'[c] if len(figures['channels']) == 3 else 'L'}: "
                     f"stack = {ch['scale']:.4f} * truth + {ch['offset']:.5f}; residual noise "
                     f"{ch['noise']:.2e} ({ch['noise'] / max(ch['sky_level'], 1e-12) * 100:.2f}% of sky); "
                     f"large-scale residual {ch['large_scale_std'] / max(ch['sky_level'], 1e-12) * 100:.3f}% of sky")
    lines += ["", f"post-processing (default recipe, {len(post['timings'])} steps):"]
    for i, (name, sec) in enumerate(post["timings"]):
        lines.append(f"  {i + 1}. {name}: {sec:.1f} s")
    lines += [f"  {m}" for m in post["messages"]]
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        log(line)
    return report


def finish_with_recipe(stacked, stack_path, *, entries=None, log=None) -> dict:
    """Run the default recipe (or ``entries``) on a linear stack, with the coverage map
    integration wrote beside it (for the automatic crop).

    Returns
    -------
    dict
        ``image`` (the finished AstroImage), ``entries`` (the recipe as run),
        ``timings`` (list of (step title, seconds)) and ``messages`` (each step's
        remarks, "step.id: text").
    """
    from .recipes import _coverage_input, default_recipe, run_recipe

    entries = list(entries) if entries is not None else default_recipe()
    timings: list[tuple[str, float]] = []
    clock = [time.perf_counter()]

    def on_step(i, entry, result) -> None:
        now = time.perf_counter()
        title = entry.params.TITLE or entry.step_id
        timings.append((f"{title}" + (f" (mask {entry.mask})" if entry.mask else ""),
                        now - clock[0]))
        clock[0] = now
        if log is not None:
            log(f"post {i + 1}/{len(entries)}: {timings[-1][0]} {timings[-1][1]:.1f} s")

    res = run_recipe(stacked, entries, inputs=_coverage_input(str(stack_path)), on_step=on_step)
    return {"image": res.image, "entries": entries, "timings": timings,
            "messages": list(res.messages)}


def _parse_size(text: str) -> tuple[int, int]:
    from .simulate import parse_size

    w, h = parse_size(text)
    if w < 64 or h < 64:
        raise BadInputError("--size", "at least 64x64")
    return w, h


def cli_demo(args) -> int:
    run_demo(args.output, size=_parse_size(args.size), lights=args.lights, seed=args.seed,
             overwrite=args.overwrite, log=lambda s: print(s, file=sys.stdout, flush=True))
    return 0
