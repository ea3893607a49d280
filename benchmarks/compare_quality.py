"""Quality of stacks (or calibrated frames) against the simulator's truth (issue #6).

For each image (ours, Siril's, ...) of a simulated night:

1. Orientation: Siril may store rows in another order than its input; the image is
   matched to the truth as it is and flipped (up-down, left-right, both) by the
   correlation of their high-passed luminances, and the best is used and reported.
2. Linear fit per channel, ``image = a * truth + b``, over the common footprint
   (edges that not every light covers are left out, from truth.json's transforms),
   without the brightest 0.5 % of the truth (saturated star cores), with 5-sigma
   clipping; then everything is measured in truth units: ``(image - b) / a``.
3. Star FWHM: circular Gaussian + constant fits on isolated, unsaturated truth stars
   (the simulator's star list, else peaks of the noiseless truth), on the luminance
   (sum of channels); median FWHM in px, and the median offset of the fitted centres
   from the true positions (the "no offset from the reference grid" check).
4. Background noise: robust standard deviation (1.4826 MAD) of the residual
   ``image - truth`` over star-free background, per channel, in truth units; also
   relative to the sky level.
5. Equal resolution: the images whose stars are sharper than the softest one are
   blurred with a Gaussian of sigma = sqrt(F_max^2 - F^2) / 2.3548 and their noise
   is measured again (softening is not a noise win).
6. Leftovers: background pixels whose residual exceeds 5 sigma (hot pixels, cosmic
   rays, trail) and the large-scale residual (std of 32x32 block medians of the
   residual over the sky level: gradient, vignetting, dust).

Usage::

    python benchmarks/compare_quality.py --truth NIGHT ours=OURS.fits siril=result.fit
        [--json OUT.json] [--md OUT.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from scipy import ndimage, optimize

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548


# ----------------------------------------------------------------------------- truth
class Truth:
    """What the comparison needs from a simulated night's ``truth/`` folder.

    Attributes
    ----------
    sky : ndarray, float32, (C, H, W)
        Noiseless calibrated sky in the reference light's grid.
    stars : ndarray (N, 5) or None
        x, y, flux, fwhm, saturated (0/1) of the stars in reference pixel coordinates.
    margin : int
        Pixels at each edge not covered by every light (from the transforms).
    """

    def __init__(self, night: str | Path):
        night = Path(night)
        tdir = night / "truth" if (night / "truth").is_dir() else night
        self.sky = _as_chw(fits.getdata(tdir / "sky.fits"))
        self.stars = None
        self.margin = 64
        self.extra: dict = {}
        meta = {}
        if (tdir / "truth.json").exists():
            meta = json.loads((tdir / "truth.json").read_text())
        try:  # the library's own loader knows its format best
            from napari_astro.core.simulate import load_truth
            t = load_truth(night)
            self.stars = _stars_array(getattr(t, "stars", None))
            transforms = getattr(t, "transforms", None)
        except Exception:
            self.stars = _stars_array(meta.get("stars"))
            transforms = meta.get("transforms")
        if transforms is not None and len(transforms):
            self.margin = _margin_from(transforms, self.sky.shape[-2:])
        self.extra = {k: v for k, v in meta.items() if not isinstance(v, (list, dict))}
        sat = meta.get("satellite") or {}
        self.trail = (sat["p0_ref"], sat["p1_ref"]) if "p0_ref" in sat else None


def _as_chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a[None] if a.ndim == 2 else a


def _stars_array(stars) -> np.ndarray | None:
    """Accept dict of arrays, list of dicts, (N,>=3) array, or an object with x,y,flux."""
    if stars is None:
        return None
    try:
        if isinstance(stars, dict) or hasattr(stars, "x"):
            get = (lambda k: stars[k]) if isinstance(stars, dict) else (lambda k: getattr(stars, k))
            x, y = np.asarray(get("x"), float), np.asarray(get("y"), float)
            flux = np.asarray(get("flux"), float)
            try:
                fw = np.asarray(get("fwhm"), float) * np.ones_like(x)
            except (KeyError, AttributeError, ValueError):
                fw = np.full_like(x, np.nan)
            try:
                sat = np.asarray(get("saturated"), float) * np.ones_like(x)
            except (KeyError, AttributeError, ValueError):
                sat = np.zeros_like(x)
            return np.column_stack([x, y, flux, fw, sat])
        if len(stars) and isinstance(stars[0], dict):
            return np.array([[s["x"], s["y"], s.get("flux", 1.0), s.get("fwhm", np.nan),
                              float(s.get("saturated", 0))] for s in stars], float)
        a = np.asarray(stars, float)
        if a.ndim == 2 and a.shape[1] >= 3:
            while a.shape[1] < 5:
                a = np.column_stack([a, np.full(len(a), np.nan if a.shape[1] == 3 else 0.0)])
            return a[:, :5]
    except Exception:
        pass
    return None


def _margin_from(transforms, shape) -> int:
    """Largest distance by which a light's corners move in the reference grid, + 8 px."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    worst = 0.0
    for t in transforms:
        m = np.asarray(t.get("matrix", t) if isinstance(t, dict) else getattr(t, "matrix", t), float)
        if m.shape != (3, 3):
            continue
        p = m @ corners
        p = p[:2] / p[2]
        worst = max(worst, float(np.abs(p - corners[:2]).max()))
    return int(np.ceil(worst)) + 8


# ------------------------------------------------------------------------ measuring
def load_image(path: str | Path) -> np.ndarray:
    """A stack or frame as float32 (C, H, W) in FITS storage order (row 0 = FITS row 1)."""
    with fits.open(path, memmap=False) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
        return _as_chw(hdu.data)


def _highpass_lum(a: np.ndarray, bin_: int = 2) -> np.ndarray:
    lum = np.nan_to_num(a.mean(0))
    h, w = (lum.shape[0] // bin_) * bin_, (lum.shape[1] // bin_) * bin_
    lum = lum[:h, :w].reshape(h // bin_, bin_, w // bin_, bin_).mean((1, 3))
    hp = lum - ndimage.uniform_filter(lum, 15)
    s = 1.4826 * np.median(np.abs(hp - np.median(hp))) + 1e-12
    return np.clip(hp / s, -5, 50)


ORIENTATIONS = {
    "as stored": lambda a: a,
    "rows flipped": lambda a: a[..., ::-1, :],
    "columns flipped": lambda a: a[..., :, ::-1],
    "rotated 180": lambda a: a[..., ::-1, ::-1],
}


def orient(img: np.ndarray, truth: np.ndarray) -> tuple[str, np.ndarray, float]:
    """Flip ``img`` to best match ``truth``; returns (name, image, score per orientation)."""
    t = _highpass_lum(truth)
    scores = {}
    for name, f in ORIENTATIONS.items():
        c = _highpass_lum(np.ascontiguousarray(f(img)))
        scores[name] = float(np.mean(c * t) / (np.std(c) * np.std(t) + 1e-12))
    best = max(scores, key=scores.get)
    return best, np.ascontiguousarray(ORIENTATIONS[best](img)), scores


def linear_fit(img: np.ndarray, truth: np.ndarray, valid: np.ndarray):
    """Per-channel ``img = a * truth + b`` by clipped least squares; returns (a, b) arrays."""
    a_s, b_s = [], []
    for c in range(img.shape[0]):
        t, y = truth[c][valid].astype(np.float64), img[c][valid].astype(np.float64)
        keep = np.isfinite(y) & (t < np.percentile(t, 99.5))
        for _ in range(4):
            A = np.column_stack([t[keep], np.ones(keep.sum())])
            (a, b), *_ = np.linalg.lstsq(A, y[keep], rcond=None)
            r = y - (a * t + b)
            s = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
            keep = keep & (np.abs(r) < 5 * s)
        a_s.append(a)
        b_s.append(b)
    return np.array(a_s), np.array(b_s)


def _gauss2d(p, yy, xx):
    amp, x0, y0, sig, bg = p
    return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sig * sig)) + bg


def fit_star(lum: np.ndarray, x: float, y: float, r: int = 7):
    """Circular Gaussian fit around (x, y); returns (x, y, fwhm) or None."""
    xi, yi = int(round(x)), int(round(y))
    h, w = lum.shape
    if xi - r < 0 or yi - r < 0 or xi + r >= w or yi + r >= h:
        return None
    cut = lum[yi - r:yi + r + 1, xi - r:xi + r + 1].astype(np.float64)
    if not np.all(np.isfinite(cut)):
        return None
    yy, xx = np.mgrid[yi - r:yi + r + 1, xi - r:xi + r + 1]
    bg0 = np.median(np.concatenate([cut[0], cut[-1], cut[:, 0], cut[:, -1]]))
    p0 = [cut.max() - bg0, x, y, 1.5, bg0]
    try:
        res = optimize.least_squares(lambda p: (_gauss2d(p, yy, xx) - cut).ravel(), p0,
                                     bounds=([0, x - 3, y - 3, 0.3, -np.inf],
                                             [np.inf, x + 3, y + 3, r, np.inf]),
                                     x_scale="jac", max_nfev=200)
    except Exception:
        return None
    amp, x0, y0, sig, bg = res.x
    if not res.success or amp <= 0:
        return None
    return x0, y0, FWHM_PER_SIGMA * sig


def pick_stars(truth: Truth, lum_truth: np.ndarray, margin: int, n_max: int = 200) -> np.ndarray:
    """Isolated, well-measured, unsaturated truth stars: (N, 2) x, y."""
    h, w = lum_truth.shape
    if truth.stars is not None and len(truth.stars):
        s = truth.stars
        x, y, flux, sat = s[:, 0], s[:, 1], s[:, 2], s[:, 4] > 0
    else:  # peaks of the noiseless truth, refined by centroids
        hp = lum_truth - ndimage.uniform_filter(lum_truth, 25)
        thr = np.percentile(hp, 99.9) * 0.2
        peaks = (hp == ndimage.maximum_filter(hp, 7)) & (hp > thr)
        yy, xx = np.nonzero(peaks)
        x, y, flux = xx.astype(float), yy.astype(float), hp[peaks]
        sat = np.zeros(len(x), bool)
    inside = (x > margin + 10) & (x < w - margin - 10) & (y > margin + 10) & (y < h - margin - 10)
    # isolation: no other star brighter than 5 % of this one within 15 px
    order = np.argsort(-flux)
    xs, ys, fs = x[order], y[order], flux[order]
    inside = inside & ~sat
    iso = np.ones(len(xs), bool)
    from scipy.spatial import cKDTree
    tree = cKDTree(np.column_stack([xs, ys]))
    for i, nb in enumerate(tree.query_ball_point(np.column_stack([xs, ys]), 15.0)):
        if any(j != i and fs[j] > 0.05 * fs[i] for j in nb):
            iso[i] = False
    keep = iso & inside[order]
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        return np.zeros((0, 2))
    # skip the brightest 10 % (saturated in the lights) and the faintest half (noisy)
    lo, hi = int(0.10 * len(idx)), max(int(0.5 * len(idx)), int(0.10 * len(idx)) + 1)
    idx = idx[lo:hi][:n_max]
    return np.column_stack([xs[idx], ys[idx]])


def measure_fwhm(lum: np.ndarray, stars_xy: np.ndarray) -> dict:
    fits_ = [fit_star(lum, x, y) for x, y in stars_xy]
    ok = [(f, s) for f, s in zip(fits_, stars_xy) if f is not None and 0.5 < f[2] < 14]
    if not ok:
        return {"fwhm_px": None, "n_stars": 0}
    fw = np.array([f[2] for f, _ in ok])
    d = np.array([[f[0] - s[0], f[1] - s[1]] for f, s in ok])
    return {"fwhm_px": float(np.median(fw)), "n_stars": len(ok),
            "offset_dx_px": float(np.median(d[:, 0])), "offset_dy_px": float(np.median(d[:, 1])),
            "offset_rms_px": float(np.sqrt(np.mean(np.sum((d - np.median(d, 0)) ** 2, 1))))}


def background_mask(sky: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Star-free background: where the noiseless truth has no small-scale structure."""
    lum = sky.mean(0)
    hp = lum - ndimage.gaussian_filter(lum, 10)
    level = np.median(lum[valid])
    stars = ndimage.binary_dilation(hp > 2e-3 * abs(level) + 1e-9, iterations=6)
    return valid & ~stars


def colour_check(img: np.ndarray, sky: np.ndarray) -> dict:
    """Which truth channel each image channel follows best (star colours differ).

    A misread Bayer pattern or ROWORDER swaps R and B: the channels then match
    the wrong truth channel. Correlations of the channels' high-passed signals,
    with the common (grey) part removed so that only colour is compared.
    """
    if img.shape[0] < 3:
        return {"ok": True}
    def hp(a):
        a = np.nan_to_num(a[:, ::2, ::2])
        a = a - np.stack([ndimage.uniform_filter(c, 9) for c in a])
        return a / (np.std(a, axis=(1, 2), keepdims=True) + 1e-12)
    i, t = hp(img), hp(sky)
    i, t = i - i.mean(0), t - t.mean(0)  # colour only
    corr = np.array([[float(np.mean(i[a] * t[b]) / (np.std(i[a]) * np.std(t[b]) + 1e-12))
                      for b in range(3)] for a in range(3)])
    best = corr.argmax(1).tolist()
    return {"ok": best == [0, 1, 2], "best_truth_channel": best,
            "diag_corr": [round(corr[k, k], 3) for k in range(3)]}


def robust_std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def residual_stats(res: np.ndarray, bg: np.ndarray, sky: np.ndarray) -> dict:
    """Noise, outliers and large-scale residual of ``res`` (C, H, W) over ``bg``."""
    noise = [robust_std(res[c][bg]) for c in range(res.shape[0])]
    sky_level = [float(np.median(sky[c][bg])) for c in range(res.shape[0])]
    out5 = 0
    for c in range(res.shape[0]):
        out5 += int(np.sum(np.abs(res[c][bg] - np.median(res[c][bg])) > 5 * noise[c]))
    # large scale: 32x32 block medians of the residual (background only)
    big = []
    for c in range(res.shape[0]):
        r = np.where(bg, res[c], np.nan)
        h, w = (r.shape[0] // 32) * 32, (r.shape[1] // 32) * 32
        blocks = r[:h, :w].reshape(h // 32, 32, w // 32, 32).transpose(0, 2, 1, 3).reshape(
            h // 32, w // 32, -1)
        good = np.sum(np.isfinite(blocks), -1) > 256
        med = np.nanmedian(blocks[good], -1) if good.any() else np.array([np.nan])
        big.append(float(np.nanstd(med) / abs(sky_level[c]) * 100) if sky_level[c] else None)
    return {"noise": noise, "noise_mean": float(np.mean(noise)),
            "noise_rel_sky": [n / abs(s) if s else None for n, s in zip(noise, sky_level)],
            "outliers_5sigma": out5, "outlier_fraction": out5 / max(1, bg.sum() * res.shape[0]),
            "large_scale_residual_pct": big}


def trail_mask(trail, shape, valid: np.ndarray, width: float = 3.0) -> np.ndarray | None:
    """Pixels within ``width`` px of the satellite trail (reference coordinates)."""
    if trail is None:
        return None
    (x0, y0), (x1, y1) = trail
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    dx, dy = x1 - x0, y1 - y0
    d = np.abs(dy * (xx - x0) - dx * (yy - y0)) / np.hypot(dx, dy)
    return (d < width) & valid


def trail_stats(res: np.ndarray, mask: np.ndarray | None, noise: Sequence[float]) -> dict:
    """Residual along the trail in units of the background noise (0 = trail gone)."""
    if mask is None or not mask.any():
        return {}
    z = np.stack([res[c][mask] / noise[c] for c in range(res.shape[0])])
    z = z[:, np.all(np.isfinite(z), 0)]
    return {"trail_mean_sigma": float(z.mean()), "trail_max_sigma": float(z.max()),
            "trail_px_above_5sigma": int(np.sum(z > 5))}


def compare(images: dict[str, str | Path], night: str | Path, *,
            equalize_fwhm: bool = True) -> dict:
    """Measure every image of ``images`` (name -> FITS path) against the truth of ``night``.

    Returns
    -------
    dict
        ``{"truth": {...}, name: {...}, ...}`` with, per image: orientation,
        fit_a/fit_b per channel, fwhm_px, n_stars, offsets, noise (truth units per
        channel), noise_mean, noise_equal_fwhm (after the Gaussian blur to the softest
        image's FWHM), outliers_5sigma, large_scale_residual_pct.
    """
    truth = Truth(night)
    sky = truth.sky
    C, H, W = sky.shape
    m = truth.margin
    valid = np.zeros((H, W), bool)
    valid[m:H - m, m:W - m] = True
    bg = background_mask(sky, valid)
    trail = trail_mask(getattr(truth, "trail", None), (H, W), bg)
    lum_t = sky.sum(0)
    stars_xy = pick_stars(truth, lum_t, m)
    out: dict = {"truth": {"margin_px": m, "n_stars_used": int(len(stars_xy)),
                           "background_pixels": int(bg.sum()),
                           **measure_fwhm(lum_t, stars_xy)}}
    if truth.stars is not None and np.isfinite(truth.stars[:, 3]).any():
        out["truth"]["simulated_fwhm_px"] = float(np.nanmedian(truth.stars[:, 3]))
    scaled = {}
    for name, path in images.items():
        img = load_image(path)
        if img.shape[0] != C:  # mono vs colour: compare luminance
            img = img.mean(0, keepdims=True) if img.shape[0] > 1 else np.repeat(img, C, 0)
        if img.shape[-2:] != (H, W):
            out[name] = {"path": str(path), "error": f"shape {img.shape} differs from "
                         f"the truth's {sky.shape}"}
            continue
        o_name, img, scores = orient(img, sky)
        v = valid & np.all(np.isfinite(img), 0) & np.any(img != 0, 0)
        a, b = linear_fit(img, sky, v)
        s = (img - b[:, None, None]) / a[:, None, None]
        s[:, ~v] = np.nan
        res = s - sky
        r = {"path": str(path), "orientation": o_name,
             "colour_check": colour_check(img, sky),
             "orientation_scores": {k: round(x, 3) for k, x in scores.items()},
             "fit_a": a.tolist(), "fit_b": b.tolist(),
             **measure_fwhm(np.nan_to_num(s.sum(0)), stars_xy),
             **residual_stats(res, bg & v, sky)}
        r.update(trail_stats(res, None if trail is None else trail & v, r["noise"]))
        out[name] = r
        scaled[name] = (s, v)
    # equal resolution: blur the sharper ones to the softest FWHM
    fw = {k: out[k].get("fwhm_px") for k in scaled if out[k].get("fwhm_px")}
    if equalize_fwhm and fw:
        target = max(fw.values())
        for k, (s, v) in scaled.items():
            f = fw.get(k)
            if f is None:
                continue
            if f < target - 1e-3:
                # Gaussian-on-Moffat widths do not add in quadrature exactly: refine
                # sigma until the blurred FWHM is within 1 % of the target
                sig = np.sqrt(target ** 2 - f ** 2) / FWHM_PER_SIGMA
                base = np.nan_to_num(s)
                for _ in range(4):
                    sb = np.stack([ndimage.gaussian_filter(c, sig) for c in base])
                    fb = measure_fwhm(sb.sum(0), stars_xy)["fwhm_px"]
                    if fb is None or abs(fb - target) < 0.01 * target:
                        break
                    sig *= np.sqrt(max(target ** 2 - f ** 2, 1e-6) / max(fb ** 2 - f ** 2, 1e-6))
                # blur the truth the same way: the residual is then noise only
                tb = np.stack([ndimage.gaussian_filter(c, sig) for c in sky])
                vb = ndimage.binary_erosion(v, iterations=int(np.ceil(4 * sig)) + 1)
                st = residual_stats(sb - tb, bg & vb, sky)
                out[k]["blur_sigma_px"] = float(sig)
                out[k]["fwhm_after_blur_px"] = fb
                out[k]["noise_equal_fwhm"] = st["noise"]
                out[k]["noise_equal_fwhm_mean"] = st["noise_mean"]
            else:
                out[k]["blur_sigma_px"] = 0.0
                out[k]["noise_equal_fwhm"] = out[k]["noise"]
                out[k]["noise_equal_fwhm_mean"] = out[k]["noise_mean"]
        out["equal_fwhm_px"] = target
    return out


def markdown(result: dict, *, names: Sequence[str] | None = None) -> str:
    """A small Markdown table of ``compare``'s result."""
    names = [n for n in (names or result) if n not in ("truth", "equal_fwhm_px")
             and isinstance(result.get(n), dict)]
    f = lambda x, d=3: "-" if x is None else (f"{x:.{d}g}" if isinstance(x, float) else str(x))  # noqa: E731
    rows = [("image", "orientation", "stars", "FWHM px", "offset dx,dy px", "noise (truth units)",
             "noise at equal FWHM", "large-scale resid. %", ">5 sigma px",
             "trail mean/max sigma")]
    t = result.get("truth", {})
    rows.append(("truth", "-", f(t.get("n_stars")), f(t.get("fwhm_px")), "-", "-", "-", "-", "-",
                 "-"))
    for n in names:
        r = result[n]
        if "error" in r:
            rows.append((n, r["error"], "", "", "", "", "", "", "", ""))
            continue
        ls = r.get("large_scale_residual_pct") or []
        rows.append((n, r["orientation"], f(r.get("n_stars")), f(r.get("fwhm_px")),
                     f"{f(r.get('offset_dx_px'), 2)}, {f(r.get('offset_dy_px'), 2)}",
                     f(r.get("noise_mean")), f(r.get("noise_equal_fwhm_mean")),
                     f(max([x for x in ls if x is not None], default=None)),
                     f(r.get("outliers_5sigma")),
                     f"{f(r.get('trail_mean_sigma'), 2)} / {f(r.get('trail_max_sigma'), 2)}"))
    w = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, help="simulated night folder (with truth/)")
    ap.add_argument("images", nargs="+", help="NAME=PATH of each stack to compare")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    a = ap.parse_args(argv)
    images = dict(x.split("=", 1) for x in a.images)
    res = compare(images, a.truth)
    md = markdown(res)
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if a.md:
        Path(a.md).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
