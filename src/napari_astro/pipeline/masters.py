"""Master frames of a night: the ``masters`` step.

:func:`build_masters` groups bias/dark/flat/flat-dark frames (exposure, temperature
within a tolerance, filter, binning, gain), stacks each group with rejection
(``core.integration.combine_stack``, Winsorized 3/3 by default), calibrates the flats
by the matching flat-dark, dark or bias first, and returns a :class:`MasterSet`.
Every frame is read and checked before any master is written. A group larger than
the memory budget (:class:`~napari_astro.pipeline.params.Execution`) is combined in
row bands. :mod:`.calibrate` applies the masters to the lights.
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

from ..core.calibration import (BadPixelMap, check_flat, find_bad_pixels, flat_inverse,
                                subtract)
from ..core.errors import BadInputError
from ..core.frames import FrameInfo, FrameType, GroupKey, group_frames, scan_frames
from ..core.image import AstroImage
from ..core.io import read_image, write_image
from ..core.progress import CancelToken, Progress, report
from .params import Execution
from .steps import MastersParams

__all__ = ["Master", "MasterSet", "build_masters", "cli_masters", "IMAGETYP"]

Log = Callable[[str], None]

IMAGETYP = {FrameType.BIAS: "Master Bias", FrameType.DARK: "Master Dark",
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
        return f"{IMAGETYP[self.type]} [{self.key}] {n}".strip()

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
    """Combine frames band of rows by band of rows, in at most ``budget`` bytes.

    Each frame is read by rows (positioned reads of the FITS data block, as the
    integration does), so memory holds one band of every frame (two: the next band is
    read in a thread while this one is combined), whatever the number and size of the
    frames. ``offset`` (H, W) is subtracted and ``scales`` (N,) multiply each frame
    before rejection (flats). The same pixels as combining the whole stack at once.
    """
    from ..core.integration import _open_frame, combine_stack

    n = len(paths)
    h, w = shape
    spill: list = []
    try:
        frames = [_open_frame(p, i, spill) for i, p in enumerate(paths)]
        rows = int(max(8, min(h, budget // max(1, 3 * n * w * 4))))
        bands = [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]
        out = np.empty((h, w), np.float32)
        bufs = [np.empty((n, 1, rows, w), np.float32) for _ in range(min(2, len(bands)))]

        def load(k: int) -> np.ndarray:
            r0, r1 = bands[k]
            band = bufs[k % len(bufs)][:, :, : r1 - r0]
            for i, fr in enumerate(frames):
                fr.source.read_rows(r0, r1, band[i])
                if not np.isfinite(band[i]).all():
                    raise BadInputError(paths[i], "NaN or infinite pixels")
            if offset is not None:
                band -= offset[None, None, r0:r1]
            if scales is not None:
                band *= scales[:, None, None, None].astype(np.float32)
            return band

        with cf.ThreadPoolExecutor(1) as reader:
            fut = reader.submit(load, 0)
            for k, (r0, r1) in enumerate(bands):
                band = fut.result()
                if k + 1 < len(bands):  # into the other buffer, while this one combines
                    fut = reader.submit(load, k + 1)
                out[r0:r1] = combine_stack(band[:, 0], rejection=rejection, combine=combine)
                del band
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
                   progress, cancel, done0: int, total: int, log: Log, limit: str):
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
    if limit:
        log(f"{m.key}: {len(m.frames)} frames exceed the {limit} memory limit: "
            "combined in row bands")
    data = _combine_banded(m.frames, m.shape, budget, rejection=rej, combine=params.combine,
                           offset=offset, scales=scales, progress=progress, cancel=cancel,
                           done0=done0, total=total, label=str(m.key))
    return data, heads


#: A group of calibration frames larger than this (bytes as float32) is combined in
#: row bands (:func:`_combine_banded`, two bands of 16 MB of 20 frames of 2000x1500
#: each) rather than read whole into memory: the same master, measured on night20's
#: 20 biases (median of 3, in-process): 1.54 s wall / 0.97 s CPU against 2.02 s /
#: 1.02 s, and +91 MB peak RSS against +284 MB (the whole stack, 240 MB, and the
#: combine's outputs). Frames in other formats than plain FITS keep the whole-stack
#: path under the memory limit (banding them would decode each into a temporary file).
BAND_BUDGET = 48 * 2**20


def _all_plain_fits(paths: Sequence[Path]) -> bool:
    """Every path an uncompressed FITS file (read by rows in place)."""
    from ..core.io import FITS_EXTENSIONS

    return all(str(p).lower().endswith(FITS_EXTENSIONS)
               and not str(p).lower().endswith((".gz", ".fz")) for p in paths)


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
                  execution: Execution = Execution(),
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
    execution : Execution
        ``memory_limit``: a group whose frames exceed it is combined in row bands.
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
    budget = parse_memory(execution.memory_limit)
    # biases and darks first: flats are calibrated by them
    order = [*ms.biases, *ms.darks, *ms.darkflats, *ms.flats]
    for m in order:
        infos = groups[m.key]
        for f in infos:
            if len(f.shape) != 2:  # as _read_stack says it (the bands read 2-D frames)
                raise BadInputError(f.path, "calibration frames must be raw 2-D frames, "
                                            "not colour")
            if tuple(f.shape[-2:]) != m.shape:
                raise BadInputError(f.path, f"size {f.width}x{f.height} differs from "
                                            f"{m.shape[1]}x{m.shape[0]} of {infos[0].path}")
        t0 = time.perf_counter()
        n = len(m.frames)
        rej = _rejection_for(params, n, log, m.key)
        nbytes = n * m.shape[0] * m.shape[1] * 4
        if nbytes > budget or (nbytes > BAND_BUDGET and _all_plain_fits(m.frames)):
            over = nbytes > budget
            data, heads = _master_banded(m, ms, params, rej, budget if over else BAND_BUDGET,
                                         progress=progress, cancel=cancel, done0=done,
                                         total=total, log=log,
                                         limit=execution.memory_limit if over else None)
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
        h["IMAGETYP"] = (IMAGETYP[m.type], "master frame")
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
        # the parameters alone (reads back with MastersParams.from_history), then what
        # was done to this group
        img.history.append(params.history())
        img.add_history(MastersParams.STEP_ID + ".group", {"group": str(m.key), "nframes": n,
                                                           "rejection_used": type(rej).__name__})
        for note in m.notes:
            img.history.append(f"{MastersParams.STEP_ID}.note {note}")
        m.image = img
        line = f"{IMAGETYP[m.type]} [{m.key}]: {n} frames, {type(rej).__name__}, " \
               f"{time.perf_counter() - t0:.2f} s"
        ms.log.append(line)
        log(line)
    if out_dir is not None:
        for p in ms.write(out_dir, overwrite=overwrite):
            log(f"wrote {p}")
    return ms


def _print(line: str) -> None:
    print(line, file=sys.stderr)


def _tqdm_progress(desc: str):
    try:
        from ..core.progress import TqdmProgress

        return TqdmProgress(desc, disable=not sys.stderr.isatty())
    except Exception:  # pragma: no cover - tqdm missing
        return None




def cli_masters(args) -> int:
    """``napari-astro masters SESSION... -o DIR``: build and write the masters."""
    from .cliargs import params_from_args
    from .inputs import check_output_dir
    from .steps import execution_from_args

    params = params_from_args(MastersParams, args)
    execution = execution_from_args(args)
    check_output_dir(args.output)
    frames = scan_frames(args.sessions)
    cal = [f for f in frames if f.type != FrameType.LIGHT]
    if not cal:
        raise BadInputError(", ".join(map(str, args.sessions)),
                            "no bias, dark, flat or flat-dark frames found")
    bar = _tqdm_progress("masters")
    try:
        ms = build_masters(cal, args.output, params, overwrite=args.overwrite,
                           execution=execution, progress=bar, log=_print)
    finally:
        if bar is not None:
            bar.close()
    for m in ms.all():
        print(f"{m.path}: {IMAGETYP[m.type]} from {len(m.frames)} frames")
    return 0
