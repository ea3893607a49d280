"""Calibration arithmetic: lights from masters, flat normalisation, dark scaling and
optimisation, bad (hot/cold) pixel detection and correction.

The contract is the classic one::

    calibrated = (L - D) / normalise(F - B) + pedestal

where the master dark ``D`` already contains the bias (same exposure and temperature
as the light) and the master flat ``F`` was calibrated by the master bias ``B`` or a
flat-dark. When no dark of the light's exposure exists the bias-subtracted
("thermal") dark is scaled: ``L - B - k (D - B)`` with ``k = t_light / t_dark``
(:func:`dark_scale_for_exposure`) or the ``k`` that minimises the calibrated frame's
noise (:func:`optimize_dark_scale`, as PixInsight and DeepSkyStacker do).

Flats of one-shot-colour sensors are normalised per CFA colour (each of R, G1, G2, B
divided by its own median) so that a tinted flat panel does not tint the image.

The per-pixel arithmetic is one fused numba pass (2.0 ms for a 2000x1500 frame on the
2-core test machine, against 4.8 ms for the numpy expression with its temporaries).

Values are in the reader's [0, 1] units throughout. A ``pedestal`` is added after
calibration so that faint sky minus noise is not clipped at zero; it is recorded in
the header (``PEDESTAL``, same units) and in HISTORY.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import numpy as np
from numba import njit, prange

from .errors import BadInputError
from .image import AstroImage

__all__ = [
    "calibrate", "calibrate_arrays", "normalize_flat", "flat_inverse", "check_flat",
    "dark_scale_for_exposure", "optimize_dark_scale", "auto_pedestal",
    "BadPixelMap", "find_bad_pixels", "BadPixelAccumulator", "correct_bad_pixels",
    "correct_bad_pixels_array", "robust_sigma", "subtract", "HOT", "COLD",
]

# A flat whose normalised value is below this is no flat at all (dead or fully
# vignetted pixels): leave those pixels undivided instead of multiplying noise by 100.
MIN_FLAT = 0.02
# Full-scale level that counts as saturated in [0, 1] data (16-bit: 65470 ADU).
SATURATED = 0.999


# ----------------------------------------------------------------------------- kernels
@njit(cache=True, parallel=True, nogil=True)
def _calib_kernel(light, offset, use_offset, thermal, k, use_thermal, inv_flat, use_flat,
                  pedestal, lo, hi, out):
    h, w = light.shape
    for y in prange(h):
        for x in range(w):
            v = light[y, x]
            if use_offset:
                v -= offset[y, x]
            if use_thermal:
                v -= k * thermal[y, x]
            if use_flat:
                v *= inv_flat[y, x]
            v += pedestal
            if v < lo:
                v = lo
            elif v > hi:
                v = hi
            out[y, x] = v


@njit(cache=True, parallel=True, nogil=True)
def _sub_kernel(a, b, out):
    h, w = a.shape
    for y in prange(h):
        for x in range(w):
            out[y, x] = a[y, x] - b[y, x]


@njit(cache=True, inline="always")
def _median8(buf, n):
    # insertion sort of n <= 8 values; median of the sorted prefix
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


@njit(cache=True, parallel=True, nogil=True)
def _residual_kernel(a, step, out):
    """out = a - median of the 8 same-colour neighbours at distance ``step``."""
    h, w = a.shape
    s = step
    for y in prange(h):
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
            out[y, x] = a[y, x] - _median8(buf, n)


@njit(cache=True, parallel=True, nogil=True)
def _replace_kernel(a, rows, cols, bad, step):
    """Replace listed pixels by the median of their good same-colour neighbours."""
    h, w = a.shape
    n = rows.size
    vals = np.empty(n, np.float32)
    for i in prange(n):
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
        if m == 0:
            vals[i] = a[y, x]
        else:
            # insertion sort (m <= 24)
            for p in range(1, m):
                v = buf[p]
                j = p - 1
                while j >= 0 and buf[j] > v:
                    buf[j + 1] = buf[j]
                    j -= 1
                buf[j + 1] = v
            vals[i] = buf[m // 2] if m & 1 else np.float32(0.5) * (buf[m // 2 - 1] + buf[m // 2])
    for i in prange(n):
        a[rows[i], cols[i]] = vals[i]


@njit(cache=True, parallel=True, nogil=True)
def _highpass_kernel(a, step, out):
    """a minus the mean of its 4 same-colour cardinal neighbours (0 at the border)."""
    h, w = a.shape
    for y in prange(h):
        for x in range(w):
            if y < step or y >= h - step or x < step or x >= w - step:
                out[y, x] = 0.0
            else:
                out[y, x] = a[y, x] - np.float32(0.25) * (a[y - step, x] + a[y + step, x]
                                                          + a[y, x - step] + a[y, x + step])


# ----------------------------------------------------------------------------- helpers
def _arr(x) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, AstroImage):
        x = x.data
    return np.ascontiguousarray(x, dtype=np.float32)


def _step(pattern: str | None) -> int:
    return 2 if pattern else 1


def _planes(pattern: str | None) -> list[tuple[slice, slice]]:
    """Slices of the colour planes of a mosaic (4 for CFA, 1 for mono)."""
    if not pattern:
        return [(slice(None), slice(None))]
    return [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (Gaussian-consistent), float."""
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        return 0.0
    med = np.median(v)
    return float(1.4826 * np.median(np.abs(v - med)))


def _subsample(a: np.ndarray, target: int = 250_000) -> np.ndarray:
    """A strided subsample of ~``target`` values (statistics on 3 Mpx cost 40 ms, on
    250 kpx 3 ms, with the same median to 0.1 %)."""
    step = max(1, int(np.sqrt(a.size / target)))
    return a[::step, ::step]


# ------------------------------------------------------------------------ arithmetic
def calibrate_arrays(light: np.ndarray, *, offset: np.ndarray | None = None,
                     thermal: np.ndarray | None = None, dark_scale: float = 1.0,
                     inv_flat: np.ndarray | None = None, pedestal: float = 0.0,
                     clip: tuple[float, float] | None = (0.0, 1.0),
                     out: np.ndarray | None = None) -> np.ndarray:
    """``((light - offset - dark_scale * thermal) * inv_flat + pedestal)`` in one pass.

    Parameters
    ----------
    light : ndarray (H, W)
        Raw light, [0, 1] units.
    offset : ndarray (H, W), optional
        What is subtracted as is: the master dark (which contains the bias) when it
        matches the light, else the master bias.
    thermal : ndarray (H, W), optional
        Bias-subtracted master dark, subtracted times ``dark_scale``.
    dark_scale : float, default 1.0
    inv_flat : ndarray (H, W), optional
        1 / normalised flat (:func:`flat_inverse`).
    pedestal : float, default 0.0
        Added at the end, [0, 1] units.
    clip : (float, float) or None, default (0, 1)
        Output range; None keeps every value.
    out : ndarray (H, W) float32, optional
        Destination (may be ``light`` itself).

    Returns
    -------
    ndarray (H, W) float32
    """
    light = np.ascontiguousarray(light, dtype=np.float32)
    if light.ndim != 2:
        raise ValueError("calibration works on 2-D frames (mono or raw CFA)")
    dummy = np.zeros((1, 1), np.float32)
    for name, a in (("offset", offset), ("thermal", thermal), ("inv_flat", inv_flat)):
        if a is not None and a.shape != light.shape:
            raise ValueError(f"{name} shape {a.shape} != light {light.shape}")
    if out is None:
        out = np.empty_like(light)
    lo, hi = (-np.inf, np.inf) if clip is None else clip
    _calib_kernel(light,
                  dummy if offset is None else np.ascontiguousarray(offset, np.float32),
                  offset is not None,
                  dummy if thermal is None else np.ascontiguousarray(thermal, np.float32),
                  np.float32(dark_scale), thermal is not None,
                  dummy if inv_flat is None else np.ascontiguousarray(inv_flat, np.float32),
                  inv_flat is not None, np.float32(pedestal), np.float32(lo), np.float32(hi),
                  out)
    return out


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` as float32 in one parallel pass (e.g. thermal = dark - bias)."""
    a = np.ascontiguousarray(a, np.float32)
    out = np.empty_like(a)
    _sub_kernel(a, np.ascontiguousarray(b, np.float32), out)
    return out


def normalize_flat(flat: np.ndarray, pattern: str | None = None) -> np.ndarray:
    """Flat divided by its mean, per CFA colour plane for one-shot-colour sensors.

    Parameters
    ----------
    flat : ndarray (H, W)
        Bias- (or flat-dark-) subtracted master flat.
    pattern : str, optional
        CFA pattern; each of the four planes (R, G1, G2, B) is divided by its own
        mean so that the flat corrects vignetting and dust but not colour.

    Returns
    -------
    ndarray (H, W) float32, mean 1 in each plane.
    """
    f = np.array(flat, dtype=np.float32, copy=True)
    for sl in _planes(pattern):
        # The mean (PixInsight's and Siril's choice, and the simulator's truth), in
        # float64 so 3 Mpx of float32 do not lose precision.
        level = float(np.mean(f[sl], dtype=np.float64))
        if not level > 0:
            raise BadInputError(None, "flat has no positive signal after bias subtraction")
        f[sl] *= np.float32(1.0 / level)
    return f


def flat_inverse(flat: np.ndarray, pattern: str | None = None, *,
                 normalized: bool = False) -> np.ndarray:
    """``1 / normalize_flat(flat)``, with 1 where the flat is (near) zero.

    Multiplying by a stored inverse is cheaper than dividing every light.
    """
    f = flat if normalized else normalize_flat(flat, pattern)
    f = np.asarray(f, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(f > MIN_FLAT, np.float32(1.0) / f, np.float32(1.0)).astype(np.float32)
    return inv


def check_flat(data: np.ndarray, path, *, offset: np.ndarray | float | None = None) -> None:
    """Raise :class:`BadInputError` naming ``path`` for a flat that cannot be used.

    A flat is refused when it is all zero or not positive (after subtracting
    ``offset``, the master bias or flat-dark), or saturated (more than 1 % of its
    pixels, or its median, at full scale).
    """
    sub = _subsample(np.asarray(data), 100_000)
    if not np.isfinite(sub).all():
        raise BadInputError(path, "flat holds NaN or infinite values")
    if float(np.max(sub)) <= 0.0:
        raise BadInputError(path, "flat is zero everywhere")
    med = float(np.median(sub))
    sat = float(np.mean(sub >= SATURATED))
    if med >= SATURATED or sat > 0.01:
        raise BadInputError(path, f"flat is saturated ({100 * sat:.1f} % of pixels at full scale; "
                                  "shorten the flat exposure)")
    if offset is not None:
        off = float(np.median(_subsample(np.asarray(offset), 400_000))) \
            if isinstance(offset, np.ndarray) else float(offset)
        med -= off
    if med <= 0.0:
        raise BadInputError(path, "flat is zero or negative after bias subtraction "
                                  f"(median {med:.5f})")


def dark_scale_for_exposure(t_light: float | None, t_dark: float | None, path=None) -> float:
    """``t_light / t_dark`` for scaling a bias-subtracted dark (dark current is linear
    in time); :class:`BadInputError` when either exposure is unknown or not positive."""
    if not t_light or not t_dark or t_light <= 0 or t_dark <= 0:
        raise BadInputError(path, f"cannot scale the dark: exposure unknown (light {t_light}, "
                                  f"dark {t_dark})")
    return float(t_light) / float(t_dark)


def optimize_dark_scale(light_minus_bias: np.ndarray, thermal: np.ndarray, *,
                        pattern: str | None = None, exclude: np.ndarray | None = None,
                        threshold: float = 3.0, clip_sigma: float = 4.0,
                        iterations: int = 4) -> float:
    """Dark factor ``k`` that minimises the noise of ``light_minus_bias - k * thermal``.

    The fixed pattern a dark removes (hot and warm pixels, amp glow) is high-frequency,
    the sky is not: ``k`` is the least-squares fit of the high-pass filtered light
    (minus same-colour neighbours) on the high-pass filtered thermal dark, which is
    the minimum of the high-frequency variance of the calibrated frame. As in
    PixInsight's "optimization threshold", only pixels whose thermal signal stands
    ``threshold`` robust sigmas above the dark's median take part: elsewhere the
    master dark's own noise rivals its signal and would bias ``k`` towards zero
    (regression dilution: 0.99 instead of 2 on the simulated night). Pixels whose
    residual deviates by more than ``clip_sigma`` robust sigmas (stars, cosmic rays)
    are dropped and the fit repeated.

    Parameters
    ----------
    light_minus_bias, thermal : ndarray (H, W)
    pattern : str, optional
        CFA pattern (the high-pass compares same-colour neighbours).
    exclude : ndarray of bool (H, W), optional
        Pixels to leave out, e.g. saturated in the light or the dark: a hot pixel
        clipped at full scale is not linear in exposure and would drag ``k`` down.
        Their 4 same-colour neighbours are left out too (their high-pass holds it).

    Returns
    -------
    float, >= 0.
    """
    step = _step(pattern)
    lb = np.ascontiguousarray(light_minus_bias, np.float32)
    th = np.ascontiguousarray(thermal, np.float32)
    hl = np.empty_like(lb)
    ht = np.empty_like(th)
    _highpass_kernel(lb, step, hl)
    _highpass_kernel(th, step, ht)
    hl = hl.ravel().astype(np.float64)
    ht = ht.ravel().astype(np.float64)
    tsub = _subsample(th)
    tmed = float(np.median(tsub))
    tsig = robust_sigma(tsub)
    keep = (th > tmed + threshold * tsig).ravel()
    if np.count_nonzero(keep) < 50:   # a dark without hot pixels: use everything
        keep = np.ones(hl.size, bool)
    if exclude is not None and exclude.any():
        ex = np.asarray(exclude, bool).copy()
        ex0 = ex.copy()
        ex[step:] |= ex0[:-step]
        ex[:-step] |= ex0[step:]
        ex[:, step:] |= ex0[:, :-step]
        ex[:, :-step] |= ex0[:, step:]
        keep &= ~ex.ravel()
    k = 1.0
    for _ in range(iterations):
        denom = float(np.dot(ht[keep], ht[keep]))
        if denom <= 0:
            return 1.0
        k = float(np.dot(hl[keep], ht[keep])) / denom
        r = hl - k * ht
        s = robust_sigma(r[::7].astype(np.float32))
        if s <= 0:
            break
        new = (np.abs(r) < clip_sigma * s) & keep
        if (new == keep).all():
            break
        keep = new
    return max(0.0, k)


def auto_pedestal(data: np.ndarray, *, pattern: str | None = None, minimum: float = 0.0,
                  nsigma: float = 5.0) -> float:
    """Smallest pedestal that keeps the sky of a calibrated frame off zero.

    Per colour plane (4 for a CFA mosaic, whose colours differ in level):
    ``max(minimum, nsigma * sigma - median, -(0.01 % quantile))``, rounded up to a
    whole 16-bit step. A sky whose median is less than ``nsigma`` noise sigmas above
    zero is lifted to that level, and the darkest 0.01 % of pixels are not clipped.
    """
    a = np.asarray(data, np.float32)
    p = max(float(minimum), 0.0)
    for sl in _planes(pattern):
        sub = _subsample(a[sl])
        med = float(np.median(sub))
        sig = robust_sigma(sub)
        low = float(np.quantile(sub, 1e-4))
        p = max(p, nsigma * sig - med, -low)
    return float(np.ceil(p * 65535.0) / 65535.0) if p > 0 else 0.0


def calibrate(light: AstroImage, *, bias=None, dark=None, flat=None, dark_scale: float = 1.0,
              pedestal: float = 0.0, dark_has_bias: bool = True,
              flat_pattern: str | None = None,
              clip: tuple[float, float] | None = (0.0, 1.0)) -> AstroImage:
    """Calibrate one light: ``(L - D) / normalise(F) + pedestal``.

    Parameters
    ----------
    light : AstroImage
        2-D raw light (mono or CFA mosaic), [0, 1] units.
    bias, dark, flat : AstroImage or ndarray (H, W), optional
        Master bias; master dark (containing the bias unless ``dark_has_bias`` is
        False); master flat, already bias- or flat-dark-subtracted, not normalised
        (it is normalised here, per CFA colour if the light is a mosaic). Any may be
        missing: a missing dark subtracts only the bias, a missing flat divides by
        nothing.
    dark_scale : float, default 1.0
        Factor on the thermal part of the dark (``D - B``). Values other than 1 need
        a bias (unless ``dark_has_bias`` is False).
    pedestal : float, default 0.0
        Added to the result ([0, 1] units); written to the header as ``PEDESTAL``.
    flat_pattern : str, optional
        CFA pattern for flat normalisation (default: ``light.bayer``).
    clip : (float, float) or None, default (0, 1)
        Output range.

    Returns
    -------
    AstroImage
        float32 with HISTORY ``pre.calibrate {...}`` saying what was applied.

    Raises
    ------
    BadInputError
        Shape mismatch or a scaled dark without bias, naming the light.
    """
    L = light.data
    if L.ndim != 2:
        raise BadInputError(light.path, "calibration needs a 2-D raw frame (mono or CFA mosaic)")
    b, d, f = _arr(bias), _arr(dark), _arr(flat)
    for name, a, src in (("bias", b, bias), ("dark", d, dark), ("flat", f, flat)):
        if a is not None and a.shape != L.shape:
            where = getattr(src, "path", None) or light.path
            raise BadInputError(where, f"master {name} size {a.shape[1]}x{a.shape[0]} differs "
                                       f"from the light's {L.shape[1]}x{L.shape[0]}")
    offset = thermal = None
    applied: dict = {}
    if d is not None:
        if dark_has_bias:
            if dark_scale == 1.0:
                offset = d
            else:
                if b is None:
                    raise BadInputError(light.path, "scaling the dark needs a master bias")
                offset, thermal = b, subtract(d, b)
        else:
            offset, thermal = b, d
        applied["dark_scale"] = round(float(dark_scale), 6)
        applied["dark"] = getattr(dark, "path", None) or "array"
    elif b is not None:
        offset = b
    if b is not None:
        applied["bias"] = getattr(bias, "path", None) or "array"
    inv = None
    if f is not None:
        inv = flat_inverse(f, flat_pattern or light.bayer)
        applied["flat"] = getattr(flat, "path", None) or "array"
    out = calibrate_arrays(L, offset=offset, thermal=thermal, dark_scale=dark_scale,
                           inv_flat=inv, pedestal=pedestal, clip=clip)
    applied["pedestal"] = float(pedestal)
    img = light.derive(out, "pre.calibrate", applied)
    img.header["PEDESTAL"] = (float(pedestal), "added after calibration, [0,1] units")
    return img


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
        sub = _subsample(plane, 60_000)
        med = float(np.median(sub))
        s = float(1.4826 * np.median(np.abs(sub - med)))
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
