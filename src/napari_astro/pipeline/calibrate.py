"""Masters and calibrated lights for a night: the ``masters`` and ``calibrate`` steps.

The flow (what the CLI, the stack run and the Calibration widget all call)::

    frames  = scan_frames(folders)                         # headers only
    masters = build_masters(cal_frames, out_dir, MastersParams())
    plan    = plan_calibration(lights, masters, CalibrateParams())   # who gets what
    images  = calibrate_lights(lights, masters, CalibrateParams(), out_dir, plan=plan)

* :func:`build_masters` groups bias/dark/flat/flat-dark frames (exposure, temperature
  within a tolerance, filter, binning, gain), stacks each group with rejection
  (``core.integration.combine_stack``, Winsorized 3/3 by default), calibrates the
  flats by the matching flat-dark, dark or bias first, and returns a :class:`MasterSet`.
  Every frame is read and checked before any master is written.
* :func:`plan_calibration` decides per light, from headers alone, which bias, dark
  (matched, scaled by exposure, or optimised) and flat it gets; a light that needs a
  dark it cannot have is a :class:`BadInputError` naming the light.
* :func:`calibrate_light` applies one :class:`PlanItem`: calibration arithmetic,
  pedestal, cosmetic correction, optional CFA equalisation and debayering.
* :func:`calibrate_lights` runs a whole list with reads and writes overlapped in
  threads, one session-wide pedestal and, without darks, a bad-pixel map voted by
  the lights themselves.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.calibration import (SATURATED, BadPixelAccumulator, BadPixelMap, auto_pedestal,
                                calibrate_arrays, check_flat, correct_bad_pixels_array,
                                dark_scale_for_exposure, find_bad_pixels, flat_inverse,
                                optimize_dark_scale, subtract)
from ..core.debayer import debayer, equalize_cfa
from ..core.errors import BadInputError
from ..core.frames import FrameInfo, FrameType, GroupKey, group_frames, scan_frames
from ..core.image import AstroImage, format_history
from ..core.io import read_image, write_image
from ..core.io.fits import cfa_pattern_from_header
from ..core.progress import CancelToken, Progress, report
from .steps import CalibrateParams, MastersParams

__all__ = ["Master", "MasterSet", "PlanItem", "build_masters", "plan_calibration",
           "calibrate_light", "calibrate_lights", "cli_masters", "cli_calibrate",
           "output_name"]

Log = Callable[[str], None]

_IMAGETYP = {FrameType.BIAS: "Master Bias", FrameType.DARK: "Master Dark",
             FrameType.FLAT: "Master Flat", FrameType.DARKFLAT: "Master Dark Flat"}
_READ_THREADS = 2


def _nolog(_: str) -> None:
    pass


def _exp_equal(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(0.01, 1e-3 * max(abs(a), abs(b)))


def _known_equal(a, b) -> bool:
    """Equal, or unknown on either side (a header without GAIN matches any gain)."""
    return a is None or b is None or a == b


# ---------------------------------------------------------------------------- masters
@dataclasses.dataclass(eq=False)
class Master:
    """One master frame: what it is, where it came from, and (once built) its data.

    Attributes
    ----------
    type : FrameType
        BIAS, DARK, FLAT or DARKFLAT.
    key : GroupKey
        The group it was stacked from.
    exposure, temperature, gain : float or None
        Seconds, deg C (mean of the frames), camera gain.
    filter : str or None
    binning : (int, int)
    shape : (int, int)
        ``(H, W)``.
    bayer : str or None
        CFA pattern of ``data[0, 0]``.
    frames : list of Path
        Source frames (empty for a master loaded from disk).
    path : Path or None
        File the master was written to or loaded from.
    image : AstroImage or None
        The data, once built or loaded (:meth:`load`).
    notes : list of str
        What was done (e.g. "flats calibrated by master bias").
    """

    type: FrameType
    key: GroupKey
    exposure: float | None
    temperature: float | None
    filter: str | None
    binning: tuple
    gain: float | None
    shape: tuple
    bayer: str | None
    frames: list = dataclasses.field(default_factory=list)
    path: Optional[Path] = None
    image: Optional[AstroImage] = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        """File name of the master: ``master_<group slug>.fits``."""
        return f"master_{self.key.slug()}.fits"

    @property
    def label(self) -> str:
        return str(self.path.name) if self.path is not None else self.name

    def load(self) -> AstroImage:
        """The master's image (read from :attr:`path` on first use)."""
        if self.image is None:
            if self.path is None:
                raise BadInputError(None, f"master {self.key} has not been built")
            self.image = read_image(self.path)
        return self.image

    def describe(self) -> str:
        n = f"{len(self.frames)} frames" if self.frames else (str(self.path) if self.path else "")
        return f"{_IMAGETYP[self.type]} [{self.key}] {n}".strip()

    @classmethod
    def from_frames(cls, key: GroupKey, frames: Sequence[FrameInfo]) -> "Master":
        temps = [f.temperature for f in frames if f.temperature is not None]
        exps = [f.exposure for f in frames if f.exposure is not None]
        gains = [f.gain for f in frames if f.gain is not None]
        f0 = frames[0]
        return cls(type=key.type, key=key,
                   exposure=key.exposure if key.exposure is not None
                   else (float(np.median(exps)) if exps else None),
                   temperature=float(np.mean(temps)) if temps else None,
                   filter=f0.filter, binning=tuple(f0.binning),
                   gain=key.gain if key.gain is not None else (gains[0] if gains else None),
                   shape=tuple(f0.shape[-2:]), bayer=f0.bayer,
                   frames=[f.path for f in frames])

    @classmethod
    def from_info(cls, info: FrameInfo) -> "Master":
        """A master written earlier (``IMAGETYP = 'Master Dark'`` etc.)."""
        key = GroupKey(type=info.type, exposure=info.exposure, filter=info.filter,
                       temperature=info.temperature, binning=tuple(info.binning),
                       gain=info.gain)
        return cls(type=info.type, key=key, exposure=info.exposure,
                   temperature=info.temperature, filter=info.filter,
                   binning=tuple(info.binning), gain=info.gain, shape=tuple(info.shape[-2:]),
                   bayer=info.bayer, path=Path(info.path))


@dataclasses.dataclass
class MasterSet:
    """All masters of a session, with the derived arrays calibration needs.

    Attributes
    ----------
    biases, darks, flats, darkflats : list of Master
    log : list of str
        One line per decision taken while building.

    Derived arrays (thermal dark ``D - B``, inverse normalised flat, bad-pixel map of
    a dark) are computed once per master on first use and cached.
    """

    biases: list = dataclasses.field(default_factory=list)
    darks: list = dataclasses.field(default_factory=list)
    flats: list = dataclasses.field(default_factory=list)
    darkflats: list = dataclasses.field(default_factory=list)
    log: list = dataclasses.field(default_factory=list)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def all(self) -> list[Master]:
        return [*self.biases, *self.darks, *self.darkflats, *self.flats]

    def release(self) -> None:
        """Drop pixel data held in memory (masters written to disk reload on use)."""
        self._cache.clear()
        for m in self.all():
            if m.path is not None and Path(m.path).exists():
                m.image = None

    def __len__(self) -> int:
        return len(self.all())

    def add(self, m: Master) -> None:
        {FrameType.BIAS: self.biases, FrameType.DARK: self.darks, FrameType.FLAT: self.flats,
         FrameType.DARKFLAT: self.darkflats}[m.type].append(m)

    @classmethod
    def from_frames(cls, frames: Sequence[FrameInfo],
                    params: MastersParams = MastersParams()) -> "MasterSet":
        """Masters-to-be from the frames' groups, without reading pixels (for planning)."""
        ms = cls()
        cal = [f for f in frames if f.type != FrameType.LIGHT]
        for key, members in group_frames(cal, temp_tolerance=params.temp_tolerance).items():
            ms.add(Master.from_frames(key, members))
        return ms

    @classmethod
    def from_dir(cls, folder: "str | os.PathLike[str]") -> "MasterSet":
        """Masters written earlier by :func:`build_masters` (headers read now, pixels later)."""
        ms = cls()
        for info in scan_frames([folder]):
            if info.type == FrameType.LIGHT:
                raise BadInputError(info.path, "a light frame in the masters folder")
            ms.add(Master.from_info(info))
        if not len(ms):
            raise BadInputError(folder, "no master frames found")
        return ms

    def write(self, out_dir: "str | os.PathLike[str]", *, overwrite: bool = False) -> list[Path]:
        """Write every built master to ``out_dir/master_<group>.fits``."""
        out = Path(out_dir)
        paths = []
        for m in self.all():
            if m.image is None:
                continue
            p = out / m.name
            write_image(m.image, p, overwrite=overwrite)
            m.path = p
            paths.append(p)
        return paths

    # -- derived arrays --------------------------------------------------------------
    def thermal(self, dark: Master, bias: Master) -> np.ndarray:
        """``dark - bias`` (the part of the dark that scales with exposure)."""
        key = ("thermal", id(dark), id(bias))
        if key not in self._cache:
            self._cache[key] = subtract(dark.load().data, bias.load().data)
        return self._cache[key]

    def inv_flat(self, flat: Master, pattern: str | None) -> np.ndarray:
        """1 / flat normalised per CFA colour of ``pattern``."""
        key = ("invflat", id(flat), pattern)
        if key not in self._cache:
            img = flat.load()
            try:
                self._cache[key] = flat_inverse(img.data, pattern)
            except BadInputError as exc:
                raise BadInputError(flat.path or flat.label, exc.problem) from None
        return self._cache[key]

    def bad_pixels(self, dark: Master, pattern: str | None, hot_sigma: float,
                   cold_sigma: float) -> BadPixelMap:
        """Hot/cold pixels of a master dark (:func:`core.calibration.find_bad_pixels`)."""
        key = ("bpm", id(dark), pattern, hot_sigma, cold_sigma)
        if key not in self._cache:
            self._cache[key] = find_bad_pixels(dark.load().data, pattern=pattern,
                                               hot_sigma=hot_sigma, cold_sigma=cold_sigma)
        return self._cache[key]


def _read_stack(paths: Sequence[Path], shape: tuple, *, progress, cancel, done0: int,
                total: int, label: str) -> tuple[np.ndarray, list[AstroImage]]:
    """Read frames into one (N, H, W) float32 array, in threads; headers kept."""
    n = len(paths)
    stack = np.empty((n,) + tuple(shape), np.float32)
    heads: list = [None] * n

    def _one(i: int) -> int:
        img = read_image(paths[i])
        if img.data.ndim != 2:
            raise BadInputError(paths[i], "calibration frames must be raw 2-D frames, not colour")
        if img.data.shape != tuple(shape):
            raise BadInputError(paths[i], f"size {img.data.shape[1]}x{img.data.shape[0]} differs "
                                          f"from {shape[1]}x{shape[0]} of {paths[0]}")
        stack[i] = img.data
        heads[i] = img.replace(data=np.zeros((1, 1), np.float32))
        return i

    with cf.ThreadPoolExecutor(_READ_THREADS) as pool:
        for k, _ in enumerate(pool.map(_one, range(n))):
            report(progress, done0 + k + 1, total, f"{label} {k + 1}/{n}", cancel)
    return stack, heads


def _combine_banded(paths: Sequence[Path], shape: tuple, budget: int, *, rejection, combine: str,
                    offset: np.ndarray | None = None, scales: np.ndarray | None = None,
                    progress, cancel, done0: float, total: int, label: str) -> np.ndarray:
    """Combine frames that do not fit in ``budget`` bytes, band of rows by band of rows.

    Each frame is read by rows (positioned reads of the FITS data block, as the
    integration does), so memory holds one band of every frame: ``budget`` bounds it
    whatever the number and size of the frames. ``offset`` (H, W) is subtracted and
    ``scales`` (N,) multiply each frame before rejection (flats).
    """
    from ..core.integration import _open_frame, combine_stack

    n = len(paths)
    h, w = shape
    spill: list = []
    try:
        frames = [_open_frame(p, i, spill) for i, p in enumerate(paths)]
        rows = int(max(8, min(h, budget // max(1, 3 * n * w * 4))))
        out = np.empty((h, w), np.float32)
        buf = np.empty((n, 1, rows, w), np.float32)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            band = buf[:, :, : r1 - r0]
            for i, fr in enumerate(frames):
                fr.source.read_rows(r0, r1, band[i])
                if not np.isfinite(band[i]).all():
                    raise BadInputError(paths[i], "NaN or infinite pixels")
            if offset is not None:
                band -= offset[None, None, r0:r1]
            if scales is not None:
                band *= scales[:, None, None, None].astype(np.float32)
            out[r0:r1] = combine_stack(band[:, 0], rejection=rejection, combine=combine)
            report(progress, done0 + n * r1 / h, total, f"{label} rows {r1}/{h}", cancel)
        return out
    finally:
        if spill:
            import shutil
            shutil.rmtree(spill[0], ignore_errors=True)


def _note_flat_offset(m: "Master", off_m: "Master | None", what: str, log: Log) -> None:
    if off_m is None:
        m.notes.append("flats NOT bias-subtracted (no bias, flat-dark or matching "
                       "dark): the flat normalisation includes the camera offset")
        log(f"warning: {m.key}: " + m.notes[-1])
    else:
        m.notes.append(f"flats calibrated by master {what} {off_m.label}")


def _flat_scales(levels: np.ndarray, frames: Sequence[Path]) -> np.ndarray:
    """Factors that bring every flat to the mean level (zero/negative is bad input)."""
    for i, lv in enumerate(levels):
        if not lv > 0:
            raise BadInputError(frames[i], "flat is zero or negative after bias subtraction")
    return levels.mean() / levels


def _master_banded(m: "Master", ms: "MasterSet", params: MastersParams, rej, budget: int, *,
                   progress, cancel, done0: int, total: int, log: Log):
    """A master whose frames exceed the memory budget (see :func:`_combine_banded`).

    Flats are read once more, one at a time, for their checks and levels first."""
    heads = [read_image(p).replace(data=np.zeros((1, 1), np.float32))
             for p in m.frames[:1]]
    offset = scales = None
    if m.type == FrameType.FLAT:
        off_m, what = _flat_offset(m, ms, params.temp_tolerance)
        offset = off_m.load().data if off_m is not None else None
        off_level = float(np.median(offset[::4, ::4])) if offset is not None else None
        levels = []
        for p in m.frames:
            img = read_image(p)
            check_flat(img.data, p, offset=off_level)
            d = img.data[::4, ::4] - (offset[::4, ::4] if offset is not None else 0)
            levels.append(float(np.mean(d, dtype=np.float64)))
        _note_flat_offset(m, off_m, what, log)
        scales = _flat_scales(np.array(levels), m.frames)
    log(f"{m.key}: {len(m.frames)} frames exceed the {params.memory_limit} memory limit: "
        "combined in row bands")
    data = _combine_banded(m.frames, m.shape, budget, rejection=rej, combine=params.combine,
                           offset=offset, scales=scales, progress=progress, cancel=cancel,
                           done0=done0, total=total, label=str(m.key))
    return data, heads


def _rejection_for(params: MastersParams, n: int, log: Log, key) -> object:
    from ..core.integration import NoRejection, rejection_from_name

    rej = rejection_from_name(params.rejection, params.low, params.high)
    if n < rej.min_frames and not isinstance(rej, NoRejection):
        log(f"{key}: {n} frames, fewer than {rej.min_frames} for {params.rejection} rejection: "
            "plain average")
        return NoRejection()
    return rej


def _pick(cands: Sequence[Master], temperature: float | None) -> Master | None:
    if not cands:
        return None
    if temperature is None:
        return cands[0]
    return min(cands, key=lambda m: abs((m.temperature if m.temperature is not None
                                         else temperature) - temperature))


def _flat_offset(flat: Master, ms: MasterSet, tol: float) -> tuple[Master | None, str]:
    """The master to subtract from flats: flat-dark, else dark of their exposure, else bias."""
    def ok(m: Master) -> bool:
        return (m.shape == flat.shape and tuple(m.binning) == tuple(flat.binning)
                and _known_equal(m.gain, flat.gain))
    fd = [m for m in ms.darkflats if ok(m) and _exp_equal(m.exposure, flat.exposure)]
    if fd:
        return _pick(fd, flat.temperature), "flat-dark"
    dk = [m for m in ms.darks if ok(m) and _exp_equal(m.exposure, flat.exposure)]
    if dk:
        return _pick(dk, flat.temperature), "dark of the flats' exposure"
    bs = [m for m in ms.biases if ok(m)]
    if bs:
        return _pick(bs, flat.temperature), "bias"
    return None, ""


def build_masters(frames: Sequence[FrameInfo], out_dir: "str | os.PathLike[str] | None" = None,
                  params: MastersParams = MastersParams(), *, overwrite: bool = False,
                  progress: Optional[Progress] = None, cancel: Optional[CancelToken] = None,
                  log: Optional[Log] = None) -> MasterSet:
    """Stack bias, dark, flat-dark and flat frames into masters.

    Parameters
    ----------
    frames : sequence of FrameInfo
        From :func:`core.frames.scan_frames`; lights are ignored.
    out_dir : path-like, optional
        Write each master as ``out_dir/master_<group>.fits`` (float32, [0, 1]) once
        all of them are built. None keeps them in memory only.
    params : MastersParams
        Rejection (Winsorized 3/3 by default), combine, temperature tolerance.
    overwrite : bool, default False
        Replace existing master files.
    progress, cancel : optional
        Called per frame read.
    log : callable(str), optional
        One line per master and per decision.

    Returns
    -------
    MasterSet
        Masters with their images; headers carry IMAGETYP ('Master Bias', 'Master
        Dark', 'Master Flat', 'Master Dark Flat'), EXPTIME, CCD-TEMP, FILTER, GAIN,
        XBINNING/YBINNING, NCOMBINE and a HISTORY line with the parameters.

    Raises
    ------
    BadInputError
        Naming the file: mixed sizes in a group, unreadable frames, NaNs, a zero,
        negative or saturated flat, an existing output without ``overwrite``.
    """
    from ..core.integration import combine_stack

    log = log or _nolog
    cal = [f for f in frames if f.type != FrameType.LIGHT]
    groups = group_frames(cal, temp_tolerance=params.temp_tolerance)
    ms = MasterSet()
    for key, members in groups.items():
        ms.add(Master.from_frames(key, members))
    if out_dir is not None and not overwrite:
        for m in ms.all():
            if (Path(out_dir) / m.name).exists():
                raise BadInputError(Path(out_dir) / m.name,
                                    "output exists (use --overwrite to replace it)")
    total = sum(len(m.frames) for m in ms.all())
    done = 0
    from ..core.integration import parse_memory
    budget = parse_memory(params.memory_limit)
    # biases and darks first: flats are calibrated by them
    order = [*ms.biases, *ms.darks, *ms.darkflats, *ms.flats]
    for m in order:
        infos = groups[m.key]
        for f in infos:
            if tuple(f.shape[-2:]) != m.shape:
                raise BadInputError(f.path, f"size {f.width}x{f.height} differs from "
                                            f"{m.shape[1]}x{m.shape[0]} of {infos[0].path}")
        t0 = time.perf_counter()
        n = len(m.frames)
        rej = _rejection_for(params, n, log, m.key)
        if n * m.shape[0] * m.shape[1] * 4 > budget:
            data, heads = _master_banded(m, ms, params, rej, budget, progress=progress,
                                         cancel=cancel, done0=done, total=total, log=log)
            done += n
        else:
            stack, heads = _read_stack(m.frames, m.shape, progress=progress, cancel=cancel,
                                       done0=done, total=total, label=str(m.key))
            done += n
            if m.type == FrameType.FLAT:
                off_m, what = _flat_offset(m, ms, params.temp_tolerance)
                off = off_m.load().data if off_m is not None else None
                # the offset's level once, not once per flat (0.3 s of medians on 20 flats)
                off_level = float(np.median(off[::4, ::4])) if off is not None else None
                for i in range(n):
                    check_flat(stack[i], m.frames[i], offset=off_level)
                _note_flat_offset(m, off_m, what, log)
                if off is not None:
                    stack -= off[None]
                # Multiplicative normalisation before rejection: sky flats change level
                # from frame to frame; rescaled to the mean level afterwards.
                levels = np.array([float(np.mean(s[::4, ::4], dtype=np.float64)) for s in stack])
                scales = _flat_scales(levels, m.frames)
                for i in range(n):
                    stack[i] *= np.float32(scales[i])
            data = combine_stack(stack, rejection=rej, combine=params.combine)
            del stack
        if not np.isfinite(data).all():
            raise BadInputError(m.frames[0], "master has NaN values after combining")
        img = heads[0].replace(data=np.asarray(data, np.float32), history=[])
        h = img.header
        for k in ("DATE-OBS", "DATE-END", "DATE-AVG", "MJD-OBS", "OBJECT"):
            h.remove(k, ignore_missing=True, remove_all=True)
        h["IMAGETYP"] = (_IMAGETYP[m.type], "master frame")
        if m.exposure is not None:
            h["EXPTIME"] = (float(m.exposure), "[s] exposure of the frames")
            h["EXPOSURE"] = (float(m.exposure), "[s] exposure of the frames")
        if m.temperature is not None:
            h["CCD-TEMP"] = (round(float(m.temperature), 2), "[C] mean sensor temperature")
        if m.filter is not None:
            h["FILTER"] = m.filter
        if m.gain is not None:
            h["GAIN"] = m.gain
        h["XBINNING"] = int(m.binning[0])
        h["YBINNING"] = int(m.binning[1])
        h["NCOMBINE"] = (n, "number of frames combined")
        img.add_history(MastersParams.STEP_ID, {**params.to_dict(), "group": str(m.key),
                                                "nframes": n,
                                                "rejection_used": type(rej).__name__})
        for note in m.notes:
            img.history.append(f"{MastersParams.STEP_ID} {note}")
        m.image = img
        line = f"{_IMAGETYP[m.type]} [{m.key}]: {n} frames, {type(rej).__name__}, " \
               f"{time.perf_counter() - t0:.2f} s"
        ms.log.append(line)
        log(line)
    if out_dir is not None:
        for p in ms.write(out_dir, overwrite=overwrite):
            log(f"wrote {p}")
    return ms


# ---------------------------------------------------------------------------- planning
@dataclasses.dataclass
class PlanItem:
    """What calibration one light gets.

    Attributes
    ----------
    light : FrameInfo
    bias, dark, flat : Master or None
    dark_mode : {"none", "match", "scale", "optimize"}
        How the dark is applied: not at all, as is (it contains the bias), scaled by
        exposure (``dark_scale``) after bias subtraction, or optimised per light.
    dark_scale : float or None
        Factor on the thermal dark (None for "optimize" until computed).
    pattern : str or None
        CFA pattern used (``--bayer`` override applied).
    notes : list of str
        Human-readable decisions (missing frames, fallbacks).
    """

    light: FrameInfo
    bias: Optional[Master] = None
    dark: Optional[Master] = None
    flat: Optional[Master] = None
    dark_mode: str = "none"
    dark_scale: Optional[float] = None
    pattern: Optional[str] = None
    notes: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """One line: ``light_0001.fits: bias master_..., dark master_... (x1.00), flat ...``."""
        parts = []
        parts.append(f"bias {self.bias.label}" if self.bias else "no bias")
        if self.dark is None:
            parts.append("no dark")
        elif self.dark_mode == "match":
            parts.append(f"dark {self.dark.label}")
        elif self.dark_mode == "scale":
            parts.append(f"dark {self.dark.label} scaled x{self.dark_scale:.4g}")
        else:
            parts.append(f"dark {self.dark.label} optimised"
                         + (f" x{self.dark_scale:.4g}" if self.dark_scale is not None else ""))
        parts.append(f"flat {self.flat.label}" if self.flat else "no flat")
        text = f"{Path(self.light.path).name}: " + ", ".join(parts)
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        return text


def _pattern_for(info_or_image, override: str | None) -> str | None:
    """CFA pattern of data[0, 0]: the file's, or ``override`` read as BAYERPAT (so
    ROWORDER and X/YBAYROFF still apply)."""
    if override is None:
        return info_or_image.bayer
    if len(getattr(info_or_image, "shape", (0, 0, 0))) == 3 \
            or getattr(info_or_image, "is_color", False):
        return None
    h = info_or_image.header.copy()
    h["BAYERPAT"] = override.upper()
    height = info_or_image.shape[-2] if hasattr(info_or_image, "shape") else None
    if isinstance(info_or_image, AstroImage):
        height = info_or_image.data.shape[-2]
    return cfa_pattern_from_header(h, height)


def plan_calibration(lights: Sequence[FrameInfo], masters: MasterSet | None,
                     params: CalibrateParams = CalibrateParams()) -> list[PlanItem]:
    """Choose bias, dark and flat for each light from headers alone.

    Matching rules (as WBPP and Siril): the dark must have the light's exposure,
    gain, binning and size and a temperature within ``params.temp_tolerance`` (the
    closest one wins). Without such a dark, ``params.dark_mode`` decides: "match"
    refuses, "scale" subtracts the bias and the thermal dark times ``t_light /
    t_dark`` (the dark of the nearest longer exposure, else the longest), "optimize"
    does the same with the factor that minimises the calibrated noise. Without any
    dark at all only the bias (if any) is subtracted. The flat must have the light's
    filter, binning and size. Missing masters are allowed; each item's notes say.

    Raises
    ------
    BadInputError
        Naming the light, when darks exist but none can serve it (e.g. exposure
        mismatch with ``dark_mode="match"``, or scaling without a bias); naming the
        master when its size differs from the lights'.
    """
    masters = masters or MasterSet()
    items = []
    mode = params.dark_mode
    if mode not in ("match", "scale", "optimize"):
        raise BadInputError("--dark-mode", f"unknown dark mode {mode!r} (match, scale, optimize)")
    tol = float(params.temp_tolerance)
    for info in lights:
        shape = tuple(info.shape[-2:])
        if len(info.shape) == 3:
            raise BadInputError(info.path, "light is already colour (debayered): calibration "
                                           "needs raw frames")
        for m in masters.all():
            if m.shape != shape and (m.binning == tuple(info.binning)):
                raise BadInputError(m.path or (m.frames[0] if m.frames else m.label),
                                    f"size {m.shape[1]}x{m.shape[0]} differs from the light "
                                    f"{info.path} ({shape[1]}x{shape[0]})")
        item = PlanItem(light=info, pattern=_pattern_for(info, params.bayer))

        def fits_sensor(m: Master) -> bool:
            return (m.shape == shape and tuple(m.binning) == tuple(info.binning)
                    and _known_equal(m.gain, info.gain))

        def temp_ok(m: Master) -> bool:
            return (m.temperature is None or info.temperature is None
                    or abs(m.temperature - info.temperature) <= tol)

        biases = [m for m in masters.biases if fits_sensor(m)]
        item.bias = _pick(biases, info.temperature)
        if masters.biases and item.bias is None:
            item.notes.append("no master bias of this gain/binning/size")
        darks = [m for m in masters.darks if fits_sensor(m) and temp_ok(m)]
        matched = [m for m in darks if _exp_equal(m.exposure, info.exposure)]
        if matched:
            item.dark, item.dark_mode, item.dark_scale = _pick(matched, info.temperature), \
                "match", 1.0
        elif masters.darks:
            exps = sorted({m.exposure for m in masters.darks if m.exposure is not None})
            have = ", ".join(f"{e:g}s" for e in exps) or "unknown"
            if mode == "match" or not darks:
                why = (f"no master dark matches exposure {info.exposure}s" if darks or mode ==
                       "match" else "no master dark of this temperature/gain/binning")
                if mode == "match":
                    raise BadInputError(info.path, f"{why} (darks: {have}, temperature "
                                                   f"{info.temperature} C); use --dark-mode scale "
                                                   "or --dark-mode optimize")
                raise BadInputError(info.path, f"{why} (darks: {have}); cannot {mode} a dark")
            if item.bias is None:
                raise BadInputError(info.path, f"no master dark matches exposure "
                                               f"{info.exposure}s and {mode} needs a master bias "
                                               "to separate the thermal signal")
            longer = [m for m in darks if (m.exposure or 0) >= (info.exposure or 0)]
            if longer:
                item.dark = min(longer, key=lambda m: (m.exposure, abs((m.temperature or 0) -
                                                                      (info.temperature or 0))))
            else:
                item.dark = max(darks, key=lambda m: m.exposure or 0)
            item.dark_mode = mode
            if mode == "scale":
                item.dark_scale = dark_scale_for_exposure(info.exposure, item.dark.exposure,
                                                          info.path)
        else:
            item.notes.append("no darks")
        flats = [m for m in masters.flats
                 if m.shape == shape and tuple(m.binning) == tuple(info.binning)
                 and (m.filter or "").strip().lower() == (info.filter or "").strip().lower()]
        if flats:
            same_gain = [m for m in flats if _known_equal(m.gain, info.gain)]
            item.flat = _pick(same_gain or flats, info.temperature)
        elif masters.flats:
            item.notes.append(f"no flat for filter {info.filter!r}")
        else:
            item.notes.append("no flats")
        items.append(item)
    return items


# -------------------------------------------------------------------------- calibration
def _as_image(info_or_image) -> AstroImage:
    if isinstance(info_or_image, AstroImage):
        return info_or_image
    path = info_or_image.path if isinstance(info_or_image, FrameInfo) else info_or_image
    return read_image(path)


def _calibrate_raw(img: AstroImage, item: PlanItem, masters: MasterSet, params: CalibrateParams,
                   applied: dict) -> np.ndarray:
    """Calibration arithmetic without pedestal or clipping; fills ``applied``."""
    L = img.data
    if L.ndim != 2:
        raise BadInputError(img.path, "light is already colour (debayered): calibration needs "
                                      "raw frames")
    offset = thermal = inv = None
    k = 1.0
    for m in (item.bias, item.dark, item.flat):
        if m is not None and m.load().data.shape != L.shape:
            raise BadInputError(m.path or m.label, f"size {m.shape[1]}x{m.shape[0]} differs from "
                                                   f"the light {img.path}")
    if item.dark is not None and item.dark_mode == "match":
        offset = item.dark.load().data
        applied["dark"] = item.dark.label
    elif item.dark is not None:
        offset = item.bias.load().data
        thermal = masters.thermal(item.dark, item.bias)
        if item.dark_mode == "scale":
            k = float(item.dark_scale) if item.dark_scale is not None else \
                dark_scale_for_exposure(img.exposure, item.dark.exposure, img.path)
        else:
            sat = (L >= SATURATED) | (item.dark.load().data >= SATURATED)
            k = optimize_dark_scale(subtract(L, offset), thermal, pattern=item.pattern,
                                    exclude=sat)
        applied["dark"] = item.dark.label
        applied["dark_mode"] = item.dark_mode
        applied["dark_scale"] = round(k, 5)
    elif item.bias is not None:
        offset = item.bias.load().data
    if item.bias is not None:
        applied["bias"] = item.bias.label
    if item.flat is not None:
        inv = masters.inv_flat(item.flat, item.pattern)
        applied["flat"] = item.flat.label
    item_scale = k
    return calibrate_arrays(L, offset=offset, thermal=thermal, dark_scale=item_scale,
                            inv_flat=inv, pedestal=0.0, clip=None)


@dataclasses.dataclass
class _Ctx:
    """Session-wide state of :func:`calibrate_lights` shared by every light."""

    pedestal: Optional[float] = None
    bad_pixels: Optional[BadPixelMap] = None          # user's map, for every light
    light_bad_pixels: Optional[BadPixelMap] = None    # voted by the lights (no darks)


def calibrate_light(info_or_image, plan_item: PlanItem, masters: MasterSet,
                    params: CalibrateParams = CalibrateParams(), *,
                    pedestal: float | None = None, bad_pixels: BadPixelMap | None = None,
                    ) -> AstroImage:
    """Calibrate one light as ``plan_item`` says, then cosmetic-correct and debayer.

    Parameters
    ----------
    info_or_image : FrameInfo, path or AstroImage
        The raw light (read if not an image).
    plan_item : PlanItem
        From :func:`plan_calibration`.
    masters : MasterSet
    params : CalibrateParams
    pedestal : float, optional
        [0, 1] units. Default: ``params.pedestal`` if ``params.auto_pedestal`` is
        False, else the smallest value that keeps this frame's sky clear of zero
        (:func:`core.calibration.auto_pedestal`, at least ``params.pedestal``).
        :func:`calibrate_lights` passes one value for the whole session.
    bad_pixels : BadPixelMap, optional
        Pixels to correct (with ``params.cosmetic``). Default: the hot/cold pixels of
        the light's master dark; none without a dark.

    Returns
    -------
    AstroImage
        float32 in [0, 1]; ``(3, H, W)`` when debayered, else the 2-D frame with its
        CFA pattern. Header ``PEDESTAL`` and ``CALSTAT``; HISTORY ``pre.calibrate``
        with the parameters and what was applied, ``pre.debayer`` if debayered.
    """
    img = _as_image(info_or_image)
    applied: dict = {}
    data = _calibrate_raw(img, plan_item, masters, params, applied)
    pattern = plan_item.pattern if plan_item.pattern is not None else img.bayer
    # cosmetic correction before the pedestal so the pedestal is not set by hot pixels
    bpm = None
    if params.cosmetic:
        bpm = bad_pixels
        if bpm is None and plan_item.dark is not None:
            bpm = masters.bad_pixels(plan_item.dark, pattern, params.hot_sigma, params.cold_sigma)
        if bpm is not None and len(bpm):
            correct_bad_pixels_array(data, bpm, pattern=pattern, inplace=True)
            applied["cosmetic"] = {"hot": bpm.n_hot, "cold": bpm.n_cold}
    if pedestal is None:
        pedestal = auto_pedestal(data, pattern=pattern, minimum=params.pedestal) \
            if params.auto_pedestal \
            else float(params.pedestal)
    calibrate_arrays(data, pedestal=pedestal, clip=(0.0, 1.0), out=data)
    applied["pedestal"] = float(pedestal)
    calstat = "".join(c for c, m in (("B", plan_item.bias), ("D", plan_item.dark),
                                     ("F", plan_item.flat)) if m is not None)
    out = img.replace(data=data, bayer=pattern)
    out.add_history(CalibrateParams.STEP_ID, {**params.to_dict(), "applied": applied})
    out.header["PEDESTAL"] = (float(pedestal), "[0,1 units] added after calibration")
    out.header["CALSTAT"] = (calstat or "-", "B bias, D dark, F flat applied")
    if params.debayer and pattern is not None:
        out = debayer(out, method=params.debayer_method, pattern=pattern,
                      equalize=params.equalize_cfa)
        # interpolation overshoots next to saturated stars: keep the [0, 1] contract
        np.clip(out.data, 0.0, 1.0, out=out.data)
    elif params.equalize_cfa and pattern is not None:
        eq, factors = equalize_cfa(out.data, pattern, return_factors=True)
        out = out.derive(eq, "pre.equalize_cfa", {"factors": [round(float(f), 6)
                                                              for f in factors]})
    return out


def output_name(info: FrameInfo | Path, taken: set | None = None) -> str:
    """File name of a calibrated light: ``<stem>_cal.fits`` (unique within ``taken``)."""
    path = Path(info.path if isinstance(info, FrameInfo) else info)
    stem = path.name
    for ext in (".fits.fz", ".fit.fz", ".fits.gz", ".fit.gz", ".fits", ".fit", ".fts"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    else:
        stem = path.stem
    name = f"{stem}_cal.fits"
    if taken is not None:
        if name in taken:
            name = f"{path.parent.name}_{stem}_cal.fits"
        i = 2
        base = name
        while name in taken:
            name = base.replace("_cal.fits", f"_{i}_cal.fits")
            i += 1
        taken.add(name)
    return name


def calibrate_lights(lights: Sequence[FrameInfo], masters: MasterSet,
                     params: CalibrateParams = CalibrateParams(),
                     out_dir: "str | os.PathLike[str] | None" = None, *,
                     plan: Sequence[PlanItem] | None = None,
                     bad_pixels: BadPixelMap | None = None, overwrite: bool = False,
                     keep_images: bool | None = None,
                     save_bad_pixels: "str | os.PathLike[str] | None" = None,
                     out_dtype: str = "float32",
                     progress: Optional[Progress] = None, cancel: Optional[CancelToken] = None,
                     log: Optional[Log] = None) -> list:
    """Calibrate (and cosmetic-correct, debayer) every light.

    Parameters
    ----------
    lights : sequence of FrameInfo
    masters : MasterSet
    params : CalibrateParams
    out_dir : path-like, optional
        Write each result as ``out_dir/<stem>_cal.fits``. Existing files are refused
        before anything is computed unless ``overwrite``; if a light turns out bad
        midway, the files this call wrote are removed again.
    plan : sequence of PlanItem, optional
        Default :func:`plan_calibration`.
    bad_pixels : BadPixelMap, optional
        A map to correct in every light (added to the darks' maps). Without darks and
        with ``params.cosmetic``, the lights vote for their hot/cold pixels
        (:class:`core.calibration.BadPixelAccumulator`), which costs one more read.
    keep_images : bool, optional
        Return the images (default: when ``out_dir`` is None).
    out_dtype : {"float32", "uint16"}, default "float32"
        Pixel type of the written frames; "uint16" (scaled [0, 1] -> 0..65535) halves
        the disk use of intermediates, at the precision of the raw 16-bit data.
    save_bad_pixels : path-like, optional
        Write the bad-pixel map applied to the first light (the dark's, or the one
        voted by the lights, plus ``bad_pixels``) as FITS or CSV (by extension).
    progress, cancel, log : optional

    Returns
    -------
    list of Path (written files) or of AstroImage (``keep_images``), in light order.
    """
    log = log or _nolog
    lights = list(lights)
    if not lights:
        raise BadInputError(None, "no light frames to calibrate")
    plan = list(plan) if plan is not None else plan_calibration(lights, masters, params)
    keep = (out_dir is None) if keep_images is None else keep_images
    names: list[Path] = []
    if out_dir is not None:
        taken: set = set()
        names = [Path(out_dir) / output_name(it.light, taken) for it in plan]
        if not overwrite:
            for p in names:
                if p.exists():
                    raise BadInputError(p, "output exists (use --overwrite to replace it)")
    n = len(plan)
    total = n + (n if params.cosmetic else 0)
    ctx = _Ctx(bad_pixels=bad_pixels)

    # Without a dark, hot pixels are voted by the lights themselves (one extra read).
    need_votes = params.cosmetic and any(it.dark is None for it in plan)
    done = 0
    if need_votes:
        pattern = plan[0].pattern
        acc = BadPixelAccumulator(plan[0].light.shape[-2:], pattern, hot_sigma=params.hot_sigma,
                                  cold_sigma=params.cold_sigma)
        with cf.ThreadPoolExecutor(_READ_THREADS) as pool:
            vote_items = [it for it in plan if it.dark is None]
            for img in pool.map(lambda it: read_image(it.light.path), vote_items):
                acc.add(img.data)
                done += 1
                report(progress, done, total, "finding hot pixels in the lights", cancel)
        ctx.light_bad_pixels = acc.result()
        log(f"bad pixels voted by {acc.n} lights: {ctx.light_bad_pixels.n_hot} hot, "
            f"{ctx.light_bad_pixels.n_cold} cold")
    else:
        total = n

    results: list = [None] * n
    written: list[Path] = []
    t_start = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(_READ_THREADS) as readers, \
                cf.ThreadPoolExecutor(1) as writer:
            # Prefetch reads two ahead; the numba kernels run on this thread only (the
            # workqueue threading layer must not be entered from two threads).
            futures = {}

            def submit(i: int) -> None:
                if i < n and i not in futures:
                    futures[i] = readers.submit(read_image, plan[i].light.path)

            submit(0)
            submit(1)
            pending_writes = []
            for i, item in enumerate(plan):
                submit(i + 2)
                img = futures.pop(i).result()
                bpm = ctx.bad_pixels
                if params.cosmetic:
                    if item.dark is not None:
                        dark_map = masters.bad_pixels(item.dark, item.pattern, params.hot_sigma,
                                                      params.cold_sigma)
                        bpm = dark_map.union(bpm) if bpm is not None else dark_map
                    elif ctx.light_bad_pixels is not None:
                        bpm = ctx.light_bad_pixels.union(bpm) if bpm is not None \
                            else ctx.light_bad_pixels
                if ctx.pedestal is None:
                    ctx.pedestal = _session_pedestal(img, item, masters, params, bpm)
                    log(f"pedestal {ctx.pedestal:.6f} ({ctx.pedestal * 65535:.1f} ADU) for "
                        "the session")
                if i == 0 and save_bad_pixels is not None:
                    used = bpm if bpm is not None else BadPixelMap.empty(img.data.shape)
                    pending_writes.append(writer.submit(_save_bpm, used, Path(save_bad_pixels),
                                                        overwrite, written))
                    log(f"bad-pixel map ({used.n_hot} hot, {used.n_cold} cold) -> "
                        f"{save_bad_pixels}")
                out = calibrate_light(img, item, masters, params, pedestal=ctx.pedestal,
                                      bad_pixels=bpm if bpm is not None else BadPixelMap.empty(
                                          img.data.shape))
                log(item.describe() + (f" dark x{_applied_scale(out):.4g}"
                                       if item.dark_mode == "optimize" else ""))
                if out_dir is not None:
                    target = names[i]
                    pending_writes.append(writer.submit(_write, out, target, overwrite, written,
                                                       out_dtype))
                if keep:
                    results[i] = out
                else:
                    results[i] = names[i] if out_dir is not None else None
                done += 1
                report(progress, done, total, f"calibrated {Path(item.light.path).name}", cancel)
            for fut in pending_writes:
                fut.result()
    except BaseException:
        for p in written:
            try:
                p.unlink()
            except OSError:
                pass
        raise
    log(f"calibrated {n} lights in {time.perf_counter() - t_start:.2f} s")
    return results


def _write(img: AstroImage, path: Path, overwrite: bool, written: list,
           dtype: str = "float32") -> Path:
    existed = path.exists()
    write_image(img, path, overwrite=overwrite, dtype=dtype)
    if not existed:
        written.append(path)
    return path


def _save_bpm(bpm: BadPixelMap, path: Path, overwrite: bool, written: list) -> Path:
    existed = path.exists()
    bpm.save(path, overwrite=overwrite)
    if not existed:
        written.append(path)
    return path


def _applied_scale(img: AstroImage) -> float:
    import json

    for line in reversed(img.history):
        if line.startswith(CalibrateParams.STEP_ID + " "):
            try:
                return float(json.loads(line.split(" ", 1)[1])["applied"].get("dark_scale", 1.0))
            except (ValueError, KeyError):
                break
    return 1.0


def _session_pedestal(img: AstroImage, item: PlanItem, masters: MasterSet,
                      params: CalibrateParams, bpm: BadPixelMap | None) -> float:
    """One pedestal for every light of a run, from the first light."""
    if not params.auto_pedestal:
        return float(params.pedestal)
    data = _calibrate_raw(img, item, masters, params, {})
    if bpm is not None and len(bpm):
        correct_bad_pixels_array(data, bpm, pattern=item.pattern, inplace=True)
    return auto_pedestal(data, pattern=item.pattern, minimum=params.pedestal)


# ------------------------------------------------------------------------------- CLI
def _print(line: str) -> None:
    print(line, file=sys.stderr)


def _tqdm_progress(desc: str):
    try:
        from ..core.progress import TqdmProgress

        return TqdmProgress(desc, disable=not sys.stderr.isatty())
    except Exception:  # pragma: no cover - tqdm missing
        return None


def _masters_params(args) -> MastersParams:
    from ..core.integration import rejection_from_name

    params = MastersParams.from_dict(rejection=getattr(args, "rejection", None),
                                     low=getattr(args, "low", None),
                                     high=getattr(args, "high", None),
                                     temp_tolerance=getattr(args, "temp_tolerance", None),
                                     memory_limit=getattr(args, "memory_limit", None))
    try:
        rejection_from_name(params.rejection, params.low, params.high)
    except (KeyError, TypeError, ValueError):
        raise BadInputError("--rejection", f"unknown rejection {params.rejection!r} (none, "
                                           "sigma, winsorized, linear-fit, percentile, gesd, "
                                           "minmax)") from None
    return params


def cli_masters(args) -> int:
    """``napari-astro masters SESSION... -o DIR``: build and write the masters."""
    params = _masters_params(args)
    frames = scan_frames(args.sessions)
    cal = [f for f in frames if f.type != FrameType.LIGHT]
    if not cal:
        raise BadInputError(", ".join(map(str, args.sessions)),
                            "no bias, dark, flat or flat-dark frames found")
    bar = _tqdm_progress("masters")
    try:
        ms = build_masters(cal, args.output, params, overwrite=args.overwrite, progress=bar,
                           log=_print)
    finally:
        if bar is not None:
            bar.close()
    for m in ms.all():
        print(f"{m.path}: {_IMAGETYP[m.type]} from {len(m.frames)} frames")
    return 0


def cli_calibrate(args) -> int:
    """``napari-astro calibrate SESSION... -o DIR``: masters, then calibrated lights."""
    t0 = time.perf_counter()
    cparams = CalibrateParams.from_dict(
        dark_mode=getattr(args, "dark_mode", None),
        debayer=False if getattr(args, "no_debayer", False) else None,
        debayer_method=getattr(args, "debayer_method", None),
        bayer=getattr(args, "bayer", None),
        cosmetic=False if getattr(args, "no_cosmetic", False) else None,
        equalize_cfa=True if getattr(args, "equalize_cfa", False) else None,
        temp_tolerance=getattr(args, "temp_tolerance", None),
        pedestal=getattr(args, "pedestal", None))
    mparams = _masters_params(args) if hasattr(args, "rejection") else MastersParams()
    out_dir = Path(args.output)
    frames = scan_frames(args.sessions)
    lights = [f for f in frames if f.type == FrameType.LIGHT]
    if not lights:
        raise BadInputError(", ".join(map(str, args.sessions)), "no light frames found")
    ref = lights[0]
    for f in frames:
        if tuple(f.shape[-2:]) != tuple(ref.shape[-2:]):
            raise BadInputError(f.path, f"size {f.width}x{f.height} differs from the lights' "
                                        f"{ref.width}x{ref.height} ({ref.path})")
    bad_pixels = None
    bpm_path = getattr(args, "bad_pixel_map", None)
    if bpm_path:
        bad_pixels = BadPixelMap.load(bpm_path, shape=tuple(ref.shape[-2:]))
    logfile: list[str] = []

    def log(line: str) -> None:
        logfile.append(line)
        _print(line)

    cal = [f for f in frames if f.type != FrameType.LIGHT]
    if getattr(args, "masters", None):
        masters = MasterSet.from_dir(args.masters)
        if cal:
            log(f"using masters from {args.masters}; {len(cal)} calibration frames in the "
                "sessions are ignored")
        plan = plan_calibration(lights, masters, cparams)
        write_masters = False
    else:
        # plan from headers first: a light that cannot be served fails before any work
        plan_calibration(lights, MasterSet.from_frames(cal, mparams), cparams)
        masters = build_masters(cal, None, mparams, progress=None, log=log)
        plan = plan_calibration(lights, masters, cparams)
        write_masters = len(masters) > 0
    _check_outputs(args, out_dir, masters if write_masters else None)
    save_bpm = getattr(args, "save_bad_pixel_map", None)
    if save_bpm and Path(save_bpm).exists() and not args.overwrite:
        raise BadInputError(save_bpm, "output exists (use --overwrite to replace it)")
    written_masters: list[Path] = []
    bar = _tqdm_progress("calibrate")
    try:
        if write_masters:
            written_masters = masters.write(out_dir / "masters", overwrite=args.overwrite)
        calibrate_lights(lights, masters, cparams, out_dir, plan=plan, bad_pixels=bad_pixels,
                         overwrite=args.overwrite, progress=bar, log=log,
                         save_bad_pixels=save_bpm)
    except BaseException:
        for p in written_masters:
            try:
                p.unlink()
            except OSError:
                pass
        raise
    finally:
        if bar is not None:
            bar.close()
    log(f"done in {time.perf_counter() - t0:.2f} s")
    (out_dir / "calibration.log").write_text("\n".join(
        [format_history(CalibrateParams.STEP_ID, cparams.to_dict())] + logfile)
        + "\n")
    return 0


def _check_outputs(args, out_dir: Path, masters: MasterSet | None) -> None:
    """Refuse existing master outputs before any is written (lights: calibrate_lights)."""
    if masters is None or args.overwrite:
        return
    for m in masters.all():
        p = out_dir / "masters" / m.name
        if p.exists():
            raise BadInputError(p, "output exists (use --overwrite to replace it)")
