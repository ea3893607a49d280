"""Hot pixels voted by the lights (no darks) must not include star cores that stay on
the same pixels all night (undithered sessions such as the Seestar frames)."""

import numpy as np

from napari_astro.core.calibration import BadPixelAccumulator
from napari_astro.core.simulate import mosaic


def _frame(rng, hot, star_xy, fwhm=2.6, pattern="GRBG"):
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w]
    sigma = fwhm / 2.3548
    sky = np.full((3, h, w), 0.05, np.float32)
    for (x, y) in star_xy:
        psf = 0.5 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
        sky += psf[None] * np.array([1.0, 0.9, 0.7], np.float32)[:, None, None]
    cfa = mosaic(sky, pattern) + rng.normal(0, 0.002, (h, w)).astype(np.float32)
    for (y, x) in hot:
        cfa[y, x] = 0.8
    return cfa


def test_fixed_star_cores_are_not_hot_pixels():
    rng = np.random.default_rng(0)
    hot = [(10, 11), (40, 50), (33, 20)]
    stars = [(30.3, 20.6), (60.2, 45.1)]      # same place in every frame: no dither
    acc = BadPixelAccumulator((64, 80), "GRBG")
    for _ in range(8):
        acc.add(_frame(rng, hot, stars))
    bpm = acc.result()
    is_hot = bpm.kind == 1
    found = set(zip(bpm.rows[is_hot].tolist(), bpm.cols[is_hot].tolist()))
    for p in hot:
        assert p in found, f"hot pixel {p} missed"
    for (x, y) in stars:
        core = {(int(round(y)) + dy, int(round(x)) + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        assert not core & found, f"star core at {(x, y)} flagged as hot"
