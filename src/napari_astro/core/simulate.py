"""A night at the telescope, simulated, with its ground truth.

:func:`simulate_night` writes the raw frames a careful astrophotographer brings home
(bias, darks, flats, optional flat-darks and dithered lights, as 16-bit FITS with
NINA-style headers) and the noiseless truth they were made from, so that every later
step (calibration, registration, integration, post-processing) can be tested against
known answers. :func:`load_truth` reads that truth back.

The physics, per pixel of the sensor (electrons unless said otherwise)::

    bias  [ADU] = bias_level + pixel pattern + column pattern          (fixed)
    dark  [e]   = dark_rate(x, y) * t        (fixed thermal map, hot pixels)
    S(x, y)     = vignetting * dust motes * PRNU                        (fixed)
    light [e]   = Poisson(S * sky_c(T_k(x, y)) * t + dark) + cosmic rays
    flat  [e]   = Poisson(S * flat_level * flat_color_c + dark(t_flat))
    frame [ADU] = clip(round(e / gain + bias + N(0, read_noise / gain)), 0, 65535)

where ``c`` is the CFA colour of the pixel (or the single band of a mono sensor) and
``T_k`` maps light ``k``'s pixel to the reference light's pixel (light 0).

Units of the truth (``truth/sky.fits``, ``NightTruth.sky``): the sky that a
*perfectly* calibrated reference light shows, in the package's data units (ADU/65535)::

    calibrated = (L - D) / (F_c / mean_c(F_c)),   F = master flat minus bias,

with the flat normalised **per CFA colour** (``mean_c`` = mean over the pixels of
colour ``c``; mono: the plain mean). Hence ``sky_c = sky electrons_c / gain / 65535
* m_c`` with ``m_c`` = mean of ``S`` over the colour-``c`` pixels (stored as
``flat_norm`` in ``truth.json``). A calibration that normalises the flat by its
global mean instead gets ``sky_c * flat_color_c / mean(flat_color over the CFA)``.
Stars in ``stars.csv`` carry their total flux in the same units.

Randomness comes from a counter-based generator (splitmix64 per pixel, Hörmann's PTRS
for Poisson), so frames are identical for a seed whatever the number of threads, and
each frame's noise is independent of how many other frames are made.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from numba import njit, prange

from .errors import BadInputError
from .image import BAYER_PATTERNS
from .progress import Progress, report

__all__ = ["NightParams", "NightTruth", "simulate_night", "load_truth", "NightModel",
           "cfa_channel_map", "mosaic"]

_FULL = 65535.0
_CH = "RGB"


# --------------------------------------------------------------------------------------
# parameters and truth
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NightParams:
    """Everything that defines a simulated night (defaults: a cooled 26 MP-class OSC
    camera cropped to 2000 x 1500 on an 480 mm refractor under a suburban sky).

    Sizes and counts
        width, height : int, px (default 2000 x 1500). n_lights, n_darks, n_flats,
        n_biases (20 each), n_darkflats (0).
    Sensor
        mono (False) : mono sensor with an L filter instead of one-shot colour.
        bayer ("RGGB") : CFA pattern of ``data[0, 0]`` (ROWORDER TOP-DOWN).
        gain (0.8 e-/ADU), gain_setting (100, the camera's GAIN keyword), offset_setting
        (50), read_noise (3.5 e- rms), bias_level (800 ADU), bias_pixel_sigma (2 ADU,
        fixed per-pixel pattern), bias_column_sigma (3 ADU, fixed column pattern),
        dark_current (0.05 e-/s/px, mean of the thermal map outside hot pixels),
        dark_nonuniformity (0.3, sigma of the log-normal thermal map),
        hot_pixel_fraction (2e-4), very_hot_fraction (0.1 of hot pixels saturate a
        light), dead_pixel_fraction (2e-5; stuck at a low value in every frame, at
        least 2), prnu (0.005, per-pixel response non-uniformity rms).
    Acquisition
        seed (0), exposure (120 s), flat_exposure (2 s), temperature (-10 C set point),
        start ("2024-03-15T20:30:00" UTC of the first light), filter_name (None: OSC
        without filter; mono: "L"), filter_transmission ((1, 1, 1) for R, G, B: e.g.
        (1, 0, 0) for a red-only scene).
    Optics
        vignetting (0.25: fractional drop at the farthest corner), vignetting_center
        ((0.02, -0.015), optical axis offset as a fraction of width/height),
        dust_motes (4), dust_depth (0.04), dust_radius (40 px, scaled down for
        small frames), flat_level (0.45 of full scale in the G channel at the
        optical centre), flat_color ((0.65, 1.0, 0.8) response of R, G, B sites to the
        flat light), fwhm (3.0 px), moffat_beta (3.0), fwhm_variation (0.08,
        relative seeing change between lights).
    Sky
        sky_rate (8 e-/s/px in G at the field centre), sky_color ((1.3, 1.0, 0.7)),
        sky_gradient (0.15: relative change from centre to the edge along
        sky_gradient_angle (30 deg)), sky_variation (0.03) and
        transparency_variation (0.03) between lights, star_density (2000 stars per
        Mpx brighter than star_flux_min), star_flux_min (5 e-/s), star_flux_range
        (3000: brightest/faintest), star_slope (0.75: N(>F) ~ F**-slope),
        min_saturated (2 stars at least saturate in the reference light),
        nebula_brightness (0.35: nebula peak / sky background).
    Pointing and events
        dither (20 px: max offset per axis), rotation (0.3 deg max), cosmic_rays (8 per
        light on average; darks get the same rate per second), satellite (True: one
        light, not the reference, has a trail), object_name, ra (deg), dec (deg).
    """

    width: int = 2000
    height: int = 1500
    n_lights: int = 20
    n_darks: int = 20
    n_flats: int = 20
    n_biases: int = 20
    n_darkflats: int = 0
    mono: bool = False
    bayer: str = "RGGB"
    seed: int = 0
    exposure: float = 120.0
    flat_exposure: float = 2.0
    temperature: float = -10.0
    gain: float = 0.8
    gain_setting: int = 100
    offset_setting: int = 50
    read_noise: float = 3.5
    bias_level: float = 800.0
    bias_pixel_sigma: float = 2.0
    bias_column_sigma: float = 3.0
    dark_current: float = 0.05
    dark_nonuniformity: float = 0.3
    hot_pixel_fraction: float = 2e-4
    very_hot_fraction: float = 0.1
    dead_pixel_fraction: float = 2e-5
    prnu: float = 0.005
    vignetting: float = 0.25
    vignetting_center: tuple = (0.02, -0.015)
    dust_motes: int = 4
    dust_depth: float = 0.04
    dust_radius: float = 40.0
    flat_level: float = 0.45
    flat_color: tuple = (0.65, 1.0, 0.8)
    fwhm: float = 3.0
    moffat_beta: float = 3.0
    fwhm_variation: float = 0.08
    sky_rate: float = 8.0
    sky_color: tuple = (1.3, 1.0, 0.7)
    sky_gradient: float = 0.15
    sky_gradient_angle: float = 30.0
    sky_variation: float = 0.03
    transparency_variation: float = 0.03
    star_density: float = 2000.0
    star_flux_min: float = 5.0
    star_flux_range: float = 3000.0
    star_slope: float = 0.75
    min_saturated: int = 2
    nebula_brightness: float = 0.35
    dither: float = 20.0
    rotation: float = 0.3
    cosmic_rays: float = 8.0
    satellite: bool = True
    filter_name: Optional[str] = None
    filter_transmission: tuple = (1.0, 1.0, 1.0)
    start: str = "2024-03-15T20:30:00"
    object_name: str = "SIM Nebula"
    ra: float = 314.75
    dec: float = 44.53

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise BadInputError("size", f"{self.width}x{self.height} is too small (min 16x16)")
        if self.width % 2 or self.height % 2:
            raise BadInputError("size", f"{self.width}x{self.height}: width and height must "
                                "be even (whole CFA cells)")
        if str(self.bayer).upper() not in BAYER_PATTERNS:
            raise BadInputError("bayer", f"unknown CFA pattern {self.bayer!r}")
        for name in ("n_lights", "n_darks", "n_flats", "n_biases", "n_darkflats"):
            if getattr(self, name) < 0:
                raise BadInputError(name, "must not be negative")
        if self.gain <= 0 or self.exposure <= 0 or self.flat_exposure <= 0:
            raise BadInputError("params", "gain and exposures must be positive")
        for name in ("vignetting_center", "flat_color", "sky_color", "filter_transmission"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def to_dict(self) -> dict:
        """JSON-ready dict of all fields."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "NightParams":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in d.items() if k in names})


@dataclasses.dataclass
class NightTruth:
    """What was simulated (returned by :func:`simulate_night` and :func:`load_truth`).

    Attributes
    ----------
    root : Path
        The night's folder.
    lights, darks, flats, biases, darkflats : list of Path
        The frames written, in acquisition order.
    sky : ndarray, float32, (3, H, W) colour or (H, W) mono
        Noiseless sky in the reference light's grid, in the units of a perfectly
        calibrated light (see the module docstring), before CFA mosaicking.
    reference_index : int
        Index of the reference light (0): its transform is the identity.
    transforms : list of (3, 3) ndarray
        Per light: maps light pixel ``(x=col, y=row, 1)`` to reference pixel coords.
    stars : numpy recarray
        Stars whose centre lies in the reference frame: fields ``x, y`` (reference
        px), ``flux`` (total, sky units; colour: mean of R, G, B), ``flux_r, flux_g,
        flux_b``, ``fwhm`` (px in the reference light), ``saturated`` (bool: the core
        clips at 65535 ADU in the reference light).
    hot_pixels : ndarray, int, (N, 2)
        ``(row, col)`` of hot pixels (dark rate ``hot_rates`` e-/s).
    hot_rates : ndarray, float, (N,)
    cold_pixels : ndarray, int, (M, 2)
        ``(row, col)`` of dead pixels stuck at a low ADU value in every frame.
    params : NightParams
    info : dict
        Everything else of ``truth.json`` (per-light sky level and transparency,
        FWHM, cosmic rays, satellite trail, dust motes, vignetting, flat_norm...).
    """

    root: Path
    lights: list
    darks: list
    flats: list
    biases: list
    darkflats: list
    sky: np.ndarray
    reference_index: int
    transforms: list
    stars: np.recarray
    hot_pixels: np.ndarray
    hot_rates: np.ndarray
    cold_pixels: np.ndarray
    params: NightParams
    info: dict

    @property
    def flat_norm(self) -> np.ndarray:
        """``m_c``: mean sensor response per colour (see module docstring)."""
        return np.asarray(self.info["flat_norm"], dtype=np.float64)


# --------------------------------------------------------------------------------------
# CFA helpers
# --------------------------------------------------------------------------------------
def cfa_channel_map(pattern: Optional[str]) -> np.ndarray:
    """(2, 2) int array: channel index (0=R, 1=G, 2=B) of ``data[y % 2, x % 2]``.

    ``pattern=None`` (mono) gives all zeros.
    """
    if pattern is None:
        return np.zeros((2, 2), np.int64)
    p = pattern.upper()
    if p not in BAYER_PATTERNS:
        raise BadInputError("bayer", f"unknown CFA pattern {pattern!r}")
    return np.array([[_CH.index(p[0]), _CH.index(p[1])],
                     [_CH.index(p[2]), _CH.index(p[3])]], np.int64)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a ``(3, H, W)`` image through a CFA: ``(H, W)`` with one colour per pixel."""
    cmap = cfa_channel_map(pattern)
    out = np.empty(rgb.shape[1:], dtype=rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = rgb[cmap[dy, dx], dy::2, dx::2]
    return out


# --------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _uniform(state):
    """Next uniform in (0, 1) of a splitmix64 stream; returns (u, new state)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = _mix64(state)
    return ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0), state


@njit
def _poisson(lam, state):
    """Poisson deviate: inversion below 10, Hörmann's PTRS above (as numpy does)."""
    if lam <= 0.0:
        return 0.0, state
    if lam < 10.0:
        u, state = _uniform(state)
        p = math.exp(-lam)
        f = p
        k = 0
        while u > f and k < 200:
            k += 1
            p *= lam / k
            f += p
        return float(k), state
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u, state = _uniform(state)
        u -= 0.5
        v, state = _uniform(state)
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return k, state
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return k, state


@njit(inline="always")
def _to_adu(e, inv_gain, bias, noise):
    v = math.floor(e * inv_gain + bias + noise + 0.5)
    if v < 0.0:
        return np.uint16(0)
    if v > 65535.0:
        return np.uint16(65535)
    return np.uint16(v)


@njit(parallel=True, cache=True)
def _expose(out, mode, signal, levels, chan, S, dark, t_dark, bias, rn_adu, inv_gain,
            seed, dead_r, dead_c, dead_v):
    """Turn expected electrons into a noisy uint16 frame (in place in ``out``).

    mode 0: no light (bias/dark); 1: ``levels[chan]`` * S (flat); 2: ``signal * S``.
    One splitmix64 stream per pixel pair keyed by ``seed`` and the position makes the
    result independent of the thread count; one Box-Muller draw gives the read noise
    of both pixels of a pair. Measured on a loaded 2-core machine, 2000x1500 light:
    0.20 s (numpy's Generator.poisson alone takes 0.21 s, single-threaded).
    """
    H, W = out.shape
    for y in prange(H):
        for x0 in range(0, W, 2):
            state = _mix64(seed ^ (np.uint64(y * W + x0) * _GOLD))
            u1, state = _uniform(state)
            u2, state = _uniform(state)
            rad = rn_adu * math.sqrt(-2.0 * math.log(u1))
            ang = 6.283185307179586 * u2
            for j in range(2):
                x = x0 + j
                if x >= W:
                    break
                if mode == 2:
                    lam = signal[y, x] * S[y, x]
                elif mode == 1:
                    lam = levels[chan[y & 1, x & 1]] * S[y, x]
                else:
                    lam = 0.0
                if lam < 0.0:
                    lam = 0.0
                lam += dark[y, x] * t_dark
                e, state = _poisson(lam, state)
                g = rad * (math.cos(ang) if j == 0 else math.sin(ang))
                out[y, x] = _to_adu(e, inv_gain, bias[y, x], g)
    for i in range(dead_r.shape[0]):
        out[dead_r[i], dead_c[i]] = np.uint16(dead_v[i])


@njit(parallel=True, cache=True)
def _render_smooth(out, chan, T, grad, sky_f, cx, cy, qa, qb, qc, bx0, bx1, by0, by1,
                   amps, neb_f):
    """out[y, x] = sky_f * gradient_c(T(x, y)) + neb_f * sum_k amp_kc exp(-q_k / 2).

    ``T`` (3x3) maps this frame's pixel to reference coordinates; the nebula is a sum
    of elliptical Gaussians evaluated analytically at the transformed position (no
    resampling), cut at q = 18 (3 sigma, 1e-4 of the peak) and outside a 4-sigma box.
    Each row visits only the x-span of each component's box (0.35 -> 0.12 s per
    2000x1500 light, against a per-pixel test of every component).
    """
    H, W = out.shape
    K = cx.shape[0]
    for y in prange(H):
        ya = T[1, 1] * y + T[1, 2]
        yb = T[1, 0] * (W - 1) + ya
        ylo = min(ya, yb)
        yhi = max(ya, yb)
        for x in range(W):
            c = chan[y & 1, x & 1]
            xr = T[0, 0] * x + T[0, 1] * y + T[0, 2]
            yr = T[1, 0] * x + T[1, 1] * y + T[1, 2]
            out[y, x] = sky_f * (grad[c, 0] + grad[c, 1] * xr + grad[c, 2] * yr)
        if neb_f == 0.0:
            continue
        for k in range(K):
            if by1[k] < ylo or by0[k] > yhi:
                continue
            # x-span of the box on this row (T is a near-identity similarity)
            xa = (bx0[k] - T[0, 1] * y - T[0, 2]) / T[0, 0]
            xb = (bx1[k] - T[0, 1] * y - T[0, 2]) / T[0, 0]
            if xa > xb:
                xa, xb = xb, xa
            x0 = max(0, int(math.floor(xa)) - 2)
            x1 = min(W - 1, int(math.ceil(xb)) + 2)
            for x in range(x0, x1 + 1):
                xr = T[0, 0] * x + T[0, 1] * y + T[0, 2]
                yr = T[1, 0] * x + T[1, 1] * y + T[1, 2]
                dx = xr - cx[k]
                dy = yr - cy[k]
                q = qa[k] * dx * dx + 2.0 * qb[k] * dx * dy + qc[k] * dy * dy
                if q < 18.0:
                    c = chan[y & 1, x & 1]
                    out[y, x] += neb_f * amps[k, c] * math.exp(-0.5 * q)


@njit(inline="always")
def _moffat(r2, ia2, beta, ibeta):
    """(1 + r^2/alpha^2)^-beta; integer beta by multiplication (3x faster than pow)."""
    t = 1.0 / (1.0 + r2 * ia2)
    if ibeta > 0:
        p = t
        for _ in range(ibeta - 1):
            p *= t
        return p
    return t ** beta


@njit(parallel=True, cache=True)
def _render_stars(out, chan, xs, ys, flux, alpha, beta, rad, nsub):
    """Add Moffat stars (total flux ``flux[i, c]``) to ``out`` at sub-pixel positions.

    Work is split into bands of 16 rows so that each thread owns its pixels (no
    races, deterministic). Pixels within 2 FWHM of a centre are integrated on an
    ``nsub`` x ``nsub`` grid; farther out the profile is smooth enough to point-sample.
    """
    H, W = out.shape
    N = xs.shape[0]
    band = 16
    nb = (H + band - 1) // band
    norm = (beta - 1.0) / (math.pi * alpha * alpha)
    ia2 = 1.0 / (alpha * alpha)
    fwhm = 2.0 * alpha * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    rcore2 = (2.0 * fwhm) ** 2
    ibeta = int(beta) if beta == math.floor(beta) and beta <= 8 else 0
    for b in prange(nb):
        y0 = b * band
        y1 = min(H, y0 + band)
        for i in range(N):
            r = rad[i]
            ylo = max(y0, int(math.floor(ys[i] - r)))
            yhi = min(y1 - 1, int(math.ceil(ys[i] + r)))
            if ylo > yhi:
                continue
            xlo = max(0, int(math.floor(xs[i] - r)))
            xhi = min(W - 1, int(math.ceil(xs[i] + r)))
            for y in range(ylo, yhi + 1):
                dy = y - ys[i]
                for x in range(xlo, xhi + 1):
                    dx = x - xs[i]
                    r2 = dx * dx + dy * dy
                    f = flux[i, chan[y & 1, x & 1]]
                    if f == 0.0:
                        continue
                    if r2 < rcore2:
                        acc = 0.0
                        for sy in range(nsub):
                            ddy = dy + (sy + 0.5) / nsub - 0.5
                            for sx in range(nsub):
                                ddx = dx + (sx + 0.5) / nsub - 0.5
                                acc += _moffat(ddx * ddx + ddy * ddy, ia2, beta, ibeta)
                        p = acc / (nsub * nsub)
                    else:
                        p = _moffat(r2, ia2, beta, ibeta)
                    out[y, x] += f * norm * p


@njit(parallel=True, cache=True)
def _render_line(out, chan, nx, ny, d0, sigma, levels):
    """Add a straight trail: Gaussian cross-section ``sigma`` around n.(x, y) = d0."""
    H, W = out.shape
    lim = 5.0 * sigma
    k = 1.0 / (2.0 * sigma * sigma)
    for y in prange(H):
        for x in range(W):
            d = nx * x + ny * y - d0
            if abs(d) < lim:
                out[y, x] += levels[chan[y & 1, x & 1]] * math.exp(-d * d * k)


# --------------------------------------------------------------------------------------
# the model of the night
# --------------------------------------------------------------------------------------
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _frame_seed(seed: int, kind: int, index: int) -> np.uint64:
    return np.uint64(np.random.SeedSequence([seed, 7, kind, index]).generate_state(1, np.uint64)[0])


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _rotation_matrix(dx: float, dy: float, theta_deg: float, cx: float, cy: float) -> np.ndarray:
    """Rotation by theta about (cx, cy) followed by a shift (dx, dy)."""
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, cx - c * cx + s * cy + dx],
                     [s, c, cy - s * cx - c * cy + dy],
                     [0.0, 0.0, 1.0]])


_KIND = {"bias": 0, "dark": 1, "flat": 2, "light": 3, "darkflat": 4}


class NightModel:
    """The fixed parts of a night (sensor, optics, sky) and per-frame rendering.

    Built once from :class:`NightParams`; :func:`simulate_night` writes its frames and
    the sample data use it in memory. All arrays are float32 ``(H, W)``.
    """

    def __init__(self, params: NightParams) -> None:
        p = self.p = params
        H, W = p.height, p.width
        self.shape = (H, W)
        self.pattern = None if p.mono else p.bayer.upper()
        self.chan = cfa_channel_map(self.pattern)
        self.nch = 1 if p.mono else 3
        self._make_sensor()
        self._make_optics()
        self._make_sky()
        self._make_lights()

    # -- sensor --------------------------------------------------------------------
    def _make_sensor(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 1)
        bias = rng.standard_normal((H, W), dtype=np.float32) * np.float32(p.bias_pixel_sigma)
        bias += (rng.standard_normal(W, dtype=np.float32) * np.float32(p.bias_column_sigma))[None, :]
        bias += np.float32(p.bias_level)
        self.bias = bias
        # thermal map: log-normal with unit mean
        s = p.dark_nonuniformity
        dark = np.exp(rng.standard_normal((H, W), dtype=np.float32) * np.float32(s)
                      - np.float32(0.5 * s * s)).astype(np.float32)
        dark *= np.float32(p.dark_current)
        n_hot = max(int(round(p.hot_pixel_fraction * H * W)), 3 if p.hot_pixel_fraction > 0 else 0)
        idx = rng.choice(H * W, size=n_hot + max(int(round(p.dead_pixel_fraction * H * W)),
                                                   2 if p.dead_pixel_fraction > 0 else 0),
                         replace=False)
        hot_idx, dead_idx = idx[:n_hot], idx[n_hot:]
        # hot pixel rates: log-uniform 20x..300x the mean current, the very hot ones
        # saturate a light (>= full well in the exposure)
        sat_rate = (_FULL - p.bias_level) * p.gain / p.exposure
        rates = p.dark_current * np.exp(rng.uniform(math.log(20), math.log(300), n_hot))
        very = rng.random(n_hot) < p.very_hot_fraction
        if n_hot and not very.any():
            very[0] = True
        rates[very] = sat_rate * rng.uniform(1.2, 4.0, int(very.sum()))
        order = np.argsort(hot_idx)
        hot_idx, rates = hot_idx[order], rates[order]
        dark.ravel()[hot_idx] = rates.astype(np.float32)
        self.dark = dark
        self.hot_rc = np.stack(np.unravel_index(hot_idx, (H, W)), axis=1).astype(np.int64)
        self.hot_rates = rates.astype(np.float64)
        dead_idx = np.sort(dead_idx)
        self.dead_rc = np.stack(np.unravel_index(dead_idx, (H, W)), axis=1).astype(np.int64)
        self.dead_v = np.round(p.bias_level * rng.uniform(0.1, 0.5, len(dead_idx))).astype(np.int64)

    # -- optics: S = vignetting * dust * PRNU -----------------------------------------
    def vignetting_field(self) -> np.ndarray:
        """Smooth radial falloff: 1 at the optical axis, ``1 - vignetting`` at the
        farthest corner; ``1 - v * (0.4 rho^2 + 0.6 rho^4)``, rho = r / r_corner."""
        p, (H, W) = self.p, self.shape
        cx, cy = self.vig_center
        y, x = np.mgrid[0:H, 0:W].astype(np.float32)
        rho2 = ((x - cx) ** 2 + (y - cy) ** 2) / np.float32(self.vig_radius ** 2)
        return (1.0 - p.vignetting * (0.4 * rho2 + 0.6 * rho2 * rho2)).astype(np.float32)

    def dust_field(self) -> np.ndarray:
        """Product of the dust-mote donuts (1 outside them)."""
        H, W = self.shape
        out = np.ones((H, W), np.float32)
        for m in self.dust:
            r = m["radius"]
            x0, x1 = max(0, int(m["x"] - r - 8)), min(W, int(m["x"] + r + 9))
            y0, y1 = max(0, int(m["y"] - r - 8)), min(H, int(m["y"] + r + 9))
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            rr = np.hypot(xx - m["x"], yy - m["y"])
            e = m["softness"]
            ring = 1.0 / (1.0 + np.exp(-(r - rr) / e)) - 1.0 / (1.0 + np.exp(-(m["inner"] - rr) / e))
            out[y0:y1, x0:x1] *= (1.0 - m["depth"] * ring).astype(np.float32)
        return out

    def _make_optics(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 2)
        cx = (W - 1) / 2.0 + p.vignetting_center[0] * W
        cy = (H - 1) / 2.0 + p.vignetting_center[1] * H
        self.vig_center = (cx, cy)
        self.vig_radius = max(math.hypot(cx - cxx, cy - cyy)
                              for cxx in (0, W - 1) for cyy in (0, H - 1))
        scale = min(1.0, min(W, H) / 1500.0)
        self.dust = []
        for _ in range(p.dust_motes):
            r = float(max(8.0, p.dust_radius * scale * rng.uniform(0.7, 1.4)))
            m = r + 4
            self.dust.append({"x": float(rng.uniform(m, W - 1 - m)),
                              "y": float(rng.uniform(m, H - 1 - m)),
                              "radius": r, "inner": 0.45 * r, "softness": max(1.0, 0.06 * r),
                              "depth": float(p.dust_depth * rng.uniform(0.6, 1.4))})
        S = self.vignetting_field()
        S *= self.dust_field()
        if p.prnu > 0:
            S *= (1.0 + rng.standard_normal((H, W), dtype=np.float32) * np.float32(p.prnu))
        self.S = S
        # m_c: mean response of the pixels of each colour -> truth units
        if self.pattern is None:
            self.flat_norm = np.array([S.mean(dtype=np.float64)] * 3)
        else:
            sums, counts = np.zeros(3), np.zeros(3)
            for dy in range(2):
                for dx in range(2):
                    c = self.chan[dy, dx]
                    sub = S[dy::2, dx::2]
                    sums[c] += sub.sum(dtype=np.float64)
                    counts[c] += sub.size
            self.flat_norm = sums / counts

    # -- sky ----------------------------------------------------------------------
    def _band(self, rgb: np.ndarray) -> np.ndarray:
        """Per-colour values (..., 3) -> what the sensor's bands see (..., nch)."""
        rgb = np.asarray(rgb, np.float64) * np.asarray(self.p.filter_transmission)
        if self.nch == 1:
            return rgb.sum(axis=-1, keepdims=True)
        return rgb

    def _make_sky(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 3)
        L = min(W, H)
        # gradient (e-/s per px, reference coords), per colour: c0 + cx * x + cy * y
        phi = math.radians(p.sky_gradient_angle)
        half_diag = 0.5 * math.hypot(W, H)
        xc, yc = (W - 1) / 2.0, (H - 1) / 2.0
        gx = p.sky_gradient * math.cos(phi) / half_diag
        gy = p.sky_gradient * math.sin(phi) / half_diag
        col = np.asarray(p.sky_color, np.float64) * p.sky_rate
        self.grad_rgb = np.stack([col * (1 - gx * xc - gy * yc), col * gx, col * gy], axis=1)

        # stars over the reference frame plus a margin for dithers and rotation
        margin = p.dither + math.radians(p.rotation) * math.hypot(W, H) / 2 + 20
        area = (W + 2 * margin) * (H + 2 * margin)
        n = int(rng.poisson(p.star_density * area / 1e6))
        xs = rng.uniform(-margin, W - 1 + margin, n)
        ys = rng.uniform(-margin, H - 1 + margin, n)
        umin = p.star_flux_range ** (-p.star_slope)
        u = rng.uniform(umin, 1.0, n)
        flux = p.star_flux_min * u ** (-1.0 / p.star_slope)         # e-/s in G
        tint = rng.uniform(-1.0, 1.0, n)                             # blue .. red
        rgb = np.stack([1 + 0.35 * tint, np.ones(n), 1 - 0.35 * tint], axis=1) * flux[:, None]
        # make sure a few stars inside the frame saturate in the reference light
        alpha = _moffat_alpha(p.fwhm, p.moffat_beta)
        peak_per_flux = (p.moffat_beta - 1) / (math.pi * alpha * alpha) * p.exposure
        full_e = (_FULL - p.bias_level) * p.gain
        inside = (xs > 10) & (xs < W - 11) & (ys > 10) & (ys < H - 11)
        band_rgb = self._band(rgb)
        peak = band_rgb.max(axis=1) * peak_per_flux
        need = p.min_saturated - int(((peak > full_e) & inside).sum())
        if need > 0:
            cand = np.flatnonzero(inside & (peak <= full_e))
            cand = cand[np.argsort(-peak[cand])][:need]
            for i in cand:
                factor = rng.uniform(1.5, 4.0) * full_e / max(peak[i], 1e-9)
                rgb[i] *= factor
        self.star_x, self.star_y = xs, ys
        self.star_rgb = rgb                                            # e-/s (n, 3)
        self.star_band = self._band(rgb)                               # e-/s (n, nch)

        # nebula: elliptical Gaussians (blobs, filaments along random walks, knots)
        comps = []   # (x, y, sigma_major, sigma_minor, angle, r, g, b, amp)
        ncx = xc + rng.normal(0, 0.08) * W
        ncy = yc + rng.normal(0, 0.08) * H
        ha, oiii, refl = (1.0, 0.28, 0.42), (0.35, 0.9, 1.0), (0.45, 0.65, 1.0)
        for _ in range(3):
            comps.append((ncx + rng.normal(0, 0.12 * L), ncy + rng.normal(0, 0.12 * L),
                          rng.uniform(0.15, 0.3) * L, rng.uniform(0.08, 0.2) * L,
                          rng.uniform(0, math.pi), *ha, rng.uniform(0.4, 0.7)))
        for _ in range(2):
            comps.append((ncx + rng.normal(0, 0.2 * L), ncy + rng.normal(0, 0.2 * L),
                          rng.uniform(0.06, 0.12) * L, rng.uniform(0.04, 0.1) * L,
                          rng.uniform(0, math.pi), *refl, rng.uniform(0.3, 0.5)))
        for chain in range(4):
            x, y = ncx + rng.normal(0, 0.1 * L), ncy + rng.normal(0, 0.1 * L)
            ang = rng.uniform(0, 2 * math.pi)
            colr = ha if chain % 2 == 0 else oiii
            for _ in range(9):
                seg = rng.uniform(0.04, 0.08) * L
                comps.append((x, y, seg, max(1.5, rng.uniform(0.006, 0.015) * L), ang, *colr,
                              rng.uniform(0.4, 1.0)))
                x += 1.4 * seg * math.cos(ang)
                y += 1.4 * seg * math.sin(ang)
                ang += rng.normal(0, 0.35)
        for _ in range(10):
            comps.append((ncx + rng.normal(0, 0.15 * L), ncy + rng.normal(0, 0.15 * L),
                          *(rng.uniform(0.008, 0.025) * L,) * 2, 0.0, *ha, rng.uniform(0.3, 0.8)))
        # clumpy texture inside the diffuse cloud
        for _ in range(40):
            s_ = rng.uniform(0.02, 0.06) * L
            comps.append((ncx + rng.normal(0, 0.2 * L), ncy + rng.normal(0, 0.15 * L),
                          s_, s_ * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi),
                          *(ha if rng.random() < 0.7 else refl), rng.uniform(0.1, 0.35)))
        c = np.array(comps, np.float64)
        s1, s2, th = c[:, 2], c[:, 3], c[:, 4]
        ct, st = np.cos(th), np.sin(th)
        self.neb_cx, self.neb_cy = c[:, 0].copy(), c[:, 1].copy()
        self.neb_qa = ct ** 2 / s1 ** 2 + st ** 2 / s2 ** 2
        self.neb_qb = ct * st * (1 / s1 ** 2 - 1 / s2 ** 2)
        self.neb_qc = st ** 2 / s1 ** 2 + ct ** 2 / s2 ** 2
        ext_x = 4.0 * np.sqrt((s1 * ct) ** 2 + (s2 * st) ** 2)
        ext_y = 4.0 * np.sqrt((s1 * st) ** 2 + (s2 * ct) ** 2)
        self.neb_box = (self.neb_cx - ext_x, self.neb_cx + ext_x,
                        self.neb_cy - ext_y, self.neb_cy + ext_y)
        amps = c[:, 5:8] * c[:, 8:9]
        # scale so that the nebula's peak (brightest colour) = brightness * sky level
        step = max(1, L // 200)
        coarse = np.zeros((H // step, W // step), np.float32)
        T = np.diag([float(step), float(step), 1.0])
        peak = 0.0
        for ch in range(3):
            one = np.zeros((3, 3))
            one[ch, ch] = 1.0
            _render_smooth(coarse, np.full((2, 2), ch, np.int64), T, np.zeros((3, 3)), 0.0,
                           self.neb_cx, self.neb_cy, self.neb_qa, self.neb_qb, self.neb_qc,
                           *self.neb_box, amps, 1.0)
            peak = max(peak, float(coarse.max()))
        scale_n = p.nebula_brightness * p.sky_rate / max(peak, 1e-12)
        self.neb_rgb = amps * scale_n                                  # e-/s (K, 3)

    # -- per-light geometry and conditions --------------------------------------------
    def _make_lights(self) -> None:
        p, (H, W) = self.p, self.shape
        rng = _rng(p.seed, 4)
        n = p.n_lights
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
        self.transforms = []
        for k in range(n):
            if k == 0:
                self.transforms.append(np.eye(3))
            else:
                self.transforms.append(_rotation_matrix(
                    rng.uniform(-p.dither, p.dither), rng.uniform(-p.dither, p.dither),
                    rng.uniform(-p.rotation, p.rotation), cx, cy))
        frac = np.arange(n) / max(n - 1, 1)
        drift = rng.uniform(-1, 1)
        self.sky_levels = 1.0 + p.sky_variation * (drift * frac + 0.3 * rng.uniform(-1, 1, n) * (frac > 0))
        tr_drift = rng.uniform(-1, 1)
        self.transparency = 1.0 + p.transparency_variation * (
            tr_drift * frac - 0.5 * rng.uniform(0, 1, n) * (frac > 0))
        self.fwhms = p.fwhm * (1.0 + p.fwhm_variation * rng.uniform(-1, 1, n) * (frac > 0))
        self.sky_levels[0] = self.transparency[0] = 1.0
        self.fwhms[0] = p.fwhm
        self.satellite = None
        if p.satellite and n >= 2:
            k = n // 2
            # a line entering on the left edge and leaving on the right edge
            y_in, y_out = rng.uniform(0.1, 0.9, 2) * (H - 1)
            p0, p1 = np.array([0.0, y_in]), np.array([W - 1.0, y_out])
            d = p1 - p0
            nrm = np.array([-d[1], d[0]]) / np.hypot(*d)
            sigma = 1.2 * p.fwhm / 2.3548
            self.satellite = {"light_index": k, "p0": p0.tolist(), "p1": p1.tolist(),
                              "normal": nrm.tolist(), "d0": float(nrm @ p0),
                              "sigma": sigma, "peak_e": float(rng.uniform(2000, 6000)),
                              "p0_ref": (self.transforms[k] @ [*p0, 1])[:2].tolist(),
                              "p1_ref": (self.transforms[k] @ [*p1, 1])[:2].tolist()}

    # -- rendering ------------------------------------------------------------------
    def _render_signal(self, out, chan, T, sky_f, neb_f, fwhm, band_idx=None, *,
                       stars=True, smooth=True):
        """Render expected electrons of one ``exposure`` into ``out`` (overwritten).

        ``sky_f`` scales the gradient, ``neb_f`` (transparency) the nebula and stars;
        ``band_idx`` selects one colour of the truth (``chan`` then all zeros).
        """
        p = self.p
        t = p.exposure
        if band_idx is None:
            grad = self._band_grad() * t
            amps = self._band(self.neb_rgb) * t
            flux = self.star_band * t
        else:   # one colour channel of the truth: channel index ``band_idx`` in slot 0
            grad = self._band_grad()[band_idx:band_idx + 1] * t if self.nch == 3 else self._band_grad() * t
            amps = (self._band(self.neb_rgb)[:, band_idx:band_idx + 1] if self.nch == 3
                    else self._band(self.neb_rgb)) * t
            flux = (self.star_band[:, band_idx:band_idx + 1] if self.nch == 3
                    else self.star_band) * t
        _render_smooth(out, chan, T, np.ascontiguousarray(grad), sky_f if smooth else 0.0,
                       self.neb_cx, self.neb_cy, self.neb_qa, self.neb_qb, self.neb_qc,
                       *self.neb_box, np.ascontiguousarray(amps), neb_f if smooth else 0.0)
        if not stars:
            return
        Tinv = np.linalg.inv(T)
        xs = Tinv[0, 0] * self.star_x + Tinv[0, 1] * self.star_y + Tinv[0, 2]
        ys = Tinv[1, 0] * self.star_x + Tinv[1, 1] * self.star_y + Tinv[1, 2]
        beta = p.moffat_beta
        alpha = _moffat_alpha(fwhm, beta)
        fl = np.ascontiguousarray(flux * neb_f)
        # stamp radius where the profile falls below 0.02 e- per pixel
        # from all bands, so the truth's channels use the lights' stamps exactly
        peak = self.star_band.max(axis=1) * (t * neb_f * (beta - 1) / (math.pi * alpha ** 2))
        rad = alpha * np.sqrt(np.maximum(peak / 0.02, 1.0) ** (1.0 / beta) - 1.0)
        rad = np.clip(rad, 2.0 * fwhm, 80.0)
        H, W = out.shape
        keep = (xs > -rad) & (xs < W - 1 + rad) & (ys > -rad) & (ys < H - 1 + rad)
        _render_stars(out, chan, np.ascontiguousarray(xs[keep]), np.ascontiguousarray(ys[keep]),
                      np.ascontiguousarray(fl[keep]), alpha, beta,
                      np.ascontiguousarray(rad[keep]), 3)

    def _band_grad(self) -> np.ndarray:
        g = self.grad_rgb * np.asarray(self.p.filter_transmission)[:, None]
        if self.nch == 1:
            return g.sum(axis=0, keepdims=True)
        return g

    def truth_sky(self) -> np.ndarray:
        """Noiseless reference sky in calibrated units: float32 (3, H, W) or (H, W)."""
        p, (H, W) = self.p, self.shape
        chans = range(3) if self.nch == 3 else [0]
        out = np.empty((len(chans), H, W), np.float32)
        zero = np.zeros((2, 2), np.int64)
        for i, c in enumerate(chans):
            self._render_signal(out[i], zero, np.eye(3), 1.0, 1.0, p.fwhm,
                                band_idx=c if self.nch == 3 else None)
            out[i] *= np.float32(self.flat_norm[c] / (p.gain * _FULL))
        return out if self.nch == 3 else out[0]

    def star_table(self) -> dict:
        """All stars (reference coordinates) with fluxes in truth units."""
        p = self.p
        t = p.exposure
        if self.nch == 3:
            fl = self.star_band * t * self.flat_norm[None, :] / (p.gain * _FULL)
            flux = fl.mean(axis=1)
        else:
            f = self.star_band[:, 0] * t * self.flat_norm[0] / (p.gain * _FULL)
            fl = np.stack([f, f, f], axis=1)
            flux = f
        alpha = _moffat_alpha(p.fwhm, p.moffat_beta)
        peak_e = self.star_band.max(axis=1) * t * (p.moffat_beta - 1) / (math.pi * alpha ** 2)
        H, W = self.shape
        xi = np.clip(np.round(self.star_x).astype(int), 0, W - 1)
        yi = np.clip(np.round(self.star_y).astype(int), 0, H - 1)
        sky_e = self._band_grad().max(axis=0)[0] * t
        sat = (p.bias_level + (peak_e * self.S[yi, xi] + sky_e) / p.gain) >= _FULL
        inside = ((self.star_x >= -0.5) & (self.star_x <= W - 0.5)
                  & (self.star_y >= -0.5) & (self.star_y <= H - 0.5))
        return {"x": self.star_x, "y": self.star_y, "flux": flux, "flux_r": fl[:, 0],
                "flux_g": fl[:, 1], "flux_b": fl[:, 2],
                "fwhm": np.full(len(flux), p.fwhm), "saturated": sat, "inside": inside}

    # -- frames ----------------------------------------------------------------------
    def _expose(self, kind: str, index: int, *, mode: int, signal=None, levels=None,
                t_dark: float = 0.0) -> np.ndarray:
        p = self.p
        out = np.empty(self.shape, np.uint16)
        dummy = np.zeros((1, 1), np.float32)
        _expose(out, mode, signal if signal is not None else dummy,
                np.asarray(levels if levels is not None else [0.0, 0.0, 0.0], np.float64),
                self.chan, self.S, self.dark, float(t_dark), self.bias,
                p.read_noise / p.gain, 1.0 / p.gain, _frame_seed(p.seed, _KIND[kind], index),
                self.dead_rc[:, 0], self.dead_rc[:, 1], self.dead_v.astype(np.float64))
        return out

    def bias_frame(self, index: int) -> np.ndarray:
        """uint16 (H, W) bias frame ``index``."""
        return self._expose("bias", index, mode=0)

    def _cosmic_rays(self, rng, n_mean) -> list:
        """Random hits: 1-3 px dots or short tracks; list of [row, col, electrons]."""
        H, W = self.shape
        hits = []
        for _ in range(int(rng.poisson(n_mean))):
            x, y = rng.uniform(2, W - 3), rng.uniform(2, H - 3)
            length = 0 if rng.random() < 0.6 else rng.uniform(2, 10)
            ang = rng.uniform(0, math.pi)
            e = rng.uniform(1500, 25000)
            pts = {(int(round(y + s * math.sin(ang))), int(round(x + s * math.cos(ang))))
                   for s in np.linspace(0, length, max(1, int(length * 1.5) + 1))}
            if length == 0 and rng.random() < 0.5:
                pts.add((int(round(y)), int(round(x)) + 1))
            for r, c in sorted(pts):
                if 0 <= r < H and 0 <= c < W:
                    hits.append([r, c, float(e * rng.uniform(0.4, 1.0))])
        return hits

    def dark_frame(self, index: int, *, exposure: Optional[float] = None,
                   kind: str = "dark") -> tuple[np.ndarray, list]:
        """uint16 dark of ``exposure`` s (default: the lights') and its cosmic rays."""
        p = self.p
        t = p.exposure if exposure is None else exposure
        hits = self._cosmic_rays(_rng(p.seed, 8, _KIND[kind], index), p.cosmic_rays * t / p.exposure)
        if hits:
            sig = np.zeros(self.shape, np.float32)
            for r, c, e in hits:
                sig[r, c] += e / self.S[r, c]
            return self._expose(kind, index, mode=2, signal=sig, t_dark=t), hits
        return self._expose(kind, index, mode=0, t_dark=t), hits

    def flat_levels(self, index: int) -> np.ndarray:
        """Expected flat electrons at S = 1 per sensor band (R, G, B slots)."""
        p = self.p
        jitter = 1.0 + 0.01 * _rng(p.seed, 9, index).uniform(-1, 1)
        g = p.flat_level * (_FULL - p.bias_level) * p.gain * jitter
        col = np.asarray(p.flat_color, np.float64) / max(p.flat_color)
        return (col * g) if self.nch == 3 else np.array([g, g, g])

    def flat_frame(self, index: int) -> np.ndarray:
        """uint16 sky flat ``index``."""
        return self._expose("flat", index, mode=1, levels=self.flat_levels(index),
                            t_dark=self.p.flat_exposure)

    def light_signal(self, k: int, *, stars: bool = True, smooth: bool = True,
                     satellite: bool = True) -> np.ndarray:
        """Expected sky electrons of light ``k`` *before* the sensor response ``S``:
        float32 ``(H, W)`` mosaic of stars, the smooth sky (nebula + gradient) and
        the satellite trail, each of which can be left out."""
        sig = np.empty(self.shape, np.float32)
        self._render_signal(sig, self.chan, self.transforms[k], float(self.sky_levels[k]),
                            float(self.transparency[k]), float(self.fwhms[k]),
                            stars=stars, smooth=smooth)
        if satellite and self.satellite is not None and self.satellite["light_index"] == k:
            s = self.satellite
            lv = self._band(np.full(3, s["peak_e"]))
            lv = lv if self.nch == 3 else np.repeat(lv, 3)
            _render_line(sig, self.chan, s["normal"][0], s["normal"][1], s["d0"], s["sigma"],
                         np.asarray(lv, np.float64))
        return sig

    def truth_light(self, k: int) -> np.ndarray:
        """What a perfect calibration of light ``k`` gives, in its own grid: the CFA
        mosaic (or mono image) of the sky in truth units (see module docstring),
        float32 ``(H, W)``, including the satellite trail, without cosmic rays.
        ``truth_light(0)`` is ``mosaic(truth.sky, pattern)``."""
        sig = self.light_signal(k)
        scale = np.empty((2, 2), np.float32)
        for dy in range(2):
            for dx in range(2):
                c = self.chan[dy, dx] if self.nch == 3 else 0
                scale[dy, dx] = self.flat_norm[c] / (self.p.gain * _FULL)
        for dy in range(2):
            for dx in range(2):
                sig[dy::2, dx::2] *= scale[dy, dx]
        return sig

    def expected_light(self, k: int) -> np.ndarray:
        """Noiseless expectation of light ``k`` in electrons (sky * S + dark current),
        without cosmic rays, bias or clipping: float32 ``(H, W)``. The variance of a
        pixel of the frame in ADU is ``(expected + read_noise**2) / gain**2``."""
        sig = self.light_signal(k)
        sig *= self.S
        sig += self.dark * np.float32(self.p.exposure)
        return sig

    def light_frame(self, k: int) -> tuple[np.ndarray, list]:
        """uint16 light ``k`` and its cosmic-ray hits ([row, col, electrons])."""
        p = self.p
        sig = self.light_signal(k)
        hits = self._cosmic_rays(_rng(p.seed, 8, _KIND["light"], k), p.cosmic_rays)
        for r, c, e in hits:
            sig[r, c] += e / self.S[r, c]
        return self._expose("light", k, mode=2, signal=sig, t_dark=p.exposure), hits


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
_IMAGETYP = {"light": "Light Frame", "dark": "Dark Frame", "flat": "Flat Field",
             "bias": "Bias Frame", "darkflat": "Dark Flat"}
_FOLDER = {"light": "lights", "dark": "darks", "flat": "flats", "bias": "bias",
           "darkflat": "darkflats"}
_SUBDIRS = ("bias", "darks", "flats", "lights", "darkflats", "truth")


def _header(p: NightParams, kind: str, exposure: float, date: _dt.datetime, temp: float):
    from astropy.io import fits

    h = fits.Header()
    h["IMAGETYP"] = (_IMAGETYP[kind], "type of image")
    h["EXPOSURE"] = (float(exposure), "[s] exposure duration")
    h["EXPTIME"] = (float(exposure), "[s] exposure duration")
    h["DATE-OBS"] = (date.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "UTC start of exposure")
    h["XBINNING"] = (1, "X axis binning factor")
    h["YBINNING"] = (1, "Y axis binning factor")
    h["GAIN"] = (int(p.gain_setting), "sensor gain setting")
    h["OFFSET"] = (int(p.offset_setting), "sensor gain offset")
    h["EGAIN"] = (float(p.gain), "[e-/ADU] electrons per A/D unit")
    h["XPIXSZ"] = (3.76, "[um] pixel X axis size")
    h["YPIXSZ"] = (3.76, "[um] pixel Y axis size")
    h["INSTRUME"] = ("SIM ASI2600MM Pro" if p.mono else "SIM ASI2600MC Pro", "imaging instrument")
    h["SET-TEMP"] = (float(p.temperature), "[degC] CCD temperature setpoint")
    h["CCD-TEMP"] = (round(float(temp), 1), "[degC] CCD temperature")
    h["TELESCOP"] = ("SIM 80mm f/6 refractor", "name of telescope")
    h["FOCALLEN"] = (480.0, "[mm] focal length")
    h["FOCRATIO"] = (6.0, "focal ratio")
    if p.mono:
        h["FILTER"] = (p.filter_name or "L", "active filter name")
    else:
        if p.filter_name:
            h["FILTER"] = (p.filter_name, "active filter name")
        h["BAYERPAT"] = (p.bayer.upper(), "sensor Bayer pattern")
        h["XBAYROFF"] = (0, "Bayer pattern X axis offset")
        h["YBAYROFF"] = (0, "Bayer pattern Y axis offset")
    h["ROWORDER"] = ("TOP-DOWN", "FITS image row order")
    if kind == "light":
        h["OBJECT"] = (p.object_name, "name of the object of interest")
        h["RA"] = (float(p.ra), "[deg] RA of telescope")
        h["DEC"] = (float(p.dec), "[deg] Declination of telescope")
        ra_h = (p.ra % 360.0) / 15.0
        dec_a = abs(p.dec)
        h["OBJCTRA"] = (f"{int(ra_h):02d} {int(ra_h * 60) % 60:02d} {ra_h * 3600 % 60:04.1f}",
                        "[H M S] RA of imaged object")
        h["OBJCTDEC"] = (f"{'-' if p.dec < 0 else '+'}{int(dec_a):02d} {int(dec_a * 60) % 60:02d} "
                         f"{dec_a * 3600 % 60:04.1f}", "[D M S] Declination of imaged object")
    h["SWCREATE"] = ("napari-astro simulate", "software that created this file")
    return h


def _write_u16(path: Path, data: np.ndarray, header) -> None:
    from astropy.io import fits

    # uint=True stores BITPIX 16 with BZERO 32768, as cameras do
    fits.PrimaryHDU(data=data, header=header, uint=True).writeto(path, overwrite=True)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "exists and is not a folder")
    if out.is_dir() and not overwrite:
        used = [d for d in _SUBDIRS if (out / d).exists() and any((out / d).iterdir())]
        if used:
            raise BadInputError(out, f"already holds a night ({', '.join(used)}); "
                                "use overwrite to replace it")


def simulate_night(out_dir: "str | os.PathLike[str]", params: NightParams = NightParams(), *,
                   progress: Optional[Progress] = None, overwrite: bool = False,
                   cancel=None) -> NightTruth:
    """Simulate a night's raw frames and write them with their truth.

    Parameters
    ----------
    out_dir : path-like
        Folder to create or fill: ``bias/ darks/ flats/ lights/ [darkflats/] truth/``.
    params : NightParams
        What to simulate (default: 2000 x 1500 OSC, 20 frames of each type).
    progress : callable, optional
        ``progress(done, total, message)`` after each frame.
    overwrite : bool, default False
        Replace a night already in ``out_dir`` (its frame folders are emptied first);
        otherwise such a folder raises :class:`BadInputError`.
    cancel : CancelToken, optional

    Returns
    -------
    NightTruth
        Paths of the frames and the truth (also in ``out_dir/truth``).
    """
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    p = params
    for d in _SUBDIRS:
        if (out / d).exists() and overwrite:
            shutil.rmtree(out / d)
    model = NightModel(p)
    total = p.n_lights + p.n_darks + p.n_flats + p.n_biases + p.n_darkflats + 1
    done = 0
    report(progress, done, total, "model", cancel)
    t0 = _dt.datetime.fromisoformat(p.start)
    trng = _rng(p.seed, 10)
    files: dict[str, list[Path]] = {k: [] for k in _FOLDER}
    light_info, cr_info = [], {}

    def temp() -> float:
        return p.temperature + float(trng.normal(0, 0.08))

    date = t0
    for k in range(p.n_lights):
        data, hits = model.light_frame(k)
        path = out / "lights" / f"light_{k + 1:04d}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_u16(path, data, _header(p, "light", p.exposure, date, temp()))
        files["light"].append(path)
        light_info.append({"file": str(path.relative_to(out)),
                           "transform": model.transforms[k].tolist(),
                           "sky_level": float(model.sky_levels[k]),
                           "transparency": float(model.transparency[k]),
                           "fwhm": float(model.fwhms[k]), "date_obs": date.isoformat(),
                           "cosmic_rays": hits})
        date += _dt.timedelta(seconds=p.exposure + 4.0)
        done += 1
        report(progress, done, total, f"light {k + 1}/{p.n_lights}", cancel)
    date += _dt.timedelta(minutes=20)
    plan = [("darkflat", p.n_darkflats), ("flat", p.n_flats), ("dark", p.n_darks),
            ("bias", p.n_biases)]
    # acquisition order: flats at dawn, then flat-darks, darks and biases
    for kind, n in (plan[1], plan[0], plan[2], plan[3]):
        for i in range(n):
            if kind == "bias":
                data, hits, t = model.bias_frame(i), [], 0.0
            elif kind == "flat":
                data, hits, t = model.flat_frame(i), [], p.flat_exposure
            elif kind == "darkflat":
                data, hits = model.dark_frame(i, exposure=p.flat_exposure, kind="darkflat")
                t = p.flat_exposure
            else:
                data, hits = model.dark_frame(i)
                t = p.exposure
            path = out / _FOLDER[kind] / f"{kind}_{i + 1:04d}.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_u16(path, data, _header(p, kind, t, date, temp()))
            files[kind].append(path)
            if hits:
                cr_info[str(path.relative_to(out))] = hits
            date += _dt.timedelta(seconds=t + 2.0)
            done += 1
            report(progress, done, total, f"{kind} {i + 1}/{n}", cancel)

    truth = _write_truth(out, model, files, light_info, cr_info)
    report(progress, total, total, "done", cancel)
    return truth


def _write_truth(out: Path, model: NightModel, files, light_info, cr_info) -> NightTruth:
    from astropy.io import fits

    p = model.p
    tdir = out / "truth"
    tdir.mkdir(parents=True, exist_ok=True)
    sky = model.truth_sky()
    h = fits.Header()
    h["BUNIT"] = ("ADU/65535", "calibrated: (L-D)/(F/mean per CFA colour)")
    h["COLORSP"] = ("RGB" if sky.ndim == 3 else "MONO", "channel order")
    h["IMAGETYP"] = ("Truth", "noiseless simulated sky, not a frame to stack")
    fits.PrimaryHDU(data=sky, header=h).writeto(tdir / "sky.fits", overwrite=True)
    table = model.star_table()
    _write_stars(tdir / "stars_all.csv", table, np.ones(len(table["x"]), bool))
    _write_stars(tdir / "stars.csv", table, table["inside"])
    info = {
        "version": 1,
        "units": ("sky.fits and star fluxes: ADU/65535 of a perfectly calibrated reference "
                  "light, (L - D) / (F_c / mean_c(F_c)) with the flat normalised per CFA "
                  "colour; = sky electrons / gain / 65535 * flat_norm[c]"),
        "params": p.to_dict(),
        "reference_index": 0,
        "pattern": model.pattern,
        "sky": "sky.fits", "stars": "stars.csv", "stars_all": "stars_all.csv",
        "files": {_FOLDER[k]: [str(f.relative_to(out)) for f in v] for k, v in files.items()},
        "lights": light_info,
        "cosmic_rays_other": cr_info,
        "hot_pixels": [[int(r), int(c), float(v)] for (r, c), v in zip(model.hot_rc, model.hot_rates)],
        "cold_pixels": [[int(r), int(c), int(v)] for (r, c), v in zip(model.dead_rc, model.dead_v)],
        "satellite": model.satellite,
        "vignetting": {"center": list(model.vig_center), "radius": model.vig_radius,
                       "strength": p.vignetting,
                       "model": "1 - strength * (0.4 rho^2 + 0.6 rho^4), rho = r / radius"},
        "dust": model.dust,
        "flat_norm": model.flat_norm.tolist(),
        "flat_color": list(p.flat_color),
        "flat_levels_e": [model.flat_levels(i).tolist() for i in range(p.n_flats)],
        "dark_current_mean": float(model.dark[~_mask_of(model.hot_rc, model.shape)].mean(dtype=np.float64)),
    }
    tmp = tdir / ".truth.json.part"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, tdir / "truth.json")
    return load_truth(out)


def _mask_of(rc: np.ndarray, shape) -> np.ndarray:
    m = np.zeros(shape, bool)
    if len(rc):
        m[rc[:, 0], rc[:, 1]] = True
    return m


_STAR_FIELDS = ("x", "y", "flux", "fwhm", "saturated", "flux_r", "flux_g", "flux_b")


def _write_stars(path: Path, table: dict, sel: np.ndarray) -> None:
    order = np.argsort(-table["flux"][sel])
    cols = {k: np.asarray(table[k])[sel][order] for k in _STAR_FIELDS}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_STAR_FIELDS)
        for i in range(len(order)):
            w.writerow([f"{cols['x'][i]:.5f}", f"{cols['y'][i]:.5f}", f"{cols['flux'][i]:.8g}",
                        f"{cols['fwhm'][i]:.4f}", int(cols["saturated"][i]),
                        f"{cols['flux_r'][i]:.8g}", f"{cols['flux_g'][i]:.8g}",
                        f"{cols['flux_b'][i]:.8g}"])


def _read_stars(path: Path) -> np.recarray:
    dtype = [(k, bool if k == "saturated" else np.float64) for k in _STAR_FIELDS]
    rows = []
    with open(path, newline="") as fh:
        r = csv.reader(fh)
        head = next(r)
        for row in r:
            d = dict(zip(head, row))
            rows.append(tuple(bool(int(d[k])) if k == "saturated" else float(d[k])
                              for k in _STAR_FIELDS))
    return np.rec.array(np.array(rows, dtype=dtype)) if rows else np.recarray(0, dtype=dtype)


def load_truth(out_dir: "str | os.PathLike[str]") -> NightTruth:
    """Read the truth of a simulated night written by :func:`simulate_night`."""
    from astropy.io import fits

    out = Path(out_dir)
    tj = out / "truth" / "truth.json"
    if not tj.is_file():
        raise BadInputError(tj, "no simulated night here (truth.json missing)")
    try:
        info = json.loads(tj.read_text())
    except Exception as exc:
        raise BadInputError(tj, f"unreadable truth ({exc})") from None
    sky = fits.getdata(out / "truth" / info["sky"]).astype(np.float32)
    stars = _read_stars(out / "truth" / info["stars"])
    files = info["files"]
    hot = np.array([h[:2] for h in info["hot_pixels"]], np.int64).reshape(-1, 2)
    cold = np.array([h[:2] for h in info["cold_pixels"]], np.int64).reshape(-1, 2)
    return NightTruth(
        root=out,
        lights=[out / f for f in files.get("lights", [])],
        darks=[out / f for f in files.get("darks", [])],
        flats=[out / f for f in files.get("flats", [])],
        biases=[out / f for f in files.get("bias", [])],
        darkflats=[out / f for f in files.get("darkflats", [])],
        sky=sky,
        reference_index=int(info["reference_index"]),
        transforms=[np.array(li["transform"], np.float64) for li in info["lights"]],
        stars=stars,
        hot_pixels=hot,
        hot_rates=np.array([h[2] for h in info["hot_pixels"]], np.float64),
        cold_pixels=cold,
        params=NightParams.from_dict(info["params"]),
        info=info,
    )
