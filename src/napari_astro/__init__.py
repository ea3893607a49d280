"""napari-astro: from the telescope to the finished picture, inside napari.

The library lives in :mod:`napari_astro.core` (pure numpy/astropy, no GUI),
:mod:`napari_astro.pipeline` (step parameters and batch runs) and
:mod:`napari_astro.capture` (INDI). Widgets are in :mod:`napari_astro.widgets`.
"""

__version__ = "0.1.0"

from .core.image import AstroImage  # noqa: E402

__all__ = ["AstroImage", "__version__"]


def _prefer_our_reader_when_napari_discovers_us() -> None:
    """At napari's plugin discovery (see ``_plugin/__init__``): napari-astro becomes the
    preferred reader of our patterns that have no preference yet. Never imports napari."""
    import sys

    if "napari" in sys.modules:
        from ._reader import prefer_napari_astro

        prefer_napari_astro()


_prefer_our_reader_when_napari_discovers_us()
