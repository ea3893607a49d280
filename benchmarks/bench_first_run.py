"""Issue 13: the first run after a fresh install (empty numba cache) against a warm run.

The Seestar M94 session (both sessions' 16 raw lights, no calibration frames, the
folder ``bench_stack.py --seestar`` makes under ``$BENCH_DATA/seestar``) stacked by
``napari-astro stack``:

* **README install** (this repository's ``.venv``, ``tools/install.sh``): the first
  run with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (every numba kernel
  compiles), then a warm run with the same folder; alternating, median of ``--reps``.
* **README install + warm-up** (``--warm-up``): the same, with
  ``napari_astro.pipeline.stack.warm_up()`` run after the install (what an install
  script or the plugin's start-up would do; its own time is given apart): the first
  run then finds the kernels in the cache.
* **plain pip install** (``--pip-venv DIR``: ``python -m venv DIR`` and ``DIR/bin/pip
  install REPO``, the route napari's plugin manager takes; made once, reused): the
  same two runs with its ``napari-astro``.

Writes ``results/first_run.json`` and ``results/first_run.md`` (included in RESULTS.md
by report.py). Goal: first run at most 1.5x the warm run.

Usage::

    python benchmarks/bench_first_run.py [--reps 3] [--pip-venv /work/bench-data/venv-pip]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from bench_stack import seestar_sessions  # noqa: E402
from measure import measure  # noqa: E402

GOAL = 1.5


def _session(data: Path) -> Path:
    for label, folder in seestar_sessions(data, Path(common.BENCH_DATA) / "seestar"):
        if label == "seestar-m94-both":
            return folder
    raise SystemExit(f"{data}: no Seestar M94 frames")


def _pip_venv(path: Path) -> Path:
    exe = path / "bin" / "napari-astro"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    return exe


def _one(exe: Path, session: Path, cache: Path, work: Path) -> dict:
    out = common.fresh(work)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    m = measure([str(exe), "stack", str(session / "lights"), "-o", str(out / "stack.fits"),
                 "-q"], env=env, log=out / "run.log")
    if m.returncode != 0:
        raise SystemExit(f"{exe} failed: see {out / 'run.log'}")
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_MB": m.peak_rss_bytes / 2**20,
            "cmd": " ".join(m.cmd)}


def _warm_up(exe: Path, cache: Path) -> float:
    py = exe.with_name("python")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    m = measure([str(py), "-c", "from napari_astro.pipeline.stack import warm_up; warm_up()"],
                env=env)
    if m.returncode != 0:
        raise SystemExit("warm_up() failed")
    return m.wall_s


def bench(route: str, exe: Path, session: Path, reps: int, work: Path,
          warm_up: bool = False) -> dict:
    cold, warm, warmups = [], [], []
    for rep in range(reps):
        cache = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=work))
        if warm_up:
            warmups.append(_warm_up(exe, cache))
        slug = "".join(ch if ch.isalnum() else "-" for ch in route[:16])
        c = _one(exe, session, cache, work / f"{slug}-cold")
        w = _one(exe, session, cache, work / f"{slug}-warm")
        cold.append(c)
        warm.append(w)
        print(f"  {route} rep {rep}: first {c['wall_s']:.1f} s wall / {c['cpu_s']:.1f} s CPU, "
              f"warm {w['wall_s']:.1f} s / {w['cpu_s']:.1f} s", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    return {"route": route, "cold": cold, "warm": warm,
            "ratio_wall": med(cold, "wall_s") / med(warm, "wall_s"),
            "ratio_cpu": med(cold, "cpu_s") / med(warm, "cpu_s"),
            "cold_wall_s": med(cold, "wall_s"), "warm_wall_s": med(warm, "wall_s"),
            "cold_cpu_s": med(cold, "cpu_s"), "warm_cpu_s": med(warm, "cpu_s"),
            "cold_peak_MB": med(cold, "peak_MB"), "warm_peak_MB": med(warm, "peak_MB"),
            "cmd": cold[0]["cmd"],
            "warm_up_s": statistics.median(warmups) if warmups else None}


def markdown(rows: list[dict], info: dict) -> str:
    out = ["## Pre-processing: first run after install vs warm run (issue 13)", "",
           f"Written by `benchmarks/bench_first_run.py` ({info['date']}, load average "
           f"{info['loadavg'][0]:.1f} at the start{': the machine was shared, CPU times are the steadier figures' if info['loadavg'][0] > 1.5 else ''}). "
           "The Seestar M94 session (16 raw lights of both sessions, no calibration frames); "
           "first run = `NUMBA_CACHE_DIR` at a new empty folder (every kernel compiles), "
           "warm = the next run with the same folder; median of the repetitions, "
           "alternating. Goal: first run at most 1.5x the warm run.", "",
           "| install | first run wall s | warm wall s | ratio wall | first CPU s | warm CPU s "
           "| ratio CPU | first peak MB | warm peak MB | goal met |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("warm_up_s") is not None:
            r = dict(r, route=f"{r['route']} (warm-up at install: {r['warm_up_s']:.1f} s)")
        out.append(f"| {r['route']} | {r['cold_wall_s']:.1f} | {r['warm_wall_s']:.1f} | "
                   f"**{r['ratio_wall']:.2f}** | {r['cold_cpu_s']:.1f} | {r['warm_cpu_s']:.1f} "
                   f"| {r['ratio_cpu']:.2f} | {r['cold_peak_MB']:.0f} | {r['warm_peak_MB']:.0f} "
                   f"| {'yes' if r['ratio_wall'] <= GOAL else 'no'} |")
    out += ["", "Commands as run:", "", "```"]
    out += [f"[{r['route']}] NUMBA_CACHE_DIR=<new empty folder> {r['cmd']}" for r in rows]
    out += ["```", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--pip-venv", default=None,
                    help="also measure a plain `pip install` of the repository into this venv")
    ap.add_argument("--work", default=str(common.BENCH_DATA / "work" / "first-run"))
    ap.add_argument("--warm-up", action="store_true",
                    help="also measure the first run after warm_up() at install time")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    session = _session(Path(a.data))
    info = common.machine_info()
    rows = [bench("README install (.venv, tools/install.sh)",
                  Path(common.napari_astro_cmd()[0]), session, a.reps, work)]
    if a.warm_up:
        rows.append(bench("README install + warm_up()", Path(common.napari_astro_cmd()[0]),
                          session, a.reps, work, warm_up=True))
    if a.pip_venv:
        rows.append(bench("plain pip install (new venv)", _pip_venv(Path(a.pip_venv)),
                          session, a.reps, work))
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "first_run.json").write_text(json.dumps(
        {"machine": info, "rows": rows}, indent=1))
    md = markdown(rows, info)
    (common.RESULTS_DIR / "first_run.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
