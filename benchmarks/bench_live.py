"""Live stack: seconds per frame of capture.live.LiveStack.add on the Seestar M94
session1 frames, fed one by one, and the wall time of the gsc stand-in per call.

    python benchmarks/bench_live.py [--data ../shared/data]

Prints one table row per figure (median, min-max over the frames / calls).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--gsc-calls", type=int, default=5)
    a = p.parse_args()
    from napari_astro.capture.live import LiveStack

    files = sorted((Path(a.data) / "seestar_m94" / "session1").glob("*.fit"))
    live = LiveStack()
    secs = []
    for f in files:
        t0 = time.perf_counter()
        live.add(f)
        secs.append(time.perf_counter() - t0)
    rest = secs[1:]
    print(f"| LiveStack.add, 1080x1920 CFA -> RGB, frames 2-{len(secs)} | "
          f"{statistics.median(rest):.2f} s | {min(rest):.2f}-{max(rest):.2f} s |")
    print(f"| LiveStack.add, first frame (numba warm-up, reference) | {secs[0]:.2f} s | |")
    gsc = ROOT / "src" / "napari_astro" / "capture" / "bin" / "gsc"
    env = dict(os.environ, NAPARI_ASTRO_PYTHON=sys.executable)
    calls = []
    for _ in range(a.gsc_calls):
        t0 = time.perf_counter()
        subprocess.run([str(gsc), "-c", "56.75", "+24.12", "-r", "16.3", "-m", "0", "17.00",
                        "-n", "3000"], env=env, check=True, capture_output=True)
        calls.append(time.perf_counter() - t0)
    print(f"| gsc stand-in, one cone (r = 16.3') | {statistics.median(calls):.2f} s | "
          f"{min(calls):.2f}-{max(calls):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
