"""Cosmetic correction: hot and cold (dead) pixels found against their same-colour
neighbours, in a master dark or voted by the lights themselves, stored as a
:class:`BadPixelMap` (CSV or FITS) and replaced by the median of their good
same-colour neighbours."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from numba import njit

from .errors import BadInputError
from .image import AstroImage
from .stats import median_mad_sigma, run_in_threads, subsample

__all__ = ["BadPixelMap", "find_bad_pixels", "BadPixelAccumulator", "correct_bad_pixels",
           "correct_bad_pixels_array", "HOT", "COLD"]


# ----------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _median_small(buf, n):
    # insertion sort of the first n values (n <= 24 here: the border of the 8-neighbour
    # residual and the replacement's rings); median of the sorted prefix
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    if n == 0:
        return np.float32(np.nan)
    if n & 1:
        return buf[n // 2]
    return np.float32(0.5) * (buf[n // 2 - 1] + buf[n // 2])


@njit(cache=True, inline="always")
def _cs(a, b):
    return (a, b) if a <= b else (b, a)


@njit(cache=True, nogil=True)
def _median8_net(v0, v1, v2, v3, v4, v5, v6, v7):
    # Batcher's odd-even merge sorting network (19 compare-swaps) on registers:
    # 30 ms for 3 Mpx against 300 ms for an insertion sort in a scratch array.
    v0, v1 = _cs(v0, v1)
    v2, v3 = _cs(v2, v3)
    v4, v5 = _cs(v4, v5)
    v6, v7 = _cs(v6, v7)
    v0, v2 = _cs(v0, v2)
    v1, v3 = _cs(v1, v3)
    v4, v6 = _cs(v4, v6)
    v5, v7 = _cs(v5, v7)
    v1, v2 = _cs(v1, v2)
    v5, v6 = _cs(v5, v6)
    v0, v4 = _cs(v0, v4)
    v1, v5 = _cs(v1, v5)
    v2, v6 = _cs(v2, v6)
    v3, v7 = _cs(v3, v7)
    v2, v4 = _cs(v2, v4)
    v3, v5 = _cs(v3, v5)
    v1, v2 = _cs(v1, v2)
    v3, v4 = _cs(v3, v4)
    v5, v6 = _cs(v5, v6)
    return np.float32(0.5) * (v3 + v4)


@njit(cache=True, nogil=True)
def _residual_kernel_rows(a, step, out, i0, i1):
    """out = a - median of the 8 same-colour neighbours at distance ``step``."""
    h, w = a.shape
    s = step
    for y in range(i0, i1):
        buf = np.empty(8, np.float32)
        interior_row = s <= y < h - s
        for x in range(w):
            if interior_row and s <= x < w - s:
                out[y, x] = a[y, x] - _median8_net(
                    a[y - s, x - s], a[y - s, x], a[y - s, x + s], a[y, x - s],
                    a[y, x + s], a[y + s, x - s], a[y + s, x], a[y + s, x + s])
                continue
            n = 0
            for dy in (-s, 0, s):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in (-s, 0, s):
                    if dy == 0 and dx == 0:
                        continue
                    xx = x + dx
                    if xx < 0 or xx >= w:
                        continue
                    buf[n] = a[yy, xx]
                    n += 1
            out[y, x] = a[y, x] - _median_small(buf, n)


def _residual_kernel(a, step, out):
    """:func:`_residual_kernel_rows` over all rows, in threads."""
    run_in_threads(_residual_kernel_rows, a.shape[0], a, step, out)


@njit(cache=True, nogil=True)
def _replacement_rows(a, rows, cols, bad, step, vals, i0, i1):
    """``vals[i]``: the median of the good same-colour neighbours of listed pixel i."""
    h, w = a.shape
    for i in range(i0, i1):
        y = rows[i]
        x = cols[i]
        buf = np.empty(24, np.float32)
        m = 0
        # 8 same-colour neighbours first; if all are bad, widen to distance 2*step.
        for ring in (1, 2):
            if m > 0:
                break
            r = ring * step
            for dy in range(-r, r + 1, step):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-r, r + 1, step):
                    if dy == 0 and dx == 0:
                        continue
                    if ring == 2 and abs(dy) < r and abs(dx) < r:
                        continue
                    xx = x + dx
                    if xx < 0 or xx >= w or bad[yy, xx]:
                        continue
                    if m < 24:
                        buf[m] = a[yy, xx]
                        m += 1
        vals[i] = a[y, x] if m == 0 else _median_small(buf, m)


def _replace_kernel(a, rows, cols, bad, step):
    """Replace listed pixels by the median of their good same-colour neighbours (all
    medians from the uncorrected frame, in threads, then written)."""
    vals = np.empty(rows.size, np.float32)
    run_in_threads(_replacement_rows, rows.size, a, rows, cols, bad, step, vals)
    a[rows, cols] = vals


# ----------------------------------------------------------------------------- helpers
def _step(pattern: str | None) -> int:
    return 2 if pattern else 1


def _planes(pattern: str | None) -> list[tuple[slice, slice]]:
    """Slices of the colour planes of a mosaic (4 for CFA, 1 for mono)."""
    if not pattern:
        return [(slice(None), slice(None))]
    return [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]


# ------------------------------------------------------------------------- bad pixels
HOT, COLD = 1, 2


@dataclasses.dataclass
class BadPixelMap:
    """Hot and cold pixels of a sensor.

    Attributes
    ----------
    rows, cols : ndarray of int64
        Coordinates (row = y, column = x, 0-based, in the frames' pixel grid).
    kind : ndarray of uint8
        1 = hot, 2 = cold.
    shape : (int, int)
        ``(H, W)`` of the frames the map belongs to.
    """

    rows: np.ndarray
    cols: np.ndarray
    kind: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, np.int64).ravel()
        self.cols = np.asarray(self.cols, np.int64).ravel()
        self.kind = np.asarray(self.kind, np.uint8).ravel()
        self.shape = (int(self.shape[0]), int(self.shape[1]))

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def n_hot(self) -> int:
        return int(np.count_nonzero(self.kind == HOT))

    @property
    def n_cold(self) -> int:
        return int(np.count_nonzero(self.kind == COLD))

    @classmethod
    def empty(cls, shape) -> "BadPixelMap":
        z = np.zeros(0, np.int64)
        return cls(z, z, np.zeros(0, np.uint8), shape)

    @classmethod
    def from_mask(cls, hot: np.ndarray, cold: np.ndarray | None = None) -> "BadPixelMap":
        """From boolean ``(H, W)`` masks of hot (and cold) pixels."""
        hr, hc = np.nonzero(hot)
        rows, cols, kind = [hr], [hc], [np.full(hr.size, HOT, np.uint8)]
        if cold is not None:
            cr, cc = np.nonzero(cold & ~hot)
            rows.append(cr)
            cols.append(cc)
            kind.append(np.full(cr.size, COLD, np.uint8))
        return cls(np.concatenate(rows), np.concatenate(cols), np.concatenate(kind), hot.shape)

    def mask(self) -> np.ndarray:
        """Boolean ``(H, W)``: True at bad pixels."""
        m = np.zeros(self.shape, bool)
        m[self.rows, self.cols] = True
        return m

    def union(self, other: "BadPixelMap | None") -> "BadPixelMap":
        if other is None or len(other) == 0:
            return self
        if other.shape != self.shape:
            raise BadInputError(None, f"bad-pixel maps of different sizes {self.shape} and "
                                      f"{other.shape}")
        img = np.zeros(self.shape, np.uint8)
        img[other.rows, other.cols] = other.kind
        img[self.rows, self.cols] = self.kind
        r, c = np.nonzero(img)
        return BadPixelMap(r, c, img[r, c], self.shape)

    def save(self, path: "str | os.PathLike[str]", *, overwrite: bool = False) -> Path:
        """Write as FITS (uint8 image: 0 good, 1 hot, 2 cold) or CSV (``x,y,kind``)."""
        from .io._atomic import atomic_output

        p = Path(path)
        if p.suffix.lower() == ".csv":
            with atomic_output(p, overwrite=overwrite) as tmp:
                with open(tmp, "w") as fh:
                    fh.write(f"# napari-astro bad-pixel map; width={self.shape[1]} "
                             f"height={self.shape[0]}; kind 1=hot 2=cold\n")
                    fh.write("x,y,kind\n")
                    for y, x, k in zip(self.rows.tolist(), self.cols.tolist(),
                                       self.kind.tolist()):
                        fh.write(f"{x},{y},{'hot' if k == HOT else 'cold'}\n")
            return p
        from astropy.io import fits

        img = np.zeros(self.shape, np.uint8)
        img[self.rows, self.cols] = self.kind
        hdu = fits.PrimaryHDU(img)
        hdu.header["IMAGETYP"] = "Bad Pixel Map"
        hdu.header["NHOT"] = self.n_hot
        hdu.header["NCOLD"] = self.n_cold
        hdu.header["COMMENT"] = "0 good, 1 hot, 2 cold"
        with atomic_output(p, overwrite=overwrite) as tmp:
            hdu.writeto(tmp)
        return p

    @classmethod
    def load(cls, path: "str | os.PathLike[str]", shape: tuple[int, int] | None = None
             ) -> "BadPixelMap":
        """Read a map written by :meth:`save` (CSV may also be plain ``x,y`` lines).

        Raises :class:`BadInputError` naming the file if it is unreadable, or if
        ``shape`` is given and does not match.
        """
        p = Path(path)
        if not p.is_file():
            raise BadInputError(p, "bad-pixel map not found")
        if p.suffix.lower() == ".csv":
            rows, cols, kinds = [], [], []
            width = height = None
            try:
                for line in p.read_text().splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    if line.startswith("#"):
                        for tok in line.replace(";", " ").split():
                            if tok.startswith("width="):
                                width = int(tok[6:])
                            elif tok.startswith("height="):
                                height = int(tok[7:])
                        continue
                    parts = [s.strip() for s in line.split(",")]
                    if parts[0].lower() == "x":
                        continue
                    cols.append(int(float(parts[0])))
                    rows.append(int(float(parts[1])))
                    k = parts[2].lower() if len(parts) > 2 else "hot"
                    kinds.append(COLD if k in ("cold", "2") else HOT)
            except (ValueError, IndexError) as exc:
                raise BadInputError(p, f"not a bad-pixel CSV (x,y[,kind]): {exc}") from None
            if width is None or height is None:
                if shape is None:
                    shape = (max(rows, default=0) + 1, max(cols, default=0) + 1)
                file_shape = shape
            else:
                file_shape = (height, width)
            m = cls(np.array(rows), np.array(cols), np.array(kinds), file_shape)
        else:
            try:
                from astropy.io import fits

                with fits.open(p) as hdul:
                    img = np.asarray(hdul[0].data)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
                raise BadInputError(p, f"cannot read bad-pixel map ({exc})") from None
            if img.ndim != 2:
                raise BadInputError(p, "bad-pixel map must be a 2-D image")
            r, c = np.nonzero(img)
            kinds = np.where(img[r, c] == COLD, COLD, HOT)
            m = cls(r, c, kinds, img.shape)
        if shape is not None and tuple(shape) != m.shape:
            raise BadInputError(p, f"bad-pixel map is {m.shape[1]}x{m.shape[0]}, frames are "
                                   f"{shape[1]}x{shape[0]}")
        if len(m) and (m.rows.max() >= m.shape[0] or m.cols.max() >= m.shape[1]
                       or m.rows.min() < 0 or m.cols.min() < 0):
            raise BadInputError(p, "bad-pixel coordinates outside the frame")
        return m


def _residual(data: np.ndarray, pattern: str | None) -> np.ndarray:
    a = np.ascontiguousarray(data, np.float32)
    r = np.empty_like(a)
    _residual_kernel(a, _step(pattern), r)
    return r


def _thresholds(res: np.ndarray, pattern: str | None, hot_sigma: float, cold_sigma: float,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Hot and cold masks: residual beyond ``sigma`` x the plane's robust sigma."""
    hot = np.zeros(res.shape, bool)
    cold = np.zeros(res.shape, bool)
    for sl in _planes(pattern):
        plane = res[sl]
        # ~60 k samples give the plane's median and robust sigma to ~0.5 %; the
        # default 250 k left Seestar CFA planes (0.5 Mpx) unsubsampled: 75 ms a frame
        sub = subsample(plane, 60_000)
        med, s = median_mad_sigma(sub)
        if s <= 0:  # e.g. a synthetic noiseless frame: fall back to the mean deviation
            s = float(np.mean(np.abs(sub - med))) or 1e-12
        hot[sl] = plane > med + hot_sigma * s
        cold[sl] = plane < med - cold_sigma * s
    return hot, cold


def find_bad_pixels(image, *, pattern: str | None = None, hot_sigma: float = 5.0,
                    cold_sigma: float = 5.0, max_fraction: float = 0.01) -> BadPixelMap:
    """Hot and cold pixels of one frame (a master dark, or a light without darks).

    A pixel is hot (cold) when it exceeds (falls below) the median of its 8
    same-colour neighbours by more than ``hot_sigma`` (``cold_sigma``) robust sigmas
    of that difference over its colour plane.

    Parameters
    ----------
    image : AstroImage or ndarray (H, W)
        Raw frame (not debayered); ``image.bayer`` gives the CFA pattern.
    pattern : str, optional
        CFA pattern (overrides ``image.bayer``); None for mono.
    hot_sigma, cold_sigma : float, default 5.0
    max_fraction : float, default 0.01
        At most this fraction of the pixels is flagged (the most deviant ones); a
        threshold that flags more is raised so cosmetic correction never blurs the
        whole frame.

    Returns
    -------
    BadPixelMap
    """
    if isinstance(image, AstroImage):
        pattern = pattern or image.bayer
        data = image.data
    else:
        data = np.asarray(image)
    if data.ndim != 2:
        raise BadInputError(getattr(image, "path", None), "bad pixels are found on 2-D raw frames")
    res = _residual(data, pattern)
    hot, cold = _thresholds(res, pattern, hot_sigma, cold_sigma)
    hot, cold = _cap(res, hot, cold, max_fraction)
    return BadPixelMap.from_mask(hot, cold)


def _cap(res, hot, cold, max_fraction):
    limit = int(max_fraction * res.size)
    for m, sign in ((hot, 1.0), (cold, -1.0)):
        n = int(np.count_nonzero(m))
        if n > limit > 0:
            vals = sign * res[m]
            thr = np.partition(vals, n - limit)[n - limit]
            m &= (sign * res) >= thr
    return hot, cold


class BadPixelAccumulator:
    """Find hot/cold pixels from the lights themselves (no darks).

    Each light votes for the pixels that are outliers against their same-colour
    neighbours; a pixel is bad when at least ``min_fraction`` of the lights (and at
    least 2) agree. Stars and cosmic rays move or vanish between dithered frames, a
    defective pixel stays.

    Parameters
    ----------
    shape : (int, int)
    pattern : str or None
        CFA pattern; None for mono.
    hot_sigma, cold_sigma : float, default 5.0
    min_fraction : float, default 0.5
    """

    def __init__(self, shape, pattern: str | None, *, hot_sigma: float = 5.0,
                 cold_sigma: float = 5.0, min_fraction: float = 0.5) -> None:
        self.shape = tuple(shape)
        self.pattern = pattern
        self.hot_sigma, self.cold_sigma, self.min_fraction = hot_sigma, cold_sigma, min_fraction
        self.hot = np.zeros(self.shape, np.uint16)
        self.cold = np.zeros(self.shape, np.uint16)
        self.n = 0

    def add(self, data: np.ndarray) -> None:
        """Vote with one raw (or bias/flat-calibrated) light ``(H, W)``."""
        res = _residual(data, self.pattern)
        hot, cold = _thresholds(res, self.pattern, self.hot_sigma, self.cold_sigma)
        # A hot pixel is a lone spike: its 4 adjacent pixels (other CFA colours, each
        # measured against its own same-colour neighbours) show no excess. A star core
        # that stays on the same pixels all night (undithered, e.g. the Seestar M94
        # sessions) lights its neighbours too and must not be "corrected": that moved
        # bright-star centroids by up to 1.4 px before registration.
        adj = np.zeros_like(res)
        adj[1:] += res[:-1]
        adj[:-1] += res[1:]
        adj[:, 1:] += res[:, :-1]
        adj[:, :-1] += res[:, 1:]
        hot &= adj < 4 * 0.25 * res
        self.hot += hot
        self.cold += cold
        self.n += 1

    def result(self) -> BadPixelMap:
        need = max(2, int(np.ceil(self.min_fraction * self.n)))
        if self.n < 2:
            need = 1
        return BadPixelMap.from_mask(self.hot >= need, self.cold >= need)


def correct_bad_pixels_array(data: np.ndarray, bad: BadPixelMap, *,
                             pattern: str | None = None, inplace: bool = False) -> np.ndarray:
    """Replace bad pixels by the median of their good same-colour neighbours.

    For a CFA mosaic the neighbours are the 8 pixels of the same colour at distance 2
    (widened to the next ring if all 8 are bad); for mono, the 8 adjacent pixels.
    """
    a = data if inplace else np.array(data, dtype=np.float32, copy=True)
    if len(bad) == 0:
        return a
    if a.shape != bad.shape:
        raise BadInputError(None, f"bad-pixel map {bad.shape[1]}x{bad.shape[0]} does not fit the "
                                  f"frame {a.shape[1]}x{a.shape[0]}")
    _replace_kernel(a, bad.rows, bad.cols, bad.mask(), _step(pattern))
    return a


def correct_bad_pixels(image: AstroImage, bad_pixel_map: BadPixelMap, *,
                       pattern: str | None = None) -> AstroImage:
    """:func:`correct_bad_pixels_array` on an :class:`AstroImage` (2-D raw frame).

    Returns a new image with a HISTORY line ``pre.cosmetic {"hot": n, "cold": m}``.
    """
    if image.data.ndim != 2:
        raise BadInputError(image.path, "cosmetic correction works on raw 2-D frames "
                                        "(before debayering)")
    pat = pattern or image.bayer
    out = correct_bad_pixels_array(image.data, bad_pixel_map, pattern=pat)
    return image.derive(out, "pre.cosmetic", {"hot": bad_pixel_map.n_hot,
                                              "cold": bad_pixel_map.n_cold})
