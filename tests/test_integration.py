"""Integration: rejection kernels against plain numpy references, truth stacks with
satellite trails / cosmic rays / hot pixels, noise figures, weighting, footprints,
bounded memory, Dask, CLI."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.stats import t as student_t

from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.integration import (
    GESD, Additive, AdditiveScaling, FWHMWeight, LinearFit, MinMax, Multiplicative,
    NoiseWeight, NoNormalization, NoRejection, NoWeight, Percentile, SigmaClip,
    StarCountWeight, Winsorized, combine_stack, integrate, noise_estimate, parse_memory,
    plan_tiles, rejection_from_name)


# ---------------------------------------------------------------------------------
# straightforward numpy references: one pixel at a time, boolean "keep" masks
# ---------------------------------------------------------------------------------
def _ref_sigma(x, lo, hi, iters=10, huber=False):
    """Labels: -1 rejected low, 0 kept, +1 rejected high."""
    lab = np.zeros(x.size, int)
    for _ in range(iters):
        y = x[lab == 0]
        if y.size < 3:
            break
        med, sd = np.median(y), np.std(y, ddof=1)
        if not sd > 0:
            break
        if huber:
            for _k in range(100):
                s0 = sd
                sd = 1.134 * np.std(np.clip(y, med - 1.5 * s0, med + 1.5 * s0), ddof=1)
                if abs(sd - s0) <= 5e-4 * s0:
                    break
            if not sd > 0:
                break
        low = (lab == 0) & (med - x > lo * sd)
        high = (lab == 0) & (x - med > hi * sd)
        if not (low.any() or high.any()):
            break
        lab[low], lab[high] = -1, 1
    return lab


def _ref_winsorized(x, lo, hi, iters=10):
    return _ref_sigma(x, lo, hi, iters, huber=True)


def _ref_linear(x, lo, hi, iters=10):
    lab = np.zeros(x.size, int)
    for _ in range(iters):
        pos = np.flatnonzero(lab == 0)
        if pos.size < 3:
            break
        order = pos[np.argsort(x[pos], kind="stable")]
        y = x[order]
        j = np.arange(y.size)
        b, a = np.polyfit(j, y, 1)
        fit = a + b * j
        sig = np.mean(np.abs(y - fit))
        if not sig > 0:
            break
        low, high = fit - y > lo * sig, y - fit > hi * sig
        if not (low.any() or high.any()):
            break
        lab[order[low]], lab[order[high]] = -1, 1
    return lab


def _ref_percentile(x, lo, hi):
    lab = np.zeros(x.size, int)
    if x.size < 3:
        return lab
    med = np.median(x)
    lab[med - x > lo * med] = -1
    lab[x - med > hi * med] = 1
    return lab


def _ref_gesd(x, outliers, alpha):
    n = x.size
    lab = np.zeros(n, int)
    if n < 3:
        return lab
    removed, last = [], 0
    work = np.ones(n, bool)
    for i in range(int(math.floor(outliers * n))):
        y = x[work]
        if y.size < 3:
            break
        mean, sd = y.mean(), np.std(y, ddof=1)
        if not sd > 0:
            break
        dev = np.where(work, np.abs(x - mean), -1)
        k = int(np.argmax(dev))
        size = n - i
        tq = student_t.ppf(1 - alpha / (2 * size), size - 2)
        lam = (size - 1) * tq / math.sqrt(size * (size - 2 + tq * tq))
        if dev[k] / sd > lam:
            last = i + 1
        removed.append((k, -1 if x[k] < mean else 1))
        work[k] = False
    for k, side in removed[:last]:
        lab[k] = side
    return lab


def _ref_minmax(x, lo, hi):
    lab = np.zeros(x.size, int)
    if x.size < 3 or x.size - lo - hi < 1:
        return lab
    order = np.argsort(x, kind="stable")
    lab[order[:int(lo)]] = -1
    if hi:
        lab[order[x.size - int(hi):]] = 1
    return lab


REFS = [
    (NoRejection(), lambda x: np.zeros(x.size, int)),
    (SigmaClip(low=2.5, high=3.0), lambda x: _ref_sigma(x, 2.5, 3.0)),
    (Winsorized(low=3.0, high=2.5), lambda x: _ref_winsorized(x, 3.0, 2.5)),
    (LinearFit(low=3.0, high=2.5), lambda x: _ref_linear(x, 3.0, 2.5)),
    (Percentile(low=0.05, high=0.04), lambda x: _ref_percentile(x, 0.05, 0.04)),
    (GESD(outliers=0.3, significance=0.05), lambda x: _ref_gesd(x, 0.3, 0.05)),
    (MinMax(low=2, high=1), lambda x: _ref_minmax(x, 2, 1)),
]


def _random_stack(rng, n=15, h=24, w=30):
    """Gaussian values with outliers on both sides and missing (NaN) values."""
    st = rng.normal(0.3, 0.01, (n, h, w))
    hit = rng.random(st.shape) < 0.08
    st[hit] += rng.choice([-1, 1], hit.sum()) * rng.uniform(0.03, 0.3, hit.sum())
    st[rng.random(st.shape) < 0.05] = np.nan            # footprints
    st[:, 0, :5] = np.nan                               # pixels with 0..2 valid values
    st[:2, 0, 5:8] = 0.31
    st[:, 1, 0] = 0.25                                  # constant pixel: sd = 0
    return st.astype(np.float32)


@pytest.mark.parametrize("rej,ref", REFS, ids=[r.name for r, _ in REFS])
@pytest.mark.parametrize("combine", ["average", "median"])
def test_rejection_matches_numpy_reference(rej, ref, combine):
    rng = np.random.default_rng(7)
    st = _random_stack(rng)
    weights = rng.uniform(0.3, 1.0, st.shape[0])
    got, glow, ghigh = combine_stack(st, rejection=rej, combine=combine,
                                     weights=weights if combine == "average" else None,
                                     return_maps=True)
    x64 = st.astype(np.float64)
    exp = np.zeros(st.shape[1:], np.float32)
    elow = np.zeros(st.shape[1:], int)
    ehigh = np.zeros(st.shape[1:], int)
    for yy in range(st.shape[1]):
        for xx in range(st.shape[2]):
            col = x64[:, yy, xx]
            ok = np.isfinite(col)
            x = col[ok]
            if x.size == 0:
                continue
            lab = ref(x)
            keep = lab == 0
            elow[yy, xx] = int(np.sum(lab == -1))
            ehigh[yy, xx] = int(np.sum(lab == 1))
            if combine == "median":
                exp[yy, xx] = np.median(x[keep])
            else:
                w = weights[ok][keep]
                exp[yy, xx] = np.sum(w * x[keep]) / np.sum(w)
    np.testing.assert_allclose(got, exp, rtol=0, atol=2e-7)
    np.testing.assert_array_equal(glow + ghigh, elow + ehigh)
    np.testing.assert_array_equal(glow, elow)
    # the test data does provoke rejections (except for "none")
    if rej.name != "none":
        assert (glow + ghigh).sum() > 50


def test_rejection_from_name_and_errors():
    assert rejection_from_name("winsorized", 2, 4) == Winsorized(low=2, high=4)
    assert rejection_from_name("percentile") == Percentile()
    assert rejection_from_name("gesd", 0.2, 0.01) == GESD(outliers=0.2, significance=0.01)
    assert rejection_from_name("minmax", 2, 3) == MinMax(low=2, high=3)
    with pytest.raises(BadInputError, match="unknown rejection"):
        rejection_from_name("bogus")
    with pytest.raises(BadInputError):
        rejection_from_name("gesd", 3, 3)
    assert parse_memory("2GB") == 2_000_000_000
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_memory(1234) == 1234
    with pytest.raises(BadInputError, match="memory-limit"):
        parse_memory("lots")


# ---------------------------------------------------------------------------------
# truth stacks
# ---------------------------------------------------------------------------------
SIGMA = 0.01


def _truth(h=160, w=220, color=False, seed=3):
    """Noiseless sky: gradient + Gaussian stars (+ colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = 0.08 + 0.04 * xx / w + 0.02 * yy / h
    for _ in range(40):
        x0, y0 = rng.uniform(5, w - 5), rng.uniform(5, h - 5)
        amp, s = rng.uniform(0.05, 0.6), rng.uniform(1.0, 2.0)
        sky = sky + amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))
    if color:
        return np.stack([sky * 1.0, sky * 0.9, sky * 0.8]).astype(np.float32)
    return sky.astype(np.float32)


def _trail_mask(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.abs(yy - (0.4 * xx + 20)) <= 1.5


def _make_stack(truth, n=20, seed=0, sigmas=None, artefacts=True, gains=True):
    """Frames = gain_i * (truth + noise) + offset_i, with a satellite trail in frame 5,
    cosmic rays in every third frame and hot pixels in 4 frames. Returns frames and
    the mask of defect pixels."""
    rng = np.random.default_rng(seed)
    h, w = truth.shape[-2:]
    defects = np.zeros((h, w), bool)
    frames = []
    for i in range(n):
        s = SIGMA if sigmas is None else sigmas[i]
        f = truth + rng.normal(0, s, truth.shape).astype(np.float32)
        if artefacts:
            if i == 5:
                tm = _trail_mask(h, w)
                f[..., tm] += 0.5
                defects |= tm
            k = max(4, h * w // 1000)          # 0.1 % of the pixels per kind and frame
            if i % 3 == 1:                     # cosmic rays: single bright pixels
                ys, xs = rng.integers(0, h, k), rng.integers(0, w, k)
                f[..., ys, xs] += rng.uniform(0.2, 1.0, k).astype(np.float32)
                defects[ys, xs] = True
            if i in (2, 9, 14, 17):            # hot pixels (they move after registration)
                ys, xs = rng.integers(0, h, k), rng.integers(0, w, k)
                f[..., ys, xs] = 1.0
                defects[ys, xs] = True
        if gains and i:
            g, o = 1 + 0.05 * math.sin(i), 0.01 * math.cos(3 * i)
            f = g * f + o
        frames.append(f.astype(np.float32))
    return frames, defects


def _robust_sigma(x):
    x = x[np.isfinite(x)]
    return 1.4826 * np.median(np.abs(x - np.median(x)))


# min/max: 2 high, since a cosmic ray can land on the trail or a hot pixel
APPLY = [SigmaClip(), Winsorized(), LinearFit(), Percentile(), GESD(), MinMax(low=2, high=2)]


@pytest.mark.parametrize("rej", APPLY, ids=[r.name for r in APPLY])
def test_truth_stack_removes_trail_cosmics_hot_pixels(rej):
    truth = _truth()
    frames, defects = _make_stack(truth)
    imgs = [AstroImage(f) for f in frames]
    res = integrate(imgs, rejection=rej, weighting=NoWeight(), normalization=AdditiveScaling())
    resid = res.image.data - truth
    sig = _robust_sigma(resid)
    assert sig < 2 * SIGMA / math.sqrt(20)
    worst = np.abs(resid[defects]).max() / sig
    assert worst < 5, f"{rej.name}: defect left at {worst:.1f} sigma"
    # the trail frame had a share of rejected pixels, the others little
    assert res.rejected_high[5] > res.rejected_high[[0, 3, 4]].max()


def test_truth_without_rejection_keeps_the_trail():
    """The check above is meaningful: without rejection the defects show."""
    truth = _truth()
    frames, defects = _make_stack(truth)
    res = integrate([AstroImage(f) for f in frames], rejection=NoRejection(),
                    weighting=NoWeight())
    resid = res.image.data - truth
    sig = _robust_sigma(resid)
    assert np.abs(resid[_trail_mask(*truth.shape)]).max() / sig > 20


def test_colour_truth_stack_and_rejection_maps():
    truth = _truth(color=True)
    frames, defects = _make_stack(truth, n=12)
    res = integrate([AstroImage(f) for f in frames], rejection_maps=True)
    assert res.image.data.shape == truth.shape and res.image.data.dtype == np.float32
    resid = res.image.data - truth
    for c in range(3):
        sig = _robust_sigma(resid[c])
        assert np.abs(resid[c][defects]).max() / sig < 5
    # the high map shows the trail: one frame of 12 rejected high along it
    tm = _trail_mask(*truth.shape[-2:])
    assert np.median(res.high_map[:, tm]) == pytest.approx(1 / 12, abs=1e-6)
    assert np.median(res.high_map[:, ~defects]) == 0
    assert res.low_map.shape == truth.shape
    assert res.image.header["NCOMBINE"] == 12
    assert res.image.history[-1].startswith("pre.integrate")


def test_average_noise_is_sigma_over_sqrt_n():
    truth = _truth(h=200, w=300)
    n = 20
    frames, _ = _make_stack(truth, n=n, artefacts=False, gains=False, seed=11)
    res = integrate([AstroImage(f) for f in frames], rejection=NoRejection(),
                    weighting=NoWeight(), normalization=NoNormalization())
    resid = res.image.data - truth
    measured = float(np.std(resid))
    assert measured == pytest.approx(SIGMA / math.sqrt(n), rel=0.05)
    # the default additive+scaling normalisation costs no measurable noise here
    res2 = integrate([AstroImage(f) for f in frames], rejection=NoRejection(),
                     weighting=NoWeight())
    assert float(np.std(res2.image.data - truth)) == pytest.approx(SIGMA / math.sqrt(n), rel=0.05)


def test_noise_weighting_beats_unweighted():
    truth = _truth()
    n = 12
    sigmas = [SIGMA * (1 + 2 * (i % 3)) for i in range(n)]     # 1x, 3x, 5x sigma
    frames, _ = _make_stack(truth, n=n, sigmas=sigmas, artefacts=False, gains=False, seed=5)
    imgs = [AstroImage(f) for f in frames]
    kw = dict(rejection=Winsorized(), normalization=Additive())
    plain = integrate(imgs, weighting=NoWeight(), **kw)
    weighted = integrate(imgs, weighting=NoiseWeight(), **kw)
    s_plain = np.std(plain.image.data - truth)
    s_w = np.std(weighted.image.data - truth)
    optimal = 1 / math.sqrt(sum(1 / s ** 2 for s in sigmas))
    assert s_w < 0.8 * s_plain
    assert s_w == pytest.approx(optimal, rel=0.1)
    # weights follow 1/sigma^2 and the measured noise is right
    np.testing.assert_allclose(weighted.weights, [(SIGMA / s) ** 2 for s in sigmas], rtol=0.1)
    np.testing.assert_allclose(weighted.noise[:, 0], sigmas, rtol=0.1)


def test_noise_estimate_ignores_stars_and_gradient():
    truth = _truth(h=300, w=300)
    rng = np.random.default_rng(1)
    img = truth + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    assert noise_estimate(img) == pytest.approx(0.02, rel=0.05)


def test_fwhm_and_star_weighting_from_metadata(tmp_path):
    truth = _truth(h=60, w=80)
    frames, _ = _make_stack(truth, n=4, artefacts=False, gains=False)
    stats = [{"fwhm": 2.0, "n_stars": 100}, {"fwhm": 4.0, "n_stars": 50},
             {"fwhm": 2.0, "n_stars": 25}, {"fwhm": 3.0, "n_stars": 100}]
    imgs = [AstroImage(f) for f in frames]
    r = integrate(imgs, weighting=FWHMWeight(), rejection=NoRejection(), frame_stats=stats)
    np.testing.assert_allclose(r.weights, [1, 0.25, 1, 4 / 9])
    r = integrate(imgs, weighting=StarCountWeight(), rejection=NoRejection(), frame_stats=stats)
    np.testing.assert_allclose(r.weights, [1, 0.5, 0.25, 1])
    # from headers of files
    paths = []
    for i, f in enumerate(frames):
        p = tmp_path / f"f{i}.fits"
        fits.PrimaryHDU(f, header=fits.Header({"FWHM": stats[i]["fwhm"]})).writeto(p)
        paths.append(p)
    r = integrate(paths, weighting=FWHMWeight(), rejection=NoRejection())
    np.testing.assert_allclose(r.weights, [1, 0.25, 1, 4 / 9])
    with pytest.raises(BadInputError, match="n_stars"):
        integrate(paths, weighting=StarCountWeight(), rejection=NoRejection())


def test_normalisation_recovers_reference_levels():
    truth = _truth()
    frames, _ = _make_stack(truth, n=6, artefacts=False, gains=False)
    frames = [f * g + o for f, g, o in zip(frames, [1, 1.2, 0.8, 1.1, 0.9, 1.3],
                                           [0, 0.02, -0.01, 0.03, 0.0, 0.05])]
    imgs = [AstroImage(f.astype(np.float32)) for f in frames]
    r = integrate(imgs, rejection=SigmaClip(), weighting=NoWeight(),
                  normalization=AdditiveScaling())
    np.testing.assert_allclose(r.norm_a[:, 0], [1, 1 / 1.2, 1 / 0.8, 1 / 1.1, 1 / 0.9, 1 / 1.3],
                               rtol=0.04)
    assert np.median(r.image.data - truth) == pytest.approx(0, abs=0.002)
    r = integrate(imgs, rejection=NoRejection(), weighting=NoWeight(),
                  normalization=Multiplicative())
    assert np.all(r.norm_b == 0)
    assert abs(np.median(r.image.data) - np.median(frames[0])) < 0.002


def test_footprints_take_no_part(tmp_path):
    """Mask False (images) and NaN (files) exclude pixels; uncovered output is 0."""
    truth = _truth(h=80, w=100)
    frames, _ = _make_stack(truth, n=6, artefacts=False, gains=False)
    imgs = []
    for i, f in enumerate(frames):
        m = np.ones(truth.shape, bool)
        if i:
            m[:, :20] = False                 # only frame 0 covers columns 0..19
            f = f.copy()
            f[:, :20] = 5.0                   # garbage outside the footprint
        imgs.append(AstroImage(f, mask=m))
    r = integrate(imgs, rejection=Winsorized(), weighting=NoWeight(),
                  normalization=NoNormalization())
    np.testing.assert_allclose(r.image.data[:, :20], np.clip(frames[0][:, :20], 0, 1), atol=1e-6)
    assert np.std(r.image.data[:, 30:] - truth[:, 30:]) < 1.2 * SIGMA / math.sqrt(6)
    # same with NaN in files, plus a strip no frame covers
    paths = []
    for i, im in enumerate(imgs):
        d = np.where(im.mask, im.data, np.nan).astype(np.float32)
        d[:, -5:] = np.nan
        p = tmp_path / f"r{i}.fits"
        fits.PrimaryHDU(d).writeto(p)
        paths.append(p)
    r2 = integrate(paths, rejection=Winsorized(), weighting=NoWeight(),
                   normalization=NoNormalization())
    np.testing.assert_allclose(r2.image.data[:, :-5], r.image.data[:, :-5], atol=1e-6)
    assert np.all(r2.image.data[:, -5:] == 0)
    assert r2.image.mask is not None and not r2.image.mask[:, -5:].any()
    assert r2.image.mask[:, :-5].all()


def _limit_for_rows(n, shape, rows, maps=False):
    """A memory limit that gives tiles of about ``rows`` rows."""
    C, H, W = shape
    fixed = plan_tiles(n, shape, "1GB", maps=maps)[1]
    return fixed + rows * (2 * n * C * W * 4 + C * W * 10)


def _write_frames(folder: Path, frames, header=None, dtype=np.float32):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"frame_{i:03d}.fits"
        h = fits.Header(header or {})
        h["EXPTIME"] = 60.0
        h["OBJECT"] = "TEST"
        h["FRAMENO"] = i
        fits.PrimaryHDU(np.asarray(f, dtype), header=h).writeto(p)
        paths.append(p)
    return paths


def test_files_equal_in_memory_and_tiles_do_not_matter(tmp_path):
    truth = _truth(color=True, h=90, w=110)
    frames, _ = _make_stack(truth, n=8, seed=2)
    paths = _write_frames(tmp_path / "f", frames)
    mem = integrate([AstroImage(f) for f in frames])
    disk = integrate(paths)
    small = integrate(paths, memory_limit=_limit_for_rows(8, (3, 90, 110), 7))
    assert small.tile_rows < 90 // 4
    np.testing.assert_array_equal(disk.image.data, mem.image.data)
    np.testing.assert_array_equal(small.image.data, disk.image.data)
    np.testing.assert_allclose(disk.weights, mem.weights)
    h = disk.image.header
    assert h["NCOMBINE"] == 8 and h["OBJECT"] == "TEST" and h["LIVETIME"] == 480.0
    assert "FRAMENO" not in h                     # differs between frames


def test_integer_fits_are_scaled_like_read_fits(tmp_path):
    from napari_astro.core.io import read_image

    truth = _truth(h=40, w=50)
    frames, _ = _make_stack(truth, n=3, artefacts=False, gains=False)
    paths = []
    for i, f in enumerate(frames):
        p = tmp_path / f"u{i}.fits"
        u = np.clip(np.rint(f * 65535), 0, 65535).astype(np.uint16)
        fits.PrimaryHDU(u).writeto(p)                     # BITPIX 16, BZERO 32768
        paths.append(p)
    r = integrate(paths, rejection=NoRejection(), weighting=NoWeight(),
                  normalization=NoNormalization())
    exp = np.mean([read_image(p).data for p in paths], axis=0)
    np.testing.assert_allclose(r.image.data, exp, atol=1e-6)


def test_bad_input(tmp_path):
    truth = _truth(h=40, w=50)
    frames, _ = _make_stack(truth, n=4, artefacts=False)
    paths = _write_frames(tmp_path / "ok", frames)
    with pytest.raises(BadInputError, match="at least 2 frames, found 1"):
        integrate(paths[:1])
    with pytest.raises(BadInputError, match="at least 3 frames, found 2"):
        integrate(paths[:2], rejection=Winsorized())
    integrate(paths[:2], rejection=NoRejection())              # 2 without rejection: fine
    odd = tmp_path / "odd.fits"
    fits.PrimaryHDU(np.zeros((41, 50), np.float32)).writeto(odd)
    with pytest.raises(BadInputError) as e:
        integrate(paths + [odd])
    assert "odd.fits" in str(e.value) and "differs" in str(e.value)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(BadInputError, match="junk.fits"):
        integrate(paths + [junk])
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(paths[0].read_bytes()[:2880 + 4000])
    with pytest.raises(BadInputError, match="trunc.fits"):
        integrate(paths + [trunc])
    with pytest.raises(BadInputError, match="memory-limit"):
        integrate(paths, memory_limit="100kB")


# ---------------------------------------------------------------------------------
# bounded memory, Dask
# ---------------------------------------------------------------------------------
def _peak_bytes(paths, limit):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        res = integrate(paths, memory_limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return res, peak


def test_peak_memory_does_not_grow_with_frame_count(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 200, 300
    base = _truth(h=h, w=w)
    many = [base + rng.normal(0, SIGMA, base.shape).astype(np.float32) for _ in range(64)]
    paths = _write_frames(tmp_path / "m", many)
    limit = 12 * 2**20
    frame_bytes = h * w * 4
    integrate(paths[:4], memory_limit=limit)                   # warm numba and imports
    r16, p16 = _peak_bytes(paths[:16], limit)
    r64, p64 = _peak_bytes(paths, limit)
    assert r64.tile_rows < r16.tile_rows
    assert p64 < limit and p16 < limit
    assert p64 < 1.25 * p16 + 2**20, (p16, p64)
    assert p64 < 0.5 * 64 * frame_bytes            # the stack is never all in memory
    truth_resid = np.std(r64.image.data - base)
    assert truth_resid == pytest.approx(SIGMA / 8, rel=0.1)


def test_dask_local_cluster_matches_local_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    truth = _truth(color=True, h=64, w=80)
    frames, _ = _make_stack(truth, n=7, seed=4)
    paths = _write_frames(tmp_path / "d", frames)
    limit = _limit_for_rows(7, (3, 64, 80), 10, maps=True)
    local = integrate(paths, memory_limit=limit, rejection_maps=True)
    assert local.tile_rows < 20
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = integrate(paths, memory_limit=limit, scheduler=cluster.scheduler_address,
                               rejection_maps=True)
            mem = integrate([AstroImage(f) for f in frames], memory_limit=limit,
                            scheduler=client)
    np.testing.assert_allclose(remote.image.data, local.image.data, atol=1e-6)
    np.testing.assert_allclose(remote.high_map, local.high_map, atol=1e-6)
    np.testing.assert_allclose(remote.rejected_high, local.rejected_high)
    np.testing.assert_allclose(mem.image.data, local.image.data, atol=1e-6)


def test_progress_and_cancel():
    from napari_astro.core.progress import CancelToken, Cancelled

    truth = _truth(h=50, w=60)
    frames, _ = _make_stack(truth, n=5, artefacts=False)
    calls = []
    integrate([AstroImage(f) for f in frames], progress=lambda d, t, m: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 6
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        integrate([AstroImage(f) for f in frames], cancel=tok)


# ---------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------
def test_cli_integrate(tmp_path, capsys):
    from napari_astro.cli import main
    from napari_astro.core.io import read_image

    truth = _truth(color=True, h=60, w=70)
    frames, defects = _make_stack(truth, n=10)
    paths = _write_frames(tmp_path / "in", frames)
    out = tmp_path / "stack.fits"
    maps = tmp_path / "maps"
    rc = main(["integrate", *map(str, paths), "-o", str(out), "--rejection", "sigma",
               "--low", "3", "--high", "3", "--weighting", "noise", "--rejection-maps",
               str(maps), "--memory-limit", "1GB"])
    assert rc == 0
    img = read_image(out)
    assert img.data.shape == truth.shape
    resid = img.data - truth
    assert np.abs(resid[:, defects]).max() / _robust_sigma(resid) < 5
    assert img.header["NCOMBINE"] == 10
    assert any(h.startswith("pre.integrate") for h in img.history)
    high = read_image(maps / "rejection_high.fits")
    assert high.data.shape == truth.shape and high.data.max() > 0
    assert (maps / "rejection_low.fits").exists()
    text = capsys.readouterr()
    assert "frame_005.fits: weight" in text.out and "rejected low" in text.out
    # existing output without --overwrite: exit 2, one line, nothing computed
    rc = main(["integrate", *map(str, paths), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "stack.fits" in err and "\n" not in err
    # too few frames: exit 2 naming the count
    rc = main(["integrate", str(paths[0]), str(paths[1]), "-o", str(tmp_path / "x.fits")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "found 2" in err
    # a folder is expanded to its frames
    rc = main(["integrate", str(tmp_path / "in"), "-o", str(tmp_path / "y.fits"),
               "--rejection", "none", "--combine", "median"])
    assert rc == 0 and (tmp_path / "y.fits").exists()


def test_select_median_equals_np_median():
    """The statistics pass's radix-select medians are np.median's values bit for bit
    (odd and even sizes, ties, several decades, and |x - c| for the MAD)."""
    from napari_astro.core.integration.kernels import select_median

    rng = np.random.default_rng(7)
    for t in range(400):
        n = int(rng.integers(1, 400)) if t % 5 else int(rng.integers(2000, 6000))
        kind = t % 4
        if kind == 0:
            x = rng.normal(0.01, 0.001, n)
        elif kind == 1:
            x = rng.integers(-5, 5, n) * 0.1                  # many ties
        elif kind == 2:
            x = rng.normal(size=n) * 10.0 ** rng.uniform(-30, 30, n)
        else:
            x = rng.random(n)
        x = x.astype(np.float32)
        med = np.median(x)
        got = np.float32(select_median(x, np.float32(0.0), False))
        assert got.tobytes() == np.float32(med).tobytes(), (t, n)
        c = np.float32(med)
        mad = np.median(np.abs(x - c))
        got = np.float32(select_median(x, c, True))
        assert got.tobytes() == np.float32(mad).tobytes(), (t, n)


def test_frame_statistics_equal_core_stats(tmp_path):
    """framestats' own location/scale/noise (fast medians) equal core.stats'."""
    from napari_astro.core.integration.framestats import _frame_statistics
    from napari_astro.core.io.rows import open_frame
    from napari_astro.core.stats import b3_layer1, location_scale, wavelet_noise

    truth = _truth(color=True, h=300, w=420)
    frames, _ = _make_stack(truth, n=2, seed=5)
    paths = _write_frames(tmp_path / "f", frames)
    fr = open_frame(paths[0], 0, [])
    for est in ("bwmv", "mad"):
        loc, scale, noise = _frame_statistics(fr, est, True)
        # the same samples through core.stats
        C, H, W = fr.source.shape
        from napari_astro.core.integration.framestats import _stripes
        bands = []
        for r0, r1 in _stripes(H):
            b = np.empty((C, r1 - r0, W), np.float32)
            fr.source.read_rows(r0, r1, b)
            bands.append(b)
        step = 2 if W * sum(r1 - r0 for r0, r1 in _stripes(H)) > 100_000 else 1
        for c in range(C):
            x = np.concatenate([b[c, :, ::step].ravel() for b in bands])
            x = x[np.isfinite(x)]
            assert (loc[c], scale[c]) == location_scale(x, est)
            w = np.concatenate([b3_layer1(b[c])[:, ::step].ravel() for b in bands])
            assert noise[c] == wavelet_noise(w)
