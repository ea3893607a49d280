"""npe2 writers: an image layer to FITS / XISF (float32, linear) or 16-bit TIFF.

The layer is turned back into an :class:`~napari_astro.core.image.AstroImage` with its
header and HISTORY from ``layer.metadata["astro"]`` (see
:mod:`napari_astro.widgets._layers`), then written by
:func:`napari_astro.core.io.write_image` (atomically). napari's save dialog has
already asked about replacing an existing file, so these overwrite.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_fits_layer", "write_xisf_layer", "write_tiff_layer"]


def _write(path: str, data: Any, meta: dict, **kwargs: Any) -> list[str]:
    from .core.io import write_image
    from .widgets._layers import layer_data_to_image

    image = layer_data_to_image(data, meta)
    return [str(write_image(image, path, overwrite=True, **kwargs))]


def write_fits_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Save one image layer as float32 FITS (colour as NAXIS3 = 3, R, G, B)."""
    return _write(path, data, meta)


def write_xisf_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Save one image layer as float32 XISF."""
    return _write(path, data, meta)


def write_tiff_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Save one image layer as a 16-bit TIFF (linear values, no stretch)."""
    return _write(path, data, meta, bits=16)
