"""The whole pre-processing run: a night's folder(s) to a stacked master.

``run_stack`` classifies every file, builds (or reuses) masters, calibrates,
cosmetic-corrects and debayers each light, measures frame quality, registers onto a
reference and integrates, one output per filter. Intermediate products live in a work
folder, one folder per stage, each with the fingerprint of its inputs and parameters
(:mod:`.fingerprint`): a second run after an interruption (Ctrl-C, crash, power loss)
resumes without redoing finished frames, and a run with other parameters redoes
exactly the stages they change (the log says which were reused).

``plan_stack`` does the classification and matching only (the dry run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.progress import CancelToken, Progress, SubProgress, report
from .fingerprint import Stage, files_fingerprint, fingerprint
from .params import Execution
from .steps import CalibrateParams, IntegrateParams, MastersParams, RegisterParams, StackParams

__all__ = ["StackPlan", "StackResult", "plan_stack", "run_stack", "cli_stack", "warm_up"]

Log = Callable[[str], None]


@dataclasses.dataclass
class StackPlan:
    """What a run will do, computed from headers only."""

    frames: list                      # FrameInfo of every usable file
    lights_by_filter: dict            # filter name -> [FrameInfo]
    calibration_frames: list          # bias/dark/flat/darkflat FrameInfo
    plan_items: dict                  # filter -> [calibration plan items]
    skipped: list                     # (path, reason) of bad files skipped
    disk_bytes: int                   # estimated intermediate disk use

    def describe(self) -> list[str]:
        """Human-readable lines (the dry run's output)."""
        from ..core.frames import group_frames

        lines = [f"{len(self.frames)} frames: "
                 + ", ".join(f"{n} {t}" for t, n in _count_types(self.frames).items())]
        for key, members in group_frames(self.calibration_frames).items():
            lines.append(f"  group {key}: {len(members)} frames")
        for filt, lights in self.lights_by_filter.items():
            lines.append(f"filter {filt or '(none)'}: {len(lights)} lights")
            for item in self.plan_items.get(filt, []):
                lines.append("  " + _describe_item(item))
        for path, reason in self.skipped:
            lines.append(f"skipped {path}: {reason}")
        lines.append(f"intermediate files need about {self.disk_bytes / 1e9:.2f} GB of disk")
        return lines


@dataclasses.dataclass
class StackResult:
    outputs: dict                     # filter -> Path of the stacked master
    images: dict                      # filter -> AstroImage
    quality: dict                     # filter -> list of per-frame quality rows (dicts)
    rejection_maps: dict              # filter -> (low, high) arrays or None
    log_path: Optional[Path]
    timings: dict                     # stage -> seconds
    coverage: dict = dataclasses.field(default_factory=dict)  # filter -> (H, W) frames/pixel


def _count_types(frames) -> dict:
    out: dict = {}
    for f in frames:
        out[str(f.type.value)] = out.get(str(f.type.value), 0) + 1
    return out


def _describe_item(item) -> str:
    if hasattr(item, "describe"):
        return item.describe()
    return str(item)


def _frame_bytes(info, float16: bool, debayer: bool) -> int:
    h, w = info.shape[-2:]
    c = 3 if (len(info.shape) == 3 or (info.bayer and debayer)) else 1
    return int(h * w * c * (2 if float16 else 4))


def plan_stack(inputs: Sequence[os.PathLike | str], *, stack: StackParams = StackParams(),
               masters: MastersParams = MastersParams(),
               calibrate: CalibrateParams = CalibrateParams(), log: Optional[Log] = None) -> StackPlan:
    """Classify the inputs and match calibration to lights, reading headers only.

    Raises
    ------
    BadInputError
        For a bad file (unless ``stack.skip_bad``), no lights, or frames of a size
        that does not match the lights.
    """
    from ..core.frames import FrameType, scan_frames
    from .calibrate import MasterSet, plan_calibration

    skipped: list = []

    def _log_skip(line: str) -> None:
        for prefix in ("skipped ", "ignored "):
            if line.startswith(prefix):
                line = line[len(prefix):]
        skipped.append(tuple(line.split(": ", 1)) if ": " in line else (line, "skipped"))

    frames = scan_frames(inputs, skip_bad=stack.skip_bad, log=_log_skip)
    lights = [f for f in frames if f.type == FrameType.LIGHT]
    if not lights:
        raise BadInputError(", ".join(map(str, inputs)), "no light frames found")
    # Size consistency: every light and calibration frame must share the lights' grid.
    ref_shape = lights[0].shape[-2:]
    good = []
    for f in frames:
        if tuple(f.shape[-2:]) != tuple(ref_shape):
            problem = (f"frame size {f.shape[-1]}x{f.shape[-2]} differs from the lights' "
                       f"{ref_shape[1]}x{ref_shape[0]}")
            if stack.skip_bad:
                _log_skip(f"{f.path}: {problem}")
                continue
            raise BadInputError(f.path, problem)
        good.append(f)
    frames = good
    lights = [f for f in frames if f.type == FrameType.LIGHT]
    cal = [f for f in frames if f.type != FrameType.LIGHT]
    by_filter: dict = {}
    for f in lights:
        by_filter.setdefault(f.filter or "", []).append(f)
    where = ", ".join(map(str, inputs))
    for filt, ls in by_filter.items():
        if len(ls) < 2:
            what = f" of filter {filt}" if filt and len(by_filter) > 1 else ""
            raise BadInputError(where, f"found {len(ls)} light{what}; integration needs at "
                                       "least 2")
    plan_items = {}
    # A plan needs masters only by their keys: plan against the frames' groups.
    master_set = MasterSet.from_frames(cal, masters)
    for filt, ls in by_filter.items():
        plan_items[filt] = plan_calibration(ls, master_set, calibrate)
    # calibrated (16-bit with --float16) + registered (float32) frames
    late = calibrate.debayer and calibrate.debayer_method != "superpixel"
    disk = sum(_frame_bytes(f, stack.float16, calibrate.debayer and not late)
               + _frame_bytes(f, False, calibrate.debayer) for f in lights)
    return StackPlan(frames=frames, lights_by_filter=by_filter, calibration_frames=cal,
                     plan_items=plan_items, skipped=skipped, disk_bytes=disk)


def _output_for(output: Path, filt: str, n_filters: int) -> Path:
    if n_filters <= 1:
        return output
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in (filt or "none"))
    return output.with_name(f"{output.stem}_{safe}{output.suffix}")


class _Logger:
    """Collects every decision; writes ``<OUT>.log`` atomically at the end (and on failure)."""

    def __init__(self, echo: Optional[Log]) -> None:
        self.lines: list[str] = []
        self.echo = echo
        self.t0 = time.perf_counter()

    def __call__(self, line: str) -> None:
        stamp = f"[{time.perf_counter() - self.t0:7.1f}s] "
        self.lines.append(stamp + line)
        if self.echo:
            self.echo(line)

    def write(self, path: Path) -> None:
        from ..core.io._atomic import atomic_output
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text("\n".join(self.lines) + "\n")


def _stage_masters(plan: StackPlan, work: Path, masters: MastersParams, execution: Execution,
                   progress, cancel, logger) -> tuple:
    """Masters (reused while the calibration frames and MastersParams are unchanged)."""
    from .masters import MasterSet, build_masters

    cal = plan.calibration_frames
    if not cal:
        logger("no calibration frames: lights are only cosmetic-corrected and debayered")
        return MasterSet(), fingerprint("no masters")
    stage = Stage(work / "masters", "masters", fingerprint(
        "masters", files_fingerprint(f.path for f in cal), masters.to_dict()), products="*.fits")
    if stage.open() == "reused":
        master_set = MasterSet.from_dir(stage.folder)
        logger(f"reusing {len(master_set)} masters from {stage.folder}")
    else:
        master_set = build_masters(cal, stage.folder, masters, overwrite=True,
                                   execution=execution, progress=progress, cancel=cancel,
                                   log=logger)
        stage.finish(n=len(master_set))
    logger(stage.describe())
    return master_set, stage.key


def _measure_stage(work: Path, tag: str, cal_key: str, register: RegisterParams) -> Stage:
    """Star measurements of the calibrated lights (``registered_<tag>/.measure``)."""
    return Stage(work / f"registered_{tag}" / ".measure", f"[{tag}] star measurements",
                 fingerprint("measure", cal_key, register.detection_sigma, register.max_stars),
                 products="*.json")


def _stage_calibrate(tag: str, lights: list, items: list, master_set, masters_key: str,
                     work: Path, stack: StackParams, calibrate: CalibrateParams,
                     late_debayer: bool, progress, cancel, logger,
                     client=None, register: RegisterParams = RegisterParams(),
                     ) -> tuple[list, str, Stage]:
    """Calibrated lights of one filter; resumes frame by frame within one fingerprint."""
    from .calibrate import calibrate_lights, output_name

    # The user's CalibrateParams whole (not only those applied before registration):
    # they are the HISTORY the calibrated frames carry into the stack.
    stage = Stage(work / f"calibrated_{tag}", f"[{tag}] calibrate",
                  _cal_key(masters_key, lights, calibrate, stack), products="*.fits")
    stage.open()
    taken: set = set()
    names = [stage.folder / output_name(it.light, taken) for it in items]
    todo = [(it, p) for it, p in zip(items, names) if not p.exists()]
    # One-shot-colour lights stay CFA mosaics on disk (a third of the bytes of
    # debayered frames): stars are measured on the CFA luminance and each frame is
    # debayered just before it is resampled, inside registration's frame threads.
    cal_params = _cal_params(calibrate, late_debayer)
    # One pass per light: its stars are measured right after calibration, while it is
    # in memory, where registration's resume finds them (it then reads each calibrated
    # frame once, to resample it).
    measure = _measure_stage(work, tag, stage.key, register)
    measure.open()
    if todo:
        logger(f"[{tag}] calibrating {len(todo)} lights ({len(items) - len(todo)} reused)")
        # every light votes for the bad pixels and the pedestal is the first light's,
        # so a resumed run calibrates the rest as an uninterrupted run does
        calibrate_lights([it.light for it in items], master_set, cal_params, stage.folder,
                         plan=items, overwrite=True, record=calibrate,
                         skip=[k for k, p in enumerate(names) if p.exists()],
                         out_dtype="uint16" if stack.float16 else "float32",
                         progress=progress, cancel=cancel, log=logger, client=client,
                         measure=(measure.folder, register.detection_sigma, register.max_stars))
    else:
        logger(f"[{tag}] reusing {len(items)} calibrated lights")
    stage.finish(n=len(names))
    logger(stage.describe())
    return names, stage.key, measure


def _cal_params(calibrate: CalibrateParams, late_debayer: bool) -> CalibrateParams:
    """What calibration applies before registration (one-shot-colour lights stay CFA
    mosaics on disk, a third of the bytes, and are debayered just before resampling)."""
    return dataclasses.replace(calibrate, debayer=False, equalize_cfa=False) \
        if late_debayer else calibrate


def _cal_key(masters_key: str, lights: list, calibrate: CalibrateParams, stack) -> str:
    return fingerprint("calibrate", masters_key, files_fingerprint(f.path for f in lights),
                       calibrate.to_dict(), stack.float16)


def _calibrated_reference(register: RegisterParams, items: list, names: list) -> RegisterParams:
    """The user names a raw light; registration sees its calibrated version."""
    if register.reference:
        want = os.path.realpath(register.reference)
        for it, p in zip(items, names):
            if os.path.realpath(it.light.path) == want:
                return dataclasses.replace(register, reference=str(p))
    return register


def _log_rows(tag: str, reg, logger) -> None:
    for row in reg.rows:
        status = "accepted" if row["accepted"] else f"rejected: {row['reason']}"
        logger(f"[{tag}] {row['name']}: stars {row['n_stars']}, FWHM "
               f"{_fmt(row['fwhm'])} px, roundness {_fmt(row['roundness'])}, background "
               f"{_fmt(row['background'], 5)}, noise {_fmt(row['noise'], 6)}, matches "
               f"{row['n_matches']}, rms {_fmt(row['rms'], 3)} px"
               + (" (reference)" if row["reference"] else "") + f" -> {status}")


def _two_pass(tag, lights, items, master_set, masters_key, work, stack, calibrate, register,
              late, lo, span, stage, cancel, logger, client, timings):
    """Calibrated lights written, then registered (the reference chosen from all)."""
    t0 = time.perf_counter()
    names, cal_key, measured = _stage_calibrate(
        tag, lights, items, master_set, masters_key, work, stack, calibrate, late,
        stage(lo, lo + 0.4 * span, f"calibrate {tag}"), cancel, logger, client, register)
    timings[f"calibrate[{tag}]"] = time.perf_counter() - t0
    master_set.release()  # the masters' arrays are not needed until the next filter
    t0 = time.perf_counter()
    reg, reg_key = _stage_register(
        tag, items, names, cal_key, work, register, calibrate, late,
        stage(lo + 0.4 * span, lo + 0.75 * span, f"register {tag}"), cancel, logger,
        client, measured)
    timings[f"register[{tag}]"] = time.perf_counter() - t0
    return reg, reg_key


def _stage_register(tag: str, items: list, names: list, cal_key: str, work: Path,
                    register: RegisterParams, calibrate: CalibrateParams, late_debayer: bool,
                    progress, cancel, logger, client=None, measure: Optional[Stage] = None):
    """Star measurements, then registered frames: two fingerprints, so a change of
    interpolation or model re-resamples without measuring the stars again."""
    from .register import register_frames

    rdir = work / f"registered_{tag}"
    reg_params = _calibrated_reference(register, items, names)
    if measure is None or measure.key != _measure_stage(work, tag, cal_key, register).key:
        measure = _measure_stage(work, tag, cal_key, register)
        measure.open()
    debayer_method = calibrate.debayer_method if late_debayer else "rcd"
    equalize = calibrate.equalize_cfa and late_debayer
    stage = Stage(rdir, f"[{tag}] register", fingerprint(
        "register", measure.key, register.to_dict(), reg_params.reference, debayer_method,
        equalize),
        products="*")
    stage.open()
    reg = register_frames(names, rdir, reg_params, overwrite=True, resume=True,
                          debayer_method=debayer_method, equalize_cfa=equalize,
                          record=register, progress=progress, cancel=cancel, client=client)
    measure.finish()
    stage.finish(accepted=reg.n_accepted)
    logger(measure.describe())
    logger(stage.describe())
    _log_rows(tag, reg, logger)
    return reg, stage.key


def _stage_integrate(tag: str, reg, reg_key: str, work: Path, integrate: IntegrateParams,
                     execution: Execution, progress, cancel, logger) -> tuple:
    """The integrated image, its coverage and rejection maps (kept in the work folder,
    so an unchanged re-run only copies them to the output)."""
    from types import SimpleNamespace

    from ..core.io import read_image, write_image
    from .integrate import REJECTION_MAP_NAMES, integrate_with_params, write_rejection_maps

    accepted = [(row, Path(row["output"])) for row in reg.rows if row["accepted"]]
    if len(accepted) < 2:
        raise BadInputError(work / f"registered_{tag}", f"only {len(accepted)} frame(s) "
                                                        "registered: need at least 2 to integrate")
    stage = Stage(work / f"integrated_{tag}", f"[{tag}] integrate", fingerprint(
        "integrate", reg_key, integrate.image_dict(), integrate.rejection_maps),
        products="*.fits")
    files = [stage.folder / n for n in ("stack.fits", "coverage.fits", *REJECTION_MAP_NAMES)]
    if stage.open() == "reused" and all(p.exists() for p in files[:2]):
        img = read_image(files[0])
        maps = (read_image(files[2]).data, read_image(files[3]).data) \
            if integrate.rejection_maps and files[3].exists() else (None, None)
        result = SimpleNamespace(image=img, coverage=read_image(files[1]).data,
                                 low_map=maps[0], high_map=maps[1], log=stage.info().get("log", []))
    else:
        ref_pos = next((k for k, (row, _) in enumerate(accepted) if row["reference"]), 0)
        stats = [{"fwhm": row["fwhm"], "n_stars": row["n_stars"]} for row, _ in accepted]
        frames = [p for _, p in accepted]
        # the coverage is the combine kernel's count of valid values (the same numbers
        # as coverage_map, which would read every frame's first plane again: 0.07 s CPU
        # for 16 Seestar frames)
        result = integrate_with_params(frames, integrate, reference=ref_pos,
                                       frame_stats=stats, execution=execution,
                                       coverage=False, progress=progress, cancel=cancel)
        result.coverage = getattr(result, "valid_count", None)
        if result.coverage is None:
            from ..core.coverage import coverage_map

            result.coverage = coverage_map(frames)
        write_image(result.image.replace(data=result.coverage, mask=None, history=[]),
                    files[1], overwrite=True)
        if integrate.rejection_maps:
            write_rejection_maps(result, stage.folder, overwrite=True)
        write_image(result.image, files[0], overwrite=True)
        stage.finish(log=list(result.log))
    logger(stage.describe())
    for line in getattr(result, "log", []) or []:
        logger(f"[{tag}] {line}")
    return result, len(accepted)


def run_stack(inputs: Sequence[os.PathLike | str], output: os.PathLike | str, *,
              stack: StackParams = StackParams(), masters: MastersParams = MastersParams(),
              calibrate: CalibrateParams = CalibrateParams(),
              register: RegisterParams = RegisterParams(),
              integrate: IntegrateParams = IntegrateParams(),
              execution: Execution = Execution(),
              work_dir: os.PathLike | str | None = None, overwrite: bool = False,
              rejection_maps_dir: os.PathLike | str | None = None,
              progress: Optional[Progress] = None, cancel: Optional[CancelToken] = None,
              log: Optional[Log] = None, one_pass: Optional[bool] = None) -> StackResult:
    """Run the whole pre-processing; see the module docstring.

    Parameters
    ----------
    inputs : paths
        Session folders and/or files (several nights may be given together).
    output : path
        ``OUT.fits``; with several filters, ``OUT_<filter>.fits`` each. Beside each,
        ``<stem>_coverage.fits`` (frames with data at each pixel, float32), named by
        the stack's ``COVERAGE`` header key.
    stack, masters, calibrate, register, integrate : parameter dataclasses
        One per sub-step (``pipeline/steps.py``).
    execution : Execution
        Threads (``workers``, 0 = all cores), memory budget, Dask scheduler.
    work_dir : path, optional
        Intermediate files (default ``<OUT>.work`` beside the output). A later run
        into the same work folder redoes only the stages whose inputs or parameters
        changed (:mod:`.fingerprint`) and says which in the log.
    overwrite : bool
        Replace existing outputs.
    rejection_maps_dir : path, optional
        Write the low/high rejection maps of each filter there.
    progress, cancel, log : optional
        Progress callback, cancel token, and a callable receiving each log line
        (the same lines go to ``<OUT>.log``).
    one_pass : bool, optional
        Calibrate and register each light in one pass, writing only the registered
        frame (:mod:`.onepass`; needs ``register.reference``, not with a Dask
        scheduler). Default: when the reference is given and the session has no
        calibration frames; False keeps the calibrated frames, so a change of
        registration parameters alone does not calibrate again.

    Returns
    -------
    StackResult

    Raises
    ------
    BadInputError
        Before any work: a bad or missing file, no lights, a filter with fewer than
        two lights, an output or work folder that cannot be written, outputs that
        exist without ``overwrite``.
    """
    from .calibrate import plan_calibration
    from .inputs import check_output_dir, check_output_file
    from .integrate import coverage_name, write_rejection_maps
    from .onepass import stage_one_pass, use_one_pass
    from .steps import apply_workers

    output = Path(output)
    logger = _Logger(log)
    timings: dict = {}
    t0 = time.perf_counter()
    plan = plan_stack(inputs, stack=stack, masters=masters, calibrate=calibrate, log=logger)
    filters = list(plan.lights_by_filter)
    outputs = {f: _output_for(output, f, len(filters)) for f in filters}
    outputs_rgb = output.with_name(f"{output.stem}_RGB{output.suffix}")
    for p in outputs.values():
        check_output_file(p, overwrite=overwrite)
        if coverage_name(p).exists() and not overwrite:
            raise BadInputError(coverage_name(p), "output exists (use --overwrite to replace it)")
    if stack.rgb:
        check_output_file(outputs_rgb, overwrite=overwrite)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
    check_output_dir(work)
    if rejection_maps_dir is not None:
        check_output_dir(rejection_maps_dir)
    if rejection_maps_dir is not None and not integrate.rejection_maps:
        integrate = dataclasses.replace(integrate, rejection_maps=True)
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    logger(f"napari-astro stack: {len(plan.frames)} frames, {len(filters)} filter(s); "
           f"work folder {work}")
    for line in plan.describe():
        logger(line)
    if plan.disk_bytes > free:
        raise BadInputError(work, f"needs about {plan.disk_bytes / 1e9:.1f} GB of disk, "
                                  f"{free / 1e9:.1f} GB free")
    timings["plan"] = time.perf_counter() - t0
    from ..core.jit import get_num_threads, set_num_threads  # numba's, without importing it

    threads_before = get_num_threads()
    apply_workers(execution)  # this thread's numba pool; registration sizes its pool from it

    def stage(a: float, b: float, label: str) -> SubProgress:
        return SubProgress(progress, a, b, 100.0, label)

    exits = contextlib.ExitStack()
    client = None
    try:
        if execution.scheduler:
            from .distributed import connect

            client = exits.enter_context(connect(execution.scheduler))
            # integration's tiles go to the same cluster through the same connection
            execution = dataclasses.replace(execution, scheduler=client)
            logger(f"Dask cluster {client.scheduler.address}: calibration, star "
                   "measurement and registration frame by frame, integration by tiles")
        # Progress budget: masters 10%, per filter calibrate 35%, register 35%, integrate 20%.
        t0 = time.perf_counter()
        master_set, masters_key = _stage_masters(plan, work, masters, execution,
                                                 stage(0, 10, "masters"), cancel, logger)
        timings["masters"] = time.perf_counter() - t0
        images, quality, maps, coverage = {}, {}, {}, {}
        late = calibrate.debayer and calibrate.debayer_method != "superpixel"
        for fi, filt in enumerate(filters):
            lo, hi = 10 + 90 * fi / len(filters), 10 + 90 * (fi + 1) / len(filters)
            span = hi - lo
            lights = plan.lights_by_filter[filt]
            tag = filt or "none"
            items = plan_calibration(lights, master_set, calibrate)
            t0 = time.perf_counter()
            if use_one_pass(plan, lights, register, client, one_pass):
                reg, reg_key = stage_one_pass(
                    tag, lights, items, master_set, masters_key, work, stack, calibrate,
                    register, late, stage(lo, lo + 0.75 * span, f"calibrate+register {tag}"),
                    cancel, logger)
                master_set.release()
                _trim_heap()
                timings[f"calibrate+register[{tag}]"] = time.perf_counter() - t0
            else:
                reg, reg_key = _two_pass(tag, lights, items, master_set, masters_key, work,
                                         stack, calibrate, register, late, lo, span, stage,
                                         cancel, logger, client, timings)
                _trim_heap()
            quality[filt] = reg.rows
            t0 = time.perf_counter()
            result, n_used = _stage_integrate(
                tag, reg, reg_key, work, integrate, execution,
                stage(lo + 0.75 * span, hi, f"integrate {tag}"), cancel, logger)
            images[filt] = _write_output(result, outputs[filt], stack, filt, n_used,
                                         len(lights), logger)
            coverage[filt] = result.coverage
            if rejection_maps_dir is not None:
                lowp, highp = write_rejection_maps(result, Path(rejection_maps_dir) / tag,
                                                   overwrite=True)
                logger(f"[{tag}] rejection maps {lowp}, {highp}")
            maps[filt] = (result.low_map, result.high_map)
            timings[f"integrate[{tag}]"] = time.perf_counter() - t0

        if stack.rgb:
            from ..core.io import write_image

            t0 = time.perf_counter()
            images["RGB"] = combine_rgb(images, stack.rgb, log=logger)
            write_image(images["RGB"], outputs_rgb, overwrite=True)
            outputs["RGB"] = outputs_rgb
            logger(f"wrote {outputs_rgb}")
            timings["rgb"] = time.perf_counter() - t0
        for k, v in timings.items():
            logger(f"time {k}: {v:.2f} s")
        log_path = output.with_name(output.stem + ".log")
        logger.write(log_path)
        if stack.clean:
            shutil.rmtree(work, ignore_errors=True)
        report(progress, 100.0, 100.0, "done")
    finally:
        set_num_threads(threads_before)
        exits.close()
    return StackResult(outputs=outputs, images=images, quality=quality, rejection_maps=maps,
                       log_path=log_path, timings=timings, coverage=coverage)


def _trim_heap() -> None:
    """Give the memory that freed frames leave in glibc's heaps back to the system
    (``malloc_trim``): between stages, so that integration does not start on top of
    what the frame threads' arenas kept. A no-op elsewhere than glibc."""
    import sys
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _write_output(result, path: Path, stack: StackParams, filt: str, n_used: int,
                  n_lights: int, logger) -> AstroImage:
    """The stack with its ``pre.stack`` HISTORY and its coverage map beside it."""
    from ..core.io import write_image
    from .integrate import write_coverage

    img = result.image
    img.history.append(stack.history())
    img.add_history(StackParams.STEP_ID + ".result", {"filter": filt, "frames": n_used,
                                                      "lights": n_lights})
    img.header["NCOMBINE"] = (n_used, "frames integrated")
    img.header["IMAGETYP"] = ("Master Light", "stacked by napari-astro")
    cov = write_coverage(result, path, overwrite=True)
    write_image(img, path, overwrite=True)
    logger(f"[{filt or 'none'}] wrote {path} ({n_used}/{n_lights} frames; coverage {cov.name})")
    return img


def combine_rgb(stacks: dict, spec: str, *, log: Optional[Log] = None) -> AstroImage:
    """Align the mono stacks named in ``spec`` ("R,G,B" filter names) onto the first
    and combine them into one colour image (channels R, G, B)."""
    from .register import measure_frame
    from ..core.registration import apply_transform, find_transform

    names = [n.strip() for n in spec.split(",")]
    if len(names) != 3:
        raise BadInputError("--rgb", f"needs three filter names R,G,B, got {spec!r}")
    missing = [n for n in names if n not in stacks]
    if missing:
        raise BadInputError("--rgb", f"no lights with filter {missing[0]!r} "
                                     f"(filters found: {', '.join(sorted(stacks)) or 'none'})")
    imgs = [stacks[n] for n in names]
    if any(im.is_color for im in imgs):
        raise BadInputError("--rgb", "the filter stacks must be mono")
    ref_stars, _ = measure_frame(imgs[0])
    chans = [imgs[0].data]
    mask = imgs[0].mask.copy() if imgs[0].mask is not None else np.ones(imgs[0].shape2d, bool)
    for name, im in zip(names[1:], imgs[1:]):
        stars, _ = measure_frame(im)
        match = find_transform(stars, ref_stars, model="affine")
        reg = apply_transform(im, match.transform, shape=imgs[0].shape2d)
        if log:
            log(f"RGB: {name} aligned on {names[0]} with {match.n_matches} stars, "
                f"rms {match.rms:.3f} px")
        chans.append(reg.data)
        if reg.mask is not None:
            mask &= reg.mask
    out = imgs[0].replace(data=np.stack(chans), mask=mask if not mask.all() else None)
    out.header["FILTER"] = "RGB"
    out.add_history("pre.rgb", {"channels": names})
    return out


def _fmt(v, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _params_from_args(args):
    from .cliargs import params_from_args
    from .steps import execution_from_args

    return (params_from_args(StackParams, args),
            params_from_args(MastersParams, args, prefix="masters_"),
            params_from_args(CalibrateParams, args),
            params_from_args(RegisterParams, args),
            params_from_args(IntegrateParams, args,
                             rejection_maps=bool(getattr(args, "rejection_maps", None))),
            execution_from_args(args))


def _one_pass_choice(stack: StackParams) -> Optional[bool]:
    """``StackParams.one_pass`` ("auto", "always", "never") once it exists, else auto."""
    value = getattr(stack, "one_pass", "auto")
    return None if value in (None, "auto") else value in (True, "always", "yes")


def cli_stack(args) -> int:
    """``napari-astro stack SESSION... -o OUT.fits``: progress bar on stderr, decisions
    on stderr and in ``OUT.log``."""
    from ..core.progress import TqdmProgress

    stack, masters, cal, reg, integ, execution = _params_from_args(args)
    if args.dry_run:
        plan = plan_stack(args.sessions, stack=stack, masters=masters, calibrate=cal)
        for line in plan.describe():
            print(line)
        return 0
    with TqdmProgress("stack") as bar:
        result = run_stack(args.sessions, args.output, stack=stack, masters=masters,
                           calibrate=cal, register=reg, integrate=integ, execution=execution,
                           work_dir=args.work_dir, overwrite=args.overwrite,
                           rejection_maps_dir=args.rejection_maps, progress=bar, cancel=None,
                           log=None if args.quiet else bar.write,
                           one_pass=_one_pass_choice(stack))
    for filt, path in result.outputs.items():
        print(f"{path}")
    print(f"log: {result.log_path}")
    return 0


def warm_up(folder: "os.PathLike | str | None" = None) -> float:
    """Compile (or load from numba's cache) the kernels a stack run uses, once:
    :func:`napari_astro.pipeline.warmup.warm_kernels` (each kernel on tiny inputs of a
    real run's types; ``folder`` is no longer used). Returns the seconds it took."""
    from .warmup import warm_kernels

    return warm_kernels()
