"""One pass per light when the reference frame is known up front (issue 13).

The two-pass stack run writes every light calibrated, then reads it back to resample
it. When the user names the reference (``--reference``) and the session has no
calibration frames (so a calibrated intermediate would save nothing on a re-run: the
lights only get their bad pixels voted and corrected), :func:`run_one_pass` instead
takes each light through read, calibrate, cosmetic-correct, measure stars, match,
debayer, resample and write in one go: the reference first, then the others, and only
the registered frame is written (once).

Rejection relative to the session median (FWHM, star count) needs every frame's
measurement, so it comes at the end: :func:`.register.register_frames` (``resume``)
then finds every measurement and registered frame on disk, rejects, writes
``transforms.json`` and its rows, and the registered files of rejected frames are
deleted. The result equals the two-pass run's (``tests/test_onepass.py``).

Resume: measurements (``registered_<tag>/.measure``) and registered frames carry the
same stage fingerprints as in the two-pass run (the register stage's says "one
pass"), so a re-run redoes nothing, a new interpolation re-registers (calibrating
again, the stars kept), and a calibration change redoes everything.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

from ..core.errors import BadInputError
from ..core.image import AstroImage
from ..core.registration import RegistrationError, find_transform
from ..core.stars import Stars
from .register import (load_measurement, measure_frame, resample_frame, save_measurement,
                       _stem)
from .steps import RegisterParams

__all__ = ["OnePassSink", "run_one_pass", "use_one_pass", "stage_one_pass"]


class OnePassSink:
    """``sink(i, calibrated_light)`` for :func:`.calibrate.calibrate_lights`: measure
    (or reuse the saved measurement), match onto the reference, resample and write
    ``out_dir/r_<stem>.fits``. The reference must be handed over first; the other
    frames' threads wait for its stars.

    Returns the written path (or the Future of it, see :attr:`resampler`), or None for
    a frame that cannot be registered (too few stars, no match, poor match: the final
    :func:`register_frames` gives the reason).
    """

    def __init__(self, names: list[str], out_dir: Path, mdir: Path, ref_index: int,
                 params: RegisterParams, record: Optional[RegisterParams],
                 debayer_method: str, equalize_cfa: bool) -> None:
        self.names, self.out_dir, self.mdir = names, Path(out_dir), Path(mdir)
        self.ref_index, self.params, self.record = ref_index, params, record
        self.debayer_method, self.equalize_cfa = debayer_method, equalize_cfa
        self._ref_ready = threading.Event()
        # Debayer, resample and write on their own frame thread (``resampler``, set by
        # run_one_pass), so measuring the next light overlaps them: then a call
        # returns that job's Future.
        self.resampler = None
        self._slots = threading.BoundedSemaphore(1)
        self.ref_stars: Optional[Stars] = None
        # index -> MatchResult of the frames matched here, which the final
        # register_frames takes instead of matching them again (the same stars)
        self.matched: dict = {}
        self.ref_shape: Optional[tuple] = None
        saved = load_measurement(self.mdir, names[ref_index])
        if saved is not None:  # resumed: the reference's stars are known already
            self._set_reference(saved[0], saved[2])

    def target(self, i: int) -> Path:
        return self.out_dir / f"r_{_stem(self.names[i])}.fits"

    def _set_reference(self, stars: Stars, shape) -> None:
        self.ref_stars, self.ref_shape = stars, tuple(shape)
        self._ref_ready.set()

    def _stars(self, i: int, img: AstroImage) -> Stars:
        saved = load_measurement(self.mdir, self.names[i])
        if saved is not None:
            return saved[0]
        stars, quality = measure_frame(img, sigma=self.params.detection_sigma,
                                       max_stars=self.params.max_stars)
        save_measurement(self.mdir, self.names[i], img, stars, quality)
        # what register_frames reads back (float64 from JSON): the same transforms
        return Stars.from_dict(stars.to_dict())

    def __call__(self, i: int, img: AstroImage):
        if i == self.ref_index:
            try:
                stars = self._stars(i, img)
            except BaseException:
                self._ref_ready.set()  # the others stop waiting (and skip)
                raise
            self._set_reference(stars, img.shape2d)
            match, transform = (len(stars), 0.0), None
        else:
            stars = self._stars(i, img)
            self._ref_ready.wait()
            if self.ref_stars is None or len(stars) < 3 or len(self.ref_stars) < 3:
                return None
            try:
                m = find_transform(stars, self.ref_stars, model=self.params.model)
            except RegistrationError:
                return None
            self.matched[i] = m
            if m.rms > 2.0:
                return None
            match, transform = (m.n_matches, m.rms), m.transform
        # The frame goes on in a box that the resampler empties: the mosaic is then
        # referenced by resample_frame alone, which drops it once debayered (8 MB of a
        # Seestar frame less during the resampling).
        box = [img]
        del img
        if self.resampler is None:
            return self._resample(i, box, transform, match)
        self._slots.acquire()  # one frame at a time in the resampler (bounded memory)
        try:
            return self.resampler.submit(self._resample, i, box, transform, match)
        except BaseException:
            self._slots.release()
            raise

    def _resample(self, i: int, box: list, transform, match) -> Path:
        from ..core.io import write_image

        try:
            reg = resample_frame(box.pop(), transform, self.ref_shape, self.params,
                                 record=self.record, reference=self.names[self.ref_index],
                                 match=match, is_reference=i == self.ref_index,
                                 debayer_method=self.debayer_method,
                                 equalize_cfa=self.equalize_cfa)
            target = self.target(i)
            write_image(reg, target, overwrite=True, inplace=True)
            return target
        finally:
            if self.resampler is not None:
                self._slots.release()


def run_one_pass(items: list, names: list[Path], rdir: Path, mdir: Path, master_set,
                 cal_params, calibrate, reg_params: RegisterParams, register: RegisterParams,
                 debayer_method: str, equalize: bool, *, progress, cancel, logger,
                 no_output: "set[str]" = frozenset()):
    """Calibrate and register the lights of ``items`` (PlanItems) in one pass each into
    ``rdir``; ``names`` are the calibrated paths the two-pass run would write (the
    registration rows and HISTORY name them). ``no_output``: names of the frames a
    finished run rejected (no registered file by design, not to be redone). Returns
    the :class:`.register.RegistrationResult`."""
    from .calibrate import calibrate_lights
    from .register import _pool, register_frames

    want = os.path.realpath(reg_params.reference)
    ref = next((k for k, p in enumerate(names) if os.path.realpath(p) == want), None)
    if ref is None:
        raise BadInputError(register.reference, "the reference is not one of the lights")
    base = [p.name for p in names]
    sink = OnePassSink(base, rdir, mdir, ref, reg_params, register, debayer_method, equalize)
    done = [k for k in range(len(names))
            if (sink.target(k).exists() or base[k] in no_output)
            and load_measurement(mdir, base[k]) is not None]
    if len(done) < len(names):
        logger(f"calibrating and registering {len(names) - len(done)} lights in one pass "
               f"({len(done)} reused)")
        with _pool(1) as sink.resampler:
            calibrate_lights([it.light for it in items], master_set, cal_params, None,
                             plan=items, keep_images=False, record=calibrate, skip=done,
                             first=ref, sink=sink, progress=progress, cancel=cancel,
                             log=logger)
    reg = register_frames(names, rdir, reg_params, resume=True, overwrite=True,
                          debayer_method=debayer_method, equalize_cfa=equalize,
                          record=register, cancel=cancel, matched=sink.matched)
    for k, row in enumerate(reg.rows):
        if not row["accepted"] and sink.target(k).exists():
            sink.target(k).unlink()  # rejected relative to the session: not integrated
    return reg


def use_one_pass(plan, lights: list, register: RegisterParams, client, choice) -> bool:
    """One pass per light (this module): when the reference is one of these lights
    and the session has no calibration frames (``choice`` None = that rule; True/False:
    always/never, where possible). Not on a Dask cluster."""
    if not register.reference or client is not None or choice is False:
        return False
    want = os.path.realpath(register.reference)
    if not any(os.path.realpath(f.path) == want for f in lights):
        return False  # an external reference (or another filter's light): two passes
    return True if choice else not plan.calibration_frames


def stage_one_pass(tag: str, lights: list, items: list, master_set, masters_key: str,
                   work: Path, stack, calibrate, register: RegisterParams,
                   late_debayer: bool, progress, cancel, logger):
    """The stack run's calibrate and register stages in one (:func:`run_one_pass`):
    the same measurement stage and products as the two-pass run, no calibrated
    frames. Returns ``(RegistrationResult, register stage fingerprint)``."""
    from .calibrate import output_name
    from .fingerprint import Stage, fingerprint
    from .stack import _cal_key, _cal_params, _calibrated_reference, _log_rows, _measure_stage

    cal_key = _cal_key(masters_key, lights, calibrate, stack)
    taken: set = set()
    names = [work / f"calibrated_{tag}" / output_name(it.light, taken) for it in items]
    reg_params = _calibrated_reference(register, items, names)
    measure = _measure_stage(work, tag, cal_key, register)
    measure.open()
    debayer_method = calibrate.debayer_method if late_debayer else "rcd"
    equalize = calibrate.equalize_cfa and late_debayer
    stage = Stage(work / f"registered_{tag}", f"[{tag}] register", fingerprint(
        "register", measure.key, register.to_dict(), reg_params.reference, debayer_method,
        equalize, "one pass"), products="*")
    stage.open()
    rejected = set(stage.info().get("no_output", [])) if stage.reused else set()
    reg = run_one_pass(items, names, stage.folder, measure.folder, master_set,
                       _cal_params(calibrate, late_debayer), calibrate, reg_params, register,
                       debayer_method, equalize, progress=progress, cancel=cancel,
                       logger=logger, no_output=rejected)
    measure.finish()
    stage.finish(accepted=reg.n_accepted,
                 no_output=[row["name"] for row in reg.rows if not row["accepted"]])
    logger(measure.describe())
    logger(stage.describe())
    _log_rows(tag, reg, logger)
    return reg, stage.key
