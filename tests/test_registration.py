"""Registration against known truth: synthetic fields, the night simulator, real frames."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest
from astropy.io import fits

from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.registration import (RegistrationError, Transform, apply_transform,
                                            find_transform, fit_model, match_stars_nearest)
from napari_astro.core.stars import detect_stars
from napari_astro.pipeline.register import load_transforms, register_frames
from napari_astro.pipeline.steps import RegisterParams
from test_stars import render  # the same pixel-integrated star renderer

H, W = 400, 600
GX, GY = np.meshgrid(np.linspace(0, W - 1, 25), np.linspace(0, H - 1, 17))
GRID = np.column_stack([GX.ravel(), GY.ravel()])


def field_rms(t_found: Transform, t_true: Transform) -> float:
    """RMS over the whole frame of the distance between the two mappings (px)."""
    d = t_found(GRID) - t_true(GRID)
    return float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))))


def sky_catalogue(n=1500, seed=0, margin=400):
    """Stars on a sky larger than the frame, so big shifts keep stars in view."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-margin, W + margin, n)
    y = rng.uniform(-margin, H + margin, n)
    flux = 10 ** rng.uniform(0.0, 1.7, n)
    return x, y, flux


def frame_from(t_src_to_ref: Transform, cat, *, fwhm=3.0, seed=1, noise=0.002, beta=3.0):
    """Render the frame whose pixels map to the reference by ``t_src_to_ref``."""
    x, y, f = cat
    xy = t_src_to_ref.inverse()(np.column_stack([x, y]))
    return render((H, W), xy[:, 0], xy[:, 1], f, fwhm, beta=beta, noise=noise, seed=seed)


CENTER = (W / 2, H / 2)
CASES = {
    "big-shift": Transform.from_shift(237.4, -151.8),
    "rotation": Transform.from_similarity(angle_deg=7.3, dx=12.4, dy=-5.2, center=CENTER),
    "meridian-flip-180": Transform.from_similarity(angle_deg=180.0, dx=3.3, dy=-1.7,
                                                   center=CENTER),
    "mirror": Transform.from_similarity(angle_deg=31.0, flip=True, dx=-4.0, dy=6.0,
                                        center=CENTER),
    "rot90-scale": Transform.from_similarity(angle_deg=90.0, scale=1.02, dx=8.0, center=CENTER),
}


@pytest.fixture(scope="module")
def reference_stars():
    cat = sky_catalogue()
    ref = frame_from(Transform.identity(), cat, seed=100)
    return cat, detect_stars(ref)


def test_transform_is_plain_data():
    t = Transform.from_similarity(angle_deg=33.0, scale=1.01, dx=5.0, dy=-2.0, flip=True)
    back = Transform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t
    assert t.is_flipped and back.rotation_deg == pytest.approx(t.rotation_deg)
    assert t.scale == pytest.approx(1.01)
    pts = np.array([[10.0, 20.0], [300.0, -5.0]])
    np.testing.assert_allclose(t.inverse()(t(pts)), pts, atol=1e-9)
    u = Transform.from_shift(1.0, 2.0)
    np.testing.assert_allclose(u.compose(t)(pts), t(pts) + [1.0, 2.0], atol=1e-9)
    with pytest.raises(ValueError):
        Transform(np.ones((2, 2)))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model", ["similarity", "affine"])
def test_find_transform_recovers_truth(reference_stars, case, model):
    cat, ref_stars = reference_stars
    truth = CASES[case]
    stars = detect_stars(frame_from(truth, cat, seed=7))
    m = find_transform(stars, ref_stars, model=model)
    err = field_rms(m.transform, truth)
    assert err < 0.05, f"{case}/{model}: {err:.4f} px RMS over the field"
    assert m.n_matches >= 20
    assert m.transform.is_flipped == truth.is_flipped
    assert m.rms < 0.3


def test_homography_and_shift_models(reference_stars):
    cat, ref_stars = reference_stars
    persp = Transform(np.array([[1.0, 0.01, 5.0], [-0.005, 1.0, -3.0], [2e-5, -1e-5, 1.0]]),
                      "homography")
    stars = detect_stars(frame_from(persp, cat, seed=8))
    m = find_transform(stars, ref_stars, model="homography")
    assert field_rms(m.transform, persp) < 0.05
    shift = Transform.from_shift(-40.25, 17.5)
    m = find_transform(detect_stars(frame_from(shift, cat, seed=9)), ref_stars, model="shift")
    assert field_rms(m.transform, shift) < 0.05
    assert m.transform.model == "shift"


def test_only_twenty_stars():
    rng = np.random.default_rng(3)
    cat = (rng.uniform(20, W - 20, 22), rng.uniform(20, H - 20, 22), 10 ** rng.uniform(1, 2, 22))
    ref = detect_stars(frame_from(Transform.identity(), cat, seed=1, margin=0)
                       if False else frame_from(Transform.identity(), cat, seed=1))
    truth = Transform.from_similarity(angle_deg=-12.0, dx=6.0, dy=3.0, center=CENTER)
    # stars near the frame edge leave the field: keep the centre ones only
    stars = detect_stars(frame_from(truth, cat, seed=2))
    assert 14 <= len(stars) <= 22 and len(ref) >= 20
    m = find_transform(stars, ref, model="affine")
    assert field_rms(m.transform, truth) < 0.05


def test_unrelated_fields_do_not_match(reference_stars):
    _, ref_stars = reference_stars
    other = sky_catalogue(seed=55)
    stars = detect_stars(frame_from(Transform.identity(), other, seed=3))
    with pytest.raises(RegistrationError):
        find_transform(stars, ref_stars)
    with pytest.raises(RegistrationError):
        find_transform(stars.take(slice(0, 2)), ref_stars)


def test_fit_model_weights_and_mirror():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 500, (50, 2))
    truth = Transform.from_similarity(angle_deg=120.0, flip=True, dx=3.0)
    dst = truth(src)
    np.testing.assert_allclose(fit_model(src, dst, "similarity"), truth.matrix, atol=1e-9)
    dst_bad = dst.copy()
    dst_bad[0] += 50.0
    w = np.ones(50)
    w[0] = 1e-12
    np.testing.assert_allclose(fit_model(src, dst_bad, "affine", w), truth.matrix, atol=1e-6)


# --------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("separable", [False, True], ids=["2d", "two-pass"])
def test_lanczos_keeps_star_shapes_and_positions(separable):
    rng = np.random.default_rng(5)
    n = 150
    x, y, f = rng.uniform(15, W - 15, n), rng.uniform(15, H - 15, n), 10 ** rng.uniform(0.5, 1.5, n)
    from scipy.spatial import cKDTree
    isolated = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)[0][:, 1] > 12
    for fwhm in (2.2, 3.0):
        img = render((H, W), x, y, f, fwhm, beta=3.0, noise=0.001, seed=6).astype(np.float32)
        s0 = detect_stars(img)
        for t in (Transform.from_shift(0.5, 0.5),
                  Transform.from_similarity(angle_deg=2.0, dx=10.25, dy=-3.75, center=CENTER)):
            out = apply_transform(img, t, interpolation="lanczos3", clamp=True,
                                  separable=separable)
            s1 = detect_stars(out.data)
            growth = np.median(s1.fwhm) / np.median(s0.fwhm) - 1
            assert growth <= 0.03, f"FWHM {fwhm}: grew {100 * growth:.2f}%"
            # stars land where the transform says (bright, isolated ones)
            expect = t(np.column_stack([x, y]))
            a, b = match_stars_nearest(s1.xy, expect, 1.0)
            bright = (s1.snr[a] > 50) & isolated[b]
            d = s1.xy[a][bright] - expect[b][bright]
            assert np.sqrt(np.mean(np.sum(d ** 2, 1))) < 0.05
    # bilinear really softens (the option exists, but is not the default)
    out = apply_transform(img, Transform.from_shift(0.5, 0.5), interpolation="bilinear")
    assert np.median(detect_stars(out.data).fwhm) > 1.03 * np.median(s0.fwhm)


@pytest.mark.parametrize("separable", [False, True], ids=["2d", "two-pass"])
def test_footprint_colour_and_clamp(separable):
    rng = np.random.default_rng(8)
    mono = rng.random((60, 80)).astype(np.float32)
    rgb = np.stack([mono, 2 * mono, mono ** 2])
    t = Transform.from_shift(20.3, -10.6)
    out = apply_transform(AstroImage(rgb), t, interpolation="bicubic", separable=separable)
    assert out.data.shape == (3, 60, 80) and out.data.dtype == np.float32
    one = apply_transform(AstroImage(rgb[1]), t, interpolation="bicubic", separable=separable)
    np.testing.assert_array_equal(out.data[1], one.data)
    # footprint: output x < 20.3 or y > 60-1-10.6 map outside the source
    assert not out.mask[:, :20].any() and out.mask[:48, 21:].all() and not out.mask[50:].any()
    assert (out.data[:, ~out.mask] == 0).all()
    assert any("pre.register" in h for h in out.history)
    # ringing: a sharp star on black; unclamped Lanczos undershoots, clamped does not
    star = np.zeros((40, 40), np.float32)
    star[20, 20], star[20, 21], star[21, 20] = 1.0, 0.4, 0.4
    shifted = Transform.from_shift(0.37, 0.61)
    raw = apply_transform(star, shifted, clamp=False, separable=separable).data
    clamped = apply_transform(star, shifted, clamp=True, separable=separable).data
    assert raw.min() < -0.01 and clamped.min() >= 0.0
    # identity is exact
    np.testing.assert_array_equal(apply_transform(mono, Transform.identity(), separable=separable).data, mono)


# --------------------------------------------------------------------------- pipeline
def _session(tmp_path, cat):
    """Five frames: good ones with known transforms, one blurred, one pure cloud."""
    truths = [Transform.identity(), Transform.from_shift(35.2, -20.7),
              Transform.from_similarity(angle_deg=1.5, dx=-12.0, dy=8.0, center=CENTER),
              Transform.from_similarity(angle_deg=180.0, dx=4.0, center=CENTER),
              Transform.from_shift(3.0, 3.0)]
    fwhms = [3.0, 2.6, 3.0, 3.1, 5.5]
    paths = []
    for i, (t, fw) in enumerate(zip(truths, fwhms)):
        data = frame_from(t, cat, fwhm=fw, seed=20 + i).astype(np.float32)
        p = tmp_path / "in" / f"light_{i:02d}.fits"
        p.parent.mkdir(exist_ok=True)
        fits.PrimaryHDU(data, header=fits.Header({"XPIXSZ": 3.76, "FOCALLEN": 400.0})).writeto(p)
        paths.append(p)
    yy, xx = np.mgrid[:H, :W]
    cloud = (0.3 + 0.1 * xx / W + np.random.default_rng(9).normal(0, 0.01, (H, W)))
    p = tmp_path / "in" / "light_05_cloud.fits"
    fits.PrimaryHDU(cloud.astype(np.float32)).writeto(p)
    paths.append(p)
    return paths, truths


def test_register_frames_writes_outputs_and_rejects_bad_frames(tmp_path, reference_stars):
    cat, _ = reference_stars
    paths, truths = _session(tmp_path, cat)
    out = tmp_path / "out"
    res = register_frames(paths, out, RegisterParams())
    rows = res.rows
    # the sharpest frame with most stars is the reference
    assert res.reference_index == 1 and rows[1]["reference"]
    assert [r["accepted"] for r in rows] == [True, True, True, True, False, False]
    assert "FWHM" in rows[4]["reason"]
    assert "no stars" in rows[5]["reason"] and rows[5]["n_stars"] == 0
    ref_t = truths[1]
    for i in range(4):
        # frame i -> reference frame 1: inverse(truth_1) o truth_i
        expect = ref_t.inverse().compose(truths[i])
        assert field_rms(res.transforms[i], expect) < 0.05, i
    assert rows[0]["fwhm_arcsec"] == pytest.approx(rows[0]["fwhm"] * 206.265 * 3.76 / 400, 1e-3)
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["reference_index"] == 1 and len(doc["frames"]) == 6
    for key in ("matrix", "n_matches", "rms", "fwhm", "roundness", "n_stars", "background",
                "noise", "accepted", "reason"):
        assert key in doc["frames"][0]
    back = load_transforms(out / "transforms.json")
    assert back[2] == res.transforms[2] and back[5] is None
    written = sorted(p.name for p in out.glob("r_*.fits"))
    assert written == [f"r_light_0{i}.fits" for i in range(4)]
    with fits.open(out / "r_light_02.fits") as hdul:
        assert hdul[0].data.dtype.name.startswith("float32") or hdul[0].header["BITPIX"] == -32
        hist = " ".join(str(h) for h in hdul[0].header["HISTORY"])
        assert "pre.register" in hist and "matrix" in hist
        data = hdul[0].data
    # independent check: stars in the registered frame sit on the reference's stars
    ref_stars = detect_stars(fits.getdata(out / "r_light_01.fits"))
    s = detect_stars(data)
    a, b = match_stars_nearest(s.xy, ref_stars.xy, 1.5)
    d = s.xy[a] - ref_stars.xy[b]
    bright = (s.snr[a] > 50) & (ref_stars.snr[b] > 50)
    assert bright.sum() > 20
    assert np.median(np.hypot(*d[bright].T)) < 0.03     # (a few blends are outliers)
    assert np.abs(d[bright].mean(0)).max() < 0.02
    # a second run must not overwrite silently; with overwrite it does
    with pytest.raises(BadInputError, match="exists"):
        register_frames(paths, out, RegisterParams())
    register_frames(paths[:2], out, RegisterParams(reference=str(paths[0])), overwrite=True)


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(BadInputError):
        register_frames([], None)
    with pytest.raises(BadInputError, match="nope.fits"):
        register_frames([tmp_path / "nope.fits"], None)
    with pytest.raises(BadInputError, match="model"):
        register_frames([tmp_path / "nope.fits"], None, RegisterParams(model="warp"))


def test_cli_register(tmp_path, reference_stars):
    from napari_astro.cli import main

    cat, _ = reference_stars
    paths, _ = _session(tmp_path, cat)
    out = tmp_path / "cli"
    rc = main(["register", str(tmp_path / "in"), "-o", str(out), "--model", "similarity",
               "--reference", str(paths[0])])
    assert rc == 0
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["reference_index"] == 0 and doc["params"]["model"] == "similarity"
    assert main(["register", *map(str, paths), "-o", str(out)]) == 2       # outputs exist
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a fits file")
    assert main(["register", str(bad), "-o", str(tmp_path / "x")]) == 2


def test_simulated_night_colour_cfa(tmp_path):
    """The night simulator's raw OSC lights (dither, rotation, hot pixels, cosmics):
    detection on the CFA luminance, debayer, resample; transforms vs its truth."""
    sim = pytest.importorskip("napari_astro.core.simulate")
    truth = sim.simulate_night(tmp_path / "night", sim.NightParams(
        width=600, height=400, n_lights=4, n_darks=1, n_flats=1, n_biases=1, seed=3,
        dither=60, rotation=3.0))
    res = register_frames(truth.lights, None,
                          RegisterParams(reference=str(truth.lights[truth.reference_index])))
    assert all(res.accepted)
    for t_found, t_true in zip(res.transforms, truth.transforms):
        err = field_rms(t_found, Transform(np.asarray(t_true)))
        assert err < 0.05, err
    assert res.images[1].data.shape == (3, 400, 600)


# --------------------------------------------------------------------------- real frames
def _bilinear_debayer(img: AstroImage) -> AstroImage:
    try:
        from napari_astro.core.debayer import debayer
        return debayer(img, method="bilinear")
    except ImportError:  # pragma: no cover - before core/debayer.py existed
        from scipy.ndimage import convolve
        cfa = img.data
        pat = img.bayer
        out = np.zeros((3,) + cfa.shape, np.float32)
        k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4
        for c, name in enumerate("RGB"):
            m = np.zeros(cfa.shape, np.float32)
            for i, ch in enumerate(pat):
                if ch == name:
                    m[i // 2::2, i % 2::2] = 1
            out[c] = convolve(cfa * m, k, mode="mirror") / convolve(m, k, mode="mirror")
        return AstroImage(out, header=img.header, path=img.path)


@pytest.mark.parametrize("session", ["session1", "session2"])
def test_real_seestar_frames_all_register(shared_data, session):
    from napari_astro.core.io import read_image

    files = sorted(glob.glob(str(shared_data / "seestar_m94" / session / "*.fit")))
    assert len(files) >= 6
    # the central 1080 x 1200 (even offset keeps the CFA phase): faster, same physics
    raws = [read_image(f) for f in files]
    frames = [_bilinear_debayer(r.replace(data=r.data[360:1560])) for r in raws]
    res = register_frames(frames, None, RegisterParams())
    assert all(res.accepted), [r["reason"] for r in res.rows]
    if session == "session2":   # the mount re-centred halfway: a ~(-14, +46) px jump
        shifts = np.array([[r["shift_x"], r["shift_y"]] for r in res.rows])
        jump = shifts[:3].mean(0) - shifts[3:].mean(0)   # measured: (+48.8, -14.0) (x, y)
        assert 40 < np.hypot(*jump) < 60 and 8 < np.abs(jump).min() < 20, jump
    # independent check: re-detect stars in the registered outputs, match them to the
    # reference's by nearest neighbour, no transform involved
    ref_img = res.images[res.reference_index]
    ref_stars = detect_stars(ref_img.luminance())
    offs, snr = [], []
    for i, img in enumerate(res.images):
        if i == res.reference_index:
            continue
        s = detect_stars(img.luminance())
        a, b = match_stars_nearest(s.xy, ref_stars.xy, 1.5)
        inside = img.mask[np.round(s.y[a]).astype(int), np.round(s.x[a]).astype(int)]
        offs.append((s.xy[a] - ref_stars.xy[b])[inside])
        snr.append(np.minimum(s.snr[a], ref_stars.snr[b])[inside])
    d, snr = np.vstack(offs), np.concatenate(snr)
    rms_all = float(np.sqrt(np.mean(np.sum(d ** 2, 1))))
    bright = snr >= 50
    rms_bright = float(np.sqrt(np.mean(np.sum(d[bright] ** 2, 1))))
    print(f"{session}: independent check over {len(d)} star pairs: RMS {rms_all:.3f} px "
          f"(all), {rms_bright:.3f} px ({bright.sum()} pairs with SNR >= 50); mean offset "
          f"{d.mean(0).round(3)}")
    # measured (2 cores, bilinear debayer): session1 0.44 all / 0.15 SNR>=50 / 0.11
    # SNR>=100; session2 0.37 / 0.125 / 0.09. The spread follows the stars' SNR, i.e.
    # it is the centroid noise of the two detections, not the alignment.
    assert np.abs(d.mean(0)).max() < 0.05           # no systematic misalignment
    assert rms_bright < 0.18                         # Siril's figure on this camera
    assert rms_all < 0.5                             # dominated by faint stars' noise


def _same_to_ulps(a, b):
    """Equal arrays: booleans exactly, floats to float32 rounding (values in [0, 1]:
    within 1e-6; a few ulp of a small value are a large multiple of its own ulp)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    if a.dtype == bool:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_vectorised_lanczos_passes_equal_the_generic_ones():
    """The Lanczos-3 row/column passes written over contiguous runs (issue 13) give
    the generic passes' values to float32 rounding (the order of the float32 sums
    differs where the compiler vectorises one and not the other: differences of a few
    ulp on an AMD EPYC host, none on the earlier one), footprints exactly: frame edges,
    outside pixels, a mask, the clamp on and off, small and larger rotations, a scale
    change."""
    from napari_astro.core.registration import resample as rs

    rng = np.random.default_rng(3)
    src = rng.random((3, 61, 83), dtype=np.float32)
    mask = rng.random((61, 83)) > 0.1
    none = np.zeros((0, 0), bool)
    lut, radius = rs._kernel_lut("lanczos3")
    for ang, dx, dy, sc in ((0.0, 0.0, 0.0, 1.0), (0.3, 2.6, -3.2, 1.0), (-4.0, -5.1, 1.7, 1.02),
                            (12.0, 9.9, -8.4, 0.97), (179.8, 3.3, 2.2, 1.0)):
        t = Transform.from_similarity(angle_deg=ang, dx=dx, dy=dy, scale=sc)
        minv = np.linalg.inv(t.matrix)
        minv[2] = (0.0, 0.0, 1.0)
        for h_out, w_out in ((61, 83), (55, 90)):
            plan = rs._separable_plan(minv, 61, 83, h_out, w_out)
            transposed, ylo, yhi, alpha, beta, gamma = plan
            assert not transposed
            shape = (3, yhi - ylo + 1, w_out)
            t1, t2 = np.zeros(shape, np.float32), np.ones(shape, np.float32)
            rs._pass_rows_rows(src, t1, False, ylo, alpha, beta, gamma, lut, radius,
                               rs._LUT_SIZE, 0, shape[1])
            rs._pass_rows_l3_rows(src, t2, ylo, alpha, beta, gamma, lut, rs._LUT_SIZE, 0,
                                  shape[1])
            _same_to_ulps(t1, t2)
            for clamp in (True, False):
                for m in (none, mask):
                    outs = []
                    for kernel in ("generic", "l3"):
                        out = np.full((3, h_out, w_out), 7.0, np.float32)
                        fp = np.zeros((h_out, w_out), bool)
                        om = (np.ones((h_out, w_out), bool) if m.size else none)
                        if kernel == "generic":
                            rs._pass_cols_rows(t1, False, ylo, src, minv, out, fp, lut, radius,
                                               rs._LUT_SIZE, clamp, m, om, 0, h_out)
                        else:
                            rs._pass_cols_l3_rows(t1, ylo, src, minv, out, fp, lut,
                                                  rs._LUT_SIZE, clamp, m, om, 0, h_out)
                        outs.append((out, fp, om))
                    for a, b in zip(*outs):
                        _same_to_ulps(a, b)


def test_reference_side_is_reused_only_for_the_same_reference(reference_stars):
    """find_transform keeps the reference's triangles between calls (issue 13): the
    same list is matched as before, and a reference changed in place is rebuilt."""
    cat, ref_stars = reference_stars
    truth = CASES["rotation"]
    stars = detect_stars(frame_from(truth, cat, seed=7))
    a = find_transform(stars, ref_stars)
    b = find_transform(stars, ref_stars)
    np.testing.assert_array_equal(a.transform.matrix, b.transform.matrix)
    moved = ref_stars.take(np.arange(len(ref_stars)))
    moved.x += 5.0  # in place: the content key changes
    c = find_transform(stars, moved)
    np.testing.assert_allclose(c.transform.matrix[0, 2] - a.transform.matrix[0, 2], 5.0,
                               atol=1e-6)


def test_blocked_lanczos_and_out_buffer_equal_the_frame_passes():
    """Small rotations resample both Lanczos-3 passes block by block (no frame-sized
    intermediate): the same values bit for bit as the two frame-wide passes, with and
    without a mask; ``out=`` fills the caller's buffer (colour and mono) with them."""
    from napari_astro.core.registration import resample as rs

    rng = np.random.default_rng(8)
    src = rng.random((3, 300, 170), dtype=np.float32)
    mask = rng.random((300, 170)) > 0.05
    cases = [Transform(np.array([[0.999727, 4.13e-05, 4.0026], [1.05e-4, 1.0000136, 3.6184],
                                 [0, 0, 1]])),
             Transform.from_similarity(angle_deg=0.3, dx=2.6, dy=-3.2, center=(85, 150)),
             Transform.from_similarity(angle_deg=180.2, dx=1.1, dy=0.4, center=(85, 150))]
    for t in cases:
        for m in (None, mask):
            img = AstroImage(src, mask=m)
            blocked = apply_transform(img, t)
            saved = rs._BLOCK
            try:
                rs._BLOCK = 10 ** 6         # the frame-wide passes
                frame = apply_transform(img, t)
            finally:
                rs._BLOCK = saved
            np.testing.assert_array_equal(blocked.data, frame.data)
            np.testing.assert_array_equal(blocked.mask, frame.mask)
            buf = np.full((3, 300, 170), np.nan, np.float32)
            got = apply_transform(img, t, out=buf)
            assert got.data is buf
            np.testing.assert_array_equal(buf, frame.data)
    mono = AstroImage(src[1])
    buf = np.empty((300, 170), np.float32)
    got = apply_transform(mono, cases[0], out=buf)
    assert got.data is buf
    np.testing.assert_array_equal(buf, apply_transform(mono, cases[0]).data)
    with pytest.raises(ValueError):
        apply_transform(mono, cases[0], out=np.empty((3, 300, 170), np.float32))
    with pytest.raises(ValueError):
        apply_transform(img, cases[0], out=img.data)
