"""Guiding through PHD2's event server (JSON-RPC on TCP port 4400).

:class:`PHD2Guider` has the methods of :class:`~.guide.GuideLoop` (start, stop, pause,
resume, dither, flip, running, stats, rms), so the sequence runner and the guide dock
use either. PHD2 does the work (its own camera and mount connections, star selection,
calibration, guide algorithms); this class sends its documented methods and follows
its events (https://github.com/OpenPHDGuiding/phd2/wiki/EventMonitoring):

- the protocol: one JSON object per line (CR LF) each way; PHD2 sends events
  (``{"Event": "GuideStep", ...}``) to every client, and answers requests
  (``{"method": "dither", "params": {...}, "id": 3}``) with
  ``{"jsonrpc": "2.0", "result": ..., "id": 3}`` or ``{"error": {"code", "message"}}``;
- ``start`` -> ``guide`` with a settle object, then waits for ``SettleDone``;
  ``dither`` -> ``dither`` + ``SettleDone`` (``Status`` 0: settled, else its ``Error``
  raised as GuideError); ``pause``/``resume`` -> ``set_paused``; ``stop`` ->
  ``stop_capture``; ``flip`` -> ``flip_calibration``;
- statistics: ``RADistanceRaw`` / ``DECDistanceRaw`` [px] of each ``GuideStep`` event.
"""

from __future__ import annotations

import itertools
import json
import math
import socket
import threading
import time
from typing import Any, Callable

from .guide import GuideError, GuideRecord, GuideStats

__all__ = ["PHD2Guider"]


class PHD2Guider(GuideRecord):
    """A client of PHD2's event server at ``host:port``.

    ``on_step(ra_px, dec_px, rms_px)`` is called from the reader thread after each
    ``GuideStep`` event (``rms_px``: RMS of the last 20); ``timeout`` [s] bounds the
    connection and each request's answer.
    """

    #: settling asked for when guiding starts: within 1.5 px for 5 s (PHD2's own
    #: defaults are 1.5 px, 10 s)
    start_settle_px = 1.5
    start_settle_time = 5.0

    def __init__(self, host: str = "localhost", port: int = 4400, *,
                 log: Callable[[str], None] | None = None,
                 on_step: Callable[[float, float, float], None] | None = None,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.log = log or (lambda m: None)
        self.on_step = on_step
        self.version: str | None = None
        self.state: str | None = None          # PHD2's AppState (Guiding, Paused, ...)
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self._answers: dict[int, dict] = {}
        self._settle: dict | None = None       # the last SettleDone event
        self._settle_gen = 0                   # SettleDone events seen
        self._dithered: tuple[float, float] | None = None
        self._stats = GuideStats([], [])
        self._closed = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _fail(self, what: str) -> GuideError:
        return GuideError(f"PHD2 at {self.address}: {what}")

    # -- connection and messages -----------------------------------------------------
    def connect(self) -> None:
        """Open the connection and wait for PHD2's ``Version`` event."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self._fail(f"does not answer ({exc.strerror or exc})") from None
        sock.settimeout(None)
        self._sock, self._closed = sock, False
        self._reader = threading.Thread(target=self._read, name="napari-astro-phd2", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while self.version is None and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
        if self.version is None:
            self.close()
            raise self._fail(f"sent no Version event within {self.timeout:.0f} s (is it PHD2?)")
        self.log(f"connected to PHD2 {self.version} at {self.address}")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self.version = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        r = self._reader
        if r is not None and r is not threading.current_thread():
            r.join(timeout=5)
        self._reader = None
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _read(self) -> None:
        sock = self._sock
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.strip()
                    if line:
                        try:
                            msg = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(msg, dict):
                            self._handle(msg)
        except OSError:
            pass
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    def _handle(self, msg: dict) -> None:
        if "id" in msg and "Event" not in msg:
            with self._cv:
                self._answers[msg["id"]] = msg
                self._cv.notify_all()
            return
        ev = msg.get("Event")
        step = None
        with self._cv:
            if ev == "Version":
                self.version = str(msg.get("PHDVersion", "?"))
            elif ev == "AppState":
                self.state = msg.get("State")
            elif ev == "GuideStep":
                ra = float(msg.get("RADistanceRaw", 0.0))
                dec = float(msg.get("DECDistanceRaw", 0.0))
                self._stats.ra.append(ra)
                self._stats.dec.append(dec)
                self.state = "Guiding"
                step = (ra, dec, self._stats.last(20).rms)
            elif ev == "SettleDone":
                self._settle = msg
                self._settle_gen += 1
            elif ev == "GuidingDithered":
                self._dithered = (float(msg.get("dx", math.nan)), float(msg.get("dy", math.nan)))
            elif ev in ("Paused", "Resumed"):
                self.state = "Paused" if ev == "Paused" else "Guiding"
            elif ev in ("GuidingStopped", "LoopingExposuresStopped"):
                self.state = "Stopped"
            elif ev == "StarLost":
                self.state = "LostLock"
            self._cv.notify_all()
        if ev in ("StartCalibration", "CalibrationComplete", "CalibrationFailed", "StarLost",
                  "Alert", "GuidingDithered", "SettleDone", "Paused", "Resumed"):
            detail = msg.get("Msg") or msg.get("Reason") or msg.get("Error") or ""
            self.log(f"PHD2: {ev}{' ' + str(detail) if detail else ''}")
        if step is not None and self.on_step is not None:
            try:
                self.on_step(*step)
            except Exception:  # noqa: BLE001 - a display error must not stop the reader
                pass

    def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a JSON-RPC request; its ``result`` (GuideError on ``error`` or no answer)."""
        self.connect()
        rid = next(self._ids)
        req: dict[str, Any] = {"method": method, "id": rid}
        if params is not None:
            req["params"] = params
        try:
            self._sock.sendall((json.dumps(req) + "\r\n").encode())
        except (OSError, AttributeError) as exc:
            raise self._fail(f"{method}: connection lost ({exc})") from None
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cv:
            while rid not in self._answers:
                left = deadline - time.monotonic()
                if self._closed:
                    raise self._fail(f"{method}: connection closed")
                if left <= 0:
                    raise self._fail(f"{method}: no answer within {self.timeout:.0f} s")
                self._cv.wait(left)
            ans = self._answers.pop(rid)
        if "error" in ans:
            err = ans["error"]
            text = err.get("message", err) if isinstance(err, dict) else err
            raise self._fail(f"{method}: {text}")
        return ans.get("result")

    def _wait_settle(self, gen: int, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout + self.timeout
        with self._cv:
            while self._settle_gen <= gen:
                left = deadline - time.monotonic()
                if self._closed:
                    raise self._fail(f"{what}: connection closed while settling")
                if left <= 0:
                    raise self._fail(f"{what}: no SettleDone within {timeout + self.timeout:.0f} s")
                self._cv.wait(left)
            done = self._settle
        if int(done.get("Status", 1)) != 0:
            raise self._fail(f"{what} did not settle: {done.get('Error') or 'failed'}")
        return done

    # -- the GuideLoop interface ------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._sock is not None and not self._closed and self.state in (
            "Guiding", "Paused", "LostLock", "Calibrating")

    def start(self, *, calibrate: bool = True, timeout: float = 120.0) -> None:
        """Guide (calibrating first if ``calibrate``) and wait until settled."""
        if self.running:
            return
        self.connect()
        with self._cv:
            self._stats = GuideStats([], [])
            gen = self._settle_gen
        settle = {"pixels": self.start_settle_px, "time": self.start_settle_time,
                  "timeout": timeout}
        self.call("guide", {"settle": settle, "recalibrate": bool(calibrate)})
        self._wait_settle(gen, timeout, "guiding")
        self.log(f"PHD2 guiding (state {self.state})")

    def dither(self, pixels: float, *, settle_px: float = 1.0, settle_time: float = 2.0,
               timeout: float = 60.0, rng=None) -> tuple[float, float]:
        """PHD2 dithers by up to ``pixels`` (it picks the direction; ``rng`` unused) and
        settles; returns the offset of its ``GuidingDithered`` event (NaN if none)."""
        with self._cv:
            gen = self._settle_gen
            self._dithered = None
        settle = {"pixels": settle_px, "time": settle_time, "timeout": timeout}
        self.call("dither", {"amount": pixels, "raOnly": False, "settle": settle})
        self._wait_settle(gen, timeout, "dither")
        return self._dithered or (math.nan, math.nan)

    def pause(self) -> None:
        """No guide exposures or pulses (PHD2's full pause) until :meth:`resume`."""
        self.call("set_paused", [True, "full"])

    def resume(self) -> None:
        self.call("set_paused", [False])

    def flip(self) -> None:
        """After a meridian flip: PHD2 flips its calibration."""
        self.call("flip_calibration")

    def stop(self) -> None:
        """Stop PHD2's guiding and looping and close the connection. Safe twice."""
        if self._sock is not None and not self._closed:
            try:
                self.call("stop_capture", timeout=min(self.timeout, 5.0))
            except GuideError as exc:
                self.log(str(exc))
        self.close()
        self.state = "Stopped"
