"""Parameter dataclasses of the pre-processing steps (ids ``pre.*``).

Post-processing steps (``post.*``) and capture (``capture.*``) follow the same
pattern in their own modules. Each class is the single source of the defaults,
choices, units, ranges and help of the CLI options (``cliargs``), the widget forms,
recipes and HISTORY lines. The choices are ``Literal`` annotations spelled here once;
the core keeps its own strategy tables (``core.integration``, ``core.registration``,
``core.debayer``) and a test checks that both agree.

Execution settings (threads, memory budget, Dask scheduler) are not here: they are
:class:`~napari_astro.pipeline.params.Execution`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, Optional

from ..core.errors import BadInputError
from .params import StepParams, param, register_step

if TYPE_CHECKING:  # pragma: no cover
    from .params import Execution

__all__ = ["MastersParams", "CalibrateParams", "RegisterParams", "IntegrateParams",
           "StackParams", "Rejection", "Bayer", "add_execution_arguments",
           "execution_from_args"]

Rejection = Literal["none", "sigma", "winsorized", "linear-fit", "percentile", "gesd", "minmax"]
Bayer = Literal["RGGB", "BGGR", "GRBG", "GBRG"]

_LOW_HELP = ("low rejection threshold (percentile: fraction of the median, minmax: a count, "
             "gesd: max outlier fraction)")
_HIGH_HELP = ("high rejection threshold (percentile: fraction of the median, minmax: a count, "
              "gesd: significance)")


def _check_rejection(step_id: str, name: str, low: Optional[float], high: Optional[float]) -> None:
    """The thresholds must suit the method (e.g. gesd needs fractions below 1)."""
    from ..core.integration import rejection_from_name  # lazy: numba-heavy module

    try:
        rejection_from_name(name, low, high)
    except BadInputError as exc:
        raise BadInputError(f"{step_id}.low", exc.problem) from None


@register_step
@dataclasses.dataclass(frozen=True)
class MastersParams(StepParams):
    """Master bias/dark/flat/flat-dark creation."""

    STEP_ID = "pre.masters"
    TITLE = "Master frames"

    rejection: Rejection = param("winsorized", help="pixel rejection while combining frames")
    low: float = param(3.0, min=0, max=100, unit="sigma", help=_LOW_HELP)
    high: float = param(3.0, min=0, max=100, unit="sigma", help=_HIGH_HELP)
    temp_tolerance: float = param(2.0, min=0, max=50, unit="deg C",
                                  help="frames within this temperature form one group")
    combine: Literal["average", "median"] = param("average", help="how kept values combine")

    def validate(self) -> None:
        _check_rejection(self.STEP_ID, self.rejection, self.low, self.high)


@register_step
@dataclasses.dataclass(frozen=True)
class CalibrateParams(StepParams):
    """Light calibration: (L - D) / normalise(F - B), cosmetic correction, debayer."""

    STEP_ID = "pre.calibrate"
    TITLE = "Calibration"

    dark_mode: Literal["match", "scale", "optimize"] = param(
        "match", help="when no dark has the light's exposure: refuse, scale by exposure, "
                      "or optimise the scale")
    temp_tolerance: float = param(2.0, min=0, max=50, unit="deg C",
                                  help="largest light-dark temperature difference")
    pedestal: float = param(0.0, min=0, max=0.5, unit="of full scale", decimals=5,
                            help="added after calibration (with auto pedestal: the minimum)")
    auto_pedestal: bool = param(True, help="lift the sky 5 sigma off zero (one value a run)")
    cosmetic: bool = param(True, help="hot/cold pixel correction")
    hot_sigma: float = param(5.0, min=1, max=100, unit="sigma", help="hot pixel threshold")
    cold_sigma: float = param(5.0, min=1, max=100, unit="sigma", help="cold pixel threshold")
    debayer: bool = param(True, help="demosaic one-shot-colour frames")
    debayer_method: Literal["rcd", "vng", "bilinear", "superpixel"] = param(
        "rcd", help="demosaicing method (vng runs rcd; superpixel halves the size)")
    equalize_cfa: bool = param(False, help="equalise the CFA planes' backgrounds")
    bayer: Optional[Bayer] = param(None, help="CFA pattern overriding the file's BAYERPAT")


@register_step
@dataclasses.dataclass(frozen=True)
class RegisterParams(StepParams):
    """Star-based registration onto a reference frame."""

    STEP_ID = "pre.register"
    TITLE = "Registration"

    model: Literal["shift", "similarity", "affine", "homography"] = param(
        "affine", help="transform model fitted to the matched stars")
    interpolation: Literal["lanczos3", "bicubic", "bilinear"] = param(
        "lanczos3", help="resampling kernel")
    clamp: bool = param(True, help="clamp Lanczos/bicubic ringing")
    reference: Optional[str] = param(None, help="reference frame (a file); auto = best frame")
    detection_sigma: float = param(5.0, min=1, max=100, unit="sigma",
                                   help="star detection threshold")
    max_stars: int = param(250, min=3, max=20000, help="brightest stars kept per frame")
    max_fwhm_ratio: float = param(1.5, min=1, max=100, unit="x session median",
                                  help="reject frames whose FWHM exceeds this")
    min_stars_ratio: float = param(0.3, min=0, max=1, unit="x session median",
                                   help="reject frames with fewer stars than this")


@register_step
@dataclasses.dataclass(frozen=True)
class IntegrateParams(StepParams):
    """Integration of registered frames."""

    STEP_ID = "pre.integrate"
    TITLE = "Integration"

    combine: Literal["average", "median", "sum"] = param("average",
                                                         help="how kept values combine")
    normalization: Literal["none", "additive", "multiplicative", "additive-scaling"] = param(
        "additive-scaling", help="frame normalisation before rejection")
    weighting: Literal["none", "noise", "fwhm", "stars"] = param(
        "noise", help="frame weights")
    rejection: Rejection = param("winsorized", help="pixel rejection")
    # auto = the method's own default: 3/3 sigma; percentile 0.2/0.1 of the median;
    # minmax 1/1 values; gesd: low = max outlier fraction 0.3, high = significance 0.05
    low: Optional[float] = param(None, min=0, max=100, unit="sigma", help=_LOW_HELP)
    high: Optional[float] = param(None, min=0, max=100, unit="sigma",
                                  help=_HIGH_HELP)
    # An output choice, not an image parameter: the CLI's --rejection-maps DIR sets it.
    rejection_maps: bool = param(False, cli=False, help="also compute low/high rejection maps")

    def validate(self) -> None:
        _check_rejection(self.STEP_ID, self.rejection, self.low, self.high)

    def image_dict(self) -> dict:
        """The fields that change the integrated image (for fingerprints)."""
        d = self.to_dict()
        d.pop("rejection_maps")
        return d


@register_step
@dataclasses.dataclass(frozen=True)
class StackParams(StepParams):
    """The whole pre-processing run (classify .. integrate); sub-steps keep their ids."""

    STEP_ID = "pre.stack"
    TITLE = "Stack"

    skip_bad: bool = param(False, help="skip unreadable or unclassifiable files")
    float16: bool = param(False, help="16-bit calibrated intermediates (half the disk)")
    clean: bool = param(False, help="delete the work folder at the end")
    one_pass: Literal["auto", "always", "never"] = param(
        "auto", help="calibrate and register each light in one pass, writing only the "
        "registered frame (auto: with --reference and no calibration frames)")
    rgb: Optional[str] = param(None, help="R,G,B filter names: combine mono stacks to colour",
                               cli="--rgb")


# --------------------------------------------------------------------- execution
def add_execution_arguments(parser, *, workers: bool = True, memory: bool = True,
                            scheduler: bool = False) -> None:
    """``--workers N``, ``--memory-limit SIZE``, ``--scheduler ADDRESS`` (defaults from
    :class:`~napari_astro.pipeline.params.Execution`)."""
    from .params import Execution

    d = Execution()
    g = parser.add_argument_group("execution")
    if workers:
        g.add_argument("--workers", type=int, default=None, metavar="N",
                       help="threads for every stage; default: all cores")
    if memory:
        g.add_argument("--memory-limit", default=None, metavar="SIZE",
                       help=f"budget for large arrays (row bands / tiles sized from it) "
                            f"[bytes, e.g. 2GB]; default: {d.memory_limit}")
    if scheduler:
        g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask distributed scheduler (tcp://host:8786); default: local")


def execution_from_args(args) -> "Execution":
    """The :class:`Execution` of parsed options (absent ones keep the defaults);
    a bad memory limit or worker count is BadInputError naming the option."""
    from ..core.integration import parse_memory
    from .params import Execution

    d = Execution()
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 0:
        raise BadInputError("--workers", f"must be 0 (all cores) or more, got {workers}")
    mem = getattr(args, "memory_limit", None) or d.memory_limit
    try:
        parse_memory(mem)
    except BadInputError as exc:
        raise BadInputError("--memory-limit", exc.problem) from None
    return Execution(workers=workers or 0, memory_limit=mem,
                     scheduler=getattr(args, "scheduler", None))


def apply_workers(execution) -> None:
    """Set numba's thread count (every stage's kernels and frame pools read it)."""
    from ..core.jit import max_num_threads, set_num_threads  # without importing numba

    n = int(execution.workers or 0)
    set_num_threads(max(1, min(n, max_num_threads())) if n else max_num_threads())
