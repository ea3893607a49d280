"""Star detection against synthetic fields with known truth (positions, FWHM, sky)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from napari_astro.core.stars import (Stars, cfa_box_luminance, detect_stars, detect_stars_cfa,
                                     estimate_background, frame_quality,
                                     pixel_scale_from_header)


def render(shape, x, y, flux, fwhm, *, beta=None, sky=0.05, noise=0.002, seed=0):
    """Stars integrated over pixels (Gaussian exactly via erf, Moffat by 5x5
    supersampling) on a flat sky with Gaussian noise; float64 (H, W)."""
    h, w = shape
    img = np.full(shape, sky, np.float64)
    sig = fwhm / 2.3548
    r = int(np.ceil(5 * fwhm)) + 2
    for xi, yi, f in zip(x, y, flux):
        ix, iy = int(round(xi)), int(round(yi))
        x0, x1, y0, y1 = max(ix - r, 0), min(ix + r + 1, w), max(iy - r, 0), min(iy + r + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        if beta is None:
            def prof(g, c):
                return 0.5 * (erf((g + 0.5 - c) / (np.sqrt(2) * sig))
                              - erf((g - 0.5 - c) / (np.sqrt(2) * sig)))
            img[y0:y1, x0:x1] += f * np.outer(prof(np.arange(y0, y1), yi),
                                              prof(np.arange(x0, x1), xi))
        else:
            off = (np.arange(5) + 0.5) / 5 - 0.5
            gx = (np.arange(x0, x1)[:, None] + off).ravel()
            gy = (np.arange(y0, y1)[:, None] + off).ravel()
            alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
            rr = (gy[:, None] - yi) ** 2 + (gx[None, :] - xi) ** 2
            p = (beta - 1) / (np.pi * alpha ** 2) * (1 + rr / alpha ** 2) ** (-beta)
            img[y0:y1, x0:x1] += f * p.reshape(y1 - y0, 5, x1 - x0, 5).mean(axis=(1, 3))
    img += np.random.default_rng(seed).normal(0, noise, shape)
    return img


def grid_field(h, w, step, fwhm, flux, rng):
    """Isolated stars on a jittered grid."""
    gy, gx = np.mgrid[step:h - step + 1:step, step:w - step + 1:step]
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    return x, y, np.full(x.size, flux)


def nearest(stars: Stars, x, y):
    d, i = cKDTree(np.column_stack([x, y])).query(stars.xy)
    return d, i


@pytest.mark.parametrize("beta", [None, 3.0])
@pytest.mark.parametrize("fwhm", [2.0, 3.5])
def test_centroids_are_subpixel_accurate(beta, fwhm):
    rng = np.random.default_rng(1)
    x, y, f = grid_field(300, 400, 40, fwhm, 40.0, rng)   # bright, SNR ~ 1000
    img = render((300, 400), x, y, f, fwhm, beta=beta, noise=0.002, seed=2)
    stars = detect_stars(img)
    assert len(stars) == x.size
    d, i = nearest(stars, x, y)
    rms = np.sqrt(np.mean(d ** 2))
    assert rms < 0.02, rms
    assert np.unique(i).size == x.size
    # pixel-integrated Gaussian: FWHM^2 grows by 2.3548^2 / 12
    expect = np.sqrt(fwhm ** 2 + 2.3548 ** 2 / 12) if beta is None else fwhm
    tol = 0.05 if beta is None else 0.2   # a Moffat's best Gaussian is a bit wider
    assert abs(np.median(stars.fwhm) / expect - 1) < tol
    assert np.median(stars.roundness) > 0.95
    assert (stars.snr > 100).all()
    # brightest first
    assert np.all(np.diff(stars.flux) <= 0)


def test_faint_stars_noise_limited_accuracy_and_snr():
    rng = np.random.default_rng(3)
    x, y, _ = grid_field(300, 400, 30, 3.0, 1.0, rng)
    f = rng.uniform(0.05, 0.5, x.size)
    img = render((300, 400), x, y, f, 3.0, noise=0.002, seed=4)
    stars = detect_stars(img, sigma=5.0)
    d, i = nearest(stars, x, y)
    assert (d < 1.0).all()                      # no false detections
    assert len(stars) > 0.9 * x.size
    # the predicted centroid error matches the observed one within a factor ~2
    ratio = np.sqrt(np.mean(d ** 2)) / np.sqrt(np.mean(2 * stars.centroid_sigma ** 2))
    assert 0.4 < ratio < 2.0, ratio


def test_hot_pixels_are_not_stars():
    rng = np.random.default_rng(5)
    x, y, f = grid_field(300, 400, 50, 3.0, 20.0, rng)
    img = render((300, 400), x, y, f, 3.0, seed=6)
    hy = rng.integers(5, 295, 80)
    hx = rng.integers(5, 395, 80)
    img[hy, hx] += rng.uniform(0.05, 1.0, 80)        # single-pixel spikes
    stars = detect_stars(img)
    d, _ = nearest(stars, x, y)
    assert (d < 0.5).all(), "a hot pixel was taken for a star"
    assert len(stars) == x.size


def test_saturated_flat_tops_detected_once():
    rng = np.random.default_rng(7)
    x, y, _ = grid_field(300, 400, 50, 4.0, 1.0, rng)
    f = np.where(np.arange(x.size) % 2 == 0, 400.0, 5.0)   # half of them saturate
    img = np.minimum(render((300, 400), x, y, f, 4.0, seed=8), 1.0)
    stars = detect_stars(img)
    assert len(stars) == x.size                        # one detection per star
    d, i = nearest(stars, x, y)
    sat_truth = f[i] > 100
    assert stars.saturated[sat_truth].all() and not stars.saturated[~sat_truth].any()
    assert np.sqrt(np.mean(d[sat_truth] ** 2)) < 0.05  # symmetric plateau: still centred
    q = frame_quality(img, stars)
    assert abs(q.fwhm / np.sqrt(16 + 2.3548 ** 2 / 12) - 1) < 0.05  # saturated excluded


def test_gradient_and_nebulosity_are_background():
    rng = np.random.default_rng(9)
    h, w = 400, 600
    n = 150
    x, y = rng.uniform(10, w - 10, n), rng.uniform(10, h - 10, n)
    f = 10 ** rng.uniform(-0.5, 1.5, n)
    img = render((h, w), x, y, f, 3.0, noise=0.003, seed=10)
    yy, xx = np.mgrid[:h, :w]
    img += 0.1 * xx / w + 0.05 * yy / h                                    # gradient
    img += 0.3 * np.exp(-((xx - 300) ** 2 + (yy - 200) ** 2) / (2 * 70 ** 2))  # nebula
    img += 0.05 * np.exp(-((xx - 150) ** 2 + (yy - 300) ** 2) / (2 * 25 ** 2))
    stars = detect_stars(img)
    d, _ = nearest(stars, x, y)
    assert np.mean(d < 1.0) > 0.97, "nebulosity detected as stars"
    bright = f > 3
    found = cKDTree(stars.xy).query(np.column_stack([x, y])[bright])[0] < 1.0
    assert found.mean() > 0.95


def test_pure_cloud_has_no_stars():
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:300, :400]
    img = 0.2 + 0.05 * xx / 400 + rng.normal(0, 0.01, (300, 400))
    assert len(detect_stars(img)) == 0
    q = frame_quality(img)
    assert q.n_stars == 0 and np.isnan(q.fwhm)
    assert q.to_dict()["fwhm"] is None


def test_background_and_noise_estimates():
    rng = np.random.default_rng(12)
    x, y, f = grid_field(384, 512, 32, 3.0, 5.0, rng)
    img = render((384, 512), x, y, f, 3.0, sky=0.1, noise=0.004, seed=13)
    bkg, noise = estimate_background(img)
    assert abs(np.median(bkg) - 0.1) < 0.001
    assert abs(noise / 0.004 - 1) < 0.1
    q = frame_quality(img, pixel_scale=2.0)
    assert q.n_stars == x.size
    assert q.fwhm_arcsec == pytest.approx(2.0 * q.fwhm)


def test_cfa_luminance_path_maps_coordinates_back():
    """A colour star field mosaicked GRBG: detection on the 2x2 CFA luminance finds
    the true positions in the mosaic grid and the star's own FWHM."""
    rng = np.random.default_rng(14)
    x, y, f = grid_field(300, 400, 40, 3.0, 40.0, rng)
    rgb = np.stack([render((300, 400), x, y, f * c, 3.0, noise=0.001, seed=15 + k)
                    for k, c in enumerate((0.6, 1.0, 0.8))])
    cfa = np.empty((300, 400))
    cfa[0::2, 0::2] = rgb[1, 0::2, 0::2]  # G R / B G
    cfa[0::2, 1::2] = rgb[0, 0::2, 1::2]
    cfa[1::2, 0::2] = rgb[2, 1::2, 0::2]
    cfa[1::2, 1::2] = rgb[1, 1::2, 1::2]
    assert cfa_box_luminance(cfa).shape == (299, 399)
    stars = detect_stars_cfa(cfa, "GRBG")
    assert len(stars) == x.size
    d, _ = nearest(stars, x, y)
    assert np.sqrt(np.mean(d ** 2)) < 0.05
    assert abs(np.median(stars.fwhm) / np.sqrt(9 + 2.3548 ** 2 / 12) - 1) < 0.06


def test_stars_container_roundtrip():
    rng = np.random.default_rng(16)
    x, y, f = grid_field(200, 200, 40, 3.0, 10.0, rng)
    stars = detect_stars(render((200, 200), x, y, f, 3.0, seed=17))
    back = Stars.from_dict(stars.to_dict())
    np.testing.assert_array_equal(back.xy, stars.xy)
    assert stars.as_array().shape == (len(stars), 5)
    assert len(stars.brightest(3)) == 3
    assert pixel_scale_from_header({"XPIXSZ": 2.9, "FOCALLEN": 250}) == pytest.approx(2.393, 1e-3)
    assert pixel_scale_from_header({}) is None


def test_fast_detection_kernels_equal_the_numpy_scipy_recipes():
    """The threaded/vectorised detection steps (issue 13) give the values of the
    numpy/scipy code they replace: the matched filter bit for bit, the peak list
    exactly, the mesh interpolation to float32 rounding, the block clipping exactly."""
    from scipy import ndimage

    from napari_astro.core.stars import background as B
    from napari_astro.core.stars.measure import _find_peaks, _smooth_minus

    rng = np.random.default_rng(5)
    for shape in [(3, 3), (17, 40), (100, 7), (130, 171)]:
        x = rng.random(shape, dtype=np.float32)
        bkg = rng.random(shape, dtype=np.float32)
        for sig in (0.7, 1.02, 2.5):
            ref = ndimage.gaussian_filter(x, sig, mode="nearest", truncate=3.0) - bkg
            np.testing.assert_array_equal(_smooth_minus(x, sig, bkg), ref)
        d = np.asarray(x, np.float64)
        box = d[:-1, :-1] + d[1:, :-1] + d[:-1, 1:] + d[1:, 1:]
        np.testing.assert_allclose(cfa_box_luminance(x), 0.25 * box, rtol=1e-6)
    r = rng.standard_normal((97, 131)).astype(np.float32)
    r[5, 7], r[10, 10:13] = np.nan, 5.0
    for thr, border in ((0.5, 1), (2.0, 3)):
        core = r[border:-border, border:-border]
        iy, ix = np.nonzero(~(core <= thr))
        y, x = iy + border, ix + border
        v = r[y, x]
        peak = ~((v <= r[y - 1, x - 1]) | (v <= r[y - 1, x]) | (v <= r[y - 1, x + 1])
                 | (v <= r[y, x - 1]) | (v < r[y, x + 1]) | (v < r[y + 1, x - 1])
                 | (v < r[y + 1, x]) | (v < r[y + 1, x + 1]))
        ys, xs, _ = _find_peaks(r, np.float32(thr), border, 10_000)
        np.testing.assert_array_equal(ys, y[peak])
        np.testing.assert_array_equal(xs, x[peak])
    for h, w in [(5, 7), (40, 200), (130, 65), (1, 1)]:
        ny, nx = max(1, h // 64), max(1, w // 64)
        med = rng.random((ny, nx)).astype(np.float32)
        full = (B._interp_matrix(h, ny, h // ny) @ med) @ B._interp_matrix(w, nx, w // nx).T
        np.testing.assert_allclose(B._interpolate(med, h, w, h // ny, w // nx), full,
                                   rtol=0, atol=1e-6)
    blocks = rng.standard_normal((50, 256)).astype(np.float32)
    blocks[rng.random(blocks.shape) < 0.05] += 30.0
    md, sg = B._block_stats(blocks)
    for b in range(50):  # the clipping rounds one block at a time, with searchsorted
        v = np.sort(blocks[b])
        lo, hi = 0, v.size
        for it in range(3):
            s = v[lo:hi].astype(np.float64)
            m = np.float64(np.median(v[lo:hi]))
            dev = np.sort(np.abs(s - m))
            n = dev.size
            sig = 1.4826 * (dev[n // 2] if n % 2 else 0.5 * (dev[n // 2 - 1] + dev[n // 2]))
            lo, hi = (np.searchsorted(v, m - 4.0 * sig),
                      np.searchsorted(v, m + 2.5 * sig, side="right"))
        assert md[b] == np.float32(m)
        np.testing.assert_allclose(sg[b], sig, rtol=1e-4)


# ------------------------------------------------- issue 13: the fused detection kernels
def test_fused_detection_kernels_equal_the_numpy_forms():
    """The one-pass matched filter (with row maxima and finiteness), the one-scan peaks,
    the numba dedupe and the background block statistics give the values of the
    numpy/scipy forms they replace, bit for bit."""
    from scipy import ndimage

    from napari_astro.core.cosmetic import _plane_stats
    from napari_astro.core.stars import background as bg
    from napari_astro.core.stars import measure as ms
    from napari_astro.core.stats import median_mad_sigma

    rng = np.random.default_rng(11)
    data = (0.1 + 0.01 * rng.standard_normal((203, 157))).astype(np.float32)
    data[50:53, 60:63] = 0.9                       # a saturated plateau (one peak)
    data[rng.random(data.shape) < 0.002] += 0.3
    bkg = np.full(data.shape, 0.1, np.float32)
    old = ms._smooth_minus(data, 1.02, bkg)
    new, rowmax, bad = ms._smooth_minus_fused(data, 1.02, bkg)
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(rowmax, data.max(axis=1))
    assert not bad
    for sig, d in ((2.0, data), (1.02, data[:, :5].copy()), (2.0, data[:40, :9].copy())):
        b_ = np.full(d.shape, 0.1, np.float32)           # generic taps, narrow frames
        np.testing.assert_array_equal(ms._smooth_minus(d, sig, b_),
                                      ms._smooth_minus_fused(d, sig, b_)[0])
    bad_data = data.copy()
    bad_data[7, 9] = np.nan
    assert ms._smooth_minus_fused(bad_data, 1.02, bkg)[2]
    bad_data[7, 9] = -np.inf
    assert ms._smooth_minus_fused(bad_data, 1.02, bkg)[2]
    neg = data - 0.5
    np.testing.assert_array_equal(ms._smooth_minus_fused(neg, 1.02, bkg)[1], neg.max(axis=1))
    # MAD of the residual subsample: the histogram selection equals numpy's medians
    one = np.zeros(1, np.int64)
    med, mad = np.empty(1, np.float32), np.empty(1, np.float32)
    _plane_stats(new, one, one, np.full(1, 3, np.int64), med, mad, 0, 1)
    assert float(MAD_SIGMA_ * mad[0]) == median_mad_sigma(new[::3, ::3])[1]
    for thr in (0.0, 0.02, 0.05):
        for a, b in zip(ms._find_peaks(new, np.float32(thr), 3, 200_000),
                        ms._find_peaks_fast(new, np.float32(thr), 3, 200_000)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(ms._find_peaks(new, np.float32(thr), 3, 5),
                        ms._find_peaks_fast(new, np.float32(thr), 3, 5)):
            np.testing.assert_array_equal(a, b)
    # dedupe: the greedy over cKDTree's sorted pairs
    xy = rng.random((300, 2)) * 40
    keep_old = np.ones(300, bool)
    for a, b in sorted(map(tuple, cKDTree(xy).query_pairs(r=2.0, output_type="ndarray"))):
        if keep_old[a] and keep_old[b]:
            keep_old[max(a, b)] = False
    keep = np.empty(300, bool)
    ms._dedupe(xy[:, 0].copy(), xy[:, 1].copy(), 2.0, keep)
    np.testing.assert_array_equal(keep, keep_old)
    # background: block statistics (quantised values: ties) and the 3x3 mesh median
    blocks = np.round(rng.standard_normal((120, 289)) * 20).astype(np.float32) / 20
    blocks[:5, :40] += 8.0                          # stars push blocks up
    blocks[5] = 0.25                                # a flat block
    for a, b in zip(bg._block_stats(blocks), bg._block_stats_numpy(blocks)):
        np.testing.assert_array_equal(a, b)
    mesh = rng.random((7, 11)).astype(np.float32)
    np.testing.assert_array_equal(bg._median3x3(mesh),
                                  ndimage.median_filter(mesh, size=3, mode="nearest"))


MAD_SIGMA_ = 1.482602218505602


def test_detect_stars_cleans_non_finite_data_with_a_given_background():
    """With a background given, the finiteness check is in the filter pass: NaN/inf
    data give the stars of the cleaned data, as when the check came first."""
    rng = np.random.default_rng(5)
    x, y, f = grid_field(300, 400, 40, 3.0, 2.0, rng)
    img = render((300, 400), x, y, f, 3.0, seed=5).astype(np.float32)
    bkg = estimate_background(img)
    bad = img.copy()
    bad[10, 20] = np.nan
    bad[100, 30] = np.inf
    clean = np.nan_to_num(bad, nan=float(np.nanmedian(bad)), posinf=0.0, neginf=0.0)
    a = detect_stars(bad, background=bkg)
    b = detect_stars(clean, background=bkg)
    assert len(a) > 10
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.flux, b.flux)
