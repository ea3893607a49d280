"""Plate solving (astrometry.net in a time-limited child) on simulated catalogue fields."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from napari_astro.core.catalog import angular_separation
from napari_astro.core.errors import BadInputError
from napari_astro.core.image import AstroImage
from napari_astro.core.simulate_field import simulate_field
from napari_astro.core.solve import (SolveHints, has_wcs, index_files, solve_hints, solve_image,
                                     solve_stars, write_wcs)

pytestmark = pytest.mark.skipif(not index_files(), reason="no astrometry.net index files installed "
                                "(apt-get install astrometry-data-tycho2)")


def _centre(wcs, shape):
    h, w = shape
    return wcs.all_pix2world([[(w - 1) / 2, (h - 1) / 2]], 0)[0]


@pytest.fixture(scope="module")
def solved_field():
    img, truth = simulate_field(315.40, 68.17, shape=(600, 900), scale_arcsec=6.0,
                                rotation_deg=25.0, seed=1)
    return img, truth, solve_image(img, timeout=60)


def test_solution_matches_truth(solved_field):
    img, truth, sol = solved_field
    ra, dec = _centre(truth.wcs, img.shape2d)
    assert angular_separation(ra, dec, sol.ra_deg, sol.dec_deg) * 3600 < 1.0
    assert sol.scale_arcsec == pytest.approx(6.0, rel=1e-3)
    assert abs((sol.rotation_deg - 25.0 + 180) % 360 - 180) < 0.2
    assert not sol.flipped
    # every rendered catalogue star lands where the true WCS put it (0-based pixels)
    px = sol.wcs.all_world2pix(np.column_stack([truth.stars["ra"], truth.stars["dec"]]), 0)
    err = np.hypot(px[:, 0] - truth.stars["x"], px[:, 1] - truth.stars["y"])
    assert np.median(err) < 0.1 and err.max() < 0.5


def test_wcs_written_and_read_back(solved_field, tmp_path):
    from napari_astro.core.io import read_image, write_image

    img, truth, sol = solved_field
    old = img.header.copy()
    old["CTYPE1"], old["CTYPE2"] = "RA---TAN", "DEC--TAN"
    old["CRVAL1"], old["CRVAL2"], old["CD1_1"] = 10.0, 10.0, 1.0  # a stale solution
    hdr = write_wcs(old, sol)
    assert has_wcs(hdr) and hdr["PLTSOLVD"]
    assert hdr.get("CD1_1") != 1.0 and hdr["CRVAL1"] != 10.0  # the stale solution is gone
    assert img.header.get("CTYPE1") is None  # the input header is not modified
    write_image(img.replace(header=hdr), tmp_path / "solved.fits")
    back = read_image(tmp_path / "solved.fits")
    wcs = WCS(back.header, naxis=2)
    ra, dec = _centre(truth.wcs, img.shape2d)
    ra2, dec2 = _centre(wcs, img.shape2d)
    assert angular_separation(ra, dec, ra2, dec2) * 3600 < 1.0


def test_mirrored_field_blind_without_position():
    img, truth = simulate_field(83.8, -5.4, shape=(500, 700), scale_arcsec=8.0,
                                rotation_deg=-70.0, flip=True, seed=2, write_hints=False)
    hints = SolveHints(scale_arcsec=8.0, scale_range=(7.0, 9.0))
    sol = solve_image(img, hints=hints, timeout=60)
    ra, dec = _centre(truth.wcs, img.shape2d)
    assert angular_separation(ra, dec, sol.ra_deg, sol.dec_deg) * 3600 < 2.0
    assert sol.flipped


def test_hints_from_headers():
    h = fits.Header({"OBJCTRA": "12 50 53.1", "OBJCTDEC": "+41 07 12", "FOCALLEN": 250.0,
                     "XPIXSZ": 2.9, "XBINNING": 2})
    hint = solve_hints(h)
    assert hint.ra_deg == pytest.approx(192.72125, abs=1e-4)
    assert hint.dec_deg == pytest.approx(41.12, abs=1e-4)
    assert hint.scale_arcsec == pytest.approx(2.3927, abs=1e-3)
    lo, hi = hint.scale_range  # binning may or may not be in XPIXSZ: both covered
    assert lo < 2.39 and hi > 2 * 2.39
    h2 = fits.Header({"RA": 315.4, "DEC": 68.17, "PIXSCALE": 1.5})
    assert solve_hints(h2) == SolveHints(315.4, 68.17, 1.5, (1.2, 1.875))
    assert solve_hints(fits.Header({"RA": "21:01:36", "DEC": "-68:10:00"})).ra_deg == pytest.approx(315.4)
    assert solve_hints(fits.Header()).ra_deg is None


def test_no_solution_is_bad_input():
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 800, (60, 2))  # not a sky
    with pytest.raises(BadInputError, match=r"^noise\.fits: plate solve (found no solution|timed out)"):
        solve_stars(xy, 800, 800, hints=SolveHints(100.0, 20.0, 5.0, (4.9, 5.1)), radius_deg=1.0,
                    timeout=20, name="noise.fits")


def test_timeout_is_bad_input(solved_field):
    img, _, _ = solved_field
    with pytest.raises(BadInputError, match=r"timed out after 0\.3 s"):
        solve_image(img.replace(path="slow.fits"), timeout=0.3, hints=SolveHints())


def test_too_few_stars():
    img = AstroImage(np.full((200, 200), 0.1, np.float32), path="flat.fits")
    with pytest.raises(BadInputError, match="flat.fits: plate solve needs at least 8 stars"):
        solve_image(img)


def test_raw_seestar_frame_solves(shared_data):
    """A single raw 10 s CFA sub (what capture's centring sees) solves from its header hints."""
    from napari_astro.core.io import read_image

    frames = sorted((shared_data / "seestar_m94" / "session1").glob("*.fit"))
    if not frames:
        pytest.skip("no Seestar M94 frames")
    img = read_image(frames[0])
    assert img.is_cfa
    sol = solve_image(img, timeout=60)
    # M94 (RA 192.721, Dec +41.120) is near the centre of the Seestar's 0.7 x 1.3 degree field
    assert angular_separation(192.721, 41.120, sol.ra_deg, sol.dec_deg) * 60 < 6.0
    assert sol.scale_arcsec == pytest.approx(2.39, rel=0.02)
