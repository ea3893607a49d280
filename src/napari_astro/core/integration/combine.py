"""The tile plan (everything the kernel needs besides the pixels), the tile function
shared by the local loop and the Dask tasks, and the in-memory :func:`combine_stack`
(masters)."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ..errors import BadInputError
from ..stats import run_in_threads
from .kernels import _batcher_pairs, row_kernel
from .strategies import GESD, Rejection, Winsorized


_COMBINE_CODES = {"average": 0, "mean": 0, "median": 1, "sum": 2}


def _gesd_tables(n_max: int, rej: Rejection) -> tuple[np.ndarray, np.ndarray]:
    """Critical values ``crit[n, i]`` of GESD for ``n`` valid values, step ``i``."""
    rmax = np.zeros(n_max + 1, np.int64)
    if not isinstance(rej, GESD):
        return np.zeros((n_max + 1, 1)), rmax
    from scipy.stats import t as student_t

    for n in range(n_max + 1):
        rmax[n] = int(math.floor(rej.outliers * n))
    crit = np.full((n_max + 1, max(1, int(rmax.max()))), np.inf)
    for n in range(3, n_max + 1):
        for i in range(rmax[n]):
            size = n - i
            if size < 3:
                break
            p = 1.0 - rej.significance / (2.0 * size)
            tq = student_t.ppf(p, size - 2)
            crit[n, i] = (size - 1) * tq / math.sqrt(size * (size - 2 + tq * tq))
    return crit, rmax


@dataclasses.dataclass
class _Plan:
    """Everything the tile kernel needs besides the pixels (small, picklable)."""

    A: np.ndarray          # (N, C) float64 normalisation factor
    B: np.ndarray          # (N, C) float64 normalisation offset
    W: np.ndarray          # (N, C) float64 weights
    method: int
    plow: float
    phigh: float
    iters: int
    crit: np.ndarray
    rmax: np.ndarray
    combine: int
    comps: np.ndarray      # (M, 2) int32 sorting-network comparators for N values

    @classmethod
    def build(cls, n: int, c: int, rejection: Rejection, combine: str, A=None, B=None,
              W=None) -> "_Plan":
        if combine not in _COMBINE_CODES:
            raise BadInputError("combine", f"unknown combine {combine!r} (average, median, sum)")
        if isinstance(rejection, GESD):
            plow, phigh = rejection.outliers, rejection.significance
        else:
            plow, phigh = float(rejection.low), float(rejection.high)
        crit, rmax = _gesd_tables(n, rejection)
        ones = np.ones((n, c), np.float64)
        return cls(A=ones if A is None else np.ascontiguousarray(A, np.float64),
                   B=np.zeros((n, c)) if B is None else np.ascontiguousarray(B, np.float64),
                   W=ones if W is None else np.ascontiguousarray(W, np.float64),
                   method=int(rejection.code), plow=float(plow), phigh=float(phigh),
                   iters=int(getattr(rejection, "iterations", 1)), crit=crit, rmax=rmax,
                   combine=_COMBINE_CODES[combine], comps=_batcher_pairs(n))


class _TileScratch:
    """Result buffers of the tile kernel, reused from tile to tile: fresh ones per
    tile were page-faulted anew every time (cli.py sets glibc's mmap threshold to
    128 KiB, so each is a new mmap)."""

    def __init__(self, n: int, c: int, rows: int, x: int) -> None:
        self.n = n
        self.size = c * rows * x
        self.out = np.empty(self.size, np.float32)
        self.counts = np.empty((3, self.size), np.uint16)
        self.fr = np.empty((3, c * rows * n), np.int64)

    def views(self, c: int, r: int, x: int):
        k = c * r * x
        shape = (c, r, x)
        fr = self.fr[:, : c * r * self.n].reshape(3, c * r, self.n)
        fr[...] = 0
        return (self.out[:k].reshape(shape), self.counts[0, :k].reshape(shape),
                self.counts[1, :k].reshape(shape), self.counts[2, :k].reshape(shape),
                fr[0], fr[1], fr[2])


def _compute_tile(plan: _Plan, buf: np.ndarray, parallel: bool = True,
                  scratch: "_TileScratch | None" = None):
    """Run the kernel on ``buf (N, C, R, X)`` float32; returns the tile results
    (views of ``scratch``'s buffers when given: valid until its next tile)."""
    N, C, R, X = buf.shape
    if scratch is not None and scratch.n == N and C * R * X <= scratch.size:
        out, nvalid, lowc, highc, finv, frl, frh = scratch.views(C, R, X)
    else:
        out = np.empty((C, R, X), np.float32)
        nvalid = np.empty((C, R, X), np.uint16)
        lowc = np.empty((C, R, X), np.uint16)
        highc = np.empty((C, R, X), np.uint16)
        finv = np.zeros((C * R, N), np.int64)
        frl = np.zeros((C * R, N), np.int64)
        frh = np.zeros((C * R, N), np.int64)
    # only the kernel of the plan's rejection compiles (on its first use)
    run_in_threads(row_kernel(plan.method, plan.combine), C * R, buf, plan.A, plan.B,
                   plan.W, plan.plow, plan.phigh, plan.iters, plan.crit, plan.rmax,
                   plan.combine, plan.comps, out, nvalid, lowc, highc, finv, frl, frh,
                   threads=None if parallel else 1)
    return out, nvalid, lowc, highc, C * R * X - finv.sum(0), frl.sum(0), frh.sum(0)


# --- in-memory combine (masters) ---------------------------------------------------
def combine_stack(stack: np.ndarray | Sequence[np.ndarray], *, rejection: Rejection | None = None,
                  combine: str = "average", weights: Sequence[float] | None = None,
                  return_maps: bool = False):
    """Combine an in-memory stack ``(N, ...)`` pixel by pixel with rejection.

    Parameters
    ----------
    stack : ndarray ``(N, ...)`` or sequence of N equal-shape arrays
        Frames (any float or int dtype; float32 contiguous avoids a copy). NaN or
        infinite values are missing and take no part.
    rejection : Rejection, optional
        Default :class:`Winsorized` (3, 3). Pixels with fewer than 3 valid values
        are combined without rejection.
    combine : {"average", "median", "sum"}
        ``sum`` is the mean of the kept values times the number of valid values.
    weights : sequence of N floats, optional
        Weights of the frames for ``average`` (default equal).
    return_maps : bool
        Also return the per-pixel counts of values rejected low and high.

    Returns
    -------
    ndarray or (ndarray, ndarray, ndarray)
        float32 of shape ``stack.shape[1:]`` (0 where no value is valid); with
        ``return_maps``, also uint16 low and high rejection counts of that shape.
    """
    arr = np.asarray(stack)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim < 2:
        raise ValueError(f"stack must be (N, ...), got shape {arr.shape}")
    rejection = Winsorized() if rejection is None else rejection
    n = arr.shape[0]
    shape = arr.shape[1:]
    if arr.ndim == 2:
        view = arr.reshape(n, 1, 1, shape[0])
    else:
        view = arr.reshape(n, 1, -1, shape[-1])
    view = np.ascontiguousarray(view)
    W = None
    if weights is not None:
        W = np.asarray(weights, np.float64).reshape(-1, 1)
        if W.shape[0] != n:
            raise ValueError(f"{W.shape[0]} weights for {n} frames")
    plan = _Plan.build(n, 1, rejection, combine, W=W)
    out, _nv, lowc, highc, *_ = _compute_tile(plan, view, parallel=True)
    out = out.reshape(shape)
    if return_maps:
        return out, lowc.reshape(shape), highc.reshape(shape)
    return out
