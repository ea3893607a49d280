"""Issue 13: the first run after a fresh install (empty numba cache) against a warm run.

The Seestar M94 session (both sessions' 16 raw lights, no calibration frames, the
folder ``bench_stack.py --seestar`` makes under ``$BENCH_DATA/seestar``) stacked by
``napari-astro stack``:

* **README install** (this repository's ``.venv``, ``tools/install.sh``): the first
  run with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (every numba kernel
  compiles), then a warm run with the same folder; alternating, median of ``--reps``.
* **README install + warm-up** (``--warm-up``): the same, with
  ``python -m napari_astro.pipeline.warmup`` run after the install (what
  ``tools/install.sh`` should run, and the plugin's start-up in a subprocess; its own
  time is given apart): the first run then finds the kernels in the cache.
* **plain pip install** (``--pip-venv DIR``: ``python -m venv DIR`` and ``DIR/bin/pip
  install REPO``, the route napari's plugin manager takes; made once, reused): the
  same two runs with its ``napari-astro``.
* **compile profile** (``--compiles``): one more first run, in-process, recording
  numba's ``numba:compile`` events: seconds per kernel (its own, and with the
  kernels it compiled inside it) and the number of compilations.

Writes ``results/first_run.json`` and ``results/first_run.md`` (included in RESULTS.md
by report.py); ``results/first_run.baseline.json``, if there, holds the compile
profile from before issue 13's changes and is shown beside the new one, and
``results/first_run.notes.md`` (one-off measurements, by hand) is appended. Goal:
first run at most 1.5x the warm run.

Usage::

    python benchmarks/bench_first_run.py [--reps 3] [--pip-venv /tmp/venv-pip]
        [--warm-up] [--compiles]
"""

from __future__ import annotations

import sys


def _profile_child(out_json: str, argv: list) -> int:
    """``napari-astro ARGV`` in this process, numba compilations recorded to
    ``out_json`` as ``[name, args, total_s, self_s, top_level_caller]`` rows."""
    import json
    import time

    from numba.core import event as ev

    stack, rows = [], []

    class Listener(ev.Listener):
        def on_start(self, event):
            stack.append([event.data["dispatcher"].py_func, str(event.data["args"]),
                          time.perf_counter(), 0.0])

        def on_end(self, event):
            fn, args, t0, child = stack.pop()
            total = time.perf_counter() - t0
            if stack:
                stack[-1][3] += total
            rows.append([f"{fn.__module__}.{fn.__qualname__}", args, total, total - child,
                         stack[0][0].__qualname__ if stack else ""])

    ev.register("numba:compile", Listener())
    from napari_astro.cli import main

    t0 = time.perf_counter()
    rc = main(argv)
    with open(out_json, "w") as f:
        json.dump({"wall_s": time.perf_counter() - t0, "rc": rc, "rows": rows}, f)
    return rc


if __name__ == "__main__" and sys.argv[1:2] == ["--profile-child"]:
    # runs in the measured install's Python, before the harness's own imports
    sys.exit(_profile_child(sys.argv[2], sys.argv[3:]))

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from bench_stack import seestar_sessions  # noqa: E402
from measure import measure  # noqa: E402

GOAL = 1.5
BASELINE = common.RESULTS_DIR / "first_run.baseline.json"
ROUTE_COLD = ".venv, no warm-up (empty cache)"
ROUTE_README = ("README install (+ `python -m napari_astro.pipeline.warmup`, as install.sh "
                "should run)")
NOTES = common.RESULTS_DIR / "first_run.notes.md"  # hand-written, appended to the report


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


def _loadavg() -> float:
    return os.getloadavg()[0]


def _one(exe: Path, session: Path, cache: Path, work: Path) -> dict:
    out = common.fresh(work)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    load = _loadavg()
    m = measure([str(exe), "stack", str(session / "lights"), "-o", str(out / "stack.fits"),
                 "-q"], env=env, log=out / "run.log")
    if m.returncode != 0:
        raise SystemExit(f"{exe} failed: see {out / 'run.log'}")
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_MB": m.peak_rss_bytes / 2**20,
            "cmd": " ".join(m.cmd), "load": load}


def _warm_up(exe: Path, cache: Path) -> float:
    py = exe.with_name("python")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    m = measure([str(py), "-m", "napari_astro.pipeline.warmup", "-q"], env=env)
    if m.returncode != 0:
        raise SystemExit("python -m napari_astro.pipeline.warmup failed")
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
        print(f"  {route} rep {rep}: first {c['wall_s']:.1f} s wall / {c['cpu_s']:.1f} s CPU "
              f"(load {c['load']:.1f}), warm {w['wall_s']:.1f} s / {w['cpu_s']:.1f} s "
              f"(load {w['load']:.1f})", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    span = lambda rs, k: [min(r[k] for r in rs), max(r[k] for r in rs)]  # noqa: E731
    return {"route": route, "cold": cold, "warm": warm,
            "ratio_wall": med(cold, "wall_s") / med(warm, "wall_s"),
            "ratio_cpu": med(cold, "cpu_s") / med(warm, "cpu_s"),
            "cold_wall_s": med(cold, "wall_s"), "warm_wall_s": med(warm, "wall_s"),
            "cold_wall_range": span(cold, "wall_s"), "warm_wall_range": span(warm, "wall_s"),
            "cold_cpu_s": med(cold, "cpu_s"), "warm_cpu_s": med(warm, "cpu_s"),
            "cold_peak_MB": med(cold, "peak_MB"), "warm_peak_MB": med(warm, "peak_MB"),
            "load_range": span(cold + warm, "load"),
            "cmd": cold[0]["cmd"],
            "warm_up_s": statistics.median(warmups) if warmups else None}


def compile_profile(exe: Path, session: Path, work: Path) -> dict:
    """One first run in-process with the compile events recorded (see module doc)."""
    out = common.fresh(work / "compiles")
    cache = out / "numba-cache"
    cache.mkdir()
    prof = out / "compiles.json"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    load = _loadavg()
    subprocess.run([str(exe.with_name("python")), __file__, "--profile-child", str(prof),
                    "stack", str(session / "lights"), "-o", str(out / "stack.fits"), "-q"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return summarise_profile(json.loads(prof.read_text()), load)


def summarise_profile(d: dict, load: float) -> dict:
    top = collections.defaultdict(float)
    for name, _args, total, _self, parent in d["rows"]:
        if not parent:
            top[name] += total
    return {"wall_s": d["wall_s"], "load": load, "n_compiles": len(d["rows"]),
            "compile_s": sum(r[3] for r in d["rows"]),
            "kernels": dict(sorted(top.items(), key=lambda kv: -kv[1]))}


def _short(name: str) -> str:
    return name.replace("napari_astro.core.", "").replace("numba.", "numba:")


def markdown(rows: list[dict], info: dict, prof: dict | None, base: dict | None) -> str:
    out = ["## Pre-processing: first run after install vs warm run (issue 13)", "",
           f"Written by `benchmarks/bench_first_run.py` ({info['date']}; measured under load: "
           f"load average {info['loadavg'][0]:.1f} at the start, and per run as given). "
           "The Seestar M94 session (16 raw lights of both sessions, no calibration frames); "
           "first run = `NUMBA_CACHE_DIR` at a new empty folder (every kernel compiles), "
           "warm = the next run with the same folder; median (min-max) of the repetitions, "
           "alternating. Goal: first run at most 1.5x the warm run.", "",
           "| install | first run wall s | warm wall s | ratio wall | first CPU s | warm CPU s "
           "| ratio CPU | first peak MB | warm peak MB | load | goal met |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("warm_up_s") is not None:
            r = dict(r, route=f"{r['route']} (warm-up at install: {r['warm_up_s']:.1f} s)")
        cr, wr, lr = r["cold_wall_range"], r["warm_wall_range"], r["load_range"]
        out.append(f"| {r['route']} | {r['cold_wall_s']:.1f} ({cr[0]:.1f}-{cr[1]:.1f}) | "
                   f"{r['warm_wall_s']:.1f} ({wr[0]:.1f}-{wr[1]:.1f}) | "
                   f"**{r['ratio_wall']:.2f}** | {r['cold_cpu_s']:.1f} | {r['warm_cpu_s']:.1f} "
                   f"| {r['ratio_cpu']:.2f} | {r['cold_peak_MB']:.0f} | {r['warm_peak_MB']:.0f} "
                   f"| {lr[0]:.1f}-{lr[1]:.1f} "
                   f"| {'yes' if r['ratio_wall'] <= GOAL else 'no'} |")
    out += ["", "Commands as run:", "", "```"]
    out += [f"[{r['route']}] NUMBA_CACHE_DIR=<new empty folder> {r['cmd']}" for r in rows]
    out += ["```", ""]
    if prof:
        cols = [("before", base), ("now", prof)] if base else [("now", prof)]
        out += ["### Compile time per kernel (first run, in-process `numba:compile` events)", "",
                "Seconds per top-level kernel, the kernels and numba internals it compiled "
                "inside it included. " + "; ".join(
                    f"{label}: {p['n_compiles']} compilations, {p['compile_s']:.1f} s in all, "
                    f"first run {p['wall_s']:.1f} s wall at load {p['load']:.1f}"
                    for label, p in cols) + ".", "",
                "| " + " | ".join(f"{label} kernel | s" for label, _ in cols) + " |",
                "|" + "---|---|" * len(cols)]
        lists = [list(p["kernels"].items()) for _, p in cols]
        for i in range(max(len(k) for k in lists)):
            cells = []
            for k in lists:
                cells += ([f"`{_short(k[i][0])}`", f"{k[i][1]:.2f}"] if i < len(k) else ["", ""])
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if NOTES.exists():
        out += [NOTES.read_text().rstrip(), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--pip-venv", default=None,
                    help="also measure a plain `pip install` of the repository into this venv")
    ap.add_argument("--pip-reps", type=int, default=None,
                    help="repetitions for the pip route (default --reps)")
    ap.add_argument("--work", default=str(common.BENCH_DATA / "work" / "first-run"))
    ap.add_argument("--warm-up", action="store_true",
                    help="also measure the first run after the install-time warm-up")
    ap.add_argument("--compiles", action="store_true",
                    help="also record the compile time per kernel of one first run")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    session = _session(Path(a.data))
    info = common.machine_info()
    exe = Path(common.napari_astro_cmd()[0])
    rows = [bench(ROUTE_COLD, exe, session, a.reps, work)]
    if a.warm_up:
        rows.append(bench(ROUTE_README, exe, session, a.reps, work, warm_up=True))
    if a.pip_venv:
        rows.append(bench("plain pip install (new venv)", _pip_venv(Path(a.pip_venv)),
                          session, a.pip_reps or a.reps, work))
    prof = compile_profile(exe, session, work) if a.compiles else None
    base = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "first_run.json").write_text(json.dumps(
        {"machine": info, "rows": rows, "compiles": prof}, indent=1))
    md = markdown(rows, info, prof, base)
    (common.RESULTS_DIR / "first_run.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
