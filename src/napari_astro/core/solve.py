"""Plate solving, offline: astrometry.net (PyPI ``astrometry``) on Debian's Tycho-2 indexes.

The star list comes from our own detector (:func:`napari_astro.core.stars.detect_stars`
on the luminance); hints come from the header (RA/DEC, OBJCTRA/OBJCTDEC, CRVAL; pixel
scale from PIXSCALE/SECPIX or XPIXSZ/FOCALLEN). The solve itself runs in a child
Python process (``python -c``) with a time limit, because astrometry.net's C solver
cannot be interrupted from Python: on timeout or cancel the child is killed. The
solution is an astropy WCS (TAN + SIP) whose pixel convention is FITS (1-based
CRPIX), so ``wcs.pixel_to_world(x, y)`` takes our 0-based (column, row) coordinates.

Index files: ``$NAPARI_ASTRO_INDEX_DIR`` or ``/usr/share/astrometry``
(``apt-get install astrometry-data-tycho2``: index-tycho2-08..19, quads of 0.5 to 33
degrees, fields of about 1 to 50 degrees; smaller fields need the 4200/5200 series).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Sequence

import numpy as np

from .errors import BadInputError

__all__ = ["PlateSolution", "SolveHints", "index_files", "solve_hints", "solve_stars",
           "solve_image", "write_wcs", "has_wcs", "DEFAULT_INDEX_DIR"]

DEFAULT_INDEX_DIR = pathlib.Path("/usr/share/astrometry")

#: WCS keywords removed before a new solution is written (old TAN/SIP/CD/PC solutions).
_WCS_KEY_PREFIXES = ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "CROTA", "CD1_", "CD2_",
                     "PC1_", "PC2_", "A_", "B_", "AP_", "BP_", "LONPOLE", "LATPOLE",
                     "WCSAXES", "EQUINOX", "RADESYS", "IMAGEW", "IMAGEH")


@dataclasses.dataclass(frozen=True)
class SolveHints:
    """What the header tells the solver.

    Attributes
    ----------
    ra_deg, dec_deg : float or None
        Approximate field centre (J2000 degrees).
    scale_arcsec : float or None
        Approximate pixel scale, arcsec per pixel.
    scale_range : (float, float) or None
        Bounds given to the solver (arcsec/px); wider when binning is ambiguous.
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    scale_arcsec: float | None = None
    scale_range: tuple[float, float] | None = None


@dataclasses.dataclass
class PlateSolution:
    """A plate solution.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS (TAN, with SIP distortion when fitted); 0-based pixel input.
    ra_deg, dec_deg : float
        Sky position of the image centre (J2000 degrees).
    scale_arcsec : float
        Pixel scale, arcsec per pixel.
    rotation_deg : float
        Position angle of the image's +y axis east of north, degrees.
    flipped : bool
        True when the image is mirrored (determinant of the CD matrix > 0).
    logodds : float
        astrometry.net's log-odds of the match (>= 21 accepted).
    n_matched : int
        Catalogue stars matched in the verification.
    index : str
        File name of the index that solved.
    seconds : float
        Wall time of the solve, including the child process start.
    """

    wcs: Any
    ra_deg: float
    dec_deg: float
    scale_arcsec: float
    rotation_deg: float
    flipped: bool
    logodds: float
    n_matched: int
    index: str
    seconds: float

    def summary(self) -> str:
        return (f"solved: centre RA {self.ra_deg:.4f} Dec {self.dec_deg:+.4f}, "
                f"{self.scale_arcsec:.3f}\"/px, rotation {self.rotation_deg:.1f} deg"
                f"{' (mirrored)' if self.flipped else ''}, {self.n_matched} stars, "
                f"{self.seconds:.1f} s")


def index_files(index_dir: str | os.PathLike | None = None, *,
                field_arcmin: tuple[float, float] | None = None) -> list[pathlib.Path]:
    """The astrometry.net index files to use.

    Parameters
    ----------
    index_dir : path, optional
        Folder of ``index-*.fits``; default ``$NAPARI_ASTRO_INDEX_DIR`` or
        ``/usr/share/astrometry``.
    field_arcmin : (float, float), optional
        Approximate field width and height in arcmin: keep only indexes whose quads
        (SCALE_L..SCALE_U) fit a field of that size (10% of the short side up to the
        diagonal), which saves loading the big fine-scale files.

    Returns
    -------
    list of pathlib.Path
        Sorted; empty when none are installed.
    """
    folder = pathlib.Path(index_dir or os.environ.get("NAPARI_ASTRO_INDEX_DIR") or DEFAULT_INDEX_DIR)
    files = sorted(folder.glob("index-*.fits"))
    if field_arcmin is None or not files:
        return files
    from astropy.io import fits

    lo = 0.1 * min(field_arcmin)
    hi = float(np.hypot(*field_arcmin))
    keep = []
    for f in files:
        try:
            h = fits.getheader(f)
            ql, qu = (np.degrees(float(h["SCALE_L"])) * 60, np.degrees(float(h["SCALE_U"])) * 60)
        except (OSError, KeyError, ValueError):
            keep.append(f)  # unknown scale: let the solver decide
            continue
        if qu >= lo and ql <= hi:
            keep.append(f)
    return keep or files


def _sexagesimal(value: Any, hours: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(":", " ").replace("h", " ").replace("d", " ")
    text = text.replace("m", " ").replace("s", " ").replace("'", " ").replace('"', " ")
    parts = text.split()
    if not parts:
        return None
    try:
        if len(parts) == 1:  # a plain number is degrees whatever the keyword
            return float(parts[0])
        sign = -1.0 if parts[0].startswith("-") else 1.0
        d = abs(float(parts[0])) + float(parts[1]) / 60 + (float(parts[2]) / 3600 if len(parts) > 2 else 0)
        v = sign * d
        return v * 15.0 if hours else v
    except ValueError:
        return None


def solve_hints(header: Any) -> SolveHints:
    """Centre and pixel scale hints from a FITS header (all optional).

    Centre: an existing celestial WCS (CRVAL1/2 with RA---/DEC-- CTYPEs), else RA/DEC
    in degrees, else OBJCTRA (hours, sexagesimal) / OBJCTDEC. Scale: PIXSCALE, SECPIX
    or 206.265 * XPIXSZ [um] / FOCALLEN [mm]; XPIXSZ is sometimes written with the
    binning applied and sometimes not, so with XBINNING > 1 the range covers both.
    """
    if header is None:
        return SolveHints()
    ra = dec = None
    try:
        if str(header.get("CTYPE1", "")).startswith("RA--") and "CRVAL1" in header:
            ra, dec = float(header["CRVAL1"]), float(header["CRVAL2"])
        elif header.get("RA") is not None and header.get("DEC") is not None:
            # RA is degrees as a number, hours when written sexagesimal ("12 50 53")
            ra = _sexagesimal(header["RA"], hours=True)
            dec = _sexagesimal(header["DEC"], hours=False)
        elif header.get("OBJCTRA") is not None and header.get("OBJCTDEC") is not None:
            ra = _sexagesimal(header["OBJCTRA"], hours=True)
            dec = _sexagesimal(header["OBJCTDEC"], hours=False)
    except (TypeError, ValueError, KeyError):
        ra = dec = None
    if ra is None or dec is None or not (np.isfinite(ra) and np.isfinite(dec)) or abs(dec) > 90:
        ra = dec = None
    else:
        ra = ra % 360.0
    scale = None
    rng = None
    try:
        for key in ("PIXSCALE", "SECPIX", "SCALE"):
            if header.get(key) is not None and float(header[key]) > 0:
                scale = float(header[key])
                break
        if scale is None and header.get("XPIXSZ") and header.get("FOCALLEN"):
            if float(header["FOCALLEN"]) > 0 and float(header["XPIXSZ"]) > 0:
                scale = 206.264806 * float(header["XPIXSZ"]) / float(header["FOCALLEN"])
        if scale is not None:
            binning = max(1, int(header.get("XBINNING", 1) or 1))
            rng = (scale / 1.25, scale * binning * 1.25)
    except (TypeError, ValueError):
        scale, rng = None, None
    return SolveHints(ra, dec, scale, rng)


def _child_main() -> None:  # pragma: no cover - runs in the solver child process
    """Child side: JSON request on stdin -> astrometry solution JSON on stdout."""
    import logging

    import astrometry

    logging.disable(logging.CRITICAL)
    req = json.loads(sys.stdin.read())
    size = (astrometry.SizeHint(*req["scale_range"]) if req.get("scale_range") else None)
    pos = (astrometry.PositionHint(req["ra"], req["dec"], req["radius"])
           if req.get("ra") is not None else None)
    params = astrometry.SolutionParameters(
        sip_order=int(req.get("sip_order", 3)),
        tune_up_logodds_threshold=14.0 if int(req.get("sip_order", 3)) > 0 else None,
        positional_noise_pixels=float(req.get("noise", 1.0)),
        logodds_callback=lambda logodds: astrometry.Action.STOP,  # first accepted match
    )
    with astrometry.Solver([pathlib.Path(p) for p in req["index_files"]]) as solver:
        sol = solver.solve(stars=req["stars"], size_hint=size, position_hint=pos,
                           solution_parameters=params)
    out = {"matched": False}
    if sol.has_match():
        m = sol.best_match()
        out = {"matched": True, "logodds": m.logodds, "index": str(m.index_path),
               "n_matched": len(m.stars), "wcs_fields": m.wcs_fields}
    sys.stdout.write("\n@@SOLUTION@@" + json.dumps(out))
    sys.stdout.flush()


def solve_stars(xy: np.ndarray, width: int, height: int, *, hints: SolveHints | None = None,
                radius_deg: float = 10.0, timeout: float = 60.0, sip_order: int = 3,
                index_dir: str | os.PathLike | None = None, name: str | None = None,
                cancel: Any = None) -> PlateSolution:
    """Plate-solve a star list.

    Parameters
    ----------
    xy : ndarray, shape (N, 2)
        Star positions (column, row), 0-based, brightest first (the solver tries
        the brightest quads first); 20-200 stars are plenty.
    width, height : int
        Image size in pixels.
    hints : SolveHints, optional
        From :func:`solve_hints`; without a scale the search spans 0.5-60"/px and
        without a position it is blind (slower).
    radius_deg : float, default 10
        Search radius around the hinted centre, degrees.
    timeout : float, default 60
        Wall-clock limit in seconds, child start included.
    sip_order : int, default 3
        SIP distortion order (0: pure TAN).
    index_dir : path, optional
        See :func:`index_files`.
    name : str, optional
        File or image name for error messages.
    cancel : CancelToken, optional
        Kills the child when cancelled (raises :class:`~.progress.Cancelled`).

    Raises
    ------
    BadInputError
        Too few stars, no index files, no solution, or the time limit reached:
        naming ``name``.
    """
    hints = hints or SolveHints()
    label = name or "image"
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 8:
        raise BadInputError(label, f"plate solve needs at least 8 stars, found {len(xy)}")
    field = None
    if hints.scale_arcsec:
        field = (width * hints.scale_arcsec / 60.0, height * hints.scale_arcsec / 60.0)
    files = index_files(index_dir, field_arcmin=field)
    if not files:
        raise BadInputError(label, "no astrometry.net index files found (install "
                            "astrometry-data-tycho2 or set NAPARI_ASTRO_INDEX_DIR)")
    req = {
        # astrometry.net works in FITS pixel coordinates (1-based): shift so the
        # returned CRPIX is a standard FITS one
        "stars": (xy + 1.0).tolist(),
        "scale_range": list(hints.scale_range) if hints.scale_range else [0.5, 60.0],
        "ra": hints.ra_deg, "dec": hints.dec_deg, "radius": float(radius_deg),
        "index_files": [str(f) for f in files], "sip_order": int(sip_order),
    }
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", "from napari_astro.core.solve import _child_main; _child_main()"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps(req))
        proc.stdin.close()
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and getattr(cancel, "cancelled", False):
                    proc.kill()
                    proc.wait()
                    cancel.check()
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                    proc.wait()
                    raise BadInputError(label, f"plate solve timed out after {timeout:g} s "
                                        f"({len(xy)} stars; check the RA/DEC and pixel-scale hints)")
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:  # pragma: no cover - only on unexpected errors
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - t0
    if "@@SOLUTION@@" not in out:
        tail = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise BadInputError(label, f"plate solver failed: {tail}")
    res = json.loads(out.rsplit("@@SOLUTION@@", 1)[1])
    if not res["matched"]:
        hint = "" if hints.ra_deg is None else f" within {radius_deg:g} deg of the header position"
        raise BadInputError(label, f"plate solve found no solution{hint} ({len(xy)} stars, "
                            f"{seconds:.0f} s)")
    return _solution_from(res, width, height, seconds)


def _solution_from(res: dict, width: int, height: int, seconds: float) -> PlateSolution:
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.Header()
    for key, (value, comment) in res["wcs_fields"].items():
        if key in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "END", "COMMENT", "HISTORY"):
            continue
        header[key] = (value, comment)
    wcs = WCS(header, relax=True)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ra, dec = (float(v) for v in wcs.all_pix2world([[cx, cy]], 0)[0])
    cd = wcs.pixel_scale_matrix  # deg/px, [[dRA/dx, dRA/dy], [dDec/dx, dDec/dy]]
    scale = float(np.sqrt(abs(np.linalg.det(cd)))) * 3600.0
    # PA of +y at the image centre (not at CRPIX: meridians converge), east of north
    up = wcs.all_pix2world([[cx, cy + 10.0]], 0)[0]
    d_ra = np.radians(up[0] - ra)
    d1, d2 = np.radians(dec), np.radians(up[1])
    rotation = float(np.degrees(np.arctan2(np.sin(d_ra) * np.cos(d2), np.cos(d1) * np.sin(d2)
                                           - np.sin(d1) * np.cos(d2) * np.cos(d_ra)))) % 360.0
    return PlateSolution(wcs=wcs, ra_deg=ra % 360.0, dec_deg=dec, scale_arcsec=scale,
                         rotation_deg=rotation, flipped=bool(np.linalg.det(cd) > 0),
                         logodds=float(res["logodds"]), n_matched=int(res["n_matched"]),
                         index=pathlib.Path(res["index"]).name, seconds=seconds)


def solve_image(image: Any, *, timeout: float = 60.0, hints: SolveHints | None = None,
                radius_deg: float = 10.0, max_stars: int = 150, sip_order: int = 3,
                index_dir: str | os.PathLike | None = None, stars: Any = None,
                cancel: Any = None) -> PlateSolution:
    """Plate-solve an :class:`~napari_astro.core.image.AstroImage` (mono, colour or a raw
    CFA frame).

    Stars are detected on the luminance (a raw mosaic: on its 2x2 CFA luminance), or
    taken from ``stars`` (a
    :class:`~napari_astro.core.stars.Stars`); hints default to :func:`solve_hints`
    of the image's header. See :func:`solve_stars` for the other parameters.
    """
    from .stars import detect_stars, detect_stars_cfa

    name = image.path or "image"
    if stars is None:
        if image.is_cfa:  # a raw camera frame (capture's centring): the 2x2 luminance
            stars = detect_stars_cfa(np.nan_to_num(image.data, nan=0.0), image.bayer,
                                     sigma=5.0, max_stars=max_stars)
        else:
            lum = image.luminance() if image.is_color else image.data
            lum = np.nan_to_num(np.asarray(lum, dtype=np.float32), nan=0.0)
            stars = detect_stars(lum, sigma=5.0, max_stars=max_stars)
    order = np.argsort(-np.asarray(stars.flux), kind="stable")[:max_stars]
    xy = np.column_stack([np.asarray(stars.x)[order], np.asarray(stars.y)[order]])
    h, w = image.shape2d
    return solve_stars(xy, w, h, hints=hints or solve_hints(image.header), radius_deg=radius_deg,
                       timeout=timeout, sip_order=sip_order, index_dir=index_dir, name=name,
                       cancel=cancel)


def has_wcs(header: Any) -> bool:
    """True when the header holds a celestial WCS (RA---/DEC-- CTYPEs and CRVALs)."""
    return (header is not None and str(header.get("CTYPE1", "")).startswith("RA--")
            and "CRVAL1" in header and "CRVAL2" in header)


def write_wcs(header: Any, solution: PlateSolution) -> Any:
    """A copy of ``header`` with the solution's WCS (old WCS keywords removed).

    Also records PLTSOLVD = T and the solution's centre and scale (``CENTRA``,
    ``CENTDEC``, ``PIXSCALE``) the way other tools write them.
    """
    from astropy.io import fits

    out = header.copy() if header is not None else fits.Header()
    for key in list(out.keys()):
        if key.startswith(_WCS_KEY_PREFIXES) and not key.startswith(("CTYPE3", "CRVAL3", "CRPIX3")):
            del out[key]
    wcs_header = solution.wcs.to_header(relax=True)
    for card in wcs_header.cards:
        if card.keyword in ("COMMENT", "HISTORY", "DATE-OBS", "MJD-OBS"):
            continue
        out[card.keyword] = (card.value, card.comment)
    out["PLTSOLVD"] = (True, "plate solved by napari-astro (astrometry.net)")
    out["CENTRA"] = (round(solution.ra_deg, 6), "[deg] RA of the image centre (J2000)")
    out["CENTDEC"] = (round(solution.dec_deg, 6), "[deg] Dec of the image centre (J2000)")
    out["PIXSCALE"] = (round(solution.scale_arcsec, 4), "[arcsec/px] plate-solved pixel scale")
    return out
