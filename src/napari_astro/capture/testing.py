"""Helpers for tests and demos: a local indiserver with every INDI simulator.

Used by ``tests/test_capture_*.py`` (each module starts its own server on a free port
with its own unix socket and stops it at the end) and by docs/CAPTURE.md's walk-through.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import Iterator

from .server import SIMULATORS

__all__ = ["simulators_missing", "simulator_rig", "SIM_SEQUENCE_DEVICES"]

#: The sequence-table device names of the simulators.
SIM_SEQUENCE_DEVICES = {"camera": "CCD Simulator", "mount": "Telescope Simulator",
                        "focuser": "Focuser Simulator", "wheel": "Filter Simulator",
                        "panel": "Light Panel Simulator", "guider": "Guide Simulator"}


def simulators_missing() -> str | None:
    """Why the simulators cannot run here (None when they can)."""
    if shutil.which("indiserver") is None:
        return "indiserver is not installed (apt install indi-bin)"
    for d in SIMULATORS:
        if shutil.which(d) is None:
            return f"{d} is not installed (apt install indi-bin)"
    try:
        import PyIndi  # noqa: F401
    except ImportError:
        return "pyindi-client is not installed"
    return None


@contextlib.contextmanager
def simulator_rig(drivers=None) -> Iterator[tuple]:
    """Start an indiserver with the simulators (stars on), connect a client.

    Yields ``(server, client)``; stops both at the end.
    """
    from .client import IndiClient
    from .server import IndiServer

    import tempfile

    # the drivers keep config and park state in $HOME/.indi: a private HOME makes every
    # rig start from the drivers' defaults and leaves the user's settings alone
    home = tempfile.mkdtemp(prefix="napari-astro-indi-home-")
    server = IndiServer(list(drivers or SIMULATORS), env={"HOME": home}).start()
    client = None
    try:
        client = IndiClient("localhost", server.port).connect()
        yield server, client
    finally:
        if client is not None:
            client.disconnect()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
