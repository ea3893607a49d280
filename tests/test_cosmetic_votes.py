"""Hot pixels voted by the lights (no darks) must not include star cores that stay on
the same pixels all night (undithered sessions such as the Seestar frames)."""

import numpy as np
import pytest

from napari_astro.core.calibration import BadPixelAccumulator, BadPixelMap
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


def _numpy_votes(frames, pattern, hot_sigma=5.0, cold_sigma=5.0):
    """The vote as the numpy masks counted it (before the fused kernels)."""
    from napari_astro.core.cosmetic import _planes, _residual
    from napari_astro.core.stats import median_mad_sigma, subsample

    hot_n = np.zeros(frames[0].shape, np.uint16)
    cold_n = np.zeros(frames[0].shape, np.uint16)
    for data in frames:
        res = _residual(data, pattern)
        hot = np.zeros(res.shape, bool)
        cold = np.zeros(res.shape, bool)
        for sl in _planes(pattern):
            plane = res[sl]
            sub = subsample(plane, 60_000)
            med, s = median_mad_sigma(sub)
            if s <= 0:
                s = float(np.mean(np.abs(sub - med))) or 1e-12
            hot[sl] = plane > med + hot_sigma * s
            cold[sl] = plane < med - cold_sigma * s
        adj = np.zeros_like(res)
        adj[1:] += res[:-1]
        adj[:-1] += res[1:]
        adj[:, 1:] += res[:, :-1]
        adj[:, :-1] += res[:, 1:]
        hot &= adj < 4 * 0.25 * res
        hot_n += hot
        cold_n += cold
    return hot_n, cold_n


@pytest.mark.parametrize("pattern, shape", [("GRBG", (64, 80)), (None, (51, 77)),
                                            ("RGGB", (601, 403))])
def test_fused_vote_counts_equal_the_numpy_masks(pattern, shape):
    rng = np.random.default_rng(1)
    frames = []
    for k in range(4):
        f = rng.normal(0.1, 0.003, shape).astype(np.float32)
        f = np.round(f * 65535) / np.float32(65535)       # quantised like 16-bit data
        f[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = 0.9
        f[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = 0.0
        f[5 + k, 7:10] += 0.05                            # not lone: not hot
        frames.append(f.astype(np.float32))
    acc = BadPixelAccumulator(shape, pattern)
    for f in frames:
        acc.add(f)
    hot, cold = _numpy_votes(frames, pattern)
    np.testing.assert_array_equal(acc.hot, hot)
    np.testing.assert_array_equal(acc.cold, cold)
    bpm = acc.result()
    need = 2
    ref = BadPixelMap.from_mask(hot >= need, cold >= need)
    np.testing.assert_array_equal(bpm.rows, ref.rows)
    np.testing.assert_array_equal(bpm.cols, ref.cols)
    np.testing.assert_array_equal(bpm.kind, ref.kind)


def test_median_mad_kernel_is_numpys():
    from napari_astro.core.cosmetic import _median_mad_kernel
    from napari_astro.core.stats import MAD_SIGMA, median_mad_sigma

    rng = np.random.default_rng(2)
    cases = [rng.normal(0, 1, 10_001), rng.normal(0, 1, 10_000),
             rng.standard_cauchy(5_001), np.round(rng.normal(0, 3, 4_000)),
             np.zeros(100), np.r_[np.zeros(101), np.full(5, 5.0)], np.array([3.0]),
             np.array([1.0, 2.0])]
    for x in cases:
        x = x.astype(np.float32)
        med, mad = _median_mad_kernel(x)
        # numba returns Python floats: the float32 product as median_mad_sigma forms it
        assert (float(med), float(MAD_SIGMA * np.float32(mad))) == median_mad_sigma(x)
