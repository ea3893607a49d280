"""Image input/output: one ``read_image`` / ``write_image`` that dispatch on extension.

Formats: FITS (:mod:`.fits`), XISF (:mod:`.xisf`), DSLR raw via rawpy (:mod:`.raw`),
TIFF, and 8/16-bit exports TIFF/PNG/JPEG (:mod:`.export`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

from ..errors import BadInputError
from ..header import Header
from ..image import AstroImage
from .fits import (FITS_EXTENSIONS, cfa_pattern_from_header, read_fits, read_fits_header,
                   read_fits_info, write_fits)

__all__ = ["read_image", "write_image", "read_header", "read_info", "ImageInfo", "is_supported",
           "FITS_EXTENSIONS",
           "XISF_EXTENSIONS", "RAW_EXTENSIONS", "TIFF_EXTENSIONS", "IMAGE_EXTENSIONS",
           "read_fits", "write_fits"]

XISF_EXTENSIONS = (".xisf",)
RAW_EXTENSIONS = (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".pef")
TIFF_EXTENSIONS = (".tif", ".tiff")
IMAGE_EXTENSIONS = FITS_EXTENSIONS + XISF_EXTENSIONS + RAW_EXTENSIONS + TIFF_EXTENSIONS


def _ext(path: "str | os.PathLike[str]") -> str:
    name = os.fspath(path).lower()
    for ext in FITS_EXTENSIONS:
        if name.endswith(ext):
            return ".fits"
    return Path(name).suffix


def is_supported(path: "str | os.PathLike[str]") -> bool:
    """True if the extension is one we read."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def read_image(path: "str | os.PathLike[str]") -> AstroImage:
    """Read any supported image file; raise :class:`BadInputError` for bad input."""
    return _readers(path)[0](path)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a file holds, known without reading its pixels.

    Attributes
    ----------
    header : napari_astro.core.header.Header
        Metadata as :func:`read_image` would put in ``AstroImage.header``.
    shape : tuple of int
        Data shape as :func:`read_image` would return it: ``(H, W)`` or ``(3, H, W)``.
    bayer : str or None
        CFA pattern of ``data[0, 0]`` for raw one-shot-colour mosaics.
    history : list of str
        Provenance lines stored in the file.
    """

    header: Header
    shape: tuple[int, ...]
    bayer: str | None = None
    history: tuple[str, ...] = ()


def read_info(path: "str | os.PathLike[str]") -> ImageInfo:
    """Header, shape and CFA pattern of an image file, reading pixels only if unavoidable.

    FITS and XISF are header-only reads (a truncated FITS is still detected from the
    file length); raw and TIFF files are opened by their libraries without decoding.
    Raises :class:`BadInputError` naming the file for missing, empty, truncated,
    foreign or image-less files.
    """
    return _readers(path)[1](path)


def _fits_info(path: "str | os.PathLike[str]") -> ImageInfo:
    header, shape, history = read_fits_info(path)
    bayer = cfa_pattern_from_header(header, shape[-2]) if len(shape) == 2 else None
    return ImageInfo(header=header, shape=shape, bayer=bayer, history=tuple(history))


# extensions -> (module, reader stem): ``read_<stem>`` and ``read_<stem>_info``, imported
# when first needed (rawpy, tifffile and the XISF codecs cost import time)
_OTHER_FORMATS = ((XISF_EXTENSIONS, "xisf", "xisf"), (RAW_EXTENSIONS, "raw", "raw"),
                  (TIFF_EXTENSIONS, "export", "tiff"))


def _readers(path: "str | os.PathLike[str]"):
    """``(read image, read info)`` of the file's format; :class:`BadInputError` if none."""
    ext = _ext(path)
    if ext == ".fits":
        return read_fits, _fits_info
    for exts, module, stem in _OTHER_FORMATS:
        if ext in exts:
            mod = importlib.import_module(f"{__name__}.{module}")
            return getattr(mod, f"read_{stem}"), getattr(mod, f"read_{stem}_info")
    raise BadInputError(path, f"unsupported file type {Path(path).suffix!r}")


def read_header(path: "str | os.PathLike[str]") -> Header:
    """Metadata only (FITS header or the equivalent), without reading pixels if possible."""
    return read_info(path).header


def write_image(image: AstroImage, path: "str | os.PathLike[str]", *, overwrite: bool = False,
                **kwargs) -> Path:
    """Write by extension: FITS/XISF (float32 linear) or TIFF/PNG/JPEG export."""
    ext = _ext(path)
    if ext == ".fits":
        return write_fits(image, path, overwrite=overwrite, **kwargs)
    if ext in XISF_EXTENSIONS:
        from .xisf import write_xisf
        return write_xisf(image, path, overwrite=overwrite, **kwargs)
    if ext in TIFF_EXTENSIONS + (".png", ".jpg", ".jpeg"):
        from .export import export_image
        return export_image(image, path, overwrite=overwrite, **kwargs)
    raise BadInputError(path, f"cannot write files of type {Path(path).suffix!r}")
