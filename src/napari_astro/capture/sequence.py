"""Capture sequences: parameters, the TOML file, and the runner.

A sequence is one target and an ordered list of lines (frame type, filter, exposure,
count, binning, gain, offset). Lights are dithered every N frames by random guide
pulses; flats are exposed automatically to a target median (a few trial exposures,
the light panel on while they run); darks/flat-darks/bias are plain exposures.

Restart and faults: before each exposure the planned file name is recorded in
``DIR/capture-progress.json`` (written atomically next to the frames); a frame counts
as done when that file exists. A run that stops (Ctrl-C, crash, a killed server)
restarts where it stopped: frames on disk are never re-shot or touched, a frame that
was being exposed is taken again under the same name. A dropped connection is
reconnected and the mount sent back to the target before the sequence goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from ..core.errors import BadInputError
from ..core.io._atomic import atomic_output
from ..core.progress import CancelToken, Progress, report
from ..pipeline.params import StepParams, param
from .client import ConnectionLost, IndiClient, IndiError
from .devices import Equipment, Frame
from .night import Night
from .output import DEFAULT_PATTERN, check_pattern, frame_header, frame_name, write_frame

__all__ = ["SequenceParams", "LineParams", "Sequence", "load_sequence", "save_sequence",
           "SequenceRunner", "PROGRESS_FILE"]

PROGRESS_FILE = "capture-progress.json"


@dataclasses.dataclass(frozen=True)
class SequenceParams(StepParams):
    """A capture sequence's settings (the ``[sequence]`` table)."""

    STEP_ID = "sequence"
    TITLE = "Sequence"
    object: str = param("target", help="target name (written as OBJECT; looked up in the "
                        "offline catalogue when ra/dec are not given)")
    ra: Optional[float] = param(None, min=0, max=360, unit="deg", help="target RA, J2000")
    dec: Optional[float] = param(None, min=-90, max=90, unit="deg", help="target Dec, J2000")
    slew: bool = param(True, help="slew to the target before the lights")
    centre: bool = param(False, help="plate-solve and centre after each slew (also after a fault)")
    centre_tolerance: float = param(1.0, min=0.05, max=600, unit="arcmin",
                                    help="centring ends when the field centre is this close")
    centre_exposure: float = param(2.0, min=0.001, max=600, unit="s", help="centring exposure")
    pattern: str = param(DEFAULT_PATTERN, help="file-name pattern for the frames")
    camera: str = param("CCD Simulator", help="INDI camera device")
    mount: Optional[str] = param("Telescope Simulator", help="INDI mount device (none: no mount)")
    focuser: Optional[str] = param(None, help="INDI focuser device")
    wheel: Optional[str] = param(None, help="INDI filter wheel device")
    panel: Optional[str] = param(None, help="INDI flat panel device")
    guider: Optional[str] = param(None, help="INDI guide camera device")
    drivers: tuple = param((), help="drivers a local server starts (checked before anything moves)")
    temperature: Optional[float] = param(None, min=-60, max=40, unit="C",
                                         help="cool the camera to this before the first frame")
    dither_every: int = param(0, min=0, max=1000, unit="lights", help="dither every N lights (0: never)")
    dither_pixels: float = param(5.0, min=0, max=200, unit="px",
                                 help="dither amplitude (guiding on: guide-camera px)")
    dither_rate: float = param(6.0, min=0.01, max=1000, unit="px/s",
                               help="image motion per second of guide pulse (the simulator: ~6)")
    settle: float = param(1.0, min=0, max=600, unit="s", help="wait after a dither or a slew")
    guide_port: Literal["mount", "camera"] = param("mount", help="where dither pulses go")
    park_at_end: bool = param(False, help="park the mount after the last frame")
    warm_at_end: bool = param(False, help="switch the cooler off after the last frame")
    exposure_timeout: float = param(60.0, min=1, max=3600, unit="s",
                                    help="extra time for a frame to arrive after its exposure")
    reconnect_timeout: float = param(60.0, min=1, max=3600, unit="s",
                                     help="how long to wait for a lost server to come back")
    # -- the night (capture/night.py) --
    min_altitude: Optional[float] = param(None, min=-10, max=89, unit="deg",
                                          help="lights only above this altitude: wait for it to "
                                          "rise, stop the lights when it sinks (none: no limit)")
    wait_timeout: float = param(4.0, min=0, max=24, unit="h",
                                help="longest wait for the target to rise above min_altitude")
    meridian_flip: bool = param(False, help="flip the mount when the target passes the meridian")
    flip_after: float = param(5.0, min=-60, max=120, unit="min",
                              help="flip this long after the meridian (hour angle)")
    flip_pause: bool = param(True, help="a light that would end past the flip point waits "
                             "for the flip (false: expose it, flip after it)")
    recentre_every: int = param(0, min=0, max=10000, unit="lights",
                                help="plate-solve every N-th light, re-centre when off by more "
                                "than centre_tolerance (0: never)")
    recentre_drift: float = param(0.0, min=0, max=600, unit="arcmin",
                                  help="plate-solve every light, re-centre when it drifted more "
                                  "than this (0: off)")
    autofocus_start: bool = param(False, help="autofocus before the first light")
    refocus_temperature: float = param(0.0, min=0, max=50, unit="C",
                                       help="autofocus again after this temperature change "
                                       "(focuser's, else camera's; 0: off)")
    refocus_hfr: float = param(0.0, min=0, max=10, unit="of the HFR",
                               help="autofocus again when a light's HFR grew by this fraction "
                               "over the first light after the last autofocus (0: off)")
    focus_step: int = param(2000, min=1, max=1000000, unit="steps",
                            help="autofocus: focuser steps between positions")
    focus_points: int = param(7, min=3, max=31, help="autofocus: positions per run")
    focus_exposure: float = param(1.0, min=0.001, max=600, unit="s", help="autofocus exposure")
    guiding: Literal["off", "builtin", "phd2"] = param("off", help="guide during the lights "
                                                       "(dithers then go through the guider)")
    guide_exposure: float = param(1.0, min=0.01, max=60, unit="s", help="built-in guider exposure")
    phd2_host: str = param("localhost", help="PHD2 server host (guiding = phd2)")
    phd2_port: int = param(4400, min=1, max=65535, help="PHD2 server port")
    settle_px: float = param(1.0, min=0.05, max=50, unit="px",
                             help="guided dither: settled when the guide error stays below this")
    settle_time: float = param(2.0, min=0, max=600, unit="s",
                               help="guided dither: the error must stay below settle_px this long")
    settle_timeout: float = param(60.0, min=1, max=3600, unit="s",
                                  help="guided dither: give up settling after this")

    def validate(self) -> None:
        try:
            check_pattern(self.pattern)
        except ValueError as exc:
            raise BadInputError("sequence.pattern", str(exc)) from None
        if (self.ra is None) != (self.dec is None):
            raise BadInputError("sequence.ra", "give both ra and dec, or neither")
        needs = [("min_altitude", self.min_altitude is not None, "mount"),
                 ("meridian_flip", self.meridian_flip, "mount"),
                 ("recentre_every", self.recentre_every, "mount"),
                 ("recentre_drift", self.recentre_drift, "mount"),
                 ("autofocus_start", self.autofocus_start, "focuser"),
                 ("refocus_temperature", self.refocus_temperature, "focuser"),
                 ("refocus_hfr", self.refocus_hfr, "focuser"),
                 ("guiding", self.guiding == "builtin", "guider")]
        for name, on, device in needs:
            if on and not getattr(self, device):
                raise BadInputError(f"sequence.{name}", f"needs a {device} (sequence.{device})")
        if (self.min_altitude is not None or self.meridian_flip) and not self.slew \
                and self.ra is None:
            raise BadInputError("sequence.ra", "min_altitude and meridian_flip need the target's "
                                "ra and dec when slew = false")


@dataclasses.dataclass(frozen=True)
class LineParams(StepParams):
    """One line of a sequence (a ``[[line]]`` table)."""

    STEP_ID = "line"
    TITLE = "Line"
    type: Literal["light", "dark", "bias", "flat", "darkflat"] = param("light", help="frame type")
    count: int = param(1, min=1, max=100000, help="frames to take")
    exposure: Optional[float] = param(None, min=0, max=36000, unit="s",
                                      help="exposure (bias: the camera's minimum; flat: first "
                                      "trial, auto-adjusted; dark: required)")
    filter: Optional[str] = param(None, help="filter name or slot (needs a wheel)")
    binning: int = param(1, min=1, max=16, help="binning")
    gain: Optional[float] = param(None, min=0, max=100000, help="sensor gain (none: leave)")
    offset: Optional[float] = param(None, min=0, max=100000, help="sensor offset (none: leave)")
    flat_median: float = param(0.5, min=0.05, max=0.95, unit="of full scale",
                               help="flats: target median")
    flat_tolerance: float = param(0.1, min=0.01, max=0.5, unit="of full scale",
                                  help="flats: accepted distance from the target median")
    flat_max_exposure: float = param(60.0, min=0.001, max=3600, unit="s", help="flats: longest exposure")
    panel_intensity: Optional[float] = param(None, min=0, max=100000, help="flats: panel brightness")

    def validate(self) -> None:
        if self.type in ("light", "dark", "darkflat") and self.exposure is None:
            raise BadInputError("line.exposure", f"a {self.type} line needs an exposure")


@dataclasses.dataclass(frozen=True)
class Sequence:
    """A sequence: its settings and its lines."""

    settings: SequenceParams
    lines: tuple[LineParams, ...]

    def fingerprint(self) -> str:
        text = json.dumps({"s": self.settings.to_dict(), "l": [ln.to_dict() for ln in self.lines]},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def planned(self) -> int:
        return sum(ln.count for ln in self.lines)

    def to_toml(self) -> str:
        def val(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return repr(v)
            if isinstance(v, (tuple, list)):
                return "[" + ", ".join(val(x) for x in v) + "]"
            return json.dumps(str(v))

        out = ["[sequence]"]
        out += [f"{k} = {val(v)}" for k, v in self.settings.changed().items() if v is not None]
        for ln in self.lines:
            out += ["", "[[line]]", f"type = {val(ln.type)}"]
            out += [f"{k} = {val(v)}" for k, v in ln.to_dict().items()
                    if v is not None and k != "type"
                    and (k in ("count", "exposure") or v != getattr(LineParams(type=ln.type, exposure=1.0), k))]
        return "\n".join(out) + "\n"


def _named(path: Path, where: str, exc: BadInputError) -> BadInputError:
    field = (exc.path or "").split(".", 1)[-1]
    return BadInputError(path, f"{where}{'.' + field if field else ''}: {exc.problem}")


def load_sequence(path: "str | os.PathLike[str]") -> Sequence:
    """Read and check a sequence TOML file (BadInputError naming the file and the key)."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "sequence file not found")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(path, f"not valid TOML ({exc})") from None
    unknown = set(doc) - {"sequence", "line"}
    if unknown:
        raise BadInputError(path, f"unknown table {sorted(unknown)[0]!r} (known: sequence, line)")
    try:
        settings = SequenceParams.from_dict(doc.get("sequence", {}))
    except BadInputError as exc:
        raise _named(path, "[sequence]", exc) from None
    lines = []
    raw_lines = doc.get("line", [])
    if not isinstance(raw_lines, list) or not raw_lines:
        raise BadInputError(path, "no [[line]] tables: nothing to capture")
    for i, raw in enumerate(raw_lines, 1):
        try:
            lines.append(LineParams.from_dict(raw))
        except BadInputError as exc:
            raise _named(path, f"[[line]] {i}", exc) from None
        if lines[-1].filter is not None and not settings.wheel:
            raise BadInputError(path, f"[[line]] {i}.filter: needs a filter wheel "
                                "(sequence.wheel)")
    return Sequence(settings, tuple(lines))


def save_sequence(seq: Sequence, path: "str | os.PathLike[str]", *, overwrite: bool = True) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(seq.to_toml())


# -- the runner ----------------------------------------------------------------------------
class SequenceRunner:
    """Runs a :class:`Sequence` on connected equipment, writing frames under ``out_dir``.

    Parameters
    ----------
    sequence : Sequence
    client : IndiClient
        Connected client (reconnected by the runner after a fault).
    out_dir : path
    progress : callable, optional
        ``progress(done, total, message)`` after each frame.
    on_frame : callable, optional
        ``on_frame(path, frame, header)`` after each frame is written (the widget shows it).
    cancel : CancelToken, optional
    seed : int, optional
        Seed of the dither offsets (tests).
    clock : callable, optional
        Unix time now (the target's altitude and hour angle; default ``time.time``).
    """

    def __init__(self, sequence: Sequence, client: IndiClient, out_dir: "str | os.PathLike[str]", *,
                 progress: Progress | None = None, on_frame: Callable | None = None,
                 cancel: CancelToken | None = None, seed: int | None = None,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.seq, self.client, self.out = sequence, client, Path(out_dir)
        self.progress, self.on_frame, self.cancel = progress, on_frame, cancel
        self.rng = random.Random(seed)
        self.log = log or (lambda msg: None)
        s = sequence.settings
        self.eq = Equipment.from_names(client, camera=s.camera, mount=s.mount, focuser=s.focuser,
                                       wheel=s.wheel, panel=s.panel, guider=s.guider)
        self.state: dict[str, Any] = {}
        self.lights_since_dither = 0
        self.dithers: list[tuple[int, float, float]] = []   # (frame number, dx, dy) [px]
        self.reconnects = 0
        self.target: tuple[float, float] | None = None      # J2000 degrees
        self.night = Night(self, clock)

    @property
    def stopped(self) -> str | None:
        """Why the lights stopped before the end (altitude, wait timeout), else None."""
        return self.night.stopped

    # -- progress file -----------------------------------------------------------------
    @property
    def progress_path(self) -> Path:
        return self.out / PROGRESS_FILE

    def _load_state(self) -> None:
        fp = self.seq.fingerprint()
        self.state = {"fingerprint": fp, "frames": {}, "flat_exposure": {}}
        if self.progress_path.is_file():
            try:
                old = json.loads(self.progress_path.read_text())
            except (OSError, json.JSONDecodeError):
                raise BadInputError(self.progress_path, "progress file is damaged") from None
            if old.get("fingerprint") != fp:
                raise BadInputError(self.progress_path, "belongs to another sequence (a different "
                                    "file or changed lines): use a new output folder")
            self.state.update(old)

    def _save_state(self) -> None:
        with atomic_output(self.progress_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.state, indent=1))

    def done_frames(self) -> list[Path]:
        """Files of frames already on disk (in sequence order)."""
        out = []
        for key in sorted(self.state.get("frames", {}), key=lambda k: tuple(map(int, k.split(":")))):
            p = self.out / self.state["frames"][key]
            if p.is_file():
                out.append(p)
        return out

    # -- setup and faults ------------------------------------------------------------------
    def resolve_target(self) -> tuple[float, float] | None:
        s = self.seq.settings
        if s.ra is not None:
            return float(s.ra), float(s.dec)
        if not s.mount or not s.slew:
            return None
        try:
            from .objects import lookup
        except ImportError:  # pragma: no cover - catalogue not shipped
            raise BadInputError("sequence.object", "no ra/dec given and no object catalogue") from None
        found = lookup(s.object)
        if found is None:
            raise BadInputError("sequence.object", f"{s.object!r} is not in the offline catalogue: "
                                "give ra and dec")
        return found

    def _connect(self) -> None:
        self.eq.connect()
        self.night.attach_site()     # a read: the target's altitude at this site is checked

    def setup(self, *, connect: bool = True) -> None:
        """Connect the devices, unpark, cool (also after a fault). The slew to the
        target comes before the first light (after waiting for it to rise)."""
        if connect:
            self._connect()
        s = self.seq.settings
        self.night.on_target = False
        lights = any(ln.type == "light" for ln in self.seq.lines)
        if self.eq.mount is not None and self.target is not None and s.slew and lights:
            self.eq.mount.unpark()
        if s.temperature is not None and self.eq.camera.has("CCD_TEMPERATURE"):
            self.eq.camera.cool(s.temperature, wait=True)

    def slew_to_target(self, *, centre: bool | None = None) -> None:
        from .coords import j2000_to_jnow

        ra_h, dec = j2000_to_jnow(*self.target)
        m = self.eq.mount
        m.unpark()
        m.goto(ra_h, dec)
        m.track(True)
        time.sleep(self.seq.settings.settle)
        self.log(f"slewed to {self.seq.settings.object} (RA {ra_h:.4f} h, Dec {dec:+.3f})")
        if self.seq.settings.centre if centre is None else centre:
            from .centre import centre_on

            res = centre_on(self.eq, *self.target, exposure=self.seq.settings.centre_exposure,
                            tolerance_arcmin=self.seq.settings.centre_tolerance, log=self.log)
            self.log(f"centred within {res.error_arcmin:.2f}'")

    def _recover(self, exc: Exception) -> None:
        self.reconnects += 1
        self.log(f"connection lost ({exc}); reconnecting")
        self.client.reconnect(timeout=self.seq.settings.reconnect_timeout)
        self.setup()            # the next light slews back, re-centres, restarts guiding
        self.lights_since_dither = 0

    # -- frames ---------------------------------------------------------------------------
    def _apply_line(self, ln: LineParams) -> None:
        cam = self.eq.camera
        cam.set_binning(ln.binning)
        if ln.gain is not None:
            cam.set_gain(ln.gain)
        if ln.offset is not None:
            cam.set_offset(ln.offset)
        if ln.filter is not None and self.eq.wheel is not None:
            self.eq.wheel.select(ln.filter)

    def _expose(self, ln: LineParams, seconds: float, kind: str) -> Frame:
        return self.eq.camera.expose(seconds, kind, timeout=seconds + self.seq.settings.exposure_timeout,
                                     retries=1)

    def _header(self, ln: LineParams, frame: Frame, seconds: float):
        cam = self.eq.camera
        filt = None
        if self.eq.wheel is not None:
            filt = self.eq.wheel.current()
        ra = dec = None
        if self.target is not None and ln.type == "light":
            ra, dec = self.target
        focus = self.eq.focuser.position() if self.eq.focuser is not None else None
        extra = {}
        rms = self.night.guide_rms(seconds) if ln.type == "light" else None
        if rms is not None:
            extra["GUIDERMS"] = (round(rms, 3), "[guide camera px] RMS guide error, exposure")
        return frame_header(frame, kind=ln.type, exposure=seconds, object=self.seq.settings.object,
                            filter=filt, gain=cam.gain(), offset=cam.offset(),
                            temperature=cam.temperature(), binning=ln.binning, ra_deg=ra,
                            dec_deg=dec, focus=focus,
                            telescope=self.eq.mount.name if self.eq.mount else None,
                            camera=cam.name, extra=extra)

    def dither(self) -> tuple[float, float]:
        """Random offset of ``dither_pixels`` through the guider when guiding (settled),
        else through plain guide pulses; returns (dx, dy) asked [px]."""
        s = self.seq.settings
        if self.night.guide is not None and self.night.guide.running:
            return self.night.dither()
        angle = self.rng.uniform(0, 2 * math.pi)
        amp = s.dither_pixels * self.rng.uniform(0.7, 1.0)
        dx, dy = amp * math.cos(angle), amp * math.sin(angle)
        port = self.eq.mount if (s.guide_port == "mount" and self.eq.mount) else self.eq.camera
        ew = "E" if dx > 0 else "W"
        ns = "N" if dy > 0 else "S"
        port.guide_pulse(ew, abs(dx) / s.dither_rate * 1000.0)
        port.guide_pulse(ns, abs(dy) / s.dither_rate * 1000.0)
        time.sleep(s.settle)
        return dx, dy

    def _flat_exposure(self, ln: LineParams, index: int) -> float:
        """Find the flat exposure giving ``flat_median`` (trial frames, not saved)."""
        key = str(index)
        if key in self.state["flat_exposure"]:
            return float(self.state["flat_exposure"][key])
        t = ln.exposure or 1.0
        tmin = max(self.eq.camera.min_exposure(), 1e-4)
        for _ in range(8):
            frame = self._expose(ln, t, "flat")
            m = frame.median_fraction()
            self.log(f"flat trial {t:.4g} s: median {m:.3f} of full scale")
            if abs(m - ln.flat_median) <= ln.flat_tolerance / 2:
                break
            # the flat's signal grows linearly with exposure: scale it, limited to 10x a
            # step because a saturated trial says only "too long"
            factor = ln.flat_median / max(m, 1e-4)
            t = min(max(t * min(max(factor, 0.1), 10.0), tmin), ln.flat_max_exposure)
            t = float(f"{t:.3g}")   # a readable exposure in file names and headers
        self.state["flat_exposure"][key] = t
        self._save_state()
        return t

    def _line_exposure(self, ln: LineParams, index: int) -> float:
        if ln.type == "bias":
            return self.eq.camera.min_exposure() if ln.exposure is None else float(ln.exposure)
        if ln.type == "flat":
            return self._flat_exposure(ln, index)
        return float(ln.exposure)

    # -- the run ----------------------------------------------------------------------------
    def check(self) -> None:
        """Checks that need no device: the target resolves, the output is usable."""
        self.target = self.resolve_target()
        if self.out.exists() and not self.out.is_dir():
            raise BadInputError(self.out, "is not a folder")

    def run(self) -> list[Path]:
        """Take every planned frame not on disk yet; returns all frames of the sequence."""
        self.check()
        self._with_recovery(self._connect)     # bad input found here: nothing written yet
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_state()
        total = self.seq.planned()
        self._with_recovery(lambda: self.setup(connect=False))
        done = len(self.done_frames())
        report(self.progress, done, total, f"{done} of {total} frames on disk", self.cancel)
        try:
            for li, ln in enumerate(self.seq.lines):
                self._with_recovery(lambda: self._run_line(li, ln, total))
        finally:
            self.night.stop_guiding()      # also on Ctrl-C or an error: no guiding left on
        self._with_recovery(self._finish)
        return self.done_frames()

    def _with_recovery(self, fn: Callable[[], Any]) -> Any:
        tries = 0
        while True:
            try:
                return fn()
            except ConnectionLost as exc:
                tries += 1
                if tries > 5:
                    raise
                self._recover(exc)

    def _run_line(self, li: int, ln: LineParams, total: int) -> None:
        frames = self.state["frames"]
        todo = [i for i in range(ln.count) if not self._is_done(f"{li}:{i}")]
        if not todo:
            return
        self._apply_line(ln)
        panel = self.eq.panel if ln.type == "flat" else None
        if panel is not None:
            panel.on(ln.panel_intensity)
        try:
            seconds = self._line_exposure(ln, li)
            for i in todo:
                if self.cancel is not None:
                    self.cancel.check()
                key = f"{li}:{i}"
                if self._is_done(key):
                    continue
                if ln.type == "light" and not self.night.before_light(seconds):
                    return         # state saved: the rest of the line waits for a later run
                if (ln.type == "light" and self.seq.settings.dither_every
                        and self.lights_since_dither >= self.seq.settings.dither_every):
                    dx, dy = self.dither()
                    self.dithers.append((len(self.done_frames()), dx, dy))
                    self.lights_since_dither = 0
                    self.night.meridian(seconds)   # a long settle may have reached it
                name = frames.get(key)
                if name is None:   # decided once: a re-shot frame keeps its name
                    name = frame_name(self.seq.settings.pattern, object=self.seq.settings.object,
                                      kind=ln.type, filter=ln.filter, exposure=seconds,
                                      binning=ln.binning, gain=ln.gain, index=i + 1, line=li + 1)
                    if name in frames.values() or (self.out / name).exists():
                        stem, dot, ext = name.partition(".")
                        name = f"{stem}_L{li + 1}{dot}{ext}"
                    frames[key] = name
                    self._save_state()
                frame = self._expose(ln, seconds, ln.type)
                header = self._header(ln, frame, seconds)
                path = write_frame(frame, header, self.out / name, overwrite=True)
                if ln.type == "light":
                    self.lights_since_dither += 1
                    self.night.after_light(name, frame)
                done = len(self.done_frames())
                self.log(f"{name} ({ln.type} {seconds:g} s)")
                report(self.progress, done, total, f"{done}/{total} {name}", self.cancel)
                if self.on_frame is not None:
                    self.on_frame(path, frame, header)
        finally:
            if panel is not None:
                try:
                    panel.off()
                except IndiError:
                    pass

    def _is_done(self, key: str) -> bool:
        name = self.state["frames"].get(key)
        return name is not None and (self.out / name).is_file()

    def _finish(self) -> None:
        s = self.seq.settings
        self.night.stop_guiding()
        if s.warm_at_end and self.eq.camera is not None:
            self.eq.camera.warm()
        if s.park_at_end and self.eq.mount is not None:
            self.eq.mount.park()
