"""Integration step over files: parameters -> strategies, rejection maps, the CLI.

The widget and ``napari-astro stack`` use :func:`integrate_with_params` (one call
from an :class:`~napari_astro.pipeline.steps.IntegrateParams` to an
:class:`~napari_astro.core.integration.IntegrationResult`) and
:func:`write_rejection_maps`; ``napari-astro integrate`` is :func:`cli_integrate`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.integration import (IntegrationResult, integrate, normalization_from_name,
                                parse_memory, rejection_from_name, weighting_from_name)
from ..core.progress import CancelToken, Progress
from .steps import IntegrateParams

__all__ = ["strategies_from_params", "integrate_with_params", "write_rejection_maps",
           "expand_frames", "cli_integrate", "REJECTION_MAP_NAMES"]

#: File names of the rejection maps inside the ``--rejection-maps`` folder.
REJECTION_MAP_NAMES = ("rejection_low.fits", "rejection_high.fits")


def strategies_from_params(params: IntegrateParams) -> dict[str, Any]:
    """Keyword arguments of :func:`core.integration.integrate` built from ``params``
    (strategy objects from their names; raises BadInputError for unknown names)."""
    parse_memory(params.memory_limit)
    return dict(combine=params.combine,
                normalization=normalization_from_name(params.normalization),
                weighting=weighting_from_name(params.weighting),
                rejection=rejection_from_name(params.rejection, params.low, params.high),
                memory_limit=params.memory_limit, scheduler=params.scheduler,
                rejection_maps=params.rejection_maps)


def integrate_with_params(frames: Sequence[AstroImage | str | os.PathLike],
                          params: IntegrateParams | None = None, *, reference: int = 0,
                          frame_stats: Sequence[Mapping[str, Any] | None] | None = None,
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
    progress, cancel
        See :mod:`core.progress`.

    Returns
    -------
    IntegrationResult
        ``result.image`` carries a ``pre.integrate`` HISTORY line with ``params``.
    """
    params = params or IntegrateParams()
    kw = strategies_from_params(params)
    return integrate(frames, reference=reference, frame_stats=frame_stats, progress=progress,
                     cancel=cancel, **kw)


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


def expand_frames(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by the image files directly inside them
    (sorted by name). Raises BadInputError for a missing path or an empty folder."""
    from ..core.io import is_supported

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and is_supported(q))
            if not found:
                raise BadInputError(p, "folder holds no image files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise BadInputError(p, "file not found")
    return out


def _params_from_args(args) -> IntegrateParams:
    over = {k: getattr(args, k, None) for k in ("combine", "normalization", "weighting",
                                                  "rejection", "low", "high", "memory_limit",
                                                  "scheduler")}
    over["rejection_maps"] = bool(getattr(args, "rejection_maps", None)) or None
    return IntegrateParams.from_dict({}, **over)


def cli_integrate(args) -> int:
    """``napari-astro integrate FRAMES... -o OUT.fits [options]`` (see CLI.md)."""
    from ..core.io import write_image
    from ..core.progress import TqdmProgress

    params = _params_from_args(args)
    kw = strategies_from_params(params)              # bad option values fail here
    out = Path(args.output)
    overwrite = bool(getattr(args, "overwrite", False))
    if out.exists() and not overwrite:
        raise BadInputError(out, "output exists (use --overwrite to replace it)")
    if not str(out.name).lower().endswith((".fit", ".fits", ".fts", ".xisf")):
        raise BadInputError(out, "output must be .fits/.fit/.fts or .xisf")
    maps_dir = Path(args.rejection_maps) if getattr(args, "rejection_maps", None) else None
    if maps_dir is not None and not overwrite:
        for name in REJECTION_MAP_NAMES:
            if (maps_dir / name).exists():
                raise BadInputError(maps_dir / name, "exists (use --overwrite to replace it)")
    frames = expand_frames(args.frames)
    disable = None if sys.stderr.isatty() else True
    with TqdmProgress(desc="integrate", disable=disable) as bar:
        result = integrate(frames, progress=bar, **kw)
    write_image(result.image, out, overwrite=overwrite)
    for line in result.log:
        print(line)
    if maps_dir is not None:
        low, high = write_rejection_maps(result, maps_dir, overwrite=overwrite)
        print(f"rejection maps: {low} {high}")
    print(f"wrote {out}")
    return 0
