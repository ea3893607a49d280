"""Register a session's frames onto a reference: measure, choose, match, reject, resample.

``register_frames`` runs in two passes so that a session larger than memory works:

1. every frame is read, its stars are detected (on the CFA luminance for raw mosaics,
   the channel mean for colour) and its quality measured (star count, FWHM,
   roundness, background, noise); bad input fails here, before anything is written;
2. the reference is chosen (the given one, else the best: most stars and smallest
   FWHM), frames are rejected relative to the session median (FWHM, star count),
   matched, resampled onto the reference grid and written.

The quality table (:attr:`RegistrationResult.rows`, one dict per frame) and the star
lists (:attr:`RegistrationResult.stars`, ``Stars`` with ``(x, y)`` arrays) are what a
widget shows; ``transforms.json`` holds the same rows with each matrix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.progress import CancelToken, Progress, report
from ..core.registration import RegistrationError, Transform, apply_transform, find_transform
from ..core.stars import (FrameQuality, Stars, _quality_from, cfa_box_luminance,
                          detect_stars, estimate_background, pixel_scale_from_header)
from .steps import RegisterParams

__all__ = ["RegistrationResult", "register_frames", "measure_frame", "save_measurement",
           "load_measurement", "resample_frame", "cli_register", "TRANSFORMS_FILE"]

TRANSFORMS_FILE = "transforms.json"
# Frames are not kept between the two passes: the second re-reads them in its frame
# threads (a 36 MB colour FITS from the page cache reads in ~0.05 s, hidden behind the
# resampling), so peak memory stays a few frames whatever the session size.


def _threads() -> int:
    """Frames processed at once: numba's thread count (``--workers``), at least 1."""
    try:
        from ..core.jit import get_num_threads  # numba's, without importing numba
        return max(1, int(get_num_threads()))
    except Exception:  # pragma: no cover
        return 2


@contextlib.contextmanager
def _pool(workers: Optional[int] = None):
    """A thread pool of ``workers`` (default :func:`_threads`) frame threads whose
    queued frames are dropped at once when the caller stops (cancel, error), instead
    of being finished first."""
    import concurrent.futures as cf

    n = _threads()
    try:
        from ..core.jit import set_num_threads

        # numba's thread count is per thread: the frame threads get the caller's
        # (``--workers``), not the default of all cores
        pool = cf.ThreadPoolExecutor(workers or n, initializer=set_num_threads,
                                     initargs=(n,))
    except ImportError:  # pragma: no cover
        pool = cf.ThreadPoolExecutor(workers or n)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _frame_mapper(client=None):
    """``map(fn, items)`` over frames, results in order: this process's frame threads,
    or the Dask cluster's worker processes when ``client`` is given (``--scheduler``)."""
    if client is None:
        with _pool() as pool:
            yield pool.map
    else:
        from .distributed import map_ordered

        yield lambda fn, items: map_ordered(client, fn, items)


# --------------------------------------------------------------------------- measuring
def measure_frame(image: AstroImage, *, sigma: float = 5.0,
                  max_stars: int = 500) -> tuple[Stars, FrameQuality]:
    """Detect stars and measure the quality of one frame.

    Parameters
    ----------
    image : AstroImage
        Mono, colour ``(3, H, W)`` (measured on the channel mean) or raw CFA mosaic
        (measured on the 2x2 CFA luminance, coordinates in the mosaic's grid, which
        is the debayered image's grid too).
    sigma : float, default 5.0
        Detection threshold (noise sigmas of the filtered image).
    max_stars : int, default 500

    Returns
    -------
    stars : Stars
    quality : FrameQuality
        Background and noise are those of the luminance that was measured.
    """
    if image.is_cfa:
        lum = cfa_box_luminance(image.data)
        offset = 0.5
        box_var = 0.25
    else:
        lum = image.luminance()
        offset = 0.0
        box_var = 0.0
    lum = np.ascontiguousarray(lum, dtype=np.float32)
    if not np.isfinite(lum).all():
        lum = np.nan_to_num(lum, nan=0.0, posinf=0.0, neginf=0.0)
    background = estimate_background(lum)
    stars = detect_stars(lum, sigma=sigma, max_stars=max_stars, background=background,
                         _box_variance=box_var)
    stars.x += offset
    stars.y += offset
    quality = _quality_from(stars, background, pixel_scale_from_header(image.header))
    return stars, quality


def save_measurement(mdir: "str | os.PathLike[str]", name: str, image: AstroImage,
                     stars: Stars, quality: FrameQuality) -> Path:
    """Keep one frame's stars and quality where ``register_frames(resume=True)`` finds
    them (``mdir/<stem of name>.json``, written atomically): the stack run measures
    each light right after calibrating it, while it is in memory, and registration
    then reads the frame once only, to resample it."""
    from ..core.io._atomic import atomic_output

    mdir = Path(mdir)
    mdir.mkdir(parents=True, exist_ok=True)
    target = mdir / f"{_stem(name)}.json"
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"stars": stars.to_dict(), "quality": quality.to_dict(),
                                   "shape": list(image.shape2d), "cfa": image.is_cfa}))
    return target


def load_measurement(mdir: "str | os.PathLike[str]", name: str):
    """``(stars, quality, shape, is_cfa)`` saved by :func:`save_measurement`, or None."""
    mfile = Path(mdir) / f"{_stem(name)}.json"
    if not mfile.exists():
        return None
    saved = json.loads(mfile.read_text())
    q = FrameQuality(**{k: (float("nan") if v is None and k != "fwhm_arcsec" else v)
                        for k, v in saved["quality"].items()})
    return Stars.from_dict(saved["stars"]), q, tuple(saved["shape"]), bool(saved["cfa"])


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class RegistrationResult:
    """What :func:`register_frames` found and wrote.

    Attributes
    ----------
    rows : list of dict
        The quality table, one row per input frame, in input order: ``index, name,
        path, output, reference (bool), accepted (bool), reason (str or None),
        n_stars, fwhm, fwhm_arcsec, roundness, background, noise, n_matches, rms,
        shift_x, shift_y, rotation_deg, scale, flipped, model, matrix``.
    transforms : list of Transform or None
        Source -> reference transform of each frame (None when matching failed).
    stars : list of Stars
        Detected stars of each frame (own pixel grid).
    reference_index : int
        Index of the reference frame in the inputs (-1 for an external reference).
    images : list of AstroImage or None
        Registered images (when no output folder was given); None for rejected frames.
    outputs : list of Path or None
        Written files; None for rejected frames or in-memory runs.
    transforms_path : Path or None
        The written ``transforms.json``.
    seconds : dict
        Wall time of the phases (``measure``, ``match``, ``resample``, ``total``).
    """

    rows: list[dict[str, Any]]
    transforms: list[Optional[Transform]]
    stars: list[Stars]
    reference_index: int
    reference_stars: Stars
    params: RegisterParams
    images: list[Optional[AstroImage]] = dataclasses.field(default_factory=list)
    outputs: list[Optional[Path]] = dataclasses.field(default_factory=list)
    transforms_path: Optional[Path] = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def accepted(self) -> list[bool]:
        return [bool(r["accepted"]) for r in self.rows]

    @property
    def n_accepted(self) -> int:
        return sum(self.accepted)

    def to_json(self) -> dict[str, Any]:
        """The content of ``transforms.json``."""
        ref = self.rows[self.reference_index] if self.reference_index >= 0 else None
        return {
            "step": RegisterParams.STEP_ID,
            "params": self.params.to_dict(),
            "reference": (ref["path"] or ref["name"]) if ref else self.params.reference,
            "reference_index": self.reference_index,
            "convention": "matrix maps source pixel (x=col, y=row, 1) to reference pixel",
            "frames": self.rows,
        }


# --------------------------------------------------------------------------- helpers
def _name_of(item: Any, i: int) -> tuple[str, Optional[str]]:
    if isinstance(item, AstroImage):
        p = item.path
        return (Path(p).name if p else f"frame{i:03d}"), p
    return Path(item).name, os.fspath(item)


def _stem(name: str) -> str:
    from .inputs import file_stem

    return file_stem(name)


def _load(item: Any) -> AstroImage:
    if isinstance(item, AstroImage):
        return item
    from ..core.io import read_image
    return read_image(item)


def _finite(v: float) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(v) else None


def _record(reg: AstroImage, params: RegisterParams) -> AstroImage:
    """HISTORY: the step's parameters (read back by ``RegisterParams.from_history``),
    then this frame's own transform as ``pre.register.frame``."""
    key = RegisterParams.STEP_ID
    hist = reg.history
    detail = hist.pop() if hist and hist[-1].startswith(key + " ") else None
    hist.append(params.history())
    if detail is not None:
        hist.append(f"{key}.frame {detail.split(' ', 1)[1]}")
    return reg


def _debayer(image: AstroImage, method: str = "rcd", equalize: bool = False) -> AstroImage:
    from ..core import debayer as _db  # lazy: only raw mosaics need it
    return _db.debayer(image, method=method, equalize=equalize)


def _best_reference(quals: list[FrameQuality], ok: list[bool]) -> int:
    """Most stars and smallest FWHM: maximise n_stars / FWHM^2 (stars per PSF area)."""
    best, best_score = -1, -1.0
    for i, (q, good) in enumerate(zip(quals, ok)):
        if not good or q.n_stars == 0 or not math.isfinite(q.fwhm):
            continue
        score = q.n_stars / max(q.fwhm, 0.5) ** 2
        if score > best_score:
            best, best_score = i, score
    return best


def resample_frame(img: AstroImage, transform: Transform, ref_shape, params: RegisterParams, *,
                   record: Optional[RegisterParams], reference: str, match: tuple,
                   is_reference: bool, debayer_method: str = "rcd",
                   equalize_cfa: bool = False) -> AstroImage:
    """One frame onto the reference grid (debayered first if a raw mosaic), with its
    HISTORY: what :func:`register_frames` writes for it (and the one-pass stack run)."""
    if img.is_cfa:
        img = _debayer(img, debayer_method, equalize_cfa)
    hist = {"reference": reference, "n_matches": match[0], "rms_px": round(float(match[1]), 4)}
    if is_reference and img.shape2d == tuple(ref_shape):
        # the reference needs no interpolation at all
        reg = img.derive(img.data, RegisterParams.STEP_ID, {"model": "identity", **hist},
                         mask=np.ones(img.shape2d, bool) if img.mask is None else img.mask)
    else:
        reg = apply_transform(img, transform, shape=tuple(ref_shape),
                              interpolation=params.interpolation, clamp=params.clamp,
                              history=hist)
    return _record(reg, record or params)  # the reference's too: the stack carries it


# --------------------------------------------------------------------------- main entry
def register_frames(images_or_paths: Sequence[Any], out_dir: "str | os.PathLike[str] | None" = None,
                    params: RegisterParams = RegisterParams(), *, overwrite: bool = False,
                    resume: bool = False, debayer_method: str = "rcd",
                    equalize_cfa: bool = False, record: Optional[RegisterParams] = None,
                    progress: Optional[Progress] = None,
                    cancel: Optional[CancelToken] = None, client: Any = None,
                    matched: Optional[dict] = None) -> RegistrationResult:
    """Align frames onto a reference and report their quality.

    Parameters
    ----------
    images_or_paths : sequence of AstroImage or path
        Frames: mono, colour ``(3, H, W)`` or raw CFA (detected on the CFA luminance,
        debayered by ``core.debayer`` before resampling).
    out_dir : path, optional
        Folder for ``r_<name>.fits`` of every accepted frame and ``transforms.json``;
        None keeps the registered images in memory (:attr:`RegistrationResult.images`).
    params : RegisterParams
        ``model``, ``interpolation``, ``clamp``, ``reference`` (a path among the inputs
        or another file; None = best frame), ``detection_sigma``, ``max_stars``,
        ``max_fwhm_ratio`` and ``min_stars_ratio`` (rejection relative to the session
        median).
    overwrite : bool, default False
        Replace existing outputs.
    debayer_method : str, default "rcd"
        Demosaicing of raw CFA inputs before resampling (stars are measured on the
        CFA luminance, so one-shot-colour frames can stay mosaics until here: a third
        of the intermediate disk and I/O). "superpixel" halves the size and is not
        allowed here: debayer such frames before registering.
    equalize_cfa : bool, default False
        Equalise the CFA planes' backgrounds while debayering.
    record : RegisterParams, optional
        Parameters written in each frame's HISTORY instead of ``params`` (the stack
        run registers onto the calibrated version of the reference the user named).
    resume : bool, default False
        Continue an interrupted run in ``out_dir``: frames measured before are not
        measured again (their stars and quality are kept in ``out_dir/.measure``)
        and registered outputs that exist (written atomically, so complete) are
        kept. Transforms are recomputed from the same stars, so the result is the
        one an uninterrupted run gives.
    progress, cancel
        See :mod:`napari_astro.core.progress`.
    client : distributed.Client, optional
        Measure and resample the frames as tasks on this Dask cluster's worker
        processes (:mod:`.distributed`; inputs given as paths on a filesystem every
        worker sees). Matching stays here (milliseconds per frame).
    matched : dict, optional
        ``{index: MatchResult}`` of frames already matched onto this reference from the
        same stars (the one-pass stack run matches each frame while it is in memory):
        taken instead of matching them again (9 ms CPU per Seestar frame).

    Returns
    -------
    RegistrationResult

    Raises
    ------
    BadInputError
        No frames, unreadable frame, unknown option, outputs that exist without
        ``overwrite``, or a reference without stars. Frames without stars or that do
        not match are *rejected with a reason*, not errors.
    """
    t_start = time.perf_counter()
    items = list(images_or_paths)
    if not items:
        raise BadInputError(None, "no frames to register")
    if debayer_method == "superpixel":
        raise BadInputError("--debayer-method", "superpixel halves the frame: debayer before "
                                                "registering")
    names = [_name_of(it, i) for i, it in enumerate(items)]
    out_path = Path(out_dir) if out_dir is not None else None
    outputs: list[Optional[Path]] = [None] * len(items)
    if out_path is not None:
        if out_path.exists() and not out_path.is_dir():
            raise BadInputError(out_path, "output is not a folder")
        planned = [out_path / f"r_{_stem(n)}.fits" for n, _ in names]
        if len(set(planned)) != len(planned):
            raise BadInputError(out_path, "two input frames have the same file name")
        if not overwrite and not resume:
            for p in planned + [out_path / TRANSFORMS_FILE]:
                if p.exists():
                    raise BadInputError(p, "output exists (use --overwrite to replace it)")
    # external reference?
    ref_index = -1
    ext_ref: Optional[AstroImage] = None
    if params.reference:
        want = os.path.realpath(params.reference)
        for i, (_, p) in enumerate(names):
            if p and os.path.realpath(p) == want:
                ref_index = i
        if ref_index < 0:
            if not os.path.exists(params.reference):
                raise BadInputError(params.reference, "reference frame not found")
            ext_ref = _load(params.reference)

    n = len(items)
    total = 2 * n + 1
    # ---- pass 1: measure (and validate every input before writing anything)
    stars: list[Stars] = []
    quals: list[FrameQuality] = []
    shapes: list[tuple[int, int]] = []
    mdir = out_path / ".measure" if (resume and out_path is not None) else None
    measured: dict[int, tuple] = {}
    todo = []
    for i in range(n):
        saved = load_measurement(mdir, names[i][0]) if mdir is not None else None
        if saved is not None:
            measured[i] = saved
        else:
            todo.append(i)
    def _measure_one(i: int):
        img = _load(items[i])
        s_, q_ = measure_frame(img, sigma=params.detection_sigma, max_stars=params.max_stars)
        if mdir is not None:
            save_measurement(mdir, names[i][0], img, s_, q_)
        return s_, q_, img.shape2d, img.is_cfa

    # Two frames at a time: the kernels are parallel but reading, the background
    # model and Python glue are not; frame-level threads overlap them (20 colour
    # 2000x1500 frames: 15.7 s serial, 9.3 s with two threads on 2 shared cores).
    if client is not None and any(isinstance(it, AstroImage) for it in items):
        client = None  # in-memory frames: not worth shipping
    with _frame_mapper(client) as fmap:
        for k, (i, res) in enumerate(zip(todo, fmap(_measure_one, todo))):
            report(progress, len(measured) + k, total, f"measured {names[i][0]}", cancel)
            measured[i] = res
    for i in range(n):
        s, q, shape, _ = measured[i]
        stars.append(s)
        quals.append(q)
        shapes.append(shape)
    t_measure = time.perf_counter()

    # ---- quality rejection relative to the session median
    with_stars = [q for q in quals if q.n_stars > 0]
    med_fwhm = float(np.median([q.fwhm for q in with_stars])) if with_stars else float("nan")
    med_stars = float(np.median([q.n_stars for q in quals])) if quals else 0.0
    reasons: list[Optional[str]] = [None] * n
    for i, q in enumerate(quals):
        if q.n_stars == 0:
            reasons[i] = "no stars detected (clouds or empty frame)"
        elif q.n_stars < params.min_stars_ratio * med_stars:
            reasons[i] = (f"only {q.n_stars} stars (< {params.min_stars_ratio:g} x session "
                          f"median {med_stars:g})")
        elif math.isfinite(med_fwhm) and q.fwhm > params.max_fwhm_ratio * med_fwhm:
            reasons[i] = (f"FWHM {q.fwhm:.2f} px > {params.max_fwhm_ratio:g} x session "
                          f"median {med_fwhm:.2f} px")

    # ---- reference
    if ext_ref is not None:
        ref_stars, ref_q = measure_frame(ext_ref, sigma=params.detection_sigma,
                                         max_stars=params.max_stars)
        ref_shape = ext_ref.shape2d
        if len(ref_stars) < 3:
            raise BadInputError(params.reference, f"only {len(ref_stars)} stars found in the "
                                "reference frame")
        ext_ref = None
    else:
        if ref_index < 0:
            ref_index = _best_reference(quals, [r is None for r in reasons])
            if ref_index < 0:
                ref_index = _best_reference(quals, [True] * n)
        if ref_index < 0 or quals[ref_index].n_stars < 3:
            where = names[ref_index][1] if ref_index >= 0 else None
            raise BadInputError(where, "no frame with enough stars to serve as the reference "
                                f"(star counts: {[q.n_stars for q in quals]})")
        reasons[ref_index] = None  # the reference is accepted by definition
        ref_stars, ref_shape = stars[ref_index], shapes[ref_index]

    # ---- match
    transforms: list[Optional[Transform]] = [None] * n
    matches: list[tuple[int, float]] = [(0, float("nan"))] * n
    for i in range(n):
        report(progress, n + i * 0.2, total, f"matching {names[i][0]}", cancel)
        if i == ref_index:
            transforms[i] = Transform.identity()
            matches[i] = (len(stars[i]), 0.0)
            continue
        if len(stars[i]) < 3:
            continue
        try:
            m = matched[i] if matched and i in matched else \
                find_transform(stars[i], ref_stars, model=params.model)
        except RegistrationError as exc:
            if reasons[i] is None:
                reasons[i] = f"no match with the reference: {exc}"
            continue
        transforms[i] = m.transform
        matches[i] = (m.n_matches, m.rms)
        if reasons[i] is None and m.rms > 2.0:
            reasons[i] = f"poor match with the reference (residual RMS {m.rms:.2f} px)"
    t_match = time.perf_counter()

    # ---- resample + write
    images: list[Optional[AstroImage]] = [None] * n
    ref_name = names[ref_index][0] if ref_index >= 0 else os.path.basename(params.reference or "")
    targets: list[Optional[Path]] = [
        out_path / f"r_{_stem(names[i][0])}.fits" if out_path is not None else None
        for i in range(n)]
    work = []
    for i in range(n):
        if reasons[i] is not None or transforms[i] is None:
            continue
        if resume and targets[i] is not None and targets[i].exists():
            outputs[i] = targets[i]
        else:
            work.append(i)
    from ..core.io import write_image

    def _resample_one(i: int):
        reg = resample_frame(_load(items[i]), transforms[i], ref_shape, params,
                             record=record, reference=ref_name, match=matches[i],
                             is_reference=i == ref_index, debayer_method=debayer_method,
                             equalize_cfa=equalize_cfa)
        if out_path is not None:
            # reg is ours alone: its footprint NaN go into its own buffer, not a copy
            write_image(reg, targets[i], overwrite=overwrite or resume, inplace=True)
            return None
        return reg

    def _done(k: int, i: int) -> None:
        report(progress, n + 0.2 * n + (k + 1) * 0.8 * n / max(len(work), 1), total,
               f"resampled {names[i][0]}", cancel)

    if client is None and out_path is not None:
        _resample_pipeline(work, items, _done, lambda box, i: resample_frame(
            box.pop(), transforms[i], ref_shape, params, record=record, reference=ref_name,
            match=matches[i], is_reference=i == ref_index, debayer_method=debayer_method,
            equalize_cfa=equalize_cfa), lambda reg, i: write_image(
            reg, targets[i], overwrite=overwrite or resume, inplace=True))
        for i in work:
            outputs[i] = targets[i]
    else:
        # Frame-level threads (read, resample, write of one frame overlap those of the
        # next); results are consumed in order so at most a few frames are in memory.
        with _frame_mapper(client) as fmap:
            for k, (i, reg) in enumerate(zip(work, fmap(_resample_one, work))):
                _done(k, i)
                if out_path is not None:
                    outputs[i] = targets[i]
                else:
                    images[i] = reg
    t_resample = time.perf_counter()

    # ---- table
    rows: list[dict[str, Any]] = []
    for i in range(n):
        q, t = quals[i], transforms[i]
        row: dict[str, Any] = {
            "index": i, "name": names[i][0], "path": names[i][1],
            "output": os.fspath(outputs[i]) if outputs[i] is not None else None,
            "reference": i == ref_index, "accepted": reasons[i] is None and t is not None,
            "reason": reasons[i], "n_stars": q.n_stars, "fwhm": _finite(q.fwhm),
            "fwhm_arcsec": _finite(q.fwhm_arcsec) if q.fwhm_arcsec is not None else None,
            "roundness": _finite(q.roundness), "background": _finite(q.background),
            "noise": _finite(q.noise), "n_matches": int(matches[i][0]),
            "rms": _finite(matches[i][1]), "model": t.model if t is not None else None,
            "matrix": t.matrix.tolist() if t is not None else None,
            "shift_x": t.shift[0] if t is not None else None,
            "shift_y": t.shift[1] if t is not None else None,
            "rotation_deg": t.rotation_deg if t is not None else None,
            "scale": t.scale if t is not None else None,
            "flipped": t.is_flipped if t is not None else None,
        }
        rows.append(row)
    result = RegistrationResult(rows=rows, transforms=transforms, stars=stars,
                                reference_index=ref_index, reference_stars=ref_stars,
                                params=params, images=images, outputs=outputs)
    if out_path is not None:
        from ..core.io._atomic import atomic_output
        with atomic_output(out_path / TRANSFORMS_FILE, overwrite=overwrite or resume) as tmp:
            tmp.write_text(json.dumps(result.to_json(), indent=1))
        result.transforms_path = out_path / TRANSFORMS_FILE
    t_end = time.perf_counter()
    result.seconds = {"measure": t_measure - t_start, "match": t_match - t_measure,
                      "resample": t_resample - t_match, "total": t_end - t_start}
    report(progress, total, total, f"{result.n_accepted}/{n} frames registered", cancel)
    return result


def _resample_pipeline(work: list, items: Sequence[Any], done, resample, write) -> None:
    """``write(resample([load(items[i])], i), i)`` for ``i`` in ``work``, in order: one
    frame resampled at a time on this thread (its kernels use every core), the next
    one read ahead and the last one written behind, each in a thread of its own.
    ``resample`` gets the frame in a list to pop, so that it can hold the only
    reference (:func:`resample_frame` lets a mosaic go once it is debayered).

    Two frame threads each doing all three used as many CPU seconds, and held two
    frames' debayered planes, intermediate and output at once: night20's register
    stage (20 lights 2000x1500, two-pass stack run) peaked at 264-296 MB RSS with
    them, 229 MB this way."""
    import concurrent.futures as cf

    if not work:
        return
    with cf.ThreadPoolExecutor(1) as reader, cf.ThreadPoolExecutor(1) as writer:
        ahead = reader.submit(_load, items[work[0]])
        written = None
        for k, i in enumerate(work):
            box = [ahead.result()]
            ahead = reader.submit(_load, items[work[k + 1]]) if k + 1 < len(work) else None
            reg = resample(box, i)
            if written is not None:
                written.result()  # one frame waiting to be written at most
            written = writer.submit(write, reg, i)
            del reg
            done(k, i)
        written.result()


def load_transforms(path: "str | os.PathLike[str]") -> list[Optional[Transform]]:
    """Transforms of a ``transforms.json`` (None for frames that did not match), in
    frame order, to re-apply them to other data (e.g. a second filter)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        return [Transform.from_dict({"matrix": f["matrix"], "model": f.get("model") or "affine"})
                if f.get("matrix") is not None else None for f in data["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(p, f"not a transforms file ({exc})") from None


# --------------------------------------------------------------------------- CLI
def cli_register(args: Any) -> int:
    """``napari-astro register FRAMES... -o DIR`` (see CLI.md)."""
    from ..core.progress import TqdmProgress
    from .cliargs import params_from_args
    from .inputs import check_output_dir, expand
    from .steps import apply_workers, execution_from_args

    frames = expand(args.frames)
    params = params_from_args(RegisterParams, args)
    execution = execution_from_args(args)
    check_output_dir(args.output)
    apply_workers(execution)
    with TqdmProgress(desc="register") as bar:
        result = register_frames(frames, args.output, params,
                                 overwrite=bool(getattr(args, "overwrite", False)), progress=bar)
    for r in result.rows:
        tag = "REF" if r["reference"] else ("ok " if r["accepted"] else "rej")
        fwhm = f"{r['fwhm']:.2f}" if r["fwhm"] is not None else "-"
        rms = f"{r['rms']:.3f}" if r["rms"] is not None else "-"
        print(f"{tag} {r['name']}: stars {r['n_stars']}, FWHM {fwhm} px, matched "
              f"{r['n_matches']}, rms {rms} px" + (f" -- {r['reason']}" if r["reason"] else ""))
    print(f"{result.n_accepted}/{len(result.rows)} frames registered into {args.output} "
          f"({result.seconds['total']:.1f} s); {result.transforms_path}")
    return 0
