"""CFA helpers: Bayer patterns of ``data[0, 0]``, colour index and plane slices,
mosaicking (the inverse of debayering), equalisation of the four planes and a
pattern-free luminance."""

from __future__ import annotations

import numpy as np

from ..jit import njit

from ..errors import BadInputError
from ..image import BAYER_PATTERNS
from ..stats import run_in_threads

__all__ = ["cfa_color_index", "cfa_plane_slices", "mosaic", "equalize_cfa", "cfa_luminance"]

_COLOUR = {"R": 0, "G": 1, "B": 2}


def _check_pattern(pattern: str | None) -> str:
    if pattern is None:
        raise BadInputError(None, "no CFA pattern: the image is not a raw one-shot-colour mosaic "
                                  "(give --bayer RGGB|BGGR|GRBG|GBRG)")
    p = str(pattern).strip().upper()
    if p not in BAYER_PATTERNS:
        raise BadInputError(None, f"unknown CFA pattern {pattern!r} (use one of "
                                  f"{', '.join(BAYER_PATTERNS)})")
    return p


def cfa_color_index(pattern: str) -> np.ndarray:
    """``(2, 2)`` int64 array: colour index (0 R, 1 G, 2 B) of each cell position.

    ``cfa_color_index(p)[y % 2, x % 2]`` is the colour of mosaic pixel ``(y, x)``.
    """
    p = _check_pattern(pattern)
    return np.array([[_COLOUR[p[0]], _COLOUR[p[1]]], [_COLOUR[p[2]], _COLOUR[p[3]]]],
                    dtype=np.int64)


def cfa_plane_slices(pattern: str) -> dict[str, tuple[slice, slice]]:
    """Slices of the four CFA planes, keyed ``"R"``, ``"G1"``, ``"G2"``, ``"B"``.

    ``data[cfa_plane_slices("RGGB")["R"]]`` is the red sub-image (stride 2).  G1 is the
    green on the red row, G2 the green on the blue row.
    """
    p = _check_pattern(pattern)
    pos = [(0, 0), (0, 1), (1, 0), (1, 1)]
    out: dict[str, tuple[slice, slice]] = {}
    red_row = pos[p.index("R")][0]
    for (dy, dx), c in zip(pos, p):
        name = c if c != "G" else ("G1" if dy == red_row else "G2")
        out[name] = (slice(dy, None, 2), slice(dx, None, 2))
    return out


def mosaic(rgb: np.ndarray, pattern: str, *, dtype=np.float32) -> np.ndarray:
    """Sample a ``(3, H, W)`` colour image through a CFA: the inverse of debayering.

    Used to build synthetic raw frames with known colours (tests, the simulator).
    ``dtype`` of the result (default float32); None keeps the input's.
    """
    cf = cfa_color_index(pattern)
    rgb = np.asarray(rgb, dtype=dtype)
    out = np.empty(rgb.shape[1:], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = rgb[cf[dy, dx], dy::2, dx::2]
    return out


@njit(cache=True, inline="always")
def _mirror(i, n):
    # Reflect about the edge without repeating it (-1 -> 1, n -> n-2): keeps the CFA
    # parity, so a reflected neighbour has the same colour as the true one would.
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


@njit(cache=True, nogil=True, aot="void(f4[:, ::1], f4[:, ::1], f4[:, ::1], i8, i8)")
def _scale_cells_rows(a, fcell, out, y0, y1):
    # out[y, x] = a[y, x] * fcell[y % 2, x % 2], rows y0..y1 (run_in_threads)
    h, w = a.shape
    for y in range(y0, y1):
        f0 = fcell[y & 1, 0]
        f1 = fcell[y & 1, 1]
        for x in range(0, w - 1, 2):
            out[y, x] = a[y, x] * f0
            out[y, x + 1] = a[y, x + 1] * f1
        if w & 1:
            out[y, w - 1] = a[y, w - 1] * f0


def _plane_median(plane: np.ndarray, step: int) -> float:
    sub = plane[::step, ::step]
    return float(np.median(sub))


def equalize_cfa(data: np.ndarray, pattern: str, *, return_factors: bool = False):
    """Scale the R, G1, G2, B planes of a mosaic so that their medians are equal.

    The common level is the mean of the two green medians, so green keeps its scale.
    Applied to a light, this makes a grey sky grey whatever the sensor's colour
    response (what Siril's ``-equalize_cfa`` does for flats); applied to a flat, it
    stops the flat from tinting the image.

    Parameters
    ----------
    data : ndarray (H, W)
        The mosaic (not modified).
    pattern : str
        CFA pattern of ``data[0, 0]``.
    return_factors : bool, default False
        Also return the four factors (R, G1, G2, B).

    Returns
    -------
    ndarray (H, W) float32 [, ndarray (4,)]
    """
    sl = cfa_plane_slices(pattern)
    # Medians on every 4th sample of each plane in each direction (1/16 of it, still
    # ~47k values on 2000x1500): a background median within noise of the full one.
    med = {k: _plane_median(data[s], 4) for k, s in sl.items()}
    ref = 0.5 * (med["G1"] + med["G2"])
    factors = []
    fcell = np.ones((2, 2), np.float32)
    for k in ("R", "G1", "G2", "B"):
        f = ref / med[k] if med[k] > 0 and ref > 0 else 1.0
        factors.append(f)
        fcell[sl[k][0].start, sl[k][1].start] = np.float32(f)
    # one fused copy-and-scale pass instead of a copy plus four strided multiplies
    src = np.asarray(data)
    if src.dtype != np.float32 or src.ndim != 2:
        src = np.asarray(src, dtype=np.float32)
    out = np.empty(src.shape, np.float32)
    run_in_threads(_scale_cells_rows, src.shape[0], np.ascontiguousarray(src), fcell, out)
    if return_factors:
        return out, np.array(factors)
    return out


def cfa_luminance(data2d: np.ndarray, pattern: str | None = None) -> np.ndarray:
    """Luminance of a CFA mosaic without a full debayer, ``(H, W)`` float32.

    The separable [1 2 1]/4 x [1 2 1]/4 filter weighs every 3x3 neighbourhood of a
    Bayer mosaic exactly as R/4 + G/2 + B/4, whatever the centre's colour, so stars
    keep their position and shape for detection. For mono data (``pattern`` None)
    the data are returned as float32.
    """
    data = np.asarray(data2d, dtype=np.float32)
    if pattern is None:
        return data
    _check_pattern(pattern)
    out = np.empty(data.shape, np.float32)
    run_in_threads(_lum_kernel_rows, data.shape[0], np.ascontiguousarray(data), out)
    return out


@njit(cache=True, nogil=True, aot="void(f4[:, ::1], f4[:, ::1], i8, i8)")
def _lum_kernel_rows(a, out, r0_, r1_):
    h, w = a.shape
    for y in range(r0_, r1_):
        y0 = _mirror(y - 1, h)
        y2 = _mirror(y + 1, h)
        for x in range(w):
            x0 = _mirror(x - 1, w)
            x2 = _mirror(x + 1, w)
            r0 = a[y0, x0] + 2.0 * a[y0, x] + a[y0, x2]
            r1 = a[y, x0] + 2.0 * a[y, x] + a[y, x2]
            r2 = a[y2, x0] + 2.0 * a[y2, x] + a[y2, x2]
            out[y, x] = (r0 + 2.0 * r1 + r2) * np.float32(1.0 / 16.0)
