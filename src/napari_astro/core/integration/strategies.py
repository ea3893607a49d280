"""Integration strategies as objects (STYLE.md convention 2): rejection, normalisation
and weighting, each a frozen dataclass with a stable name, ``to_dict`` for HISTORY,
and a ``*_from_name`` constructor for the CLI."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from ..errors import BadInputError

__all__ = [
    "Rejection", "NoRejection", "SigmaClip", "Winsorized", "LinearFit", "Percentile",
    "GESD", "MinMax", "rejection_from_name",
    "Normalization", "NoNormalization", "Additive", "Multiplicative", "AdditiveScaling",
    "normalization_from_name",
    "Weighting", "NoWeight", "NoiseWeight", "FWHMWeight", "StarCountWeight",
    "weighting_from_name",
]


def _lookup(table: dict, aliases: dict, option: str, name: str) -> type:
    """The class ``table`` holds for CLI name ``name`` (case, ``_``/``-`` and the
    ``aliases`` folded); :class:`BadInputError` naming ``option`` otherwise."""
    key = str(name).strip().lower().replace("_", "-")
    key = aliases.get(key, key)
    if key not in table:
        raise BadInputError(option, f"unknown {option} {name!r} (known: {', '.join(table)})")
    return table[key]


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
    cls = _lookup(_BY_NAME, {"winsorised": "winsorized", "linear": "linear-fit",
                             "linearfit": "linear-fit", "min-max": "minmax",
                             "sigma-clip": "sigma"}, "rejection", name)
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
    return _lookup(_NORM_BY_NAME, {"addscale": "additive-scaling",
                                   "additive+scaling": "additive-scaling",
                                   "mul": "multiplicative", "add": "additive"},
                   "normalization", name)()


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
    ``sigma_i`` from the MAD of the first wavelet layer (see :func:`core.stats.noise_estimate`)."""

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
    return _lookup(_WEIGHT_BY_NAME, {"star-count": "stars", "nstars": "stars"}, "weighting",
                   name)()


def _describe_rejection(rej: Rejection) -> str:
    if isinstance(rej, NoRejection):
        return "none"
    if isinstance(rej, GESD):
        return f"gesd (outliers {rej.outliers}, significance {rej.significance})"
    return f"{rej.name} (low {rej.low:g}, high {rej.high:g})"
