"""Coarse mesh background of an image (sigma-clipped block medians, a 3x3 median
over the mesh, bilinear interpolation) and its per-pixel sky noise, as sep and
SExtractor do before detection."""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy import ndimage

from ..stats import MAD_SIGMA

__all__ = ["estimate_background"]


def _interp_matrix(n_out: int, n_mesh: int, block: int) -> np.ndarray:
    """``(n_out, n_mesh)`` linear-interpolation weights from mesh centres to pixels."""
    centres = (np.arange(n_mesh) + 0.5) * block - 0.5
    pos = np.arange(n_out, dtype=np.float64)
    m = np.zeros((n_out, n_mesh), dtype=np.float32)
    if n_mesh == 1:
        m[:, 0] = 1.0
        return m
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, n_mesh - 2)
    t = np.clip((pos - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
    rows = np.arange(n_out)
    m[rows, j] = 1.0 - t
    m[rows, j + 1] += t
    return m


def estimate_background(data: np.ndarray, *, box: int = 64) -> tuple[np.ndarray, float]:
    """Smooth sky background map and per-pixel sky noise.

    Sigma-clipped medians of ``box`` x ``box`` blocks (subsampled 4x4 for speed), a 3x3
    median filter over the mesh (removes blocks biased by bright stars or nebula
    knots), then bilinear interpolation between block centres.

    Parameters
    ----------
    data : ndarray, shape (H, W)
        Image, any float type.
    box : int, default 64
        Block size in pixels; larger than the stars, smaller than gradients.

    Returns
    -------
    background : ndarray of float32, shape (H, W)
    noise : float
        Median over blocks of the clipped robust standard deviation (data units).
    """
    data = np.asarray(data, dtype=np.float32)
    h, w = data.shape
    ny, nx = max(1, h // box), max(1, w // box)
    by, bx = h // ny, w // nx
    # Every 4th pixel both ways (256 samples per 64x64 block) is plenty for a clipped
    # median and costs 11 ms per 2000x1500 frame against 54 ms for every 2nd pixel.
    step = 4 if min(by, bx) >= 32 else (2 if min(by, bx) >= 16 else 1)
    blocks = data[:ny * by:step, :nx * bx:step]
    bys, bxs = blocks.shape[0] // ny, blocks.shape[1] // nx
    blocks = blocks[:ny * bys, :nx * bxs].reshape(ny, bys, nx, bxs).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(ny * nx, bys * bxs)
    med, sig = _block_stats(np.ascontiguousarray(blocks))
    med = np.nan_to_num(med.reshape(ny, nx), nan=float(np.nanmedian(med)))
    sig = sig.reshape(ny, nx)
    if ny >= 3 and nx >= 3:
        med = ndimage.median_filter(med, size=3, mode="nearest")
    ay = _interp_matrix(h, ny, by)
    ax = _interp_matrix(w, nx, bx)
    bkg = (ay @ med.astype(np.float32)) @ ax.T
    noise = float(np.nanmedian(sig)) if np.isfinite(sig).any() else 0.0
    return np.ascontiguousarray(bkg, dtype=np.float32), noise


@njit(cache=True, parallel=True, nogil=True)
def _block_stats(blocks):  # pragma: no cover - numba
    """Clipped median and robust sigma of each row of ``blocks`` (nb, m).

    Two clipping rounds at (-4, +2.5) sigma: stars and nebula only push values up.
    A numba kernel because np.nanmedian over 700 blocks took 170 ms; this takes ~8 ms.
    """
    nb, m = blocks.shape
    med = np.empty(nb, np.float32)
    sig = np.empty(nb, np.float32)
    for b in prange(nb):
        v = np.sort(blocks[b])
        lo_i = 0
        hi_i = m
        md = 0.0
        sg = 0.0
        for it in range(3):
            n = hi_i - lo_i
            if n <= 0:
                break
            k = lo_i + n // 2
            md = v[k] if n % 2 else 0.5 * (v[k - 1] + v[k])
            dev = np.sort(np.abs(v[lo_i:hi_i] - md))
            sg = MAD_SIGMA * (dev[n // 2] if n % 2 else 0.5 * (dev[n // 2 - 1] + dev[n // 2]))
            if it == 2:
                break
            lo_i = np.searchsorted(v, md - 4.0 * sg)
            hi_i = np.searchsorted(v, md + 2.5 * sg, side="right")
        med[b] = md
        sig[b] = sg
    return med, sig
