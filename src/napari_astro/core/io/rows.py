"""Row-band readers: a frame opened for reading bands of rows into a caller's float32
buffer, without loading it whole (integration's tile pass, master combination).

FITS with an uncompressed data block is read in place with positioned reads
(big-endian converted in place, so file pages do not count in our RSS as a memory
map's would); other formats are decoded once into a raw float32 temporary file;
in-memory :class:`AstroImage` frames are wrapped.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import BadInputError
from ..image import AstroImage

__all__ = ["FileSource", "ArraySource", "RowFrame", "open_frame"]

_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_INT_RANGE = {8: 255.0, 16: 65535.0, 32: 4294967295.0, 64: float(2**64 - 1)}


@dataclasses.dataclass(frozen=True)
class FileSource:
    """A frame stored as an uncompressed data block: FITS, or a spilled raw file.

    ``read_rows`` reads rows ``r0:r1`` of every channel with positioned reads into
    the caller's buffer; big-endian floats are byte-swapped in place, integers are
    scaled like :func:`core.io.read_fits` (physical value / full range of the type).
    """

    path: str
    offset: int
    dtype: str
    shape: tuple            # (C, H, W)
    bscale: float = 1.0
    bzero: float = 0.0
    divisor: float = 1.0    # integer data: full range of the type

    def read_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        C, H, W = self.shape
        dt = np.dtype(self.dtype)
        isz = dt.itemsize
        nrow = r1 - r0
        plain = dt.kind == "f" and isz == 4
        with open(self.path, "rb", buffering=0) as fh:
            for c in range(C):
                fh.seek(self.offset + (c * H + r0) * W * isz)
                if plain:
                    target = out[c]
                    _read_exact(fh, memoryview(target).cast("B"), self.path)
                    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
                        if sys.byteorder == "little":
                            target.byteswap(inplace=True)
                else:
                    raw = np.empty((nrow, W), dt)
                    _read_exact(fh, memoryview(raw).cast("B"), self.path)
                    if dt.kind in "iu":
                        phys = raw.astype(np.float64)
                        if self.bscale != 1.0 or self.bzero != 0.0:
                            phys = phys * self.bscale + self.bzero
                        out[c] = phys / self.divisor
                    else:
                        out[c] = raw
        if plain and (self.bscale != 1.0 or self.bzero != 0.0):
            out *= np.float32(self.bscale)
            out += np.float32(self.bzero)


def _read_exact(fh, mv: memoryview, path: str) -> None:
    got = 0
    total = len(mv)
    while got < total:
        k = fh.readinto(mv[got:])
        if not k:
            raise BadInputError(path, "truncated FITS data (file shorter than its header says)")
        got += k


class ArraySource:
    """A frame held in memory (an :class:`AstroImage`)."""

    def __init__(self, image: AstroImage, name: str) -> None:
        data = image.data
        self.data = data[None] if data.ndim == 2 else data
        self.mask = image.mask
        self.shape = tuple(self.data.shape)
        self.path = name

    def read_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        out[...] = self.data[:, r0:r1]
        if self.mask is not None:
            bad = ~self.mask[r0:r1]
            if bad.any():
                out[:, bad] = np.nan


@dataclasses.dataclass
class RowFrame:
    source: Any                 # FileSource or ArraySource
    name: str                   # path or label for messages
    header: Any                 # core.header.Header (cleaned)
    history: list
    bayer: Optional[str]
    ndim: int                   # 2 or 3 as AstroImage would hold it


def open_frame(item: Any, index: int, spill_dir: list) -> RowFrame:
    """Wrap an AstroImage or open a file path as a frame source (headers only)."""
    if isinstance(item, AstroImage):
        name = item.path or f"frame {index}"
        return RowFrame(ArraySource(item, name), name, item.header, list(item.history),
                      item.bayer, item.data.ndim)
    path = Path(os.fspath(item))
    name = str(path)
    low = name.lower()
    from . import FITS_EXTENSIONS

    if low.endswith(FITS_EXTENSIONS) and not low.endswith((".gz", ".fz")):
        frame = _open_fits(path)
        if frame is not None:
            return frame
    return _spill(path, spill_dir)


def _open_fits(path: Path) -> RowFrame | None:
    """FITS layout of the first image HDU; None if it must be decoded (compressed)."""
    from .fits import cfa_pattern_from_header, read_fits_info_layout

    # checks existence, the SIMPLE card, the image shape and that the file holds its
    # data; one opening of the file: 1.9 ms CPU per registered Seestar frame, two
    # openings (and HDUList.fileinfo) took 3.3 ms (median of 5 passes over 16 frames)
    header, shape2, history, layout = read_fits_info_layout(path)
    offset, bitpix, bscale, bzero, compressed = layout
    if compressed:
        return None
    if bitpix not in _BITPIX:
        raise BadInputError(path, f"unsupported BITPIX {bitpix}")
    ndim = len(shape2)
    shape = (1, *shape2) if ndim == 2 else shape2
    src = FileSource(str(path), offset, np.dtype(_BITPIX[bitpix]).str, shape, bscale, bzero,
                     _INT_RANGE.get(bitpix, 1.0))
    bayer = cfa_pattern_from_header(header, shape[1]) if ndim == 2 else None
    return RowFrame(src, str(path), header, history, bayer, ndim)


def _spill(path: Path, spill_dir: list) -> RowFrame:
    """Decode a compressed/other-format frame once into a raw float32 temp file, so
    the tile pass can still read it by rows (bounded memory)."""
    from . import read_image
    from .fits import read_fits

    if str(path).lower().endswith((".fit", ".fits", ".fts", ".fz", ".gz")):
        img = read_fits(path, check_finite=False)
    else:
        img = read_image(path)
    data = img.data[None] if img.data.ndim == 2 else img.data
    if not spill_dir:
        spill_dir.append(tempfile.mkdtemp(prefix="napari-astro-integrate-"))
    fd, tmp = tempfile.mkstemp(suffix=".f32", dir=spill_dir[0])
    with os.fdopen(fd, "wb") as fh:
        if img.mask is not None:
            data = np.where(img.mask[None], data, np.float32(np.nan)).astype(np.float32)
        np.ascontiguousarray(data, np.float32).tofile(fh)
    src = FileSource(tmp, 0, np.dtype(np.float32).str, tuple(data.shape))
    return RowFrame(src, str(path), img.header, list(img.history), img.bayer, img.data.ndim)


# =================================================================================
