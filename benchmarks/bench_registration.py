"""Issue #4 benchmark: registration, ours vs Siril 1.0.6, on the very same frames.

Both tools register Siril's calibrated, debayered lights of the simulated night
(``process/pp_light_*.fit``, made once, untimed) onto the first light:

  Siril: ``register pp_light``   (global star alignment; homography, Siril's default)
  ours:  ``napari-astro register pp_light_*.fit -o OUT --reference pp_light_00001.fit``

Quality (last repetition, on up to ``--quality-frames`` frames other than the
reference): stars of the truth fitted again in each registered frame; the RMS
distance of the fitted centres from the true reference positions (registration
error + centroid noise, the same for both tools) and the median FWHM, compared with
the FWHM of the same calibrated frame before registration (interpolation softening).

Usage::

    python benchmarks/bench_registration.py [--lights 20] [--reps 3]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import siril  # noqa: E402
from common import Bench, fits_files, fresh, run_ours  # noqa: E402

STAGES = ["register"]


def registered_quality(frames: dict[str, list[Path]], inputs: list[Path], session: Path,
                       n_frames: int) -> dict:
    """Star positions and FWHM of registered frames against the truth (see module doc)."""
    import compare_quality as cq
    truth = cq.Truth(session)
    sky = truth.sky
    H, W = sky.shape[-2:]
    stars_xy = cq.pick_stars(truth, sky.sum(0), truth.margin, n_max=120)
    out = {}
    picks = list(range(1, min(len(inputs), n_frames + 1)))
    # FWHM of the calibrated frames before registration, measured at the stars'
    # positions in each frame (the inverse of the truth transform)
    from napari_astro.core.simulate import load_truth
    t = load_truth(session)
    before = []
    for k in picks:
        inv = np.linalg.inv(t.transforms[k])
        xy = (inv @ np.vstack([stars_xy.T, np.ones(len(stars_xy))]))[:2].T
        img = cq.load_image(inputs[k])
        before.append(cq.measure_fwhm(np.nan_to_num(img.sum(0)), xy)["fwhm_px"])
    out["input"] = {"fwhm_px": float(np.median([b for b in before if b]))}
    for tool, files in frames.items():
        rms, fw, dxy = [], [], []
        for k in picks:
            if k >= len(files):
                continue
            img = cq.load_image(files[k])
            if img.shape[-2:] != (H, W):
                continue
            m = cq.measure_fwhm(np.nan_to_num(img.sum(0)), stars_xy)
            if m["fwhm_px"] is None:
                continue
            fw.append(m["fwhm_px"])
            dxy.append((m["offset_dx_px"], m["offset_dy_px"]))
            # RMS of the per-star offsets around the true positions
            rms.append(np.hypot(m["offset_rms_px"], np.hypot(*dxy[-1])))
        if fw:
            out[tool] = {"frames": len(fw), "fwhm_px": float(np.median(fw)),
                         "fwhm_growth_pct": float((np.median(fw) / out["input"]["fwhm_px"] - 1) * 100),
                         "star_offset_rms_px": float(np.sqrt(np.mean(np.square(rms)))),
                         "median_shift_dx_dy_px": np.median(np.array(dxy), 0).tolist()}
    return out


def run(label: str, session: Path, args) -> Path:
    work = Path(args.work)
    prep = common.siril_prep(session, label, work, "calibrate")
    inputs = siril.frames(prep, "pp_light_")
    have = {"lights": len(inputs)}
    b = Bench(f"registration_{label}", f"Issue #4: registration, {label} "
              f"({len(inputs)} of Siril's calibrated lights, same input for both)", session,
              STAGES)
    b.notes.append("input: Siril's calibrated, debayered lights (float32 RGB FITS) for both")
    last = {}

    def siril_fn(rep: int) -> None:
        for f in siril.frames(prep, "r_pp_light_"):
            f.unlink()
        m = siril.run_stages(prep, ["register"], have, name=f"register-{rep}",
                             timeout=args.timeout)
        b.record(rep, "siril", "register", [m])
        last["siril"] = siril.frames(prep, "r_pp_light_")
        if m.extra.get("registered", len(inputs)) < len(inputs):
            b.notes.append(f"Siril registered {m.extra.get('registered')} of {len(inputs)} frames")

    def ours_fn(rep: int) -> None:
        if not common.ours_ready(b.runs):
            return
        o = fresh(work / f"ours-reg-{label}")
        m = run_ours(["register", *inputs, "-o", o / "registered", "--reference", inputs[0]],
                     o / "register.log", timeout=args.timeout)
        b.record(rep, "ours", "register", [m])
        files = fits_files(o / "registered")
        if m.ok and files:
            last["ours"] = files

    common.alternate(args.reps, siril_fn, ours_fn)
    if common.truth_dir(session) and last and args.quality_frames > 0:
        q = registered_quality(last, inputs, session, args.quality_frames)
        b.quality = {"what": "registered frames vs truth star positions", "result": q}
        print("quality:", q)
    path = b.save()
    if not args.keep:
        shutil.rmtree(work / f"ours-reg-{label}", ignore_errors=True)
    return path


def main(argv=None) -> int:
    def extra(ap):
        ap.add_argument("--quality-frames", type=int, default=5,
                        help="registered frames checked against the truth (0: none)")
    return common.bench_main(run, __doc__, argv, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
