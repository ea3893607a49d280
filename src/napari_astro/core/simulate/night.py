"""Write a simulated night's raw frames as 16-bit FITS with NINA-style headers."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInputError
from ..progress import Progress, report
from .model import NightModel, _rng
from .params import NightParams, NightTruth
from .truth import _FOLDER, _write_truth


_IMAGETYP = {"light": "Light Frame", "dark": "Dark Frame", "flat": "Flat Field",
             "bias": "Bias Frame", "darkflat": "Dark Flat"}
_SUBDIRS = ("bias", "darks", "flats", "lights", "darkflats", "truth")


def _header(p: NightParams, kind: str, exposure: float, date: _dt.datetime, temp: float):
    from astropy.io import fits

    h = fits.Header()
    h["IMAGETYP"] = (_IMAGETYP[kind], "type of image")
    h["EXPOSURE"] = (float(exposure), "[s] exposure duration")
    h["EXPTIME"] = (float(exposure), "[s] exposure duration")
    h["DATE-OBS"] = (date.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "UTC start of exposure")
    h["XBINNING"] = (1, "X axis binning factor")
    h["YBINNING"] = (1, "Y axis binning factor")
    h["GAIN"] = (int(p.gain_setting), "sensor gain setting")
    h["OFFSET"] = (int(p.offset_setting), "sensor gain offset")
    h["EGAIN"] = (float(p.gain), "[e-/ADU] electrons per A/D unit")
    h["XPIXSZ"] = (3.76, "[um] pixel X axis size")
    h["YPIXSZ"] = (3.76, "[um] pixel Y axis size")
    h["INSTRUME"] = ("SIM ASI2600MM Pro" if p.mono else "SIM ASI2600MC Pro", "imaging instrument")
    h["SET-TEMP"] = (float(p.temperature), "[degC] CCD temperature setpoint")
    h["CCD-TEMP"] = (round(float(temp), 1), "[degC] CCD temperature")
    h["TELESCOP"] = ("SIM 80mm f/6 refractor", "name of telescope")
    h["FOCALLEN"] = (480.0, "[mm] focal length")
    h["FOCRATIO"] = (6.0, "focal ratio")
    if p.mono:
        h["FILTER"] = (p.filter_name or "L", "active filter name")
    else:
        if p.filter_name:
            h["FILTER"] = (p.filter_name, "active filter name")
        h["BAYERPAT"] = (p.bayer.upper(), "sensor Bayer pattern")
        h["XBAYROFF"] = (0, "Bayer pattern X axis offset")
        h["YBAYROFF"] = (0, "Bayer pattern Y axis offset")
    h["ROWORDER"] = ("TOP-DOWN", "FITS image row order")
    if kind == "light":
        h["OBJECT"] = (p.object_name, "name of the object of interest")
        h["RA"] = (float(p.ra), "[deg] RA of telescope")
        h["DEC"] = (float(p.dec), "[deg] Declination of telescope")
        ra_h = (p.ra % 360.0) / 15.0
        dec_a = abs(p.dec)
        h["OBJCTRA"] = (f"{int(ra_h):02d} {int(ra_h * 60) % 60:02d} {ra_h * 3600 % 60:04.1f}",
                        "[H M S] RA of imaged object")
        h["OBJCTDEC"] = (f"{'-' if p.dec < 0 else '+'}{int(dec_a):02d} {int(dec_a * 60) % 60:02d} "
                         f"{dec_a * 3600 % 60:04.1f}", "[D M S] Declination of imaged object")
    h["SWCREATE"] = ("napari-astro simulate", "software that created this file")
    return h


def _write_u16(path: Path, data: np.ndarray, header) -> None:
    from astropy.io import fits

    # uint=True stores BITPIX 16 with BZERO 32768, as cameras do
    fits.PrimaryHDU(data=data, header=header, uint=True).writeto(path, overwrite=True)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "exists and is not a folder")
    if out.is_dir() and not overwrite:
        used = [d for d in _SUBDIRS if (out / d).exists() and any((out / d).iterdir())]
        if used:
            raise BadInputError(out, f"already holds a night ({', '.join(used)}); "
                                "use overwrite to replace it")


def simulate_night(out_dir: "str | os.PathLike[str]", params: NightParams = NightParams(), *,
                   progress: Optional[Progress] = None, overwrite: bool = False,
                   cancel=None) -> NightTruth:
    """Simulate a night's raw frames and write them with their truth.

    Parameters
    ----------
    out_dir : path-like
        Folder to create or fill: ``bias/ darks/ flats/ lights/ [darkflats/] truth/``.
    params : NightParams
        What to simulate (default: 2000 x 1500 OSC, 20 frames of each type).
    progress : callable, optional
        ``progress(done, total, message)`` after each frame.
    overwrite : bool, default False
        Replace a night already in ``out_dir`` (its frame folders are emptied first);
        otherwise such a folder raises :class:`BadInputError`.
    cancel : CancelToken, optional

    Returns
    -------
    NightTruth
        Paths of the frames and the truth (also in ``out_dir/truth``).
    """
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    p = params
    for d in _SUBDIRS:
        if (out / d).exists() and overwrite:
            shutil.rmtree(out / d)
    model = NightModel(p)
    total = p.n_lights + p.n_darks + p.n_flats + p.n_biases + p.n_darkflats + 1
    done = 0
    report(progress, done, total, "model", cancel)
    t0 = _dt.datetime.fromisoformat(p.start)
    trng = _rng(p.seed, 10)
    files: dict[str, list[Path]] = {k: [] for k in _FOLDER}
    light_info, cr_info = [], {}

    def temp() -> float:
        return p.temperature + float(trng.normal(0, 0.08))

    date = t0
    for k in range(p.n_lights):
        data, hits = model.light_frame(k)
        path = out / "lights" / f"light_{k + 1:04d}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_u16(path, data, _header(p, "light", p.exposure, date, temp()))
        files["light"].append(path)
        light_info.append({"file": str(path.relative_to(out)),
                           "transform": model.transforms[k].tolist(),
                           "sky_level": float(model.sky_levels[k]),
                           "transparency": float(model.transparency[k]),
                           "fwhm": float(model.fwhms[k]), "date_obs": date.isoformat(),
                           "cosmic_rays": hits})
        date += _dt.timedelta(seconds=p.exposure + 4.0)
        done += 1
        report(progress, done, total, f"light {k + 1}/{p.n_lights}", cancel)
    date += _dt.timedelta(minutes=20)
    plan = [("darkflat", p.n_darkflats), ("flat", p.n_flats), ("dark", p.n_darks),
            ("bias", p.n_biases)]
    # acquisition order: flats at dawn, then flat-darks, darks and biases
    for kind, n in (plan[1], plan[0], plan[2], plan[3]):
        for i in range(n):
            if kind == "bias":
                data, hits, t = model.bias_frame(i), [], 0.0
            elif kind == "flat":
                data, hits, t = model.flat_frame(i), [], p.flat_exposure
            elif kind == "darkflat":
                data, hits = model.dark_frame(i, exposure=p.flat_exposure, kind="darkflat")
                t = p.flat_exposure
            else:
                data, hits = model.dark_frame(i)
                t = p.exposure
            path = out / _FOLDER[kind] / f"{kind}_{i + 1:04d}.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_u16(path, data, _header(p, kind, t, date, temp()))
            files[kind].append(path)
            if hits:
                cr_info[str(path.relative_to(out))] = hits
            date += _dt.timedelta(seconds=t + 2.0)
            done += 1
            report(progress, done, total, f"{kind} {i + 1}/{n}", cancel)

    truth = _write_truth(out, model, files, light_info, cr_info)
    report(progress, total, total, "done", cancel)
    return truth
