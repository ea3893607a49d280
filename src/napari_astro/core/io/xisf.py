"""XISF (PixInsight's format) reading and writing through the ``xisf`` package.

Reading: the first image, integer samples normalised by their type's full range
(UInt8 /255, UInt16 /65535, UInt32 /(2**32-1)), float samples as stored (or mapped
from a non-[0, 1] ``bounds`` range); colour comes back channel-first ``(3, H, W)``.
``FITSKeyword`` elements become the header (values typed from their FITS
representation: quoted strings, T/F, integers, reals), HISTORY keywords the history;
the CFA pattern comes from the ``ColorFilterArray`` element, the
``PCL:CFASourcePattern`` property or the BAYERPAT keyword (with X/YBAYROFF).
XISF pixel rows are top-down by definition, so ROWORDER is not applied.

Writing: float32, with FITS keywords, HISTORY and the CFA pattern (BAYERPAT and
``PCL:CFASourcePattern``), atomically. Data, header values and history round-trip
exactly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import BadInputError
from ._common import check_readable, short_error
from ..image import BAYER_PATTERNS, AstroImage
from ._atomic import atomic_output
from .fits import _STRUCTURAL, cfa_pattern_from_header, decode_history, encode_history

__all__ = ["read_xisf", "write_xisf", "read_xisf_info"]

_SIGNATURE = b"XISF0100"
_NS = {"xisf": "http://www.pixinsight.com/xisf"}
_CFA_PROPERTY = "PCL:CFASourcePattern"


def _check_file(path: Path) -> None:
    check_readable(path)
    with open(path, "rb") as fh:
        if fh.read(len(_SIGNATURE)) != _SIGNATURE:
            raise BadInputError(path, "not an XISF file (no XISF0100 signature)")


def _decode_value(text: str):
    """Python value of a FITS value representation ("'Light'", "T", "10", "2.5E-3")."""
    s = text.strip()
    if s.startswith("'"):
        inner = s[1:-1] if s.endswith("'") and len(s) >= 2 else s[1:]
        return inner.replace("''", "'").rstrip()
    if s in ("T", "F"):
        return s == "T"
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    try:
        return float(s.replace("D", "E").replace("d", "e"))
    except ValueError:
        return s  # some writers leave strings unquoted


def _encode_value(value) -> str | None:
    """FITS representation of a header value; None for value-less cards."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest exact repr: reads back bit-identical
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None  # astropy Undefined, complex...


def _open(path: Path):
    from xisf import XISF

    _check_file(path)
    try:
        x = XISF(os.fspath(path))
        metas = x.get_images_metadata()
    except Exception as exc:
        raise BadInputError(path, f"unreadable XISF header ({short_error(exc)})") from None
    if not metas:
        raise BadInputError(path, "no image data in the XISF file")
    return x, metas[0]


def _image_element(x):
    root = x.get_metadata_xml()
    return root.find("xisf:Image", _NS)


def _metadata(x, meta: dict, path: Path):
    """(header, history, shape, bayer) of the first image, from the XML header only."""
    w, h, c = (int(n) for n in meta["geometry"])
    if c not in (1, 3) or w <= 0 or h <= 0:
        raise BadInputError(path, f"unsupported XISF geometry {w}:{h}:{c} "
                                  "(need 1 or 3 channels)")
    shape = (h, w) if c == 1 else (3, h, w)
    element = _image_element(x)
    header = fits.Header()
    history_header = fits.Header()
    cfa = None
    if element is not None:
        # The xisf package strips the quotes of string values; the raw XML keeps the
        # type (a quoted '10' stays a string).
        for kw in element.findall("xisf:FITSKeyword", _NS):
            name = kw.attrib.get("name", "").strip().upper()
            raw = kw.attrib.get("value", "")
            if name == "HISTORY":
                # PixInsight stores the text of HISTORY/COMMENT keywords in the comment.
                history_header.add_history(raw if raw else kw.attrib.get("comment", ""))
                continue
            if name in _STRUCTURAL or name.startswith("NAXIS"):
                continue
            try:
                header.append((name, _decode_value(raw), kw.attrib.get("comment", "")),
                              end=True)
            except Exception:  # a keyword astropy cannot hold: drop it
                continue
        node = element.find("xisf:ColorFilterArray", _NS)
        if node is not None and node.attrib.get("width") == "2" and node.attrib.get("height") == "2":
            pattern = node.attrib.get("pattern", "").upper()
            if pattern in BAYER_PATTERNS:
                cfa = pattern
    if cfa is None:
        prop = meta.get("XISFProperties", {}).get(_CFA_PROPERTY)
        if prop and str(prop.get("value", "")).upper() in BAYER_PATTERNS:
            cfa = str(prop["value"]).upper()
    if cfa is None:
        cfa = cfa_pattern_from_header(header, None)  # no ROWORDER: XISF is top-down
    if c != 1:
        cfa = None
    # Truncated attachment: the data block must lie inside the file.
    loc = meta.get("location")
    if loc and loc[0] == "attachment":
        end = int(loc[1]) + int(loc[2])
        size = path.stat().st_size
        if size < end:
            raise BadInputError(path, f"truncated XISF file ({size} bytes, data need {end})")
    return header, decode_history(history_header), shape, cfa


def read_xisf_info(path: "str | os.PathLike[str]"):
    """Header, shape, CFA pattern and history of the first image, without its pixels.

    Returns
    -------
    napari_astro.core.io.ImageInfo
    """
    from . import ImageInfo

    p = Path(path)
    x, meta = _open(p)
    header, history, shape, bayer = _metadata(x, meta, p)
    return ImageInfo(header=header, shape=shape, bayer=bayer, history=tuple(history))


def read_xisf(path: "str | os.PathLike[str]", *, check_finite: bool = True) -> AstroImage:
    """Read the first image of an XISF file.

    Parameters
    ----------
    path : path-like
    check_finite : bool, default True
        Raise :class:`BadInputError` if float data hold NaN or infinity.

    Returns
    -------
    AstroImage
        float32 ``(H, W)`` or ``(3, H, W)``; integers divided by their type's full
        range; ``bayer`` set for a CFA mosaic.
    """
    p = Path(path)
    x, meta = _open(p)
    header, history, shape, bayer = _metadata(x, meta, p)
    try:
        raw = x.read_image(0, data_format="channels_first")
    except Exception as exc:
        raise BadInputError(p, f"unreadable XISF data ({short_error(exc)})") from None
    raw = np.asarray(raw)
    if raw.dtype.kind == "u":
        full = float(np.iinfo(raw.dtype).max)
        data = (raw.astype(np.float64) / full).astype(np.float32) if raw.dtype.itemsize > 2 \
            else raw.astype(np.float32) / np.float32(full)
        is_float = False
    elif raw.dtype.kind == "f":
        data = np.array(raw, dtype=np.float32, copy=True)
        bounds = str(meta.get("bounds", "0:1"))
        try:
            lo, hi = (float(b) for b in bounds.split(":"))
        except ValueError:
            lo, hi = 0.0, 1.0
        if (lo, hi) != (0.0, 1.0) and hi > lo:
            data = ((data.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        is_float = True
    else:
        raise BadInputError(p, f"unsupported XISF sample type {raw.dtype}")
    data = data.reshape(shape)
    if check_finite and is_float and not np.isfinite(data).all():
        n = int((~np.isfinite(data)).sum())
        raise BadInputError(p, f"{n} pixels are NaN or infinite")
    return AstroImage(data=data, header=header, history=list(history), bayer=bayer, path=str(p))


def write_xisf(image: AstroImage, path: "str | os.PathLike[str]", *, overwrite: bool = False,
               codec: str | None = None) -> Path:
    """Write ``image`` as a float32 XISF file, atomically.

    Parameters
    ----------
    image : AstroImage
        Mono/CFA ``(H, W)`` or colour ``(3, H, W)`` (stored planar, RGB).
    path : path-like
        Destination ``.xisf``; must not exist unless ``overwrite``.
    overwrite : bool, default False
    codec : {None, "zlib", "lz4", "lz4hc", "zstd"}, default None
        Optional lossless compression (with byte shuffling).

    Returns
    -------
    Path
    """
    from xisf import XISF

    p = Path(path)
    keywords: dict[str, list[dict]] = {}
    skip = set(_STRUCTURAL) | {"BAYERPAT", "COLORTYP", "CFA-PAT", "CFATYPE", "XBAYROFF",
                               "YBAYROFF"}
    for card in image.header.cards:
        key = card.keyword
        if key in skip or key.startswith("NAXIS"):
            continue
        value = _encode_value(card.value)
        if value is None:
            continue
        keywords.setdefault(key, []).append({"value": value, "comment": card.comment or ""})
    properties = {}
    if image.bayer and image.data.ndim == 2:
        for key, value in (("BAYERPAT", image.bayer), ("XBAYROFF", 0), ("YBAYROFF", 0),
                           ("ROWORDER", "TOP-DOWN")):
            keywords[key] = [{"value": _encode_value(value), "comment": ""}]
        properties[_CFA_PROPERTY] = {"id": _CFA_PROPERTY, "type": "String",
                                     "value": image.bayer}
    history = encode_history(image.history)
    if history:
        keywords["HISTORY"] = [{"value": line, "comment": ""} for line in history]
    data = np.asarray(image.data, dtype=np.float32)
    # The xisf writer wants channels-last (H, W, C); it transposes back to planar.
    data = data[:, :, None] if data.ndim == 2 else np.moveaxis(data, 0, -1)
    meta = {"FITSKeywords": keywords, "XISFProperties": properties}
    with atomic_output(p, overwrite=overwrite) as tmp:
        XISF.write(os.fspath(tmp), data, creator_app="napari-astro", image_metadata=meta,
                   codec=codec, shuffle=codec is not None)
    return p
