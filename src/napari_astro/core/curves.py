"""Curves: monotone splines through control points on RGB/K, R, G, B and CIE L*, and a
hue-preserving saturation factor.

A curve is a list of control points ``(x, y)`` in [0, 1], strictly increasing in
``x``; the points (0, 0) and (1, 1) are added when the first/last point does not sit
on x = 0 / x = 1 (the fixed ends of PixInsight's and Siril's curve editors). The curve
is the PCHIP interpolant (:class:`scipy.interpolate.PchipInterpolator`): it passes
through every point, never overshoots them and is monotone wherever the points are --
a natural cubic spline rings between close points and can invert the tones.

The order of application follows PixInsight's CurvesTransformation: the RGB/K curve,
then the per-channel R, G, B curves, then the lightness curve and the saturation
factor in CIE L*a*b*.

Why CIELab and not a luminance ratio or HSV: the lightness curve acts on CIE L*, a
perceptual lightness, so a curve point at 0.5 means "mid grey" to the eye; and the
saturation factor scales the chroma ``sqrt(a*^2 + b*^2)`` at constant L* and hue
angle, so a boost changes neither brightness nor hue (HSV's S changes the luminance
of blues and yellows very differently; a luminance ratio keeps hue but not perceived
lightness). Pixel values are taken as display-referred sRGB (a stretched image), as
scikit-image's ``rgb2lab`` does. Colours pushed out of the sRGB gamut keep their
L* and hue: their chroma is reduced until they fit (bisection), rather than clipping
channels, which would shift the hue.

The L*a*b* round trip is one fused numba kernel: 6000x4000 colour, see
benchmarks/RESULTS.md ("Post-processing: masks and curves") against scikit-image's
``rgb2lab``/``lab2rgb`` (which allocate several float64 copies of the image).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from numba import njit, prange

from .errors import BadInputError
from .image import AstroImage

__all__ = ["parse_points", "curve_points", "curve_function", "curve_lut", "apply_lut",
           "apply_curves", "is_identity", "histogram", "LUT_SIZE", "rgb_to_lab", "lab_to_rgb"]

#: Entries of a curve's look-up table (linear interpolation between them: the error
#: of a PCHIP curve sampled this finely is < 1e-7).
LUT_SIZE = 65536

# sRGB (D65) -> XYZ, and the D65 white: the constants of scikit-image's rgb2lab.
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE = np.array([0.95047, 1.0, 1.08883])

# Transfer functions as look-up tables (the kernel's pow/cbrt calls cost ~4x the rest
# of the round trip; numpy's rgb2lab is SIMD-vectorised and was as fast as the scalar
# kernel). sRGB decoding is tabulated on its input in [0, 1]; sRGB encoding and CIE
# f(t) = t^(1/3) are tabulated on s = sqrt(input), where they are smooth enough
# (both have a linear toe below s ~ 0.06-0.09) for linear interpolation between
# 4097 entries to stay within 2e-6 of the exact value (checked in test_curves).
# On 600x400 px, 2 loaded cores: 0.06 s with the tables, 0.15-0.22 s with pow/cbrt,
# scikit-image's rgb2lab + lab2rgb 0.33 s.
_TF_SIZE = 4097


def _tf_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.linspace(0.0, 1.0, _TF_SIZE)
    decode = np.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055) ** 2.4)
    c = u * u  # tabulated on s = sqrt(c)
    encode = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    f = np.where(c > 0.008856, np.cbrt(c), 7.787 * c + 16.0 / 116.0)
    return decode, encode, f


_DECODE_LUT, _ENCODE_SQRT_LUT, _F_SQRT_LUT = _tf_tables()


# --------------------------------------------------------------------------- points
def parse_points(values: "Sequence[Any] | str | None", *, where: str = "points") -> np.ndarray:
    """Control points from their stored forms, checked.

    Parameters
    ----------
    values : sequence or str
        Flat numbers ``x1, y1, x2, y2, ...``, ``"x:y"`` strings, ``(x, y)`` pairs, or
        one comma-separated string of either. Empty means "no curve".
    where : str
        Name used in error messages (the parameter field, e.g. ``post.curves.rgb``).

    Returns
    -------
    ndarray, (N, 2) float64
        N = 0 for an empty curve.

    Raises
    ------
    BadInputError
        An odd count of numbers, a value that is not a number, a point outside
        [0, 1], x not strictly increasing, or a single point.
    """
    if values is None:
        return np.zeros((0, 2))
    if isinstance(values, str):
        values = [v for v in values.replace(";", ",").split(",") if v.strip()]
    flat: list[float] = []
    for v in values:
        if isinstance(v, str) and ":" in v:
            parts = v.split(":")
            if len(parts) != 2:
                raise BadInputError(where, f"{v!r} is not an x:y point")
            items: Iterable[Any] = parts
        elif isinstance(v, (list, tuple, np.ndarray)):
            if len(v) != 2:
                raise BadInputError(where, f"{v!r} is not an (x, y) point")
            items = v
        else:
            items = [v]
        for item in items:
            try:
                if isinstance(item, bool):
                    raise ValueError
                f = float(item)
            except (TypeError, ValueError):
                raise BadInputError(where, f"{item!r} is not a number") from None
            if not math.isfinite(f):
                raise BadInputError(where, f"{item!r} is not a finite number")
            flat.append(f)
    if not flat:
        return np.zeros((0, 2))
    if len(flat) % 2:
        raise BadInputError(where, f"{len(flat)} numbers: points need x and y (an even count)")
    pts = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    bad = np.flatnonzero((pts < 0).any(axis=1) | (pts > 1).any(axis=1))
    if bad.size:
        x, y = pts[bad[0]]
        raise BadInputError(where, f"point {x:g}:{y:g} is outside [0, 1]")
    if pts.shape[0] < 2 and not (pts.shape[0] == 1 and 0 < pts[0, 0] < 1):
        raise BadInputError(where, "a curve needs at least two points (or one inner point)")
    dx = np.diff(pts[:, 0])
    if (dx <= 0).any():
        k = int(np.flatnonzero(dx <= 0)[0])
        raise BadInputError(where, f"x must increase from point to point "
                                   f"({pts[k, 0]:g} then {pts[k + 1, 0]:g})")
    return pts


def curve_points(values: "Sequence[Any] | str | np.ndarray | None", *,
                 where: str = "points") -> np.ndarray:
    """The points of a curve with its fixed ends (0, 0) and (1, 1) added if absent."""
    pts = values if isinstance(values, np.ndarray) and values.ndim == 2 else parse_points(
        values, where=where)
    if pts.shape[0] == 0:
        return np.array([[0.0, 0.0], [1.0, 1.0]])
    if pts[0, 0] > 0:
        pts = np.vstack([[0.0, 0.0], pts])
    if pts[-1, 0] < 1:
        pts = np.vstack([pts, [1.0, 1.0]])
    return pts


def is_identity(values: Any) -> bool:
    """True when the curve maps every x to itself (or is empty)."""
    pts = curve_points(values)
    return bool(np.allclose(pts[:, 0], pts[:, 1], atol=1e-9, rtol=0))


def curve_function(values: Any):
    """The curve as a callable ``y = f(x)`` on [0, 1] (a PchipInterpolator)."""
    from scipy.interpolate import PchipInterpolator

    pts = curve_points(values)
    return PchipInterpolator(pts[:, 0], pts[:, 1], extrapolate=True)


def curve_lut(values: Any, size: int = LUT_SIZE) -> np.ndarray:
    """The curve sampled at ``size`` evenly spaced x in [0, 1], float32, clipped to [0, 1]."""
    x = np.linspace(0.0, 1.0, size)
    return np.clip(curve_function(values)(x), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- kernels
@njit(parallel=True, fastmath=True, cache=True)
def _lut_kernel(x, lut, out):  # pragma: no cover - numba
    n = lut.size - 1
    flat = x.ravel()
    res = out.ravel()
    for i in prange(flat.size):
        v = flat[i]
        if not (v == v):  # NaN stays NaN (outside the footprint)
            res[i] = v
            continue
        t = min(max(v, 0.0), 1.0) * n
        k = min(int(t), n - 1)
        f = t - k
        res[i] = lut[k] + f * (lut[k + 1] - lut[k])


def apply_lut(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut`` evaluated at ``x`` (clipped to [0, 1]) with linear interpolation; float32.

    The numba kernel: 0.16 s per 6000x4000 plane on 2 loaded cores (load average
    11); ``np.interp`` (binary search per value) took 9.0 s in the same session.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _lut_kernel(x, np.ascontiguousarray(lut, dtype=np.float32), out)
    return out


@njit(fastmath=True, inline="always")
def _table(lut, u):  # pragma: no cover - numba: lut at u in [0, 1], linear interpolation
    n = lut.size - 1
    t = min(max(u, 0.0), 1.0) * n
    k = min(int(t), n - 1)
    return lut[k] + (t - k) * (lut[k + 1] - lut[k])


@njit(fastmath=True, inline="always")
def _finv(f):  # pragma: no cover - numba
    if f > 0.20689655172413793:  # f(0.008856)
        return f * f * f
    return (f - 16.0 / 116.0) / 7.787


@njit(fastmath=True, inline="always")
def _lab_to_linear(L, a, b, m):  # pragma: no cover - numba
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0
    X = _finv(fx) * 0.95047
    Y = _finv(fy)
    Z = _finv(fz) * 1.08883
    r = m[0, 0] * X + m[0, 1] * Y + m[0, 2] * Z
    g = m[1, 0] * X + m[1, 1] * Y + m[1, 2] * Z
    bb = m[2, 0] * X + m[2, 1] * Y + m[2, 2] * Z
    return r, g, bb


@njit(parallel=True, fastmath=True, cache=True)
def _lab_kernel(rgb, out, fwd, inv, llut, use_l, sat, dec, enc, flut):  # pragma: no cover
    h = rgb.shape[1]
    w = rgb.shape[2]
    n = llut.size - 1
    eps = 1e-6
    for i in prange(h):
        for j in range(w):
            r0 = rgb[0, i, j]
            g0 = rgb[1, i, j]
            b0 = rgb[2, i, j]
            if not (r0 == r0 and g0 == g0 and b0 == b0):
                out[0, i, j] = r0
                out[1, i, j] = g0
                out[2, i, j] = b0
                continue
            R = _table(dec, r0)
            G = _table(dec, g0)
            B = _table(dec, b0)
            X = (fwd[0, 0] * R + fwd[0, 1] * G + fwd[0, 2] * B) / 0.95047
            Y = fwd[1, 0] * R + fwd[1, 1] * G + fwd[1, 2] * B
            Z = (fwd[2, 0] * R + fwd[2, 1] * G + fwd[2, 2] * B) / 1.08883
            fx = _table(flut, math.sqrt(max(X, 0.0)))
            fy = _table(flut, math.sqrt(max(Y, 0.0)))
            fz = _table(flut, math.sqrt(max(Z, 0.0)))
            L = 116.0 * fy - 16.0
            a = 500.0 * (fx - fy) * sat
            b = 200.0 * (fy - fz) * sat
            if use_l:
                t = min(max(L / 100.0, 0.0), 1.0) * n
                k = min(int(t), n - 1)
                L = 100.0 * (llut[k] + (t - k) * (llut[k + 1] - llut[k]))
            lr, lg, lb = _lab_to_linear(L, a, b, inv)
            if (lr < -eps or lg < -eps or lb < -eps or lr > 1 + eps or lg > 1 + eps
                    or lb > 1 + eps):
                # Out of gamut: the largest chroma scale k in [0, 1] that fits, at
                # the same L* and hue (k = 0 is a grey, always inside).
                lo = 0.0
                hi = 1.0
                for _ in range(16):
                    mid = 0.5 * (lo + hi)
                    tr, tg, tb = _lab_to_linear(L, a * mid, b * mid, inv)
                    if (tr < -eps or tg < -eps or tb < -eps or tr > 1 + eps or tg > 1 + eps
                            or tb > 1 + eps):
                        hi = mid
                    else:
                        lo = mid
                lr, lg, lb = _lab_to_linear(L, a * lo, b * lo, inv)
            out[0, i, j] = _table(enc, math.sqrt(min(max(lr, 0.0), 1.0)))
            out[1, i, j] = _table(enc, math.sqrt(min(max(lg, 0.0), 1.0)))
            out[2, i, j] = _table(enc, math.sqrt(min(max(lb, 0.0), 1.0)))


# --------------------------------------------------------------------------- colour spaces
def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Channel-first ``(3, H, W)`` sRGB in [0, 1] -> CIE L*a*b* (D65), float64.

    Reference implementation in numpy (tests and the widget's readouts); same
    constants as scikit-image's ``rgb2lab``.
    """
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.tensordot(_XYZ_FROM_RGB, lin, axes=1) / _WHITE[:, None, None]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])])


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_lab` (channels clipped to [0, 1])."""
    L, a, b = np.asarray(lab, dtype=np.float64)
    fy = (L + 16.0) / 116.0
    f = np.stack([fy + a / 500.0, fy, fy - b / 200.0])
    xyz = np.where(f > 0.20689655172413793, f ** 3, (f - 16.0 / 116.0) / 7.787)
    lin = np.tensordot(_RGB_FROM_XYZ, xyz * _WHITE[:, None, None], axes=1)
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def _mono_lightness_lut(lcurve: np.ndarray, size: int = LUT_SIZE) -> np.ndarray:
    """For a grey value v: encode(Y(curve(L*(decode(v))))) sampled on [0, 1]."""
    v = np.linspace(0.0, 1.0, size)
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    f = np.where(lin > 0.008856, np.cbrt(lin), 7.787 * lin + 16.0 / 116.0)
    L = 116.0 * f - 16.0
    L2 = 100.0 * np.interp(np.clip(L / 100.0, 0, 1), np.linspace(0, 1, lcurve.size), lcurve)
    fy = (L2 + 16.0) / 116.0
    Y = np.where(fy > 0.20689655172413793, fy ** 3, (fy - 16.0 / 116.0) / 7.787)
    Y = np.clip(Y, 0.0, 1.0)
    return np.where(Y <= 0.0031308, 12.92 * Y, 1.055 * Y ** (1 / 2.4) - 0.055).astype(np.float32)


# --------------------------------------------------------------------------- apply
def apply_curves(image: AstroImage, *, rgb: Any = (), red: Any = (), green: Any = (),
                 blue: Any = (), lightness: Any = (), saturation: float = 1.0,
                 progress: Any = None, cancel: Any = None) -> tuple[AstroImage, list[str]]:
    """Apply curves and a saturation factor; returns the new image and remarks.

    Parameters
    ----------
    image : AstroImage
        Mono or colour, display-referred (stretched) values in [0, 1]; values outside
        are clipped. NaN pixels stay NaN. Not modified.
    rgb, red, green, blue, lightness : control points
        See :func:`parse_points`; empty = identity. ``rgb`` (K) acts on every
        channel; ``red``/``green``/``blue`` on one; ``lightness`` on CIE L* (mapped
        to [0, 1] as L*/100).
    saturation : float, default 1.0
        Chroma factor in CIELab at constant L* and hue: 1.3 = +30 % chroma, 0.7 =
        30 % less (background desaturation), 0 = grey.
    progress, cancel
        See :mod:`napari_astro.core.progress`.

    Returns
    -------
    AstroImage, list of str
        The image (float32, same shape) and one-line remarks (curves ignored on a mono
        image).
    """
    from .progress import report

    if saturation < 0 or not math.isfinite(saturation):
        raise BadInputError("saturation", f"{saturation!r} must be a number >= 0")
    messages: list[str] = []
    k_lut = None if is_identity(rgb) else curve_lut(rgb)
    chan = [None if is_identity(c) else curve_lut(c) for c in (red, green, blue)]
    l_lut = None if is_identity(lightness) else curve_lut(lightness)
    report(progress, 0, 3, "curves", cancel)
    grid = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32)
    if not image.is_color:
        if any(c is not None for c in chan):
            messages.append("R, G, B curves ignored: the image is mono")
        if saturation != 1.0:
            messages.append("saturation ignored: the image is mono")
        lut = k_lut
        if l_lut is not None:
            ml = _mono_lightness_lut(l_lut)
            lut = ml if lut is None else apply_lut(lut, ml)
        if lut is None:
            return image.replace(data=image.data.copy()), messages
        report(progress, 1, 3, "curves", cancel)
        return image.replace(data=apply_lut(image.data, lut)), messages
    # One output array, written plane by plane by the LUTs and then in place by the
    # Lab kernel (each pixel is read before it is written): the step holds the input
    # and one copy (6000x4000: +550 -> +290 MB peak with a per-plane list + np.stack).
    lab = l_lut is not None or saturation != 1.0
    data = np.empty(image.data.shape, dtype=np.float32)
    src = image.data  # what the Lab kernel reads
    if k_lut is not None or any(c is not None for c in chan):
        for c in range(3):
            lut = k_lut
            if chan[c] is not None:
                lut = chan[c] if lut is None else apply_lut(lut, chan[c])
            if lut is None:
                data[c] = image.data[c]
            else:
                _lut_kernel(np.ascontiguousarray(image.data[c]), lut, data[c])
        src = data
    elif not lab:
        data[...] = image.data
    report(progress, 1, 3, "curves", cancel)
    if lab:
        _lab_kernel(src, data, _XYZ_FROM_RGB, _RGB_FROM_XYZ,
                    l_lut if l_lut is not None else grid, l_lut is not None, float(saturation),
                    _DECODE_LUT, _ENCODE_SQRT_LUT, _F_SQRT_LUT)
    report(progress, 3, 3, "", cancel)
    return image.replace(data=data), messages


def histogram(image: AstroImage, *, bins: int = 256, lightness: bool = False,
              max_samples: int = 250_000) -> np.ndarray:
    """Counts of each channel's values (or of L*/100) in ``bins`` equal bins over [0, 1].

    Parameters
    ----------
    image : AstroImage
    bins : int, default 256
    lightness : bool, default False
        Count CIE L*/100 (what the lightness curve acts on) instead of the channels.
    max_samples : int, default 250000
        Counted on a regular subsample of at most this many pixels (the curve
        editor's background: ~20 ms).

    Returns
    -------
    ndarray, (C, bins) int64
        C = 3 for colour channels (R, G, B), 1 for mono or ``lightness``.
    """
    step = max(1, int(math.sqrt(image.shape2d[0] * image.shape2d[1] / max_samples)))
    sub = image.data[..., ::step, ::step]
    if lightness:
        rgb = sub if image.is_color else np.repeat(sub[None], 3, axis=0)
        ok = np.isfinite(rgb).all(axis=0)
        chans = [rgb_to_lab(np.where(ok, rgb, 0.0))[0][ok] / 100.0]
    else:
        chans = [c[np.isfinite(c)] for c in (sub if image.is_color else sub[None])]
    return np.stack([np.histogram(np.clip(c, 0, 1), bins=bins, range=(0.0, 1.0))[0]
                     for c in chans])
