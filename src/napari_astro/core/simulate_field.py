"""A simulated linear colour field of real stars, for plate solving and colour calibration.

Stars come from the shipped catalogue (:mod:`.catalog`: real positions, V and B-V),
projected with a TAN WCS of the given centre, pixel scale and rotation; each star's R,
G, B flux is ``10**(-0.4 (V - 10)) * flux10 * channel_response(B-V) /
channel_response(white)`` (the same model :mod:`.color` calibrates with, so a star of
the reference colour is exactly white in the true image). The camera then applies a
colour cast (per-channel gains) and channel offsets on top of a neutral sky, and noise.
The header carries RA/DEC and FOCALLEN/XPIXSZ hints like a capture program writes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .color import channel_response, WHITE_BV

__all__ = ["FieldTruth", "simulate_field", "field_wcs"]


@dataclasses.dataclass
class FieldTruth:
    """What :func:`simulate_field` put in.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The true WCS (0-based pixels).
    cast : ndarray (3,)
        Per-channel gains applied (the white balance to undo: factors = cast[1] / cast).
    offsets : ndarray (3,)
        Per-channel additive offsets (data units).
    sky : float
        Neutral sky level before cast and offsets.
    background : ndarray (3,)
        Per-channel background level of the output: ``cast * sky + offsets``.
    stars : structured ndarray
        Catalogue rows rendered, with added fields ``x``, ``y`` (px) and ``rgb`` (3,)
        true fluxes (before the cast).
    true_factors : ndarray (3,)
        The white-balance factors that undo the cast, G = 1.
    noiseless : ndarray (3, H, W) or None
        The image before noise (with cast and offsets); None unless kept.
    """

    wcs: Any
    cast: np.ndarray
    offsets: np.ndarray
    sky: float
    background: np.ndarray
    stars: np.ndarray
    true_factors: np.ndarray
    noiseless: np.ndarray


def field_wcs(ra_deg: float, dec_deg: float, shape2d: tuple[int, int], scale_arcsec: float,
              rotation_deg: float = 0.0, flip: bool = False):
    """TAN WCS centred on the image, +y at ``rotation_deg`` east of north, east left."""
    from astropy.wcs import WCS

    h, w = shape2d
    s = scale_arcsec / 3600.0
    th = np.radians(rotation_deg)
    # standard orientation (north up, east left): dRA/dx = -s, dDec/dy = +s, then rotate
    cd = np.array([[-s * np.cos(th), s * np.sin(th)],
                   [s * np.sin(th), s * np.cos(th)]])
    if flip:
        cd[:, 0] *= -1
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg % 360.0, dec_deg]
    wcs.wcs.crpix = [(w - 1) / 2.0 + 1.0, (h - 1) / 2.0 + 1.0]
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    return wcs


def simulate_field(ra_deg: float = 315.40, dec_deg: float = 68.17, *,
                   shape: tuple[int, int] = (600, 900), scale_arcsec: float = 6.0,
                   rotation_deg: float = 25.0, flip: bool = False, fwhm_px: float = 2.8,
                   cast: tuple[float, float, float] = (1.25, 1.0, 0.78),
                   offsets: tuple[float, float, float] = (0.012, 0.004, 0.02),
                   sky: float = 0.05, flux10: float = 1.0, noise: float = 0.0015,
                   white: str = "g2v", saturation: float = 1.0, seed: int = 0,
                   write_hints: bool = True, keep_noiseless: bool = True):
    """Render a linear RGB field of catalogue stars.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Field centre, J2000 degrees (default NGC 7023's region).
    shape : (H, W)
        Image size, pixels.
    scale_arcsec : float
        Pixel scale, arcsec/px.
    rotation_deg : float
        Position angle of +y, degrees east of north.
    flip : bool
        Mirror the image (parity).
    fwhm_px : float
        Gaussian PSF FWHM, pixels.
    cast, offsets : 3 floats
        Camera gains per channel and additive offsets (data units of [0, 1]).
    sky : float
        Neutral sky before the cast.
    flux10 : float
        Total G flux of a V = 10 star (data units x px).
    noise : float
        Gaussian noise sigma per channel (data units) plus Poisson-like star noise
        (sigma ~ sqrt(signal * noise)).
    white : str
        The white reference under which the true image is white (``"g2v"``).
    saturation : float
        Values are clipped here (saturated star cores).
    write_hints : bool
        Write RA/DEC, FOCALLEN (500 mm) and XPIXSZ into the header.
    keep_noiseless : bool
        Keep the noiseless image in the truth (False saves memory on big fields).

    Returns
    -------
    image : AstroImage
    truth : FieldTruth
    """
    from .catalog import stars_in_cone
    from .image import AstroImage

    h, w = shape
    rng = np.random.default_rng(seed)
    wcs = field_wcs(ra_deg, dec_deg, shape, scale_arcsec, rotation_deg, flip)
    radius = np.hypot(h, w) / 2.0 * scale_arcsec / 3600.0 * 1.05
    cat = stars_in_cone(ra_deg, dec_deg, radius)
    pix = wcs.all_world2pix(np.column_stack([cat["ra"], cat["dec"]]), 0)
    margin = 4 * fwhm_px
    inside = ((pix[:, 0] > -margin) & (pix[:, 0] < w - 1 + margin)
              & (pix[:, 1] > -margin) & (pix[:, 1] < h - 1 + margin))
    cat, pix = cat[inside], pix[inside]
    rgb = (10.0 ** (-0.4 * (cat["vmag"].astype(np.float64) - 10.0)))[:, None] * flux10 \
        * channel_response(cat["bv"]) / channel_response(WHITE_BV[white])

    sig = fwhm_px / 2.3548
    # float32 throughout: a 6000x4000 field stays under 1 GB
    img = np.zeros((3, h, w), np.float32)
    half = int(np.ceil(6 * sig)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    norm = 1.0 / (2 * np.pi * sig * sig)
    for (x, y), f in zip(pix, rgb):
        ix, iy = int(round(x)), int(round(y))
        psf = norm * np.exp(-0.5 * (((xx + ix - x) ** 2) + ((yy + iy - y) ** 2)) / (sig * sig))
        y0, y1 = iy - half, iy + half + 1
        x0, x1 = ix - half, ix + half + 1
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = psf.shape[0] - max(0, y1 - h), psf.shape[1] - max(0, x1 - w)
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        img[:, max(0, y0):min(h, y1), max(0, x0):min(w, x1)] += \
            (f[:, None, None] * psf[None, sy0:sy1, sx0:sx1]).astype(np.float32)
    cast_a = np.asarray(cast, np.float64)
    off = np.asarray(offsets, np.float64)
    for c in range(3):  # noiseless = cast * (stars + sky) + offset, in place
        img[c] *= np.float32(cast_a[c])
    noise_sd = np.sqrt(np.float32(noise) ** 2 + np.maximum(img, 0) * np.float32(noise * 0.05))
    for c in range(3):
        img[c] += np.float32(cast_a[c] * sky + off[c])
    noiseless = img.copy() if keep_noiseless else None
    noise_sd *= rng.standard_normal(img.shape, dtype=np.float32)
    img += noise_sd
    del noise_sd
    data = np.clip(img, 0.0, saturation, out=img)

    from astropy.io import fits

    header = fits.Header()
    if write_hints:
        header["RA"] = (float(ra_deg) + 0.3 * scale_arcsec / 60.0, "[deg] approximate pointing")
        header["DEC"] = (float(dec_deg) - 0.2 * scale_arcsec / 60.0, "[deg] approximate pointing")
        header["FOCALLEN"] = (500.0, "[mm]")
        header["XPIXSZ"] = (scale_arcsec * 500.0 / 206.264806, "[um]")
        header["XBINNING"] = 1
    header["OBJECT"] = "simulated field"
    out_dtype = np.dtype(cat.dtype.descr + [("x", "f8"), ("y", "f8"), ("rgb", "f8", (3,))])
    stars = np.empty(len(cat), out_dtype)
    for name in cat.dtype.names:
        stars[name] = cat[name]
    stars["x"], stars["y"], stars["rgb"] = pix[:, 0], pix[:, 1], rgb
    truth = FieldTruth(wcs=wcs, cast=cast_a, offsets=off, sky=float(sky),
                       background=cast_a * sky + off, stars=stars,
                       true_factors=cast_a[1] / cast_a, noiseless=noiseless)
    return AstroImage(data, header=header, path="simulated-field.fits"), truth
