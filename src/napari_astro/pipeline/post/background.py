"""The background extraction step (``post.background``).

CLI: ``napari-astro background IN OUT [--samples FILE.csv] [--per-row N]
[--tolerance K] [--model rbf|poly1..poly4] [--mode subtract|divide]
[--model-out MODEL.fits]``. The algorithm is :mod:`napari_astro.core.background`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from ...core.errors import BadInputError
from ..params import StepParams, param
from ..registry import StepResult, define_step

__all__ = ["BackgroundParams", "run_background", "preview_background", "STEP"]


@dataclasses.dataclass(frozen=True)
class BackgroundParams(StepParams):
    """Background extraction: samples on a grid (or given), a smooth model, subtracted or divided."""

    STEP_ID = "post.background"
    TITLE = "Background extraction"

    per_row: int = param(12, min=2, max=100, help="grid samples across the width")
    box_size: Optional[int] = param(None, min=5, max=501, unit="px",
                                    help="sample box side (blank = half the grid spacing, 9..101)")
    tolerance: float = param(2.5, min=0.5, max=100, unit="sigma", step=0.1,
                             help="reject samples this many robust spreads above the background "
                                  "surface (stars, nebulosity)")
    model: Literal["rbf", "poly1", "poly2", "poly3", "poly4"] = param(
        "rbf", help="thin-plate RBF with smoothing, or a polynomial of degree 1-4 (per channel)")
    smoothing: Optional[float] = param(None, min=0, max=100, advanced=True,
                                       help="RBF smoothing (blank = chosen by cross-validation)")
    mode: Literal["subtract", "divide"] = param(
        "subtract", help="subtract (gradients; the sky level is kept) or divide (vignetting)")


def _core_kwargs(params: BackgroundParams) -> dict:
    return dict(per_row=params.per_row, box_size=params.box_size, tolerance=params.tolerance)


def _summary_line(table) -> str:
    from collections import Counter

    n, k = len(table), int(table.used.sum())
    why = Counter(r for r in table.reason if r)
    names = {"high": "above the background", "low": "below it", "structure": "on structure",
             "invalid": "on empty/NaN pixels"}
    detail = ", ".join(f"{v} {names.get(r, r)}" for r, v in why.most_common())
    return f"background: {k} of {n} samples used" + (f" (rejected: {detail})" if detail else "")


def run_background(image, params: BackgroundParams, *, progress=None, cancel=None, points=None):
    """Extract the background; extras ``"model"`` (AstroImage, full resolution),
    ``"samples"`` (dict of columns x, y, value or value_r/g/b, used) and
    ``"sample_table"`` (:class:`~napari_astro.core.background.SampleTable`)."""
    from ...core.background import extract_background

    res = extract_background(image, points, model=params.model, smoothing=params.smoothing,
                             mode=params.mode, progress=progress, cancel=cancel,
                             **_core_kwargs(params))
    msgs = [_summary_line(res.samples)]
    if res.fit.smoothing:
        msgs.append("RBF smoothing " + "/".join(f"{s:.2g}" for s in res.fit.smoothing)
                    + (" (cross-validated)" if params.smoothing is None else ""))
    return StepResult(res.image, extras={"model": res.model, "samples": res.samples.as_dict(),
                                         "sample_table": res.samples}, messages=msgs)


def preview_background(image, params: BackgroundParams, points=None, *, cancel=None,
                       max_nodes: int = 256):
    """Samples and the model on the reduced grid only (fast: for interactive use).

    Returns
    -------
    table : SampleTable
    fit : BackgroundModel
        ``fit.coarse`` is ``(C, h, w)`` with node spacing ``fit.step`` px.
    """
    from ...core.background import fit_model, sample_background

    table = sample_background(image, points, cancel=cancel, **_core_kwargs(params))
    fit = fit_model(table, image.shape2d, model=params.model, smoothing=params.smoothing,
                    max_nodes=max_nodes)
    return table, fit


# --------------------------------------------------------------------------- CLI
def _add_cli_arguments(group) -> None:
    group.add_argument("--samples", metavar="FILE.csv", default=None,
                       help="sample positions (CSV with x, y columns in px, 0-based) instead of the grid")
    group.add_argument("--model-out", metavar="MODEL.fits", default=None,
                       help="also write the background model (float32 FITS)")


def _cli_inputs(args, image) -> dict:
    from ...core.background import check_points, read_samples_csv
    from ..stepcli import check_output_path

    out = {}
    if args.model_out:
        check_output_path(args.model_out, overwrite=args.overwrite,
                          extensions=(".fits", ".fit", ".fts", ".xisf"))
        import os

        if os.path.abspath(args.model_out) in (os.path.abspath(args.input), os.path.abspath(args.output)):
            raise BadInputError(args.model_out, "the model would replace the input or the output")
    if args.samples:
        pts = read_samples_csv(args.samples)
        check_points(pts, image.shape2d, args.samples)
        out["points"] = pts
    return out


def _cli_outputs(args, result: StepResult) -> None:
    if args.model_out:
        from ...core.io import write_image

        model = result.extras["model"]
        model.history = list(result.image.history)
        write_image(model, args.model_out, overwrite=args.overwrite)


STEP = define_step(BackgroundParams, run_background, command="background", inputs=("points?",),
                   add_cli_arguments=_add_cli_arguments, cli_inputs=_cli_inputs,
                   cli_outputs=_cli_outputs, summary=None)
