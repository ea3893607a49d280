"""npe2 reader: FITS, XISF and camera raw files as napari image layers.

Delegates to :func:`napari_astro.core.io.read_image`; the layer conventions (one RGB
layer for colour, grey mosaics for CFA raw frames, provenance in
``layer.metadata["astro"]``) are those of :mod:`napari_astro.widgets._layers`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

__all__ = ["napari_get_reader", "read_layers"]

# Kept in step with core.io (checked by a test); listed here so that deciding whether
# we can read a path imports nothing heavy.
_EXTENSIONS = (".fit", ".fits", ".fts", ".fit.fz", ".fits.fz", ".fts.fz", ".fz", ".fit.gz",
               ".fits.gz", ".xisf", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2",
               ".raf", ".pef")


def _readable(path: Any) -> bool:
    try:
        p = os.fspath(path)
    except TypeError:
        return False
    return p.lower().endswith(_EXTENSIONS) and not os.path.isdir(p)


def napari_get_reader(path: "str | Sequence[str]") -> "Callable[[Any], list] | None":
    """Return :func:`read_layers` if every path is a file type we read, else None.

    Never raises (napari then tries the next reader); problems inside a file are
    reported when reading, with the file's name.
    """
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if paths and all(_readable(p) for p in paths):
            return read_layers
    except Exception:  # noqa: BLE001 - napari_get_reader must never raise
        return None
    return None


def read_layers(path: "str | Sequence[str]") -> list[tuple]:
    """Read one or several files into napari ``LayerDataTuple`` s.

    Raises
    ------
    napari_astro.core.errors.BadInputError
        For an unreadable, truncated or empty file, naming it.
    """
    from .core.io import read_image
    from .widgets._layers import image_to_layer_data

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [image_to_layer_data(read_image(p)) for p in paths]
