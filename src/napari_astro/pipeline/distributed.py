"""Scale-out of the stack run on a Dask distributed cluster (``--scheduler ADDRESS``).

Calibration, star measurement and registration run frame by frame as tasks on the
cluster's worker *processes*, integration as tiles (``core.integration``'s Dask path).
Workers read their frames and write their products themselves, so every machine must
see the same files under the same paths (a shared filesystem: NFS, SMB, sshfs); only
parameters, paths and small results (star lists, quality rows) cross the network.

Privacy: a scheduler bound to every interface accepts any client that can reach it
(and runs the code it is sent). Keep a cluster on a private network, or use Dask's TLS
(``tls://`` addresses with a CA, certificate and key, :class:`distributed.security.Security`):
:func:`security_from_spec` builds one from ``"CA,CERT,KEY"`` (the
``NAPARI_ASTRO_SCHEDULER_TLS`` environment variable), and Dask's own configuration
(``distributed.comm.tls.*``, e.g. ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``) applies
when neither is given.
"""

from __future__ import annotations

import contextlib
import dataclasses as _dc
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from ..core.errors import BadInputError
from ..core.progress import report

__all__ = ["connect", "map_ordered", "security_from_spec", "n_workers", "calibrate_on_cluster",
           "TLS_ENV"]

#: Environment variable holding ``CA,CERT,KEY`` file paths for a ``tls://`` scheduler.
TLS_ENV = "NAPARI_ASTRO_SCHEDULER_TLS"


def security_from_spec(spec: Optional[str]):
    """A :class:`distributed.security.Security` from ``"CA,CERT,KEY"`` (PEM files).

    Returns None for an empty spec (Dask's configuration then decides).

    Raises
    ------
    BadInputError
        Not three comma-separated paths, or a file that does not exist.
    """
    if not spec:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 3 or not all(parts):
        raise BadInputError("--scheduler-tls", f"needs CA,CERT,KEY (three PEM files), got {spec!r}")
    for p in parts:
        if not Path(p).is_file():
            raise BadInputError(p, "TLS file not found")
    from distributed.security import Security

    ca, cert, key = parts
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    require_encryption=True)


@contextlib.contextmanager
def connect(address: Any, *, security: Any = None, timeout: Optional[float] = None):
    """A :class:`distributed.Client` on ``address`` (a Client is passed through).

    ``security``: a Security, a ``"CA,CERT,KEY"`` string, or None (then
    ``$NAPARI_ASTRO_SCHEDULER_TLS``, then Dask's configuration). ``timeout``: seconds
    to wait for the scheduler (default Dask's ``distributed.comm.timeouts.connect``).

    Raises
    ------
    BadInputError
        The scheduler cannot be reached (names ``--scheduler``).
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise BadInputError("--scheduler", "needs the 'distributed' package "
                                           "(pip install distributed)") from None
    if isinstance(address, Client):
        yield address
        return
    if isinstance(security, str) or security is None:
        security = security_from_spec(security if security else os.environ.get(TLS_ENV))
    kw = {"security": security} if security is not None else {}
    if timeout is not None:   # else Dask's distributed.comm.timeouts.connect (30 s)
        kw["timeout"] = timeout
    try:
        # the default client: core.integration's as_completed() looks it up
        client = Client(address, **kw)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInputError("--scheduler", f"cannot reach the Dask scheduler {address}: "
                                           f"{exc}") from None
    try:
        yield client
    finally:
        client.close()


def n_workers(client) -> int:
    """Worker threads of the cluster (at least 1)."""
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


class _SameThreads:
    """``fn`` run with this process's numba thread count on the worker: parallel
    kernels split their loops by thread count, and a float sum split otherwise rounds
    otherwise (1e-6 in debayered frames, 7e-5 in a stack after rejection)."""

    def __init__(self, fn: Callable, n: int) -> None:
        self.fn, self.n = fn, n

    def __call__(self, item):
        from ..core.jit import max_num_threads, set_num_threads  # without importing numba

        set_num_threads(max(1, min(self.n, max_num_threads())))
        return self.fn(item)


def map_ordered(client, fn: Callable, items: Iterable, *, window: Optional[int] = None,
                key: str = "frame") -> Iterator:
    """``fn(item)`` for every item on the cluster, results yielded in input order.

    At most ``window`` tasks are in flight (default twice the worker threads), so the
    results waiting for their turn stay a few frames whatever the session size. A
    task's exception is raised here, in order, with its own type (a BadInputError
    from a worker stays one).
    """
    from ..core.jit import get_num_threads

    items = list(items)
    window = window or max(2, 2 * n_workers(client))
    fn = _SameThreads(fn, get_num_threads())
    pending: deque = deque()
    it = iter(enumerate(items))

    def submit_next() -> bool:
        try:
            _, item = next(it)
        except StopIteration:
            return False
        pending.append(client.submit(fn, item, pure=False))
        return True

    for _ in range(window):
        if not submit_next():
            break
    try:
        while pending:
            fut = pending.popleft()
            res = fut.result()
            fut.release()
            submit_next()
            yield res
    finally:
        for fut in pending:
            fut.cancel()


# --------------------------------------------------------------------------- calibration
def _bare(m):
    """A master without its pixels (workers read it from its file)."""
    return None if m is None else _dc.replace(m, image=None, frames=[])


#: Per worker process: masters read once, by path, with their derived arrays cached.
_WORKER_MASTERS: dict = {}


def _remote_calibrate(task: tuple) -> tuple[str, float]:
    """One light on a Dask worker: read, calibrate, cosmetic-correct, (debayer), write,
    and measure its stars when asked."""
    from ..core.calibration import BadPixelMap
    from ..core.io import read_image, write_image
    from .calibrate import _applied_scale, _measure, calibrate_light
    from .masters import MasterSet

    item, params, pedestal, bpm, record, target, overwrite, out_dtype, measure = task
    paths = tuple(str(m.path) if m is not None else None for m in (item.bias, item.dark,
                                                                     item.flat))
    cached = _WORKER_MASTERS.get(paths)
    if cached is None:
        if len(_WORKER_MASTERS) > 4:
            _WORKER_MASTERS.clear()
        ms = MasterSet()
        for m in (item.bias, item.dark, item.flat):
            if m is not None:
                ms.add(m)
        cached = _WORKER_MASTERS[paths] = (ms, (item.bias, item.dark, item.flat))
    ms, (b, d, f) = cached
    item = _dc.replace(item, bias=b, dark=d, flat=f)
    img = read_image(item.light.path)
    out = calibrate_light(img, item, ms, params, pedestal=pedestal, record=record,
                          bad_pixels=bpm if bpm is not None else BadPixelMap.empty(
                              img.data.shape))
    write_image(out, Path(target), overwrite=overwrite, dtype=out_dtype)
    if measure is not None:
        _measure(out, Path(target).name, measure)
    return target, _applied_scale(out)


def calibrate_on_cluster(client, plan, masters, params, ctx, names, overwrite, out_dtype,
                         record, written, results, done, total, progress, cancel, log,
                         measure=None):
    """:func:`.calibrate.calibrate_lights`' loop as one task per light (its ``client``)."""
    from ..core.io import read_image
    from .calibrate import _frame_bad_pixels, _session_pedestal, remove_partial

    if ctx.pedestal is None:
        first = read_image(plan[0].light.path)
        ctx.pedestal = _session_pedestal(first, plan[0], masters, params,
                                         _frame_bad_pixels(plan[0], masters, params, ctx))
        del first
        log(f"pedestal {ctx.pedestal:.6f} ({ctx.pedestal * 65535:.1f} ADU) for the session")
    tasks = []
    for i, item in enumerate(plan):
        bare = _dc.replace(item, bias=_bare(item.bias), dark=_bare(item.dark),
                           flat=_bare(item.flat))
        tasks.append((bare, params, ctx.pedestal, _frame_bad_pixels(item, masters, params, ctx),
                      record, str(names[i]), overwrite, out_dtype, measure))
    masters.release()
    try:
        for i, (target, scale) in enumerate(map_ordered(client, _remote_calibrate, tasks)):
            item = plan[i]
            written.append(Path(target))
            log(item.describe() + (f" dark x{scale:.4g}" if item.dark_mode == "optimize"
                                   else ""))
            results[i] = Path(target)
            done += 1
            report(progress, done, total, f"calibrated {Path(item.light.path).name}", cancel)
    except BaseException:
        remove_partial(written)
        raise
