"""Integration (stacking) of registered frames: normalisation, weighting, rejection.

Strategies are objects (STYLE.md convention 2)::

    result = integrate(paths, rejection=Winsorized(low=3, high=3),
                       weighting=NoiseWeight(), normalization=AdditiveScaling(),
                       memory_limit="2GB")
    result.image          # AstroImage, float32, NCOMBINE + HISTORY
    result.weights        # per-frame weights, result.rejected_low / rejected_high

How it works
------------
1. *Statistics pass* (fast, before any pixel is combined): each frame is read in a
   few row stripes (about 100 rows of a 1500-row frame) and per channel we measure
   the location (median), the scale (biweight midvariance or MAD) and the noise (MAD
   of the first B3-spline a-trous wavelet layer, i.e. a robust high-pass). From them
   come the normalisation ``y = a * x + b`` of every frame and channel against the
   reference frame, and the weights.
2. *Tile pass*: the output grid is cut into bands of rows sized from
   ``memory_limit`` and the number of frames; each band of every frame is read from
   disk (positioned reads of the FITS data block, big-endian converted in place, so
   frames are never loaded whole and file pages do not count in our RSS as a
   memory map's would), and a numba kernel combines the N values of every pixel:
   normalise, sort (shell sort of <= N values), reject, combine. Reading the next
   band overlaps the combine of the current one.
3. The same tile function runs as a Dask graph when ``scheduler`` is given: tasks
   read their band from the files themselves (shared file system) or receive it.

Footprints: a pixel that is NaN (or infinite) in a frame, or False in
``AstroImage.mask``, is outside that frame's footprint and takes no part. Registered
frames written to FITS therefore store NaN outside their footprint. Pixels with
fewer than 3 valid values are combined without rejection. The output is clipped to
[0, 1]; where no frame is valid it is 0 and ``image.mask`` is False.

Rejection thresholds act on the normalised values. Sigma-type methods use the
median as centre and the sample standard deviation (ddof=1) as sigma, as Siril does.

The package: :mod:`.strategies` (rejection, normalisation and weighting objects),
:mod:`.kernels` (the numba per-pixel combine), :mod:`.combine` (the tile plan, the
tile function shared by the local loop and Dask, and the in-memory
:func:`combine_stack`), :mod:`.framestats` (the statistics pass), :mod:`.driver`
(:func:`integrate`: memory plan, tiles, local and Dask runners). Frames are read by
row bands through :mod:`napari_astro.core.io.rows`; robust statistics come from
:mod:`napari_astro.core.stats`.
"""

# the private names are imported by pipeline/calibrate.py and kept as before the split
from ..io.rows import ArraySource as _ArraySource  # noqa: F401
from ..io.rows import FileSource as _FileSource  # noqa: F401
from ..io.rows import RowFrame as _Frame  # noqa: F401
from ..io.rows import open_frame as _open_frame  # noqa: F401
from ..stats import noise_estimate
from . import strategies as _strategies
from .combine import _compute_tile, _Plan, combine_stack  # noqa: F401
from .driver import STEP_ID, IntegrationResult, integrate, parse_memory, plan_tiles
from .strategies import (GESD, Additive, AdditiveScaling, FWHMWeight, LinearFit, MinMax,
                         Multiplicative, NoiseWeight, NoNormalization, NoRejection, Normalization,
                         NoWeight, Percentile, Rejection, SigmaClip, StarCountWeight, Weighting,
                         Winsorized, normalization_from_name, rejection_from_name,
                         weighting_from_name)

__all__ = [*_strategies.__all__,
           "combine_stack", "integrate", "IntegrationResult", "parse_memory", "noise_estimate",
           "plan_tiles"]
