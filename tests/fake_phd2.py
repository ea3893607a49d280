"""A small stand-in for PHD2's event server, for tests (PHD2 is not packaged here).

It follows PHD2's documented protocol (github.com/OpenPHDGuiding/phd2/wiki/
EventMonitoring): one JSON object per CR LF line; on connection the events Version and
AppState; JSON-RPC 2.0 requests ``guide``, ``dither``, ``stop_capture``, ``set_paused``,
``get_app_state``, ``flip_calibration`` answered with ``result`` or ``error``; events
StartCalibration, Calibrating, CalibrationComplete, StartGuiding, GuideStep,
GuidingDithered, SettleBegin, Settling, SettleDone, Paused, Resumed, GuidingStopped,
AppState.

Behind it a simulated guide star: every ``frame_s`` seconds while guiding, the error
(px) is corrected by ``aggressiveness`` and gets Gaussian seeing noise of ``noise_px``;
a dither adds a random offset of the asked amount. Settling follows PHD2's rule
(distance <= pixels for ``time`` s, else failure after ``timeout`` s), so a noisy
star fails to settle by itself. Everything sent is recorded in ``sent``.
"""

from __future__ import annotations

import json
import math
import socket
import socketserver
import threading
import time

import numpy as np


class FakePHD2:
    def __init__(self, *, noise_px: float = 0.15, aggressiveness: float = 0.7,
                 frame_s: float = 0.05, seed: int = 0, silent: bool = False) -> None:
        self.noise_px, self.aggressiveness, self.frame_s = noise_px, aggressiveness, frame_s
        self.silent = silent                   # accept connections, never say anything
        self.rng = np.random.default_rng(seed)
        self.state = "Stopped"
        self.calibrated = False
        self.calibrations = 0
        self.flipped = 0
        self.error = np.zeros(2)               # star - lock [px] (RA, Dec axes)
        self.frame = 0
        self.sent: list[dict] = []             # every event sent
        self.requests: list[dict] = []
        self._settle: dict | None = None       # pixels, time, timeout, t0, in_since
        self._lock = threading.RLock()
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True),
                         threading.Thread(target=self._frames, daemon=True)]

    # -- lifetime ------------------------------------------------------------------
    def __enter__(self) -> "FakePHD2":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for c in self._clients:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
        for t in self._threads:
            t.join(timeout=5)

    # -- messages ------------------------------------------------------------------
    def _send_to(self, sock: socket.socket, msg: dict) -> None:
        try:
            sock.sendall((json.dumps(msg) + "\r\n").encode())
        except OSError:
            pass

    def event(self, name: str, **fields) -> None:
        msg = {"Event": name, "Timestamp": time.time(), "Host": "fake", "Inst": 1, **fields}
        with self._lock:
            self.sent.append(msg)
            for c in list(self._clients):
                self._send_to(c, msg)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.event("AppState", State=state)

    def _serve(self, sock: socket.socket) -> None:
        if self.silent:
            self._stop.wait(30)
            return
        with self._lock:
            self._clients.append(sock)
            self._send_to(sock, {"Event": "Version", "Timestamp": time.time(), "Host": "fake",
                                 "Inst": 1, "PHDVersion": "2.6.13", "PHDSubver": "fake",
                                 "MsgVersion": 1, "OverlapSupport": True})
            self._send_to(sock, {"Event": "AppState", "Timestamp": time.time(), "Host": "fake",
                                 "Inst": 1, "State": self.state})
        buf = b""
        try:
            while not self._stop.is_set():
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        req = json.loads(line)
                        answer = self._request(req)
                        with self._lock:
                            self._send_to(sock, answer)
        except OSError:
            pass
        finally:
            with self._lock:
                if sock in self._clients:
                    self._clients.remove(sock)

    def _request(self, req: dict) -> dict:
        self.requests.append(req)
        method, params, rid = req.get("method"), req.get("params"), req.get("id")
        try:
            with self._lock:
                result = getattr(self, "_m_" + str(method))(params)
            return {"jsonrpc": "2.0", "result": result, "id": rid}
        except AttributeError:
            return {"jsonrpc": "2.0", "error": {"code": -32601, "message": "method not found"},
                    "id": rid}
        except RuntimeError as exc:
            return {"jsonrpc": "2.0", "error": {"code": 1, "message": str(exc)}, "id": rid}

    # -- methods ---------------------------------------------------------------------
    def _begin_settle(self, settle: dict) -> None:
        self._settle = {"pixels": float(settle["pixels"]), "time": float(settle["time"]),
                        "timeout": float(settle["timeout"]), "t0": time.monotonic(),
                        "in_since": None, "frames": 0}
        self.event("SettleBegin")

    def _m_guide(self, params):
        if self.state in ("Guiding", "Calibrating"):
            return 0
        if params.get("recalibrate") or not self.calibrated:
            self._set_state("Calibrating")
            self.event("StartCalibration", Mount="Mount")
            for step in range(3):
                self.event("Calibrating", Mount="Mount", dir="West", dist=3.0 * step, dx=0, dy=0,
                           pos=[100, 100], step=step, State="West")
            self.event("CalibrationComplete", Mount="Mount")
            self.calibrated = True
            self.calibrations += 1
        self.error = self.rng.normal(0, 1.0, 2)          # the star a px off after calibrating
        self.event("StartGuiding")
        self._set_state("Guiding")
        self._begin_settle(params["settle"])
        return 0

    def _m_dither(self, params):
        if self.state != "Guiding":
            raise RuntimeError("cannot dither if not guiding")
        a = float(params["amount"])
        d = self.rng.uniform(-a, a, 2)
        if params.get("raOnly"):
            d[1] = 0.0
        self.error = self.error + d
        self.event("GuidingDithered", dx=float(d[0]), dy=float(d[1]))
        self._begin_settle(params["settle"])
        return 0

    def _m_set_paused(self, params):
        paused = bool(params[0] if isinstance(params, list) else params["paused"])
        if paused and self.state == "Guiding":
            self._set_state("Paused")
            self.event("Paused")
        elif not paused and self.state == "Paused":
            self.event("Resumed")
            self._set_state("Guiding")
        return 0

    def _m_stop_capture(self, params):
        if self.state != "Stopped":
            self.event("GuidingStopped")
            self._set_state("Stopped")
        return 0

    def _m_get_app_state(self, params):
        return self.state

    def _m_flip_calibration(self, params):
        if not self.calibrated:
            raise RuntimeError("no calibration data")
        self.flipped += 1
        self.event("CalibrationDataFlipped", Mount="Mount")
        return 0

    # -- the simulated star ------------------------------------------------------------
    def _frames(self) -> None:
        while not self._stop.wait(self.frame_s):
            with self._lock:
                if self.state != "Guiding":
                    continue
                self.frame += 1
                measured = self.error.copy()
                self.error = (1 - self.aggressiveness) * self.error + self.rng.normal(0, self.noise_px, 2)
                self.event("GuideStep", Frame=self.frame, Time=self.frame * self.frame_s,
                           Mount="Mount", dx=float(measured[0]), dy=float(measured[1]),
                           RADistanceRaw=float(measured[0]), DECDistanceRaw=float(measured[1]),
                           RADistanceGuide=float(measured[0]), DECDistanceGuide=float(measured[1]),
                           RADuration=10, RADirection="East", DECDuration=10, DECDirection="North",
                           StarMass=5000.0, SNR=40.0, HFD=2.5, AvgDist=float(np.hypot(*measured)))
                self._settling(float(np.hypot(*measured)))

    def _settling(self, dist: float) -> None:
        s = self._settle
        if s is None:
            return
        now = time.monotonic()
        s["frames"] += 1
        if dist <= s["pixels"]:
            s["in_since"] = s["in_since"] or now
        else:
            s["in_since"] = None
        held = now - s["in_since"] if s["in_since"] else 0.0
        self.event("Settling", Distance=dist, Time=held, SettleTime=s["time"], StarLocked=True)
        if s["in_since"] is not None and held >= s["time"]:
            self.event("SettleDone", Status=0, TotalFrames=s["frames"], DroppedFrames=0)
            self._settle = None
        elif now - s["t0"] >= s["timeout"]:
            self.event("SettleDone", Status=1, Error="timed-out waiting for guider to settle",
                       TotalFrames=s["frames"], DroppedFrames=0)
            self._settle = None

    def sent_of(self, name: str) -> list[dict]:
        with self._lock:
            return [m for m in self.sent if m["Event"] == name]

    @property
    def distance(self) -> float:
        return float(math.hypot(*self.error))
