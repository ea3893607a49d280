"""Integration step over files: parameters -> strategies, rejection maps, coverage, the CLI.

The widget and ``napari-astro stack`` use :func:`integrate_with_params` (one call
from an :class:`~napari_astro.pipeline.steps.IntegrateParams` to an
:class:`~napari_astro.core.integration.IntegrationResult`),
:func:`write_rejection_maps` and :func:`write_coverage`; ``napari-astro integrate`` is
:func:`cli_integrate`.

HISTORY of the result: ``pre.integrate {params}`` (reads back with
``IntegrateParams.from_history``) then ``pre.integrate.result {...}`` (the strategies
as resolved, frame count, reference).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.integration import (IntegrationResult, integrate, normalization_from_name,
                                rejection_from_name, weighting_from_name)
from ..core.progress import CancelToken, Progress
from .params import Execution
from .steps import IntegrateParams

__all__ = ["strategies_from_params", "integrate_with_params", "write_rejection_maps",
           "write_coverage", "coverage_name", "cli_integrate", "REJECTION_MAP_NAMES"]

#: File names of the rejection maps inside the ``--rejection-maps`` folder.
REJECTION_MAP_NAMES = ("rejection_low.fits", "rejection_high.fits")


def strategies_from_params(params: IntegrateParams,
                           execution: Execution = Execution()) -> dict[str, Any]:
    """Keyword arguments of :func:`core.integration.integrate` built from ``params``
    (strategy objects from their names) and ``execution`` (memory, scheduler)."""
    return dict(combine=params.combine,
                normalization=normalization_from_name(params.normalization),
                weighting=weighting_from_name(params.weighting),
                rejection=rejection_from_name(params.rejection, params.low, params.high),
                memory_limit=execution.memory_limit, scheduler=execution.scheduler,
                rejection_maps=params.rejection_maps)


def _record(image: AstroImage, params: IntegrateParams) -> None:
    """The core's ``pre.integrate`` line becomes ``pre.integrate.result``, after the
    parameters' own line (so HISTORY reads back into ``params``)."""
    key = IntegrateParams.STEP_ID
    hist = image.history
    detail = hist.pop() if hist and hist[-1].startswith(key + " ") else None
    hist.append(params.history())
    if detail is not None:
        hist.append(f"{key}.result {detail.split(' ', 1)[1]}")


def integrate_with_params(frames: Sequence[AstroImage | str | os.PathLike],
                          params: IntegrateParams | None = None, *, reference: int = 0,
                          frame_stats: Sequence[Mapping[str, Any] | None] | None = None,
                          execution: Execution = Execution(), coverage: bool = True,
                          progress: Progress | None = None, cancel: CancelToken | None = None
                          ) -> IntegrationResult:
    """Integrate ``frames`` as ``params`` say (the widget's and the stack run's entry).

    Parameters
    ----------
    frames : sequence of AstroImage or path
        Registered frames (NaN or ``mask == False`` outside each footprint).
    params : IntegrateParams, optional
        Defaults: average, additive+scaling, noise weights, Winsorized 3/3, 2GB.
    reference : int
        Index of the reference frame.
    frame_stats : sequence of mappings, optional
        Per-frame ``{"fwhm": px, "n_stars": n}`` for FWHM/star weighting (e.g. from
        registration's transforms.json).
    execution : Execution
        Memory budget (tiles) and Dask scheduler.
    coverage : bool, default True
        Also count the frames with valid data at each pixel: ``result.coverage``
        (float32 ``(H, W)``), and ``NCOMBINE`` in the header.
    progress, cancel
        See :mod:`core.progress`.

    Returns
    -------
    IntegrationResult
        ``result.image`` carries a ``pre.integrate`` HISTORY line with ``params``.
    """
    from ..core.coverage import coverage_map

    params = params or IntegrateParams()
    kw = strategies_from_params(params, execution)
    result = integrate(frames, reference=reference, frame_stats=frame_stats, progress=progress,
                       cancel=cancel, **kw)
    _record(result.image, params)
    result.image.header["NCOMBINE"] = (len(frames), "frames integrated")
    result.coverage = coverage_map(frames) if coverage else None
    return result


def coverage_name(output: "str | os.PathLike[str]") -> Path:
    """``<OUT stem>_coverage.fits`` beside ``output``."""
    out = Path(output)
    return out.with_name(f"{out.stem}_coverage.fits")


def write_coverage(result: IntegrationResult, output: "str | os.PathLike[str]", *,
                   overwrite: bool = False) -> Path:
    """Write ``result.coverage`` (frames per pixel, float32) beside ``output`` and name
    it in the stack's header (``COVERAGE``); call before writing the stack."""
    from ..core.io import write_image

    cov = getattr(result, "coverage", None)
    if cov is None:
        raise ValueError("the result holds no coverage map")
    path = coverage_name(output)
    img = AstroImage(data=np.asarray(cov, np.float32), header=result.image.header.copy(),
                     history=[])
    img.header["IMAGETYP"] = "Coverage map"
    img.header["BUNIT"] = ("frames", "frames with valid data at each pixel")
    for key in ("BAYERPAT", "COVERAGE"):
        img.header.remove(key, ignore_missing=True)
    write_image(img, path, overwrite=overwrite)
    result.image.header["COVERAGE"] = (path.name, "frames-per-pixel map")
    return path


def write_rejection_maps(result: IntegrationResult, folder: str | os.PathLike, *,
                         overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``result.low_map`` / ``high_map`` as float32 FITS into ``folder``
    (names :data:`REJECTION_MAP_NAMES`); values are fractions of valid frames."""
    from ..core.io import write_image

    if result.low_map is None or result.high_map is None:
        raise ValueError("the result holds no rejection maps (use rejection_maps=True)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data, what in zip(REJECTION_MAP_NAMES, (result.low_map, result.high_map),
                                ("low", "high")):
        img = result.image.replace(data=data, mask=None)
        img.header["IMAGETYP"] = f"Rejection map {what}"
        img.header["BUNIT"] = ("fraction", "fraction of valid frames rejected")
        img.add_history("pre.integrate.map", {"side": what})
        out.append(write_image(img, folder / name, overwrite=overwrite))
    return out[0], out[1]


def cli_integrate(args) -> int:
    """``napari-astro integrate FRAMES... -o OUT.fits [options]`` (see CLI.md)."""
    from ..core.io import write_image
    from ..core.progress import TqdmProgress
    from .cliargs import params_from_args
    from .inputs import check_output_dir, check_output_file, expand
    from .steps import execution_from_args

    maps_dir = Path(args.rejection_maps) if getattr(args, "rejection_maps", None) else None
    params = params_from_args(IntegrateParams, args, rejection_maps=maps_dir is not None)
    execution = execution_from_args(args)
    out = Path(args.output)
    overwrite = bool(getattr(args, "overwrite", False))
    frames = expand(args.frames)
    if len(frames) < 2:
        raise BadInputError(args.frames[0], f"found {len(frames)} frame; integration needs "
                                            "at least 2")
    check_output_file(out, overwrite=overwrite)
    cov_path = coverage_name(out)
    if cov_path.exists() and not overwrite:
        raise BadInputError(cov_path, "output exists (use --overwrite to replace it)")
    if maps_dir is not None:
        check_output_dir(maps_dir)
        if not overwrite:
            for name in REJECTION_MAP_NAMES:
                if (maps_dir / name).exists():
                    raise BadInputError(maps_dir / name, "exists (use --overwrite to replace it)")
    disable = None if sys.stderr.isatty() else True
    with TqdmProgress(desc="integrate", disable=disable) as bar:
        result = integrate_with_params(frames, params, execution=execution, progress=bar)
    write_coverage(result, out, overwrite=overwrite)
    write_image(result.image, out, overwrite=overwrite)
    for line in result.log:
        print(line)
    if maps_dir is not None:
        low, high = write_rejection_maps(result, maps_dir, overwrite=overwrite)
        print(f"rejection maps: {low} {high}")
    print(f"wrote {out} (coverage {cov_path.name})")
    return 0
