"""Stretch steps, all under ``napari-astro stretch --method stf|ht|arcsinh|ghs``.

``post.stf`` (the default method) is the auto screen transfer function made
permanent through the histogram transformation; ``post.ht`` the histogram
transformation with explicit (or STF) shadows/midtones/highlights; ``post.arcsinh``
the colour-preserving arcsinh stretch; ``post.ghs`` Siril's generalised hyperbolic
stretch. The numerics live in :mod:`napari_astro.core.stretch`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["StfParams", "HtParams", "ArcsinhParams", "GhsParams"]


def _fmt_stf(stf) -> str:
    names = ("R", "G", "B") if len(stf) == 3 else ("",)
    if len(set(stf)) == 1:
        s, m, h = stf[0]
        return f"shadows {s:.5f}, midtones {m:.5f}, highlights {h:.5f}"
    return "; ".join(f"{n}: shadows {s:.5f}, midtones {m:.5f}, highlights {h:.5f}"
                     for n, (s, m, h) in zip(names, stf))


# --------------------------------------------------------------------------- STF
@dataclasses.dataclass(frozen=True)
class StfParams(StepParams):
    """Auto-stretch: the screen transfer function (PixInsight/Siril AutoSTF) applied permanently."""

    STEP_ID = "post.stf"
    TITLE = "Auto-stretch (STF)"
    shadows_clip: float = param(-2.8, min=-10.0, max=0.0, unit="sigma", step=0.1,
                                help="shadows clipping point from the median, in normalised MAD")
    target_background: float = param(0.25, min=0.01, max=0.9, step=0.01, unit="of full scale",
                                     help="stretched value of the background median")
    linked: bool = param(False, help="one stretch for all channels (keeps the colour balance) "
                                     "instead of one per channel")


def run_stf(image, params: StfParams, *, progress=None, cancel=None):
    from ...core.stretch import histogram_transform, stf_channel_parameters

    stf = stf_channel_parameters(image.data, linked=params.linked,
                                 shadows_clip=params.shadows_clip,
                                 target_background=params.target_background)
    data = histogram_transform(image.data, [p[0] for p in stf], [p[1] for p in stf],
                               [p[2] for p in stf], progress=progress, cancel=cancel)
    return StepResult(image.replace(data=data), extras={"stf": tuple(stf)})


def _stf_summary(result: StepResult) -> str:
    return "STF " + _fmt_stf(result.extras["stf"])


# --------------------------------------------------------------------------- HT
@dataclasses.dataclass(frozen=True)
class HtParams(StepParams):
    """Histogram transformation: shadows, midtones, highlights (one value for all channels or one per channel)."""

    STEP_ID = "post.ht"
    TITLE = "Histogram transformation"
    shadows: tuple = param((0.0,), unit="of full scale",
                           help="black point: one value, or R,G,B")
    midtones: tuple = param((0.5,), help="midtones balance (0.5 = linear): one value, or R,G,B")
    highlights: tuple = param((1.0,), unit="of full scale",
                              help="white point: one value, or R,G,B")
    auto: bool = param(False, help="take shadows and midtones from the auto-STF "
                                   "(shadows/midtones/highlights are then ignored)")
    linked: bool = param(False, help="with auto: one STF for all channels")

    def validate(self) -> None:
        for name in ("shadows", "midtones", "highlights"):
            values = getattr(self, name)
            if len(values) not in (1, 3):
                raise BadInputError(f"{self.STEP_ID}.{name}", f"give 1 or 3 values, not {len(values)}")
            for v in values:
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                    raise BadInputError(f"{self.STEP_ID}.{name}", f"{v!r} is not a number in [0, 1]")
        if any(not 0 < m < 1 for m in self.midtones):
            raise BadInputError(f"{self.STEP_ID}.midtones", "must be strictly between 0 and 1")
        n = max(len(self.shadows), len(self.highlights))
        s = self.shadows * (n // len(self.shadows))
        h = self.highlights * (n // len(self.highlights))
        if any(hi <= lo for lo, hi in zip(s, h)):
            raise BadInputError(f"{self.STEP_ID}.highlights", "must be above the shadows")


def ht_triplets(image, params: HtParams) -> tuple:
    """The (shadows, midtones, highlights) per channel that ``params`` means for ``image``."""
    from ...core.stretch import stf_channel_parameters

    n = image.channels
    if params.auto:
        return tuple(stf_channel_parameters(image.data, linked=params.linked))

    def per(values):
        if len(values) == 3 and n == 1:
            raise BadInputError(image.path or "image", "3 values given for a grayscale image")
        return [float(values[0])] * n if len(values) == 1 else [float(v) for v in values]

    return tuple(zip(per(params.shadows), per(params.midtones), per(params.highlights)))


def run_ht(image, params: HtParams, *, progress=None, cancel=None):
    from ...core.stretch import histogram_transform

    trip = ht_triplets(image, params)
    data = histogram_transform(image.data, [t[0] for t in trip], [t[1] for t in trip],
                               [t[2] for t in trip], progress=progress, cancel=cancel)
    return StepResult(image.replace(data=data), extras={"stf": trip})


def _ht_summary(result: StepResult) -> str:
    return "HT " + _fmt_stf(result.extras["stf"])


# --------------------------------------------------------------------------- arcsinh
@dataclasses.dataclass(frozen=True)
class ArcsinhParams(StepParams):
    """Arcsinh stretch that keeps colour ratios (one factor per pixel from a luminance)."""

    STEP_ID = "post.arcsinh"
    TITLE = "Arcsinh stretch"
    stretch: float = param(50.0, min=1, max=1000, help="stretch factor (the arcsinh's beta)")
    black_point: float = param(0.0, min=0, max=0.2, step=0.001, unit="of full scale",
                               help="black point subtracted first", decimals=4)
    luminance: Literal["rec709", "mean"] = param(
        "rec709", help="luminance the factor comes from: rec709 (Siril's human-weighted) "
                       "or mean (Siril's default)")
    protect_highlights: bool = param(True, help="scale a pixel so no channel exceeds 1 "
                                                "(keeps its colour) instead of clipping")


def run_arcsinh(image, params: ArcsinhParams, *, progress=None, cancel=None):
    from ...core.stretch import arcsinh_stretch

    data = arcsinh_stretch(image.data, stretch=params.stretch, black_point=params.black_point,
                           luminance=params.luminance,
                           protect_highlights=params.protect_highlights,
                           progress=progress, cancel=cancel)
    return image.replace(data=data)


# --------------------------------------------------------------------------- GHS
@dataclasses.dataclass(frozen=True)
class GhsParams(StepParams):
    """Generalised hyperbolic stretch (Siril's GHS: D, b, SP, LP, HP)."""

    STEP_ID = "post.ghs"
    TITLE = "Generalised hyperbolic stretch"
    D: float = param(2.0, min=0, max=10, step=0.1, label="D (stretch)",
                     help="stretch factor (logarithmic: the curve's slope at SP is exp(D))")
    b: float = param(0.0, min=-5, max=15, step=0.5, label="b (local intensity)",
                     help="local stretch intensity: higher concentrates the contrast around SP")
    SP: Optional[float] = param(None, min=0, max=1, unit="of full scale", label="SP (symmetry point)",
                                help="symmetry point, where contrast is added most; blank/auto: "
                                     "the luminance median (the sky background)")
    LP: float = param(0.0, min=0, max=1, unit="of full scale", label="LP (shadow protection)",
                      help="shadow protection point: linear below it (<= SP)")
    HP: float = param(1.0, min=0, max=1, unit="of full scale", label="HP (highlight protection)",
                      help="highlight protection point: linear above it (>= SP)")
    colour: Literal["independent", "human", "even"] = param(
        "independent", help="independent: each channel on its own (Siril's default); human/even: "
                            "one factor from a Rec.709/even-weighted luminance (keeps colour)")

    def validate(self) -> None:
        if self.SP is not None and not self.LP <= self.SP:
            raise BadInputError(f"{self.STEP_ID}.LP", f"{self.LP:g} is above SP {self.SP:g}")
        if self.SP is not None and not self.SP <= self.HP:
            raise BadInputError(f"{self.STEP_ID}.HP", f"{self.HP:g} is below SP {self.SP:g}")
        if self.LP > self.HP:
            raise BadInputError(f"{self.STEP_ID}.HP", f"{self.HP:g} is below LP {self.LP:g}")


def ghs_symmetry_point(image, params: GhsParams) -> float:
    """SP as given, or the median of the luminance (clamped into [LP, HP])."""
    import numpy as np

    from ...core.stretch import robust_stats

    if params.SP is not None:
        return float(params.SP)
    med, _ = robust_stats(np.clip(image.luminance(), 0.0, 1.0))
    return float(min(max(med, params.LP), params.HP))


def run_ghs(image, params: GhsParams, *, progress=None, cancel=None):
    from ...core.stretch import ghs_stretch

    sp = ghs_symmetry_point(image, params)
    data = ghs_stretch(image.data, D=params.D, b=params.b, SP=sp, LP=params.LP, HP=params.HP,
                       colour=params.colour, progress=progress, cancel=cancel)
    messages = [] if params.SP is not None else [f"GHS symmetry point SP = {sp:.5f} (luminance median)"]
    return StepResult(image.replace(data=data), extras={"SP": sp}, messages=messages)


# stf first: it is the command's default method.
STF_STEP = define_step(StfParams, run_stf, command="stretch", method="stf", summary=_stf_summary)
HT_STEP = define_step(HtParams, run_ht, command="stretch", method="ht", summary=_ht_summary)
ARCSINH_STEP = define_step(ArcsinhParams, run_arcsinh, command="stretch", method="arcsinh")
GHS_STEP = define_step(GhsParams, run_ghs, command="stretch", method="ghs")
