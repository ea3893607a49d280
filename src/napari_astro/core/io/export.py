"""TIFF input and 8/16-bit picture export (TIFF, PNG, JPEG).

:func:`read_tiff` reads 2-D or RGB TIFFs into an :class:`AstroImage` (integers
normalised by their type's full range, RGB made channel-first). :func:`export_image`
writes the final picture: values clipped to [0, 1], colour as ``H x W x 3``, an
optional downscale to ``max_size`` pixels on the long side with an anti-aliased
Lanczos-3 (or area-average) filter on the float data before quantisation, and an
atomic write. 16-bit colour PNG, which Pillow cannot write, comes from a small
encoder here (filter type 0 rows, zlib level 6).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import BadInputError
from ._common import check_readable, short_error
from ..image import AstroImage
from ._atomic import atomic_output

__all__ = ["read_tiff", "read_tiff_info", "export_image", "resize_image", "EXPORT_EXTENSIONS"]

EXPORT_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


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
        img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
        out[i] = np.asarray(img.resize((w, h), resample=filters[method], reducing_gap=None))
    return out if data.ndim == 3 else out[0]


def _png_bytes(pixels: np.ndarray) -> bytes:
    """PNG file for uint8/uint16 ``(H, W)`` or ``(H, W, 3)`` pixels (filter 0 rows)."""
    h, w = pixels.shape[:2]
    depth = pixels.dtype.itemsize * 8
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">")).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] * rows.itemsize + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "None" for every row
    raw[:, 1:] = rows.view(np.uint8).reshape(h, -1)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def export_image(image: "AstroImage | np.ndarray", path: "str | os.PathLike[str]", *,
                 bits: int = 8, max_size: int | None = None, overwrite: bool = False,
                 quality: int = 95, resample: str = "lanczos") -> Path:
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
        data = resize_image(np.nan_to_num(data, nan=0.0), new, method=resample)
    full = 255.0 if bits == 8 else 65535.0
    dtype = np.uint8 if bits == 8 else np.uint16
    scaled = np.clip(np.nan_to_num(data, nan=0.0), 0.0, 1.0) * np.float32(full)
    pixels = np.rint(scaled).astype(dtype)
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(np.moveaxis(pixels, 0, -1))  # H x W x 3
    with atomic_output(p, overwrite=overwrite) as tmp:
        if ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack",
                             compression="zlib", software="napari-astro")
        elif ext == ".png" and bits == 16:
            tmp.write_bytes(_png_bytes(pixels))
        else:
            from PIL import Image

            img = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
            if ext == ".png":
                img.save(tmp, format="PNG", optimize=False)
            else:
                img.save(tmp, format="JPEG", quality=int(quality), subsampling=0)
    return p
