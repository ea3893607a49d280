"""Classify a night's frames (light, dark, flat, bias, dark-flat) and group them.

The frame type comes from ``IMAGETYP`` (the spellings of N.I.N.A., SGP, MaxIm DL,
APT, ASIAIR, Seestar, IRAF...), else from the name of a folder the file sits in
(``lights/``, ``darks/``, ``flats/``, ``bias/``, ``offsets/``, ``darkflats/``...),
else it is bad input naming the file. :func:`scan_frames` reads headers only, so a
session of hundreds of frames is classified, and its sizes checked, before any pixel
is read. :func:`group_frames` splits frames into sets that may be combined into one
master: same type, exposure, filter, temperature (within a tolerance), binning and gain.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .header import Header

from .errors import BadInputError
from .io import IMAGE_EXTENSIONS, read_info

__all__ = ["FrameType", "FrameInfo", "GroupKey", "frame_type_from", "scan_frames",
           "group_frames", "frame_info", "check_same_shape", "expand_inputs"]


class FrameType(str, enum.Enum):
    """The role of a frame in calibration."""

    LIGHT = "light"
    DARK = "dark"
    FLAT = "flat"
    BIAS = "bias"
    DARKFLAT = "darkflat"

    def __str__(self) -> str:
        return self.value


def _norm(text: str) -> str:
    """Lower case without spaces, dashes, underscores or dots: 'Dark Flat' -> 'darkflat'."""
    return re.sub(r"[\s_\-.]+", "", str(text).strip().lower())


# IMAGETYP spellings (normalised by _norm) of the usual capture programs.
_IMAGETYP: dict[str, FrameType] = {}
for _t, _names in {
    FrameType.LIGHT: ("light", "lightframe", "lights", "object", "science", "sciframe"),
    FrameType.DARK: ("dark", "darkframe", "darks", "masterdark"),
    FrameType.FLAT: ("flat", "flatframe", "flatfield", "flats", "skyflat", "domeflat",
                     "twilightflat", "masterflat"),
    FrameType.BIAS: ("bias", "biasframe", "biases", "zero", "offset", "offsetframe",
                     "masterbias", "masteroffset"),
    FrameType.DARKFLAT: ("darkflat", "flatdark", "darkflatframe", "flatdarkframe",
                         "darkflats", "flatdarks", "masterdarkflat", "masterflatdark"),
}.items():
    for _n in _names:
        _IMAGETYP[_n] = _t

# IMAGETYP of processed products (a stacked master light, a simulator's truth): they
# are not raw frames, so scanning a folder that holds one skips it with a log line
# instead of stacking a stack into itself.
PRODUCT_TYPES = ("masterlight", "stackedlight", "stack", "truth")


def product_type(header: Header | None) -> str | None:
    """The IMAGETYP of a processed product (see :data:`PRODUCT_TYPES`), else None."""
    if header is None:
        return None
    v = header.get("IMAGETYP")
    if isinstance(v, str) and _norm(v) in PRODUCT_TYPES:
        return v.strip()
    return None


# Folder names (normalised by _norm), singular and plural.
_FOLDERS: dict[str, FrameType] = {}
for _t, _names in {
    FrameType.LIGHT: ("light", "lights"),
    FrameType.DARK: ("dark", "darks"),
    FrameType.FLAT: ("flat", "flats"),
    FrameType.BIAS: ("bias", "biases", "biass", "offset", "offsets", "zero", "zeros"),
    FrameType.DARKFLAT: ("darkflat", "darkflats", "flatdark", "flatdarks"),
}.items():
    for _n in _names:
        _FOLDERS[_n] = _t


def frame_type_from(header: Header | None, path: "str | os.PathLike[str]", *,
                    default: FrameType | None = None) -> FrameType:
    """The frame type from ``IMAGETYP``, else the folder name, else ``default``.

    Parameters
    ----------
    header : napari_astro.core.header.Header or None
        The frame's header; ``IMAGETYP`` (also ``FRAMETYP``, ``FRAME``) is matched
        case-insensitively, ignoring spaces, dashes and underscores ("Light Frame",
        "object", "Bias", "zero", "Offset", "Dark Flat", "FlatDark"...).
    path : path-like
        The file; the nearest enclosing folder named like a frame type (``lights/``,
        ``Darks/``, ``flat/``, ``biases/``, ``offsets/``, ``darkflats/``,
        ``flatdarks/``...) decides when the header does not.
    default : FrameType, optional
        Used when neither tells (e.g. files given to ``register``, which are lights).

    Raises
    ------
    BadInputError
        Naming the file, when the type cannot be determined.
    """
    value = None
    if header is not None:
        for key in ("IMAGETYP", "FRAMETYP", "FRAME"):
            v = header.get(key)
            if isinstance(v, str) and v.strip():
                value = v.strip()
                break
    if value is not None and _norm(value) in _IMAGETYP:
        return _IMAGETYP[_norm(value)]
    p = Path(path)
    for parent in p.parents:
        name = _norm(parent.name)
        if name in _FOLDERS:
            return _FOLDERS[name]
    if default is not None:
        return FrameType(default)
    if value is not None:
        raise BadInputError(p, f"unknown frame type IMAGETYP={value!r} and no typed folder "
                               "(lights/, darks/, flats/, bias/, darkflats/)")
    raise BadInputError(p, "unknown frame type: no IMAGETYP and no typed folder "
                           "(lights/, darks/, flats/, bias/, darkflats/)")


def _float(header: Header, keys: Iterable[str]) -> float | None:
    for key in keys:
        v = header.get(key)
        if v is None or isinstance(v, bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            return f
    return None


def _binning(header: Header) -> tuple[int, int]:
    bx = _float(header, ("XBINNING", "CCDXBIN", "BINX", "HBIN"))
    by = _float(header, ("YBINNING", "CCDYBIN", "BINY", "VBIN"))
    if bx is None and by is None:
        text = header.get("BINNING") or header.get("CCDSUM")  # "2x2" / IRAF "2 2"
        if isinstance(text, str):
            m = re.match(r"\s*(\d+)\s*[x\s]\s*(\d+)", text)
            if m:
                return int(m.group(1)), int(m.group(2))
    bx = int(bx) if bx and bx > 0 else 1
    by = int(by) if by and by > 0 else bx
    return bx, by


def _filter(header: Header) -> str | None:
    for key in ("FILTER", "FILTNAME", "FILTER1"):
        v = header.get(key)
        if v is not None and str(v).strip():
            return str(v).strip()
    return None


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """What one frame is, from its header alone.

    Attributes
    ----------
    path : Path
    type : FrameType
    exposure : float or None
        Seconds (``EXPTIME``/``EXPOSURE``).
    filter : str or None
        ``FILTER`` name, stripped.
    temperature : float or None
        Sensor temperature in deg C (``CCD-TEMP`` and its aliases).
    binning : (int, int)
        ``(XBINNING, YBINNING)``, (1, 1) when absent.
    gain : float or None
        Camera gain setting (``GAIN``; ISO speed for DSLRs).
    shape : tuple of int
        Data shape as read: ``(H, W)`` or ``(3, H, W)``.
    bayer : str or None
        CFA pattern of ``data[0, 0]`` (ROWORDER and offsets applied), None for mono.
    header : napari_astro.core.header.Header
        The full header (not compared or hashed).
    """

    path: Path
    type: FrameType
    exposure: float | None
    filter: str | None
    temperature: float | None
    binning: tuple[int, int]
    gain: float | None
    shape: tuple[int, ...]
    bayer: str | None
    header: Header = dataclasses.field(compare=False, repr=False, hash=False)

    @property
    def height(self) -> int:
        return int(self.shape[-2])

    @property
    def width(self) -> int:
        return int(self.shape[-1])

    @property
    def is_color(self) -> bool:
        """True for debayered ``(3, H, W)`` data."""
        return len(self.shape) == 3


def frame_info(path: "str | os.PathLike[str]", *,
               default_type: FrameType | None = None,
               allow_products: bool = False) -> FrameInfo | None:
    """Classify one file from its header (no pixels read); see :func:`scan_frames`.

    With ``allow_products``, a processed product (:func:`product_type`) gives None.
    """
    p = Path(path)
    info = read_info(p)
    h = info.header
    if allow_products and product_type(h) is not None:
        return None
    return FrameInfo(
        path=p,
        type=frame_type_from(h, p, default=default_type),
        exposure=_float(h, ("EXPTIME", "EXPOSURE", "EXP_TIME", "EXPOSURE_TIME")),
        filter=_filter(h),
        temperature=_float(h, ("CCD-TEMP", "CCD_TEMP", "CCDTEMP", "SENSOR-TEMP",
                               "SENSTEMP", "TEMPERAT", "CAM-TEMP", "DET-TEMP")),
        binning=_binning(h),
        gain=_float(h, ("GAIN", "ISOSPEED", "ISO")),
        shape=tuple(int(n) for n in info.shape),
        bayer=info.bayer,
        header=h,
    )


def _hidden(p: Path, root: Path) -> bool:
    # Skip dot-files/folders below the root: our own atomic-write temporaries
    # (".name.part.fits") and OS clutter (".DS_Store", "._x.fits" AppleDouble files).
    try:
        rel = p.relative_to(root)
    except ValueError:
        rel = Path(p.name)
    return any(part.startswith(".") for part in rel.parts)


def expand_inputs(inputs: "Sequence[str | os.PathLike[str]] | str | os.PathLike[str]", *,
                  skip_bad: bool = False,
                  log: Callable[[str], None] | None = None) -> list[Path]:
    """Files named in ``inputs``, folders searched recursively for image files.

    Each folder's files come sorted by path; duplicates are dropped (first kept).
    A missing input, or a folder without image files, is :class:`BadInputError`
    (or, with ``skip_bad``, a ``log`` line).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        try:
            if not p.exists():
                raise BadInputError(p, "file or folder not found")
            if p.is_dir():
                found = sorted(
                    f for f in p.rglob("*")
                    if f.name.lower().endswith(IMAGE_EXTENSIONS) and not _hidden(f, p)
                    and f.is_file())
                if not found:
                    raise BadInputError(p, "no image files (FITS, XISF, raw, TIFF) in this folder")
            else:
                found = [p]
        except BadInputError as exc:
            if not skip_bad:
                raise
            if log is not None:
                log(f"skipped {exc.message}")
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def scan_frames(inputs: "Sequence[str | os.PathLike[str]] | str | os.PathLike[str]", *,
                skip_bad: bool = False, log: Callable[[str], None] | None = None,
                default_type: FrameType | None = None) -> list[FrameInfo]:
    """Classify every frame under ``inputs`` from its header alone.

    Parameters
    ----------
    inputs : path-like or sequence of path-like
        Files and folders; folders are searched recursively for files with a
        supported extension (FITS, XISF, raw, TIFF), hidden files skipped, sorted.
    skip_bad : bool, default False
        Skip unreadable or unclassifiable files (and missing inputs) instead of raising;
        each one is reported through ``log``.
    log : callable(str), optional
        Receives one line per skipped file: ``"skipped <path>: <problem>"``.
    default_type : FrameType, optional
        Type of frames that neither ``IMAGETYP`` nor a folder name classify.

    Returns
    -------
    list of FrameInfo
        In input order (each folder sorted by path). Shapes come from the headers, so
        mixed sizes can be found (:func:`check_same_shape`) before reading pixels.

    Raises
    ------
    BadInputError
        Naming the file: missing, zero-byte, truncated, not an image file, no image
        data, or unknown frame type (unless ``skip_bad``).
    """
    frames = []
    for path in expand_inputs(inputs, skip_bad=skip_bad, log=log):
        try:
            info = frame_info(path, default_type=default_type, allow_products=True)
            if info is None:
                if log is not None:
                    log(f"ignored {path}: a processed product (IMAGETYP), not a raw frame")
                continue
            frames.append(info)
        except BadInputError as exc:
            if not skip_bad:
                raise
            if log is not None:
                log(f"skipped {exc.message}")
    return frames


def check_same_shape(frames: Sequence[FrameInfo]) -> tuple[int, ...] | None:
    """Raise :class:`BadInputError` naming the first frame whose size differs from the first's.

    Compares the pixel grid ``(H, W)`` only. Returns the common shape (None if empty).
    """
    if not frames:
        return None
    ref = frames[0]
    for f in frames[1:]:
        if f.shape[-2:] != ref.shape[-2:]:
            raise BadInputError(f.path, f"size {f.width}x{f.height} differs from "
                                        f"{ref.width}x{ref.height} of {ref.path}")
    return ref.shape


@dataclasses.dataclass(frozen=True, order=False)
class GroupKey:
    """What the frames of one group share; dimensions a type ignores are None.

    ``str(key)`` is readable ("dark 120s -10.0C bin1x1 gain 100"); :meth:`slug`
    is safe in a file name.
    """

    type: FrameType
    exposure: float | None = None
    filter: str | None = None
    temperature: float | None = None
    binning: tuple[int, int] | None = None
    gain: float | None = None

    def _parts(self) -> list[str]:
        parts = []
        if self.exposure is not None:
            parts.append(f"{self.exposure:g}s")
        if self.filter is not None:
            parts.append(self.filter)
        if self.temperature is not None:
            parts.append(f"{self.temperature:.1f}C")
        if self.binning is not None:
            parts.append(f"bin{self.binning[0]}x{self.binning[1]}")
        if self.gain is not None:
            parts.append(f"gain{self.gain:g}")
        return parts

    def __str__(self) -> str:
        return " ".join([self.type.value] + self._parts())

    def slug(self) -> str:
        """File-name-safe form, e.g. ``"dark_120s_-10.0C_bin1x1_gain100"``."""
        text = "_".join([self.type.value] + self._parts())
        return re.sub(r"[^A-Za-z0-9.+\-_]+", "-", text)

    def sort_key(self) -> tuple:
        order = list(FrameType).index(self.type)
        return (order, self.exposure if self.exposure is not None else -1.0,
                self.filter or "", self.temperature if self.temperature is not None else -1e9,
                self.binning or (0, 0), self.gain if self.gain is not None else -1.0)


# Which dimensions separate masters of each type (as PixInsight's WBPP and Siril do):
# a bias does not depend on exposure or filter, a dark not on the filter, a flat not
# on exposure or temperature (flat exposures vary with sky/panel brightness).
_RELEVANT = {
    FrameType.LIGHT: ("exposure", "filter", "temperature", "binning", "gain"),
    FrameType.DARK: ("exposure", "temperature", "binning", "gain"),
    FrameType.DARKFLAT: ("exposure", "temperature", "binning", "gain"),
    FrameType.BIAS: ("temperature", "binning", "gain"),
    FrameType.FLAT: ("filter", "binning", "gain"),
}
_ALL = ("exposure", "filter", "temperature", "binning", "gain")


def _round(x: float | None, nd: int) -> float | None:
    return None if x is None else round(float(x), nd)


def _temperature_buckets(temps: list[float], tol: float) -> dict[float, float]:
    """Map each temperature to its cluster's mean (rounded to 0.1 deg C).

    Sorted temperatures join one cluster while consecutive ones are within ``tol``
    (single linkage), so a slowly drifting uncooled sensor stays one group.
    """
    out: dict[float, float] = {}
    values = sorted(set(temps))
    cluster: list[float] = []

    def close(c: list[float]) -> None:
        members = [t for t in temps if c[0] <= t <= c[-1]]
        mean = round(sum(members) / len(members), 1)
        for t in c:
            out[t] = mean

    for t in values:
        if cluster and t - cluster[-1] > tol:
            close(cluster)
            cluster = []
        cluster.append(t)
    if cluster:
        close(cluster)
    return out


def group_frames(frames: Iterable[FrameInfo], *, temp_tolerance: float = 2.0,
                 strict: bool = False) -> dict[GroupKey, list[FrameInfo]]:
    """Split frames into sets that may be combined into one master.

    Parameters
    ----------
    frames : iterable of FrameInfo
    temp_tolerance : float, default 2.0
        deg C. Sorted temperatures (per type and other keys) form one group while
        consecutive values differ by at most this; the key holds the group's mean.
        Frames without a temperature form their own group (temperature None).
    strict : bool, default False
        Group every type by all of exposure, filter, temperature, binning and gain.
        By default each type uses only what affects it: bias (temperature, binning,
        gain), dark and dark-flat (exposure, temperature, binning, gain), flat
        (filter, binning, gain), light (all).

    Returns
    -------
    dict of GroupKey -> list of FrameInfo
        Keys sorted by type (light, dark, flat, bias, dark-flat) then values; frames
        keep their input order.
    """
    frames = list(frames)
    # Pass 1: key without temperature; pass 2: cluster temperatures within each key.
    coarse: dict[tuple, list[FrameInfo]] = {}
    for f in frames:
        dims = _ALL if strict else _RELEVANT[f.type]
        values = {
            "exposure": _round(f.exposure, 4) if "exposure" in dims else None,
            "filter": f.filter if "filter" in dims else None,
            "binning": tuple(f.binning) if "binning" in dims else None,
            "gain": _round(f.gain, 3) if "gain" in dims else None,
        }
        uses_temp = "temperature" in dims
        k = (f.type, values["exposure"], values["filter"], values["binning"], values["gain"],
             uses_temp)
        coarse.setdefault(k, []).append(f)

    groups: dict[GroupKey, list[FrameInfo]] = {}
    for (ftype, exp, filt, binning, gain, uses_temp), members in coarse.items():
        if uses_temp:
            temps = [f.temperature for f in members if f.temperature is not None]
            bucket = _temperature_buckets(temps, float(temp_tolerance)) if temps else {}
        for f in members:
            temp = bucket[f.temperature] if uses_temp and f.temperature is not None else None
            key = GroupKey(type=ftype, exposure=exp, filter=filt, temperature=temp,
                           binning=binning, gain=gain)
            groups.setdefault(key, []).append(f)
    return {k: groups[k] for k in sorted(groups, key=GroupKey.sort_key)}
