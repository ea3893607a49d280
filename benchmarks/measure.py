"""Run one command and measure its wall time, CPU time and peak memory.

The figures are those a user would see for the whole command, children included:

- wall time: ``time.perf_counter`` around the process, start to exit;
- CPU time: user + system seconds of the process and every descendant it waited
  for, from the kernel's accounting (``os.wait4``), so exact, not sampled;
- peak RSS: the largest sum of resident set sizes over the whole process tree
  (the command and all its descendants, e.g. Dask workers), sampled every
  ``interval`` seconds with psutil, and never less than the kernel's exact
  ``ru_maxrss`` of the largest single process. A single-process program such as
  ``siril-cli`` is therefore measured exactly; a short spike of a multi-process tree
  between two samples can be missed.

The command runs under GNU time (``/usr/bin/time``, Debian package ``time``) when it
is there, and the CPU time and ``ru_maxrss`` are GNU time's. This matters: Linux
carries a process's RSS high-water mark across ``fork`` + ``exec``, so a child forked
straight from a big Python process (a benchmark that holds a few hundred MB of
images) reports the *parent's* RSS as its own ``ru_maxrss`` (seen here: both tools
"peaking" at exactly the 779 MB of the benchmark process). GNU time is a small
process, so the ``ru_maxrss`` of its child is the command's own.

Usage as a script (prints one JSON object)::

    python benchmarks/measure.py [--cwd DIR] [--log FILE] -- CMD ARG...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import psutil


@dataclass
class Measurement:
    """What one run of a command cost.

    Attributes
    ----------
    cmd : list of str
        The command as run.
    returncode : int
        Exit status (negative: killed by that signal; 124: our timeout).
    wall_s : float
        Wall-clock seconds from start to exit.
    cpu_s : float
        User + system CPU seconds of the process tree.
    user_s, sys_s : float
        The two parts of ``cpu_s``.
    peak_rss_bytes : int
        Peak resident memory of the process tree, bytes (see module docstring).
    max_single_rss_bytes : int
        Kernel ``ru_maxrss`` of the largest single process of the tree, bytes.
    log : str or None
        File that holds the command's stdout and stderr.
    """

    cmd: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_bytes: int
    max_single_rss_bytes: int
    log: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def to_dict(self) -> dict:
        return asdict(self)


GNU_TIME = os.environ.get("GNU_TIME", "/usr/bin/time")


def _own_rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _tree_rss(proc: psutil.Process) -> int:
    """Sum of RSS of ``proc`` and all its live descendants, bytes."""
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and reading
    return total


def measure(cmd: Sequence[str], *, cwd: str | os.PathLike | None = None,
            env: dict | None = None, log: str | os.PathLike | None = None,
            timeout: float | None = None, interval: float = 0.05) -> Measurement:
    """Run ``cmd`` to completion and measure it.

    Parameters
    ----------
    cmd : sequence of str
        Program and arguments (no shell).
    cwd : path, optional
        Working directory of the command.
    env : dict, optional
        Full environment (default: this process's).
    log : path, optional
        Where to write the command's stdout+stderr (default: discarded).
    timeout : float, optional
        Seconds after which the process tree is killed (returncode 124).
    interval : float, default 0.05
        Seconds between two RSS samples of the process tree.

    Returns
    -------
    Measurement
    """
    cmd = [str(c) for c in cmd]
    out = open(log, "wb") if log else subprocess.DEVNULL
    gnu = GNU_TIME if GNU_TIME and Path(GNU_TIME).exists() else None
    tfile = None
    full = cmd
    if gnu:
        fd, tfile = tempfile.mkstemp(prefix="measure-", suffix=".time")
        os.close(fd)
        # %M max RSS KiB, %U user s, %S system s (of the command and its waited children)
        full = [gnu, "-q", "-f", "%M %U %S", "-o", tfile, "--"] + cmd
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        ps = psutil.Process(p.pid)
        peak = [0]
        done = threading.Event()
        timed_out = [False]

        def sample() -> None:
            while not done.is_set():
                # GNU time's own few MB are left out: only its descendants count
                peak[0] = max(peak[0], _tree_rss(ps) - (_own_rss(ps) if gnu else 0))
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    timed_out[0] = True
                    for c in ps.children(recursive=True) + [ps]:
                        try:
                            c.kill()
                        except psutil.Error:
                            pass
                done.wait(interval)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        # wait4 gives the kernel's exact CPU and max-RSS accounting of the child and
        # of the descendants it waited for.
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log:
            out.close()
    rc = 124 if timed_out[0] else p.returncode
    user, system, max_single = ru.ru_utime, ru.ru_stime, int(ru.ru_maxrss) * 1024
    if tfile:
        try:
            fields = Path(tfile).read_text().split()
            # last line holds the figures (GNU time may prepend a status line)
            max_single = int(fields[-3]) * 1024
            user, system = float(fields[-2]), float(fields[-1])
        except (OSError, ValueError, IndexError):
            pass  # killed before GNU time wrote: keep wait4's (inflated) figures
        finally:
            Path(tfile).unlink(missing_ok=True)
    return Measurement(cmd=cmd, returncode=rc, wall_s=wall, cpu_s=user + system,
                       user_s=user, sys_s=system, peak_rss_bytes=max(peak[0], max_single),
                       max_single_rss_bytes=max_single, log=str(log) if log else None)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cwd", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command given")
    m = measure(cmd, cwd=a.cwd, log=a.log, timeout=a.timeout)
    print(json.dumps(m.to_dict(), indent=1))
    return m.returncode


if __name__ == "__main__":
    sys.exit(main())
