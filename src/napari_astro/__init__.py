"""napari-astro: from the telescope to the finished picture, inside napari.

The library lives in :mod:`napari_astro.core` (pure numpy/astropy, no GUI),
:mod:`napari_astro.pipeline` (step parameters and batch runs) and
:mod:`napari_astro.capture` (INDI). Widgets are in :mod:`napari_astro.widgets`.
"""

__version__ = "0.1.0"

from .core.image import AstroImage  # noqa: E402

__all__ = ["AstroImage", "__version__"]
