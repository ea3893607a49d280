"""Make the simulated benchmark nights (outside the repository; never commit them).

Each night is a 2000 x 1500 one-shot-colour (RGGB) session with 20 bias, 20 darks,
20 flats and N lights, seed 0, written by the project's simulator into
``$BENCH_DATA/nightN`` (default /work/bench-data/nightN) with its truth in ``truth/``.
A night already there with the right number of lights is kept.

Usage::

    python benchmarks/make_nights.py 20 40
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import napari_astro_cmd, night_dir  # noqa: E402

SIZE = (2000, 1500)
N_CAL = 20


def ready(d: Path, n: int) -> bool:
    tj = d / "truth" / "truth.json"
    if not tj.exists():
        return False
    try:
        info = json.loads(tj.read_text())
        p = info["params"]
        return (len(info["files"]["lights"]) == n and p["width"] == SIZE[0]
                and p["height"] == SIZE[1] and p["n_darks"] == N_CAL
                and p["n_flats"] == N_CAL and p["n_biases"] == N_CAL and not p["mono"])
    except (KeyError, ValueError):
        return False


def make(n: int) -> Path:
    d = night_dir(n)
    if ready(d, n):
        print(f"{d}: ready ({n} lights)")
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = napari_astro_cmd() + ["simulate", str(d), "--size", f"{SIZE[0]}x{SIZE[1]}",
                                "--lights", str(n), "--darks", str(N_CAL), "--flats",
                                str(N_CAL), "--biases", str(N_CAL), "--seed", "0",
                                "--overwrite"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        if "not built yet" not in r.stderr:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        # the CLI is not wired yet: call the library
        from napari_astro.core.simulate import NightParams, simulate_night
        simulate_night(d, NightParams(width=SIZE[0], height=SIZE[1], n_lights=n,
                                      n_darks=N_CAL, n_flats=N_CAL, n_biases=N_CAL,
                                      seed=0), overwrite=True)
    print(f"{d}: simulated {n} lights + {3 * N_CAL} calibration frames "
          f"in {time.perf_counter() - t0:.0f} s")
    return d


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["20", "40"]:
        make(int(arg))
