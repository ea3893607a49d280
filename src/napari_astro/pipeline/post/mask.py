"""The ``post.mask`` step (``napari-astro mask IN OUT --type luminance|inverted|stars``)
and the named masks every other step understands (``--mask luminance``, recipe
``mask = "inverted"``).

The step's output is the mask itself: an ``(H, W)`` float32 image in [0, 1] (write it
to FITS and give it to another step as ``--mask FILE``, or show it in napari as an
overlay and pick it in any step's mask picker).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import numpy as np

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["MaskParams", "make_mask", "NAMED_MASKS", "STEP"]


@dataclasses.dataclass(frozen=True)
class MaskParams(StepParams):
    """Make a mask (luminance, inverted luminance, stars) as an (H, W) image in 0..1."""

    STEP_ID = "post.mask"
    TITLE = "Mask"
    type: Literal["luminance", "inverted", "stars"] = param(
        "luminance", help="luminance: high on bright parts; inverted: 1 - luminance; "
                          "stars: soft discs over the detected stars")
    blur: float = param(2.0, min=0, max=100, unit="px", decimals=1,
                        help="Gaussian blur sigma of the luminance mask")
    low: Optional[float] = param(None, min=0, max=1, unit="of stretched level",
                                 help="level mapped to 0 (auto: the sky median)")
    high: Optional[float] = param(None, min=0, max=1, unit="of stretched level",
                                  help="level mapped to 1 (auto: the 99.5th percentile)")
    gamma: float = param(1.0, min=0.05, max=20, decimals=2,
                         help="levels gamma (below 1 widens the mask)")
    star_sigma: float = param(5.0, min=1, max=100, unit="sigma",
                              help="star detection threshold")
    star_size: float = param(1.25, min=0.2, max=10, decimals=2,
                             help="star disc dilation factor")
    softness: float = param(0.5, min=0, max=3, decimals=2, unit="of radius",
                            help="width of the star discs' soft edge")
    max_stars: int = param(5000, min=1, max=100000, help="at most this many stars",
                           advanced=True)

    def validate(self) -> None:
        if self.low is not None and self.high is not None and not self.high > self.low:
            raise BadInputError(f"{self.STEP_ID}.high",
                                f"{self.high:g} must be above low ({self.low:g})")


def make_mask(image, params: MaskParams | None = None) -> np.ndarray:
    """The ``(H, W)`` float32 mask in [0, 1] that ``params`` describe, from ``image``."""
    from ...core import masks

    p = params if params is not None else MaskParams()
    if p.type == "stars":
        return masks.star_mask(image, sigma=p.star_sigma, size=p.star_size,
                               softness=p.softness, max_stars=p.max_stars)
    m = masks.luminance_mask(image, blur=p.blur, low=p.low, high=p.high, gamma=p.gamma)
    return masks.invert_mask(m, out=m) if p.type == "inverted" else m


def run_mask(image, params: MaskParams, *, progress=None, cancel=None):
    from ...core.progress import report

    report(progress, 0, 1, f"{params.type} mask")
    data = make_mask(image, params)
    report(progress, 1, 1, "")
    out = image.replace(data=data, bayer=None)
    cover = float(np.mean(data))
    return StepResult(out, extras={"mask": data},
                      messages=[f"{params.type} mask: mean {cover:.3f}, "
                                f"{100 * float(np.mean(data >= 0.5)):.1f}% of pixels >= 0.5"])


#: Mask names understood by ``--mask NAME`` and recipe ``mask = "NAME"``: each takes
#: the step's input image and returns an ``(H, W)`` float32 mask in [0, 1] made with
#: the default parameters of :class:`MaskParams`.
NAMED_MASKS = {
    "luminance": lambda image: make_mask(image, MaskParams(type="luminance")),
    "inverted": lambda image: make_mask(image, MaskParams(type="inverted")),
    "stars": lambda image: make_mask(image, MaskParams(type="stars")),
}


STEP = define_step(MaskParams, run_mask, command="mask", maskable=False)
