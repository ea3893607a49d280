"""Simulated LINEAR stacked images with known truth, for post-processing tests.

One call, :func:`simulate_linear`, returns an :class:`~napari_astro.core.image.AstroImage`
that looks like the output of integration (float32, linear, [0, 1]) and a
:class:`LinearTruth` holding every component separately, so a test can compare a
step's output with the exact answer (the background a background extraction must
find, the cast a colour calibration must undo, the stars a denoiser must keep...).

The image model (per channel ``c``, pixel ``(y, x)``)::

    signal_c = cast_c * V(y, x) * (sky * sky_color_c + G_c(y, x) + N_c(y, x) + S_c(y, x))
               + offset_c
    image_c  = signal_c + noise            (NaN / 0 outside the coverage, if any)

* ``sky``: the sky level (image units, full scale = 1);
* ``G``: a large-scale light-pollution gradient (a tilted ramp plus a dome from a
  light source outside the frame), peak-to-peak ``gradient * sky`` in green, tinted by
  ``gradient_color`` (orange: sodium/LED light pollution);
* ``V``: a multiplicative vignetting pattern, 1 at the optical centre, ``1 -
  vignetting`` in the corners;
* ``N``: a faint emission nebula (a few elongated Gaussian lobes modulated by a
  smooth texture), peak ``nebula``, reddish;
* ``S``: Moffat stars (beta 2.5, FWHM ``fwhm`` px) with a power-law flux
  distribution, a few bright ones peaking near 0.9, with B-V-like colours;
* ``cast``/``offsets``: a multiplicative colour cast and additive channel offsets
  (what colour calibration and background neutralisation undo);
* noise: Gaussian of standard deviation ``noise`` at the sky level (``poisson=True``
  makes it scale as the square root of the signal), higher where fewer frames
  covered (``frames``: dithered, rotated frames whose footprints give a coverage map).

Example
-------
>>> img, truth = simulate_linear((300, 400), stars=100, seed=1)
>>> residual = img.data - truth.signal          # the noise only
>>> flat = truth.background                     # what background extraction must model
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional, Sequence

import numpy as np

from .image import AstroImage

__all__ = ["simulate_linear", "LinearTruth", "block_residual_rms", "coverage_of_frames"]


@dataclasses.dataclass
class LinearTruth:
    """The components of a :func:`simulate_linear` image (all float32, noiseless).

    Arrays of shape ``(C, H, W)`` have ``C = 3`` for colour, 1 for mono (index
    ``[0]`` then). ``background``, ``objects`` and ``signal`` are in image units
    *after* cast, vignetting and offsets, i.e. directly comparable with the image.

    Attributes
    ----------
    sky : ndarray (C,)
        Flat sky level per channel before cast and vignetting (``sky * sky_color``).
    gradient : ndarray (C, H, W)
        Additive light-pollution gradient ``G`` (before cast and vignetting).
    vignetting : ndarray (H, W)
        Multiplicative pattern ``V`` in (0, 1].
    nebula : ndarray (C, H, W)
        Nebula ``N`` (before cast and vignetting).
    stars : ndarray (C, H, W)
        Stars ``S`` (before cast and vignetting).
    star_table : dict of ndarray
        ``x``, ``y`` (px, 0-based), ``flux`` (C, n) total flux per channel before cast,
        ``peak`` (max over channels), ``fwhm`` (px), ``bv`` (a B-V-like colour index).
    cast, offsets : ndarray (C,)
        Multiplicative colour cast and additive offsets.
    noise : float
        Gaussian noise standard deviation at the sky level where all frames overlap.
    coverage : ndarray (H, W) of int16, or None
        Frames covering each pixel (``frames > 0``), else None.
    valid : ndarray (H, W) of bool
        Pixels that hold data (not the NaN/zero border).
    """

    sky: np.ndarray
    gradient: np.ndarray
    vignetting: np.ndarray
    nebula: np.ndarray
    stars: np.ndarray
    star_table: dict
    cast: np.ndarray
    offsets: np.ndarray
    noise: float
    coverage: Optional[np.ndarray]
    valid: np.ndarray

    def _apply(self, x: np.ndarray, *, offsets: bool) -> np.ndarray:
        out = x * self.vignetting[None] * self.cast[:, None, None]
        if offsets:
            out = out + self.offsets[:, None, None]
        return out.astype(np.float32)

    @property
    def background(self) -> np.ndarray:
        """``(C, H, W)``: the smooth background as it appears in the image:
        ``cast * V * (sky + G) + offsets`` (what background extraction models)."""
        return self._apply(self.sky[:, None, None] + self.gradient, offsets=True)

    @property
    def flat_background(self) -> np.ndarray:
        """``(C,)``: the flat sky a perfect subtraction leaves, ``cast * sky + offsets``
        at the vignetting centre (V = 1)."""
        return (self.cast * self.sky + self.offsets).astype(np.float32)

    @property
    def objects(self) -> np.ndarray:
        """``(C, H, W)``: nebula + stars as they appear (cast and vignetting applied,
        no offsets)."""
        return self._apply(self.nebula + self.stars, offsets=False)

    @property
    def signal(self) -> np.ndarray:
        """``(C, H, W)``: the noiseless image (background + objects)."""
        return (self.background + self.objects).astype(np.float32)

    @property
    def sky_level(self) -> float:
        """Mean flat sky over channels after cast (the unit of "% of the sky")."""
        return float(np.mean(self.cast * self.sky))


def coverage_of_frames(shape: tuple[int, int], transforms: Sequence[np.ndarray]) -> np.ndarray:
    """Frames covering each reference pixel.

    Parameters
    ----------
    shape : (H, W)
        Size of the reference grid and of every frame.
    transforms : sequence of (3, 3) arrays
        For each frame the affine map from reference pixel (x, y, 1) to frame pixel.

    Returns
    -------
    ndarray (H, W) of int16
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cov = np.zeros((h, w), np.int16)
    for m in transforms:
        fx = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
        fy = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
        # A reference pixel is covered when its centre falls inside the frame's
        # pixel area [-0.5, W - 0.5) (the interpolation footprint, pixel centres).
        cov += ((fx >= -0.5) & (fx < w - 0.5) & (fy >= -0.5) & (fy < h - 0.5)).astype(np.int16)
    return cov


def _frame_transforms(shape, n, dither, rotation, rng) -> list[np.ndarray]:
    h, w = shape
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    out = []
    for _ in range(n):
        # The output grid is the mean pointing, not one frame's: corners that no
        # frame reached stay empty (NaN/zero), as with a stack drizzled or
        # registered onto a virtual reference.
        dx, dy = rng.uniform(-dither, dither, 2)
        th = math.radians(rng.uniform(-rotation, rotation))
        c, s = math.cos(th), math.sin(th)
        # frame = R (ref - centre) + centre + shift
        m = np.array([[c, -s, cx - c * cx + s * cy + dx],
                      [s, c, cy - s * cx - c * cy + dy],
                      [0, 0, 1]], float)
        out.append(m)
    return out


def _moffat_stamp(out: np.ndarray, x: float, y: float, amps: np.ndarray, alpha: float,
                  beta: float, radius: int) -> None:
    """Add a Moffat star (peak ``amps[c]`` per channel) to ``out`` (C, H, W) in place,
    integrated over the pixel by 3x3 sub-sampling (so small FWHMs keep their flux)."""
    _, h, w = out.shape
    x0, x1 = max(int(x) - radius, 0), min(int(x) + radius + 2, w)
    y0, y1 = max(int(y) - radius, 0), min(int(y) + radius + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    sub = (np.arange(3) - 1) / 3.0
    yy = np.arange(y0, y1)[:, None, None, None] + sub[None, None, :, None] - y
    xx = np.arange(x0, x1)[None, :, None, None] + sub[None, None, None, :] - x
    prof = (1.0 + (xx * xx + yy * yy) / (alpha * alpha)) ** (-beta)
    prof = prof.mean(axis=(2, 3))
    out[:, y0:y1, x0:x1] += amps[:, None, None] * prof[None].astype(np.float32)


def _smooth_noise(shape, scale, rng) -> np.ndarray:
    """Smooth random texture in [0, 1] with features ~``scale`` px (made on a coarse
    grid then upsampled, so a 6000x4000 image costs milliseconds)."""
    from scipy import ndimage

    h, w = shape
    f = max(1, int(scale // 4))
    ch, cw = h // f + 2, w // f + 2
    base = ndimage.gaussian_filter(rng.standard_normal((ch, cw)), scale / f / 2.0, mode="wrap")
    up = ndimage.zoom(base, (h / (ch - 1) * 1.0001, w / (cw - 1) * 1.0001), order=1)[:h, :w]
    up = (up - up.min()) / (np.ptp(up) or 1.0)
    return up.astype(np.float32)


def simulate_linear(shape: tuple[int, int] = (600, 800), *, color: bool = True,
                    sky: float = 0.1, sky_color: Sequence[float] = (1.0, 1.0, 1.0),
                    gradient: float = 0.09,
                    gradient_color: Sequence[float] = (1.15, 1.0, 0.7),
                    gradient_angle: Optional[float] = None,
                    vignetting: float = 0.0, nebula: float = 0.02,
                    stars: int = 300, fwhm: float = 3.0, bright_stars: int = 5,
                    cast: Sequence[float] = (1.0, 1.0, 1.0),
                    offsets: Sequence[float] = (0.0, 0.0, 0.0),
                    noise: float = 0.002, poisson: bool = False,
                    frames: int = 0, dither: Optional[float] = None, rotation: float = 1.5,
                    border: Literal["nan", "zero", "none"] = "nan",
                    seed: int = 0) -> tuple[AstroImage, LinearTruth]:
    """A simulated linear stacked image and its truth.

    Parameters
    ----------
    shape : (H, W)
        Image size in px.
    color : bool
        ``(3, H, W)`` RGB if True, else ``(H, W)`` mono (colour options then use
        their first element).
    sky : float
        Flat sky level, image units (full scale 1).
    sky_color : 3 floats
        Relative sky level per channel (before cast).
    gradient : float
        Peak-to-peak of the light-pollution gradient as a fraction of ``sky``
        (green channel); 0 for none. Default 0.09 (9 %).
    gradient_color : 3 floats
        Relative gradient amplitude per channel (light pollution is orange).
    gradient_angle : float, optional
        Direction of the ramp, degrees from +x (random if None).
    vignetting : float
        Light lost in the corners (0..0.9): ``V = 1 - vignetting`` there, 1 at the
        centre. Multiplies everything (sky, gradient, objects).
    nebula : float
        Peak of the nebula, image units (0 for none).
    stars : int
        Number of stars.
    fwhm : float
        Star FWHM, px.
    bright_stars : int
        How many of the stars are bright (peaks 0.4-0.9).
    cast : 3 floats
        Multiplicative colour cast per channel.
    offsets : 3 floats
        Additive offset per channel, image units.
    noise : float
        Noise standard deviation at the sky level where all frames overlap.
    poisson : bool
        Noise variance proportional to the signal (``noise`` at the sky level).
    frames : int
        If > 0, the image is the stack of this many dithered, rotated frames: a
        coverage map is made, pixels covered by fewer frames are noisier, pixels
        covered by none are the ``border``.
    dither : float, optional
        Maximum dither shift, px (default 3 % of the smaller side).
    rotation : float
        Maximum field rotation between frames, degrees.
    border : {"nan", "zero", "none"}
        Value outside the coverage (``"none"``: keep the simulated values).
    seed : int
        Random seed (everything is reproducible).

    Returns
    -------
    image : AstroImage
        float32 data clipped to [0, 1]; ``image.mask`` is True where data are valid.
        With ``frames``, ``header["NCOMBINE"] = frames``.
    truth : LinearTruth
    """
    rng = np.random.default_rng(seed)
    h, w = int(shape[0]), int(shape[1])
    nc = 3 if color else 1

    def chan(v) -> np.ndarray:
        a = np.asarray(v, float).reshape(-1)
        if a.size == 1:
            a = np.repeat(a, 3)
        return (a[:3] if color else a[:1]).astype(np.float64)

    sky_c = sky * chan(sky_color)
    cast_c, off_c = chan(cast), chan(offsets)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = (xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) / 2) / (w / 2)

    # -- light-pollution gradient: ramp + dome of a light source beyond an edge
    ang = math.radians(rng.uniform(0, 360) if gradient_angle is None else gradient_angle)
    ramp = xn * math.cos(ang) + yn * math.sin(ang)
    sx, sy = 2.2 * math.cos(ang), 2.2 * math.sin(ang)
    dome = 1.0 / (1.0 + ((xn - sx) ** 2 + (yn - sy) ** 2))
    g = 0.6 * (ramp - ramp.min()) / (np.ptp(ramp) or 1.0) + 0.4 * (dome - dome.min()) / (np.ptp(dome) or 1.0)
    g = (g - g.min()) / (np.ptp(g) or 1.0)
    grad = (gradient * sky * g)[None] * chan(gradient_color)[:, None, None].astype(np.float32)

    # -- vignetting: 1 at the centre, 1 - v in the corners (cos^4-like profile)
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    vig = (1.0 - vignetting * (0.6 * r2 + 0.4 * r2 * r2)).astype(np.float32)

    # -- nebula: elongated Gaussian lobes modulated by a smooth texture, reddish
    neb = np.zeros((h, w), np.float32)
    if nebula > 0:
        cx0 = rng.uniform(0.35, 0.65) * w
        cy0 = rng.uniform(0.35, 0.65) * h
        size = 0.09 * min(h, w)
        for k in range(4):
            cx = cx0 + rng.normal(0, size * 0.8)
            cy = cy0 + rng.normal(0, size * 0.8)
            sa, sb = size * rng.uniform(0.7, 1.4), size * rng.uniform(0.3, 0.7)
            th = rng.uniform(0, math.pi)
            u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
            v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
            neb += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))
        neb *= 0.5 + _smooth_noise((h, w), size * 0.6, rng)
        neb *= nebula / (neb.max() or 1.0)
    neb_color = chan((1.0, 0.45, 0.6))
    neb_c = neb[None] * neb_color[:, None, None].astype(np.float32)

    # -- stars: power-law fluxes, a few bright ones, B-V-like colours
    beta = 2.5
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    n = int(stars)
    sx_ = rng.uniform(0, w - 1, n)
    sy_ = rng.uniform(0, h - 1, n)
    # peaks: faint ones from ~3 noise sigma up, power law (dN/dF ~ F^-2)
    lo, hi = 3.0 * noise if noise > 0 else 0.005, 0.3
    u = rng.uniform(0, 1, n)
    peak = lo / (1.0 - u * (1.0 - lo / hi))
    nb = min(bright_stars, n)
    if nb:
        peak[:nb] = rng.uniform(0.4, 0.9, nb)
    bv = np.clip(rng.normal(0.65, 0.35, n), -0.3, 2.0)
    # colour from B-V: redder stars have more R, less B (relative to G = 1)
    rel = np.stack([1.0 + 0.45 * (bv - 0.65), np.ones(n), 1.0 - 0.5 * (bv - 0.65)])
    rel = np.clip(rel, 0.3, 2.0)
    rel = rel / rel.max(axis=0, keepdims=True)
    if not color:
        rel = rel[1:2]
    star_img = np.zeros((nc, h, w), np.float32)
    for i in range(n):
        amps = (peak[i] * rel[:, i]).astype(np.float32)
        radius = int(min(max(4 * fwhm, fwhm * (peak[i] / max(noise, 1e-4) * 3) ** (1 / (2 * beta))), 0.25 * min(h, w)))
        _moffat_stamp(star_img, sx_[i], sy_[i], amps, alpha, beta, radius)
    flux = peak[None] * rel * (math.pi * alpha * alpha / (beta - 1.0))

    # -- coverage of dithered, rotated frames
    coverage = None
    valid = np.ones((h, w), bool)
    if frames and frames > 0:
        d = 0.03 * min(h, w) if dither is None else float(dither)
        coverage = coverage_of_frames((h, w), _frame_transforms((h, w), int(frames), d, rotation, rng))
        valid = coverage > 0

    truth = LinearTruth(sky=sky_c.astype(np.float32), gradient=grad.astype(np.float32),
                        vignetting=vig, nebula=neb_c.astype(np.float32), stars=star_img,
                        star_table=dict(x=sx_, y=sy_, flux=flux, peak=peak,
                                        fwhm=np.full(n, fwhm), bv=bv),
                        cast=cast_c.astype(np.float32), offsets=off_c.astype(np.float32),
                        noise=float(noise), coverage=coverage, valid=valid)
    signal = truth.signal
    if noise > 0:
        sigma = np.full((h, w), noise, np.float32)
        if coverage is not None:
            sigma = sigma * np.sqrt(frames / np.maximum(coverage, 1)).astype(np.float32)
        z = rng.standard_normal(signal.shape).astype(np.float32)
        if poisson:
            ref = float(np.mean(truth.flat_background))
            z *= np.sqrt(np.maximum(signal, 0) / ref)
        data = signal + z * sigma[None]
    else:
        data = signal.copy()
    data = np.clip(data, 0.0, 1.0)
    if coverage is not None and border != "none":
        data[:, ~valid] = np.nan if border == "nan" else 0.0
    img = AstroImage(data=data if color else data[0], mask=valid)
    if frames:
        img.header["NCOMBINE"] = int(frames)
    img.add_history("simulate.linear", dict(shape=[h, w], color=color, sky=sky, gradient=gradient,
                                            vignetting=vignetting, nebula=nebula, stars=n,
                                            noise=noise, frames=frames, seed=seed))
    return img, truth


def block_residual_rms(a: np.ndarray, b: np.ndarray, *, block: int = 32,
                       valid: Optional[np.ndarray] = None, remove_mean: bool = True) -> float:
    """RMS of the block medians of ``a - b`` (the large-scale residual).

    Parameters
    ----------
    a, b : ndarray (H, W) or (C, H, W)
        E.g. a fitted background model and the true background.
    block : int
        Block side, px; partial blocks at the right/bottom edges are ignored.
    valid : ndarray (H, W) of bool, optional
        Only blocks entirely valid are used.
    remove_mean : bool
        Subtract the mean of the block medians first (per channel): a constant offset
        is not a gradient.

    Returns
    -------
    float
        Root mean square over blocks (and channels), in the units of ``a``.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim == 2:
        d = d[None]
    c, h, w = d.shape
    nby, nbx = h // block, w // block
    blocks = d[:, :nby * block, :nbx * block].reshape(c, nby, block, nbx, block)
    med = np.nanmedian(blocks.transpose(0, 1, 3, 2, 4).reshape(c, nby, nbx, -1), axis=-1)
    keep = np.ones((nby, nbx), bool)
    if valid is not None:
        vb = np.asarray(valid)[:nby * block, :nbx * block].reshape(nby, block, nbx, block)
        keep = vb.all(axis=(1, 3))
    vals = med[:, keep]
    if remove_mean:
        vals = vals - np.nanmean(vals, axis=1, keepdims=True)
    return float(np.sqrt(np.nanmean(vals ** 2)))
