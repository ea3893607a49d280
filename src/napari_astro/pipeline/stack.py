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
        skipped.append(tuple(line.split(": ", 1)) if ": " in line else (line, "skipped"))
        if log:
            log(f"skipped {line}")

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
    master_set = MasterSet.from_frames(cal, masters) if hasattr(MasterSet, "from_frames") else None
    for filt, ls in by_filter.items():
        plan_items[filt] = plan_calibration(ls, master_set, calibrate) if master_set is not None else []
    disk = sum(2 * _frame_bytes(f, stack.float16, calibrate.debayer) for f in lights)
    return StackPlan(frames=frames, lights_by_filter=by_filter, calibration_frames=cal,
                     plan_items=plan_items, skipped=skipped, disk_bytes=disk)


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
        Session folders and/or files.
    output : path
        ``OUT.fits``; with several filters, ``OUT_<filter>.fits`` each.
    work_dir : path, optional
        Intermediate files (default ``<OUT>.work`` beside the output). Reused by a
        later run with the same inputs: finished frames are not recomputed.
    """
    raise NotImplementedError  # filled in below once the stages exist


def cli_stack(args) -> int:  # pragma: no cover - replaced below
    raise NotImplementedError
