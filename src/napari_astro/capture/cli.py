"""``napari-astro capture`` and ``napari-astro live``.

Everything that can be checked before a device moves is checked first (the sequence
file, the server answering, the drivers installed, the devices present on the server),
so bad input exits 2 with one line and nothing exposed or slewed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys

from ..core.errors import BadInputError

__all__ = ["cli_capture", "cli_live", "check_devices", "check_phd2"]


def check_phd2(settings, timeout: float = 3.0) -> None:
    """BadInputError when ``guiding = "phd2"`` and no PHD2 server answers (nothing is
    sent: a TCP connection is opened and closed)."""
    import socket

    if settings.guiding != "phd2":
        return
    try:
        with socket.create_connection((settings.phd2_host, settings.phd2_port), timeout=timeout):
            pass
    except OSError as exc:
        raise BadInputError("sequence.phd2_port", f"no PHD2 server answers at "
                            f"{settings.phd2_host}:{settings.phd2_port} ({exc.strerror or exc}): "
                            "start PHD2 and its server (Tools > Enable Server)") from None


def check_devices(client, seq) -> None:
    """BadInputError naming the first device of the sequence the server does not have."""
    import time

    s = seq.settings
    wanted = [d for d in (s.camera, s.mount, s.focuser, s.wheel, s.panel, s.guider) if d]
    # devices appear one by one after the connection: wait until all are there, or
    # until the list has not grown for a second (then what is missing is missing)
    deadline = time.monotonic() + 10.0
    seen, stable_since = set(), time.monotonic()
    while True:
        have = set(client.devices())
        if have != seen:
            seen, stable_since = have, time.monotonic()
        missing = [d for d in wanted if d not in have]
        now = time.monotonic()
        if not missing or now > deadline or (have and now - stable_since > 1.0):
            break
        time.sleep(0.1)
    if missing:
        shown = ", ".join(sorted(have)) or "none"
        raise BadInputError(f"sequence.{_field_of(s, missing[0])}",
                            f"device {missing[0]!r} is not on the server (it has: {shown})")


@contextlib.contextmanager
def _python_only_stderr():
    """Send file descriptor 2 to /dev/null while Python's ``sys.stderr`` keeps the
    terminal: pyindi-client's C++ code prints protocol chatter ("Dispatch command
    error" with XML) on fd 2 during a run, which would bury the progress bar and the
    one-line errors."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2: nothing to do
        yield
        return
    old = sys.stderr
    sys.stderr = os.fdopen(saved, "w", buffering=1, closefd=False)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sys.stderr = old
        os.close(saved)


def _field_of(settings, device: str) -> str:
    for name in ("camera", "mount", "focuser", "wheel", "panel", "guider"):
        if getattr(settings, name) == device:
            return name
    return "camera"


def cli_capture(args: argparse.Namespace) -> int:
    from ..core.progress import TqdmProgress
    from .client import IndiClient
    from .sequence import SequenceRunner, load_sequence
    from .server import SIMULATORS, IndiServer, parse_server

    seq = load_sequence(args.sequence)
    host, port = parse_server(args.server)
    check_phd2(seq.settings)
    with _python_only_stderr():
        return _capture(args, seq, host, port)


def _capture(args, seq, host, port) -> int:
    from ..core.progress import TqdmProgress
    from .client import IndiClient, IndiError
    from .sequence import SequenceRunner
    from .server import SIMULATORS, IndiServer

    server = None
    if args.start_server:
        drivers = list(seq.settings.drivers) or list(SIMULATORS)
        for d in drivers:
            if shutil.which(d) is None:
                raise BadInputError(d, "INDI driver is not installed")
        server = IndiServer(drivers, port=port).start()
    try:
        client = IndiClient(host, port).connect()
        try:
            check_devices(client, seq)
            log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
            runner = SequenceRunner(seq, client, args.output, progress=TqdmProgress("capture"),
                                    log=log)
            runner.check()       # the target resolves, the output folder is usable
            try:
                frames = runner.run()
            except IndiError as exc:   # a device that fails for good, a server gone
                raise BadInputError(f"{host}:{port}", f"{exc}; the frames taken so far are "
                                    f"kept: run again with the same -o to go on") from None
        finally:
            client.disconnect()
    finally:
        if server is not None:
            server.stop()
    print(f"{len(frames)} of {seq.planned()} frames in {args.output}"
          + (f" ({runner.reconnects} reconnections)" if runner.reconnects else ""))
    if runner.stopped:
        print(f"not all lights taken: {runner.stopped} (run again later with the same -o "
              "to take the rest)")
    return 0


def cli_live(args: argparse.Namespace) -> int:
    from .live import run_live_folder

    return run_live_folder(args.folder, output=args.output, masters=args.masters,
                           poll=args.poll, once=args.once, overwrite=args.overwrite)
