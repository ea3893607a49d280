"""Qt-free progress reporting and cancellation for long computations.

Library functions take ``progress: Progress | None`` and optionally ``cancel:
CancelToken | None``. They call ``progress(done, total, message)`` and
``cancel.check()`` at natural boundaries (a frame, a tile). The CLI plugs in a tqdm
bar (:class:`TqdmProgress`); widgets plug in a callback that yields to napari's
thread_worker so the activity dock shows progress.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Protocol

__all__ = ["Progress", "CancelToken", "Cancelled", "report", "TqdmProgress", "SubProgress"]


class Cancelled(Exception):
    """Raised by :meth:`CancelToken.check` after :meth:`CancelToken.cancel`."""


class Progress(Protocol):
    def __call__(self, done: float, total: float, message: str = "") -> None: ...


class CancelToken:
    """Thread-safe cancellation flag."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled")


def report(progress: Optional[Progress], done: float, total: float, message: str = "",
           cancel: Optional[CancelToken] = None) -> None:
    """Call ``progress`` if given and honour ``cancel``."""
    if cancel is not None:
        cancel.check()
    if progress is not None:
        progress(done, total, message)


class SubProgress:
    """Map a sub-task's 0..total onto ``[start, stop]`` of a parent progress."""

    def __init__(self, parent: Optional[Progress], start: float, stop: float, total: float,
                 label: str = "") -> None:
        self.parent, self.start, self.stop, self.total, self.label = parent, start, stop, total, label

    def __call__(self, done: float, total: float, message: str = "") -> None:
        if self.parent is None:
            return
        frac = 0.0 if not total else min(max(done / total, 0.0), 1.0)
        msg = f"{self.label}: {message}" if self.label and message else (message or self.label)
        self.parent(self.start + frac * (self.stop - self.start), self.total, msg)


def _tqdm_class():
    """tqdm's bar class, imported without ``importlib.metadata``: tqdm's package
    looks its own version up among every installed distribution (``tqdm.version``),
    which took 41 of the 52 ms of ``import tqdm`` on this machine (``python -X
    importtime``, after numpy), about 3 % of a 6-light Seestar stack. The version is
    read from the name of tqdm's ``.dist-info`` folder instead; without one, tqdm
    imports as usual."""
    import sys

    if "tqdm" not in sys.modules and "tqdm.version" not in sys.modules:
        import importlib.util
        import os
        import types

        spec = importlib.util.find_spec("tqdm")
        site = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else ""
        try:
            names = os.listdir(site) if site else []
        except OSError:
            names = []
        found = [n[5:-10] for n in names if n.startswith("tqdm-") and n.endswith(".dist-info")]
        if len(found) == 1:
            mod = types.ModuleType("tqdm.version")
            mod.__version__ = found[0]
            sys.modules["tqdm.version"] = mod
    from tqdm import tqdm

    return tqdm


class TqdmProgress:
    """A :class:`Progress` that drives a tqdm bar on stderr (with ETA)."""

    def __init__(self, desc: str = "", disable: bool | None = None) -> None:
        tqdm = _tqdm_class()
        self._bar = tqdm(total=1, desc=desc, unit="", disable=disable, leave=True,
                         bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} [{elapsed}<{remaining}] {postfix}")

    def __call__(self, done: float, total: float, message: str = "") -> None:
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message[:60], refresh=False)
        self._bar.refresh()

    def write(self, line: str) -> None:
        """Print ``line`` on stderr above the bar without breaking it."""
        import sys

        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ProgressCallback = Callable[[float, float, str], None]
