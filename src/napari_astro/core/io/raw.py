"""DSLR / mirrorless raw files (CR2, CR3, NEF, ARW, DNG, ...) through rawpy (LibRaw).

We keep the undemosaiced sensor mosaic: the visible area of the raw image, with the
per-channel black level subtracted and divided by ``white - black`` so that a
saturated photosite is 1.0 (float32; noise below black stays negative, so averages of
dark frames are unbiased). The CFA pattern of ``data[0, 0]`` comes from rawpy's
``raw_pattern`` (colour indices) and ``color_desc`` (their colours). LibRaw's
``COLOR(row, col)``, from which ``raw_pattern`` is built, counts rows and columns from
the corner of the *visible* area (LibRaw issues #172 and #252), so the pattern of
``raw_image_visible[0, 0]`` is ``raw_pattern`` itself; :func:`pattern_from_rawpy`
takes an offset for any further crop. Images are kept in sensor orientation (the
EXIF rotation flag is ignored, as astronomical software does).

Metadata from LibRaw's EXIF parse: EXPTIME (shutter, s), ISOSPEED and GAIN (ISO),
DATE-OBS (capture time), INSTRUME (camera make and model, from the TIFF-based
container when there is one), BLACKLEV / WHITELEV. There is no IMAGETYP in a raw
file: the frame type comes from the folder name (see :mod:`napari_astro.core.frames`).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import BadInputError
from ._common import check_readable, short_error
from ..image import BAYER_PATTERNS, AstroImage

__all__ = ["read_raw", "read_raw_info", "pattern_from_rawpy", "normalize_cfa"]


def pattern_from_rawpy(raw_pattern, color_desc, *, dy: int = 0, dx: int = 0) -> str:
    """CFA name (RGGB, BGGR, GRBG or GBRG) of the pixel ``(dy, dx)`` of the visible area.

    Parameters
    ----------
    raw_pattern : array_like of int, shape (2, 2) (or a 4x4 repeat of a 2x2 cell)
        Colour index of each photosite of the cell, as rawpy's ``raw_pattern``.
    color_desc : bytes or str
        Colour of each index, as rawpy's ``color_desc`` (e.g. ``b"RGBG"``: index 3 is
        the second green).
    dy, dx : int, default 0
        Position of our ``data[0, 0]`` in the visible area (crop offset).

    Raises
    ------
    ValueError
        For X-Trans (6x6), CMYG or other non-Bayer sensors.
    """
    pat = np.asarray(raw_pattern)
    if pat.ndim != 2 or pat.shape[0] != pat.shape[1] or pat.shape[0] not in (2, 4):
        raise ValueError(f"not a Bayer sensor (CFA cell {pat.shape})")
    if pat.shape[0] == 4 and not (np.array_equal(pat[:2, :2], pat[2:, 2:])
                                  and np.array_equal(pat[:2, :2], pat[:2, 2:])
                                  and np.array_equal(pat[:2, :2], pat[2:, :2])):
        raise ValueError("not a Bayer sensor (4x4 CFA cell)")
    desc = color_desc.decode("ascii") if isinstance(color_desc, bytes) else str(color_desc)
    desc = desc.upper()
    letters = "".join(desc[int(pat[(dy + r) % 2, (dx + c) % 2])] for r in range(2) for c in range(2))
    if letters not in BAYER_PATTERNS:
        raise ValueError(f"unsupported CFA colours {letters!r} (colour description {desc!r})")
    return letters


def normalize_cfa(raw: np.ndarray, black_cell: np.ndarray, white: float) -> np.ndarray:
    """``(raw - black) / (white - black)`` as float32, black per 2x2 CFA position.

    Parameters
    ----------
    raw : ndarray of uint16, shape (H, W)
        The visible mosaic.
    black_cell : array_like, shape (2, 2)
        Black level of each photosite of the cell starting at ``raw[0, 0]``.
    white : float
        Saturation level (ADU).
    """
    black_cell = np.asarray(black_cell, dtype=np.float32).reshape(2, 2)
    out = raw.astype(np.float32)
    for r in range(2):
        for c in range(2):
            b = black_cell[r, c]
            span = np.float32(white) - b
            if span <= 0:
                raise ValueError(f"white level {white} not above black level {b}")
            view = out[r::2, c::2]
            view -= b
            view *= np.float32(1.0) / span
    return out


def _check_file(path: Path) -> None:
    check_readable(path)


def _camera_model(path: Path) -> str | None:
    """'Make Model' from IFD0 of TIFF-based raw containers (CR2, NEF, ARW, DNG, PEF...)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            make = str(tags["Make"].value).strip("\0 ") if "Make" in tags else ""
            model = str(tags["Model"].value).strip("\0 ") if "Model" in tags else ""
    except Exception:  # CR3 (ISO-BMFF), RAF..., or unexpected layout: no model
        return None
    if model.lower().startswith(make.lower()):
        make = ""  # Nikon/Sony put the make into the model already
    text = f"{make} {model}".strip()
    return text or None


def _header(raw, path: Path, black: np.ndarray, white: float) -> fits.Header:
    h = fits.Header()
    other = getattr(raw, "other", None)
    shutter = getattr(other, "shutter_speed", None)
    iso = getattr(other, "iso_speed", None)
    stamp = getattr(other, "timestamp", None)
    if shutter:
        h["EXPTIME"] = (float(shutter), "[s] exposure time (EXIF)")
    if iso:
        h["ISOSPEED"] = (float(iso), "ISO speed (EXIF)")
        h["GAIN"] = (float(iso), "ISO speed used as gain setting")
    if stamp:
        try:
            when = _dt.datetime.fromtimestamp(int(stamp), tz=_dt.timezone.utc)
            h["DATE-OBS"] = (when.strftime("%Y-%m-%dT%H:%M:%S"), "camera clock (EXIF)")
        except (OverflowError, OSError, ValueError):
            pass
    model = _camera_model(path)
    if model:
        h["INSTRUME"] = (model, "camera (EXIF)")
    h["BLACKLEV"] = (float(np.mean(black)), "[ADU] black level subtracted")
    h["WHITELEV"] = (float(white), "[ADU] white level (saturation)")
    return h


def _open(path: Path):
    import rawpy

    _check_file(path)
    try:
        return rawpy.imread(os.fspath(path))
    except Exception as exc:  # LibRawFileUnsupportedError, LibRawIOError, ...
        raise BadInputError(path, f"not a readable camera raw file ({short_error(exc)})") from None


def _describe(raw, path: Path):
    """(pattern, black 2x2 cell, white, visible shape) of an open rawpy image."""
    try:
        pattern_idx = raw.raw_pattern
        desc = raw.color_desc
        sizes = raw.sizes
    except Exception as exc:
        raise BadInputError(path, f"unreadable camera raw file ({short_error(exc)})") from None
    if pattern_idx is None:
        raise BadInputError(path, "raw file holds no flat sensor mosaic (e.g. a linear DNG)")
    try:
        pattern = pattern_from_rawpy(pattern_idx, desc)
    except ValueError as exc:
        raise BadInputError(path, str(exc)) from None
    levels = np.asarray(raw.black_level_per_channel, dtype=np.float32)
    idx = np.asarray(pattern_idx)[:2, :2].astype(int)
    black = levels[idx]  # black of each photosite of the cell at visible (0, 0)
    white = float(raw.white_level)
    return pattern, black, white, (int(sizes.height), int(sizes.width))


def read_raw_info(path: "str | os.PathLike[str]"):
    """Header, shape and CFA pattern of a raw file (LibRaw unpacks, no demosaicing).

    Returns
    -------
    napari_astro.core.io.ImageInfo
    """
    from . import ImageInfo

    p = Path(path)
    raw = _open(p)
    try:
        pattern, black, white, shape = _describe(raw, p)
        header = _header(raw, p, black, white)
    finally:
        raw.close()
    return ImageInfo(header=header, shape=shape, bayer=pattern, history=())


def read_raw(path: "str | os.PathLike[str]") -> AstroImage:
    """Read the sensor mosaic of a camera raw file.

    Returns
    -------
    AstroImage
        float32 ``(H, W)`` of the visible area, ``(x - black) / (white - black)``
        per CFA position (1.0 = saturation), ``bayer`` set, header with EXPTIME,
        ISOSPEED, GAIN, DATE-OBS, INSTRUME when known.
    """
    p = Path(path)
    raw = _open(p)
    try:
        pattern, black, white, _ = _describe(raw, p)
        try:
            mosaic = np.asarray(raw.raw_image_visible)
        except Exception as exc:
            raise BadInputError(p, f"unreadable camera raw data ({short_error(exc)})") from None
        if mosaic.ndim != 2 or mosaic.size == 0:
            raise BadInputError(p, f"unexpected raw mosaic shape {mosaic.shape}")
        try:
            data = normalize_cfa(mosaic, black, white)
        except ValueError as exc:
            raise BadInputError(p, str(exc)) from None
        header = _header(raw, p, black, white)
    finally:
        raw.close()
    return AstroImage(data=data, header=header, bayer=pattern, path=str(p))
