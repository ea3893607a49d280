"""Issue #6 benchmark: the whole run, a night's folder to a stack, ours vs Siril 1.0.6.

  Siril: the standard OSC script (siril.py) in one ``siril-cli`` start: masters with
         Winsorized rejection, ``preprocess -cfa -equalize_cfa -debayer``,
         ``register``, ``stack r_pp_light rej w 3 3 -norm=addscale -output_norm``
  ours:  ``napari-astro stack NIGHT/bias NIGHT/darks NIGHT/flats NIGHT/lights -o OUT.fits --work-dir OUT_work
         --reference lights/<first light>``  (our defaults otherwise)

Both start from the raw session with nothing cached; each repetition uses fresh
output folders; the order alternates. Quality (last repetition): compare_quality on
both stacks against the truth (FWHM, noise at equal FWHM, leftovers, grid offset).

Real lights-only sessions (``--seestar``): the Seestar S50 sessions of
``../shared/data`` (M94 session 1, session 2, both together; NGC 7023), each a folder
of links to the raw frames under ``$BENCH_DATA/seestar``, the same folder for both tools.
With ``--reference`` and no calibration frames our run takes the one-pass flow
(``pipeline/onepass.py``: only registered frames are written).

The I/O floor of each session (``io_floor``): the time to read every input file once
and write a file of the stack's size, in this process, files in the page cache as
they are for the tools (median of 3); RESULTS.md gives each run as a multiple of it.

Usage::

    python benchmarks/bench_stack.py [--lights 20 40] [--reps 3]
    python benchmarks/bench_stack.py --seestar [--data ../shared/data] [--reps 3]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import siril  # noqa: E402
from common import Bench, fresh, run_ours  # noqa: E402

STAGES = ["whole run"]


SEESTAR = {  # label -> folders of ../shared/data whose lights are stacked together
    "seestar-m94-s1": ["seestar_m94/session1"],
    "seestar-m94-s2": ["seestar_m94/session2"],
    "seestar-m94-both": ["seestar_m94/session1", "seestar_m94/session2"],
    "seestar-ngc7023": ["seestar_ngc7023"],
}


def seestar_sessions(data: Path, root: Path) -> list[tuple[str, Path]]:
    """(label, folder of links) per Seestar case; absent data are skipped (said so)."""
    out = []
    for label, subs in SEESTAR.items():
        files = sorted(f for sub in subs for f in common.fits_files(data / sub))
        if not files:
            print(f"  {label}: no frames under {data} (skipped)")
            continue
        d = root / label / "lights"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for f in files:  # names sort in time order; no spaces (Siril's convert)
            (d / f.name.replace(" ", "_")).symlink_to(f.resolve())
        out.append((label, d.parent))
    return out


def io_floor(session: Path, out_dir: Path, reps: int = 3) -> dict:
    """Seconds to read every input once and write an output of the stack's size."""
    from astropy.io import fits

    files = [f for d in common.session_inputs(session) for f in common.fits_files(d)]
    with fits.open(files[0], memmap=False) as h:
        shape = h[0].data.shape
    out_bytes = 3 * shape[-2] * shape[-1] * 4   # float32 colour stack
    times = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(reps):
        t0 = time.perf_counter()
        n_in = 0
        for f in files:
            with open(f, "rb") as fh:
                n_in += len(fh.read())
        with open(out_dir / "io_floor.bin", "wb") as fh:
            fh.write(bytes(out_bytes))
        times.append(time.perf_counter() - t0)
    (out_dir / "io_floor.bin").unlink()
    return {"seconds": statistics.median(times), "reps": times, "files": len(files),
            "read_bytes": n_in, "write_bytes": out_bytes}


def run(label: str, session: Path, args) -> Path:
    work = Path(args.work)
    ref = common.reference_light(session)
    b = Bench(f"stack_{label}", f"Issue #6: whole run, {label}", session, STAGES)
    last = {}
    b.info["io_floor"] = io_floor(session, work / f"io-floor-{label}")
    print(f"  I/O floor {label}: {b.info['io_floor']['seconds']:.2f} s "
          f"({b.info['io_floor']['files']} files)")

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
    if argv is None:
        argv = sys.argv[1:]
    if "--seestar" in argv:
        import argparse

        ap = common.base_argparser(__doc__.split("\n\n")[0])
        ap.add_argument("--seestar", action="store_true")
        ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                              / "data"))
        args = ap.parse_args(argv)
        for label, session in seestar_sessions(Path(args.data),
                                               Path(common.BENCH_DATA) / "seestar"):
            run(label, session, args)
        return 0
    return common.bench_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
