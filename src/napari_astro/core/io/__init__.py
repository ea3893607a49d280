"""Image input/output: one ``read_image`` / ``write_image`` that dispatch on extension.

Formats: FITS (:mod:`.fits`), XISF (:mod:`.xisf`), DSLR raw via rawpy (:mod:`.raw`),
TIFF, and 8/16-bit exports TIFF/PNG/JPEG (:mod:`.export`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInputError
from ..image import AstroImage
from .fits import FITS_EXTENSIONS, read_fits, read_fits_header, write_fits

__all__ = ["read_image", "write_image", "read_header", "is_supported", "FITS_EXTENSIONS",
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
    ext = _ext(path)
    if ext == ".fits":
        return read_fits(path)
    if ext in XISF_EXTENSIONS:
        from .xisf import read_xisf
        return read_xisf(path)
    if ext in RAW_EXTENSIONS:
        from .raw import read_raw
        return read_raw(path)
    if ext in TIFF_EXTENSIONS:
        from .export import read_tiff
        return read_tiff(path)
    raise BadInputError(path, f"unsupported file type {Path(path).suffix!r}")


def read_header(path: "str | os.PathLike[str]"):
    """Metadata only (FITS header or the equivalent), without reading pixels if possible."""
    if _ext(path) == ".fits":
        return read_fits_header(path)
    return read_image(path).header


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
