"""The calibration flow shared by ``napari-astro calibrate`` and the Calibration widget.

:func:`run_calibration` checks everything first (frame sizes, which master each
light gets, outputs), then builds (or loads) the masters and calibrates the lights:
into a folder (every light, plus ``masters/`` and ``calibration.log``), or, without
one, the first light only as a preview (the widget's quick look).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..core.errors import BadInputError
from ..core.progress import CancelToken, Progress, SubProgress, report
from .params import Execution
from .steps import CalibrateParams, MastersParams

__all__ = ["CalibrationRun", "run_calibration", "scan_sources", "cli_calibrate"]


@dataclasses.dataclass
class CalibrationRun:
    """What :func:`run_calibration` did.

    Attributes
    ----------
    frames : list of FrameInfo
    masters : MasterSet or None
    plan : list of PlanItem
    preview : AstroImage or None
        The first calibrated light (read back from disk when written).
    written : list of Path
        Calibrated lights written.
    log : list of str
    """

    frames: list
    masters: Any = None
    plan: list = dataclasses.field(default_factory=list)
    preview: Any = None
    written: list = dataclasses.field(default_factory=list)
    log: list = dataclasses.field(default_factory=list)


def scan_sources(sources: Sequence[tuple[Optional[str], str]], *, skip_bad: bool = False,
                 log: Optional[Callable[[str], None]] = None) -> list:
    """FrameInfo of ``[(type or None, path), ...]``; a forced type overrides the header."""
    from ..core.frames import FrameType, scan_frames

    frames = []
    for ftype, path in sources:
        default = FrameType(ftype) if ftype else None
        found = scan_frames([path], skip_bad=skip_bad, log=log, default_type=default)
        if ftype:
            found = [dataclasses.replace(f, type=FrameType(ftype)) for f in found]
        frames.extend(found)
    return frames


def run_calibration(frames: Sequence, out_dir: "str | os.PathLike[str] | None" = None, *,
                    masters_params: MastersParams = MastersParams(),
                    params: CalibrateParams = CalibrateParams(),
                    masters_dir: "str | os.PathLike[str] | None" = None,
                    bad_pixels: "str | os.PathLike[str] | None" = None,
                    save_bad_pixels: "str | os.PathLike[str] | None" = None,
                    require_lights: bool = True, overwrite: bool = False,
                    execution: Execution = Execution(), progress: Optional[Progress] = None,
                    cancel: Optional[CancelToken] = None,
                    log: Optional[Callable[[str], None]] = None) -> CalibrationRun:
    """Masters, then calibrated lights (see the module docstring).

    Parameters
    ----------
    frames : sequence of FrameInfo
        Lights and calibration frames (``scan_frames`` / :func:`scan_sources`).
    out_dir : path, optional
        Write every calibrated light as ``<stem>_cal.fits``, the masters into
        ``out_dir/masters`` and ``calibration.log``. None: calibrate the first light
        only, in memory (:attr:`CalibrationRun.preview`).
    masters_params, params : MastersParams, CalibrateParams
    masters_dir : path, optional
        Use the masters written there earlier instead of building them.
    bad_pixels : path, optional
        A hot/cold pixel map (FITS or CSV) corrected in every light.
    save_bad_pixels : path, optional
        Write the map applied to the first light.
    require_lights : bool
        No lights is bad input (the CLI); False builds the masters alone (the widget).
    overwrite : bool
    execution : Execution
    progress, cancel, log : optional
        Progress: masters 0-60 %, lights 60-100 %.

    Raises
    ------
    BadInputError
        Before anything is written: no lights, frames of another size, a light no
        master can serve, an existing output without ``overwrite``.
    """
    from ..core.calibration import BadPixelMap
    from ..core.frames import FrameType
    from ..core.image import format_history
    from .calibrate import calibrate_light, calibrate_lights, output_name, plan_calibration
    from .inputs import check_output_dir
    from .masters import MasterSet, build_masters

    t0 = time.perf_counter()
    run = CalibrationRun(frames=list(frames))

    def say(line: str) -> None:
        run.log.append(line)
        if log is not None:
            log(line)

    lights = [f for f in frames if f.type == FrameType.LIGHT]
    cal = [f for f in frames if f.type != FrameType.LIGHT]
    if require_lights and not lights:
        where = {str(Path(f.path).parent) for f in frames}
        raise BadInputError(", ".join(sorted(where)) or None, "no light frames found")
    ref = lights[0] if lights else (cal[0] if cal else None)
    for f in frames:
        if tuple(f.shape[-2:]) != tuple(ref.shape[-2:]):
            raise BadInputError(f.path, f"size {f.width}x{f.height} differs from the lights' "
                                        f"{ref.width}x{ref.height} ({ref.path})")
    bpm = BadPixelMap.load(bad_pixels, shape=tuple(ref.shape[-2:])) if bad_pixels else None
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        check_output_dir(out)
    if masters_dir is not None:
        masters = MasterSet.from_dir(masters_dir)
        if cal:
            say(f"using masters from {masters_dir}; {len(cal)} calibration frames given are "
                "ignored")
        build = False
    else:
        # plan from headers first: a light that cannot be served fails before any work
        masters = MasterSet.from_frames(cal, masters_params)
        build = True
    plan_calibration(lights, masters, params)
    if out is not None and not overwrite:
        targets = [out / "masters" / m.name for m in masters.all()] if build else []
        taken: set = set()
        targets += [out / output_name(f, taken) for f in lights]
        if save_bad_pixels:
            targets.append(Path(save_bad_pixels))
        for p in targets:
            if p.exists():
                raise BadInputError(p, "output exists (use --overwrite to replace it)")
    if build:
        report(progress, 0, 100, "building masters", cancel)
        masters = build_masters(cal, None, masters_params, execution=execution,
                                progress=SubProgress(progress, 0, 60, 100, "masters"),
                                cancel=cancel, log=say)
    run.masters = masters
    if not lights:
        report(progress, 100, 100, "masters built (no lights)", cancel)
        return run
    run.plan = list(plan_calibration(lights, masters, params))
    sub = SubProgress(progress, 60, 100, 100, "calibrating")
    if out is None:
        report(sub, 0, 1, f"calibrating {Path(lights[0].path).name}", cancel)
        run.preview = calibrate_light(lights[0], run.plan[0], masters, params)
        report(progress, 100, 100, "done", cancel)
        return run
    written_masters: list[Path] = []
    try:
        if build and len(masters):
            written_masters = masters.write(out / "masters", overwrite=overwrite)
        run.written = list(calibrate_lights(lights, masters, params, out, plan=run.plan,
                                            bad_pixels=bpm, overwrite=overwrite,
                                            save_bad_pixels=save_bad_pixels, progress=sub,
                                            cancel=cancel, log=say))
    except BaseException:
        for p in written_masters:
            try:
                p.unlink()
            except OSError:
                pass
        raise
    say(f"done in {time.perf_counter() - t0:.2f} s")
    (out / "calibration.log").write_text("\n".join(
        [format_history(CalibrateParams.STEP_ID, params.to_dict())] + run.log) + "\n")
    if run.written:
        from ..core.io import read_image

        run.preview = read_image(run.written[0])
    report(progress, 100, 100, "done", cancel)
    return run


def cli_calibrate(args) -> int:
    """``napari-astro calibrate SESSION... -o DIR``: masters, then calibrated lights."""
    from ..core.frames import scan_frames
    from .cliargs import params_from_args
    from .inputs import expand
    from .masters import _tqdm_progress
    from .steps import execution_from_args

    params = params_from_args(CalibrateParams, args)
    mparams = params_from_args(MastersParams, args, prefix="masters_")
    execution = execution_from_args(args)
    frames = scan_frames(expand(args.sessions))
    bar = _tqdm_progress("calibrate")
    try:
        run_calibration(frames, args.output, masters_params=mparams, params=params,
                        masters_dir=args.masters, bad_pixels=args.bad_pixel_map,
                        save_bad_pixels=args.save_bad_pixel_map, overwrite=args.overwrite,
                        execution=execution, progress=bar,
                        log=lambda line: print(line, file=sys.stderr))
    finally:
        if bar is not None:
            bar.close()
    return 0
