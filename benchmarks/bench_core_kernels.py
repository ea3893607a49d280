"""CPU time of the core hot paths, this tree against another (e.g. before a refactor).

Used to check that moving modules around (issue 9: core split into packages, numba
kernels in new modules) left the figures unchanged::

    git archive <old-commit> src | tar -x -C /tmp/old
    python benchmarks/bench_core_kernels.py --compare /tmp/old/src --rounds 4

Each round runs one subprocess per tree, alternating which goes first; a subprocess
warms every kernel up (compile or cache load, not timed) and reports the best of
``--reps`` CPU times (user + sys of the process, ``os.times``) per case. The table
gives min-max over rounds per tree and the ratio of the medians (this / other).
Results of the kernels are checksummed so both trees must compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _cases():
    import numpy as np

    from napari_astro.core.calibration import find_bad_pixels
    from napari_astro.core.debayer import debayer_array
    from napari_astro.core.image import AstroImage
    from napari_astro.core.integration import SigmaClip, Winsorized, combine_stack, noise_estimate
    from napari_astro.core.registration import Transform, apply_transform
    from napari_astro.core.simulate import NightModel, NightParams
    from napari_astro.core.stars import detect_stars

    rng = np.random.default_rng(1)
    stack = (0.1 + 0.01 * rng.standard_normal((20, 600, 1000))).astype(np.float32)
    stack[rng.random(stack.shape) < 0.01] += 0.5
    model = NightModel(NightParams(width=1000, height=800, n_lights=2, seed=2))
    raw = model.light_frame(0)[0].astype(np.float32) / 65535.0
    rgb = debayer_array(raw, "RGGB")
    lum = rgb.mean(axis=0)
    img = AstroImage(rgb)
    rot = Transform.from_similarity(angle_deg=2.0, dx=3.3, dy=-1.7, center=(500, 400))
    return {
        "combine sigma 20x600x1000": lambda: combine_stack(stack, rejection=SigmaClip()),
        "combine winsorized 20x600x1000": lambda: combine_stack(stack, rejection=Winsorized()),
        "noise_estimate 1000x800": lambda: noise_estimate(lum),
        "debayer rcd 1000x800": lambda: debayer_array(raw, "RGGB"),
        "find_bad_pixels 1000x800": lambda: find_bad_pixels(raw, pattern="RGGB").mask(),
        "detect_stars 1000x800": lambda: detect_stars(lum).xy,
        "apply_transform rot 2 deg 3x1000x800": lambda: apply_transform(img, rot).data,
        "simulate light 1000x800": lambda: model.light_frame(1)[0],
    }


def _checksum(value) -> float:
    import numpy as np

    a = np.asarray(value, dtype=np.float64)
    return float(np.nansum(a)) if a.size else 0.0


def run_here(reps: int, only: str = "") -> dict:
    out = {}
    for name, fn in _cases().items():
        if only and only not in name:
            continue
        check = _checksum(fn())                      # warm-up: compile or cache load
        best = float("inf")
        for _ in range(reps):
            t0 = os.times()
            fn()
            t1 = os.times()
            best = min(best, (t1.user + t1.system) - (t0.user + t0.system))
        out[name] = {"cpu": best, "check": check}
    return out


def _child(src: str, reps: int, only: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    res = subprocess.run([sys.executable, __file__, "--child", "--reps", str(reps),
                          "--only", only], env=env,
                         capture_output=True, text=True, check=True, cwd="/")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", metavar="OTHER_SRC", help="the other tree's src/ folder")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="run only the cases whose name holds this")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(run_here(a.reps, a.only)))
        return 0
    trees = {"this": str(SRC)}
    if a.compare:
        trees["other"] = str(Path(a.compare).resolve())
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(a.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for k in order:
            runs[k].append(_child(trees[k], a.reps, a.only))
    cases = list(runs["this"][0])
    print(f"CPU seconds, best of {a.reps} per round, {a.rounds} rounds alternating "
          f"(min-max over rounds); command: python benchmarks/bench_core_kernels.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))
    print("| case | this | other | this/other (medians) | same result |")
    print("|---|---|---|---|---|")
    for c in cases:
        t = [x[c]["cpu"] for x in runs["this"]]
        row = f"| {c} | {min(t):.3f}-{max(t):.3f} |"
        if "other" in runs:
            o = [x[c]["cpu"] for x in runs["other"]]
            same = all(abs(x[c]["check"] - runs["this"][0][c]["check"])
                       <= 1e-6 * max(1.0, abs(runs["this"][0][c]["check"]))
                       for x in runs["other"])
            ratio = statistics.median(t) / max(statistics.median(o), 1e-9)
            row += f" {min(o):.3f}-{max(o):.3f} | {ratio:.2f} | {'yes' if same else 'NO'} |"
        else:
            row += " | | |"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
