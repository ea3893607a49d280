"""Frames on disk: full FITS headers, user file-name patterns, atomic writes.

The camera's integers are written as they came (16-bit with BZERO 32768), so nothing is
lost and ``napari-astro stack`` reads them without options: IMAGETYP uses the words
our classifier (``core/frames.py``) knows, and the header carries what masters are
grouped by (EXPTIME, CCD-TEMP, GAIN, OFFSET, FILTER, XBINNING).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import string
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.io._atomic import atomic_output
from .devices import IMAGETYP, Frame

__all__ = ["DEFAULT_PATTERN", "frame_header", "frame_name", "write_frame", "check_pattern"]

#: Default file-name pattern; fields: object, type, filter, exposure, binning, gain,
#: index (1-based within its line), date (YYYYMMDD), time (HHMMSS), temp.
DEFAULT_PATTERN = "{object}/{type}/{object}_{type}_{filter}_{exposure}s_{index:04d}.fits"
_FIELDS = {"object", "type", "filter", "exposure", "binning", "gain", "index", "date", "time",
           "temp", "line"}


def check_pattern(pattern: str) -> None:
    """Raise ``ValueError`` naming an unknown field of a file-name pattern."""
    for _, field, _, _ in string.Formatter().parse(pattern):
        if field is not None and field not in _FIELDS:
            raise ValueError(f"unknown field {{{field}}} (known: {', '.join(sorted(_FIELDS))})")


def _safe(text: Any) -> str:
    """File-name safe text (spaces and separators become underscores)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "none"


def _exposure_text(seconds: float) -> str:
    return f"{seconds:g}".replace("e-0", "e-")


def frame_name(pattern: str, *, object: str, kind: str, filter: str | None, exposure: float,
               binning: int = 1, gain: float | None = None, index: int = 1,
               when: _dt.datetime | None = None, temp: float | None = None,
               line: int = 0) -> str:
    """A frame's relative path from the pattern (each field made file-name safe)."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    return pattern.format(object=_safe(object), type=_safe(kind), filter=_safe(filter or "none"),
                          exposure=_exposure_text(exposure), binning=binning,
                          gain=_safe("none" if gain is None else f"{gain:g}"), index=index,
                          date=when.strftime("%Y%m%d"), time=when.strftime("%H%M%S"),
                          temp=_safe("none" if temp is None else f"{temp:.0f}"), line=line)


def frame_header(frame: Frame, *, kind: str, exposure: float, object: str | None = None,
                 filter: str | None = None, gain: float | None = None,
                 offset: float | None = None, temperature: float | None = None,
                 binning: int | None = None, ra_deg: float | None = None,
                 dec_deg: float | None = None, focus: int | None = None,
                 telescope: str | None = None, camera: str | None = None,
                 extra: Mapping[str, Any] | None = None):
    """The driver's header completed with what our pipeline and other tools read.

    Values we know better than the driver (the frame type, the object, the filter from
    the wheel, the position from the mount) replace the driver's; the rest is kept.
    """
    h = frame.header.copy()
    h["IMAGETYP"] = (IMAGETYP[kind], "Frame type")
    h["FRAME"] = (IMAGETYP[kind].split()[0] if kind != "darkflat" else "Dark Flat", "Frame type")
    h["EXPTIME"] = (float(exposure), "[s] exposure time")
    h["EXPOSURE"] = (float(exposure), "[s] exposure time")
    if "DATE-OBS" not in h:
        h["DATE-OBS"] = (_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
                         .replace("+00:00", ""), "UTC start of the exposure")
    values = {"OBJECT": (object, "target"), "FILTER": (filter, "filter"),
              "GAIN": (gain, "sensor gain"), "OFFSET": (offset, "sensor offset"),
              "CCD-TEMP": (temperature, "[C] sensor temperature"),
              "XBINNING": (binning, "binning"), "YBINNING": (binning, "binning"),
              "FOCUSPOS": (focus, "[steps] focuser position"),
              "TELESCOP": (telescope, "mount"), "INSTRUME": (camera, "camera")}
    for key, (value, comment) in values.items():
        if value is not None:
            h[key] = (value, comment)
    for key, default in (("GAIN", 0.0), ("OFFSET", 0.0), ("FILTER", "none"), ("OBJECT", "none"),
                         ("XBINNING", 1), ("CCD-TEMP", 0.0), ("FOCUSPOS", 0),
                         ("TELESCOP", "none"), ("INSTRUME", "none")):
        h.setdefault(key, default)
    if ra_deg is not None and dec_deg is not None and kind == "light":
        h["RA"] = (float(ra_deg), "[deg] J2000 pointing")
        h["DEC"] = (float(dec_deg), "[deg] J2000 pointing")
    h.setdefault("RA", 0.0)
    h.setdefault("DEC", 0.0)
    # a mono camera says so explicitly; a colour one keeps the driver's BAYERPAT
    h.setdefault("BAYERPAT", ("NONE", "no colour filter array (mono)"))
    if h["BAYERPAT"] == "NONE":
        h.remove("BAYERPAT")
        h["BAYERPAT"] = ("NONE", "no colour filter array (mono)")
    for key, value in (extra or {}).items():
        h[key] = value
    return h


def write_frame(frame: Frame, header, path: "str | os.PathLike[str]", *,
                overwrite: bool = False) -> Path:
    """Write ``frame`` with ``header`` to ``path`` atomically (temporary file, rename)."""
    from astropy.io import fits

    path = Path(path)
    data = frame.data
    hdu = fits.PrimaryHDU(data=data if data.dtype != np.uint16 else data, header=None)
    for card in header.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
                            "BSCALE", ""):
            continue
        if card.keyword in ("COMMENT", "HISTORY"):
            hdu.header.add_comment(card.value) if card.keyword == "COMMENT" else \
                hdu.header.add_history(card.value)
            continue
        hdu.header[card.keyword] = (card.value, card.comment)
    with atomic_output(path, overwrite=overwrite) as tmp:
        hdu.writeto(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
    return path
