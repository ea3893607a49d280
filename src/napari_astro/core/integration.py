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
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence

import numpy as np
from numba import njit, prange

from .errors import BadInputError
from .image import AstroImage, format_history
from .progress import CancelToken, Progress, report

__all__ = [
    "Rejection", "NoRejection", "SigmaClip", "Winsorized", "LinearFit", "Percentile",
    "GESD", "MinMax", "rejection_from_name",
    "Normalization", "NoNormalization", "Additive", "Multiplicative", "AdditiveScaling",
    "normalization_from_name",
    "Weighting", "NoWeight", "NoiseWeight", "FWHMWeight", "StarCountWeight",
    "weighting_from_name",
    "combine_stack", "integrate", "IntegrationResult", "parse_memory", "noise_estimate",
    "plan_tiles",
]

STEP_ID = "pre.integrate"


# --- rejection strategies -----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rejection:
    """Base rejection strategy: thresholds in units of the robust sigma.

    Attributes
    ----------
    low, high : float
        Reject values more than ``low`` sigma below / ``high`` sigma above the centre.
    min_frames : int
        Fewer frames than this is bad input when rejecting.
    """

    low: float = 3.0
    high: float = 3.0
    min_frames: int = 3

    name: ClassVar[str] = ""
    code: ClassVar[int] = -1

    def to_dict(self) -> dict[str, Any]:
        d = {"method": self.name}
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "min_frames"})
        return d

    def _check(self) -> None:
        if not (self.low > 0 and self.high > 0):
            raise BadInputError("rejection", f"{self.name} thresholds must be > 0, "
                                f"got low={self.low} high={self.high}")


@dataclasses.dataclass(frozen=True)
class NoRejection(Rejection):
    """Keep every valid value."""

    min_frames: int = 1
    name: ClassVar[str] = "none"
    code: ClassVar[int] = 0

    def to_dict(self) -> dict[str, Any]:
        return {"method": "none"}

    def _check(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class SigmaClip(Rejection):
    """Iterative sigma clipping around the median (sigma = sample std)."""

    iterations: int = 10
    name: ClassVar[str] = "sigma"
    code: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class Winsorized(Rejection):
    """Winsorized sigma clipping (PixInsight/Siril).

    Each iteration: median ``m`` and std ``s`` of the kept values; then Huber's
    iteration ``s <- 1.134 * std(clip(x, m - 1.5 s, m + 1.5 s))`` until ``s`` changes
    by less than 0.05 %; reject values beyond ``m - low*s`` / ``m + high*s``; repeat
    until nothing more is rejected (at most ``iterations`` times).
    """

    iterations: int = 10
    name: ClassVar[str] = "winsorized"
    code: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True)
class LinearFit(Rejection):
    """Linear-fit clipping: fit a line to the sorted values (least squares), sigma =
    mean absolute deviation from it, reject values ``low``/``high`` sigma below/above
    the line; repeat until nothing more is rejected. Good for large stacks."""

    iterations: int = 10
    name: ClassVar[str] = "linear-fit"
    code: ClassVar[int] = 3


@dataclasses.dataclass(frozen=True)
class Percentile(Rejection):
    """One pass: reject ``x`` with ``median - x > low * median`` or
    ``x - median > high * median`` (``low``, ``high`` are fractions of the median).
    Meant for small stacks."""

    low: float = 0.2
    high: float = 0.1
    name: ClassVar[str] = "percentile"
    code: ClassVar[int] = 4


@dataclasses.dataclass(frozen=True)
class GESD(Rejection):
    """Generalized extreme studentized deviate test (Rosner 1983).

    At most ``floor(outliers * n)`` outliers per pixel, significance ``significance``;
    ``low``/``high`` are not used (an outlier below the mean counts as low).
    """

    outliers: float = 0.3
    significance: float = 0.05
    name: ClassVar[str] = "gesd"
    code: ClassVar[int] = 5

    def to_dict(self) -> dict[str, Any]:
        return {"method": "gesd", "outliers": self.outliers, "significance": self.significance}

    def _check(self) -> None:
        if not (0 < self.outliers < 1 and 0 < self.significance < 1):
            raise BadInputError("rejection", "gesd needs 0 < outliers < 1 and "
                                f"0 < significance < 1, got {self.outliers}, {self.significance}")


@dataclasses.dataclass(frozen=True)
class MinMax(Rejection):
    """Reject the ``low`` lowest and ``high`` highest values (counts) of every pixel
    (nothing when fewer than ``low + high + 1`` values are valid)."""

    low: float = 1
    high: float = 1
    name: ClassVar[str] = "minmax"
    code: ClassVar[int] = 6

    def _check(self) -> None:
        if self.low < 0 or self.high < 0 or self.low != int(self.low) or self.high != int(self.high):
            raise BadInputError("rejection", f"minmax needs whole counts >= 0, got "
                                f"low={self.low} high={self.high}")


_BY_NAME = {"none": NoRejection, "sigma": SigmaClip, "winsorized": Winsorized,
            "linear-fit": LinearFit, "percentile": Percentile, "gesd": GESD, "minmax": MinMax}


def rejection_from_name(name: str, low: float | None = None, high: float | None = None) -> Rejection:
    """Build a rejection strategy from its CLI name.

    Parameters
    ----------
    name : {"none", "sigma", "winsorized", "linear-fit", "percentile", "gesd", "minmax"}
    low, high : float, optional
        Thresholds; None keeps the method's default (3/3 sigma; percentile 0.2/0.1 of
        the median; minmax 1/1 values). For ``gesd`` they are, as in Siril, the
        maximum outlier fraction and the significance (default 0.3 / 0.05).
    """
    key = str(name).strip().lower().replace("_", "-")
    key = {"winsorised": "winsorized", "linear": "linear-fit", "linearfit": "linear-fit",
           "min-max": "minmax", "sigma-clip": "sigma"}.get(key, key)
    if key not in _BY_NAME:
        raise BadInputError("rejection", f"unknown rejection {name!r} (known: {', '.join(_BY_NAME)})")
    cls = _BY_NAME[key]
    kw: dict[str, float] = {}
    if cls is GESD:
        if low is not None:
            kw["outliers"] = float(low)
        if high is not None:
            kw["significance"] = float(high)
    elif cls is not NoRejection:
        if low is not None:
            kw["low"] = float(low)
        if high is not None:
            kw["high"] = float(high)
    rej = cls(**kw)
    rej._check()
    return rej


# --- normalisation strategies ---------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Normalization:
    """Base normalisation: per frame and channel ``y = a * x + b`` against the reference.

    Attributes
    ----------
    scale : {"bwmv", "mad"}
        Robust dispersion used by scaling normalisations (biweight midvariance is
        about 2.3x as statistically efficient as MAD on Gaussian noise, at the same
        cost here).
    """

    scale: str = "bwmv"
    name: ClassVar[str] = ""

    def coefficients(self, loc: np.ndarray, scale: np.ndarray, ref: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` arrays ``(N, C)`` from locations and scales ``(N, C)``."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name}


@dataclasses.dataclass(frozen=True)
class NoNormalization(Normalization):
    name: ClassVar[str] = "none"

    def coefficients(self, loc, scale, ref):
        return np.ones_like(loc), np.zeros_like(loc)


@dataclasses.dataclass(frozen=True)
class Additive(Normalization):
    """``y = x - m_i + m_ref`` (median offsets)."""

    name: ClassVar[str] = "additive"

    def coefficients(self, loc, scale, ref):
        return np.ones_like(loc), loc[ref][None, :] - loc


@dataclasses.dataclass(frozen=True)
class Multiplicative(Normalization):
    """``y = x * m_ref / m_i`` (median ratios)."""

    name: ClassVar[str] = "multiplicative"

    def coefficients(self, loc, scale, ref):
        with np.errstate(divide="ignore", invalid="ignore"):
            a = loc[ref][None, :] / loc
        return a, np.zeros_like(loc)


@dataclasses.dataclass(frozen=True)
class AdditiveScaling(Normalization):
    """``y = (x - m_i) * s_ref / s_i + m_ref`` (median and robust dispersion)."""

    name: ClassVar[str] = "additive-scaling"

    def coefficients(self, loc, scale, ref):
        with np.errstate(divide="ignore", invalid="ignore"):
            a = scale[ref][None, :] / scale
        return a, loc[ref][None, :] - a * loc

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "scale": self.scale}


_NORM_BY_NAME = {"none": NoNormalization, "additive": Additive,
                 "multiplicative": Multiplicative, "additive-scaling": AdditiveScaling}


def normalization_from_name(name: str) -> Normalization:
    """``"none" | "additive" | "multiplicative" | "additive-scaling"`` (also ``addscale``)."""
    key = str(name).strip().lower().replace("_", "-")
    key = {"addscale": "additive-scaling", "additive+scaling": "additive-scaling",
           "mul": "multiplicative", "add": "additive"}.get(key, key)
    if key not in _NORM_BY_NAME:
        raise BadInputError("normalization", f"unknown normalization {name!r} "
                            f"(known: {', '.join(_NORM_BY_NAME)})")
    return _NORM_BY_NAME[key]()


# --- weighting strategies --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Weighting:
    """Base weighting: per-frame (and channel) weights, normalised to a maximum of 1."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = ""     # per-frame metadata key needed, if any

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name}


@dataclasses.dataclass(frozen=True)
class NoWeight(Weighting):
    name: ClassVar[str] = "none"


@dataclasses.dataclass(frozen=True)
class NoiseWeight(Weighting):
    """Inverse variance ``1 / (a_i * sigma_i)^2`` of each normalised frame and channel,
    ``sigma_i`` from the MAD of the first wavelet layer (see :func:`noise_estimate`)."""

    name: ClassVar[str] = "noise"


@dataclasses.dataclass(frozen=True)
class FWHMWeight(Weighting):
    """``(fwhm_min / fwhm_i)^2``: sharper frames count more. Needs each frame's FWHM
    (``frame_stats[i]["fwhm"]`` or header key ``FWHM``)."""

    name: ClassVar[str] = "fwhm"
    needs: ClassVar[str] = "fwhm"


@dataclasses.dataclass(frozen=True)
class StarCountWeight(Weighting):
    """``n_i / n_max`` stars detected. Needs each frame's star count
    (``frame_stats[i]["n_stars"]`` or header key ``NSTARS``)."""

    name: ClassVar[str] = "stars"
    needs: ClassVar[str] = "n_stars"


_WEIGHT_BY_NAME = {"none": NoWeight, "noise": NoiseWeight, "fwhm": FWHMWeight,
                   "stars": StarCountWeight}


def weighting_from_name(name: str) -> Weighting:
    """``"none" | "noise" | "fwhm" | "stars"``."""
    key = str(name).strip().lower()
    key = {"star-count": "stars", "nstars": "stars"}.get(key, key)
    if key not in _WEIGHT_BY_NAME:
        raise BadInputError("weighting", f"unknown weighting {name!r} "
                            f"(known: {', '.join(_WEIGHT_BY_NAME)})")
    return _WEIGHT_BY_NAME[key]()


_META_KEYS = {"fwhm": ("fwhm", "FWHM"), "n_stars": ("n_stars", "nstars", "stars", "NSTARS")}
_HEADER_KEYS = {"fwhm": ("FWHM",), "n_stars": ("NSTARS", "STARCNT")}


# --- memory ---------------------------------------------------------------------
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: str | int | float) -> int:
    """Bytes from ``"2GB"``, ``"512MB"``, ``"1.5GiB"``, ``"800M"`` or a number of bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise BadInputError("memory-limit", f"must be positive, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS:
        raise BadInputError("memory-limit", f"cannot read {value!r} (examples: 2GB, 512MB)")
    n = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if n <= 0:
        raise BadInputError("memory-limit", f"must be positive, got {value!r}")
    return int(n)


def _fmt_bytes(n: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


# =================================================================================
# numba kernels
# =================================================================================
# Why hand-written: per pixel we need the sorted N values and a few passes over them.
# numpy can only do that with (N, pixels) temporaries and masked statistics per
# iteration: the former numpy stub (sigma clipping with nanmedian/nanstd) took 5.3 s
# CPU (12.4 s wall on the shared 2-core machine) for 20 frames of 1000x1000, this
# kernel with the full Winsorized method 0.34 s CPU (0.84 s wall): 15x, and no
# temporaries the size of the stack.

_XBLOCK = 128      # pixels sorted together (one SIMD lane each)


def _batcher_pairs(n: int) -> np.ndarray:
    """Comparators ``(a, b)``, ``a < b``, of Batcher's odd-even merge sort for ``n``
    wires: the network for the next power of two, minus comparators touching wires
    >= n (those would hold +inf and never swap)."""
    p2 = 1
    while p2 < n:
        p2 *= 2
    out = []
    p = 1
    while p < p2:
        k = p
        while k >= 1:
            for j in range(k % p, p2 - k, 2 * k):
                for i in range(min(k, p2 - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        out.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(out, np.int32).reshape(-1, 2)


@njit(cache=True, nogil=True)
def _network_sort(blk, bid, nb, comps):
    """Sort each column ``blk[:, k]`` (k < nb) ascending, permuting ``bid`` alike.

    A sorting network applies the same compare-exchange to every pixel, so the
    inner loop over 128 pixels is branch-free SIMD (min/max, xor-swap of indices).
    Measured for 20 values per pixel: 51 ns/pixel, against 231 ns for a per-pixel
    rank sort and 466 ns for a per-pixel shell sort (noise mispredicts its branches).
    Views like ``blk[a]`` defeat vectorisation here; keep the 2-D indexing.
    """
    for m in range(comps.shape[0]):
        a = comps[m, 0]
        b = comps[m, 1]
        for k in range(nb):
            va = blk[a, k]
            vb = blk[b, k]
            xa = bid[a, k]
            xb = bid[b, k]
            t = (xa ^ xb) * np.int32(vb < va)
            blk[a, k] = min(va, vb)
            blk[b, k] = max(va, vb)
            bid[a, k] = xa ^ t
            bid[b, k] = xb ^ t


@njit(cache=True, nogil=True)
def _median_sorted(v, lo, hi):
    m = hi - lo
    h = lo + m // 2
    if m % 2 == 1:
        return np.float64(v[h])
    return 0.5 * (np.float64(v[h - 1]) + np.float64(v[h]))


@njit(cache=True, nogil=True)
def _prefix(v, n, shift, p1, p2):
    """Prefix sums of ``v - shift`` and its square over ``v[:n]`` (float64)."""
    p1[0] = 0.0
    p2[0] = 0.0
    for j in range(n):
        d = np.float64(v[j]) - shift
        p1[j + 1] = p1[j] + d
        p2[j + 1] = p2[j] + d * d


@njit(cache=True, nogil=True)
def _range_mean_sd(p1, p2, lo, hi, shift):
    """Mean and sample std (ddof=1) of ``v[lo:hi]`` from the prefix sums."""
    m = hi - lo
    s = p1[hi] - p1[lo]
    ss = p2[hi] - p2[lo]
    var = (ss - s * s / m) / (m - 1)
    return shift + s / m, math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _clip_range(v, lo, hi, centre, below, above):
    """Shrink the sorted range to values with centre - v <= below and v - centre <= above."""
    nl = lo
    while nl < hi and centre - v[nl] > below:
        nl += 1
    nh = hi
    while nh > nl and v[nh - 1] - centre > above:
        nh -= 1
    return nl, nh


@njit(cache=True, nogil=True)
def _rej_sigma(v, lo, hi, klow, khigh, iters, p1, p2, shift):
    for _ in range(iters):
        if hi - lo < 3:
            break
        med = _median_sorted(v, lo, hi)
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        nl, nh = _clip_range(v, lo, hi, med, klow * sd, khigh * sd)
        if nl == lo and nh == hi:
            break
        lo = nl
        hi = nh
    return lo, hi


@njit(cache=True, nogil=True)
def _rej_winsorized(v, lo, hi, klow, khigh, iters, p1, p2, shift):
    for _ in range(iters):
        m = hi - lo
        if m < 3:
            break
        med = _median_sorted(v, lo, hi)
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        # Huber's iteration. The median of the winsorised values is med itself
        # (clipping symmetric about the median keeps it), so only sigma moves; the
        # values are sorted, so the clipped ones sit at the ends and the sums of
        # the rest come from the prefix sums: O(clipped) per iteration, not O(n).
        inv_m = 1.0 / m
        k2 = 1.134 * 1.134 / (m - 1)
        for _k in range(100):
            s0 = sd
            c0 = med - 1.5 * s0
            c1 = med + 1.5 * s0
            a = lo
            while a < hi and v[a] < c0:
                a += 1
            b = hi
            while b > a and v[b - 1] > c1:
                b -= 1
            d0 = c0 - shift
            d1 = c1 - shift
            s = (a - lo) * d0 + (p1[b] - p1[a]) + (hi - b) * d1
            ss = (a - lo) * d0 * d0 + (p2[b] - p2[a]) + (hi - b) * d1 * d1
            var = (ss - s * s * inv_m) * k2
            sd = math.sqrt(var) if var > 0.0 else 0.0
            if abs(sd - s0) <= 5e-4 * s0:
                break
        if not sd > 0.0:
            break
        nl, nh = _clip_range(v, lo, hi, med, klow * sd, khigh * sd)
        if nl == lo and nh == hi:
            break
        lo = nl
        hi = nh
    return lo, hi


@njit(cache=True, nogil=True)
def _rej_linear(v, idx, lo, hi, klow, khigh, iters, tv, ti, cls):
    """Linear-fit clipping; rejected values are moved out of ``[lo, hi)`` (lows
    before it, highs after it) keeping the kept values sorted."""
    for _ in range(iters):
        m = hi - lo
        if m < 3:
            break
        xm = 0.5 * (m - 1)
        ym = 0.0
        for j in range(m):
            ym += v[lo + j]
        ym /= m
        sxy = 0.0
        sxx = 0.0
        for j in range(m):
            dx = j - xm
            sxy += dx * (v[lo + j] - ym)
            sxx += dx * dx
        b = sxy / sxx
        a = ym - b * xm
        sig = 0.0
        for j in range(m):
            sig += abs(v[lo + j] - (a + b * j))
        sig /= m
        if not sig > 0.0:
            break
        nlow = 0
        nhigh = 0
        for j in range(m):
            f = a + b * j
            y = v[lo + j]
            if f - y > klow * sig:
                cls[j] = 0
                nlow += 1
            elif y - f > khigh * sig:
                cls[j] = 2
                nhigh += 1
            else:
                cls[j] = 1
        if nlow == 0 and nhigh == 0:
            break
        # stable three-way partition of v[lo:hi] through the scratch arrays
        p = 0
        for want in range(3):
            for j in range(m):
                if cls[j] == want:
                    tv[p] = v[lo + j]
                    ti[p] = idx[lo + j]
                    p += 1
        for j in range(m):
            v[lo + j] = tv[j]
            idx[lo + j] = ti[j]
        lo += nlow
        hi -= nhigh
    return lo, hi


@njit(cache=True, nogil=True)
def _rej_percentile(v, lo, hi, plow, phigh):
    med = _median_sorted(v, lo, hi)
    return _clip_range(v, lo, hi, med, plow * med, phigh * med)


@njit(cache=True, nogil=True)
def _rej_gesd(v, n, crit, rmax, ends, p1, p2, shift):
    """GESD on sorted ``v[:n]``: the most extreme value is always at one end."""
    lo = 0
    hi = n
    last = 0
    r = rmax[n]
    for i in range(r):
        if hi - lo < 3:
            break
        mean, sd = _range_mean_sd(p1, p2, lo, hi, shift)
        if not sd > 0.0:
            break
        dlo = mean - v[lo]
        dhi = v[hi - 1] - mean
        if dhi >= dlo:
            stat = dhi / sd
            ends[i] = 1
            hi -= 1
        else:
            stat = dlo / sd
            ends[i] = 0
            lo += 1
        if stat > crit[n, i]:
            last = i + 1
    lo = 0
    hi = n
    for i in range(last):
        if ends[i] == 1:
            hi -= 1
        else:
            lo += 1
    return lo, hi


@njit(cache=True, nogil=True)
def _process_row(buf, c, r, A, B, W, method, plow, phigh, iters, crit, rmax, combine,
                 comps, out, nvalid, lowc, highc, finv, frl, frh, cr):
    """Combine all pixels of row ``r`` of channel ``c`` of a tile ``buf (N,C,R,X)``.

    Pixels go in blocks of 128: the block's values of every frame are read
    contiguously, normalised, invalid ones set to +inf, sorted by the network;
    then rejection and the combine run per pixel on its sorted valid values.
    """
    N = buf.shape[0]
    X = buf.shape[3]
    blk = np.empty((N, _XBLOCK), np.float32)
    bid = np.empty((N, _XBLOCK), np.int32)
    cnt = np.empty(_XBLOCK, np.int32)
    acc = np.empty(_XBLOCK, np.float64)
    accw = np.empty(_XBLOCK, np.float64)
    accs = np.empty(_XBLOCK, np.float64)
    sv = np.empty(N, np.float32)
    si = np.empty(N, np.int32)
    tv = np.empty(N, np.float32)
    ti = np.empty(N, np.int32)
    cls = np.empty(N, np.int8)
    p1 = np.empty(N + 1, np.float64)
    p2 = np.empty(N + 1, np.float64)
    need_sort = method != 0 or combine == 1
    inf = np.float32(np.inf)
    for x0 in range(0, X, _XBLOCK):
        nb = min(_XBLOCK, X - x0)
        cnt[:nb] = 0
        if not need_sort:
            # no rejection, average or sum: accumulate frame by frame (SIMD over pixels)
            acc[:nb] = 0.0
            accw[:nb] = 0.0
            accs[:nb] = 0.0
            for i in range(N):
                a = np.float32(A[i, c])
                b = np.float32(B[i, c])
                w = W[i, c]
                bad = 0
                for k in range(nb):
                    val = buf[i, c, r, x0 + k] * a + b
                    ok = np.isfinite(val)
                    cnt[k] += ok
                    bad += 1 - ok
                    vz = val if ok else np.float32(0.0)     # selects, not branches
                    wk = w if ok else 0.0
                    acc[k] += wk * vz
                    accw[k] += wk
                    accs[k] += vz
                finv[cr, i] += bad
            for k in range(nb):
                x = x0 + k
                n = cnt[k]
                nvalid[c, r, x] = n
                lowc[c, r, x] = 0
                highc[c, r, x] = 0
                if n == 0:
                    out[c, r, x] = 0.0
                elif combine == 2:
                    out[c, r, x] = accs[k]
                else:
                    out[c, r, x] = acc[k] / accw[k] if accw[k] > 0.0 else 0.0
            continue
        for i in range(N):
            a = np.float32(A[i, c])
            b = np.float32(B[i, c])
            bad = 0
            for k in range(nb):
                val = buf[i, c, r, x0 + k] * a + b
                ok = np.isfinite(val)
                blk[i, k] = val if ok else inf
                bid[i, k] = i
                cnt[k] += ok
                bad += 1 - ok
            finv[cr, i] += bad
        _network_sort(blk, bid, nb, comps)
        for k in range(nb):
            x = x0 + k
            n = cnt[k]
            nvalid[c, r, x] = n
            if n == 0:
                out[c, r, x] = 0.0
                lowc[c, r, x] = 0
                highc[c, r, x] = 0
                continue
            for j in range(n):
                sv[j] = blk[j, k]
                si[j] = bid[j, k]
            lo = 0
            hi = n
            if method != 0 and n >= 3:
                if method == 1 or method == 2 or method == 5:
                    shift = _median_sorted(sv, 0, n)
                    _prefix(sv, n, shift, p1, p2)
                    if method == 1:
                        lo, hi = _rej_sigma(sv, 0, n, plow, phigh, iters, p1, p2, shift)
                    elif method == 2:
                        lo, hi = _rej_winsorized(sv, 0, n, plow, phigh, iters, p1, p2, shift)
                    else:
                        lo, hi = _rej_gesd(sv, n, crit, rmax, cls, p1, p2, shift)
                elif method == 3:
                    lo, hi = _rej_linear(sv, si, 0, n, plow, phigh, iters, tv, ti, cls)
                elif method == 4:
                    lo, hi = _rej_percentile(sv, 0, n, plow, phigh)
                elif method == 6:
                    nl = int(plow)
                    nh = int(phigh)
                    if n - nl - nh >= 1:
                        lo = nl
                        hi = n - nh
                for j in range(lo):
                    frl[cr, si[j]] += 1
                for j in range(hi, n):
                    frh[cr, si[j]] += 1
            lowc[c, r, x] = lo
            highc[c, r, x] = n - hi
            if combine == 1:
                res = _median_sorted(sv, lo, hi)
            elif combine == 2:
                s = 0.0
                for j in range(lo, hi):
                    s += sv[j]
                res = s / (hi - lo) * n
            else:
                s = 0.0
                sw = 0.0
                for j in range(lo, hi):
                    w = W[si[j], c]
                    s += w * sv[j]
                    sw += w
                res = s / sw if sw > 0.0 else 0.0
            out[c, r, x] = res


@njit(cache=True, nogil=True, parallel=True)
def _kernel_parallel(buf, A, B, W, method, plow, phigh, iters, crit, rmax, combine, comps,
                     out, nvalid, lowc, highc, finv, frl, frh):
    C = buf.shape[1]
    R = buf.shape[2]
    for cr in prange(C * R):
        _process_row(buf, cr // R, cr % R, A, B, W, method, plow, phigh, iters, crit, rmax,
                     combine, comps, out, nvalid, lowc, highc, finv, frl, frh, cr)


@njit(cache=True, nogil=True)
def _kernel_serial(buf, A, B, W, method, plow, phigh, iters, crit, rmax, combine, comps,
                   out, nvalid, lowc, highc, finv, frl, frh):
    C = buf.shape[1]
    R = buf.shape[2]
    for cr in range(C * R):
        _process_row(buf, cr // R, cr % R, A, B, W, method, plow, phigh, iters, crit, rmax,
                     combine, comps, out, nvalid, lowc, highc, finv, frl, frh, cr)


# =================================================================================
# tile plan and tile function (shared by the local loop and Dask)
# =================================================================================
_COMBINE_CODES = {"average": 0, "mean": 0, "median": 1, "sum": 2}


def _gesd_tables(n_max: int, rej: Rejection) -> tuple[np.ndarray, np.ndarray]:
    """Critical values ``crit[n, i]`` of GESD for ``n`` valid values, step ``i``."""
    rmax = np.zeros(n_max + 1, np.int64)
    if not isinstance(rej, GESD):
        return np.zeros((n_max + 1, 1)), rmax
    from scipy.stats import t as student_t

    for n in range(n_max + 1):
        rmax[n] = int(math.floor(rej.outliers * n))
    crit = np.full((n_max + 1, max(1, int(rmax.max()))), np.inf)
    for n in range(3, n_max + 1):
        for i in range(rmax[n]):
            size = n - i
            if size < 3:
                break
            p = 1.0 - rej.significance / (2.0 * size)
            tq = student_t.ppf(p, size - 2)
            crit[n, i] = (size - 1) * tq / math.sqrt(size * (size - 2 + tq * tq))
    return crit, rmax


@dataclasses.dataclass
class _Plan:
    """Everything the tile kernel needs besides the pixels (small, picklable)."""

    A: np.ndarray          # (N, C) float64 normalisation factor
    B: np.ndarray          # (N, C) float64 normalisation offset
    W: np.ndarray          # (N, C) float64 weights
    method: int
    plow: float
    phigh: float
    iters: int
    crit: np.ndarray
    rmax: np.ndarray
    combine: int
    comps: np.ndarray      # (M, 2) int32 sorting-network comparators for N values

    @classmethod
    def build(cls, n: int, c: int, rejection: Rejection, combine: str, A=None, B=None,
              W=None) -> "_Plan":
        if combine not in _COMBINE_CODES:
            raise BadInputError("combine", f"unknown combine {combine!r} (average, median, sum)")
        if isinstance(rejection, GESD):
            plow, phigh = rejection.outliers, rejection.significance
        else:
            plow, phigh = float(rejection.low), float(rejection.high)
        crit, rmax = _gesd_tables(n, rejection)
        ones = np.ones((n, c), np.float64)
        return cls(A=ones if A is None else np.ascontiguousarray(A, np.float64),
                   B=np.zeros((n, c)) if B is None else np.ascontiguousarray(B, np.float64),
                   W=ones if W is None else np.ascontiguousarray(W, np.float64),
                   method=int(rejection.code), plow=float(plow), phigh=float(phigh),
                   iters=int(getattr(rejection, "iterations", 1)), crit=crit, rmax=rmax,
                   combine=_COMBINE_CODES[combine], comps=_batcher_pairs(n))


def _compute_tile(plan: _Plan, buf: np.ndarray, parallel: bool = True):
    """Run the kernel on ``buf (N, C, R, X)`` float32; returns the tile results."""
    N, C, R, X = buf.shape
    out = np.empty((C, R, X), np.float32)
    nvalid = np.empty((C, R, X), np.uint16)
    lowc = np.empty((C, R, X), np.uint16)
    highc = np.empty((C, R, X), np.uint16)
    finv = np.zeros((C * R, N), np.int64)
    frl = np.zeros((C * R, N), np.int64)
    frh = np.zeros((C * R, N), np.int64)
    kernel = _kernel_parallel if parallel else _kernel_serial
    kernel(buf, plan.A, plan.B, plan.W, plan.method, plan.plow, plan.phigh, plan.iters,
           plan.crit, plan.rmax, plan.combine, plan.comps, out, nvalid, lowc, highc, finv,
           frl, frh)
    return out, nvalid, lowc, highc, C * R * X - finv.sum(0), frl.sum(0), frh.sum(0)


# --- in-memory combine (masters) ---------------------------------------------------
def combine_stack(stack: np.ndarray | Sequence[np.ndarray], *, rejection: Rejection | None = None,
                  combine: str = "average", weights: Sequence[float] | None = None,
                  return_maps: bool = False):
    """Combine an in-memory stack ``(N, ...)`` pixel by pixel with rejection.

    Parameters
    ----------
    stack : ndarray ``(N, ...)`` or sequence of N equal-shape arrays
        Frames (any float or int dtype; float32 contiguous avoids a copy). NaN or
        infinite values are missing and take no part.
    rejection : Rejection, optional
        Default :class:`Winsorized` (3, 3). Pixels with fewer than 3 valid values
        are combined without rejection.
    combine : {"average", "median", "sum"}
        ``sum`` is the mean of the kept values times the number of valid values.
    weights : sequence of N floats, optional
        Weights of the frames for ``average`` (default equal).
    return_maps : bool
        Also return the per-pixel counts of values rejected low and high.

    Returns
    -------
    ndarray or (ndarray, ndarray, ndarray)
        float32 of shape ``stack.shape[1:]`` (0 where no value is valid); with
        ``return_maps``, also uint16 low and high rejection counts of that shape.
    """
    arr = np.asarray(stack)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim < 2:
        raise ValueError(f"stack must be (N, ...), got shape {arr.shape}")
    rejection = Winsorized() if rejection is None else rejection
    n = arr.shape[0]
    shape = arr.shape[1:]
    if arr.ndim == 2:
        view = arr.reshape(n, 1, 1, shape[0])
    else:
        view = arr.reshape(n, 1, -1, shape[-1])
    view = np.ascontiguousarray(view)
    W = None
    if weights is not None:
        W = np.asarray(weights, np.float64).reshape(-1, 1)
        if W.shape[0] != n:
            raise ValueError(f"{W.shape[0]} weights for {n} frames")
    plan = _Plan.build(n, 1, rejection, combine, W=W)
    out, _nv, lowc, highc, *_ = _compute_tile(plan, view, parallel=True)
    out = out.reshape(shape)
    if return_maps:
        return out, lowc.reshape(shape), highc.reshape(shape)
    return out


# =================================================================================
# frame sources: read bands of rows of a frame into a float32 buffer
# =================================================================================
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_INT_RANGE = {8: 255.0, 16: 65535.0, 32: 4294967295.0, 64: float(2**64 - 1)}


@dataclasses.dataclass(frozen=True)
class _FileSource:
    """A frame stored as an uncompressed data block: FITS, or a spilled raw file.

    ``read_rows`` reads rows ``r0:r1`` of every channel with positioned reads into
    the caller's buffer; big-endian floats are byte-swapped in place, integers are
    scaled like :func:`core.io.read_fits` (physical value / full range of the type).
    """

    path: str
    offset: int
    dtype: str
    shape: tuple            # (C, H, W)
    bscale: float = 1.0
    bzero: float = 0.0
    divisor: float = 1.0    # integer data: full range of the type

    def read_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        C, H, W = self.shape
        dt = np.dtype(self.dtype)
        isz = dt.itemsize
        nrow = r1 - r0
        plain = dt.kind == "f" and isz == 4
        with open(self.path, "rb", buffering=0) as fh:
            for c in range(C):
                fh.seek(self.offset + (c * H + r0) * W * isz)
                if plain:
                    target = out[c]
                    _read_exact(fh, memoryview(target).cast("B"), self.path)
                    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
                        if sys.byteorder == "little":
                            target.byteswap(inplace=True)
                else:
                    raw = np.empty((nrow, W), dt)
                    _read_exact(fh, memoryview(raw).cast("B"), self.path)
                    if dt.kind in "iu":
                        phys = raw.astype(np.float64)
                        if self.bscale != 1.0 or self.bzero != 0.0:
                            phys = phys * self.bscale + self.bzero
                        out[c] = phys / self.divisor
                    else:
                        out[c] = raw
        if plain and (self.bscale != 1.0 or self.bzero != 0.0):
            out *= np.float32(self.bscale)
            out += np.float32(self.bzero)


def _read_exact(fh, mv: memoryview, path: str) -> None:
    got = 0
    total = len(mv)
    while got < total:
        k = fh.readinto(mv[got:])
        if not k:
            raise BadInputError(path, "truncated FITS data (file shorter than its header says)")
        got += k


class _ArraySource:
    """A frame held in memory (an :class:`AstroImage`)."""

    def __init__(self, image: AstroImage, name: str) -> None:
        data = image.data
        self.data = data[None] if data.ndim == 2 else data
        self.mask = image.mask
        self.shape = tuple(self.data.shape)
        self.path = name

    def read_rows(self, r0: int, r1: int, out: np.ndarray) -> None:
        out[...] = self.data[:, r0:r1]
        if self.mask is not None:
            bad = ~self.mask[r0:r1]
            if bad.any():
                out[:, bad] = np.nan


@dataclasses.dataclass
class _Frame:
    source: Any                 # _FileSource or _ArraySource
    name: str                   # path or label for messages
    header: Any                 # astropy Header (cleaned)
    history: list
    bayer: Optional[str]
    ndim: int                   # 2 or 3 as AstroImage would hold it


def _open_frame(item: Any, index: int, spill_dir: list) -> _Frame:
    """Wrap an AstroImage or open a file path as a frame source (headers only)."""
    if isinstance(item, AstroImage):
        name = item.path or f"frame {index}"
        return _Frame(_ArraySource(item, name), name, item.header, list(item.history),
                      item.bayer, item.data.ndim)
    path = Path(os.fspath(item))
    name = str(path)
    low = name.lower()
    from .io import FITS_EXTENSIONS

    if low.endswith(FITS_EXTENSIONS) and not low.endswith((".gz", ".fz")):
        frame = _open_fits(path)
        if frame is not None:
            return frame
    return _spill(path, spill_dir)


def _open_fits(path: Path) -> _Frame | None:
    """FITS layout of the first image HDU; None if it must be decoded (compressed)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    from .io import read_header
    from .io.fits import cfa_pattern_from_header

    header = read_header(path)       # checks existence, SIMPLE card, readability
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False, lazy_load_hdus=True,
                           do_not_scale_image_data=True) as hdul:
                for k, hdu in enumerate(hdul):
                    if isinstance(hdu, fits.CompImageHDU):
                        return None
                    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) \
                            and int(hdu.header.get("NAXIS", 0)) >= 2:
                        break
                else:
                    raise BadInputError(path, "no image data in any HDU")
                h = hdu.header
                offset = int(hdul.fileinfo(k)["datLoc"])
                from .io.fits import decode_history
                history = decode_history(h)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(path, f"unreadable FITS ({' '.join(str(exc).split())[:120]})") from None
    bitpix = int(h["BITPIX"])
    naxis = int(h["NAXIS"])
    dims = [int(h[f"NAXIS{i}"]) for i in range(naxis, 0, -1)]   # numpy order
    while len(dims) > 2 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 2:
        shape, ndim = (1, dims[0], dims[1]), 2
    elif len(dims) == 3 and dims[0] == 3:
        shape, ndim = tuple(dims), 3
    else:
        raise BadInputError(path, f"unsupported image dimensions {tuple(dims)} (need HxW or 3xHxW)")
    if bitpix not in _BITPIX:
        raise BadInputError(path, f"unsupported BITPIX {bitpix}")
    dt = np.dtype(_BITPIX[bitpix])
    need = offset + int(np.prod(shape)) * dt.itemsize
    if path.stat().st_size < need:
        raise BadInputError(path, f"truncated FITS file ({path.stat().st_size} bytes, "
                            f"needs {need})")
    src = _FileSource(str(path), offset, dt.str, shape, float(h.get("BSCALE", 1.0)),
                      float(h.get("BZERO", 0.0)), _INT_RANGE.get(bitpix, 1.0))
    bayer = cfa_pattern_from_header(header, shape[1]) if ndim == 2 else None
    return _Frame(src, str(path), header, history, bayer, ndim)


def _spill(path: Path, spill_dir: list) -> _Frame:
    """Decode a compressed/other-format frame once into a raw float32 temp file, so
    the tile pass can still read it by rows (bounded memory)."""
    from .io import read_image
    from .io.fits import read_fits

    if str(path).lower().endswith((".fit", ".fits", ".fts", ".fz", ".gz")):
        img = read_fits(path, check_finite=False)
    else:
        img = read_image(path)
    data = img.data[None] if img.data.ndim == 2 else img.data
    if not spill_dir:
        spill_dir.append(tempfile.mkdtemp(prefix="napari-astro-integrate-"))
    fd, tmp = tempfile.mkstemp(suffix=".f32", dir=spill_dir[0])
    with os.fdopen(fd, "wb") as fh:
        if img.mask is not None:
            data = np.where(img.mask[None], data, np.float32(np.nan)).astype(np.float32)
        np.ascontiguousarray(data, np.float32).tofile(fh)
    src = _FileSource(tmp, 0, np.dtype(np.float32).str, tuple(data.shape))
    return _Frame(src, str(path), img.header, list(img.history), img.bayer, img.data.ndim)


# =================================================================================
# statistics pass
# =================================================================================
_MAD_SIGMA = 1.482602218505602
_B3_LAYER1 = 0.889   # std of the first B3 a-trous layer of unit white noise (2-D)


@njit(cache=True, nogil=True)
def _b3_layer1(band):
    """First a-trous wavelet layer (data - B3-spline smoothing) of the interior
    ``[2:-2, 2:-2]`` of a 2-D float32 array; NaN propagates to its neighbours."""
    h, w = band.shape
    tmp = np.empty((h, w - 4), np.float32)
    c0 = np.float32(6.0 / 16.0)
    c1 = np.float32(4.0 / 16.0)
    c2 = np.float32(1.0 / 16.0)
    for y in range(h):
        for x in range(w - 4):
            tmp[y, x] = (c2 * (band[y, x] + band[y, x + 4]) + c1 * (band[y, x + 1] + band[y, x + 3])
                         + c0 * band[y, x + 2])
    out = np.empty((h - 4, w - 4), np.float32)
    for y in range(h - 4):
        for x in range(w - 4):
            sm = (c2 * (tmp[y, x] + tmp[y + 4, x]) + c1 * (tmp[y + 1, x] + tmp[y + 3, x])
                  + c0 * tmp[y + 2, x])
            out[y, x] = band[y + 2, x + 2] - sm
    return out


@njit(cache=True, nogil=True)
def _bwmv_sigma(x, med, mad):
    """sqrt of the biweight midvariance of ``x`` (finite float32) about ``med``."""
    num = 0.0
    den = 0.0
    k = 1.0 / (9.0 * mad)
    for j in range(x.size):
        d = np.float64(x[j]) - med
        u2 = (d * k) ** 2
        if u2 < 1.0:
            t = 1.0 - u2
            num += d * d * t ** 4
            den += t * (1.0 - 5.0 * u2)
    if den <= 0.0:
        return _MAD_SIGMA * mad
    return math.sqrt(x.size * num / (den * den))


def _mad_sigma(w: np.ndarray) -> float:
    """1.4826 * median absolute deviation from the median (finite samples)."""
    med = np.median(w)
    return float(_MAD_SIGMA * np.median(np.abs(w - med)))


def noise_estimate(data2d: np.ndarray) -> float:
    """Robust Gaussian noise sigma of a 2-D image (same units as the data).

    The MAD of the first B3-spline a-trous wavelet layer (a high-pass that removes
    gradients and nebulosity), scaled to sigma; stars barely move a median. NaN
    pixels are ignored; the 2-pixel border is not used.
    """
    d = np.ascontiguousarray(data2d, np.float32)
    if d.shape[0] < 6 or d.shape[1] < 6:
        return float("nan")
    w = _b3_layer1(d).ravel()
    w = w[np.isfinite(w)]
    if w.size < 16:
        return float("nan")
    return _mad_sigma(w) / _B3_LAYER1


def _location_scale(x: np.ndarray, estimator: str) -> tuple[float, float]:
    """Median and robust dispersion (sigma units) of finite float32 samples ``x``."""
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - np.float32(med))))
    if estimator == "mad" or mad == 0.0:
        return med, _MAD_SIGMA * mad
    return med, float(_bwmv_sigma(x, med, mad))


def _stripes(H: int) -> list[tuple[int, int]]:
    """Row bands sampled by the statistics pass: 8 bands of 16 rows spread evenly
    (the whole frame when it has at most 192 rows)."""
    if H <= 192:
        return [(0, H)]
    k, h = 8, 16
    out = []
    for i in range(k):
        c = int((i + 0.5) * H / k)
        r0 = min(max(0, c - h // 2), H - h)
        out.append((r0, r0 + h))
    return out


def _frame_statistics(frame: _Frame, estimator: str, need_noise: bool):
    """Per channel: location, scale, noise (arrays of shape (C,)) from row stripes.

    Every second column of the stripes is used for the medians: 128k samples per
    channel of a 2000-px-wide frame put the median and MAD within 0.5 % and halve
    the cost (this pass was 0.10 s CPU per 3x1500x2000 frame before, 0.02 s now).
    """
    C, H, W = frame.source.shape
    stripes = _stripes(H)
    bands = []
    for r0, r1 in stripes:
        band = np.empty((C, r1 - r0, W), np.float32)
        frame.source.read_rows(r0, r1, band)
        bands.append(band)
    step = 2 if W * sum(r1 - r0 for r0, r1 in stripes) > 100_000 else 1
    loc = np.empty(C)
    scale = np.empty(C)
    noise = np.full(C, np.nan)
    for c in range(C):
        x = np.concatenate([b[c, :, ::step].ravel() for b in bands])
        x = x[np.isfinite(x)]
        if x.size < 16:
            raise BadInputError(frame.name, "frame has almost no valid pixels (all NaN?)")
        loc[c], scale[c] = _location_scale(x, estimator)
        if need_noise:
            parts = [_b3_layer1(b[c])[:, ::step].ravel() for b in bands
                     if b.shape[1] >= 6 and b.shape[2] >= 6]
            w = np.concatenate(parts) if parts else np.empty(0, np.float32)
            w = w[np.isfinite(w)]
            if w.size >= 16:
                noise[c] = _mad_sigma(w) / _B3_LAYER1
    return loc, scale, noise


def _frame_meta(frame: _Frame, stats: Mapping | None, key: str) -> float:
    if stats is not None:
        for k in _META_KEYS[key]:
            if k in stats and stats[k] is not None:
                return float(stats[k])
    for k in _HEADER_KEYS[key]:
        v = frame.header.get(k) if frame.header is not None else None
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                pass
    raise BadInputError(frame.name, f"{key} weighting needs the frame's {key} "
                        f"(frame_stats or header {'/'.join(_HEADER_KEYS[key])})")


# =================================================================================
# integrate
# =================================================================================
@dataclasses.dataclass
class IntegrationResult:
    """What :func:`integrate` returns.

    Attributes
    ----------
    image : AstroImage
        float32 ``(H, W)`` or ``(3, H, W)`` in [0, 1]; header = keys common to all
        frames + ``NCOMBINE`` (+ ``LIVETIME`` when all frames have EXPTIME); history =
        the reference's + one ``pre.integrate`` line. ``mask`` is set (False) where no
        frame was valid, else None.
    low_map, high_map : ndarray or None
        float32 like ``image.data``: fraction of the valid frames rejected low / high
        at each pixel (None unless ``rejection_maps=True``).
    weights : ndarray (N,)
        Per-frame weight (mean over channels; max 1).
    channel_weights : ndarray (N, C)
    rejected_low, rejected_high : ndarray (N,)
        Fraction of each frame's valid pixels rejected low / high.
    locations, scales, noise : ndarray (N, C)
        Statistics of the raw frames (median, robust dispersion, noise sigma).
    norm_a, norm_b : ndarray (N, C)
        Normalisation ``y = a * x + b`` applied to each frame and channel.
    names : list of str
    log : list of str
        Human-readable lines (settings, tiles, per-frame weights and rejection).
    timings : dict
        Seconds of the statistics and combine passes.
    """

    image: AstroImage
    low_map: Optional[np.ndarray]
    high_map: Optional[np.ndarray]
    weights: np.ndarray
    channel_weights: np.ndarray
    rejected_low: np.ndarray
    rejected_high: np.ndarray
    locations: np.ndarray
    scales: np.ndarray
    noise: np.ndarray
    norm_a: np.ndarray
    norm_b: np.ndarray
    names: list
    log: list
    timings: dict
    tile_rows: int = 0


def plan_tiles(n_frames: int, shape: tuple, memory_limit: int | str, *, maps: bool = False,
               buffers: int = 2, target: int = 48 * 2**20) -> tuple[int, int]:
    """Rows per tile and the bytes of the fixed part for a stack.

    Parameters
    ----------
    n_frames : int
    shape : (C, H, W)
    memory_limit : int or str
        Budget for the output, the maps and the tile buffers (bytes or ``"2GB"``).
    maps : bool
        Full-size rejection maps are kept.
    buffers : int
        Tile buffers alive at once (2 when reading overlaps combining).
    target : int
        Largest tile buffer worth having (bytes): bigger tiles gain nothing and
        delay the overlap of reading and combining.

    Returns
    -------
    (rows, fixed_bytes)
    """
    limit = parse_memory(memory_limit)
    C, H, W = shape
    fixed = C * H * W * 4 + H * W + (2 * C * H * W * 4 if maps else 0)
    fixed += 8 * 2**20      # statistics samples, kernel scratch, headers
    per_row_buf = n_frames * C * W * 4
    per_row_out = C * W * (4 + 3 * 2)
    budget = limit - fixed
    rows = budget // (buffers * per_row_buf + per_row_out) if budget > 0 else 0
    if rows < 1:
        need = fixed + buffers * per_row_buf + per_row_out
        raise BadInputError("memory-limit", f"{_fmt_bytes(limit)} is too small for "
                            f"{n_frames} frames of {W}x{H}x{C}: at least {_fmt_bytes(need)} "
                            "is needed (output image + one row of every frame)")
    rows = int(min(rows, H, max(1, target // per_row_buf)))
    return rows, fixed


def _common_header(frames: list[_Frame], ref: int):
    from astropy.io import fits

    hdr = fits.Header()
    ref_h = frames[ref].header
    if ref_h is None:
        return hdr
    for card in ref_h.cards:
        key = card.keyword
        if not key or key in ("HISTORY", "COMMENT") or key in hdr:
            continue
        value = card.value
        same = True
        for f in frames:
            if f.header is None or key not in f.header or f.header[key] != value:
                same = False
                break
        if same:
            try:
                hdr.append((key, value, card.comment), end=True)
            except Exception:  # pragma: no cover - malformed card
                pass
    exps = []
    for f in frames:
        try:
            exps.append(float(f.header.get("EXPTIME", f.header.get("EXPOSURE"))))
        except (TypeError, ValueError, AttributeError):
            exps = None
            break
    hdr["NCOMBINE"] = (len(frames), "number of frames combined")
    if exps:
        hdr["LIVETIME"] = (float(sum(exps)), "[s] total exposure of the frames combined")
    return hdr


def integrate(frames: Sequence[AstroImage | str | os.PathLike], *, combine: str = "average",
              normalization: Normalization | None = None, weighting: Weighting | None = None,
              rejection: Rejection | None = None, memory_limit: str | int = "2GB",
              scheduler: Any = None, rejection_maps: bool = False, reference: int = 0,
              frame_stats: Sequence[Mapping[str, Any] | None] | None = None,
              progress: Progress | None = None, cancel: CancelToken | None = None
              ) -> IntegrationResult:
    """Stack registered frames with normalisation, weighting and rejection, tile by tile.

    Parameters
    ----------
    frames : sequence of AstroImage or path
        Registered frames on one pixel grid, ``(H, W)`` or ``(3, H, W)``. Files are
        read by rows (FITS: uncompressed data are read in place; other formats are
        decoded once into a temporary raw file). NaN pixels (files) and
        ``mask == False`` pixels (images) are outside the frame's footprint.
    combine : {"average", "median", "sum"}
        Weighted average of the kept values (default), their median, or their sum
        (mean of kept x number valid, rescaled by the maximum if it exceeds 1).
    normalization : Normalization, default AdditiveScaling()
    weighting : Weighting, default NoiseWeight()
    rejection : Rejection, default Winsorized(3, 3)
    memory_limit : str or int, default "2GB"
        Budget for our arrays (output, maps, tile buffers); tiles are sized from
        it and the number of frames, so peak memory does not grow with the stack.
    scheduler : str or distributed.Client, optional
        Address of a Dask distributed scheduler (or a Client): tiles run there as
        tasks. Workers must see the frame files at the same paths.
    rejection_maps : bool
        Return low/high rejection maps (fractions of valid frames).
    reference : int
        Index of the reference frame for normalisation and the output header.
    frame_stats : sequence of mappings, optional
        Per-frame metadata for FWHM/star-count weighting: ``{"fwhm": px,
        "n_stars": n}`` (default: header keys FWHM / NSTARS).
    progress, cancel
        See :mod:`core.progress`; called per frame (statistics) and per tile.

    Returns
    -------
    IntegrationResult

    Raises
    ------
    BadInputError
        Fewer than 2 frames (3 with rejection), frames of different sizes (naming
        the file), unreadable files, impossible normalisation, memory limit too small.
    """
    t_start = time.perf_counter()
    normalization = AdditiveScaling() if normalization is None else normalization
    weighting = NoiseWeight() if weighting is None else weighting
    rejection = Winsorized() if rejection is None else rejection
    rejection._check()
    if combine not in _COMBINE_CODES:
        raise BadInputError("combine", f"unknown combine {combine!r} (average, median, sum)")
    items = list(frames)
    n = len(items)
    if n < 2:
        raise BadInputError(None, f"integration needs at least 2 frames, found {n}")
    if n < rejection.min_frames:
        raise BadInputError(None, f"{rejection.name} rejection needs at least "
                            f"{rejection.min_frames} frames, found {n}")
    if n > 65535:
        raise BadInputError(None, f"at most 65535 frames per integration, found {n}")
    if not 0 <= reference < n:
        raise BadInputError("reference", f"reference index {reference} out of range 0..{n - 1}")
    if frame_stats is not None and len(frame_stats) != n:
        raise BadInputError("frame_stats", f"{len(frame_stats)} entries for {n} frames")
    limit = parse_memory(memory_limit)

    spill_dir: list = []
    try:
        opened = [_open_frame(it, i, spill_dir) for i, it in enumerate(items)]
        shape = opened[reference].source.shape
        for f in opened:
            if f.source.shape != shape:
                C, H, W = f.source.shape
                rC, rH, rW = shape
                raise BadInputError(f.name, f"size {W}x{H}x{C} differs from the reference "
                                    f"{rW}x{rH}x{rC} ({opened[reference].name})")
        C, H, W = shape
        rows, fixed = plan_tiles(n, shape, limit, maps=rejection_maps)
        return _integrate_opened(opened, shape, rows, limit, combine=combine,
                                 normalization=normalization, weighting=weighting,
                                 rejection=rejection, scheduler=scheduler,
                                 rejection_maps=rejection_maps, reference=reference,
                                 frame_stats=frame_stats, progress=progress, cancel=cancel,
                                 t_start=t_start)
    finally:
        if spill_dir:
            import shutil
            shutil.rmtree(spill_dir[0], ignore_errors=True)


def _integrate_opened(opened, shape, rows, limit, *, combine, normalization, weighting,
                      rejection, scheduler, rejection_maps, reference, frame_stats, progress,
                      cancel, t_start) -> IntegrationResult:
    n = len(opened)
    C, H, W = shape
    tiles = [(r0, min(H, r0 + rows)) for r0 in range(0, H, rows)]
    total_steps = n + len(tiles)
    log = [f"integrate: {n} frames of {W}x{H}x{C}, reference {reference} "
           f"({opened[reference].name}); combine {combine}, normalization "
           f"{normalization.name}, weighting {weighting.name}, rejection "
           f"{_describe_rejection(rejection)}",
           f"tiles: {len(tiles)} of {rows} rows (memory limit {_fmt_bytes(limit)})"]

    # --- statistics pass -------------------------------------------------------
    need_noise = isinstance(weighting, NoiseWeight)
    need_scale = not isinstance(normalization, (NoNormalization,))
    locs = np.empty((n, C))
    scales = np.empty((n, C))
    noise = np.full((n, C), np.nan)
    if need_noise or need_scale:
        def one(i):
            return _frame_statistics(opened[i], normalization.scale, need_noise)

        # file reads, numpy's partition and the numba wavelet release the GIL, so
        # frames are measured in parallel threads.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
            for i, (lo_, sc_, no_) in enumerate(ex.map(one, range(n))):
                locs[i], scales[i], noise[i] = lo_, sc_, no_
                report(progress, i + 1, total_steps, f"statistics {i + 1}/{n}", cancel)
    else:
        locs[:] = np.nan
        scales[:] = np.nan
        report(progress, n, total_steps, "statistics skipped", cancel)
    t_stats = time.perf_counter()

    A, B = normalization.coefficients(locs, scales, reference)
    for i in range(n):
        if not (np.all(np.isfinite(A[i])) and np.all(np.isfinite(B[i])) and np.all(A[i] > 0)):
            what = "median" if isinstance(normalization, Multiplicative) else "dispersion"
            raise BadInputError(opened[i].name, f"{normalization.name} normalization is "
                                f"impossible: the frame's {what} is zero or negative")

    if isinstance(weighting, NoiseWeight):
        sig = A * noise
        if not np.all(np.isfinite(sig) & (sig > 0)):
            bad = int(np.argmax(~(np.isfinite(sig) & (sig > 0)).all(axis=1)))
            raise BadInputError(opened[bad].name, "noise weighting: cannot measure the "
                                "frame's noise (constant or too small?)")
        Wt = 1.0 / sig ** 2
    elif isinstance(weighting, (FWHMWeight, StarCountWeight)):
        vals = np.array([_frame_meta(f, None if frame_stats is None else frame_stats[i],
                                     weighting.needs) for i, f in enumerate(opened)])
        if not np.all(vals > 0):
            bad = int(np.argmax(~(vals > 0)))
            raise BadInputError(opened[bad].name, f"{weighting.needs} must be > 0, got "
                                f"{vals[bad]}")
        per = (vals.min() / vals) ** 2 if isinstance(weighting, FWHMWeight) else vals
        Wt = np.repeat(per[:, None], C, axis=1).astype(np.float64)
    else:
        Wt = np.ones((n, C))
    Wt = Wt / Wt.max(axis=0, keepdims=True)
    plan = _Plan.build(n, C, rejection, combine, A=A, B=B, W=Wt)

    # --- tile pass ------------------------------------------------------------
    out = np.empty((C, H, W), np.float32)
    covered = np.zeros((H, W), bool)
    low_map = np.empty((C, H, W), np.float32) if rejection_maps else None
    high_map = np.empty((C, H, W), np.float32) if rejection_maps else None
    frv = np.zeros(n, np.int64)
    frl = np.zeros(n, np.int64)
    frh = np.zeros(n, np.int64)

    def place(r0, r1, res):
        o, nv, lc, hc, fv, fl, fh = res
        out[:, r0:r1] = o
        covered[r0:r1] = (nv > 0).any(axis=0)
        if rejection_maps:
            with np.errstate(invalid="ignore", divide="ignore"):
                den = np.maximum(nv, 1).astype(np.float32)
                np.divide(lc, den, out=low_map[:, r0:r1])
                np.divide(hc, den, out=high_map[:, r0:r1])
        frv[:] += fv
        frl[:] += fl
        frh[:] += fh

    if scheduler is None:
        _run_local(opened, plan, tiles, rows, place, progress, cancel, n, total_steps)
    else:
        _run_dask(opened, plan, tiles, place, scheduler, progress, cancel, n, total_steps)
    t_comb = time.perf_counter()

    # --- finish ------------------------------------------------------------------
    if combine == "sum":
        peak = float(out.max()) if out.size else 0.0
        if peak > 1.0:
            out *= np.float32(1.0 / peak)
            log.append(f"sum: rescaled by 1/{peak:.4g} to stay within [0, 1]")
    np.clip(out, 0.0, 1.0, out=out)
    data = out if opened[reference].ndim == 3 else out[0]
    if low_map is not None and opened[reference].ndim == 2:
        low_map, high_map = low_map[0], high_map[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rl = np.where(frv > 0, frl / np.maximum(frv, 1), 0.0)
        rh = np.where(frv > 0, frh / np.maximum(frv, 1), 0.0)
    wmean = Wt.mean(axis=1)
    header = _common_header(opened, reference)
    params = {"combine": combine, "normalization": normalization.to_dict(),
              "weighting": weighting.to_dict(), "rejection": rejection.to_dict(),
              "frames": n, "reference": reference}
    history = list(opened[reference].history) + [format_history(STEP_ID, params)]
    bayer = opened[reference].bayer
    if bayer is not None and any(f.bayer != bayer for f in opened):
        bayer = None
    image = AstroImage(data=data, header=header, history=history, bayer=bayer,
                       mask=None if covered.all() else covered)

    for i, f in enumerate(opened):
        chw = " ".join(f"{x:.3f}" for x in Wt[i]) if C > 1 else ""
        log.append(f"frame {i + 1:3d} {Path(f.name).name}: weight {wmean[i]:.3f}"
                   + (f" ({chw})" if chw else "")
                   + f", rejected low {100 * rl[i]:.3f}% high {100 * rh[i]:.3f}%")
    tot_v = max(int(frv.sum()), 1)
    log.append(f"rejected in all: low {100 * frl.sum() / tot_v:.3f}% "
               f"high {100 * frh.sum() / tot_v:.3f}%")
    timings = {"statistics": t_stats - t_start, "combine": t_comb - t_stats,
               "total": time.perf_counter() - t_start}
    log.append(f"time: statistics {timings['statistics']:.2f} s, combine "
               f"{timings['combine']:.2f} s")
    report(progress, total_steps, total_steps, "done", None)
    return IntegrationResult(image=image, low_map=low_map, high_map=high_map, weights=wmean,
                             channel_weights=Wt, rejected_low=rl, rejected_high=rh,
                             locations=locs, scales=scales, noise=noise, norm_a=A, norm_b=B,
                             names=[f.name for f in opened], log=log, timings=timings,
                             tile_rows=rows)


def _describe_rejection(rej: Rejection) -> str:
    if isinstance(rej, NoRejection):
        return "none"
    if isinstance(rej, GESD):
        return f"gesd (outliers {rej.outliers}, significance {rej.significance})"
    return f"{rej.name} (low {rej.low:g}, high {rej.high:g})"


def _run_local(opened, plan, tiles, rows, place, progress, cancel, n, total_steps) -> None:
    """Tiles on this machine: one thread reads the next band while numba combines."""
    C, H, W = opened[0].source.shape
    flats = [np.empty(n * C * rows * W, np.float32) for _ in range(2 if len(tiles) > 1 else 1)]

    def load(k, t):
        r0, r1 = tiles[t]
        buf = flats[k][: n * C * (r1 - r0) * W].reshape(n, C, r1 - r0, W)
        for i, f in enumerate(opened):
            f.source.read_rows(r0, r1, buf[i])
        return buf

    with ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(load, 0, 0)
        for t, (r0, r1) in enumerate(tiles):
            buf = fut.result()
            if t + 1 < len(tiles):
                fut = ex.submit(load, (t + 1) % len(flats), t + 1)
            place(r0, r1, _compute_tile(plan, buf, parallel=True))
            report(progress, n + t + 1, total_steps, f"tile {t + 1}/{len(tiles)}", cancel)


def _remote_tile(plan: _Plan, payload, r0: int, r1: int):
    """The Dask task: read (or receive) one band of every frame and combine it."""
    if isinstance(payload, np.ndarray):
        buf = payload
    else:
        C, H, W = payload[0].shape
        buf = np.empty((len(payload), C, r1 - r0, W), np.float32)
        for i, src in enumerate(payload):
            src.read_rows(r0, r1, buf[i])
    # serial kernel: Dask already runs one task per worker thread
    return _compute_tile(plan, buf, parallel=False)


def _run_dask(opened, plan, tiles, place, scheduler, progress, cancel, n, total_steps) -> None:
    """Tiles as a Dask graph on a distributed cluster (``scheduler`` = address or Client)."""
    import dask
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        files = all(isinstance(f.source, _FileSource) for f in opened)
        srcs = [f.source for f in opened] if files else None
        C, H, W = opened[0].source.shape
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = max(2, 2 * n_workers)   # bands in flight: bounds client + worker memory
        token = dask.base.tokenize(plan.A, plan.B, plan.W, plan.method, time.time())
        tile_of: dict = {}

        def task(t):
            r0, r1 = tiles[t]
            if files:   # workers read their band from the files themselves
                payload = srcs
            else:       # in-memory frames: ship only this band
                payload = np.empty((n, C, r1 - r0, W), np.float32)
                for i, f in enumerate(opened):
                    f.source.read_rows(r0, r1, payload[i])
            d = dask.delayed(_remote_tile, pure=False)(
                plan, payload, r0, r1, dask_key_name=f"integrate-tile-{t}-{token}")
            fut = client.compute(d)
            tile_of[fut.key] = t
            return fut

        pending = as_completed()
        nxt = 0
        while nxt < min(window, len(tiles)):
            pending.add(task(nxt))
            nxt += 1
        done = 0
        for fut in pending:
            t = tile_of.pop(fut.key)
            res = fut.result()
            fut.release()
            place(tiles[t][0], tiles[t][1], res)
            done += 1
            report(progress, n + done, total_steps, f"tile {done}/{len(tiles)} (dask)", cancel)
            if nxt < len(tiles):
                pending.add(task(nxt))
                nxt += 1
    finally:
        if own:
            client.close()
