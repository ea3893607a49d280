"""A thread-safe INDI client on pyindi-client.

pyindi-client calls back on its own thread. :class:`IndiClient` keeps those callbacks
minimal: a BLOB's bytes are COPIED inside the callback (reading them later from another
thread has crashed pyindi-client), and every event is handed over through queues and
``threading`` primitives, so callers (the sequence runner, a napari worker) only ever
wait on Python objects. Nothing here touches Qt.

Property access goes through small typed helpers (:meth:`IndiClient.number`,
:meth:`set_number`, :meth:`switch`, :meth:`set_switch`, :meth:`text`, :meth:`set_text`)
that wait for the property to appear and, when asked, for the device to finish
(state not Busy).
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from ..core.errors import BadInputError

__all__ = ["IndiClient", "IndiError", "ConnectionLost", "Blob"]


class IndiError(RuntimeError):
    """A device refused a request or did not finish in time."""


class ConnectionLost(IndiError):
    """The connection to indiserver dropped (the caller may reconnect)."""


class Blob:
    """A BLOB received from a device (bytes already copied)."""

    __slots__ = ("device", "name", "format", "data", "time")

    def __init__(self, device: str, name: str, fmt: str, data: bytes) -> None:
        self.device, self.name, self.format, self.data = device, name, fmt, data
        self.time = time.time()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ chatter) for a moment; Python's sys.stderr too."""
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded): nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pyindi():
    try:
        import PyIndi  # noqa: N813
    except ImportError:
        raise BadInputError("pyindi-client", "is not installed (pip install "
                            "'napari-astro[capture]'; needs apt libdbus-1-dev libglib2.0-dev)") from None
    return PyIndi


class IndiClient:
    """Connection to one indiserver.

    Parameters
    ----------
    host : str
    port : int
    """

    def __init__(self, host: str = "localhost", port: int = 7624) -> None:
        self.host, self.port = host, int(port)
        self._pi = _pyindi()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._blobs: dict[str, "queue.Queue[Blob]"] = collections.defaultdict(queue.Queue)
        self.messages: "collections.deque[str]" = collections.deque(maxlen=500)
        self._connected = False
        self._generation = 0          # bumps at each (re)connection
        # (device, property) -> number of updates received from the server: a request
        # is answered when this grows (the local copy already holds the sent values and
        # pyindi-client marks it Busy itself, so values and state alone prove nothing)
        self._updates: "collections.Counter[tuple[str, str]]" = collections.Counter()
        self.on_disconnect: Callable[[int], None] | None = None
        self.on_blob: Callable[[Blob], None] | None = None
        self._client = self._make_client()

    # -- pyindi-client glue ---------------------------------------------------------
    def _make_client(self):
        PyIndi = self._pi
        owner = self

        class _Client(PyIndi.BaseClient):
            def newDevice(self, d):  # noqa: N802 - pyindi-client API
                owner._notify()

            def newProperty(self, p):  # noqa: N802
                owner._notify()

            def updateProperty(self, p):  # noqa: N802
                owner._updates[(p.getDeviceName(), p.getName())] += 1
                if p.getType() == PyIndi.INDI_BLOB:
                    dev = p.getDeviceName()
                    for e in PyIndi.PropertyBlob(p):
                        size = e.getSize()
                        if size <= 0:
                            continue
                        blob = Blob(dev, p.getName(), e.getFormat(), bytes(e.getblobdata()))
                        owner._blobs[dev].put(blob)
                        if owner.on_blob is not None:
                            try:
                                owner.on_blob(blob)
                            except Exception:  # noqa: BLE001 - never raise into C++
                                pass
                owner._notify()

            def removeProperty(self, p):  # noqa: N802
                owner._notify()

            def newMessage(self, d, m):  # noqa: N802
                try:
                    owner.messages.append(f"{d.getDeviceName()}: {d.messageQueue(m)}")
                except Exception:  # noqa: BLE001
                    pass

            def serverConnected(self):  # noqa: N802
                with owner._lock:
                    owner._connected = True
                owner._notify()

            def serverDisconnected(self, code):  # noqa: N802
                with owner._lock:
                    owner._connected = False
                owner._notify()
                cb = owner.on_disconnect
                if cb is not None:
                    try:
                        cb(code)
                    except Exception:  # noqa: BLE001
                        pass

        return _Client()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- connection -------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._connected and self._client.isServerConnected()

    def connect(self, timeout: float = 5.0) -> "IndiClient":
        """Connect to the server; BadInputError naming it if it does not answer."""
        from .server import wait_for_port

        if not wait_for_port(self.host, self.port, timeout):
            raise BadInputError(self.address, "INDI server does not answer")
        self._client.setServer(self.host, self.port)
        with _quiet_stderr():   # the C++ client prints "creating new connection..." on fd 2
            ok = self._client.connectServer()
        if not ok:
            raise BadInputError(self.address, "INDI server refused the connection")
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._connected and time.monotonic() < deadline:
                self._changed.wait(0.1)
        self._generation += 1
        return self

    def disconnect(self) -> None:
        try:
            self._client.disconnectServer()
        except Exception:  # noqa: BLE001 - already gone
            pass
        with self._lock:
            self._connected = False

    def reconnect(self, timeout: float = 30.0) -> None:
        """Reconnect after a dropped connection or a restarted server (waits until the
        server answers again, up to ``timeout`` s)."""
        self.disconnect()
        self._client = self._make_client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                return
            except BadInputError as exc:
                last = exc
                time.sleep(0.5)
        raise ConnectionLost(f"{self.address}: could not reconnect ({last})")

    def __enter__(self) -> "IndiClient":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- devices and properties -------------------------------------------------------
    def _check(self) -> None:
        if not self._connected:
            raise ConnectionLost(f"{self.address}: connection lost")

    def devices(self) -> list[str]:
        return [d.getDeviceName() for d in self._client.getDevices()]

    def _wait(self, fn: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._check()
                value = fn()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IndiError(f"{what}: not available after {timeout:.0f} s")
                self._changed.wait(min(left, 0.2))

    def device(self, name: str, timeout: float = 10.0):
        return self._wait(lambda: self._client.getDevice(name), timeout, f"device {name!r}")

    def property(self, device: str, name: str, timeout: float = 10.0):
        dev = self.device(device, timeout)
        return self._wait(lambda: dev.getProperty(name) if dev.getProperty(name).isValid() else None,
                          timeout, f"{device}.{name}")

    def has_property(self, device: str, name: str) -> bool:
        dev = self._client.getDevice(device)
        return bool(dev) and dev.getProperty(name).isValid()

    def _typed(self, device: str, name: str, kind: str, timeout: float):
        self.property(device, name, timeout)
        dev = self._client.getDevice(device)
        prop = getattr(dev, f"get{kind}")(name)
        if not prop.isValid():
            raise IndiError(f"{device}.{name} is not a {kind.lower()} property")
        return prop

    def state(self, device: str, name: str) -> str:
        """"Idle", "Ok", "Busy" or "Alert"."""
        prop = self.property(device, name)
        return {0: "Idle", 1: "Ok", 2: "Busy", 3: "Alert"}.get(int(prop.getState()), "?")

    def number(self, device: str, name: str, timeout: float = 10.0) -> dict[str, float]:
        prop = self._typed(device, name, "Number", timeout)
        return {e.getName(): float(e.getValue()) for e in prop}

    def text(self, device: str, name: str, timeout: float = 10.0) -> dict[str, str]:
        prop = self._typed(device, name, "Text", timeout)
        return {e.getName(): str(e.getText()) for e in prop}

    def switch(self, device: str, name: str, timeout: float = 10.0) -> dict[str, bool]:
        prop = self._typed(device, name, "Switch", timeout)
        return {e.getName(): e.getState() == self._pi.ISS_ON for e in prop}

    def wait_not_busy(self, device: str, name: str, timeout: float) -> str:
        """Wait until the property's state is not Busy; raise on Alert or timeout."""
        state = self._wait(lambda: (s if (s := self.state(device, name)) != "Busy" else None),
                           timeout, f"{device}.{name} to finish")
        if state == "Alert":
            raise IndiError(f"{device}.{name}: the device reported an error "
                            f"({self.last_message(device)})")
        return state

    def last_message(self, device: str) -> str:
        for m in reversed(self.messages):
            if m.startswith(device + ":"):
                return m
        return "no message"

    def set_number(self, device: str, name: str, values: Mapping[str, float], *,
                   wait: float | None = None) -> None:
        with self._lock:
            prop = self._typed(device, name, "Number", 10.0)
            n0 = self._updates[(device, name)]
            known = {e.getName() for e in prop}
            bad = set(values) - known
            if bad:
                raise IndiError(f"{device}.{name} has no element(s) {sorted(bad)}")
            for e in prop:
                if e.getName() in values:
                    e.setValue(float(values[e.getName()]))
            self._client.sendNewNumber(prop)
        if wait:
            self._wait_sent(device, name, wait, n0)

    def set_text(self, device: str, name: str, values: Mapping[str, str], *,
                 wait: float | None = None) -> None:
        with self._lock:
            prop = self._typed(device, name, "Text", 10.0)
            n0 = self._updates[(device, name)]
            for e in prop:
                if e.getName() in values:
                    e.setText(str(values[e.getName()]))
            self._client.sendNewText(prop)
        if wait:
            self._wait_sent(device, name, wait, n0)

    def set_switch(self, device: str, name: str, on: Iterable[str], *, exclusive: bool = True,
                   wait: float | None = None) -> None:
        on = set(on)
        with self._lock:
            prop = self._typed(device, name, "Switch", 10.0)
            n0 = self._updates[(device, name)]
            known = {e.getName() for e in prop}
            if on - known:
                raise IndiError(f"{device}.{name} has no element(s) {sorted(on - known)}")
            for e in prop:
                if e.getName() in on:
                    e.setState(self._pi.ISS_ON)
                elif exclusive:
                    e.setState(self._pi.ISS_OFF)
            self._client.sendNewSwitch(prop)
        if wait:
            self._wait_sent(device, name, wait, n0)

    def updates(self, device: str, name: str) -> int:
        """How many updates of ``device.name`` the server has sent so far."""
        return self._updates[(device, name)]

    def wait_answer(self, device: str, name: str, since: int, timeout: float) -> str:
        """Wait for the server's answer to a request sent when :meth:`updates` was
        ``since``: a new update, then the state leaving Busy (raise on Alert/timeout)."""
        deadline = time.monotonic() + timeout
        self._wait(lambda: self._updates[(device, name)] > since, timeout,
                   f"{device}.{name}: answer")
        return self.wait_not_busy(device, name, max(0.1, deadline - time.monotonic()))

    def _wait_sent(self, device: str, name: str, timeout: float, since: int) -> None:
        self.wait_answer(device, name, since, timeout)

    # -- devices' connection and BLOBs ------------------------------------------------
    def connect_device(self, device: str, timeout: float = 15.0) -> None:
        """Connect a driver's device (its CONNECTION switch) and wait for it."""
        self.device(device, timeout)
        if self.switch(device, "CONNECTION").get("CONNECT"):
            return
        self.set_switch(device, "CONNECTION", ["CONNECT"])
        self._wait(lambda: self.switch(device, "CONNECTION").get("CONNECT")
                   and self.state(device, "CONNECTION") != "Busy", timeout,
                   f"{device} to connect")

    def disconnect_device(self, device: str, timeout: float = 10.0) -> None:
        self.set_switch(device, "CONNECTION", ["DISCONNECT"])
        self._wait(lambda: self.switch(device, "CONNECTION").get("DISCONNECT"), timeout,
                   f"{device} to disconnect")

    def enable_blobs(self, device: str) -> None:
        self._client.setBLOBMode(self._pi.B_ALSO, device, None)

    def drain_blobs(self, device: str) -> None:
        q = self._blobs[device]
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                return

    def next_blob(self, device: str, timeout: float) -> Blob:
        """The next BLOB from ``device`` (IndiError after ``timeout`` s)."""
        q = self._blobs[device]
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            try:
                return q.get(timeout=min(0.2, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise IndiError(f"{device}: no image arrived within {timeout:.0f} s") from None
