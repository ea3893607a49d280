"""core.stats: the robust statistics every core module uses, against known truth."""

import numpy as np
import pytest

from napari_astro.core.stats import (MAD_SIGMA, b3_layer1, bwmv_sigma, location_scale, mad_sigma,
                                     median_mad_sigma, noise_estimate, subsample, wavelet_noise)


def test_mad_sigma_is_gaussian_sigma_and_ignores_outliers():
    rng = np.random.default_rng(0)
    x = (5.0 + 0.02 * rng.standard_normal(200_000)).astype(np.float32)
    assert mad_sigma(x) == pytest.approx(0.02, rel=0.01)
    med, s = median_mad_sigma(x)
    assert med == pytest.approx(5.0, abs=2e-4) and s == pytest.approx(0.02, rel=0.01)
    # 5 % of wild outliers (stars, hot pixels) barely move it; the std explodes
    y = x.copy()
    y[rng.random(y.size) < 0.05] = 50.0
    assert mad_sigma(y) == pytest.approx(0.02, rel=0.1)
    assert np.std(y) > 100 * 0.02
    assert median_mad_sigma(np.empty(0, np.float32)) == (0.0, 0.0)
    assert MAD_SIGMA == pytest.approx(1.0 / 0.6744897501960817)


def test_bwmv_is_more_efficient_than_mad():
    rng = np.random.default_rng(1)
    mad_est, bw_est = [], []
    for _ in range(200):
        x = rng.standard_normal(400).astype(np.float32)
        loc, s_mad = location_scale(x, "mad")
        loc2, s_bw = location_scale(x, "bwmv")
        assert loc == loc2
        mad_est.append(s_mad)
        bw_est.append(s_bw)
    # both estimate sigma = 1; the biweight with about half the scatter of the MAD
    assert np.mean(mad_est) == pytest.approx(1.0, abs=0.03)
    assert np.mean(bw_est) == pytest.approx(1.0, abs=0.03)
    assert np.std(bw_est) < 0.8 * np.std(mad_est)
    # a zero MAD (quantised data) falls back to the MAD instead of dividing by zero
    flat = np.zeros(100, np.float32)
    assert location_scale(flat, "bwmv") == (0.0, 0.0)
    assert bwmv_sigma(flat, 0.0, 1.0) == 0.0


def test_wavelet_noise_ignores_gradient_and_stars():
    rng = np.random.default_rng(2)
    h, w = 300, 400
    y, x = np.mgrid[0:h, 0:w]
    img = 0.1 + 2e-4 * x + 1e-4 * y + 0.01 * rng.standard_normal((h, w))
    for cy, cx in rng.integers(10, 290, (40, 2)):
        img += 0.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.3 ** 2))
    img = img.astype(np.float32)
    assert noise_estimate(img) == pytest.approx(0.01, rel=0.05)
    layer = b3_layer1(img)
    assert layer.shape == (h - 4, w - 4)
    # NaN pixels are ignored; too few samples give NaN, not an error
    img[:50] = np.nan
    assert noise_estimate(img) == pytest.approx(0.01, rel=0.06)
    assert np.isnan(wavelet_noise(np.full(10, np.nan, np.float32)))
    assert np.isnan(noise_estimate(np.zeros((4, 4), np.float32)))


def test_subsample_keeps_about_target_values():
    a = np.arange(2000 * 1500, dtype=np.float32).reshape(1500, 2000)
    s = subsample(a, 60_000)
    assert 40_000 < s.size < 100_000 and np.shares_memory(s, a)
    assert subsample(a[:10, :10], 60_000).size == 100
