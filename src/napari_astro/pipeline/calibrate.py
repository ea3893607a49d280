"""Calibrated lights: which masters each light gets, and applying them.

The flow (what ``napari-astro calibrate``, the stack run and the Calibration widget
call; :func:`napari_astro.pipeline.calflow.run_calibration` strings it together)::

    frames  = scan_frames(folders)                         # headers only
    masters = build_masters(cal_frames, out_dir, MastersParams())     # .masters
    plan    = plan_calibration(lights, masters, CalibrateParams())   # who gets what
    images  = calibrate_lights(lights, masters, CalibrateParams(), out_dir, plan=plan)

* :func:`plan_calibration` decides per light, from headers alone, which bias, dark
  (matched, scaled by exposure, or optimised) and flat it gets; a light that needs a
  dark it cannot have is a :class:`BadInputError` naming the light.
* :func:`calibrate_light` applies one :class:`PlanItem`: calibration arithmetic,
  pedestal, cosmetic correction, optional CFA equalisation and debayering.
* :func:`calibrate_lights` runs a whole list with reads and writes overlapped in
  threads, one session-wide pedestal and, without darks, a bad-pixel map voted by
  the lights themselves (at most :data:`VOTE_LIGHTS` of them, spread over the session).

HISTORY: ``pre.calibrate {params}`` (reads back with ``CalibrateParams.from_history``)
then ``pre.calibrate.applied {"applied": {...}}`` (masters, dark scale, pedestal).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.calibration import (SATURATED, BadPixelAccumulator, BadPixelMap, auto_pedestal,
                                calibrate_arrays, correct_bad_pixels_array,
                                dark_scale_for_exposure, optimize_dark_scale, subtract)
from ..core.debayer import debayer, equalize_cfa
from ..core.errors import BadInputError
from ..core.frames import FrameInfo
from ..core.image import AstroImage
from ..core.io import read_image, write_image
from ..core.io.fits import cfa_pattern_from_header
from ..core.progress import CancelToken, Progress, report
from .masters import (_READ_THREADS, Log, Master, MasterSet, _exp_equal, _known_equal,
                      _nolog, _pick, build_masters)
from .steps import CalibrateParams

__all__ = ["Master", "MasterSet", "PlanItem", "build_masters", "plan_calibration",
           "calibrate_light", "calibrate_lights", "output_name", "APPLIED"]

#: HISTORY key of what calibration applied to a light (after the params line).
APPLIED = CalibrateParams.STEP_ID + ".applied"

#: Most lights that vote for the bad pixels when there is no dark, spread evenly over the
#: session (first and last included). Measured: 16 of the 40 lights of the simulated
#: night (benchmarks' night40) find 522 hot pixels, all true, 518 of them in the 40-light
#: vote's 522 (the 4 others are faint ones either way), and the same 60 cold pixels;
#: 8 Seestar lights of the 16 of seestar-m94-both flag one hot pixel more, 4 of them
#: 5 hot and 31 cold more. A session of up to 16 lights votes with all of them; a
#: 300-light night reads 16 lights instead of 300 (20 ms of CPU each, read and vote).
VOTE_LIGHTS = 16


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
    mode = params.dark_mode  # one of the Literal's choices (checked on construction)
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


def _calib_terms(img: AstroImage, item: PlanItem, masters: MasterSet, params: CalibrateParams,
                 applied: dict) -> dict:
    """The terms of :func:`core.calibration.calibrate_arrays` for this light (offset,
    thermal, dark_scale, inv_flat); fills ``applied``."""
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
    return dict(offset=offset, thermal=thermal, dark_scale=k, inv_flat=inv)


def _calibrate_raw(img: AstroImage, item: PlanItem, masters: MasterSet, params: CalibrateParams,
                   applied: dict) -> np.ndarray:
    """Calibration arithmetic without pedestal or clipping; fills ``applied``."""
    return calibrate_arrays(img.data, **_calib_terms(img, item, masters, params, applied),
                            pedestal=0.0, clip=None)


@dataclasses.dataclass
class _Ctx:
    """Session-wide state of :func:`calibrate_lights` shared by every light."""

    pedestal: Optional[float] = None
    bad_pixels: Optional[BadPixelMap] = None          # user's map, for every light
    light_bad_pixels: Optional[BadPixelMap] = None    # voted by the lights (no darks)


def calibrate_light(info_or_image, plan_item: PlanItem, masters: MasterSet,
                    params: CalibrateParams = CalibrateParams(), *,
                    pedestal: float | None = None, bad_pixels: BadPixelMap | None = None,
                    record: CalibrateParams | None = None, inplace: bool = False) -> AstroImage:
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
    record : CalibrateParams, optional
        Parameters written in HISTORY instead of ``params``.
    inplace : bool, default False
        Calibrate into the light's own pixels (``info_or_image.data``) instead of a
        new frame, when the caller has no further use for them
        (:func:`calibrate_lights`, which read the light: one frame of memory less).

    Returns
    -------
    AstroImage
        float32 in [0, 1]; ``(3, H, W)`` when debayered, else the 2-D frame with its
        CFA pattern. Header ``PEDESTAL`` and ``CALSTAT``; HISTORY ``pre.calibrate``
        with the parameters and what was applied, ``pre.debayer`` if debayered.
    """
    img = _as_image(info_or_image)
    applied: dict = {}
    terms = _calib_terms(img, plan_item, masters, params, applied)
    pattern = plan_item.pattern if plan_item.pattern is not None else img.bayer
    # cosmetic correction before the pedestal so the pedestal is not set by hot pixels
    bpm = None
    if params.cosmetic:
        bpm = bad_pixels
        if bpm is None and plan_item.dark is not None:
            bpm = masters.bad_pixels(plan_item.dark, pattern, params.hot_sigma, params.cold_sigma)
        if bpm is not None and len(bpm):
            applied["cosmetic"] = {"hot": bpm.n_hot, "cold": bpm.n_cold}
        else:
            bpm = None
    if pedestal is None and params.auto_pedestal:
        # the pedestal is measured on the calibrated, corrected frame: two passes
        data = calibrate_arrays(img.data, **terms, pedestal=0.0, clip=None,
                                out=img.data if inplace else None)
        if bpm is not None:
            correct_bad_pixels_array(data, bpm, pattern=pattern, inplace=True)
        pedestal = auto_pedestal(data, pattern=pattern, minimum=params.pedestal)
        calibrate_arrays(data, pedestal=pedestal, clip=(0.0, 1.0), out=data)
    else:
        if pedestal is None:
            pedestal = float(params.pedestal)
        # one pass: arithmetic, cosmetic correction, pedestal and clipping (the same
        # pixels as the two passes above; measured per light, CPU: 1.4 ms against
        # 4.5 ms for a Seestar light without masters, 5.0 ms against 7.0 ms for a
        # 2000x1500 night20 light with dark and flat and 728 bad pixels)
        data = calibrate_arrays(img.data, **terms, pedestal=pedestal, clip=(0.0, 1.0),
                                bad_pixels=bpm, pattern=pattern,
                                out=img.data if inplace else None)
    applied["pedestal"] = float(pedestal)
    calstat = "".join(c for c, m in (("B", plan_item.bias), ("D", plan_item.dark),
                                     ("F", plan_item.flat)) if m is not None)
    out = img.replace(data=data, bayer=pattern)
    # The parameters alone (they read back with CalibrateParams.from_history), then
    # what was applied. ``record``: the parameters the user chose when the run applies
    # part of them later (the stack run debayers inside registration).
    out.history.append((record or params).history())
    out.add_history(APPLIED, {"applied": applied})
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
    from .inputs import file_stem

    path = Path(info.path if isinstance(info, FrameInfo) else info)
    stem = file_stem(path)
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
                     out_dtype: str = "float32", record: CalibrateParams | None = None,
                     progress: Optional[Progress] = None, cancel: Optional[CancelToken] = None,
                     log: Optional[Log] = None, client=None,
                     measure: Optional[tuple] = None, skip: Sequence[int] = (),
                     first: Optional[int] = None, sink=None) -> list:
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
        (:class:`core.calibration.BadPixelAccumulator`), which costs one more read of
        at most :data:`VOTE_LIGHTS` lights spread over the session (all of them up to
        that number; the log line says how many of how many voted).
    keep_images : bool, optional
        Return the images (default: when ``out_dir`` is None).
    out_dtype : {"float32", "uint16"}, default "float32"
        Pixel type of the written frames; "uint16" (scaled [0, 1] -> 0..65535) halves
        the disk use of intermediates, at the precision of the raw 16-bit data.
    save_bad_pixels : path-like, optional
        Write the bad-pixel map applied to the first light (the dark's, or the one
        voted by the lights, plus ``bad_pixels``) as FITS or CSV (by extension).
    record : CalibrateParams, optional
        Parameters written in HISTORY instead of ``params`` (see :func:`calibrate_light`).
    progress, cancel, log : optional
    measure : (folder, sigma, max_stars), optional
        Also detect each calibrated light's stars and measure its quality while it is
        in memory (:func:`.register.measure_frame`), saved in ``folder`` for
        ``register_frames(resume=True)`` (:func:`.register.save_measurement`): the
        stack run's registration then reads each frame once only.
    skip : sequence of int
        Lights (indices into ``plan``) not to calibrate again (done by an interrupted
        run): they still vote for the bad pixels and the pedestal is still the first
        light's, so the others come out as an uninterrupted run makes them.
    first : int, optional
        Calibrate this light before the others (the one-pass stack run's reference).
    sink : callable, optional
        ``sink(index, image)`` takes each calibrated light instead of writing it (the
        one-pass stack run: measure, resample, write the registered frame), in frame
        threads; its return values are returned. Lights are handed over as soon as
        calibrated, at most a few ahead of the sink.
    client : distributed.Client, optional
        Calibrate frame by frame on this Dask cluster's worker processes (with
        ``out_dir`` and masters written to disk: workers read the lights and masters
        and write their results on the shared filesystem, :mod:`.distributed`); the
        session pedestal and the dark's bad-pixel maps are found here first, the
        lights' own bad-pixel votes on the workers.

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
    ctx = _Ctx(bad_pixels=bad_pixels)
    skipped = set(skip)
    order = [i for i in range(n) if i not in skipped]
    if first is not None and first in order:
        order.remove(first)
        order.insert(0, first)

    # Without a dark, hot pixels are voted by the lights themselves (one extra read of
    # at most VOTE_LIGHTS of them).
    need_votes = params.cosmetic and any(it.dark is None for it in plan)
    done = 0
    pre: dict = {}     # lights read by the vote and kept for calibration's first reads
    total = n
    if need_votes:
        pattern = plan[0].pattern
        acc = BadPixelAccumulator(plan[0].light.shape[-2:], pattern, hot_sigma=params.hot_sigma,
                                  cold_sigma=params.cold_sigma)
        candidates = [i for i, it in enumerate(plan) if it.dark is None]
        voters = _voters(candidates)
        total = n + len(voters)
        if client is not None:
            from .distributed import map_ordered, n_workers

            vote_items = [plan[i] for i in voters]
            k = max(1, min(len(vote_items), n_workers(client)))
            chunks = [[str(it.light.path) for it in vote_items[j::k]] for j in range(k)]
            spec = (acc.shape, pattern, params.hot_sigma, params.cold_sigma, acc.min_fraction)
            for part in map_ordered(client, _vote, [(spec, c) for c in chunks]):
                acc.hot += part.hot
                acc.cold += part.cold
                acc.n += part.n
                done += part.n
                report(progress, done, total, "finding hot pixels in the lights", cancel)
        else:
            # the lights calibration reads first (the pedestal's light 0, then the first
            # two of ``order``) vote last and are kept: 3 reads fewer
            wanted = ([0] if order and order[0] != 0 and params.auto_pedestal else []) \
                + order[:2]
            kept = [i for i in dict.fromkeys(wanted) if i in set(voters)]
            seq = [i for i in voters if i not in kept] + kept[::-1]
            for i, img in _read_ahead(plan, seq):
                acc.add(img.data)
                if i in kept:
                    pre[i] = img
                del img
                done += 1
                report(progress, done, total, "finding hot pixels in the lights", cancel)
        ctx.light_bad_pixels = acc.result()
        spread = "" if len(voters) == len(candidates) else \
            f" (of {len(candidates)}, spread over the session)"
        log(f"bad pixels voted by {acc.n} lights{spread}: {ctx.light_bad_pixels.n_hot} hot, "
            f"{ctx.light_bad_pixels.n_cold} cold")
        del acc           # its counts and scratch (16 MB for a Seestar frame) are done

    results: list = [names[i] if names else None for i in range(n)]
    written: list[Path] = []
    t_start = time.perf_counter()
    if client is None and order and order[0] != 0 and params.auto_pedestal:
        # the session pedestal is the first light's, whichever is calibrated first
        item0 = plan[0]
        img0 = pre.pop(0) if 0 in pre and 0 not in order[:2] else pre.get(0)
        ctx.pedestal = _session_pedestal(img0 if img0 is not None else read_image(
            item0.light.path), item0, masters, params,
            _frame_bad_pixels(item0, masters, params, ctx))
        del img0
        log(f"pedestal {ctx.pedestal:.6f} ({ctx.pedestal * 65535:.1f} ADU) for the session")
    if client is not None and out_dir is not None and not keep and not skipped and sink is None \
            and all(
            m.path is not None for it in plan for m in (it.bias, it.dark, it.flat)
            if m is not None):
        from .distributed import calibrate_on_cluster

        calibrate_on_cluster(client, plan, masters, params, ctx, names, overwrite,
                             out_dtype, record, written, results, done, total,
                             progress, cancel, log, measure)
        log(f"calibrated {n} lights in {time.perf_counter() - t_start:.2f} s "
            "(Dask cluster)")
        return results
    import collections

    from .register import _pool
    try:
        with cf.ThreadPoolExecutor(_READ_THREADS) as readers, \
                cf.ThreadPoolExecutor(1) as writer, cf.ThreadPoolExecutor(1) as measurer, \
                (_pool(1) if sink is not None else contextlib.nullcontext()) as sinks:
            # Prefetch reads ahead; calibration runs on this thread, measuring and
            # writing (or the sink: one frame thread, its kernels parallel; two had the
            # same speed on 2 cores and 50 MB more memory) on others, behind it.
            futures = {}

            def submit(k: int) -> None:
                if k < len(order) and order[k] not in futures:
                    if order[k] in pre:    # read by the bad-pixel vote
                        futures[order[k]] = cf.Future()
                        futures[order[k]].set_result(pre.pop(order[k]))
                        return
                    futures[order[k]] = readers.submit(read_image, plan[order[k]].light.path)

            # The sink (one pass: measure, then debayer + resample + write on a frame
            # thread of its own, the slowest stage) takes one light at a time: the next
            # is read ahead but calibrated only once the sink has taken the previous,
            # so the lights in flight are one in the resampler, one measured (or
            # waiting for it), one read (seestar-m94-both: peak RSS -25 MB, the same
            # wall time; measuring a light, 90 ms, stays shorter than resampling one,
            # 130 ms, so the resampler never waits for it).
            ahead = 1 if sink is not None else 2   # lights handed over, not yet taken
            reads = 1 if sink is not None else 2   # lights read ahead
            for k in range(reads):
                submit(k)
            pending_writes = []
            in_flight: collections.deque = collections.deque()
            for k, i in enumerate(order):
                item = plan[i]
                if sink is not None:
                    while len(in_flight) >= ahead:
                        in_flight.popleft().result()
                img = futures.pop(i).result()
                submit(k + reads)
                bpm = _frame_bad_pixels(item, masters, params, ctx)
                if ctx.pedestal is None:
                    ctx.pedestal = _session_pedestal(img, item, masters, params, bpm)
                    log(f"pedestal {ctx.pedestal:.6f} ({ctx.pedestal * 65535:.1f} ADU) for "
                        "the session")
                if k == 0 and save_bad_pixels is not None:
                    used = bpm if bpm is not None else BadPixelMap.empty(img.data.shape)
                    pending_writes.append((None, writer.submit(
                        _save_bpm, used, Path(save_bad_pixels), overwrite, written)))
                    log(f"bad-pixel map ({used.n_hot} hot, {used.n_cold} cold) -> "
                        f"{save_bad_pixels}")
                out = calibrate_light(img, item, masters, params, pedestal=ctx.pedestal,
                                      record=record, inplace=True,
                                      bad_pixels=bpm if bpm is not None else BadPixelMap.empty(
                                          img.data.shape))
                del img  # calibrated in its own buffer: ``out`` holds the pixels now
                log(item.describe() + (f" dark x{_applied_scale(out):.4g}"
                                       if item.dark_mode == "optimize" else ""))
                while len(in_flight) >= ahead:  # bounded memory: wait for the oldest
                    in_flight.popleft().result()
                if sink is not None:
                    fut = sinks.submit(sink, i, out)
                    in_flight.append(fut)
                    pending_writes.append((i, fut))
                elif out_dir is not None:
                    target = names[i]
                    measured = None
                    if measure is not None:
                        # overlaps the next light's calibration (the kernels release the GIL)
                        measured = measurer.submit(_measure, out, target.name, measure)
                    fut = writer.submit(_write, out, target, overwrite, written, out_dtype,
                                        measured)
                    in_flight.append(fut)
                    pending_writes.append((None, fut))
                if keep:
                    results[i] = out
                del out
                done += 1
                report(progress, done, total, f"calibrated {Path(item.light.path).name}", cancel)
            for i, fut in pending_writes:
                got = fut.result()
                if isinstance(got, cf.Future):  # the sink's own follow-up job
                    got = got.result()
                if i is not None:
                    results[i] = got
    except BaseException:
        remove_partial(written)
        raise
    log(f"calibrated {n} lights in {time.perf_counter() - t_start:.2f} s")
    return results


def remove_partial(paths) -> None:
    """Delete the outputs a failed or cancelled run wrote, so nothing half-done stays."""
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _frame_bad_pixels(item: PlanItem, masters: MasterSet, params: CalibrateParams,
                      ctx: _Ctx) -> BadPixelMap | None:
    """The bad pixels one light gets: its dark's (or the lights' vote) plus the user's."""
    bpm = ctx.bad_pixels
    if params.cosmetic:
        if item.dark is not None:
            dark_map = masters.bad_pixels(item.dark, item.pattern, params.hot_sigma,
                                          params.cold_sigma)
            bpm = dark_map.union(bpm) if bpm is not None else dark_map
        elif ctx.light_bad_pixels is not None:
            bpm = ctx.light_bad_pixels.union(bpm) if bpm is not None else ctx.light_bad_pixels
    return bpm


def _measure(img: AstroImage, name: str, measure: tuple) -> None:
    from .register import measure_frame, save_measurement

    folder, sigma, max_stars = measure
    stars, quality = measure_frame(img, sigma=sigma, max_stars=max_stars)
    save_measurement(folder, name, img, stars, quality)


def _voters(indices: list) -> list:
    """At most :data:`VOTE_LIGHTS` of ``indices``, spread evenly over the session."""
    if len(indices) <= VOTE_LIGHTS:
        return list(indices)
    picks = np.unique(np.round(np.linspace(0, len(indices) - 1, VOTE_LIGHTS)).astype(int))
    return [indices[j] for j in picks]


def _read_ahead(plan: Sequence[PlanItem], seq: list, ahead: int = 3):
    """``(i, image)`` of ``plan[i]`` for ``i`` in ``seq``, read in threads at most
    ``ahead`` frames before they are taken (the vote computes while the next reads)."""
    import collections

    with cf.ThreadPoolExecutor(_READ_THREADS) as pool:
        queue: collections.deque = collections.deque()
        pos = 0
        try:
            while pos < len(seq) or queue:
                while pos < len(seq) and len(queue) < ahead:
                    queue.append((seq[pos], pool.submit(read_image, plan[seq[pos]].light.path)))
                    pos += 1
                i, fut = queue.popleft()
                yield i, fut.result()
        finally:
            for _, fut in queue:
                fut.cancel()


def _vote(task: tuple) -> BadPixelAccumulator:
    """One worker's share of the lights' bad-pixel vote (counts add up across workers)."""
    (shape, pattern, hot, cold, frac), paths = task
    acc = BadPixelAccumulator(shape, pattern, hot_sigma=hot, cold_sigma=cold,
                              min_fraction=frac)
    for p in paths:
        acc.add(read_image(p).data)
    return acc


def _write(img: AstroImage, path: Path, overwrite: bool, written: list,
           dtype: str = "float32", after=None) -> Path:
    if after is not None:
        # astropy byteswaps a little-endian array in place while writing it: the
        # measurement must be done with the pixels first
        after.result()
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
    for line in reversed(img.history):
        if line.startswith(APPLIED + " "):
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
