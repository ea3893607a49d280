"""npe2 reader: FITS, XISF and camera raw files as napari image layers.

Delegates to :func:`napari_astro.core.io.read_image`; the layer conventions (one RGB
layer for colour shown with a per-channel auto-stretch, raw CFA frames as a debayered
preview with the mosaic kept, provenance in ``layer.metadata["astro"]``) are those of
:mod:`napari_astro.widgets._layers`.

Reader priority
---------------
napari's own reader ("napari builtins", imageio) also claims ``*.fit``/``*.fits``
and shows a uint16 mosaic that looks black. npe2 has no reader priority: with two
readers for a file and no saved preference, File > Open and drag-and-drop ask the
user, and ``viewer.open(path, plugin=None)`` raises ``MultipleReaderError``
(``viewer.open(path)`` with napari's default ``plugin="napari"`` always uses the
builtins by napari's design, napari PR #4574). The one mechanism napari offers is the
per-pattern preference ``settings.plugins.extension2reader``: :func:`prefer_napari_astro`
writes ``napari-astro`` for each of our patterns **that has no preference yet** (a
user's own choice is never replaced), the first time any napari-astro code runs in
napari (this module, a widget, a sample).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

__all__ = ["napari_get_reader", "read_layers", "prefer_napari_astro", "PLUGIN_NAME",
           "reader_patterns"]

PLUGIN_NAME = "napari-astro"

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


def reader_patterns() -> list[str]:
    """The file-name patterns we claim, lower and upper case (fnmatch is
    case-sensitive on POSIX, and cameras write both ``.fit`` and ``.FIT``)."""
    out: list[str] = []
    for ext in _EXTENSIONS:
        for p in (f"*{ext}", f"*{ext.upper()}"):
            if p not in out:
                out.append(p)
    return out


def prefer_napari_astro() -> list[str]:
    """Make napari-astro napari's preferred reader for our patterns without one.

    Only when napari is already imported (never imports it: the library and the CLI
    run without napari). Patterns the user has assigned to any reader, ours or
    another, are left alone.

    Returns
    -------
    list of str
        The patterns newly assigned.
    """
    import sys

    if "napari" not in sys.modules:
        return []
    try:
        from napari.settings import get_settings

        plugins = get_settings().plugins
        current = dict(plugins.extension2reader)
        added = [p for p in reader_patterns() if p not in current]
        if added:
            current.update({p: PLUGIN_NAME for p in added})
            plugins.extension2reader = current
        return added
    except Exception:  # noqa: BLE001 - a settings problem must never break reading
        return []


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


def read_layers(path: "str | Sequence[str]", *, cfa: str = "preview") -> list[tuple]:
    """Read one or several files into napari ``LayerDataTuple`` s.

    Parameters
    ----------
    path : str or sequence of str
    cfa : {"preview", "mosaic"}, default "preview"
        A raw CFA frame as a bilinear-debayered colour preview (the mosaic kept in
        ``metadata["astro"]["mosaic"]``), or as the grey mosaic itself.

    Raises
    ------
    napari_astro.core.errors.BadInputError
        For an unreadable, truncated or empty file, naming it.
    """
    from .core.io import read_image
    from .widgets._layers import cfa_preview_layer_data, image_to_layer_data

    prefer_napari_astro()
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    out = []
    for p in paths:
        img = read_image(p)
        if img.bayer and img.data.ndim == 2 and cfa == "preview":
            out.append(cfa_preview_layer_data(img))
        else:
            out.append(image_to_layer_data(img))
    return out


# napari imports this module to ask whether we read a file: from then on (and in
# later sessions, settings persist) our patterns open with napari-astro.
prefer_napari_astro()
