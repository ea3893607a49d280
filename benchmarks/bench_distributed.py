"""Issue 13: ``napari-astro stack --scheduler`` on a Dask cluster of 1 and 2 worker
processes on localhost, against the local run (same night, same result).

A ``dask scheduler`` (127.0.0.1, a free port) and N ``dask worker --nworkers 1
--nthreads 1`` processes from this Python's environment; the stack command is run
measured (wall; the CPU figure is the client's process tree only, the workers' CPU
is not in it), alternating local / 1 worker / 2 workers, median of ``--reps``. The
maximum absolute difference of each distributed stack from the local one is
checked (goal <= 1e-6). On one 2-core machine two workers cannot beat the local run,
which already uses both cores; the figures show the overhead of the scale-out.

Writes ``results/distributed.json`` and ``results/distributed.md``.

Usage::

    python benchmarks/bench_distributed.py [--lights 20] [--reps 3]
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from common import fresh, run_ours  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, n: int, logs: Path):
        dask = Path(sys.executable).with_name("dask")
        port = _port()
        self.address = f"tcp://127.0.0.1:{port}"
        logs.mkdir(parents=True, exist_ok=True)
        self.procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port",
                                        str(port), "--no-dashboard"],
                                       stdout=open(logs / "scheduler.log", "w"),
                                       stderr=subprocess.STDOUT)]
        for k in range(n):
            self.procs.append(subprocess.Popen(
                [str(dask), "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(logs / f"w{k}")],
                stdout=open(logs / f"worker{k}.log", "w"), stderr=subprocess.STDOUT))
        from distributed import Client
        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(n, timeout=120)

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv=None) -> int:
    ap = common.base_argparser(__doc__.split("\n\n")[0])
    a = ap.parse_args(argv)
    import numpy as np
    from astropy.io import fits

    info = common.machine_info()
    work = Path(a.work) / "distributed"
    rows = []
    for label, session in common.sessions_from(a):
        ref = common.reference_light(session)
        clusters = {1: Cluster(1, work / "logs1"), 2: Cluster(2, work / "logs2")}
        try:
            times: dict = {"local": [], "1 worker": [], "2 workers": []}
            diffs: dict = {}
            keep = {}
            for rep in range(a.reps):
                order = ["local", "1 worker", "2 workers"]
                for case in (order if rep % 2 == 0 else order[::-1]):
                    o = fresh(work / f"{label}-{case.replace(' ', '')}")
                    extra = [] if case == "local" else \
                        ["--scheduler", clusters[int(case[0])].address]
                    m = run_ours(["stack", *common.session_inputs(session), "-o",
                                  o / "stack.fits", "--work-dir", o / "work", "--reference", ref,
                                  *extra], o / "stack.log", timeout=a.timeout)
                    if m.returncode != 0:
                        raise SystemExit(f"{case} failed: see {o / 'stack.log'}")
                    times[case].append(m.wall_s)
                    print(f"  rep {rep} {label} {case}: {m.wall_s:.1f} s wall", flush=True)
                    keep[case] = work / f"{label}-{case.replace(' ', '')}.fits"
                    shutil.copyfile(o / "stack.fits", keep[case])
                    shutil.rmtree(o / "work", ignore_errors=True)
            base = fits.getdata(keep["local"]).astype(np.float64)
            for case in ("1 worker", "2 workers"):
                d = fits.getdata(keep[case]).astype(np.float64)
                diffs[case] = float(np.nanmax(np.abs(d - base)))
            rows.append({"night": label, "times": times, "diff": diffs,
                         "median": {k: statistics.median(v) for k, v in times.items()}})
        finally:
            for c in clusters.values():
                c.close()
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "distributed.json").write_text(json.dumps(
        {"machine": info, "rows": rows}, indent=1))
    load = info["loadavg"][0]
    md = ["## Pre-processing: stack on a Dask cluster (issue 13)", "",
          f"Written by `benchmarks/bench_distributed.py` ({info['date']}, load average "
          f"{load:.1f} at the start{'; the machine was shared' if load > 1.5 else ''}). "
          "`napari-astro stack ... --scheduler tcp://127.0.0.1:PORT` with 1 and 2 `dask worker "
          "--nworkers 1 --nthreads 1` processes on this machine, against the local run "
          "(both cores); wall time, median of the repetitions, alternating. One 2-core "
          "machine cannot show a speed-up (the local run already uses both cores): these "
          "are the scale-out's overheads; the difference column is the check that the "
          "cluster gives the local stack.", "",
          "| night | local wall s | 1 worker wall s | 2 workers wall s | max abs diff 1 worker "
          "| max abs diff 2 workers |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['night']} | {r['median']['local']:.1f} | {r['median']['1 worker']:.1f} "
                  f"| {r['median']['2 workers']:.1f} | {r['diff']['1 worker']:.1e} | "
                  f"{r['diff']['2 workers']:.1e} |")
    md.append("")
    text = "\n".join(md)
    (common.RESULTS_DIR / "distributed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
