"""The ``post.curves`` step: ``napari-astro curves IN OUT [--saturation 1.3]
[--rgb 0.25:0.2,0.75:0.85] [--lightness ...] [--mask luminance|inverted]``.

One step holds the whole curves definition (as PixInsight's CurvesTransformation
does): an RGB/K curve, R, G, B curves, a CIE L* curve and a saturation factor, applied
in that order (see :mod:`napari_astro.core.curves`). Each curve is a flat tuple of
control points ``x1, y1, x2, y2, ...`` in [0, 1] (``"x:y"`` strings are accepted on
input and stored as numbers), so a recipe holds it as ``rgb = [0.25, 0.2, 0.75, 0.85]``
and the HISTORY line reads back into the same dataclass. The seed's two saturation
steps are::

    [[step]]                          [[step]]
    id = "post.curves"                id = "post.curves"
    mask = "luminance"                mask = "inverted"
    saturation = 1.3                  saturation = 0.7
"""

from __future__ import annotations

import dataclasses

from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["CurvesParams", "CURVE_FIELDS", "STEP"]

#: The curve fields, in the order they are applied.
CURVE_FIELDS = ("rgb", "red", "green", "blue", "lightness")

_POINTS_HELP = "control points x1,y1,x2,y2,... (or x:y,x:y) in 0..1, x increasing; empty = none"


@dataclasses.dataclass(frozen=True)
class CurvesParams(StepParams):
    """Curves (monotone splines through control points) on RGB/K, R, G, B, L* and saturation."""

    STEP_ID = "post.curves"
    TITLE = "Curves"
    # advanced: in the widget the curve editor draws them; the text fields show the same
    rgb: tuple = param((), help="RGB/K curve (all channels): " + _POINTS_HELP, advanced=True)
    red: tuple = param((), help="red curve: " + _POINTS_HELP, advanced=True)
    green: tuple = param((), help="green curve: " + _POINTS_HELP, advanced=True)
    blue: tuple = param((), help="blue curve: " + _POINTS_HELP, advanced=True)
    lightness: tuple = param((), help="CIE L* curve (L*/100): " + _POINTS_HELP, advanced=True)
    saturation: float = param(1.0, min=0, max=4, step=0.05, decimals=2,
                              help="chroma factor at constant L* and hue (1 = none, "
                                   "1.3 = 30 percent more, below 1 desaturates)")

    def validate(self) -> None:
        from ...core.curves import parse_points

        for name in CURVE_FIELDS:
            pts = parse_points(getattr(self, name), where=f"{self.STEP_ID}.{name}")
            # Stored canonically as flat floats: "0.5:0.6" and (0.5, 0.6) are one curve.
            object.__setattr__(self, name, tuple(float(v) for v in pts.ravel()))


def run_curves(image, params: CurvesParams, *, progress=None, cancel=None):
    from ...core.curves import apply_curves

    out, messages = apply_curves(image, rgb=params.rgb, red=params.red, green=params.green,
                                 blue=params.blue, lightness=params.lightness,
                                 saturation=params.saturation, progress=progress, cancel=cancel)
    return StepResult(out, messages=messages)


STEP = define_step(CurvesParams, run_curves, command="curves")
