"""Issue 13: where a small lights-only session's time goes (cProfile of ``stack``).

``napari-astro stack`` on the Seestar M94 session (16 raw lights of both sessions, the
folder ``bench_stack.py --seestar`` makes; the first light named as the reference, as
bench_stack.py does, so the one-pass flow runs) under cProfile with a **CPU-time** clock
(``time.process_time``: all threads of the process, so a loaded machine's waiting is
not counted) and under py-spy (every thread, when installed), warm numba cache (a first run compiles: see bench_first_run.py); also the
start-up cost alone (``napari-astro --help``, measured). Writes
``results/profile_seestar.md`` (top entries by own CPU time and by cumulative CPU time)
and the raw profile ``$BENCH_DATA/work/profile/profile_seestar.prof`` (``python -m pstats``).

Usage::

    python benchmarks/profile_seestar.py [--data ../shared/data] [--top 20]
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from bench_stack import seestar_sessions  # noqa: E402
from measure import measure  # noqa: E402

RUNNER = """
import cProfile, sys, time
from napari_astro.cli import main
pr = cProfile.Profile(timer=time.process_time)
pr.enable()
try:
    rc = main(sys.argv[2:])
finally:
    pr.disable()
    pr.dump_stats(sys.argv[1])
sys.exit(rc or 0)
"""


def _table(st: pstats.Stats, key: str, top: int, root: str) -> list[str]:
    st.sort_stats(key)
    rows = ["| own CPU s | cumulative CPU s | calls | function |", "|---|---|---|---|"]
    for func in st.fcn_list[:top]:
        cc, nc, tt, ct, _ = st.stats[func]
        fn, line, name = func
        fn = fn.replace(root, "").replace(sys.prefix, "<venv>")
        where = f"{name}" if fn == "~" else f"{fn}:{line} {name}"
        rows.append(f"| {tt:.2f} | {ct:.2f} | {nc} | `{where}` |")
    return rows


def _spy(exe: list, args: list, out: Path, top: int) -> list[str]:
    """py-spy (every thread, native frames off) of the same run: share of the samples
    by the deepest napari_astro frame; [] when py-spy is not installed."""
    from collections import Counter

    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return ["(py-spy not installed: `pip install py-spy` adds the all-threads view)"]
    raw = out / "spy.txt"
    subprocess.run([str(spy), "record", "-r", "50", "-f", "raw", "-o", str(raw), "--",
                    *exe, *args], capture_output=True)
    if not raw.exists():
        return ["(py-spy could not sample here)"]
    import re

    by: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        ours = [f for f in frames if "napari_astro" in f]
        by[(ours[-1] if ours else frames[-1]).strip()] += int(n)
        for f in {re.sub(r":\d+\)", ")", f.strip()) for f in ours}:
            incl[f] += int(n)   # every function on the stack, lines merged
        total += int(n)
    rows = [f"py-spy, every thread ({total} samples at 50 Hz of a second run; a sample "
            "is counted at the deepest napari_astro frame, i.e. a numba kernel or a "
            "library call is charged to the line that calls it):", "",
            "| share of samples | where |", "|---|---|"]
    for k, v in by.most_common(top):
        rows.append(f"| {100 * v / total:.1f} % | `{k.replace(str(ROOT) + os.sep, '')}` |")
    rows += ["", "The same samples by function, inclusive (a sample counts for every "
             "napari_astro function on its stack):", "", "| share of samples | function |",
             "|---|---|"]
    for k, v in incl.most_common(top + 10):
        rows.append(f"| {100 * v / total:.1f} % | `{k}` |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--work", default=str(common.BENCH_DATA / "work" / "profile"))
    a = ap.parse_args(argv)
    session = dict(seestar_sessions(Path(a.data), Path(common.BENCH_DATA) / "seestar")).get(
        "seestar-m94-both")
    if session is None:
        print("no Seestar M94 data: skipped")
        return 0
    work = common.fresh(Path(a.work))
    prof = work / "profile_seestar.prof"   # binary: kept out of results/
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    exe = common.napari_astro_cmd()
    # as bench_stack.py runs it: the first light named as the reference (one pass)
    ref = ["--reference", str(common.reference_light(session))]
    warm = measure(exe + ["stack", str(session / "lights"), "-o", str(work / "w.fits"), "-q",
                          *ref], log=work / "warm.log")   # warms the numba cache, and a timed run
    phases = [ln.split("time ", 1)[1] for ln in (work / "w.log").read_text().splitlines()
              if "] time " in ln]
    cmd = [sys.executable, "-c", RUNNER, str(prof), "stack", str(session / "lights"), "-o",
           str(work / "stack.fits"), "-q", *ref]
    m = measure(cmd, log=work / "profile.log")
    helpm = measure(exe + ["--help"], log=work / "help.log")
    importm = measure([sys.executable, "-c", "import napari_astro.cli"], log=work / "imp.log")
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import napari_astro.pipeline.stack, napari_astro.cli"],
                         capture_output=True, text=True)
    imports = []
    for line in imp.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            imports.append((int(parts[1]), parts[2].rstrip()))
    imports.sort(reverse=True)
    st = pstats.Stats(str(prof), stream=io.StringIO())
    root = str(ROOT) + os.sep
    info = common.machine_info()
    load = info["loadavg"][0]
    total = sum(v[2] for v in st.stats.values())
    md = ["## Pre-processing: profile of a small session (issue 13)", "",
          f"Written by `benchmarks/profile_seestar.py` ({info['date']}, load average {load:.1f}"
          f"{': the machine was shared, so the wall times are inflated; the profile counts CPU time' if load > 1.5 else ''}). "
          "`napari-astro stack` on the Seestar M94 session (16 raw 1080x1920 lights, no "
          "calibration frames), warm numba cache, under cProfile with a CPU-time clock "
          "(`time.process_time`, every thread of the process; numba kernels count as the "
          "Python function that calls them).", "",
          f"- whole run: {warm.wall_s:.1f} s wall, {warm.cpu_s:.1f} s CPU unprofiled; "
          f"{m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU profiled ({total:.1f} s CPU in the profile)",
          "- phases of the unprofiled run (its log): " + "; ".join(phases),
          f"- start-up alone (`napari-astro --help`): {helpm.wall_s:.2f} s wall, "
          f"{helpm.cpu_s:.2f} s CPU; `python -c \"import napari_astro.cli\"`: "
          f"{importm.wall_s:.2f} s wall, {importm.cpu_s:.2f} s CPU",
          "- slowest imports (`python -X importtime`, cumulative us, of `import "
          "napari_astro.pipeline.stack, napari_astro.cli`): "
          + ", ".join(f"`{n.strip()}` {us / 1e6:.2f} s" for us, n in imports[:6]), "",
          f"Top {a.top} by own CPU time:", ""]
    md += _table(st, "tottime", a.top, root)
    md += ["", f"Top {a.top} by cumulative CPU time:", ""]
    md += _table(st, "cumulative", a.top, root)
    md += ["", "cProfile sees the main thread only: the frame threads' work shows there as "
           "`acquire` (waiting for them). All threads:", ""]
    md += _spy(exe, ["stack", str(session / "lights"), "-o", str(work / "spy.fits"), "-q",
                     *ref], work, a.top)
    md += ["", "Command: `" + " ".join(cmd[:2]) + " <RUNNER> " + " ".join(cmd[3:]) + "`", ""]
    text = "\n".join(md)
    (common.RESULTS_DIR / "profile_seestar.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
