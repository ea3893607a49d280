"""Running a library call off the GUI thread (STYLE.md convention 6).

:func:`start_job` runs ``fn(progress=..., cancel=...)`` in napari's ``thread_worker``;
the library's progress callback is turned into worker yields (coalesced), so napari's
activity dock and the widget's own bar show progress, and a
:class:`~napari_astro.core.progress.CancelToken` stops the job at the library's next
check. Nothing here touches the library's numerics.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from typing import Any, Callable

__all__ = ["start_job", "import_object", "PROGRESS_STEPS"]

#: Resolution of the progress bars.
PROGRESS_STEPS = 1000
_PROGRESS_STEPS = PROGRESS_STEPS
_DONE = object()


def _job_generator(fn: Callable[..., Any], cancel: Any, min_interval: float = 0.05):
    """Run ``fn(progress=, cancel=)`` in a helper thread; yield its progress reports.

    Runs inside napari's worker thread. The library calls ``progress`` from the
    helper thread; reports go through a queue and come out here as yields (the only
    way to turn a callback into a generator without rewriting the library), coalesced
    to one yield per ``min_interval`` seconds so the GUI thread is not flooded.
    """
    q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    box: dict[str, Any] = {}

    def progress(done: float, total: float, message: str = "") -> None:
        q.put((float(done), float(total), str(message)))

    def target() -> None:
        try:
            box["result"] = fn(progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the worker thread
            box["error"] = exc
        finally:
            q.put(_DONE)

    helper = threading.Thread(target=target, name="napari-astro-job", daemon=True)
    helper.start()
    try:
        pending = None
        last_yield = 0.0
        finished = False
        while not finished:
            try:
                item = q.get(timeout=min_interval * 4)
            except queue.Empty:
                item = None
            while item is not None:  # drain: only the newest report matters
                if item is _DONE:
                    finished = True
                    break
                pending = item
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if pending is not None and (finished or now - last_yield >= min_interval):
                last_yield = now
                out, pending = pending, None
                yield out
            elif now - last_yield >= 0.5:
                # Heartbeat: lets the worker notice an abort request between reports.
                last_yield = now
                yield None
        helper.join()
    finally:
        if helper.is_alive():  # the worker was aborted (napari's activity dock): stop the job
            cancel.cancel()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def start_job(fn: Callable[..., Any], *, title: str,
              on_progress: Callable[[float, float, str], None] | None = None,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              cancel: Any = None):
    """Start ``fn(progress=..., cancel=...)`` in napari's thread_worker.

    Parameters
    ----------
    fn : callable
        The library call; must accept keyword arguments ``progress`` and ``cancel``
        (see :mod:`napari_astro.core.progress`) and touch no Qt object.
    title : str
        Shown in napari's activity dock.
    on_progress : callable, optional
        ``(fraction in [0, 1], total, message)`` in the GUI thread.
    on_result, on_error, on_finished : callable, optional
        Called in the GUI thread when the job returns, raises, or ends either way.
    cancel : CancelToken, optional
        Made if not given; available as ``worker.cancel_token``.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        Already started. ``worker.cancel_token.cancel()`` stops the job at the
        library's next check; aborting the worker (napari's activity dock) does too.
    """
    from napari.qt.threading import create_worker

    from ..core.progress import CancelToken

    token = cancel if cancel is not None else CancelToken()
    # With an error handler we show the error ourselves; without one napari re-raises
    # it in the GUI thread (its notification manager shows it).
    worker = create_worker(_job_generator, fn, token, _progress={"desc": title},
                           _start_thread=False, _ignore_errors=on_error is not None)
    worker.cancel_token = token
    pbar = getattr(worker, "pbar", None)
    state = {"n": 0, "returned": False}

    def _returned(_: Any) -> None:
        state["returned"] = True

    def _yielded(item: "tuple[float, float, str] | None") -> None:
        # Heartbeats carry nothing; a report handled after the result is stale.
        if item is None or state["returned"]:
            return
        done, total, message = item
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        # The widget first: updating napari's progress object below can process
        # pending events (the result among them) before it returns.
        if on_progress is not None:
            on_progress(frac, total, message)
        if pbar is not None and not state["returned"]:
            try:
                if pbar.total != _PROGRESS_STEPS:
                    pbar.total = _PROGRESS_STEPS
                n = int(round(frac * _PROGRESS_STEPS))
                if n > state["n"]:  # never backwards (a new stage restarting at 0)
                    pbar.update(n - state["n"])
                    state["n"] = n
                if message:
                    pbar.set_description(f"{title}: {message}"[:80])
            except Exception:  # noqa: BLE001 - a display glitch must not kill the job
                pass

    worker.returned.connect(_returned)
    worker.yielded.connect(_yielded)
    worker.aborted.connect(token.cancel)
    if on_result is not None:
        worker.returned.connect(on_result)
    if on_error is not None:
        worker.errored.connect(on_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def import_object(spec: "str | Callable[..., Any]") -> Callable[..., Any]:
    """``"package.module:name"`` -> the object (lazy import of heavy library code)."""
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj
