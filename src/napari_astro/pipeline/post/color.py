"""The colour calibration step (``post.color``): neutralise the background, then white
balance by the average star (basic) or by catalogue star colours (photometric, offline:
plate solve + the shipped Hipparcos/Tycho catalogue).

CLI: ``napari-astro color IN OUT [--method photometric|basic|neutralize] [--white
g2v|galaxy] [--region X0,Y0,X1,Y1]``. The numerics live in :mod:`napari_astro.core.color`
and :mod:`napari_astro.core.solve`; a photometric run writes the plate solution (WCS)
into the output header.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["ColorParams", "run_color", "STEP"]


@dataclasses.dataclass(frozen=True)
class ColorParams(StepParams):
    """Colour calibration: neutral background and white balance (photometric, basic or background only)."""

    STEP_ID = "post.color"
    TITLE = "Colour calibration"
    method: Literal["photometric", "basic", "neutralize"] = param(
        "photometric", help="photometric: plate solve and catalogue star colours; basic: the "
                            "average star made white; neutralize: background only")
    white: Literal["g2v", "galaxy"] = param(
        "g2v", help="white reference of the photometric method: a G2V (solar) star or the "
                    "average spiral galaxy")
    min_stars: int = param(8, min=3, max=500, advanced=True,
                           help="catalogue stars needed by the photometric fit (fewer: basic)")
    solve_timeout: float = param(60.0, min=5.0, max=600.0, unit="s", advanced=True,
                                 help="plate-solve time limit")
    fallback: Literal["none", "basic"] = param(
        "none", help="when the photometric method's plate solve fails: none (stop with the "
                     "error) or basic (calibrate on the average star and say so; the "
                     "default recipe's choice)")


def run_color(image, params: ColorParams, *, progress=None, cancel=None, region=None, points=None):
    """Run :func:`napari_astro.core.color.calibrate_color`.

    Inputs: ``region`` ((y0, x0, y1, x1) box of background) or ``points`` ((N, 2)
    row/col background samples), both optional.
    extras: ``"factors"`` (k_R, k_G, k_B), ``"levels"`` (background per channel before),
    ``"stars"`` ((N, 2) row/col of the stars used), ``"star_bv"``, ``"method"`` (the
    method actually used), ``"solution"`` (PlateSolution or None).
    """
    from ...core.color import calibrate_color
    from ...core.solve import write_wcs

    kwargs = dict(white=params.white, region=region, points=points, min_stars=params.min_stars,
                  timeout=params.solve_timeout, progress=progress, cancel=cancel)
    fell_back = []
    try:
        res = calibrate_color(image, method=params.method, **kwargs)
    except BadInputError as exc:
        # A field the solver cannot place (a simulated sky, clouds, wrong header
        # position) still gets a white balance when the caller asked for it.
        if params.method != "photometric" or params.fallback != "basic":
            raise
        res = calibrate_color(image, method="basic", **kwargs)
        fell_back = [f"photometric calibration fell back to basic: {exc.problem}"]
    header = image.header
    if res.solution is not None:
        header = write_wcs(header, res.solution)
    out = image.replace(data=res.data, header=header)
    extras = {"factors": res.factors, "levels": res.levels, "stars": res.stars,
              "star_bv": res.star_bv, "method": res.method, "solution": res.solution,
              "factor_errors": res.factor_errors}
    return StepResult(out, extras=extras, messages=fell_back + list(res.messages))


def _add_cli_arguments(group) -> None:
    group.add_argument("--region", default=None, metavar="X0,Y0,X1,Y1",
                       help="background box for neutralisation (pixels, X1/Y1 exclusive); "
                            "default: the whole image's sigma-clipped background")


def _cli_inputs(args, image) -> dict:
    text = getattr(args, "region", None)
    if not text:
        return {}
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in str(text).split(","))
    except ValueError:
        raise BadInputError("--region", f"{text!r} is not four numbers X0,Y0,X1,Y1") from None
    h, w = image.shape2d
    if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise BadInputError("--region", f"box {x0},{y0},{x1},{y1} is empty or outside the "
                                        f"{w}x{h} image")
    return {"region": (y0, x0, y1, x1)}


def _summary(result: StepResult) -> str:
    k = result.extras["factors"]
    lv = result.extras["levels"]
    return (f"colour ({result.extras['method']}): factors R {k[0]:.4f} G {k[1]:.4f} B {k[2]:.4f}; "
            f"background levels before R {lv[0]:.5g} G {lv[1]:.5g} B {lv[2]:.5g}")


STEP = define_step(ColorParams, run_color, command="color", inputs=("region?", "points?"),
                   color_only=True, add_cli_arguments=_add_cli_arguments,
                   cli_inputs=_cli_inputs, summary=_summary)
