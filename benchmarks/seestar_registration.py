"""Issue #4 on real frames: registration of the Seestar M94 sessions, ours vs Siril 1.0.6.

Both tools start from the same raw GRBG lights (``../shared/data/seestar_m94/session1``
and ``session2``, lights only: no bias, darks or flats; never modified) and register
them onto the first light:

- ours:  ``napari-astro calibrate SESSION -o OURS/cal --equalize-cfa`` then
  ``napari-astro register OURS/cal/*.fits -o OURS/reg --reference OURS/cal/<first>``
  (our defaults otherwise: affine model, Lanczos-3);
- Siril: ``convert`` + ``preprocess light -cfa -equalize_cfa -debayer`` (no masters),
  then ``setref pp_light 1`` + ``register pp_light`` (its defaults: global star
  alignment, homography), driven by ``siril.py`` with its pinned settings.

Both registered sets are then measured the same way, independently of either tool's
own figures:

1. Stars are detected again (``napari_astro.core.stars.detect_stars``, sigma 5, up to
   500 stars, the same parameters for both) on the luminance (mean of the three
   channels) of every registered frame and of the tool's own calibrated reference
   frame (the first light before registration).
2. Each registered frame's stars are matched one-to-one to the reference's stars by
   nearest neighbour within 1.5 px, inside the frame's footprint (pixels that are
   finite and non-zero, eroded by 8 px, so that stars cut by the edge are left out).
3. Residual offsets ``registered - reference`` per pair: RMS of the 2-D distance over
   all pairs and over the pairs with SNR >= 50 in both frames and unsaturated; mean
   offset (dx, dy); the RMS that centroid noise alone would give (from each star's
   expected centroid error, ``Stars.centroid_sigma``), per frame and pooled over the
   frames other than the reference.
4. FWHM: median FWHM of the unsaturated matched stars (SNR >= 20) in the registered
   frame against the same stars in the input reference ("vs reference": includes
   seeing changes between frames), and the median FWHM of every unsaturated SNR >= 20
   star of the registered frame against that of the same frame before registration
   ("vs own input": the interpolation's softening).
5. Frames registered: the registered outputs each tool wrote (Siril's count from its
   log as well); frames are identified through DATE-OBS (Siril's ``pp_light_k`` is
   the k-th raw light by name).

Orientation: Siril's calibrated reference is matched to ours as stored and with rows
and/or columns flipped; the orientation with the most star matches is applied to all
Siril frames (Siril 1.0.6 keeps the input's row order, so "as stored" is expected).
The luminance is channel-order independent, so Siril's colour order does not matter.

Writes ``benchmarks/results/seestar_registration.md`` (included at the end of
RESULTS.md by report.py) and ``results/seestar_registration.json``.

Usage::

    python benchmarks/seestar_registration.py [--data /work/shared/data/seestar_m94]
        [--work $BENCH_DATA/seestar-reg] [--sessions session1 session2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import siril  # noqa: E402
from common import fits_files, fresh, run_ours  # noqa: E402

from napari_astro.core.stars import Stars, detect_stars  # noqa: E402

DATA = Path("/work/shared/data/seestar_m94")
MATCH_RADIUS = 1.5      # px, nearest-neighbour match to the reference's stars
SNR_MIN = 50.0          # "bright" pairs
SNR_FWHM = 20.0         # stars used for FWHM
EDGE = 8                # px eroded from each frame's footprint
DETECT = dict(sigma=5.0, max_stars=500, fwhm_guess=3.0)
ORIENT = {
    "as stored": lambda a: a,
    "rows flipped": lambda a: a[..., ::-1, :],
    "columns flipped": lambda a: a[..., :, ::-1],
    "rotated 180": lambda a: a[..., ::-1, ::-1],
}


# ----------------------------------------------------------------------------- images
def load(path: Path) -> tuple[np.ndarray, str]:
    """A frame as float32 (C, H, W) in FITS storage order, and its DATE-OBS."""
    with fits.open(path, memmap=False) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
        a = np.asarray(hdu.data, dtype=np.float32)
        date = str(hdu.header.get("DATE-OBS", ""))
    return (a[None] if a.ndim == 2 else a), date


def luminance(a: np.ndarray) -> np.ndarray:
    """Mean of the channels (order does not matter), float32 (H, W)."""
    return a.mean(0, dtype=np.float32)


def footprint(lum: np.ndarray) -> np.ndarray:
    """Pixels holding data (finite, non-zero: Siril fills 0, ours NaN), eroded by EDGE."""
    ok = np.isfinite(lum) & (lum != 0)
    return ndimage.binary_erosion(ok, iterations=EDGE)


def stars_of(lum: np.ndarray, mask: np.ndarray | None = None) -> Stars:
    s = detect_stars(lum, **DETECT)
    if mask is not None and len(s):
        xi = np.clip(np.rint(s.x).astype(int), 0, lum.shape[1] - 1)
        yi = np.clip(np.rint(s.y).astype(int), 0, lum.shape[0] - 1)
        s = s.take(mask[yi, xi])
    return s


def match(ref: Stars, st: Stars, radius: float = MATCH_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest-neighbour pairs (index in ref, index in st) within radius."""
    if not len(ref) or not len(st):
        return np.zeros(0, int), np.zeros(0, int)
    d, j = cKDTree(ref.xy).query(st.xy, k=1, distance_upper_bound=radius)
    i = np.flatnonzero(np.isfinite(d))
    j = j[i]
    # one-to-one: a reference star claimed twice keeps its closest partner
    order = np.argsort(d[i], kind="stable")
    _, first = np.unique(j[order], return_index=True)
    keep = order[first]
    return j[keep], i[keep]


def _median(x) -> float | None:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def measure_frame(ref: Stars, ref_mask: np.ndarray, lum: np.ndarray, lum_in: np.ndarray | None
                  ) -> dict:
    """Residual offsets and FWHM of one registered frame against the reference stars."""
    mask = footprint(lum) & ref_mask
    st = stars_of(lum, mask)
    xi = np.clip(np.rint(ref.x).astype(int), 0, mask.shape[1] - 1)
    yi = np.clip(np.rint(ref.y).astype(int), 0, mask.shape[0] - 1)
    r = ref.take(mask[yi, xi])
    ir, js = match(r, st)
    dx, dy = st.x[js] - r.x[ir], st.y[js] - r.y[ir]
    snr = np.minimum(r.snr[ir], st.snr[js])
    unsat = ~(r.saturated[ir] | st.saturated[js])
    bright = (snr >= SNR_MIN) & unsat
    noise2 = 2 * (r.centroid_sigma[ir] ** 2 + st.centroid_sigma[js] ** 2)  # 2-D, per pair
    fw_ok = unsat & (snr >= SNR_FWHM)
    out = {
        "stars": len(st), "ref_stars_in_footprint": len(r), "pairs": int(ir.size),
        "pairs_snr50": int(bright.sum()),
        "dx": dx.tolist(), "dy": dy.tolist(), "snr": snr.tolist(), "bright": bright.tolist(),
        "noise2": noise2.tolist(),
        "fwhm_reg_matched": _median(st.fwhm[js][fw_ok]),
        "fwhm_ref_matched": _median(r.fwhm[ir][fw_ok]),
        "fwhm_reg_all": _median(st.fwhm[(~st.saturated) & (st.snr >= SNR_FWHM)]),
    }
    if lum_in is not None:
        s_in = stars_of(lum_in, footprint(lum_in))
        out["fwhm_input_all"] = _median(s_in.fwhm[(~s_in.saturated) & (s_in.snr >= SNR_FWHM)])
    return out


def rms(dx, dy) -> float | None:
    dx, dy = np.asarray(dx, float), np.asarray(dy, float)
    return float(np.sqrt(np.mean(dx ** 2 + dy ** 2))) if dx.size else None


def summarise_frame(f: dict) -> dict:
    dx, dy, b = np.array(f["dx"]), np.array(f["dy"]), np.array(f["bright"], bool)
    g_ref = (f["fwhm_reg_matched"] / f["fwhm_ref_matched"] - 1) * 100 \
        if f["fwhm_reg_matched"] and f["fwhm_ref_matched"] else None
    g_in = (f["fwhm_reg_all"] / f["fwhm_input_all"] - 1) * 100 \
        if f.get("fwhm_input_all") and f["fwhm_reg_all"] else None
    return {
        "pairs": f["pairs"], "pairs_snr50": f["pairs_snr50"], "stars": f["stars"],
        "match_fraction": f["pairs"] / max(1, min(f["stars"], f["ref_stars_in_footprint"])),
        "rms_all_px": rms(dx, dy), "rms_snr50_px": rms(dx[b], dy[b]),
        "noise_rms_all_px": float(np.sqrt(np.mean(f["noise2"]))) if f["pairs"] else None,
        "noise_rms_snr50_px": float(np.sqrt(np.mean(np.array(f["noise2"])[b]))) if b.any() else None,
        "mean_dx_px": float(dx.mean()) if dx.size else None,
        "mean_dy_px": float(dy.mean()) if dy.size else None,
        "fwhm_reg_px": f["fwhm_reg_all"], "fwhm_input_px": f.get("fwhm_input_all"),
        "fwhm_growth_vs_input_pct": g_in, "fwhm_growth_vs_ref_pct": g_ref,
    }


def pooled(frames: list[dict]) -> dict:
    """Figures over every pair of the frames other than the reference."""
    fs = [f for f in frames if f.get("measured") and not f["is_reference"]]
    if not fs:
        return {}
    dx = np.concatenate([f["raw"]["dx"] for f in fs])
    dy = np.concatenate([f["raw"]["dy"] for f in fs])
    b = np.concatenate([np.array(f["raw"]["bright"], bool) for f in fs])
    n2 = np.concatenate([f["raw"]["noise2"] for f in fs])
    gi = [f["summary"]["fwhm_growth_vs_input_pct"] for f in fs]
    gr = [f["summary"]["fwhm_growth_vs_ref_pct"] for f in fs]
    return {
        "frames": len(fs), "pairs": int(dx.size), "pairs_snr50": int(b.sum()),
        "rms_all_px": rms(dx, dy), "rms_snr50_px": rms(dx[b], dy[b]),
        "noise_rms_all_px": float(np.sqrt(np.mean(n2))) if n2.size else None,
        "noise_rms_snr50_px": float(np.sqrt(np.mean(n2[b]))) if b.any() else None,
        "mean_dx_px": float(dx.mean()), "mean_dy_px": float(dy.mean()),
        "mean_dx_snr50_px": float(dx[b].mean()) if b.any() else None,
        "mean_dy_snr50_px": float(dy[b].mean()) if b.any() else None,
        "median_frame_rms_snr50_px": _median([f["summary"]["rms_snr50_px"] for f in fs
                                              if f["summary"]["rms_snr50_px"] is not None]),
        "worst_frame_rms_snr50_px": max((f["summary"]["rms_snr50_px"] for f in fs
                                         if f["summary"]["rms_snr50_px"] is not None),
                                        default=None),
        "fwhm_growth_vs_input_pct": _median([g for g in gi if g is not None]),
        "fwhm_growth_vs_ref_pct": _median([g for g in gr if g is not None]),
    }


# ----------------------------------------------------------------------------- runs
def run_ours_side(session: Path, work: Path) -> dict:
    o = fresh(work / "ours")
    raw = fits_files(session)
    t = {}
    m = run_ours(["calibrate", session, "-o", o / "cal", "--equalize-cfa"],
                 o / "calibrate.log")
    t["calibrate"] = m
    cal = fits_files(o / "cal")
    if m.returncode != 0 or len(cal) != len(raw):
        raise SystemExit(f"our calibrate failed: see {o / 'calibrate.log'}")
    ref = cal[0]
    args = ["register", *cal, "-o", o / "reg", "--reference", ref]
    m = run_ours(args, o / "register.log")
    t["register"] = m
    reg = fits_files(o / "reg")
    # r_<name> <- <name>: identify by name, frames missing from reg/ were dropped
    by_name = {p.name: p for p in reg}
    pairs = [(c, by_name.get("r_" + c.name)) for c in cal]
    cmds = [f"napari-astro calibrate {session} -o OURS/cal --equalize-cfa",
            f"napari-astro register OURS/cal/*.fits -o OURS/reg --reference OURS/cal/{ref.name}"]
    return {"inputs": [c for c, _ in pairs], "registered": [r for _, r in pairs],
            "times": {k: v.wall_s for k, v in t.items()},
            "cpu": {k: v.cpu_s for k, v in t.items()}, "commands": cmds,
            "n_registered": sum(r is not None for _, r in pairs), "log_counts": None}


def run_siril_side(session: Path, work: Path) -> dict:
    w = work / "siril"
    have = siril.prepare_workdir(session, w)
    mc = siril.run_stages(w, ["calibrate"], have, name="calibrate")
    pp = siril.frames(w, "pp_light_")
    if mc.returncode != 0 or len(pp) != have["lights"]:
        raise SystemExit(f"Siril's calibration failed: see {w / 'calibrate.log'}")
    mr = siril.run_stages(w, ["register"], have, name="register")
    rr = siril.frames(w, "r_pp_light_")
    # pp_light_k is the k-th raw light by name; registered frames found by DATE-OBS
    date_of = {load_date(p): p for p in rr}
    regs = [date_of.get(load_date(p)) for p in pp]
    if any(r is None for r in regs) and len(rr) == len(pp):
        regs = list(rr)  # DATE-OBS not copied: same numbering
    lines = []
    for s in ("calibrate", "register"):
        lines += [ln for ln in siril.stage_lines(s, have)]
    return {"inputs": pp, "registered": regs,
            "times": {"calibrate": mc.wall_s, "register": mr.wall_s},
            "cpu": {"calibrate": mc.cpu_s, "register": mr.cpu_s},
            "commands": ["; ".join(lines)], "n_registered": sum(r is not None for r in regs),
            "log_counts": {k: mr.extra.get(k) for k in ("registered", "register_failed",
                                                          "ref_stars")}}


def load_date(p: Path) -> str:
    return str(fits.getheader(p).get("DATE-OBS", ""))


def orientation(ref_ours: Stars, lum_siril: np.ndarray) -> tuple[str, dict]:
    """Which flip of Siril's reference matches our reference's stars best."""
    scores = {}
    for name, f in ORIENT.items():
        s = stars_of(np.ascontiguousarray(f(lum_siril)))
        ir, _ = match(ref_ours, s)
        scores[name] = int(ir.size)
    return max(scores, key=scores.get), scores


def measure_tool(side: dict, flip=lambda a: a) -> tuple[list[dict], Stars, float | None]:
    lum_ref = flip(luminance(load(side["inputs"][0])[0]))
    ref_mask = footprint(lum_ref)
    ref = stars_of(lum_ref, ref_mask)
    fwhm_ref = _median(ref.fwhm[(~ref.saturated) & (ref.snr >= SNR_FWHM)])
    frames = []
    for k, (inp, reg) in enumerate(zip(side["inputs"], side["registered"])):
        f = {"index": k + 1, "input": inp.name, "registered": reg.name if reg else None,
             "is_reference": k == 0, "measured": False}
        if reg is not None:
            lum = np.ascontiguousarray(flip(luminance(load(reg)[0])))
            lum_in = lum_ref if k == 0 else np.ascontiguousarray(flip(luminance(load(inp)[0])))
            if lum.shape == lum_ref.shape:
                raw = measure_frame(ref, ref_mask, lum, lum_in)
                f.update(measured=True, raw=raw, summary=summarise_frame(raw))
        frames.append(f)
    return frames, ref, fwhm_ref


def run_session(session: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    n = len(fits_files(session))
    print(f"== {session.name}: {n} raw lights", flush=True)
    sides = {"siril": run_siril_side(session, work), "ours": run_ours_side(session, work)}
    for k, v in sides.items():
        print(f"  {k}: registered {v['n_registered']}/{n}; wall "
              + ", ".join(f"{s} {t:.2f} s" for s, t in v["times"].items()), flush=True)
    ours_ref_lum = luminance(load(sides["ours"]["inputs"][0])[0])
    ours_ref = stars_of(ours_ref_lum, footprint(ours_ref_lum))
    siril_ref_lum = luminance(load(sides["siril"]["inputs"][0])[0])
    orient, scores = orientation(ours_ref, siril_ref_lum)
    flip = ORIENT[orient]
    # the two calibrated references against each other: do both tools put stars at
    # the same pixel positions before registration (debayering, orientation)?
    s_ref = stars_of(np.ascontiguousarray(flip(siril_ref_lum)))
    ir, js = match(ours_ref, s_ref)
    grid = {"pairs": int(ir.size),
            "mean_dx_px": float(np.mean(s_ref.x[js] - ours_ref.x[ir])) if ir.size else None,
            "mean_dy_px": float(np.mean(s_ref.y[js] - ours_ref.y[ir])) if ir.size else None}
    res = {"session": str(session), "lights": n, "orientation_of_siril": orient,
           "orientation_scores": scores, "reference_grid_siril_minus_ours": grid, "tools": {}}
    for tool, side in sides.items():
        frames, ref, fwhm_ref = measure_tool(side, flip if tool == "siril" else (lambda a: a))
        res["tools"][tool] = {
            "registered": side["n_registered"], "siril_log": side["log_counts"],
            "wall_s": side["times"], "cpu_s": side["cpu"], "commands": side["commands"],
            "reference_stars": len(ref), "reference_fwhm_px": fwhm_ref,
            "frames": frames, "pooled": pooled(frames)}
        p = res["tools"][tool]["pooled"]
        print(f"  {tool}: RMS all {p.get('rms_all_px', float('nan')):.3f} px "
              f"({p.get('pairs')} pairs), SNR>=50 {p.get('rms_snr50_px') or float('nan'):.3f} px "
              f"({p.get('pairs_snr50')} pairs), mean ({p.get('mean_dx_px', 0):+.3f}, "
              f"{p.get('mean_dy_px', 0):+.3f}) px, FWHM growth vs input "
              f"{p.get('fwhm_growth_vs_input_pct') or float('nan'):+.1f} %", flush=True)
    return res


# ----------------------------------------------------------------------------- report
def _f(x, d=3, sign=False) -> str:
    if x is None:
        return "-"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def markdown(results: list[dict], machine: dict) -> str:
    out = ["## Issue #4 on real frames: Seestar M94", "",
           "Written by `benchmarks/seestar_registration.py` "
           "(`results/seestar_registration.md`, included here by report.py). "
           "Raw GRBG lights of a ZWO Seestar S50 (1080x1920, 10 s, lights only: no bias, "
           "darks or flats) from `../shared/data/seestar_m94`; each tool calibrates/"
           "debayers them and registers them onto the first light, then **both registered "
           "sets are measured the same way**: stars detected again (`detect_stars`, sigma 5, "
           "<= 500 stars, luminance = channel mean) in every registered frame and in the "
           "tool's calibrated reference, matched one-to-one by nearest neighbour within "
           f"{MATCH_RADIUS} px inside the frame's footprint (eroded by {EDGE} px), residual "
           "= registered - reference position.", "",
           f"- Date: {machine['date']}; {machine['siril']}; napari-astro "
           f"{machine['napari_astro']} at commit {machine['commit']}; load average at the "
           f"start {machine['loadavg'][0]:.1f}.",
           "- RMS = root mean square of the 2-D offset over the pairs of every frame but "
           f"the reference; \"SNR >= {SNR_MIN:.0f}\": both stars at SNR >= {SNR_MIN:.0f} "
           "and unsaturated. \"noise\" = the RMS that centroid noise of the two detections "
           "alone would give (from each star's expected centroid error): a residual near "
           "it means the registration adds little.",
           "- FWHM growth \"vs input\": median FWHM of the unsaturated SNR >= 20 stars of "
           "the registered frame against the same frame before registration (the "
           "interpolation's softening); \"vs reference\": the matched stars against the "
           "same stars in the input reference (includes the seeing change between frames).",
           "- Ours: our defaults (affine model, Lanczos-3 with clamp), `--equalize-cfa`, "
           "cosmetic correction from the lights themselves. Siril: its standard "
           "`preprocess -cfa -equalize_cfa -debayer` without masters and `register` "
           "(homography), settings pinned by `siril.py`.", ""]
    out += ["| session | tool | frames registered | pairs | RMS all px | noise all px | "
            "pairs SNR>=50 | RMS SNR>=50 px | noise SNR>=50 px | worst frame RMS SNR>=50 px | "
            "mean offset dx, dy px | ref FWHM px | FWHM growth vs input % | "
            "FWHM growth vs reference % | wall s calibrate + register |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for tool in ("ours", "siril"):
            t = r["tools"][tool]
            p = t["pooled"]
            reg = f"{t['registered']}/{r['lights']}"
            if t["siril_log"] and t["siril_log"].get("registered") is not None:
                reg += f" (log: {t['siril_log']['registered']} registered, " \
                       f"{t['siril_log']['register_failed']} failed)"
            name = "ours" if tool == "ours" else "Siril 1.0.6"
            out.append(
                f"| {Path(r['session']).name} | {name} | {reg} | {p.get('pairs', 0)} | "
                f"**{_f(p.get('rms_all_px'))}** | {_f(p.get('noise_rms_all_px'))} | "
                f"{p.get('pairs_snr50', 0)} | **{_f(p.get('rms_snr50_px'))}** | "
                f"{_f(p.get('noise_rms_snr50_px'))} | {_f(p.get('worst_frame_rms_snr50_px'))} | "
                f"{_f(p.get('mean_dx_px'), sign=True)}, {_f(p.get('mean_dy_px'), sign=True)} | "
                f"{_f(t['reference_fwhm_px'], 2)} | "
                f"{_f(p.get('fwhm_growth_vs_input_pct'), 1, True)} | "
                f"{_f(p.get('fwhm_growth_vs_ref_pct'), 1, True)} | "
                f"{t['wall_s']['calibrate']:.2f} + {t['wall_s']['register']:.2f} |")
    out.append("")
    for r in results:
        g = r["reference_grid_siril_minus_ours"]
        out.append(f"- {Path(r['session']).name}: Siril's frames measured "
                   f"{r['orientation_of_siril']} (star matches of its calibrated reference "
                   f"with ours per orientation: "
                   + ", ".join(f"{k} {v}" for k, v in r["orientation_scores"].items())
                   + f"); the two calibrated references agree to "
                   f"({_f(g['mean_dx_px'], sign=True)}, {_f(g['mean_dy_px'], sign=True)}) px "
                   f"mean offset over {g['pairs']} stars (Siril - ours).")
    out.append("")
    for r in results:
        out += [f"Per frame, {Path(r['session']).name} (frame 1 is the reference; RMS in px, "
                "pairs in brackets):", "",
                "| frame | ours RMS all | ours RMS SNR>=50 | ours mean dx, dy | "
                "ours FWHM growth vs input % | Siril RMS all | Siril RMS SNR>=50 | "
                "Siril mean dx, dy | Siril FWHM growth vs input % |",
                "|---|---|---|---|---|---|---|---|---|"]
        fo, fs = r["tools"]["ours"]["frames"], r["tools"]["siril"]["frames"]
        for a, b in zip(fo, fs):
            cells = []
            for f in (a, b):
                if not f["measured"]:
                    cells += ["not registered", "-", "-", "-"]
                    continue
                s = f["summary"]
                cells += [f"{_f(s['rms_all_px'])} ({s['pairs']})",
                          f"{_f(s['rms_snr50_px'])} ({s['pairs_snr50']})",
                          f"{_f(s['mean_dx_px'], sign=True)}, {_f(s['mean_dy_px'], sign=True)}",
                          _f(s["fwhm_growth_vs_input_pct"], 1, True)]
            out.append(f"| {a['index']} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["Commands as run (per session):", "", "```"]
    seen = set()
    for r in results:
        for tool in ("ours", "siril"):
            for c in r["tools"][tool]["commands"]:
                c = c.replace(r["session"], "SESSION")
                if c not in seen:
                    seen.add(c)
                    out.append(f"[{tool}] {c}")
    out += ["```", ""]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--sessions", nargs="+", default=["session1", "session2"])
    ap.add_argument("--work", default=str(common.BENCH_DATA / "seestar-reg"))
    ap.add_argument("--results", default=str(common.RESULTS_DIR))
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    a = ap.parse_args(argv)
    data = Path(a.data)
    missing = [s for s in a.sessions if not fits_files(data / s)]
    if missing:
        print(f"{data}: no FITS lights in {', '.join(missing)}; skipping", file=sys.stderr)
        return 0
    machine = common.machine_info()
    t0 = time.perf_counter()
    results = [run_session(data / s, Path(a.work) / s) for s in a.sessions]
    rdir = Path(a.results)
    rdir.mkdir(parents=True, exist_ok=True)
    doc = {"name": "seestar_registration", "machine": machine, "results": results}
    (rdir / "seestar_registration.json").write_text(json.dumps(doc, indent=1, default=str))
    (rdir / "seestar_registration.md").write_text(markdown(results, machine))
    print(f"wrote {rdir / 'seestar_registration.md'} ({time.perf_counter() - t0:.0f} s)")
    if not a.keep:
        for s in a.sessions:
            shutil.rmtree(Path(a.work) / s, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
