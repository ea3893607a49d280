"""Integration (stacking): normalisation, weighting, rejection, tiled combine.

STUB API (the integration issue replaces the internals, keeping these names and
signatures; calibration already calls :func:`combine_stack` for masters).

Strategies are objects (STYLE.md convention 2)::

    integrate(frames, rejection=Winsorized(low=3, high=3), weighting=NoiseWeight(),
              normalization=AdditiveScaling())
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

__all__ = [
    "Rejection", "NoRejection", "SigmaClip", "Winsorized", "LinearFit", "Percentile",
    "GESD", "MinMax", "rejection_from_name",
    "combine_stack",
]


# --- rejection strategies -----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rejection:
    """Base rejection strategy: thresholds in units of the robust sigma."""

    low: float = 3.0
    high: float = 3.0
    min_frames: int = 3  # fewer frames than this is bad input when rejecting


@dataclasses.dataclass(frozen=True)
class NoRejection(Rejection):
    min_frames: int = 1


@dataclasses.dataclass(frozen=True)
class SigmaClip(Rejection):
    iterations: int = 10


@dataclasses.dataclass(frozen=True)
class Winsorized(Rejection):
    iterations: int = 10


@dataclasses.dataclass(frozen=True)
class LinearFit(Rejection):
    iterations: int = 10


@dataclasses.dataclass(frozen=True)
class Percentile(Rejection):
    low: float = 0.2   # fraction of the median
    high: float = 0.1


@dataclasses.dataclass(frozen=True)
class GESD(Rejection):
    outliers: float = 0.3   # max fraction of outliers
    significance: float = 0.05


@dataclasses.dataclass(frozen=True)
class MinMax(Rejection):
    low: float = 1   # number of lowest values rejected
    high: float = 1


_BY_NAME = {"none": NoRejection, "sigma": SigmaClip, "winsorized": Winsorized,
            "linear-fit": LinearFit, "percentile": Percentile, "gesd": GESD, "minmax": MinMax}


def rejection_from_name(name: str, low: float | None = None, high: float | None = None) -> Rejection:
    cls = _BY_NAME[name]
    kw = {}
    if low is not None:
        kw["low"] = low
    if high is not None:
        kw["high"] = high
    return cls(**kw)


def combine_stack(stack: np.ndarray | Sequence[np.ndarray], *, rejection: Rejection | None = None,
                  combine: str = "average") -> np.ndarray:
    """Combine an in-memory stack ``(N, ...)`` pixel by pixel with rejection.

    STUB: plain numpy Winsorized/sigma clipping. Returns float32 of shape ``stack[0]``.
    """
    arr = np.asarray(stack, dtype=np.float32)
    rejection = rejection or Winsorized()
    if isinstance(rejection, NoRejection) or arr.shape[0] < 3:
        return (np.median(arr, axis=0) if combine == "median" else arr.mean(axis=0)).astype(np.float32)
    data = arr.copy()
    mask = np.ones(arr.shape, bool)
    for _ in range(10):
        m = np.where(mask, data, np.nan)
        med = np.nanmedian(m, axis=0)
        sd = np.nanstd(m, axis=0)
        new = mask & (data >= med - rejection.low * sd) & (data <= med + rejection.high * sd)
        if (new == mask).all():
            break
        mask = new
    m = np.where(mask, arr, np.nan)
    out = np.nanmedian(m, axis=0) if combine == "median" else np.nanmean(m, axis=0)
    return np.nan_to_num(out).astype(np.float32)
