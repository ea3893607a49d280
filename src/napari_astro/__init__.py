"""napari-astro: from the telescope to the finished picture, inside napari.

The library lives in :mod:`napari_astro.core` (pure numpy/astropy, no GUI),
:mod:`napari_astro.pipeline` (step parameters and batch runs) and
:mod:`napari_astro.capture` (INDI). Widgets are in :mod:`napari_astro.widgets`.
"""

__version__ = "0.1.0"

__all__ = ["AstroImage", "__version__"]


def __getattr__(name: str):
    """``napari_astro.AstroImage`` on first use: importing the package (napari's plugin
    discovery, ``napari-astro --help``) does not import numpy and astropy with it."""
    if name == "AstroImage":
        from .core.image import AstroImage

        return AstroImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _prefer_our_reader_when_napari_discovers_us() -> None:
    """At napari's plugin discovery (see ``_plugin/__init__``): napari-astro becomes the
    preferred reader of our patterns that have no preference yet. Never imports napari."""
    import sys

    if "napari" in sys.modules:
        from ._reader import prefer_napari_astro

        prefer_napari_astro()
        _warm_kernels_when_cold()


def _warm_kernels_when_cold() -> None:
    """After a plain ``pip install`` (napari's plugin manager) numba's cache is empty and
    the first stack would compile its kernels. At discovery a daemon thread checks the
    cache (importing numba there, not in napari's start-up) and, only when it is cold,
    starts :func:`napari_astro.pipeline.warmup.warm_in_subprocess`: a separate
    low-priority process, so napari never waits. ``NAPARI_ASTRO_NO_WARMUP=1`` turns
    it off."""
    import os
    import threading

    if os.environ.get("NAPARI_ASTRO_NO_WARMUP"):
        return

    def check() -> None:
        try:
            from .pipeline.warmup import warm_in_subprocess

            warm_in_subprocess(only_if_cold=True)
        except Exception:  # noqa: BLE001 - a warm-up is an optimisation, never an error
            pass

    threading.Thread(target=check, name="napari-astro-warmup-check", daemon=True).start()


_prefer_our_reader_when_napari_discovers_us()
