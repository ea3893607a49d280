"""The statistics pass of integration: location, scale and noise of every frame and
channel from a few row stripes, and the per-frame metadata (FWHM, star count) that
weightings need."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import BadInputError
from ..io.rows import RowFrame
from ..stats import B3_LAYER1, MAD_SIGMA, b3_layer1, bwmv_sigma
from .kernels import select_median


_META_KEYS = {"fwhm": ("fwhm", "FWHM"), "n_stars": ("n_stars", "nstars", "stars", "NSTARS")}
_HEADER_KEYS = {"fwhm": ("FWHM",), "n_stars": ("NSTARS", "STARCNT")}


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


def _location_scale(x: np.ndarray, estimator: str) -> tuple[float, float]:
    """:func:`core.stats.location_scale` (same values bit for bit) with the medians
    by :func:`.kernels.select_median`, 5x faster than np.median's partition (0.33
    against 1.74 ms for 123k samples, thread CPU): the statistics pass was mostly
    those medians."""
    x = np.ascontiguousarray(x, np.float32)
    m32 = select_median(x, np.float32(0.0), False)
    med = float(m32)
    mad = float(select_median(x, np.float32(med), True))
    if estimator == "mad" or mad == 0.0:
        return med, MAD_SIGMA * mad
    return med, float(bwmv_sigma(x, med, mad))


def _wavelet_noise(layer1: np.ndarray) -> float:
    """:func:`core.stats.wavelet_noise` (same values) with :func:`select_median`."""
    w = np.asarray(layer1).ravel()
    w = np.ascontiguousarray(w[np.isfinite(w)], np.float32)
    if w.size < 16:
        return float("nan")
    # np.float32 scalars, as np.median returns (MAD_SIGMA * mad is float32 arithmetic)
    med = np.float32(select_median(w, np.float32(0.0), False))
    mad = np.float32(select_median(w, med, True))
    return float(MAD_SIGMA * mad) / B3_LAYER1


def _frame_statistics(frame: RowFrame, estimator: str, need_noise: bool):
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
            parts = [b3_layer1(b[c])[:, ::step].ravel() for b in bands
                     if b.shape[1] >= 6 and b.shape[2] >= 6]
            if parts:
                noise[c] = _wavelet_noise(np.concatenate(parts))
    return loc, scale, noise


def _frame_meta(frame: RowFrame, stats: Mapping | None, key: str) -> float:
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
