"""Issue #3 benchmark: masters + calibration, ours vs Siril 1.0.6, same session.

Siril (one ``siril-cli`` start per stage, see siril.py):
  masters:   ``stack bias rej w 3 3 -nonorm``, ``stack dark rej w 3 3 -nonorm``,
             ``preprocess flat -bias=bias_stacked``, ``stack pp_flat rej w 3 3 -norm=mul``
  calibrate: ``preprocess light -dark=dark_stacked -flat=pp_flat_stacked -cfa
             -equalize_cfa -debayer``
Ours:
  masters:   ``napari-astro masters NIGHT/bias NIGHT/darks NIGHT/flats NIGHT/lights -o OUT/masters``
  calibrate: ``napari-astro calibrate NIGHT/{bias,darks,flats,lights} -o OUT/calibrated --masters OUT/masters
             --equalize-cfa``   (debayered with our default, RCD, like Siril's)

Quality (last repetition): the calibrated reference light (light 1) of each tool
against the simulator's truth with compare_quality (linear fit per channel, noise,
large-scale residual = left-over vignetting/dust, pixels above 5 sigma = hot pixels).

Usage::

    python benchmarks/bench_calibration.py [--lights 20] [--reps 3]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import siril  # noqa: E402
from common import Bench, fits_files, fresh, run_ours  # noqa: E402

STAGES = ["masters", "calibrate", "masters+calibration"]


def run(label: str, session: Path, args) -> Path:
    work = Path(args.work)
    b = Bench(f"calibration_{label}", f"Issue #3: masters + calibration, {label}",
              session, STAGES)
    last = {}

    def siril_fn(rep: int) -> None:
        w = work / f"siril-cal-{label}"
        have = siril.prepare_workdir(session, w)
        m1 = siril.run_stages(w, ["masters"], have, name=f"masters-{rep}", timeout=args.timeout)
        m2 = siril.run_stages(w, ["calibrate"], have, name=f"calibrate-{rep}",
                              timeout=args.timeout)
        b.record(rep, "siril", "masters", [m1])
        b.record(rep, "siril", "calibrate", [m2])
        b.record(rep, "siril", "masters+calibration", [m1, m2])
        frames = siril.frames(w, "pp_light_")
        if frames:
            last["siril"] = frames[0]

    def ours_fn(rep: int) -> None:
        if any(r["tool"] == "ours" and r["extra"].get("status") == "not built"
               and r["stage"] == "masters+calibration" for r in b.runs):
            return  # said once is enough
        o = fresh(work / f"ours-cal-{label}")
        inputs = common.session_inputs(session)
        m1 = run_ours(["masters", *inputs, "-o", o / "masters"], o / "masters.log",
                      timeout=args.timeout)
        cal = ["calibrate", *inputs, "-o", o / "calibrated", "--equalize-cfa"]
        if m1.ok:
            cal += ["--masters", o / "masters"]
        m2 = run_ours(cal, o / "calibrate.log", timeout=args.timeout)
        b.record(rep, "ours", "masters", [m1])
        b.record(rep, "ours", "calibrate", [m2])
        b.record(rep, "ours", "masters+calibration", [m1, m2])
        frames = fits_files(o / "calibrated")
        if m2.ok and frames:
            last["ours"] = frames[0]

    common.alternate(args.reps, siril_fn, ours_fn)
    if common.truth_dir(session) and last:
        from compare_quality import compare, markdown
        q = compare({k: last[k] for k in ("ours", "siril") if k in last}, session,
                    equalize_fwhm=False)
        b.quality = {"what": "calibrated reference light vs truth", "result": q,
                     "markdown": markdown(q)}
        print(b.quality["markdown"])
    if not any(r["tool"] == "ours" and r["returncode"] == 0 for r in b.runs):
        b.notes.append("our masters/calibrate did not run: Siril's figures alone")
    path = b.save()
    if not args.keep:
        for d in (work / f"siril-cal-{label}", work / f"ours-cal-{label}"):
            shutil.rmtree(d, ignore_errors=True)
    return path


def main(argv=None) -> int:
    return common.bench_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
