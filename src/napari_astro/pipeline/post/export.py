"""The export step: ``napari-astro export IN OUT.(jpg|png|tif|xisf|fits)``.

``post.export`` downscales (``--max-size``, Lanczos) and the output is written by
extension: 8/16-bit JPEG/PNG/TIFF with the sRGB ICC profile, or float32 XISF/FITS
with the HISTORY (:func:`napari_astro.core.io.export.export`). The command line
accepts only those outputs (``pipeline/stepcli.OUTPUT_EXTENSIONS``); a JPEG asked
for 16 bits is refused before any work.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["ExportParams"]

_PICTURES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class ExportParams(StepParams):
    """Export the processed image: JPEG (full size or for the web), PNG, 8/16-bit TIFF, XISF, FITS."""

    STEP_ID = "post.export"
    TITLE = "Export"
    max_size: Optional[int] = param(None, min=1, unit="px",
                                    help="downscale so the long side is at most this (blank: full size)")
    bits: Literal[8, 16] = param(8, help="sample depth of PNG/TIFF (JPEG is 8-bit; XISF/FITS float32)")
    quality: int = param(95, min=1, max=100, help="JPEG quality")
    resample: Literal["lanczos", "area"] = param("lanczos", help="downscale filter", advanced=True)
    icc: bool = param(True, help="embed the sRGB ICC profile in colour JPEG/PNG/TIFF")


def check_export(path: str, params: ExportParams) -> None:
    """Refuse, before any work, option combinations the format cannot honour."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jpg", ".jpeg") and params.bits == 16:
        raise BadInputError("--bits", "JPEG is 8-bit only (use .png or .tif for 16 bits)")


def run_export(image, params: ExportParams, *, progress=None, cancel=None):
    """The image as it will be written: downscaled when ``max_size`` asks for it."""
    from ...core.io.export import _downscaled
    from ...core.progress import report

    report(progress, 0, 1, "export", cancel)
    data = _downscaled(image, image.path or "image", params.max_size, params.resample)
    same = data.shape[-2:] == image.shape2d
    out = image.replace(data=data, mask=image.mask if same else None)
    report(progress, 1, 1, "export", cancel)
    return StepResult(out)


def write_export(image, path: str, params: ExportParams, *, overwrite: bool = False):
    """Write ``image`` (already through :func:`run_export`) to ``path``."""
    from ...core.io.export import export

    return export(image, path, bits=params.bits, quality=params.quality, resample=params.resample,
                  icc=params.icc, max_size=None, overwrite=overwrite)


def _cli_inputs(args, image) -> dict:
    from ..cliargs import given_fields

    check_export(args.output, ExportParams.from_dict(given_fields(ExportParams, args)))
    return {}


def _write_output(args, result: StepResult) -> None:
    # OUT written once, with the chosen bits/quality/ICC (the generic writer would
    # use the defaults: a 16-bit PNG was written twice, ~12 s of 49 on 24 Mpx).
    from ..cliargs import given_fields

    params = ExportParams.from_dict(given_fields(ExportParams, args))
    write_export(result.image, args.output, params, overwrite=args.overwrite)


def _summary(result: StepResult) -> str:
    h, w = result.image.shape2d
    return f"exported {w}x{h} px"


STEP = define_step(ExportParams, run_export, command="export", maskable=False,
                   cli_inputs=_cli_inputs, write_output=_write_output, summary=_summary)
