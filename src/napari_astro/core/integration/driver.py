"""The :func:`integrate` driver: memory plan, statistics pass, weights, tiles run on
this machine (reading the next band while numba combines) or as a Dask graph, and
the result with its header, HISTORY and log."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import BadInputError
from ..image import AstroImage, format_history
from ..io.rows import FileSource, RowFrame, open_frame
from ..progress import CancelToken, Progress, report
from .combine import _COMBINE_CODES, _compute_tile, _Plan, _TileScratch
from .framestats import _frame_meta, _frame_statistics
from .strategies import (AdditiveScaling, FWHMWeight, Multiplicative, NoiseWeight,
                         NoNormalization, Normalization, Rejection, StarCountWeight, Weighting,
                         Winsorized, _describe_rejection)

__all__ = ["integrate", "IntegrationResult", "parse_memory", "plan_tiles", "STEP_ID"]

STEP_ID = "pre.integrate"


# --- memory ---------------------------------------------------------------------
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: str | int | float) -> int:
    """Bytes from ``"2GB"``, ``"512MB"``, ``"1.5GiB"``, ``"800M"`` or a number of bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise BadInputError("memory-limit", f"must be positive, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS:
        raise BadInputError("memory-limit", f"cannot read {value!r} (examples: 2GB, 512MB)")
    n = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if n <= 0:
        raise BadInputError("memory-limit", f"must be positive, got {value!r}")
    return int(n)


def _fmt_bytes(n: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


@dataclasses.dataclass
class IntegrationResult:
    """What :func:`integrate` returns.

    Attributes
    ----------
    image : AstroImage
        float32 ``(H, W)`` or ``(3, H, W)`` in [0, 1]; header = keys common to all
        frames + ``NCOMBINE`` (+ ``LIVETIME`` when all frames have EXPTIME); history =
        the reference's + one ``pre.integrate`` line. ``mask`` is set (False) where no
        frame was valid, else None.
    low_map, high_map : ndarray or None
        float32 like ``image.data``: fraction of the valid frames rejected low / high
        at each pixel (None unless ``rejection_maps=True``).
    weights : ndarray (N,)
        Per-frame weight (mean over channels; max 1).
    channel_weights : ndarray (N, C)
    rejected_low, rejected_high : ndarray (N,)
        Fraction of each frame's valid pixels rejected low / high.
    locations, scales, noise : ndarray (N, C)
        Statistics of the raw frames (median, robust dispersion, noise sigma).
    norm_a, norm_b : ndarray (N, C)
        Normalisation ``y = a * x + b`` applied to each frame and channel.
    names : list of str
    log : list of str
        Human-readable lines (settings, tiles, per-frame weights and rejection).
    timings : dict
        Seconds of the statistics and combine passes.
    tile_rows : int
        Rows per tile of the combine pass.
    valid_count : ndarray or None
        float32 ``(H, W)``: frames with a valid (finite, unmasked) value at each pixel
        of the first channel (a registered frame's footprint is the same in every
        channel), counted by the combine kernel: what
        :func:`napari_astro.core.coverage.coverage_map` counts from the frames, without
        reading them again (0.07 s CPU for 16 Seestar frames).
    """

    image: AstroImage
    low_map: Optional[np.ndarray]
    high_map: Optional[np.ndarray]
    weights: np.ndarray
    channel_weights: np.ndarray
    rejected_low: np.ndarray
    rejected_high: np.ndarray
    locations: np.ndarray
    scales: np.ndarray
    noise: np.ndarray
    norm_a: np.ndarray
    norm_b: np.ndarray
    names: list
    log: list
    timings: dict
    tile_rows: int = 0
    valid_count: Optional[np.ndarray] = None


# Largest tile buffer worth having. Smaller tiles cost no speed, and two buffers are
# alive at once (one read while the other is combined): measured on the 16 Seestar
# frames (3 x 1920 x 1080), integrate() median of 5, load ~2: 48 MiB tiles (242 rows)
# 2.86 s CPU, 1.77 s wall, +133 MB RSS; 16 MiB (80 rows) 2.77 s, 1.67 s, +62 MB;
# 8 MiB 2.76 s, 1.70 s, +44 MB.
TILE_TARGET = 16 * 2**20


def plan_tiles(n_frames: int, shape: tuple, memory_limit: int | str, *, maps: bool = False,
               buffers: int = 2, target: int = TILE_TARGET) -> tuple[int, int]:
    """Rows per tile and the bytes of the fixed part for a stack.

    Parameters
    ----------
    n_frames : int
    shape : (C, H, W)
    memory_limit : int or str
        Budget for the output, the maps and the tile buffers (bytes or ``"2GB"``).
    maps : bool
        Full-size rejection maps are kept.
    buffers : int
        Tile buffers alive at once (2 when reading overlaps combining).
    target : int
        Largest tile buffer worth having (bytes): bigger tiles gain nothing and
        delay the overlap of reading and combining.

    Returns
    -------
    (rows, fixed_bytes)
    """
    limit = parse_memory(memory_limit)
    C, H, W = shape
    fixed = C * H * W * 4 + H * W * 5 + (2 * C * H * W * 4 if maps else 0)
    fixed += 8 * 2**20      # statistics samples, kernel scratch, headers
    per_row_buf = n_frames * C * W * 4
    per_row_out = C * W * (4 + 3 * 2)
    budget = limit - fixed
    rows = budget // (buffers * per_row_buf + per_row_out) if budget > 0 else 0
    if rows < 1:
        need = fixed + buffers * per_row_buf + per_row_out
        raise BadInputError("memory-limit", f"{_fmt_bytes(limit)} is too small for "
                            f"{n_frames} frames of {W}x{H}x{C}: at least {_fmt_bytes(need)} "
                            "is needed (output image + one row of every frame)")
    rows = int(min(rows, H, max(1, target // per_row_buf)))
    return rows, fixed


def _common_header(frames: list[RowFrame], ref: int):
    from ..header import Header

    hdr = Header()
    ref_h = frames[ref].header
    if ref_h is None:
        return hdr
    for card in ref_h.cards:
        key = card.keyword
        if not key or key in ("HISTORY", "COMMENT") or key in hdr:
            continue
        value = card.value
        same = True
        for f in frames:
            if f.header is None or key not in f.header or f.header[key] != value:
                same = False
                break
        if same:
            try:
                hdr.append((key, value, card.comment), end=True)
            except Exception:  # pragma: no cover - malformed card
                pass
    exps = []
    for f in frames:
        try:
            exps.append(float(f.header.get("EXPTIME", f.header.get("EXPOSURE"))))
        except (TypeError, ValueError, AttributeError):
            exps = None
            break
    hdr["NCOMBINE"] = (len(frames), "number of frames combined")
    if exps:
        hdr["LIVETIME"] = (float(sum(exps)), "[s] total exposure of the frames combined")
    return hdr


def integrate(frames: Sequence[AstroImage | str | os.PathLike], *, combine: str = "average",
              normalization: Normalization | None = None, weighting: Weighting | None = None,
              rejection: Rejection | None = None, memory_limit: str | int = "2GB",
              scheduler: Any = None, rejection_maps: bool = False, reference: int = 0,
              frame_stats: Sequence[Mapping[str, Any] | None] | None = None,
              progress: Progress | None = None, cancel: CancelToken | None = None
              ) -> IntegrationResult:
    """Stack registered frames with normalisation, weighting and rejection, tile by tile.

    Parameters
    ----------
    frames : sequence of AstroImage or path
        Registered frames on one pixel grid, ``(H, W)`` or ``(3, H, W)``. Files are
        read by rows (FITS: uncompressed data are read in place; other formats are
        decoded once into a temporary raw file). NaN pixels (files) and
        ``mask == False`` pixels (images) are outside the frame's footprint.
    combine : {"average", "median", "sum"}
        Weighted average of the kept values (default), their median, or their sum
        (mean of kept x number valid, rescaled by the maximum if it exceeds 1).
    normalization : Normalization, default AdditiveScaling()
    weighting : Weighting, default NoiseWeight()
    rejection : Rejection, default Winsorized(3, 3)
    memory_limit : str or int, default "2GB"
        Budget for our arrays (output, maps, tile buffers); tiles are sized from
        it and the number of frames, so peak memory does not grow with the stack.
    scheduler : str or distributed.Client, optional
        Address of a Dask distributed scheduler (or a Client): tiles run there as
        tasks. Workers must see the frame files at the same paths.
    rejection_maps : bool
        Return low/high rejection maps (fractions of valid frames).
    reference : int
        Index of the reference frame for normalisation and the output header.
    frame_stats : sequence of mappings, optional
        Per-frame metadata for FWHM/star-count weighting: ``{"fwhm": px,
        "n_stars": n}`` (default: header keys FWHM / NSTARS).
    progress, cancel
        See :mod:`core.progress`; called per frame (statistics) and per tile.

    Returns
    -------
    IntegrationResult

    Raises
    ------
    BadInputError
        Fewer than 2 frames (3 with rejection), frames of different sizes (naming
        the file), unreadable files, impossible normalisation, memory limit too small.
    """
    t_start = time.perf_counter()
    normalization = AdditiveScaling() if normalization is None else normalization
    weighting = NoiseWeight() if weighting is None else weighting
    rejection = Winsorized() if rejection is None else rejection
    rejection._check()
    if combine not in _COMBINE_CODES:
        raise BadInputError("combine", f"unknown combine {combine!r} (average, median, sum)")
    items = list(frames)
    n = len(items)
    if n < 2:
        raise BadInputError(None, f"integration needs at least 2 frames, found {n}")
    if n < rejection.min_frames:
        raise BadInputError(None, f"{rejection.name} rejection needs at least "
                            f"{rejection.min_frames} frames, found {n}")
    if n > 65535:
        raise BadInputError(None, f"at most 65535 frames per integration, found {n}")
    if not 0 <= reference < n:
        raise BadInputError("reference", f"reference index {reference} out of range 0..{n - 1}")
    if frame_stats is not None and len(frame_stats) != n:
        raise BadInputError("frame_stats", f"{len(frame_stats)} entries for {n} frames")
    limit = parse_memory(memory_limit)

    spill_dir: list = []
    try:
        opened = [open_frame(it, i, spill_dir) for i, it in enumerate(items)]
        shape = opened[reference].source.shape
        for f in opened:
            if f.source.shape != shape:
                C, H, W = f.source.shape
                rC, rH, rW = shape
                raise BadInputError(f.name, f"size {W}x{H}x{C} differs from the reference "
                                    f"{rW}x{rH}x{rC} ({opened[reference].name})")
        C, H, W = shape
        rows, fixed = plan_tiles(n, shape, limit, maps=rejection_maps)
        return _integrate_opened(opened, shape, rows, limit, combine=combine,
                                 normalization=normalization, weighting=weighting,
                                 rejection=rejection, scheduler=scheduler,
                                 rejection_maps=rejection_maps, reference=reference,
                                 frame_stats=frame_stats, progress=progress, cancel=cancel,
                                 t_start=t_start)
    finally:
        if spill_dir:
            import shutil
            shutil.rmtree(spill_dir[0], ignore_errors=True)


def _integrate_opened(opened, shape, rows, limit, *, combine, normalization, weighting,
                      rejection, scheduler, rejection_maps, reference, frame_stats, progress,
                      cancel, t_start) -> IntegrationResult:
    n = len(opened)
    C, H, W = shape
    tiles = [(r0, min(H, r0 + rows)) for r0 in range(0, H, rows)]
    total_steps = n + len(tiles)
    log = [f"integrate: {n} frames of {W}x{H}x{C}, reference {reference} "
           f"({opened[reference].name}); combine {combine}, normalization "
           f"{normalization.name}, weighting {weighting.name}, rejection "
           f"{_describe_rejection(rejection)}",
           f"tiles: {len(tiles)} of {rows} rows (memory limit {_fmt_bytes(limit)})"]

    # --- statistics pass -------------------------------------------------------
    need_noise = isinstance(weighting, NoiseWeight)
    need_scale = not isinstance(normalization, (NoNormalization,))
    locs = np.empty((n, C))
    scales = np.empty((n, C))
    noise = np.full((n, C), np.nan)
    if need_noise or need_scale:
        def one(i):
            return _frame_statistics(opened[i], normalization.scale, need_noise)

        # file reads, numpy's partition and the numba wavelet release the GIL, so
        # frames are measured in parallel threads.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
            for i, (lo_, sc_, no_) in enumerate(ex.map(one, range(n))):
                locs[i], scales[i], noise[i] = lo_, sc_, no_
                report(progress, i + 1, total_steps, f"statistics {i + 1}/{n}", cancel)
    else:
        locs[:] = np.nan
        scales[:] = np.nan
        report(progress, n, total_steps, "statistics skipped", cancel)
    t_stats = time.perf_counter()

    A, B = normalization.coefficients(locs, scales, reference)
    for i in range(n):
        if not (np.all(np.isfinite(A[i])) and np.all(np.isfinite(B[i])) and np.all(A[i] > 0)):
            what = "median" if isinstance(normalization, Multiplicative) else "dispersion"
            raise BadInputError(opened[i].name, f"{normalization.name} normalization is "
                                f"impossible: the frame's {what} is zero or negative")

    if isinstance(weighting, NoiseWeight):
        sig = A * noise
        if not np.all(np.isfinite(sig) & (sig > 0)):
            bad = int(np.argmax(~(np.isfinite(sig) & (sig > 0)).all(axis=1)))
            raise BadInputError(opened[bad].name, "noise weighting: cannot measure the "
                                "frame's noise (constant or too small?)")
        Wt = 1.0 / sig ** 2
    elif isinstance(weighting, (FWHMWeight, StarCountWeight)):
        vals = np.array([_frame_meta(f, None if frame_stats is None else frame_stats[i],
                                     weighting.needs) for i, f in enumerate(opened)])
        if not np.all(vals > 0):
            bad = int(np.argmax(~(vals > 0)))
            raise BadInputError(opened[bad].name, f"{weighting.needs} must be > 0, got "
                                f"{vals[bad]}")
        per = (vals.min() / vals) ** 2 if isinstance(weighting, FWHMWeight) else vals
        Wt = np.repeat(per[:, None], C, axis=1).astype(np.float64)
    else:
        Wt = np.ones((n, C))
    Wt = Wt / Wt.max(axis=0, keepdims=True)
    plan = _Plan.build(n, C, rejection, combine, A=A, B=B, W=Wt)

    # --- tile pass ------------------------------------------------------------
    out = np.empty((C, H, W), np.float32)
    covered = np.zeros((H, W), bool)
    count = np.empty((H, W), np.float32)
    low_map = np.empty((C, H, W), np.float32) if rejection_maps else None
    high_map = np.empty((C, H, W), np.float32) if rejection_maps else None
    frv = np.zeros(n, np.int64)
    frl = np.zeros(n, np.int64)
    frh = np.zeros(n, np.int64)

    def place(r0, r1, res):
        o, nv, lc, hc, fv, fl, fh = res
        out[:, r0:r1] = o
        np.any(nv, axis=0, out=covered[r0:r1])      # no (C, R, X) temporary
        count[r0:r1] = nv[0]
        if rejection_maps:
            with np.errstate(invalid="ignore", divide="ignore"):
                den = np.maximum(nv, 1).astype(np.float32)
                np.divide(lc, den, out=low_map[:, r0:r1])
                np.divide(hc, den, out=high_map[:, r0:r1])
        frv[:] += fv
        frl[:] += fl
        frh[:] += fh

    if scheduler is None:
        _run_local(opened, plan, tiles, rows, place, progress, cancel, n, total_steps)
    else:
        _run_dask(opened, plan, tiles, place, scheduler, progress, cancel, n, total_steps)
    t_comb = time.perf_counter()

    # --- finish ------------------------------------------------------------------
    if combine == "sum":
        peak = float(out.max()) if out.size else 0.0
        if peak > 1.0:
            out *= np.float32(1.0 / peak)
            log.append(f"sum: rescaled by 1/{peak:.4g} to stay within [0, 1]")
    np.clip(out, 0.0, 1.0, out=out)
    data = out if opened[reference].ndim == 3 else out[0]
    if low_map is not None and opened[reference].ndim == 2:
        low_map, high_map = low_map[0], high_map[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rl = np.where(frv > 0, frl / np.maximum(frv, 1), 0.0)
        rh = np.where(frv > 0, frh / np.maximum(frv, 1), 0.0)
    wmean = Wt.mean(axis=1)
    header = _common_header(opened, reference)
    params = {"combine": combine, "normalization": normalization.to_dict(),
              "weighting": weighting.to_dict(), "rejection": rejection.to_dict(),
              "frames": n, "reference": reference}
    history = list(opened[reference].history) + [format_history(STEP_ID, params)]
    bayer = opened[reference].bayer
    if bayer is not None and any(f.bayer != bayer for f in opened):
        bayer = None
    image = AstroImage(data=data, header=header, history=history, bayer=bayer,
                       mask=None if covered.all() else covered)

    for i, f in enumerate(opened):
        chw = " ".join(f"{x:.3f}" for x in Wt[i]) if C > 1 else ""
        log.append(f"frame {i + 1:3d} {Path(f.name).name}: weight {wmean[i]:.3f}"
                   + (f" ({chw})" if chw else "")
                   + f", rejected low {100 * rl[i]:.3f}% high {100 * rh[i]:.3f}%")
    tot_v = max(int(frv.sum()), 1)
    log.append(f"rejected in all: low {100 * frl.sum() / tot_v:.3f}% "
               f"high {100 * frh.sum() / tot_v:.3f}%")
    timings = {"statistics": t_stats - t_start, "combine": t_comb - t_stats,
               "total": time.perf_counter() - t_start}
    log.append(f"time: statistics {timings['statistics']:.2f} s, combine "
               f"{timings['combine']:.2f} s")
    report(progress, total_steps, total_steps, "done", None)
    return IntegrationResult(image=image, low_map=low_map, high_map=high_map, weights=wmean,
                             channel_weights=Wt, rejected_low=rl, rejected_high=rh,
                             locations=locs, scales=scales, noise=noise, norm_a=A, norm_b=B,
                             names=[f.name for f in opened], log=log, timings=timings,
                             tile_rows=rows, valid_count=count)


def _run_local(opened, plan, tiles, rows, place, progress, cancel, n, total_steps) -> None:
    """Tiles on this machine: one thread reads the next band while numba combines."""
    C, H, W = opened[0].source.shape
    flats = [np.empty(n * C * rows * W, np.float32) for _ in range(2 if len(tiles) > 1 else 1)]
    scratch = _TileScratch(n, C, rows, W)

    def load(k, t):
        r0, r1 = tiles[t]
        buf = flats[k][: n * C * (r1 - r0) * W].reshape(n, C, r1 - r0, W)
        for i, f in enumerate(opened):
            f.source.read_rows(r0, r1, buf[i])
        return buf

    with ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(load, 0, 0)
        for t, (r0, r1) in enumerate(tiles):
            buf = fut.result()
            if t + 1 < len(tiles):
                fut = ex.submit(load, (t + 1) % len(flats), t + 1)
            place(r0, r1, _compute_tile(plan, buf, parallel=True, scratch=scratch))
            report(progress, n + t + 1, total_steps, f"tile {t + 1}/{len(tiles)}", cancel)


def _remote_tile(plan: _Plan, payload, r0: int, r1: int):
    """The Dask task: read (or receive) one band of every frame and combine it."""
    if isinstance(payload, np.ndarray):
        buf = payload
    else:
        C, H, W = payload[0].shape
        buf = np.empty((len(payload), C, r1 - r0, W), np.float32)
        for i, src in enumerate(payload):
            src.read_rows(r0, r1, buf[i])
    # serial kernel: Dask already runs one task per worker thread
    return _compute_tile(plan, buf, parallel=False)


def _run_dask(opened, plan, tiles, place, scheduler, progress, cancel, n, total_steps) -> None:
    """Tiles as a Dask graph on a distributed cluster (``scheduler`` = address or Client)."""
    import dask
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        files = all(isinstance(f.source, FileSource) for f in opened)
        srcs = [f.source for f in opened] if files else None
        C, H, W = opened[0].source.shape
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = max(2, 2 * n_workers)   # bands in flight: bounds client + worker memory
        token = dask.base.tokenize(plan.A, plan.B, plan.W, plan.method, time.time())
        tile_of: dict = {}

        def task(t):
            r0, r1 = tiles[t]
            if files:   # workers read their band from the files themselves
                payload = srcs
            else:       # in-memory frames: ship only this band
                payload = np.empty((n, C, r1 - r0, W), np.float32)
                for i, f in enumerate(opened):
                    f.source.read_rows(r0, r1, payload[i])
            d = dask.delayed(_remote_tile, pure=False)(
                plan, payload, r0, r1, dask_key_name=f"integrate-tile-{t}-{token}")
            fut = client.compute(d)
            tile_of[fut.key] = t
            return fut

        pending = as_completed()
        nxt = 0
        while nxt < min(window, len(tiles)):
            pending.add(task(nxt))
            nxt += 1
        done = 0
        for fut in pending:
            t = tile_of.pop(fut.key)
            res = fut.result()
            fut.release()
            place(tiles[t][0], tiles[t][1], res)
            done += 1
            report(progress, n + done, total_steps, f"tile {done}/{len(tiles)} (dask)", cancel)
            if nxt < len(tiles):
                pending.add(task(nxt))
                nxt += 1
    finally:
        if own:
            client.close()
