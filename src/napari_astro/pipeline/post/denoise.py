"""The noise-reduction steps: ``napari-astro denoise IN OUT [--method mlt|tgv]``.

* ``post.mlt`` (the default method): PixInsight's MultiscaleLinearTransform noise
  reduction, per-layer thresholds of the starlet (B3 a trous) transform in units of
  each layer's noise (:func:`napari_astro.core.wavelets.mlt_denoise`).
* ``post.tgv``: second-order total generalised variation denoising, primal-dual
  solver (:func:`napari_astro.core.tgv.tgv_denoise`).

Both work on linear data (and on stretched data, e.g. TGV late in the default recipe
through the inverted luminance mask): the noise is estimated from the image itself,
so the defaults suit a faint and a bright stack alike. A mask is applied by
:func:`napari_astro.pipeline.registry.run_step` like for every step.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import numpy as np

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["MLTParams", "TGVParams", "MLT_STEP", "TGV_STEP", "summary_line"]


@dataclasses.dataclass(frozen=True)
class MLTParams(StepParams):
    """Multiscale linear transform noise reduction (starlet layers thresholded in units of their noise)."""

    STEP_ID = "post.mlt"
    TITLE = "Wavelet noise reduction (MLT)"
    layers: int = param(4, min=1, max=8, help="wavelet layers treated (scales 1, 2, 4, ... px); "
                                               "coarser structure is left alone")
    thresholds: tuple = param((3.0, 2.0, 1.0, 0.5), unit="layer noise sigma",
                              help="threshold per layer, finest first (missing layers "
                                   "repeat the last value)")
    amounts: tuple = param((1.0,), help="noise reduction per layer, 0..1, finest first "
                                        "(missing layers repeat the last value)")
    iterations: int = param(1, min=1, max=10, help="times the thresholding is applied "
                                                   "to each layer")
    mode: Literal["garrote", "soft", "hard"] = param(
        "garrote", help="shrinkage of the coefficients above the threshold: garrote "
                        "(keeps stars), soft (smoothest), hard (keeps everything above)")
    noise: Optional[float] = param(None, min=0, max=1, unit="data units", advanced=True,
                                   help="noise sigma of the image (blank: estimated "
                                        "per channel from the data)")

    def validate(self) -> None:
        for name in ("thresholds", "amounts"):
            values = getattr(self, name)
            where = f"{self.STEP_ID}.{name}"
            if not values:
                raise BadInputError(where, "give at least one value")
            if len(values) > self.layers:
                raise BadInputError(where, f"{len(values)} values for {self.layers} layers")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    raise BadInputError(where, f"{v!r} is not a number")
            if name == "thresholds" and any(v < 0 or v > 20 for v in values):
                raise BadInputError(where, "thresholds must be in 0..20 layer sigmas")
            if name == "amounts" and any(v < 0 or v > 1 for v in values):
                raise BadInputError(where, "amounts must be in 0..1")
            object.__setattr__(self, name, tuple(float(v) for v in values))

    def per_layer(self, name: str) -> tuple[float, ...]:
        """``thresholds`` or ``amounts`` for each of the ``layers`` layers."""
        values = getattr(self, name)
        return tuple(values) + (values[-1],) * (self.layers - len(values))


@dataclasses.dataclass(frozen=True)
class TGVParams(StepParams):
    """TGV denoise: second-order total generalised variation (smooth gradients, no staircasing)."""

    STEP_ID = "post.tgv"
    TITLE = "TGV denoise"
    strength: float = param(1.0, min=0.01, max=20, step=0.1, decimals=2, unit="noise sigma",
                            help="regularisation weight alpha1 (1 / data-fidelity lambda); "
                                 "higher smooths more")
    edge_protection: float = param(1.5, min=0, max=100, step=0.1, decimals=2,
                                   unit="noise sigma per px",
                                   help="gradient of the smoothed image at which smoothing "
                                        "is halved (lower protects more edges and stars; "
                                        "0 = off)")
    smoothness: float = param(2.0, min=0.05, max=20, step=0.1, decimals=2,
                              help="alpha0/alpha1: how stiff the fitted slopes are (high: "
                                   "towards plain TV's flat patches)")
    iterations: int = param(50, min=1, max=5000, help="primal-dual iterations")
    channels: Literal["all", "luminance"] = param(
        "all", help="denoise every channel, or only the luminance (3x faster; colour "
                    "ratios kept, colour noise stays)")
    noise: Optional[float] = param(None, min=0, max=1, unit="data units", advanced=True,
                                   help="noise sigma of the image (blank: estimated "
                                        "per channel from the data)")


def _keep_range(out: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] widened to the input's own range: no new out-of-range values
    (a smoothed background near 0 would otherwise dip below it)."""
    with np.errstate(invalid="ignore"):
        # fmin/fmax skip NaN without the copy that data[np.isfinite(data)] makes
        # (288 MB for a 24 Mpx colour image)
        dmin = float(np.fmin.reduce(data, axis=None))
        dmax = float(np.fmax.reduce(data, axis=None))
    if not (np.isfinite(dmin) and np.isfinite(dmax)):
        return out
    np.clip(out, min(0.0, dmin), max(1.0, dmax), out=out)
    return out


def _noise_summary(before, after) -> str:
    fmt = lambda xs: "/".join(f"{x:.3g}" for x in xs)  # noqa: E731
    return f"fine-scale noise sigma (first wavelet layer) {fmt(before)} -> {fmt(after)}"


def _noises(data: np.ndarray) -> tuple[float, ...]:
    from ...core.wavelets import image_noise

    planes = data[None] if data.ndim == 2 else data
    return tuple(image_noise(np.ascontiguousarray(p)) for p in planes)


def run_mlt(image, params: MLTParams, *, progress=None, cancel=None) -> StepResult:
    from ...core.wavelets import mlt_denoise

    data = mlt_denoise(image.data, thresholds=params.per_layer("thresholds"),
                       amounts=params.per_layer("amounts"), iterations=params.iterations,
                       mode=params.mode, noise=params.noise, progress=progress, cancel=cancel)
    data = _keep_range(data, image.data)
    return StepResult(image.replace(data=data),
                      extras={"noise": _noises(image.data), "noise_after": _noises(data)})


def run_tgv(image, params: TGVParams, *, progress=None, cancel=None) -> StepResult:
    from ...core.tgv import tgv_denoise

    data = tgv_denoise(image.data, strength=params.strength,
                       edge_protection=params.edge_protection, smoothness=params.smoothness,
                       iterations=params.iterations, channels=params.channels,
                       noise=params.noise, progress=progress, cancel=cancel)
    data = _keep_range(data, image.data)
    return StepResult(image.replace(data=data),
                      extras={"noise": _noises(image.data), "noise_after": _noises(data)})


def summary_line(result: StepResult) -> str:
    """One line: the fine-scale noise per channel before -> after."""
    ex = result.extras
    return _noise_summary(ex.get("noise", ()), ex.get("noise_after", ()))


# MLT first: it is the command's default method.
MLT_STEP = define_step(MLTParams, run_mlt, command="denoise", method="mlt", summary=summary_line)
TGV_STEP = define_step(TGVParams, run_tgv, command="denoise", method="tgv", summary=summary_line)
