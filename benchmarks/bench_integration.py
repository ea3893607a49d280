"""Issue #5 benchmark: integration, ours vs Siril 1.0.6, on the very same registered frames.

Both tools stack Siril's registered frames of the simulated night
(``process/r_pp_light_*.fit``, made once, untimed):

  Siril: ``stack r_pp_light rej w 3 3 -norm=addscale -output_norm -out=../result``
  ours:  ``napari-astro integrate r_pp_light_*.fit -o OUT.fits --rejection winsorized
         --low 3 --high 3 --normalization additive-scaling``  (weighting: our default)

Quality (last repetition): each stack against the truth with compare_quality:
background noise (truth units, after a linear fit per channel), large-scale residual,
pixels above 5 sigma (cosmic rays, hot pixels), and the satellite trail's residual.

Usage::

    python benchmarks/bench_integration.py [--lights 20 40] [--reps 3]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import siril  # noqa: E402
from common import Bench, fresh, run_ours  # noqa: E402

STAGES = ["integrate"]
OUR_OPTIONS = ["--rejection", "winsorized", "--low", "3", "--high", "3",
               "--normalization", "additive-scaling"]


def run(label: str, session: Path, args) -> Path:
    work = Path(args.work)
    prep = common.siril_prep(session, label, work, "register")
    inputs = siril.frames(prep, "r_pp_light_")
    have = {"lights": len(inputs)}
    b = Bench(f"integration_{label}", f"Issue #5: integration, {label} ({len(inputs)} of "
              "Siril's registered frames, same input for both)", session, STAGES)
    b.notes.append("input: Siril's registered frames (float32 RGB FITS) for both tools")
    last = {}

    def siril_fn(rep: int) -> None:
        siril.result_path(prep).unlink(missing_ok=True)
        m = siril.run_stages(prep, ["integrate"], have, name=f"integrate-{rep}",
                             timeout=args.timeout)
        b.record(rep, "siril", "integrate", [m])
        if m.ok:
            last["siril"] = siril.result_path(prep)

    def ours_fn(rep: int) -> None:
        if not common.ours_ready(b.runs):
            return
        o = fresh(work / f"ours-int-{label}")
        m = run_ours(["integrate", *inputs, "-o", o / "stack.fits", *OUR_OPTIONS],
                     o / "integrate.log", timeout=args.timeout)
        b.record(rep, "ours", "integrate", [m])
        if m.ok:
            last["ours"] = o / "stack.fits"

    common.alternate(args.reps, siril_fn, ours_fn)
    if common.truth_dir(session) and last:
        from compare_quality import compare, markdown
        q = compare({k: last[k] for k in ("ours", "siril") if k in last}, session)
        b.quality = {"what": "stacks of the same registered frames vs truth", "result": q,
                     "markdown": markdown(q)}
        print(b.quality["markdown"])
    path = b.save()
    if not args.keep:
        shutil.rmtree(work / f"ours-int-{label}", ignore_errors=True)
    return path


def main(argv=None) -> int:
    return common.bench_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
