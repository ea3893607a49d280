"""Noise reduction: the starlet transform, MLT (post.mlt) and TGV (post.tgv) against truth.

Images: :func:`napari_astro.core.simulate_post.simulate_linear` (a linear stack with
stars, nebula, gradient; sky 0.1, Poisson noise 0.003-0.01 at the sky level), whose
noiseless ``truth.signal`` is known. Each quality test runs the step with its DEFAULT
parameters through :func:`registry.run_step`, as ``napari-astro denoise IN OUT`` does.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_post import simulate_linear
from napari_astro.core.stars import detect_stars
from napari_astro.pipeline.registry import get_step, run_step

CLI = Path(sys.executable).with_name("napari-astro")


def psnr(a: np.ndarray, truth: np.ndarray) -> float:
    """dB, full scale 1 (the images are in [0, 1])."""
    return 10.0 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - truth) ** 2)))


def lum(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=0) if a.ndim == 3 else a


def bright_star_fwhm_ratio(result: np.ndarray, truth: np.ndarray, n: int = 5) -> tuple[float, int]:
    """Median FWHM(result) / FWHM(truth) of the ``n`` brightest unsaturated truth
    stars, each matched within 1.5 px to a star detected in ``result``."""
    ref = detect_stars(lum(truth), max_stars=50)
    ref = ref.take(np.flatnonzero(~ref.saturated)[:n])
    got = detect_stars(lum(result), max_stars=200)
    ratios = []
    for x, y, f in zip(ref.x, ref.y, ref.fwhm):
        d = np.hypot(got.x - x, got.y - y)
        i = int(np.argmin(d))
        if d[i] < 1.5:
            ratios.append(got.fwhm[i] / f)
    return float(np.median(ratios)), len(ratios)


@pytest.fixture(scope="module")
def stacks():
    """(image, truth signal) for colour and mono at two noise levels."""
    out = {}
    for color in (True, False):
        for noise in (0.003, 0.01):
            img, tr = simulate_linear((600, 600), color=color, sky=0.1, noise=noise,
                                      poisson=True, seed=3, border="none")
            out[color, noise] = (img, tr.signal if color else tr.signal[0])
    return out


# ------------------------------------------------------------------ the transform
def test_starlet_reconstructs_exactly_and_layer_noise_matches_the_b3_factors():
    from napari_astro.core.wavelets import NOISE_FACTORS, starlet_reconstruct, starlet_transform

    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 512)).astype(np.float32)
    layers = starlet_transform(x, 5)
    assert len(layers) == 6
    np.testing.assert_allclose(starlet_reconstruct(layers), x, atol=2e-6)
    for j, layer in enumerate(layers[:-1]):
        std = float(layer[64:-64, 64:-64].std())
        assert std == pytest.approx(NOISE_FACTORS[j], rel=0.05), (j, std)


def test_b3_smoothing_matches_scipy_with_a_dilated_kernel():
    import scipy.ndimage as ndi

    from napari_astro.core.wavelets import b3_smooth

    rng = np.random.default_rng(1)
    x = rng.random((97, 131)).astype(np.float32)
    for s in (1, 4, 32):  # 32: holes wider than the image's height / 3 (mirrored twice)
        k = np.zeros(4 * s + 1)
        k[[0, s, 2 * s, 3 * s, 4 * s]] = np.array([1, 4, 6, 4, 1]) / 16
        want = ndi.correlate1d(ndi.correlate1d(x, k, axis=1, mode="mirror"), k, axis=0,
                               mode="mirror")
        np.testing.assert_allclose(b3_smooth(x, s), want, atol=1e-6)


def _tgv_numpy(f, a1, a0, n, tau, sigma):
    """The same primal-dual iteration in plain numpy (float64), as the paper writes it."""
    def grad(u):
        gx = np.zeros_like(u)
        gy = np.zeros_like(u)
        gx[:, :-1] = u[:, 1:] - u[:, :-1]
        gy[:-1] = u[1:] - u[:-1]
        return gx, gy

    def dxb(p):
        d = np.zeros_like(p)
        d[:, 0] = p[:, 0]
        d[:, 1:-1] = p[:, 1:-1] - p[:, :-2]
        d[:, -1] = -p[:, -2]
        return d

    def dyb(p):
        return dxb(p.T).T

    f = f.astype(np.float64)
    u, ub = f.copy(), f.copy()
    w1, w2, w1b, w2b, p1, p2, q11, q22, q12 = (np.zeros_like(f) for _ in range(9))
    for _ in range(n):
        ux, uy = grad(ub)
        ax, ay = grad(w1b)
        bx, by = grad(w2b)
        r1, r2 = p1 + sigma * (ux - w1b), p2 + sigma * (uy - w2b)
        m = np.maximum(1, np.hypot(r1, r2) / a1)
        p1, p2 = r1 / m, r2 / m
        s11, s22, s12 = q11 + sigma * ax, q22 + sigma * by, q12 + sigma * 0.5 * (ay + bx)
        m = np.maximum(1, np.sqrt(s11 ** 2 + s22 ** 2 + 2 * s12 ** 2) / a0)
        q11, q22, q12 = s11 / m, s22 / m, s12 / m
        uo = u
        u = (u + tau * (dxb(p1) + dyb(p2) + f)) / (1 + tau)
        ub = 2 * u - uo
        o1, o2 = w1, w2
        w1 = w1 + tau * (p1 + dxb(q11) + dyb(q12))
        w2 = w2 + tau * (p2 + dyb(q22) + dxb(q12))
        w1b, w2b = 2 * w1 - o1, 2 * w2 - o2
    return u


@pytest.mark.parametrize("shape", [(37, 53), (2, 9), (200, 3), (300, 40)])
def test_tgv_kernel_equals_the_plain_primal_dual_iteration(shape):
    """The fused row-band numba kernel (bands of rows in parallel, deferred first rows)
    computes exactly the textbook iteration."""
    from napari_astro.core import tgv

    rng = np.random.default_rng(2)
    f = (rng.standard_normal(shape) + np.linspace(0, 5, shape[1])[None]).astype(np.float32)
    got = tgv.tgv_plane(f, alpha1=1.5, alpha0=3.0, iterations=60, multiscale=False)
    tau = 1 / math.sqrt(tgv._L2) / tgv._STEP_RATIO
    sigma = tgv._STEP_RATIO / math.sqrt(tgv._L2)
    np.testing.assert_allclose(got, _tgv_numpy(f, 1.5, 3.0, 60, tau, sigma), atol=2e-5)


# ------------------------------------------------------------------ issue 11 targets
@pytest.mark.parametrize("step_id", ["post.mlt", "post.tgv"])
@pytest.mark.parametrize("color", [True, False], ids=["colour", "mono"])
@pytest.mark.parametrize("noise", [0.003, 0.01])
def test_default_denoise_gains_8_db_and_keeps_star_fwhm(stacks, step_id, color, noise):
    img, truth = stacks[color, noise]
    before = psnr(img.data, truth)
    res = run_step(step_id, img)  # the defaults, as the CLI without options
    gain = psnr(res.image.data, truth) - before
    ratio, n = bright_star_fwhm_ratio(res.image.data, truth)
    assert n >= 4
    assert gain >= 8.0, f"{step_id}: PSNR +{gain:.2f} dB"
    assert ratio <= 1.10, f"{step_id}: bright-star FWHM x{ratio:.3f}"
    assert res.image.data.dtype == np.float32 and res.image.data.shape == img.data.shape
    assert res.image.history[-1].startswith(step_id + " {")
    assert res.extras["noise_after"][0] < 0.2 * res.extras["noise"][0]


@pytest.mark.parametrize("slope, dome, width", [(0.0015, 0.2, 25.0), (0.003, 0.05, 30.0)])
def test_tgv_beats_tv_chambolle_on_gradients_at_equal_noise_reduction(slope, dome, width):
    """A flat sky beside a ramp (0.3 or 0.6 noise sigma per px) and a broad dome (a
    nebula flank). scikit-image's TV weight is tuned (bisection) until it leaves no
    more noise than default TGV on the flat part; TV's error on the smooth part (ramp
    + dome) is then higher: staircasing and the flattened dome top."""
    from skimage.restoration import denoise_tv_chambolle

    h = w = 256
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = x >= 80
    truth = (0.1 + np.where(ramp, (x - 80) * slope, 0)
             + dome * np.exp(-((x - 190) ** 2 + (y - 128) ** 2) / (2 * width ** 2)) * ramp)
    truth = truth.astype(np.float32)
    sigma = 0.005
    noisy = (truth + np.random.default_rng(0).normal(0, sigma, truth.shape)).astype(np.float32)
    flat = (x > 8) & (x < 72) & (y > 8) & (y < h - 8)
    smooth = (x > 88) & (x < w - 8) & (y > 8) & (y < h - 8)

    def errors(a):
        return float(np.std((a - truth)[flat])), float(np.sqrt(np.mean((a - truth)[smooth] ** 2)))

    tgv_flat, tgv_smooth = errors(run_step("post.tgv", AstroImage(noisy)).image.data)
    assert tgv_flat < 0.1 * sigma  # it does remove the noise
    weights = np.geomspace(2e-3, 1e-1, 30)
    flats = [errors(denoise_tv_chambolle(noisy, weight=wt))[0] for wt in weights]
    i = next(i for i, f in enumerate(flats) if f <= tgv_flat)  # TV's flat noise is not
    lo, hi = weights[max(i - 1, 0)], weights[i]                 # monotone at low weights
    for _ in range(16):
        mid = math.sqrt(lo * hi)
        if errors(denoise_tv_chambolle(noisy, weight=mid))[0] > tgv_flat:
            lo = mid
        else:
            hi = mid
    tv_flat, tv_smooth = errors(denoise_tv_chambolle(noisy, weight=hi))
    assert tv_flat <= tgv_flat
    assert tgv_smooth < 0.95 * tv_smooth, (tgv_smooth / sigma, tv_smooth / sigma)


@pytest.mark.parametrize("step_id", ["post.mlt", "post.tgv"])
def test_masked_run_changes_nothing_where_the_mask_is_zero(stacks, step_id):
    img, _ = stacks[True, 0.01]
    mask = np.zeros(img.shape2d, np.float32)
    mask[:, 300:] = np.linspace(0.2, 1.0, 300, dtype=np.float32)[None]
    res = run_step(step_id, img, mask=mask, mask_spec="custom")
    out = res.image.data
    assert np.array_equal(out[:, :, :300], img.data[:, :, :300])
    assert np.abs(out[:, :, 500:] - img.data[:, :, 500:]).mean() > 1e-3
    assert '"mask": "custom"' in res.image.history[-1]
    with pytest.raises(Exception, match="mask is 599x600 px"):
        run_step(step_id, img, mask=mask[:, :599])


def test_tgv_luminance_mode_keeps_colour_ratios(stacks):
    img, _ = stacks[True, 0.003]
    res = run_step("post.tgv", img, {"channels": "luminance", "iterations": 20})
    a, b = img.data, res.image.data
    ratio_in = a[0] / a[1]
    ratio_out = b[0] / b[1]
    np.testing.assert_allclose(ratio_out, ratio_in, rtol=1e-4)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("step_id", ["post.mlt", "post.tgv"])
def test_nan_pixels_stay_put_and_do_not_spread(step_id):
    img, truth = simulate_linear((200, 240), color=False, sky=0.1, noise=0.005, seed=5,
                                 border="none")
    data = img.data.copy()
    data[50:60, 70:90] = np.nan
    res = run_step(step_id, AstroImage(data))
    out = res.image.data
    assert np.isnan(out[50:60, 70:90]).all()
    assert np.isfinite(out[~np.isnan(data)]).all()


def test_history_reads_back_into_the_params():
    from napari_astro.pipeline.post.denoise import MLTParams, TGVParams

    img = AstroImage(np.full((64, 64), 0.1, np.float32)
                     + np.random.default_rng(0).normal(0, 0.01, (64, 64)).astype(np.float32))
    p = MLTParams(layers=5, thresholds=(4, 3), amounts=(0.8,), mode="soft")
    assert p.per_layer("thresholds") == (4.0, 3.0, 3.0, 3.0, 3.0)
    res = run_step("post.mlt", img, p)
    assert MLTParams.from_history(res.image.history[-1]) == p
    q = TGVParams(strength=2.5, channels="luminance", iterations=10)
    res = run_step("post.tgv", img, q)
    assert TGVParams.from_history(res.image.history[-1]) == q


@pytest.mark.parametrize("step_id, values, field", [
    ("post.mlt", {"mode": "medium"}, "post.mlt.mode"),
    ("post.mlt", {"amounts": (1.5,)}, "post.mlt.amounts"),
    ("post.mlt", {"thresholds": ("x",)}, "post.mlt.thresholds"),
    ("post.mlt", {"layers": 9}, "post.mlt.layers"),
    ("post.tgv", {"strength": -1}, "post.tgv.strength"),
    ("post.tgv", {"channels": "red"}, "post.tgv.channels"),
    ("post.tgv", {"iterations": 0}, "post.tgv.iterations"),
])
def test_bad_option_values_name_the_field(step_id, values, field):
    from napari_astro.core.errors import BadInputError

    with pytest.raises(BadInputError, match=field.replace(".", r"\.")):
        get_step(step_id).params.from_dict(values)


def test_mlt_is_the_default_method_of_denoise():
    from napari_astro.pipeline.registry import steps_for_command

    assert [s.id for s in steps_for_command("denoise")] == ["post.mlt", "post.tgv"]
    assert get_step("post.mlt").method == "mlt" and get_step("post.tgv").method == "tgv"


# ------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def small_fits(tmp_path_factory):
    from napari_astro.core.io import write_image

    d = tmp_path_factory.mktemp("denoise")
    img, _ = simulate_linear((120, 160), color=True, sky=0.1, noise=0.005, seed=2, border="none")
    path = d / "in.fits"
    write_image(img, str(path))
    mask = AstroImage(np.ones((100, 160), np.float32))
    write_image(mask, str(d / "mask_small.fits"))
    return path


def _cli(*args):
    return subprocess.run([str(CLI), "denoise", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_default_is_mlt_and_writes_history(small_fits, tmp_path):
    from astropy.io import fits

    out = tmp_path / "out.fits"
    proc = _cli(small_fits, out)
    assert proc.returncode == 0, proc.stderr
    hist = [str(h) for h in fits.getheader(out)["HISTORY"]]
    assert any(h.startswith("post.mlt {") for h in hist)
    assert "noise sigma" in proc.stdout
    out2 = tmp_path / "out2.fits"
    proc = _cli(small_fits, out2, "--method", "tgv", "--iterations", "10", "--mask", "inverted")
    assert proc.returncode == 0, proc.stderr
    assert any('"mask": "inverted"' in str(h) for h in fits.getheader(out2)["HISTORY"])


# Each case is a full CLI start (~2 s quiet, ~10 s on the loaded test machine): the
# value checks themselves are covered in-process by the params tests above.
@pytest.mark.parametrize("args, names", [
    (["--method", "wavelet"], "--method"),
    (["--method", "tgv", "--channels", "red"], "--channels"),
    (["--thresholds", "3,2,1,0.5,0.2"], "post.mlt.thresholds"),
    (["--method", "tgv", "--layers", "3"], "--layers"),
    (["--mask", "MASK_SMALL"], "mask_small.fits"),
])
def test_cli_bad_input_exits_2_with_one_line(small_fits, tmp_path, args, names):
    before = small_fits.read_bytes()
    args = [str(small_fits.parent / "mask_small.fits") if a == "MASK_SMALL" else a for a in args]
    out = tmp_path / "bad.fits"
    proc = _cli(small_fits, out, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], proc.stderr
    assert not out.exists()
    assert small_fits.read_bytes() == before


# ------------------------------------------------------------------ widgets
@pytest.mark.parametrize("which", ["MLTWidget", "TGVWidget"])
def test_widget_adds_the_denoised_layer(make_napari_viewer, qtbot, which):
    import napari_astro.widgets.denoise as mod
    from napari_astro.widgets._layers import image_to_layer_data, layer_to_image

    img, _ = simulate_linear((200, 240), color=True, sky=0.1, noise=0.005, seed=4, border="none")
    viewer = make_napari_viewer()
    data, kw, _ = image_to_layer_data(img, "sky")
    layer = viewer.add_image(data, **kw)
    w = getattr(mod, which)(viewer)
    w.image_picker.value = layer
    n = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    assert w.last_error is None, w.last_error
    assert len(viewer.layers) == n + 1
    got = layer_to_image(viewer.layers[-1]).data
    want = run_step(w.step_id, img).image.data
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert "noise sigma" in w.status.text()
