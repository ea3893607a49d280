"""The whole pre-processing run: a night's folder(s) to a stacked master.

``run_stack`` classifies every file, builds (or reuses) masters, calibrates,
cosmetic-corrects and debayers each light, measures frame quality, registers onto a
reference and integrates, one output per filter. Intermediate frames live in a work
folder: every finished frame is written atomically with a JSON sidecar, so a second
run after an interruption (Ctrl-C, crash, power loss) resumes without redoing them.

``plan_stack`` does the classification and matching only (the dry run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.progress import CancelToken, Progress, SubProgress, report
from .steps import CalibrateParams, IntegrateParams, MastersParams, RegisterParams, StackParams

__all__ = ["StackPlan", "StackResult", "plan_stack", "run_stack", "cli_stack"]

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


def _inputs_fingerprint(frames) -> str:
    import hashlib
    h = hashlib.sha1()
    for f in sorted(frames, key=lambda f: str(f.path)):
        st = Path(f.path).stat()
        h.update(f"{Path(f.path).resolve()}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def run_stack(inputs: Sequence[os.PathLike | str], output: os.PathLike | str, *,
              stack: StackParams = StackParams(), masters: MastersParams = MastersParams(),
              calibrate: CalibrateParams = CalibrateParams(),
              register: RegisterParams = RegisterParams(),
              integrate: IntegrateParams = IntegrateParams(),
              work_dir: os.PathLike | str | None = None, overwrite: bool = False,
              rejection_maps_dir: os.PathLike | str | None = None,
              progress: Optional[Progress] = None, cancel: Optional[CancelToken] = None,
              log: Optional[Log] = None) -> StackResult:
    """Run the whole pre-processing; see the module docstring.

    Parameters
    ----------
    inputs : paths
        Session folders and/or files (several nights may be given together).
    output : path
        ``OUT.fits``; with several filters, ``OUT_<filter>.fits`` each.
    stack, masters, calibrate, register, integrate : parameter dataclasses
        One per sub-step (``pipeline/steps.py``).
    work_dir : path, optional
        Intermediate files (default ``<OUT>.work`` beside the output). A later run
        with the same inputs reuses what is finished there: masters, calibrated and
        registered frames are not recomputed.
    overwrite : bool
        Replace existing outputs.
    rejection_maps_dir : path, optional
        Write the low/high rejection maps of each filter there.
    progress, cancel, log : optional
        Progress callback, cancel token, and a callable receiving each log line
        (the same lines go to ``<OUT>.log``).

    Returns
    -------
    StackResult
    """
    from ..core.io import read_image, write_image
    from .calibrate import MasterSet, build_masters, calibrate_lights, output_name, plan_calibration
    from .integrate import integrate_with_params, write_rejection_maps
    from .register import register_frames

    output = Path(output)
    logger = _Logger(log)
    timings: dict = {}
    t0 = time.perf_counter()
    plan = plan_stack(inputs, stack=stack, masters=masters, calibrate=calibrate, log=logger)
    filters = list(plan.lights_by_filter)
    outputs = {f: _output_for(output, f, len(filters)) for f in filters}
    if not overwrite:
        for p in outputs.values():
            if p.exists():
                raise BadInputError(p, "output exists (use --overwrite to replace it)")
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
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
    n_filters = len(filters)
    # Progress budget: masters 10%, per filter calibrate 35%, register 35%, integrate 20%.

    def stage(a: float, b: float, label: str) -> SubProgress:
        return SubProgress(progress, a, b, 100.0, label)

    # ---- masters (reused when the inputs did not change)
    t0 = time.perf_counter()
    cal_frames = plan.calibration_frames
    mdir = work / "masters"
    marker = mdir / "done.json"
    fingerprint = _inputs_fingerprint(cal_frames) if cal_frames else "none"
    master_set = None
    if cal_frames:
        if marker.exists() and json.loads(marker.read_text()).get("inputs") == fingerprint:
            master_set = MasterSet.from_dir(mdir)
            logger(f"reusing {len(master_set)} masters from {mdir}")
        else:
            master_set = build_masters(cal_frames, mdir, masters, overwrite=True,
                                       progress=stage(0, 10, "masters"), cancel=cancel, log=logger)
            marker.write_text(json.dumps({"inputs": fingerprint}))
    else:
        master_set = MasterSet()
        logger("no calibration frames: lights are only cosmetic-corrected and debayered")
    timings["masters"] = time.perf_counter() - t0

    images: dict = {}
    quality: dict = {}
    maps: dict = {}
    for fi, filt in enumerate(filters):
        lo, hi = 10 + 90 * fi / n_filters, 10 + 90 * (fi + 1) / n_filters
        span = hi - lo
        lights = plan.lights_by_filter[filt]
        items = plan_calibration(lights, master_set, calibrate)
        tag = filt or "none"
        cdir = work / f"calibrated_{tag}"
        cdir.mkdir(parents=True, exist_ok=True)
        # ---- calibrate (resumes: finished frames are on disk, written atomically)
        t0 = time.perf_counter()
        taken: set = set()
        names = [cdir / output_name(it.light, taken) for it in items]
        todo = [(it, p) for it, p in zip(items, names) if not p.exists()]
        # One-shot-colour lights stay CFA mosaics on disk (a third of the bytes of
        # debayered frames): stars are measured on the CFA luminance and each frame is
        # debayered just before it is resampled, inside registration's frame threads.
        late_debayer = calibrate.debayer and calibrate.debayer_method != "superpixel"
        cal_params = dataclasses.replace(calibrate, debayer=False, equalize_cfa=False) \
            if late_debayer else calibrate
        done = [p for p in names if p.exists()]
        if done and todo and calibrate.auto_pedestal:
            # Same session pedestal as the interrupted run, so results are identical.
            ped = float(read_image(done[0]).header.get("PEDESTAL", calibrate.pedestal))
            cal_params = dataclasses.replace(cal_params, auto_pedestal=False, pedestal=ped)
        if todo:
            logger(f"[{tag}] calibrating {len(todo)} lights ({len(items) - len(todo)} reused)")
            calibrate_lights([it.light for it, _ in todo], master_set, cal_params, cdir,
                             plan=[it for it, _ in todo], overwrite=True,
                             out_dtype="uint16" if stack.float16 else "float32",
                             progress=stage(lo, lo + 0.4 * span, f"calibrate {tag}"),
                             cancel=cancel, log=logger)
        else:
            logger(f"[{tag}] reusing {len(items)} calibrated lights")
        timings[f"calibrate[{tag}]"] = time.perf_counter() - t0
        master_set.release()  # the masters' arrays are not needed until the next filter

        # ---- measure, reject, register (resumes per frame)
        t0 = time.perf_counter()
        rdir = work / f"registered_{tag}"
        reg_params = register
        if register.reference:
            # The user names a raw light; registration sees its calibrated version.
            want = os.path.realpath(register.reference)
            for it, p in zip(items, names):
                if os.path.realpath(it.light.path) == want:
                    reg_params = dataclasses.replace(register, reference=str(p))
        reg = register_frames(names, rdir, reg_params, overwrite=True, resume=True,
                              debayer_method=calibrate.debayer_method if late_debayer else "rcd",
                              equalize_cfa=calibrate.equalize_cfa and late_debayer,
                              progress=stage(lo + 0.4 * span, lo + 0.75 * span, f"register {tag}"),
                              cancel=cancel)
        for row in reg.rows:
            status = "accepted" if row["accepted"] else f"rejected: {row['reason']}"
            logger(f"[{tag}] {row['name']}: stars {row['n_stars']}, FWHM "
                   f"{_fmt(row['fwhm'])} px, roundness {_fmt(row['roundness'])}, background "
                   f"{_fmt(row['background'], 5)}, noise {_fmt(row['noise'], 6)}, matches "
                   f"{row['n_matches']}, rms {_fmt(row['rms'], 3)} px"
                   + (" (reference)" if row["reference"] else "") + f" -> {status}")
        quality[filt] = reg.rows
        timings[f"register[{tag}]"] = time.perf_counter() - t0

        # ---- integrate
        t0 = time.perf_counter()
        accepted = [(row, Path(row["output"])) for row in reg.rows if row["accepted"]]
        ref_pos = next((k for k, (row, _) in enumerate(accepted) if row["reference"]), 0)
        stats = [{"fwhm": row["fwhm"], "n_stars": row["n_stars"]} for row, _ in accepted]
        params = integrate
        if rejection_maps_dir is not None and not params.rejection_maps:
            params = dataclasses.replace(params, rejection_maps=True)
        if len(accepted) < 2:
            raise BadInputError(cdir, f"only {len(accepted)} frame(s) registered: need at least 2 "
                                      "to integrate")
        result = integrate_with_params([p for _, p in accepted], params, reference=ref_pos,
                                       frame_stats=stats,
                                       progress=stage(lo + 0.75 * span, hi, f"integrate {tag}"),
                                       cancel=cancel)
        for line in getattr(result, "log", []) or []:
            logger(f"[{tag}] {line}")
        img = result.image
        img.add_history(StackParams.STEP_ID, {**stack.to_dict(), "filter": filt,
                                              "frames": len(accepted), "lights": len(lights)})
        img.header["NCOMBINE"] = (len(accepted), "frames integrated")
        img.header["IMAGETYP"] = ("Master Light", "stacked by napari-astro")
        write_image(img, outputs[filt], overwrite=True)
        logger(f"[{tag}] wrote {outputs[filt]} ({len(accepted)}/{len(lights)} frames)")
        if rejection_maps_dir is not None:
            lowp, highp = write_rejection_maps(result, Path(rejection_maps_dir) / tag, overwrite=True)
            logger(f"[{tag}] rejection maps {lowp}, {highp}")
        images[filt] = img
        maps[filt] = (result.low_map, result.high_map)
        timings[f"integrate[{tag}]"] = time.perf_counter() - t0

    if stack.rgb:
        t0 = time.perf_counter()
        rgb_path = output.with_name(f"{output.stem}_RGB{output.suffix}")
        images["RGB"] = combine_rgb(images, stack.rgb, log=logger)
        write_image(images["RGB"], rgb_path, overwrite=True)
        outputs["RGB"] = rgb_path
        logger(f"wrote {rgb_path}")
        timings["rgb"] = time.perf_counter() - t0
    for k, v in timings.items():
        logger(f"time {k}: {v:.2f} s")
    log_path = output.with_name(output.stem + ".log")
    logger.write(log_path)
    if not stack.keep_intermediates:
        shutil.rmtree(work, ignore_errors=True)
    report(progress, 100.0, 100.0, "done")
    return StackResult(outputs=outputs, images=images, quality=quality, rejection_maps=maps,
                       log_path=log_path, timings=timings)


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
    from .integrate import _params_from_args as integ_params
    integ = integ_params(args)
    stack = StackParams(skip_bad=args.skip_bad, float16=args.float16,
                        keep_intermediates=not args.clean,
                        workers=args.workers or 0, rgb=getattr(args, "rgb", None))
    cal = CalibrateParams(debayer=not args.no_debayer, bayer=args.bayer)
    reg = RegisterParams(reference=args.reference)
    masters = MastersParams(memory_limit=integ.memory_limit)
    return stack, masters, cal, reg, integ


def cli_stack(args) -> int:
    """``napari-astro stack SESSION... -o OUT.fits``: progress bar on stderr, decisions
    on stderr and in ``OUT.log``."""
    from ..core.progress import TqdmProgress

    stack, masters, cal, reg, integ = _params_from_args(args)
    if args.dry_run:
        plan = plan_stack(args.sessions, stack=stack, masters=masters, calibrate=cal)
        for line in plan.describe():
            print(line)
        return 0
    if stack.workers:
        import numba
        numba.set_num_threads(max(1, min(stack.workers, numba.config.NUMBA_NUM_THREADS)))
    with TqdmProgress("stack") as bar:
        result = run_stack(args.sessions, args.output, stack=stack, masters=masters,
                           calibrate=cal, register=reg,
                           integrate=integ, work_dir=args.work_dir, overwrite=args.overwrite,
                           rejection_maps_dir=args.rejection_maps, progress=bar, cancel=None,
                           log=None if args.quiet else bar.write)
    for filt, path in result.outputs.items():
        print(f"{path}")
    print(f"log: {result.log_path}")
    return 0
