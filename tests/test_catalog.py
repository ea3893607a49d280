"""The shipped star catalogue: positions of known stars, cone search against brute force."""

import numpy as np
import pytest

from napari_astro.core.catalog import angular_separation, load_catalog, stars_in_cone

# Independent truth: SIMBAD J2000 positions, V and B-V of bright stars.
KNOWN = [
    ("Vega", 279.23473, 38.78369, 0.03, 0.00),
    ("Sirius", 101.28716, -16.71612, -1.46, 0.00),
    ("Betelgeuse", 88.79294, 7.40706, 0.42, 1.85),
    ("Polaris", 37.95456, 89.26411, 1.98, 0.64),
]


@pytest.mark.parametrize("name,ra,dec,v,bv", KNOWN)
def test_known_star(name, ra, dec, v, bv):
    s = stars_in_cone(ra, dec, 10 / 3600)
    assert len(s) >= 1, name
    assert angular_separation(ra, dec, s["ra"][0], s["dec"][0]) * 3600 < 2.0
    assert abs(s["vmag"][0] - v) < 0.15
    if name != "Betelgeuse":  # a variable: Hipparcos B-V 1.5 vs SIMBAD 1.85
        assert abs(s["bv"][0] - bv) < 0.1


def test_catalogue_content():
    cat = load_catalog()
    assert 550_000 < len(cat) < 700_000
    assert np.all(np.diff(cat["dec"]) >= 0)
    assert (cat["ra"].min() >= 0) and (cat["ra"].max() < 360)
    # Tycho part complete to about V 10.5 (a few faint Hipparcos stars reach V 14)
    assert np.percentile(cat["vmag"], 95) < 10.6
    assert -0.6 < np.median(cat["bv"]) < 1.5 and np.median(cat["bv"]) > 0.3
    # Tycho stars concentrate to the Milky Way (a decoding error would spread them evenly)
    r, d = np.radians(cat["ra"]), np.radians(cat["dec"])
    p = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], 1)
    b = np.degrees(np.arcsin(p @ np.array([-0.8676661, -0.1980764, 0.4559838])))
    assert np.mean(np.abs(b) < 10) > 1.5 * np.sin(np.radians(10))


@pytest.mark.parametrize("ra,dec,r", [(192.72, 41.12, 2.0), (359.8, 0.3, 1.0), (0.1, -30, 1.5),
                                      (120.0, 89.5, 1.0), (10.0, -89.8, 0.5)])
def test_cone_matches_brute_force(ra, dec, r):
    cat = load_catalog()
    truth = angular_separation(ra, dec, cat["ra"], cat["dec"]) <= r
    got = stars_in_cone(ra, dec, r)
    assert len(got) == truth.sum() > 0
    assert np.all(np.diff(got["vmag"]) >= 0)
    assert set(zip(got["ra"], got["dec"])) == set(zip(cat["ra"][truth], cat["dec"][truth]))
    faint = stars_in_cone(ra, dec, r, mag_limit=9.0)
    assert len(faint) == (truth & (cat["vmag"] <= 9.0)).sum()


def test_bad_cone():
    with pytest.raises(ValueError):
        stars_in_cone(10, 10, -1)


STELLARIUM = "/usr/share/stellarium/stars/default"


@pytest.mark.skipif(not __import__("os").path.isdir(STELLARIUM),
                    reason="Debian's stellarium-data is not installed")
def test_shipped_file_is_the_converters_output():
    import importlib.util
    import pathlib

    tool = pathlib.Path(__file__).resolve().parents[1] / "tools" / "make_catalog.py"
    spec = importlib.util.spec_from_file_location("make_catalog", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = sorted(pathlib.Path(STELLARIUM).glob("stars_0_*.cat"))[0]
    raw = mod.read_cat(src)  # the bright Hipparcos part: 4979 stars
    cat = load_catalog()
    bright = cat[cat["vmag"] <= raw["vmag"].max()]
    from scipy.spatial import cKDTree

    def xyz(ra, dec):
        r, d = np.radians(ra), np.radians(dec)
        return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])

    dist, j = cKDTree(xyz(bright["ra"], bright["dec"])).query(xyz(raw["ra"], raw["dec"]))
    assert np.degrees(dist).max() * 3600 < 0.01  # same positions to 10 mas
    np.testing.assert_allclose(bright["vmag"][j], raw["vmag"], atol=1e-3)
    np.testing.assert_allclose(bright["bv"][j], raw["bv"], atol=1e-3)
