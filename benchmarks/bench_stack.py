"""Issue #6 benchmark: the whole run, a night's folder to a stack, ours vs Siril 1.0.6.

  Siril: the standard OSC script (siril.py) in one ``siril-cli`` start: masters with
         Winsorized rejection, ``preprocess -cfa -equalize_cfa -debayer``,
         ``register``, ``stack r_pp_light rej w 3 3 -norm=addscale -output_norm``
  ours:  ``napari-astro stack NIGHT/bias NIGHT/darks NIGHT/flats NIGHT/lights -o OUT.fits --work-dir OUT_work
         --reference lights/<first light>``  (our defaults otherwise)

Both start from the raw session with nothing cached; each repetition uses fresh
output folders; the order alternates. Quality (last repetition): compare_quality on
both stacks against the truth (FWHM, noise at equal FWHM, leftovers, grid offset).

Usage::

    python benchmarks/bench_stack.py [--lights 20 40] [--reps 3]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import siril  # noqa: E402
from common import Bench, fresh, run_ours  # noqa: E402

STAGES = ["whole run"]


def run(label: str, session: Path, args) -> Path:
    work = Path(args.work)
    ref = common.reference_light(session)
    b = Bench(f"stack_{label}", f"Issue #6: whole run, {label}", session, STAGES)
    last = {}

    def siril_fn(rep: int) -> None:
        w = work / f"siril-stack-{label}"
        have = siril.prepare_workdir(session, w)
        m = siril.run_stages(w, list(siril.STAGES), have, name=f"all-{rep}",
                             timeout=args.timeout)
        b.record(rep, "siril", "whole run", [m])
        if m.ok:
            keep = work / f"siril-stack-{label}.fit"
            shutil.copyfile(siril.result_path(w), keep)
            last["siril"] = keep
            if m.extra.get("registered") is not None and m.extra["registered"] < have["lights"]:
                b.notes.append(f"Siril registered {m.extra['registered']} of "
                               f"{have['lights']} lights")
        shutil.rmtree(w, ignore_errors=True)  # 2-3 GB of intermediate frames

    def ours_fn(rep: int) -> None:
        if not common.ours_ready(b.runs):
            return
        o = fresh(work / f"ours-stack-{label}")
        m = run_ours(["stack", *common.session_inputs(session), "-o", o / "stack.fits",
                      "--work-dir", o / "work",
                      "--reference", ref], o / "stack.log", timeout=args.timeout)
        b.record(rep, "ours", "whole run", [m])
        if m.ok:
            keep = work / f"ours-stack-{label}.fits"
            shutil.copyfile(o / "stack.fits", keep)
            last["ours"] = keep
        if not args.keep:
            shutil.rmtree(o / "work", ignore_errors=True)

    common.alternate(args.reps, siril_fn, ours_fn)
    if common.truth_dir(session) and last:
        from compare_quality import compare, markdown
        q = compare({k: last[k] for k in ("ours", "siril") if k in last}, session)
        b.quality = {"what": "whole-run stacks vs truth (issue #6)", "result": q,
                     "markdown": markdown(q)}
        print(b.quality["markdown"])
    return b.save()


def main(argv=None) -> int:
    return common.bench_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
