"""npe2 sample data: a simulated stacked linear colour image and a simulated raw session.

Both come from :mod:`napari_astro.core.simulate` in memory (nothing is written to
disk) and never import napari: they return LayerData tuples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_stack", "sample_session"]

_STACK_FRAMES = 20


def _limits(a: np.ndarray, lo: float = 0.5, hi: float = 99.8) -> list[float]:
    lo_v, hi_v = np.percentile(a[::4, ::4], [lo, hi])
    return [float(lo_v), float(max(hi_v, lo_v + 1e-6))]


def sample_stack(width: int = 800, height: int = 600, seed: int = 1) -> list[tuple]:
    """A simulated integrated (stacked) linear colour image.

    The noiseless sky of a simulated night (stars, nebula, light-pollution gradient)
    in calibrated units, plus the noise left after averaging 20 lights of 120 s.

    Returns
    -------
    list of LayerData
        One ``(data, meta, "image")``: an RGB layer of the float32 linear stack
        (values in [0, 1]) with header and HISTORY in ``metadata["astro"]``.
    """
    from ._reader import prefer_napari_astro
    from .core.simulate import NightModel, NightParams

    prefer_napari_astro()
    p = NightParams(width=width, height=height, n_lights=1, seed=seed, satellite=False)
    model = NightModel(p)
    sky = model.truth_sky()
    rng = np.random.default_rng(seed)
    # electrons per frame from sky units, then shot + dark + read noise of the mean
    norm = (model.flat_norm / (p.gain * 65535.0)).astype(np.float32)[:, None, None]
    electrons = sky / norm
    var = (electrons + p.dark_current * p.exposure + p.read_noise ** 2) / _STACK_FRAMES
    data = sky + rng.standard_normal(sky.shape, dtype=np.float32) * np.sqrt(var) * norm
    data = np.clip(data, 0.0, 1.0).astype(np.float32)
    # One RGB layer with provenance, as the reader gives for a colour FITS, so every
    # step widget can take it as one colour image.
    from .core.image import AstroImage
    from .widgets._layers import image_to_layer_data

    img = AstroImage(data)
    img.header["IMAGETYP"] = "Master Light"
    img.header["NCOMBINE"] = _STACK_FRAMES
    img.add_history("sample.simulated_stack", {"frames": _STACK_FRAMES, "seed": seed})
    return [image_to_layer_data(img, "simulated stack")]


def sample_session(n_lights: int = 4, width: int = 800, height: int = 600,
                   seed: int = 2) -> list[tuple]:
    """A few simulated raw one-shot-colour lights (RGGB mosaics, dithered, 120 s).

    Returns
    -------
    list of LayerData
        One ``(data, meta, "image")``: float32 ``(n_lights, H, W)`` raw CFA values
        (ADU/65535), a slider over the lights.
    """
    from .core.simulate import NightModel, NightParams

    p = NightParams(width=width, height=height, n_lights=n_lights, seed=seed)
    model = NightModel(p)
    frames = np.empty((n_lights, height, width), np.float32)
    for k in range(n_lights):
        raw, _ = model.light_frame(k)
        frames[k] = raw * np.float32(1.0 / 65535.0)
    meta = {
        "name": "simulated raw lights (RGGB)",
        "rgb": False,
        "colormap": "gray",
        "contrast_limits": _limits(frames[0], 1.0, 99.5),
        "metadata": {"napari_astro": {"kind": "raw CFA lights", "bayer": "RGGB",
                                      "transforms": [t.tolist() for t in model.transforms],
                                      "params": p.to_dict()}},
    }
    return [(frames, meta, "image")]
