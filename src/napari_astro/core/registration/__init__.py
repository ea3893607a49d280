"""Star matching, geometric transforms and resampling (finding is separate from applying).

* :class:`Transform` is plain data: a 3x3 matrix acting on ``(x, y, 1)`` column vectors
  that maps **source-frame pixels to reference-frame pixels**, plus the model name.
  It round-trips through JSON (:meth:`Transform.to_dict` / :meth:`Transform.from_dict`)
  so a transform found on one filter can be re-applied to another.
* :func:`find_transform` matches two star lists with triangle asterisms (side-ratio
  invariants are unchanged by shifts, rotations, scale and mirroring, as in astroalign
  and Siril), scores each candidate similarity by how many stars it brings onto a
  reference star (RANSAC-style consensus), then fits the requested model (shift,
  similarity, affine, homography) by least squares on all matched stars with
  iterative outlier clipping.
* :func:`apply_transform` resamples an image onto the reference grid with Lanczos-3
  (default, optionally clamped against ringing), bicubic or bilinear interpolation,
  all channels of a colour image in one pass, and returns the footprint as the mask.
  Affine maps near a multiple of 90 degrees go through two 1-D passes (12 taps per
  pixel instead of 36 for Lanczos-3, ~3x less CPU); homographies use the 2-D kernel.

The package: :mod:`.transform` (the model: :class:`Transform`, plain data),
:mod:`.matching` (model fits, triangle matching, :func:`find_transform`) and
:mod:`.resample` (:func:`apply_transform` and its numba kernels).
"""

from .matching import Match, find_transform, fit_model, match_stars_nearest
from .resample import apply_transform
from .transform import INTERPOLATIONS, MODELS, RegistrationError, Transform

__all__ = ["Transform", "Match", "RegistrationError", "find_transform", "fit_model",
           "apply_transform", "match_stars_nearest", "MODELS", "INTERPOLATIONS"]
