"""Star detection, sub-pixel centroids, FWHM, roundness and per-frame quality.

Detection follows the sep/SExtractor recipe: a coarse mesh background (sigma-clipped
block medians, bilinearly interpolated), a Gaussian matched filter, a threshold in
units of the filtered image's noise, local maxima, then per-star *adaptive Gaussian
moments* (the window is matched iteratively to the star, as in SExtractor's XWIN and
GalSim's HSM). Those give the centroid (~0.01-0.02 px on bright stars), the PSF
covariance (FWHM, roundness) and a flux, and are insensitive to flat saturated tops.

Hot pixels (single-pixel peaks) are rejected by their neighbour ratio and their
sub-pixel FWHM; large-scale nebulosity goes into the background mesh and what is left
fails the shape tests (too wide, too elongated, centroid far from the peak).

Raw one-shot-colour mosaics are measured on a 2x2-box CFA luminance (every 2x2
window holds R + 2G + B whatever its offset, so the luminance needs no pattern) at
full resolution; coordinates are mapped back to the mosaic's pixel grid.

All coordinates are ``(x, y)`` = (column, row) with the origin at the centre of pixel
``data[0, 0]``.

The package: :mod:`.detect` (the :class:`Stars` table, detection, per-frame quality),
:mod:`.background` (the coarse mesh background and sky noise) and :mod:`.measure`
(numba kernels: local maxima, adaptive moments).
"""

from .background import estimate_background
# _quality_from: imported by pipeline/register.py, kept importable as before the split
from .detect import (FrameQuality, Stars, _quality_from, cfa_box_luminance,  # noqa: F401
                     detect_stars, detect_stars_cfa, frame_quality, pixel_scale_from_header)

__all__ = ["Stars", "FrameQuality", "estimate_background", "detect_stars", "detect_stars_cfa",
           "cfa_box_luminance", "frame_quality", "pixel_scale_from_header"]
