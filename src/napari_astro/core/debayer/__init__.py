"""Demosaicing of one-shot-colour (CFA) mosaics.

A raw one-shot-colour frame is a 2-D mosaic whose 2x2 cell holds one red, two green
and one blue sample in one of the four Bayer layouts (:data:`BAYER_PATTERNS`).  The
pattern describes pixel ``data[0, 0]`` onwards; ROWORDER and X/YBAYROFF are already
folded into it when the file is read (``core.io.fits.cfa_pattern_from_header``), so
the algorithms here never look at the header.

Methods
-------
``"rcd"`` (default)
    Ratio Corrected Demosaicing (Luis Sanz Rodriguez, v2.3, as in RawTherapee,
    librtprocess and Siril's default): green from ratio-corrected cardinal estimates
    weighted by a vertical/horizontal discrimination, red/blue from colour differences
    along the diagonals.  Keeps stars round without the zipper and colour fringes of
    bilinear interpolation.  The 6-pixel border is bilinear.
``"bilinear"``
    Each missing colour is the mean of its nearest same-colour samples.
``"superpixel"``
    Each 2x2 cell becomes one RGB pixel (R, mean of the two G, B): half the size in
    each direction, no interpolation at all.
``"vng"``
    Not implemented; accepted as an alias of ``"rcd"`` (the edge-aware method we ship),
    with a HISTORY line that says so.

All kernels are numba ``parallel=True`` loops over rows (RCD: over blocks of rows,
see :func:`_rcd_kernel`).  Measured on a 2000x1500 mosaic on the 2-core test
machine: RCD 0.045 s wall for the kernel (0.09 s of CPU), 0.05 s for
:func:`debayer_array` with its 36 MB output (0.065 s before the row-block rewrite);
bilinear 0.009 s; superpixel 0.001

The package: :mod:`.cfa` (patterns, plane slices, mosaicking, CFA equalisation and
luminance), :mod:`.kernels` (numba demosaicing kernels) and :mod:`.demosaic`
(:func:`debayer_array`, :func:`debayer`).
"""

from .cfa import cfa_color_index, cfa_luminance, cfa_plane_slices, equalize_cfa, mosaic
from .demosaic import DEBAYER_METHODS, debayer, debayer_array

__all__ = ["debayer", "debayer_array", "cfa_luminance", "cfa_color_index", "cfa_plane_slices",
           "equalize_cfa", "mosaic", "DEBAYER_METHODS"]
