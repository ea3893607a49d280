"""The night simulator: its frames' statistics must match its parameters and truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from napari_astro.cli import main
from napari_astro.core.io import read_image
from napari_astro.core.simulate import (NightModel, NightParams, cfa_channel_map, load_truth,
                                        mosaic, simulate_night)

SMALL = dict(width=400, height=300, n_lights=4, n_darks=5, n_flats=5, n_biases=5, seed=3)


def adu(path) -> np.ndarray:
    """Raw ADU of a 16-bit frame as float64."""
    return fits.getdata(path).astype(np.float64)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    out = tmp_path_factory.mktemp("night")
    truth = simulate_night(out, NightParams(**SMALL))
    return truth


@pytest.fixture(scope="module")
def mono_night(tmp_path_factory):
    out = tmp_path_factory.mktemp("mono")
    return simulate_night(out, NightParams(**{**SMALL, "mono": True, "seed": 4}))


@pytest.fixture(scope="module")
def masters(night):
    bias = np.median([adu(p) for p in night.biases], axis=0)
    dark = np.median([adu(p) for p in night.darks], axis=0)
    flat = np.mean([adu(p) for p in night.flats], axis=0) - bias
    return bias, dark, flat


def _exclude(truth, shape, *, radius=0):
    """Mask of pixels to ignore: hot, dead (and their neighbours within radius)."""
    m = np.zeros(shape, bool)
    for rc in (truth.hot_pixels, truth.cold_pixels):
        for r, c in rc:
            m[max(0, r - radius):r + radius + 1, max(0, c - radius):c + radius + 1] = True
    return m


# -- files and headers --------------------------------------------------------------
def test_layout_and_headers(night):
    p = night.params
    assert [len(night.lights), len(night.darks), len(night.flats), len(night.biases)] == \
        [4, 5, 5, 5]
    assert night.lights[0].name == "light_0001.fits" and night.lights[0].parent.name == "lights"
    for f in ("sky.fits", "truth.json", "stars.csv"):
        assert (night.root / "truth" / f).is_file()
    expect = {"lights": ("Light Frame", p.exposure), "darks": ("Dark Frame", p.exposure),
              "flats": ("Flat Field", p.flat_exposure), "biases": ("Bias Frame", 0.0)}
    for attr, (imagetyp, exptime) in expect.items():
        dates = []
        for path in getattr(night, attr):
            with fits.open(path) as hdul:
                h = hdul[0].header
                assert h["BITPIX"] == 16 and h["BZERO"] == 32768
                assert hdul[0].data.dtype == np.uint16
            assert h["IMAGETYP"] == imagetyp and h["EXPTIME"] == exptime
            assert h["BAYERPAT"] == "RGGB" and h["ROWORDER"] == "TOP-DOWN"
            assert h["XBAYROFF"] == 0 and h["YBAYROFF"] == 0
            assert abs(h["CCD-TEMP"] - h["SET-TEMP"]) < 0.5 and h["SET-TEMP"] == p.temperature
            assert h["GAIN"] == p.gain_setting and h["EGAIN"] == p.gain
            assert h["XBINNING"] == 1 and h["INSTRUME"] and h["FOCALLEN"] > 0
            assert (h["NAXIS1"], h["NAXIS2"]) == (p.width, p.height)
            dates.append(h["DATE-OBS"])
        assert dates == sorted(dates) and len(set(dates)) == len(dates)
    h = fits.getheader(night.lights[0])
    assert h["OBJECT"] and "RA" in h and "DEC" in h
    # the package's reader sees a raw RGGB mosaic, values = ADU / 65535
    img = read_image(night.lights[0])
    assert img.bayer == "RGGB" and img.data.shape == (300, 400)
    np.testing.assert_allclose(img.data, adu(night.lights[0]) / 65535.0, rtol=1e-6)


def test_mono_headers(mono_night):
    h = fits.getheader(mono_night.lights[0])
    assert "BAYERPAT" not in h and h["FILTER"] == "L"
    assert read_image(mono_night.lights[0]).bayer is None
    assert mono_night.sky.shape == (300, 400)


def test_truth_round_trip(night):
    again = load_truth(night.root)
    np.testing.assert_array_equal(again.sky, night.sky)
    assert night.sky.shape == (3, 300, 400) and night.sky.dtype == np.float32
    np.testing.assert_array_equal(night.transforms[0], np.eye(3))
    assert len(night.transforms) == 4
    assert len(night.stars) >= 30, "small fields must still hold enough stars"
    assert night.stars.saturated.sum() >= 2
    assert ((night.stars.x >= -0.5) & (night.stars.x <= 399.5)).all()
    assert (np.diff(night.stars.flux) <= 0).all()   # brightest first
    info = json.loads((night.root / "truth" / "truth.json").read_text())
    assert info["params"]["seed"] == 3 and info["satellite"]["light_index"] == 2


# -- bias, dark, hot pixels ----------------------------------------------------------
def test_bias_level_and_read_noise(night):
    p = night.params
    b0, b1 = adu(night.biases[0]), adu(night.biases[1])
    good = ~_exclude(night, b0.shape)
    assert abs(b0[good].mean() - p.bias_level) < 0.01 * p.bias_level
    rn = np.std((b0 - b1)[good]) / np.sqrt(2)
    assert rn == pytest.approx(p.read_noise / p.gain, rel=0.03)
    # the fixed pattern (pixel + column) is the same in every bias
    fixed = np.mean([adu(f) for f in night.biases], axis=0)
    cols = fixed[:, good.all(axis=0)].mean(axis=0)
    assert np.std(cols) == pytest.approx(p.bias_column_sigma, rel=0.25)


def test_dark_current(night):
    p = night.params
    bias = np.mean([adu(f) for f in night.biases], axis=0)
    dark = np.mean([adu(f) for f in night.darks], axis=0)
    bad = _exclude(night, bias.shape)
    for hits in night.info["cosmic_rays_other"].values():
        for r, c, _ in hits:
            bad[r, c] = True
    current = (dark - bias)[~bad].mean()
    assert current == pytest.approx(p.dark_current * p.exposure / p.gain, rel=0.03)


def test_hot_and_dead_pixels(night, masters):
    p = night.params
    bias, dark, _ = masters
    excess = dark - bias
    hot = {tuple(rc) for rc in night.hot_pixels}
    found = {tuple(rc) for rc in np.argwhere(excess > 60)}      # 60 ADU >> 5 ADU noise
    assert found == hot
    expected = np.minimum(night.hot_rates * p.exposure / p.gain,
                          65535 - bias[night.hot_pixels[:, 0], night.hot_pixels[:, 1]])
    got = excess[night.hot_pixels[:, 0], night.hot_pixels[:, 1]]
    np.testing.assert_allclose(got, expected, rtol=0.15, atol=15)
    assert (got >= 65535 - bias[night.hot_pixels[:, 0], night.hot_pixels[:, 1]] - 1).any(), \
        "some hot pixels saturate"
    dead = {tuple(rc) for rc in np.argwhere(dark < p.bias_level - 200)}
    assert dead == {tuple(rc) for rc in night.cold_pixels} and len(dead) >= 2


# -- flats: vignetting, dust, colour -------------------------------------------------
def _gsites(a):
    """G sites of an RGGB mosaic as a half-size image (row 0 G's)."""
    return a[0::2, 1::2]


def test_flat_vignetting(night, masters):
    p = night.params
    _, _, flat = masters
    model = NightModel(p)
    cx, cy = model.vig_center
    g = _gsites(flat)
    vig = _gsites(model.vignetting_field() * model.dust_field())

    def box(x, y, r=6):
        i, j = int(round(y / 2)), int(round(x / 2))
        sl = (slice(max(0, i - r), i + r + 1), slice(max(0, j - r), j + r + 1))
        return np.median(g[sl]), np.median(vig[sl])

    centre, centre_model = box(cx, cy)
    corners = [(0, 0), (399, 0), (0, 299), (399, 299)]
    far = max(corners, key=lambda c: np.hypot(c[0] - cx, c[1] - cy))
    for x, y in corners:
        measured, model_v = box(x, y)
        assert measured / centre == pytest.approx(model_v / centre_model, abs=0.02)
    measured, _ = box(*far, r=3)
    assert 1 - measured / centre == pytest.approx(p.vignetting, abs=0.02)


def test_flat_dust_motes(night, masters):
    _, _, flat = masters
    dust = night.info["dust"]
    assert len(dust) == night.params.dust_motes
    yy, xx = np.mgrid[0:300, 0:400]
    g = np.zeros(flat.shape, bool)
    g[0::2, 1::2] = g[1::2, 0::2] = True
    for m in dust:
        r = np.hypot(xx - m["x"], yy - m["y"])
        ring = g & (r > m["inner"] + 2) & (r < m["radius"] - 2)
        inside = g & (r < m["inner"] - 2)
        around = g & (r > m["radius"] + 3) & (r < m["radius"] + 10)
        depth = 1 - flat[ring].mean() / flat[around].mean()
        assert depth == pytest.approx(m["depth"], abs=0.3 * m["depth"])
        # a donut: the centre is brighter than the ring
        assert flat[inside].mean() > flat[ring].mean() * (1 + 0.5 * m["depth"])


def test_flat_colour_and_level(night, masters):
    p = night.params
    bias, _, flat = masters
    cmap = cfa_channel_map("RGGB")
    means = [flat[0::2, 0::2].mean(), flat[0::2, 1::2].mean(), flat[1::2, 1::2].mean()]
    col = np.array(p.flat_color) / max(p.flat_color)
    np.testing.assert_allclose(np.array(means) / means[1], col, rtol=0.02)
    assert cmap[0, 0] == 0 and cmap[1, 1] == 2
    # ~45 % of full scale in G at the optical axis, minus vignetting on average
    assert 0.3 < means[1] / 65535 < 0.5


# -- lights: stars, transforms, noise, events -----------------------------------------
def _centroid(img, x, y, fwhm=3.0):
    """Iterative Gaussian-windowed centroid (SExtractor's XWIN) starting at (x, y);
    NaNs ignored, residual background from the annulus 10..15 px removed."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    d = np.hypot(xx - x, yy - y)
    bg = np.nanmedian(img[(d > 10) & (d < 15)])
    sw2 = (fwhm / 2.3548) ** 2
    data = np.where(np.isfinite(img), img - bg, 0.0)
    cx, cy = x, y
    for _ in range(20):
        w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sw2)) * data
        w[np.hypot(xx - cx, yy - cy) > 4 * fwhm] = 0
        dx = 2 * (w * (xx - cx)).sum() / w.sum()
        dy = 2 * (w * (yy - cy)).sum() / w.sum()
        cx, cy = cx + dx, cy + dy
        if abs(dx) + abs(dy) < 1e-4:
            break
    return cx, cy


def _isolated_bright(truth, n=5, margin=40, max_sigma=0.025):
    """Up to n isolated unsaturated stars whose centroid noise is below max_sigma px
    (predicted from photon + read noise, so a 0.1 px tolerance is > 4 sigma)."""
    p = truth.params
    s = truth.stars
    model = NightModel(p)
    sky_e = np.median(model.expected_light(0))
    to_e = 65535.0 * p.gain / truth.flat_norm.mean()
    sel = []
    for i in np.argsort(-s.flux):
        if s.saturated[i]:
            continue
        if not (margin < s.x[i] < p.width - margin and margin < s.y[i] < p.height - margin):
            continue
        d = np.hypot(s.x - s.x[i], s.y - s.y[i])
        if ((d > 0) & (d < 16) & (s.flux > 0.003 * s.flux[i])).any():
            continue
        f_e = min(s.flux_r[i], s.flux_g[i], s.flux_b[i]) * to_e
        snr = f_e / np.sqrt(f_e + 30 * (sky_e + p.read_noise ** 2))
        if 1.5 * s.fwhm[i] / 2.3548 / snr > max_sigma:
            break
        sel.append(i)
        if len(sel) == n:
            break
    assert len(sel) >= 2
    return sel


def _stars_only(truth, k):
    """Light k in electrons of star light: minus bias, dark, the smooth sky (nebula and
    gradient from the model), divided by the sensor response; hot, dead and
    cosmic-ray pixels are NaN."""
    p = truth.params
    model = NightModel(p)
    img = (adu(truth.lights[k]) - model.bias) * p.gain - model.dark * p.exposure
    img /= model.S
    img -= model.light_signal(k, stars=False, satellite=False)
    bad = _exclude(truth, img.shape)
    for r, c, _ in truth.info["lights"][k]["cosmic_rays"]:
        bad[r, c] = True
    img[bad] = np.nan
    return img


def test_light0_stars_at_truth(mono_night):
    img = _stars_only(mono_night, 0)
    for i in _isolated_bright(mono_night):
        x, y = _centroid(img, mono_night.stars.x[i], mono_night.stars.y[i])
        assert np.hypot(x - mono_night.stars.x[i], y - mono_night.stars.y[i]) < 0.1


def test_transforms_move_stars(mono_night):
    stars = mono_night.stars
    sel = _isolated_bright(mono_night)
    for k in range(1, len(mono_night.lights)):
        T = mono_night.transforms[k]
        assert not np.allclose(T, np.eye(3))
        img = _stars_only(mono_night, k)
        inv = np.linalg.inv(T)
        for i in sel:
            px, py, _ = inv @ [stars.x[i], stars.y[i], 1.0]
            x, y = _centroid(img, px, py)
            assert np.hypot(x - px, y - py) < 0.1, (k, i)


def test_colour_light0_stars_at_truth(tmp_path):
    """On the CFA mosaic: divide each site by the star's flux in its colour.

    A field with brighter stars than the default (a 400x300 crop holds too few bright
    unsaturated stars for 0.1 px centroids on one frame)."""
    night = simulate_night(tmp_path, NightParams(**{**SMALL, "n_lights": 1, "n_darks": 0,
                                                    "n_flats": 0, "n_biases": 0,
                                                    "star_flux_min": 25.0}))
    img = _stars_only(night, 0)
    cmap = cfa_channel_map("RGGB")
    s = night.stars
    for i in _isolated_bright(night, n=4):
        fl = np.array([s.flux_r[i], s.flux_g[i], s.flux_b[i]])
        scale = np.empty(img.shape)
        for dy in range(2):
            for dx in range(2):
                scale[dy::2, dx::2] = fl[cmap[dy, dx]]
        x, y = _centroid(img / scale, s.x[i], s.y[i])
        assert np.hypot(x - s.x[i], y - s.y[i]) < 0.1


def test_sky_truth_matches_calibrated_light0(night, masters):
    """(L - D) / (F normalised per CFA colour) equals the truth within the noise."""
    bias, dark, flat = masters
    L = adu(night.lights[0])
    bad = _exclude(night, L.shape, radius=1)
    for r, c, _ in night.info["lights"][0]["cosmic_rays"]:
        bad[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = True
    norm = np.empty_like(flat)
    for dy in range(2):
        for dx in range(2):
            norm[dy::2, dx::2] = flat[dy::2, dx::2] / flat[dy::2, dx::2][~bad[dy::2, dx::2]].mean()
    cal = (L - dark) / np.where(bad, 1.0, norm) / 65535.0
    truth = mosaic(night.sky, "RGGB")
    model = NightModel(night.params)
    np.testing.assert_allclose(model.truth_light(0), truth, rtol=1e-5, atol=1e-9)
    ok = ~bad & (L < 60000)
    ratio = cal[ok].sum() / truth[ok].sum()
    assert ratio == pytest.approx(1.0, abs=0.003)
    # per block of 10x10 G sites the residual is within the noise: one pixel's noise
    # is ~3.6 % of the sky, a block's ~0.36 %, so 1.5 % is > 4 sigma
    res = (cal - truth)[0::2, 1::2][:140, :200].reshape(14, 10, 20, 10)
    blocks = np.nanmean(np.where(ok[0::2, 1::2][:140, :200].reshape(14, 10, 20, 10),
                                 res, np.nan), axis=(1, 3))
    assert np.abs(blocks).max() < 0.005 * truth.mean() * 3


def test_light_noise_matches_physics(night):
    """(L - expectation) / sqrt((e + read^2) / gain^2) is unit-variance noise."""
    p = night.params
    model = NightModel(p)
    k = 1
    e = model.expected_light(k).astype(np.float64)
    L = adu(night.lights[k])
    bad = _exclude(night, L.shape) | (L > 60000)
    for r, c, _ in night.info["lights"][k]["cosmic_rays"]:
        bad[r, c] = True
    z = (L - model.bias - e / p.gain) / (np.sqrt(e + p.read_noise ** 2) / p.gain)
    assert z[~bad].mean() == pytest.approx(0.0, abs=0.02)
    assert z[~bad].std() == pytest.approx(1.0, abs=0.02)
    # and plainly: blank sky noise ~ sqrt(sky e + dark e + read^2) / gain (G sites)
    sky_e = e[0::2, 1::2][10:40, 10:40]
    blank = L[0::2, 1::2][10:40, 10:40] - model.bias[0::2, 1::2][10:40, 10:40]
    keep = ~bad[0::2, 1::2][10:40, 10:40] & (sky_e < np.median(sky_e) * 1.02)
    expected = np.sqrt(np.median(sky_e) + p.read_noise ** 2) / p.gain
    resid = blank - sky_e / p.gain
    assert resid[keep].std() == pytest.approx(expected, rel=0.1)


def test_sky_levels_vary_between_lights(night):
    levels = [li["sky_level"] for li in night.info["lights"]]
    assert levels[0] == 1.0 and len(set(levels)) == len(levels)
    assert max(abs(v - 1) for v in levels) < 0.1
    meds = [np.median(adu(f)) for f in night.lights]
    assert len(set(meds)) > 1


def test_satellite_and_cosmic_rays(night):
    p = night.params
    sat = night.info["satellite"]
    k = sat["light_index"]
    model = NightModel(p)
    L = adu(night.lights[k])
    x = 200
    y = sat["p0"][1] + (sat["p1"][1] - sat["p0"][1]) * x / (p.width - 1)
    on = L[int(round(y)) - 1:int(round(y)) + 2, x - 1:x + 2].max()
    off = np.median(L[int(round(y)) + 12:int(round(y)) + 16, x - 10:x + 10])
    assert on - off > 0.5 * sat["peak_e"] / p.gain * min(p.flat_color)
    # no trail in the reference light
    L0 = adu(night.lights[0])
    assert L0[int(round(y)) - 1:int(round(y)) + 2, x - 1:x + 2].max() - off < 0.2 * (on - off) \
        or np.hypot(*(np.array([night.stars.x, night.stars.y]).T - [x, y]).T).min() < 8
    # cosmic rays: sharp excess over the expectation at the listed pixels
    for kk in range(len(night.lights)):
        hits = night.info["lights"][kk]["cosmic_rays"]
        Lk = adu(night.lights[kk])
        e = model.expected_light(kk)
        for r, c, el in hits:
            excess = Lk[r, c] - model.bias[r, c] - e[r, c] / p.gain
            sigma = np.sqrt(e[r, c] + el + p.read_noise ** 2) / p.gain
            assert excess > min(el / p.gain - 6 * sigma, 65535 - Lk[r, c] + excess - 1) - 1


# -- colour pattern, determinism ------------------------------------------------------
@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_cfa_pattern_red_only_scene(tmp_path, pattern):
    """Through a red filter only the R sites of the pattern see light."""
    p = NightParams(width=200, height=150, n_lights=1, n_darks=3, n_flats=0, n_biases=0,
                    bayer=pattern, filter_transmission=(1.0, 0.0, 0.0), cosmic_rays=0, seed=5)
    truth = simulate_night(tmp_path / pattern, p)
    assert fits.getheader(truth.lights[0])["BAYERPAT"] == pattern
    assert read_image(truth.lights[0]).bayer == pattern
    diff = adu(truth.lights[0]) - np.median([adu(f) for f in truth.darks], axis=0)
    bad = _exclude(truth, diff.shape, radius=1)
    cmap = cfa_channel_map(pattern)
    assert pattern[0] == "RGB"[cmap[0, 0]]
    for dy in range(2):
        for dx in range(2):
            site = diff[dy::2, dx::2][~bad[dy::2, dx::2]]
            if pattern[2 * dy + dx] == "R":
                assert site.mean() > 500
            else:
                assert abs(site.mean()) < 2.0
    assert truth.sky[1].max() == 0 and truth.sky[2].max() == 0 and truth.sky[0].min() > 0


def test_deterministic(tmp_path):
    p = NightParams(width=200, height=150, n_lights=2, n_darks=1, n_flats=1, n_biases=1, seed=11)
    a = simulate_night(tmp_path / "a", p)
    b = simulate_night(tmp_path / "b", p)
    c = simulate_night(tmp_path / "c", NightParams(**{**p.to_dict(), "seed": 12}))
    for attr in ("lights", "darks", "flats", "biases"):
        for fa, fb in zip(getattr(a, attr), getattr(b, attr)):
            np.testing.assert_array_equal(fits.getdata(fa), fits.getdata(fb))
    assert not np.array_equal(fits.getdata(a.lights[1]), fits.getdata(c.lights[1]))
    np.testing.assert_array_equal(a.sky, b.sky)
    # a second call into the same folder needs overwrite
    from napari_astro.core.errors import BadInputError
    with pytest.raises(BadInputError, match="already holds a night"):
        simulate_night(tmp_path / "a", p)
    simulate_night(tmp_path / "a", NightParams(**{**p.to_dict(), "n_lights": 1}), overwrite=True)
    assert len(list((tmp_path / "a" / "lights").iterdir())) == 1


def test_bad_params():
    from napari_astro.core.errors import BadInputError
    with pytest.raises(BadInputError, match="bayer"):
        NightParams(bayer="RGBG")
    with pytest.raises(BadInputError, match="size"):
        NightParams(width=301)


# -- CLI ----------------------------------------------------------------------------
def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "night"
    assert main(["simulate", str(out), "--size", "300x200", "--lights", "3"]) == 0
    truth = load_truth(out)
    assert len(truth.lights) == 3 and truth.sky.shape == (3, 200, 300)
    assert fits.getdata(truth.lights[0]).shape == (200, 300)
    before = (out / "lights" / "light_0001.fits").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["simulate", str(out), "--size", "300x200", "--lights", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(out) in err and len(err.splitlines()) == 1
    assert (out / "lights" / "light_0001.fits").stat().st_mtime_ns == before
    assert main(["simulate", str(out), "--size", "300x200", "--lights", "2", "--mono",
                 "--darks", "1", "--flats", "1", "--biases", "1", "--overwrite"]) == 0
    truth = load_truth(out)
    assert len(truth.lights) == 2 and truth.sky.shape == (200, 300)
    assert main(["simulate", str(tmp_path / "x"), "--size", "300by200"]) == 2
    assert "--size" in capsys.readouterr().err


def test_sample_data():
    from napari_astro._sample_data import sample_session, sample_stack

    from napari_astro.widgets._layers import layer_data_to_image

    [(data, meta, kind)] = sample_stack(width=400, height=300)
    assert kind == "image" and meta["rgb"] is True
    img = layer_data_to_image(data, meta)
    assert img.is_color and img.shape2d == (300, 400) and img.data.dtype == np.float32
    assert 0 <= img.data.min() and img.data.max() <= 1
    assert img.data.max() > 10 * np.median(img.data)
    assert any(h.startswith("sample.simulated_stack") for h in img.history)
    [(raw, meta, kind)] = sample_session(n_lights=2, width=200, height=150)
    assert raw.shape == (2, 150, 200) and raw.dtype == np.float32
    assert meta["metadata"]["napari_astro"]["bayer"] == "RGGB"
    assert not np.array_equal(raw[0], raw[1])
