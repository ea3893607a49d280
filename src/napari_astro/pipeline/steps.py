"""Parameter dataclasses of the pre-processing steps (ids ``pre.*``).

Post-processing steps (``post.*``) and capture (``capture.*``) follow the same
pattern in their own modules. Each class is the single source of defaults for the
CLI options, the widget fields, recipes and HISTORY lines.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .params import StepParams, register_step

__all__ = ["MastersParams", "CalibrateParams", "RegisterParams", "IntegrateParams",
           "StackParams"]


@register_step
@dataclasses.dataclass(frozen=True)
class MastersParams(StepParams):
    """Master bias/dark/flat/flat-dark creation."""

    STEP_ID = "pre.masters"
    TITLE = "Master frames"

    rejection: str = "winsorized"      # none|sigma|winsorized|linear-fit|percentile|gesd|minmax
    low: float = 3.0                   # rejection thresholds (sigma units)
    high: float = 3.0
    temp_tolerance: float = 2.0        # deg C: frames within this are one group
    combine: str = "average"           # average|median
    memory_limit: str = "2GB"          # a group larger than this is combined in row bands


@register_step
@dataclasses.dataclass(frozen=True)
class CalibrateParams(StepParams):
    """Light calibration: (L - D) / normalise(F - B), cosmetic correction, debayer."""

    STEP_ID = "pre.calibrate"
    TITLE = "Calibration"

    dark_mode: str = "match"           # match|scale|optimize: what to do when no dark matches
    temp_tolerance: float = 2.0        # deg C for dark matching
    pedestal: float = 0.0              # added after calibration (data units, [0,1] scale);
                                       # with auto_pedestal, the minimum pedestal
    auto_pedestal: bool = True         # lift the sky >= 5 sigma off zero (one value per run)
    cosmetic: bool = True              # hot/cold pixel correction
    hot_sigma: float = 5.0
    cold_sigma: float = 5.0
    debayer: bool = True
    debayer_method: str = "rcd"        # rcd|vng|bilinear|superpixel (vng runs rcd)
    equalize_cfa: bool = False
    bayer: Optional[str] = None        # override the file's CFA pattern


@register_step
@dataclasses.dataclass(frozen=True)
class RegisterParams(StepParams):
    """Star-based registration onto a reference frame."""

    STEP_ID = "pre.register"
    TITLE = "Registration"

    model: str = "affine"              # shift|similarity|affine|homography
    interpolation: str = "lanczos3"    # lanczos3|bicubic|bilinear
    clamp: bool = True                 # clamp Lanczos ringing
    reference: Optional[str] = None    # path of the reference frame; None = best frame
    detection_sigma: float = 5.0
    max_stars: int = 250               # brightest stars kept per frame (matching, FWHM)
    max_fwhm_ratio: float = 1.5        # reject frames with FWHM > ratio * session median
    min_stars_ratio: float = 0.3       # reject frames with stars < ratio * session median


@register_step
@dataclasses.dataclass(frozen=True)
class IntegrateParams(StepParams):
    """Integration of registered frames."""

    STEP_ID = "pre.integrate"
    TITLE = "Integration"

    combine: str = "average"           # average|median|sum
    normalization: str = "additive-scaling"  # none|additive|multiplicative|additive-scaling
    weighting: str = "noise"           # none|noise|fwhm|stars
    rejection: str = "winsorized"      # none|sigma|winsorized|linear-fit|percentile|gesd|minmax
    # None = the method's own default: 3/3 sigma; percentile 0.2/0.1 of the median;
    # minmax 1/1 values; gesd: low = max outlier fraction 0.3, high = significance 0.05
    low: Optional[float] = None
    high: Optional[float] = None
    memory_limit: str = "2GB"          # budget for integration arrays: tiles sized from it
    scheduler: Optional[str] = None    # Dask distributed scheduler address
    rejection_maps: bool = False


@register_step
@dataclasses.dataclass(frozen=True)
class StackParams(StepParams):
    """The whole pre-processing run (classify .. integrate); sub-steps keep their ids."""

    STEP_ID = "pre.stack"
    TITLE = "Stack"

    skip_bad: bool = False
    float16: bool = False              # 16-bit calibrated intermediates (half the disk)
    keep_intermediates: bool = True
    workers: int = 0                   # 0 = all cores
    rgb: Optional[str] = None          # "R,G,B" filter names: combine mono stacks to colour
