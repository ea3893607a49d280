"""Stretches: screen-transfer-function auto-stretch and the histogram transformation.

The auto-stretch follows the STF recipe PixInsight documents: per channel (or
linked), shadows clip at ``median + shadows_clip * 1.4826 * MAD`` and the midtones
balance puts the clipped median at ``target_background`` through the midtones
transfer function (MTF).
"""

from __future__ import annotations

import numpy as np

from .image import AstroImage

__all__ = ["mtf", "stf_parameters", "auto_stretch"]


def mtf(m: float, x: np.ndarray) -> np.ndarray:
    """Midtones transfer function: maps 0->0, m->0.5, 1->1 (x in [0, 1])."""
    x = np.asarray(x, dtype=np.float32)
    m = np.float32(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ((m - 1) * x) / ((2 * m - 1) * x - m)
    out = np.where(x <= 0, 0, np.where(x >= 1, 1, out))
    return out.astype(np.float32)


def _sample(channel: np.ndarray, max_samples: int = 400_000) -> np.ndarray:
    step = max(1, int(np.sqrt(channel.size / max_samples)))
    s = channel[::step, ::step]
    return s[np.isfinite(s)]


def stf_parameters(channel: np.ndarray, *, shadows_clip: float = -2.8,
                   target_background: float = 0.25) -> tuple[float, float, float]:
    """(shadows, midtones, highlights) of the auto-STF for one 2-D channel."""
    s = _sample(channel)
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med))) * 1.4826
    c0 = min(max(med + shadows_clip * mad, 0.0), 1.0)
    x = (med - c0) / (1 - c0) if c0 < 1 else 0.5
    # Midtones m such that mtf(m, x) = target_background.
    t = target_background
    m = float((t - 1) * x / ((2 * t - 1) * x - t)) if x > 0 else 0.5
    return c0, min(max(m, 1e-4), 0.9999), 1.0


def auto_stretch(image: AstroImage, *, shadows_clip: float = -2.8,
                 target_background: float = 0.25, linked: bool = False) -> AstroImage:
    """Non-linear display stretch of a linear image (STF + histogram transformation).

    Parameters
    ----------
    shadows_clip : float, default -2.8
        Shadows clipping point in units of the normalised MAD below the median.
    target_background : float, default 0.25
        Stretched value of the background median.
    linked : bool, default False
        One set of parameters for all channels (keeps the colour balance) instead
        of per channel (neutralises a colour cast).
    """
    chans = image.channel_views()
    if linked:
        params = [stf_parameters(np.mean(np.stack(chans), axis=0), shadows_clip=shadows_clip,
                                 target_background=target_background)] * len(chans)
    else:
        params = [stf_parameters(c, shadows_clip=shadows_clip,
                                 target_background=target_background) for c in chans]
    out = []
    for c, (c0, m, c1) in zip(chans, params):
        x = np.clip((c - c0) / max(c1 - c0, 1e-12), 0, 1)
        out.append(mtf(m, x))
    data = np.stack(out) if image.is_color else out[0]
    return image.derive(data, "post.stretch", {"method": "stf", "shadows_clip": shadows_clip,
                                               "target_background": target_background,
                                               "linked": linked})
