"""The crop step (``post.crop``): a given box, or the largest box every frame covered.

CLI: ``napari-astro crop IN OUT (--box X0,Y0,X1,Y1 | --auto)``. With ``--auto`` the
coverage map written by integration beside the stack is used: the file named by the
input's ``COVERAGE`` header key (relative to the input's folder), else
``<stem>_coverage.fits`` beside it; without one, the NaN/zero/low-signal borders.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["CropParams", "run_crop", "find_coverage_file", "STEP"]


@dataclasses.dataclass(frozen=True)
class CropParams(StepParams):
    """Crop to a box, or automatically to the largest box every frame covered."""

    STEP_ID = "post.crop"
    TITLE = "Crop"

    box: Optional[tuple] = param(None, unit="px",
                                 help="X0,Y0,X1,Y1 (X1, Y1 exclusive); blank = automatic")
    low_signal: float = param(10.0, min=0, max=1000, unit="sigma", advanced=True,
                              help="automatic crop without coverage map: edge regions this far "
                                   "below the median are border (0 = only NaN/zero)")

    def validate(self) -> None:
        if self.box is not None:
            if len(self.box) != 4 or not all(isinstance(v, (int, float)) for v in self.box):
                raise BadInputError(f"{self.STEP_ID}.box", f"{self.box!r} is not four numbers X0,Y0,X1,Y1")
            x0, y0, x1, y1 = self.box
            if x1 <= x0 or y1 <= y0:
                raise BadInputError(f"{self.STEP_ID}.box",
                                    f"box {x0},{y0},{x1},{y1} has zero size (need X1 > X0 and Y1 > Y0)")


def run_crop(image, params: CropParams, *, progress=None, cancel=None, coverage=None):
    """Crop ``image`` (see :mod:`napari_astro.core.crop`).

    ``coverage``: optional ``(H, W)`` frames-per-pixel map for the automatic box.
    extras: ``"box"`` (x0, y0, x1, y1) actually used.
    """
    from ...core.crop import auto_box, crop_image
    from ...core.progress import report

    messages = []
    if params.box is None:
        box = auto_box(image, coverage, low_signal=params.low_signal)
        how = "coverage map" if coverage is not None else "NaN/zero/low-signal borders"
        h, w = image.shape2d
        messages.append(f"automatic crop from the {how}: box {','.join(map(str, box))} "
                        f"({box[2] - box[0]}x{box[3] - box[1]} of {w}x{h} px)")
    else:
        box = params.box
    out = crop_image(image, box)
    report(progress, 1, 1, "cropped")
    return StepResult(out, extras={"box": tuple(int(v) for v in box)}, messages=messages)


def find_coverage_file(path: str, header=None) -> Optional[str]:
    """The coverage map of the stack at ``path``: its header's COVERAGE key (relative
    to the stack's folder), else ``<stem>_coverage.fits`` beside it; None if neither
    exists."""
    folder = os.path.dirname(os.path.abspath(path))
    candidates = []
    if header is not None and header.get("COVERAGE"):
        name = str(header["COVERAGE"]).strip()
        candidates.append(name if os.path.isabs(name) else os.path.join(folder, name))
    stem = os.path.splitext(os.path.basename(path))[0]
    for ext in (".fits", ".fit", ".fts"):
        candidates.append(os.path.join(folder, f"{stem}_coverage{ext}"))
    for c in candidates:
        if os.path.isfile(c):
            return c
    return None


def _add_cli_arguments(group) -> None:
    group.add_argument("--auto", action="store_true", default=False,
                       help="the largest box every frame covered (coverage map beside the "
                            "stack: its COVERAGE key or <stem>_coverage.fits; else the NaN/zero/"
                            "low-signal borders)")


def _cli_inputs(args, image) -> dict:
    import numpy as np

    box = getattr(args, "box", None)
    if bool(box) == bool(args.auto):
        raise BadInputError("--box", "give either --box X0,Y0,X1,Y1 or --auto")
    if box:
        from ...core.crop import check_box

        check_box(CropParams(box=box).box, image.shape2d)  # before any work
        return {}
    cov_path = find_coverage_file(args.input, image.header)
    if cov_path is None:
        return {}
    from ...core.io import read_image

    cov = read_image(cov_path)
    data = cov.luminance() if cov.is_color else cov.data
    if data.shape != image.shape2d:
        raise BadInputError(cov_path, f"coverage map is {data.shape[1]}x{data.shape[0]} px, the "
                                      f"image {image.shape2d[1]}x{image.shape2d[0]} px")
    return {"coverage": np.asarray(data)}


def _summary(result: StepResult) -> str:
    x0, y0, x1, y1 = result.extras["box"]
    return f"cropped to {x0},{y0},{x1},{y1} ({x1 - x0}x{y1 - y0} px)"


STEP = define_step(CropParams, run_crop, command="crop", inputs=("coverage?",), maskable=False,
                   add_cli_arguments=_add_cli_arguments, cli_inputs=_cli_inputs,
                   summary=_summary)
