"""Shared harness of the benchmarks: run our CLI and Siril alternately, keep the figures.

Each benchmark (``bench_*.py``) runs the two tools on the same inputs in the same
process, alternating which goes first from one repetition to the next (so that
neither always gets the warmer page cache or the quieter minute), and records every
run plus the medians and the ratios ours/Siril in ``benchmarks/results/NAME.json``.
``report.py`` turns those files into RESULTS.md.

Our side is the ``napari-astro`` command line. A subcommand that is not built yet
exits 2 with ``"napari-astro X: not built yet"``: the harness records that status and
Siril's figures alone, so that the benchmarks run (and say so) before our side exists.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import siril  # noqa: E402
from measure import Measurement, measure  # noqa: E402

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS", HERE / "results"))
BENCH_DATA = Path(os.environ.get("BENCH_DATA", "/work/bench-data"))
GOAL_TIME_RATIO = 0.5  # the project's goal: at most half of Siril's time
GOAL_MEM_RATIO = 1.0   # ... at no more memory


def napari_astro_cmd() -> list[str]:
    """How to start our CLI: $NAPARI_ASTRO, else ``napari-astro`` beside this Python."""
    if os.environ.get("NAPARI_ASTRO"):
        return os.environ["NAPARI_ASTRO"].split()
    beside = Path(sys.executable).with_name("napari-astro")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("napari-astro")
    return [found] if found else [sys.executable, "-m", "napari_astro.cli"]


def run_ours(args: Sequence[str], log: Path, *, timeout: float | None = 3600) -> Measurement:
    """Run ``napari-astro ARGS`` measured; ``extra['status']`` is ok/not built/failed."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    m = measure(napari_astro_cmd() + [str(a) for a in args], log=log, timeout=timeout)
    text = log.read_text(errors="replace") if log.exists() else ""
    if m.returncode == 0:
        status = "ok"
    elif m.returncode == 2 and "not built yet" in text:
        status = "not built"
    else:
        status = "failed"
        m.extra["error"] = text.strip().splitlines()[-3:]
    m.extra.update(tool="ours", status=status)
    return m


def fits_files(folder: Path) -> list[Path]:
    """FITS files of a folder, sorted by name."""
    return sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".fit", ".fits", ".fts"))


def night_dir(n_lights: int) -> Path:
    """Where ``run_all.sh`` puts the simulated night with ``n_lights`` lights."""
    return BENCH_DATA / f"night{n_lights}"


def session_inputs(session: Path) -> list[Path]:
    """The frame folders of a session (bias/ darks/ flats/ lights/ ...), for our CLI.

    Passed explicitly rather than the session folder, because a simulated night also
    holds truth/sky.fits, which is not a frame.
    """
    session = Path(session)
    subs = [session / n for n in ("bias", "biases", "offsets", "darks", "flats", "darkflats",
                                  "lights") if (session / n).is_dir()]
    return subs or [session]


def truth_dir(session: Path) -> Path | None:
    t = Path(session) / "truth"
    return t if (t / "sky.fits").exists() else None


def reference_light(session: Path) -> Path:
    """The first light by name: Siril's reference frame and the simulator's index 0."""
    for name in ("lights", "light"):
        files = fits_files(Path(session) / name)
        if files:
            return files[0]
    files = fits_files(Path(session))
    if not files:
        raise SystemExit(f"{session}: no lights")
    return files[0]


def machine_info() -> dict:
    """Date, CPU, cores, memory, load, versions: what a reader needs to judge figures."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem = psutil.virtual_memory().total
    except Exception:  # pragma: no cover - psutil is a benchmark requirement
        mem = 0
    try:
        ours = subprocess.run(napari_astro_cmd() + ["--version"], capture_output=True,
                              text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        ours = ""
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        commit += " (+ uncommitted changes)" if dirty else ""
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
        "memory_GiB": round(mem / 2**30, 1), "kernel": platform.release(),
        "python": platform.python_version(), "loadavg": os.getloadavg(),
        "siril": siril.siril_version(), "napari_astro": ours, "commit": commit,
    }


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict], stages: Sequence[str]) -> dict:
    """Medians per tool and stage over successful runs, and the ratios ours/Siril."""
    out = {}
    for stage in stages:
        row = {}
        for tool in ("siril", "ours"):
            ok = [r for r in runs if r["tool"] == tool and r["stage"] == stage
                  and r["returncode"] == 0]
            all_ = [r for r in runs if r["tool"] == tool and r["stage"] == stage]
            row[tool] = {
                "n": len(ok),
                "status": ("ok" if ok else (all_[-1].get("extra", {}).get("status", "failed")
                                            if all_ else "not run")),
                "wall_s": _median([r["wall_s"] for r in ok]),
                "cpu_s": _median([r["cpu_s"] for r in ok]),
                "peak_rss_MB": _median([r["peak_rss_bytes"] / 2**20 for r in ok]),
                "wall_all_s": [round(r["wall_s"], 2) for r in ok],
            }
        s, o = row["siril"], row["ours"]
        row["ratio"] = {k: (o[k] / s[k] if o[k] and s[k] else None)
                        for k in ("wall_s", "cpu_s", "peak_rss_MB")}
        out[stage] = row
    return out


class Bench:
    """Collects the runs of one benchmark and writes ``results/NAME.json``.

    Parameters
    ----------
    name : str
        Result file stem, e.g. ``"integration_night20"``.
    title : str
        One line for RESULTS.md.
    session : path
        The session (night) folder used.
    stages : sequence of str
        Stage names in display order (a tool's figure for a stage is the sum of the
        measured commands recorded under that name in one repetition).
    """

    def __init__(self, name: str, title: str, session: Path, stages: Sequence[str]):
        self.name, self.title, self.session = name, title, Path(session)
        self.stages = list(stages)
        self.runs: list[dict] = []
        self.commands: dict[str, list[str]] = {}
        self.quality: dict = {}
        self.notes: list[str] = []
        self.info = machine_info()
        self.info["loadavg_start"] = self.info.pop("loadavg")

    def record(self, rep: int, tool: str, stage: str, ms: Sequence[Measurement]) -> dict:
        """Record the measured commands of one stage of one tool (summed)."""
        ms = list(ms)
        rc = next((m.returncode for m in ms if m.returncode != 0), 0)
        extra: dict = {}
        for m in ms:
            extra.update(m.extra)
        r = {"rep": rep, "tool": tool, "stage": stage, "returncode": rc,
             "wall_s": sum(m.wall_s for m in ms), "cpu_s": sum(m.cpu_s for m in ms),
             "peak_rss_bytes": max(m.peak_rss_bytes for m in ms), "extra": extra,
             "loadavg": os.getloadavg()[0]}
        self.runs.append(r)
        key = f"{tool}:{stage}"
        self.commands.setdefault(key, [" ".join(m.cmd) for m in ms])
        status = extra.get("status", "ok" if rc == 0 else "failed")
        print(f"  rep {rep} {tool:5s} {stage:20s} "
              + (f"wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
                 f"peak {r['peak_rss_bytes'] / 2**20:7.0f} MB" if rc == 0 else status)
              + ("" if rc == 0 or status == "not built" else f"  {extra.get('error', '')}"),
              flush=True)
        return r

    def summary(self) -> dict:
        return summarise(self.runs, self.stages)

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        for r in self.runs:  # say why a run failed, once per tool and stage
            st = r["extra"].get("status")
            if r["returncode"] != 0 and st != "not built":
                msg = r["extra"].get("error") or f"exit status {r['returncode']}"
                msg = " / ".join(msg) if isinstance(msg, list) else str(msg)
                note = f"{r['tool']} {r['stage']} failed: {msg}"
                if note not in self.notes:
                    self.notes.append(note)
            elif st == "not built":
                note = f"ours {r['stage']}: `napari-astro` says not built yet; Siril's figures alone"
                if note not in self.notes:
                    self.notes.append(note)
        self.info["loadavg_end"] = os.getloadavg()
        doc = {"name": self.name, "title": self.title, "session": str(self.session),
               "machine": self.info, "stages": self.stages, "summary": self.summary(),
               "quality": self.quality, "commands": self.commands, "notes": self.notes,
               "runs": self.runs}
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps(doc, indent=1, default=float))
        self.print_summary()
        print(f"wrote {path}")
        return path

    def print_summary(self) -> None:
        print(f"\n{self.title}  (median of successful runs; ratio = ours / Siril)")
        print(f"{'stage':20s} {'Siril wall':>10s} {'ours wall':>10s} {'ratio':>6s} "
              f"{'Siril CPU':>10s} {'ours CPU':>9s} {'ratio':>6s} {'Siril MB':>9s} "
              f"{'ours MB':>8s} {'ratio':>6s}")
        f = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
        for stage, row in self.summary().items():
            s, o, q = row["siril"], row["ours"], row["ratio"]
            tail = "" if o["status"] == "ok" else f"   ours: {o['status']}"
            print(f"{stage:20s} {f(s['wall_s']):>10s} {f(o['wall_s']):>10s} "
                  f"{f(q['wall_s']):>6s} {f(s['cpu_s']):>10s} {f(o['cpu_s']):>9s} "
                  f"{f(q['cpu_s']):>6s} {f(s['peak_rss_MB'], 0):>9s} "
                  f"{f(o['peak_rss_MB'], 0):>8s} {f(q['peak_rss_MB']):>6s}{tail}")


def alternate(reps: int, siril_fn: Callable[[int], None], ours_fn: Callable[[int], None]) -> None:
    """Run ``reps`` repetitions, Siril first on even ones and ours first on odd ones."""
    for rep in range(reps):
        order = (siril_fn, ours_fn) if rep % 2 == 0 else (ours_fn, siril_fn)
        for fn in order:
            fn(rep)


def ours_ready(rep_results: list[dict]) -> bool:
    """False once our side reported 'not built' (no point repeating it)."""
    return not any(r["tool"] == "ours" and r["extra"].get("status") == "not built"
                   for r in rep_results)


def base_argparser(description: str):
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--lights", type=int, nargs="+", default=[20],
                    help="simulated nights to use, by number of lights (default 20)")
    ap.add_argument("--session", default=None,
                    help="use this session folder instead of the simulated night")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per tool (default 3)")
    ap.add_argument("--work", default=str(BENCH_DATA / "work"),
                    help="scratch folder for both tools' outputs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch outputs")
    ap.add_argument("--timeout", type=float, default=3600, help="per command, s")
    return ap


def sessions_from(args) -> list[tuple[str, Path]]:
    """(label, folder) pairs selected by --session / --lights."""
    if args.session:
        p = Path(args.session)
        return [(p.name, p)]
    out = []
    for n in args.lights:
        d = night_dir(n)
        if not (d / "lights").is_dir():
            raise SystemExit(f"{d}: no simulated night here; run benchmarks/run_all.sh "
                             f"or `napari-astro simulate {d} --lights {n}` first")
        out.append((f"night{n}", d))
    return out


def fresh(path: Path) -> Path:
    """An empty folder at ``path``."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def siril_prep(session: Path, label: str, work: Path, upto: str) -> Path:
    """Siril's work folder for ``session`` run (untimed) up to stage ``upto``, cached.

    Used to give both tools the very same inputs for a stage benchmark: e.g. Siril's
    calibrated frames ``process/pp_light_*.fit`` for registration, or its registered
    frames ``process/r_pp_light_*.fit`` for integration.
    """
    w = Path(work) / f"siril-prep-{label}"
    n = len(fits_files(Path(session) / "lights")) or len(fits_files(Path(session)))
    want = {"calibrate": "pp_light_", "register": "r_pp_light_"}[upto]
    # Siril may drop frames at registration: accept what it registered (>= 2)
    need = n if upto == "calibrate" else 2
    if len(siril.frames(w, want)) >= need and (w / f"prep-{upto}.ok").exists():
        return w
    stages = list(siril.STAGES[:siril.STAGES.index(upto) + 1])
    print(f"  preparing Siril's {want}* frames of {label} in {w} (untimed)", flush=True)
    if upto == "register" and (w / "prep-calibrate.ok").exists() and \
            len(siril.frames(w, "pp_light_")) == n:
        stages = ["register"]  # its calibrated frames are there already
        have = {"lights": n}
    else:
        have = siril.prepare_workdir(session, w)
    m = siril.run_stages(w, stages, have, name=f"prep-{upto}")
    if m.returncode != 0 or len(siril.frames(w, want)) < need:
        raise SystemExit(f"Siril's preparation failed: see {w}/prep-{upto}.log")
    (w / f"prep-{upto}.ok").write_text("ok\n")
    return w


def bench_main(run, doc: str, argv=None, *, extra=None) -> int:
    """The command line every bench_*.py shares: parse, then ``run(label, session,
    args)`` for each night. ``extra(parser)`` may add options of its own."""
    ap = base_argparser(doc.split("\n\n")[0])
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    for label, session in sessions_from(args):
        run(label, session, args)
    return 0
