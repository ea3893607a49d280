"""Start, watch and stop a local ``indiserver`` (tests, the demo, single-machine use).

Only one indiserver per machine can use INDI's default unix socket, so every server
started here gets its own ``-u PATH`` and a free TCP port. The server's PATH can be
prefixed (``extra_path``) so the CCD simulator finds our ``gsc`` stand-in and
renders real star fields.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..core.errors import BadInputError

__all__ = ["IndiServer", "free_port", "wait_for_port", "parse_server", "SIMULATORS", "gsc_dir"]

#: The simulator drivers of Debian's indi-bin and the device names they create.
SIMULATORS = {
    "indi_simulator_ccd": "CCD Simulator",
    "indi_simulator_guide": "Guide Simulator",
    "indi_simulator_telescope": "Telescope Simulator",
    "indi_simulator_focus": "Focuser Simulator",
    "indi_simulator_wheel": "Filter Simulator",
    "indi_simulator_lightpanel": "Light Panel Simulator",
}


def gsc_dir() -> str:
    """The folder holding our ``gsc`` stand-in (put it first on the server's PATH).

    An installed wheel may lose the executable bit: then a copy is made executable in
    a temporary folder.
    """
    here = Path(__file__).resolve().parent / "bin"
    script = here / "gsc"
    if os.access(script, os.X_OK):
        return str(here)
    tmp = Path(tempfile.mkdtemp(prefix="napari-astro-gsc-"))
    text = script.read_text().replace('"$(dirname "$0")/../gsc.py"', f'"{here.parent / "gsc.py"}"')
    (tmp / "gsc").write_text(text)
    (tmp / "gsc").chmod(0o755)
    return str(tmp)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once ``host:port`` accepts a connection (within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def parse_server(text: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"host"``) -> (host, port); bad text is bad input."""
    host, _, port = text.strip().rpartition(":")
    if not host:
        host, port = port, "7624"
    try:
        value = int(port)
        if not 0 < value < 65536:
            raise ValueError
    except ValueError:
        raise BadInputError("--server", f"{text!r} is not HOST:PORT") from None
    return host, value


class IndiServer:
    """A local indiserver process running the given drivers.

    Parameters
    ----------
    drivers : sequence of str
        Driver executables (``"indi_simulator_ccd"``...); each must be on PATH.
    port : int, optional
        TCP port (default: a free one).
    extra_path : sequence of str
        Folders put first on the server's PATH (drivers inherit it).
    env : dict, optional
        Extra environment variables for the server and its drivers.
    log : path, optional
        Where the server's output goes (default: a file in its temporary folder).
    stars : bool, default True
        Put our ``gsc`` stand-in first on the PATH so the CCD simulator draws the
        catalogue's stars at the mount's pointing (else its frames are noise only).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, drivers: Sequence[str], *, port: int | None = None,
                 extra_path: Sequence[str] = (), env: dict | None = None,
                 log: "str | os.PathLike[str] | None" = None, stars: bool = True) -> None:
        if shutil.which("indiserver") is None:
            raise BadInputError("indiserver", "is not installed (Debian: apt install indi-bin)")
        for d in drivers:
            if shutil.which(d) is None:
                raise BadInputError(d, "INDI driver is not installed")
        self.drivers = list(drivers)
        self.port = port or free_port()
        self.host = "localhost"
        self.extra_path = [os.fspath(p) for p in extra_path]
        self.env = dict(env or {})
        if stars:
            self.extra_path.insert(0, gsc_dir())
            # the stand-in needs numpy: run it with this interpreter
            self.env.setdefault("NAPARI_ASTRO_PYTHON", sys.executable)
        self._dir = Path(tempfile.mkdtemp(prefix="napari-astro-indi-"))
        self.socket_path = self._dir / "indi.sock"
        self.log_path = Path(log) if log else self._dir / "indiserver.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "IndiServer":
        env = dict(os.environ)
        env.update(self.env)
        if self.extra_path:
            env["PATH"] = os.pathsep.join(self.extra_path + [env.get("PATH", "")])
        try:   # a killed server leaves its socket file behind
            self.socket_path.unlink()
        except OSError:
            pass
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["indiserver", "-v", "-p", str(self.port), "-u", str(self.socket_path),
                 *self.drivers],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise BadInputError(self.address, f"indiserver did not answer within {timeout:.0f} s "
                                              f"(log: {self.log_path})")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the server and its drivers at once (a simulated crash)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """Stop the server and its drivers (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None
        try:
            self.socket_path.unlink()
        except OSError:
            pass

    def restart(self, timeout: float = 15.0) -> "IndiServer":
        """Stop and start again on the same port (drivers start from scratch)."""
        self.stop()
        # the port may linger in TIME_WAIT; indiserver sets SO_REUSEADDR
        return self.start(timeout)

    def __enter__(self) -> "IndiServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
