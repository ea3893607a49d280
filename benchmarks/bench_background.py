"""Background extraction: napari-astro against Siril 1.0.6 ``seqsubsky`` and GraXpert.

Quality: on simulated linear colour images (core/simulate_post: 9 % sky gradient,
faint nebula, 300 stars, noise 0.002 on a 0.1 sky, 800x600), every tool runs with its
defaults and automatic samples; the figure is the issue's: RMS of 32 px block medians
of the background left in the result (result minus the truth's objects and noise =
exactly the result's background), after removing the mean, in % of the sky.

- ours: ``napari-astro background IN OUT`` (defaults: RBF, 12 per row, tolerance 2.5);
- Siril 1.0.6: ``seqsubsky`` on a one-image sequence (``load`` + ``subsky`` aborts
  the script after the fit in 1.0.6, before ``save``; so the sequence form is used,
  its .seq file written here since Siril writes none for one image), polynomial degree
  ``--siril-degree`` (default 4, Siril's highest), Siril's own sample grid;
- GraXpert (PyPI ``graxpert``, in its own venv ``--graxpert``): its CLI with a
  preferences file selecting RBF (thin plate) and the sample points of GraXpert's own
  automatic grid (``background_grid_selection`` with its defaults: 15 per row,
  tolerance 1.0, sample size 25), which the GUI's "Create grid" makes; the grid
  selection is run first in GraXpert's venv (its time counted in the total).

Speed and memory: the same three commands on a 6000x4000 colour image, alternating
tools, ``--reps`` times; wall time and peak RSS of the whole command (measure.py).

Usage::

    python benchmarks/bench_background.py [--reps 2] [--seeds 0 1 2] [--big 6000x4000]
        [--graxpert /tmp/gx-venv/bin] [--out benchmarks/results/background.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, napari_astro_cmd  # noqa: E402
from measure import measure  # noqa: E402

SIRIL = os.environ.get("SIRIL_CLI", "siril-cli")

GX_GRID = """
import json, sys
import numpy as np
from astropy.io import fits
from graxpert.background_grid_selection import background_grid_selection
data = fits.getdata(sys.argv[1]).astype(np.float32)
if data.ndim == 3:
    data = np.moveaxis(data, 0, -1)
else:
    data = data[:, :, None]
pts = background_grid_selection(data, 15, 1.0, 25)
json.dump({"interpol_type_option": "RBF", "RBF_kernel": "thin_plate", "sample_size": 25,
           "smoothing_option": 0.0, "corr_type": "Subtraction",
           "background_points": [[int(p[0]), int(p[1]), 1] for p in pts]},
          open(sys.argv[2], "w"))
print(len(pts))
"""


def write_input(path: Path, shape, seed: int, **kw):
    from astropy.io import fits

    from napari_astro.core.simulate_post import simulate_linear

    img, truth = simulate_linear(shape, seed=seed, **kw)
    fits.writeto(path, img.data, overwrite=True)
    return img, truth


def read(path: Path, like: np.ndarray) -> np.ndarray:
    from astropy.io import fits

    d = np.asarray(fits.getdata(path), np.float64)
    if d.shape != like.shape and d.ndim == 3 and d.shape[-1] == 3:
        d = np.moveaxis(d, -1, 0)
    return d


def residual_pct(out: np.ndarray, img, truth) -> float:
    """The issue's figure: RMS of 32 px block medians of the result's background."""
    from napari_astro.core.simulate_post import block_residual_rms

    left = out - (img.data - truth.background)  # result minus objects and noise
    return 100 * block_residual_rms(left, np.zeros_like(left)) / truth.sky_level


def run_ours(inp: Path, out: Path, log: Path):
    if out.exists():
        out.unlink()
    return measure(napari_astro_cmd() + ["background", str(inp), str(out)], log=log)


def run_siril(inp: Path, work: Path, degree: int, log: Path):
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copy(inp, work / "im_00001.fit")  # the copy is not timed
    # Siril writes no .seq for a one-image sequence (convert/link): write it as
    # Siril 1.0.6 does for two images (format version 3)
    (work / "im_.seq").write_text("#Siril sequence file. Contains list of files (images), "
                                  "selection, and registration data\n"
                                  "S 'im_' 1 1 1 5 -1 3\nL -1\nI 1 1\n")
    (work / "s.ssf").write_text("requires 1.0.0\nsetcpu 2\nset32bits\nsetcompress 0\n"
                                f"seqsubsky im_ {degree}\n")
    m = measure([SIRIL, "-s", "s.ssf", "-d", str(work)], cwd=work, log=log)
    text = log.read_text(errors="replace")
    times = re.findall(r"Execution time: ([\d.]+) (ms|s)", text)
    # the last "Execution time" is seqsubsky's own
    if times:
        v, unit = times[-1]
        m.extra["subsky_s"] = float(v) / (1000 if unit == "ms" else 1)
    return m, work / "bkg_im_00001.fit"


def run_graxpert(inp: Path, work: Path, gx_bin: Path, log: Path):
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    src = work / "in.fits"
    shutil.copy(inp, src)
    prefs = work / "prefs.json"
    t0 = time.perf_counter()
    g = measure([str(gx_bin / "python"), "-c", GX_GRID, str(src), str(prefs)], cwd=work,
                log=work / "grid.log")
    grid_s = time.perf_counter() - t0
    m = measure([str(gx_bin / "graxpert"), "-cli", "-cmd", "background-extraction", str(src),
                 "-output", "gx_out", "-preferences_file", str(prefs), "-gpu", "false"],
                cwd=work, log=log)
    m.extra.update(grid_s=grid_s, grid_rss=g.peak_rss_bytes, grid_rc=g.returncode,
                   points=len(json.loads(prefs.read_text())["background_points"]) if prefs.exists() else 0)
    return m, work / "gx_out.fits"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--big", default="6000x4000")
    ap.add_argument("--siril-degree", type=int, default=4)
    ap.add_argument("--graxpert", default="/tmp/gx-venv/bin")
    ap.add_argument("--work", default="/tmp/bench-background")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "background.json"))
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gx = Path(args.graxpert)
    have_gx = (gx / "graxpert").exists()
    res = {"machine": machine_info(), "quality": [], "speed": [], "notes": []}

    for seed in args.seeds:
        inp = work / f"q{seed}.fits"
        img, truth = write_input(inp, (600, 800), seed)
        row = {"seed": seed}
        m = run_ours(inp, work / f"q{seed}_ours.fits", work / f"q{seed}_ours.log")
        row["ours"] = residual_pct(read(work / f"q{seed}_ours.fits", img.data), img, truth) if m.ok else None
        ms, out = run_siril(inp, work / f"siril_q{seed}", args.siril_degree, work / f"q{seed}_siril.log")
        row["siril"] = residual_pct(read(out, img.data), img, truth) if ms.ok and out.exists() else None
        if have_gx:
            mg, out = run_graxpert(inp, work / f"gx_q{seed}", gx, work / f"q{seed}_gx.log")
            row["graxpert"] = residual_pct(read(out, img.data), img, truth) if mg.ok and out.exists() else None
            row["graxpert_points"] = mg.extra.get("points")
        row["before"] = residual_pct(img.data, img, truth)
        print("quality", row, flush=True)
        res["quality"].append(row)

    if not args.skip_big:
        w, h = (int(v) for v in args.big.lower().split("x"))
        inp = work / "big.fits"
        if not inp.exists():
            write_input(inp, (h, w), 11, stars=3000)
        for rep in range(args.reps):
            order = ["ours", "siril", "graxpert"] if rep % 2 == 0 else ["graxpert", "siril", "ours"]
            for tool in order:
                if tool == "ours":
                    m = run_ours(inp, work / "big_ours.fits", work / "big_ours.log")
                elif tool == "siril":
                    m, _ = run_siril(inp, work / "siril_big", args.siril_degree, work / "big_siril.log")
                elif have_gx:
                    m, _ = run_graxpert(inp, work / "gx_big", gx, work / "big_gx.log")
                else:
                    continue
                d = {"tool": tool, "rep": rep, "rc": m.returncode, "wall_s": m.wall_s,
                     "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_bytes / 2**20,
                     "cmd": " ".join(m.cmd), **m.extra}
                print("speed", d, flush=True)
                res["speed"].append(d)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
