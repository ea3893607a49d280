"""TIFF input and the export of the processed image (TIFF, PNG, JPEG, XISF, FITS).

:func:`read_tiff` reads 2-D or RGB TIFFs into an :class:`AstroImage` (integers
normalised by their type's full range, RGB made channel-first). :func:`export_image`
writes the final picture: values clipped to [0, 1], colour as ``H x W x 3``, an
optional downscale to ``max_size`` pixels on the long side with an anti-aliased
Lanczos-3 (or area-average) filter on the float data before quantisation, and an
atomic write. 16-bit PNG, which Pillow cannot write, comes from a small encoder here
(filter type 0 rows, zlib level 6). Colour pictures carry an sRGB ICC profile (JPEG
APP2, PNG ``iCCP``, TIFF tag 34675) so that colour-managed viewers show them as
intended; grayscale PNGs get the ``sRGB`` chunk instead (an RGB profile is not
allowed in a grayscale file). :func:`export` adds XISF and FITS (float32, through
:mod:`napari_astro.core.io`) behind the same options.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ..errors import BadInputError
from ._common import check_readable, short_error
from ..image import AstroImage
from ._atomic import atomic_output

__all__ = ["read_tiff", "read_tiff_info", "export_image", "export", "resize_image",
           "srgb_profile", "EXPORT_EXTENSIONS", "ALL_EXPORT_EXTENSIONS", "TIFF_ICC_TAG"]

#: Picture formats (8/16-bit integers) :func:`export_image` writes.
EXPORT_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Everything :func:`export` writes: pictures plus float32 XISF and FITS.
ALL_EXPORT_EXTENSIONS = EXPORT_EXTENSIONS + (".xisf", ".fits", ".fit", ".fts")
#: TIFF tag of an embedded ICC profile (InterColorProfile).
TIFF_ICC_TAG = 34675


def _check_file(path: Path) -> None:
    check_readable(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] not in (b"II", b"MM"):
        raise BadInputError(path, "not a TIFF file")


def _tiff_shape(shape: tuple[int, ...], path: Path) -> tuple[tuple[int, ...], str, tuple]:
    """Our data shape, the layout ("mono", "last", "first") and the squeezed file shape."""
    s = tuple(int(n) for n in shape)
    while len(s) > 2 and s[0] == 1:  # leading singleton pages/samples
        s = s[1:]
    if len(s) == 3 and s[-1] == 1:
        s = s[:2]
    if len(s) == 2:
        return s, "mono", s
    if len(s) == 3 and s[-1] in (3, 4):
        return (3, s[0], s[1]), "last", s  # RGB or RGBA (alpha dropped)
    if len(s) == 3 and s[0] in (3, 4):
        return (3, s[1], s[2]), "first", s
    raise BadInputError(path, f"unsupported TIFF layout {shape} (need mono or RGB)")


def read_tiff_info(path: "str | os.PathLike[str]"):
    """Shape of a TIFF's first image series, without reading its pixels.

    Returns
    -------
    napari_astro.core.io.ImageInfo
    """
    import tifffile

    from . import ImageInfo

    p = Path(path)
    _check_file(p)
    try:
        with tifffile.TiffFile(p) as tif:
            shape = tif.series[0].shape
    except Exception as exc:
        raise BadInputError(p, f"unreadable TIFF ({short_error(exc)})") from None
    ours, _, _ = _tiff_shape(shape, p)
    return ImageInfo(header=fits.Header(), shape=ours, bayer=None, history=())


def read_tiff(path: "str | os.PathLike[str]") -> AstroImage:
    """Read a mono or RGB TIFF.

    Returns
    -------
    AstroImage
        float32 ``(H, W)`` or ``(3, H, W)``: unsigned integers divided by their type's
        maximum (8-bit /255, 16-bit /65535, 32-bit /(2**32-1)), floats as stored;
        an alpha channel is dropped.
    """
    import tifffile

    p = Path(path)
    _check_file(p)
    try:
        with tifffile.TiffFile(p) as tif:
            raw = tif.series[0].asarray()
    except Exception as exc:
        raise BadInputError(p, f"unreadable TIFF ({short_error(exc)})") from None
    _, layout, squeezed = _tiff_shape(raw.shape, p)
    raw = raw.reshape(squeezed)
    if layout == "last":
        raw = np.moveaxis(raw[..., :3], -1, 0)
    elif layout == "first":
        raw = raw[:3]
    if raw.dtype.kind == "u":
        full = float(np.iinfo(raw.dtype).max)
        data = (raw.astype(np.float64) / full).astype(np.float32)
    elif raw.dtype.kind == "i":
        data = (raw.astype(np.float64) / float(np.iinfo(raw.dtype).max)).astype(np.float32)
    elif raw.dtype.kind == "f":
        data = np.array(raw, dtype=np.float32)
    elif raw.dtype.kind == "b":
        data = raw.astype(np.float32)
    else:
        raise BadInputError(p, f"unsupported TIFF sample type {raw.dtype}")
    if not np.isfinite(data).all():
        raise BadInputError(p, f"{int((~np.isfinite(data)).sum())} pixels are NaN or infinite")
    return AstroImage(data=np.ascontiguousarray(data), path=str(p))


# -- export ------------------------------------------------------------------------

def resize_image(data: np.ndarray, shape: tuple[int, int], *, method: str = "lanczos") -> np.ndarray:
    """Resample ``(H, W)`` or ``(3, H, W)`` float data to ``shape = (h, w)``.

    Parameters
    ----------
    method : {"lanczos", "area"}, default "lanczos"
        "lanczos": Lanczos-3 with its support widened by the reduction factor, so it
        is anti-aliased when shrinking (Pillow). "area": the mean of the source area
        each output pixel covers (Pillow's box filter).

    Returns
    -------
    ndarray of float32 with the new size (values may overshoot with Lanczos; clip).
    """
    from PIL import Image

    filters = {"lanczos": Image.Resampling.LANCZOS, "area": Image.Resampling.BOX}
    if method not in filters:
        raise ValueError(f"unknown resampling method {method!r}")
    h, w = int(shape[0]), int(shape[1])
    planes = data if data.ndim == 3 else data[None]
    out = np.empty((planes.shape[0], h, w), dtype=np.float32)
    for i, plane in enumerate(planes):
        # Mode "F" keeps 32-bit float precision through the filter; no 8-bit rounding
        # happens before the downscale.
        # NaN (no data) counts as 0, plane by plane (no copy of the whole image).
        img = Image.fromarray(np.nan_to_num(np.asarray(plane, dtype=np.float32), nan=0.0), mode="F")
        out[i] = np.asarray(img.resize((w, h), resample=filters[method], reducing_gap=None))
    return out if data.ndim == 3 else out[0]


def srgb_profile() -> bytes:
    """The sRGB IEC61966-2.1 ICC profile (built by LittleCMS through Pillow's ImageCms)."""
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _SRGB


_SRGB: bytes | None = None


def _write_png(fh: Any, pixels: np.ndarray, *, icc: bytes | None = None,
               srgb_chunk: bool = False) -> None:
    """Write a PNG of uint8/uint16 ``(H, W)`` or ``(H, W, 3)`` pixels to ``fh``.

    Filter type 0 rows, one zlib stream (level 6) fed in row blocks and written as
    several IDAT chunks, so memory stays at the pixels plus a few MB (the one-shot
    version held four copies: 1.2 GB peak for a 6000x4000 16-bit picture).
    ``icc``: an ICC profile for an ``iCCP`` chunk (colour only); ``srgb_chunk``: an
    ``sRGB`` chunk (rendering intent perceptual) instead.
    """
    h, w = pixels.shape[:2]
    depth = pixels.dtype.itemsize * 8
    colour_type = 2 if pixels.ndim == 3 else 0
    big = pixels.dtype.newbyteorder(">")

    def chunk(kind: bytes, payload: bytes) -> None:
        fh.write(struct.pack(">I", len(payload)) + kind)
        fh.write(payload)
        fh.write(struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF))

    fh.write(b"\x89PNG\r\n\x1a\n")
    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))
    if icc is not None:  # name, NUL, compression method 0 (zlib), compressed profile
        chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc, 9))
    elif srgb_chunk:
        chunk(b"sRGB", b"\x00")
    z = zlib.compressobj(6)
    row_bytes = pixels[0].size * pixels.itemsize
    step = max(1, (4 << 20) // max(1, row_bytes))
    for y0 in range(0, h, step):
        block = np.ascontiguousarray(pixels[y0:y0 + step], dtype=big).reshape(-1, row_bytes // pixels.itemsize)
        raw = np.zeros((block.shape[0], row_bytes + 1), dtype=np.uint8)  # byte 0: filter "None"
        raw[:, 1:] = block.view(np.uint8).reshape(block.shape[0], -1)
        data = z.compress(raw.tobytes())
        if data:
            chunk(b"IDAT", data)
    chunk(b"IDAT", z.flush())
    chunk(b"IEND", b"")


def export_image(image: "AstroImage | np.ndarray", path: "str | os.PathLike[str]", *,
                 bits: int = 8, max_size: int | None = None, overwrite: bool = False,
                 quality: int = 95, resample: str = "lanczos", icc: bool = True) -> Path:
    """Write a picture for viewing or sharing: 8/16-bit TIFF, 8/16-bit PNG, 8-bit JPEG.

    Parameters
    ----------
    image : AstroImage or ndarray
        ``(H, W)`` or ``(3, H, W)`` values in [0, 1] (display-stretched already);
        values outside are clipped, NaN becomes 0.
    path : path-like
        ``.tif``/``.tiff``, ``.png``, ``.jpg``/``.jpeg``.
    bits : {8, 16}, default 8
        Sample depth; JPEG is 8-bit only.
    max_size : int, optional
        Downscale so that the longer side is at most this many pixels, keeping the
        aspect ratio (never upscales).
    overwrite : bool, default False
        Replace an existing file.
    quality : int, default 95
        JPEG quality.
    resample : {"lanczos", "area"}, default "lanczos"
        Downscale filter (see :func:`resize_image`).
    icc : bool, default True
        Embed the sRGB ICC profile in colour pictures (grayscale PNG: the ``sRGB``
        chunk; grayscale JPEG/TIFF: nothing, an RGB profile is invalid there).

    Returns
    -------
    Path
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in EXPORT_EXTENSIONS:
        raise BadInputError(p, f"cannot export to {p.suffix!r} (use .tif, .png or .jpg)")
    if bits not in (8, 16):
        raise BadInputError(p, f"bit depth must be 8 or 16, not {bits}")
    if bits == 16 and ext in (".jpg", ".jpeg"):
        raise BadInputError(p, "JPEG is 8-bit only (use --bits 8, or .png/.tif for 16-bit)")
    if not 1 <= int(quality) <= 100:
        raise BadInputError(p, f"JPEG quality must be 1..100, not {quality}")
    data = _downscaled(image, p, max_size, resample)
    pixels = _quantise(data, bits)
    colour = pixels.ndim == 3
    profile = srgb_profile() if icc and colour else None
    with atomic_output(p, overwrite=overwrite) as tmp:
        if ext in (".tif", ".tiff"):
            import tifffile

            # Uncompressed: zlib took 15-20 s for a 6000x4000 16-bit picture on 2 loaded
            # cores and saved 6 % (noisy low bits do not compress); Siril and
            # PixInsight write uncompressed TIFFs too.
            tifffile.imwrite(tmp, pixels, photometric="rgb" if colour else "minisblack",
                             software="napari-astro", iccprofile=profile)
        elif ext == ".png":
            # Our encoder for every PNG: Pillow cannot write 16-bit colour, and one
            # writer keeps the colour chunks identical for 8 and 16 bits.
            with open(tmp, "wb") as fh:
                _write_png(fh, pixels, icc=profile, srgb_chunk=icc and not colour)
        else:
            from PIL import Image

            img = Image.fromarray(pixels, mode="RGB" if colour else "L")
            extra = {"icc_profile": profile} if profile is not None else {}
            img.save(tmp, format="JPEG", quality=int(quality), subsampling=0, **extra)
    return p


def _quantise(data: np.ndarray, bits: int) -> np.ndarray:
    """``rint(clip(data, 0, 1) * (2**bits - 1))`` as ``(H, W)`` or ``(H, W, 3)`` integers.

    Row blocks straight into the interleaved output: the float temporaries stay a few
    MB (the whole-array version peaked at 3.5x the image for a 6000x4000 JPEG).
    """
    full = np.float32(255.0 if bits == 8 else 65535.0)
    dtype = np.uint8 if bits == 8 else np.uint16
    planes = data if data.ndim == 3 else data[None]
    c, h, w = planes.shape
    out = np.empty((h, w, c), dtype=dtype)
    rows = max(1, (1 << 20) // max(1, w))
    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        for k in range(c):
            block = np.nan_to_num(planes[k, sl], nan=0.0)
            np.clip(block, 0.0, 1.0, out=block)
            block *= full
            out[sl, :, k] = np.rint(block)
    return out if data.ndim == 3 else out[..., 0]


def _downscaled(image: "AstroImage | np.ndarray", p: Path, max_size: int | None,
                resample: str) -> np.ndarray:
    """The image's data, shrunk so its long side is at most ``max_size`` (never enlarged)."""
    if max_size is not None and int(max_size) < 1:
        raise BadInputError(p, f"max size must be at least 1 pixel, not {max_size}")
    data = image.data if isinstance(image, AstroImage) else np.asarray(image, dtype=np.float32)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[0] != 3):
        raise BadInputError(p, f"cannot export data of shape {data.shape}")
    h, w = data.shape[-2:]
    if max_size is not None and max(h, w) > int(max_size):
        scale = int(max_size) / max(h, w)
        new = (max(1, round(h * scale)), max(1, round(w * scale)))
        data = resize_image(data, new, method=resample)
    return data


def export(image: AstroImage, path: "str | os.PathLike[str]", *, bits: int = 8,
           max_size: int | None = None, overwrite: bool = False, quality: int = 95,
           resample: str = "lanczos", icc: bool = True) -> Path:
    """Write the processed image in any export format, chosen by extension.

    Pictures (``.jpg .png .tif``) go through :func:`export_image` (``bits``,
    ``quality``, ``icc``); ``.xisf`` and ``.fits`` are written as float32 with the
    image's header and HISTORY through :mod:`napari_astro.core.io` (``bits``,
    ``quality`` and ``icc`` do not apply). ``max_size`` downscales every format.

    Raises
    ------
    BadInputError
        An extension not in :data:`ALL_EXPORT_EXTENSIONS`, or bad options.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext in EXPORT_EXTENSIONS:
        return export_image(image, p, bits=bits, max_size=max_size, overwrite=overwrite,
                            quality=quality, resample=resample, icc=icc)
    if ext not in ALL_EXPORT_EXTENSIONS:
        raise BadInputError(p, f"cannot export to {p.suffix or 'a file without extension'!r} "
                               f"(use one of {' '.join(ALL_EXPORT_EXTENSIONS)})")
    data = _downscaled(image, p, max_size, resample)
    same = data.shape[-2:] == image.shape2d
    out = image.replace(data=np.ascontiguousarray(data, dtype=np.float32),
                        mask=image.mask if same else None)
    if ext == ".xisf":
        from .xisf import write_xisf

        return write_xisf(out, p, overwrite=overwrite)
    from .fits import write_fits

    return write_fits(out, p, overwrite=overwrite)
