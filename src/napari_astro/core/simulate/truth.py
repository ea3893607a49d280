"""The truth of a simulated night: ``truth/`` (sky.fits, stars.csv, truth.json)
written from the model and read back by :func:`load_truth`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BadInputError
from .params import NightParams, NightTruth

if TYPE_CHECKING:
    from .model import NightModel

_FOLDER = {"light": "lights", "dark": "darks", "flat": "flats", "bias": "bias",
           "darkflat": "darkflats"}


def _write_truth(out: Path, model: NightModel, files, light_info, cr_info) -> NightTruth:
    from astropy.io import fits

    p = model.p
    tdir = out / "truth"
    tdir.mkdir(parents=True, exist_ok=True)
    sky = model.truth_sky()
    h = fits.Header()
    h["BUNIT"] = ("ADU/65535", "calibrated: (L-D)/(F/mean per CFA colour)")
    h["COLORSP"] = ("RGB" if sky.ndim == 3 else "MONO", "channel order")
    h["IMAGETYP"] = ("Truth", "noiseless simulated sky, not a frame to stack")
    fits.PrimaryHDU(data=sky, header=h).writeto(tdir / "sky.fits", overwrite=True)
    table = model.star_table()
    _write_stars(tdir / "stars_all.csv", table, np.ones(len(table["x"]), bool))
    _write_stars(tdir / "stars.csv", table, table["inside"])
    info = {
        "version": 1,
        "units": ("sky.fits and star fluxes: ADU/65535 of a perfectly calibrated reference "
                  "light, (L - D) / (F_c / mean_c(F_c)) with the flat normalised per CFA "
                  "colour; = sky electrons / gain / 65535 * flat_norm[c]"),
        "params": p.to_dict(),
        "reference_index": 0,
        "pattern": model.pattern,
        "sky": "sky.fits", "stars": "stars.csv", "stars_all": "stars_all.csv",
        "files": {_FOLDER[k]: [str(f.relative_to(out)) for f in v] for k, v in files.items()},
        "lights": light_info,
        "cosmic_rays_other": cr_info,
        "hot_pixels": [[int(r), int(c), float(v)] for (r, c), v in zip(model.hot_rc, model.hot_rates)],
        "cold_pixels": [[int(r), int(c), int(v)] for (r, c), v in zip(model.dead_rc, model.dead_v)],
        "satellite": model.satellite,
        "vignetting": {"center": list(model.vig_center), "radius": model.vig_radius,
                       "strength": p.vignetting,
                       "model": "1 - strength * (0.4 rho^2 + 0.6 rho^4), rho = r / radius"},
        "dust": model.dust,
        "flat_norm": model.flat_norm.tolist(),
        "flat_color": list(p.flat_color),
        "flat_levels_e": [model.flat_levels(i).tolist() for i in range(p.n_flats)],
        "dark_current_mean": float(model.dark[~_mask_of(model.hot_rc, model.shape)].mean(dtype=np.float64)),
    }
    tmp = tdir / ".truth.json.part"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, tdir / "truth.json")
    return load_truth(out)


def _mask_of(rc: np.ndarray, shape) -> np.ndarray:
    m = np.zeros(shape, bool)
    if len(rc):
        m[rc[:, 0], rc[:, 1]] = True
    return m


_STAR_FIELDS = ("x", "y", "flux", "fwhm", "saturated", "flux_r", "flux_g", "flux_b")


def _write_stars(path: Path, table: dict, sel: np.ndarray) -> None:
    order = np.argsort(-table["flux"][sel])
    cols = {k: np.asarray(table[k])[sel][order] for k in _STAR_FIELDS}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_STAR_FIELDS)
        for i in range(len(order)):
            w.writerow([f"{cols['x'][i]:.5f}", f"{cols['y'][i]:.5f}", f"{cols['flux'][i]:.8g}",
                        f"{cols['fwhm'][i]:.4f}", int(cols["saturated"][i]),
                        f"{cols['flux_r'][i]:.8g}", f"{cols['flux_g'][i]:.8g}",
                        f"{cols['flux_b'][i]:.8g}"])


def _read_stars(path: Path) -> np.recarray:
    dtype = [(k, bool if k == "saturated" else np.float64) for k in _STAR_FIELDS]
    rows = []
    with open(path, newline="") as fh:
        r = csv.reader(fh)
        head = next(r)
        for row in r:
            d = dict(zip(head, row))
            rows.append(tuple(bool(int(d[k])) if k == "saturated" else float(d[k])
                              for k in _STAR_FIELDS))
    return np.rec.array(np.array(rows, dtype=dtype)) if rows else np.recarray(0, dtype=dtype)


def load_truth(out_dir: "str | os.PathLike[str]") -> NightTruth:
    """Read the truth of a simulated night written by :func:`simulate_night`."""
    from astropy.io import fits

    out = Path(out_dir)
    tj = out / "truth" / "truth.json"
    if not tj.is_file():
        raise BadInputError(tj, "no simulated night here (truth.json missing)")
    try:
        info = json.loads(tj.read_text())
    except Exception as exc:
        raise BadInputError(tj, f"unreadable truth ({exc})") from None
    sky = fits.getdata(out / "truth" / info["sky"]).astype(np.float32)
    stars = _read_stars(out / "truth" / info["stars"])
    files = info["files"]
    hot = np.array([h[:2] for h in info["hot_pixels"]], np.int64).reshape(-1, 2)
    cold = np.array([h[:2] for h in info["cold_pixels"]], np.int64).reshape(-1, 2)
    return NightTruth(
        root=out,
        lights=[out / f for f in files.get("lights", [])],
        darks=[out / f for f in files.get("darks", [])],
        flats=[out / f for f in files.get("flats", [])],
        biases=[out / f for f in files.get("bias", [])],
        darkflats=[out / f for f in files.get("darkflats", [])],
        sky=sky,
        reference_index=int(info["reference_index"]),
        transforms=[np.array(li["transform"], np.float64) for li in info["lights"]],
        stars=stars,
        hot_pixels=hot,
        hot_rates=np.array([h[2] for h in info["hot_pixels"]], np.float64),
        cold_pixels=cold,
        params=NightParams.from_dict(info["params"]),
        info=info,
    )
