"""The shipped star catalogue (offline): Hipparcos + Tycho-2 stars to V ~ 10.5 with B-V.

``data/stars.npz`` is made once by ``tools/make_catalog.py`` from Stellarium's default
catalogue (see ``data/README.md`` for the source and licence): about 600 000 stars,
J2000 positions, sorted by declination. :func:`stars_in_cone` is the only query; the
plate solver, photometric colour calibration, the field simulator and capture's
centring use it.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np

__all__ = ["CATALOG_DTYPE", "load_catalog", "stars_in_cone", "angular_separation"]

#: Fields of every catalogue query result: degrees (J2000) and magnitudes.
CATALOG_DTYPE = np.dtype([("ra", "f8"), ("dec", "f8"), ("vmag", "f4"), ("bv", "f4")])


@functools.lru_cache(maxsize=1)
def load_catalog() -> np.ndarray:
    """The whole catalogue as a structured array (:data:`CATALOG_DTYPE`), sorted by Dec.

    Loaded once per process (about 0.1 s, 14 MB in memory).
    """
    ref = importlib.resources.files("napari_astro") / "data" / "stars.npz"
    with importlib.resources.as_file(ref) as path, np.load(path) as z:
        unit = float(z["unit_deg"])
        out = np.empty(len(z["ra"]), CATALOG_DTYPE)
        out["ra"] = z["ra"] * unit
        out["dec"] = z["dec"] * unit
        out["vmag"] = z["vmag"] / 1000.0
        out["bv"] = z["bv"] / 1000.0
    out.flags.writeable = False
    return out


def angular_separation(ra1, dec1, ra2, dec2):
    """Great-circle distance [deg] between points given in degrees (haversine; broadcasts)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (ra1, dec1, ra2, dec2))
    s = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


def stars_in_cone(ra_deg: float, dec_deg: float, radius_deg: float, *,
                  mag_limit: float | None = None) -> np.ndarray:
    """Catalogue stars within ``radius_deg`` of (``ra_deg``, ``dec_deg``).

    Parameters
    ----------
    ra_deg, dec_deg : float
        Cone centre, J2000 degrees.
    radius_deg : float
        Cone radius in degrees (> 0, at most 180).
    mag_limit : float, optional
        Keep only stars with V <= this (mag); the catalogue itself stops near 10.5.

    Returns
    -------
    ndarray
        Structured array with fields ``ra``, ``dec`` [deg], ``vmag``, ``bv`` [mag]
        (:data:`CATALOG_DTYPE`), brightest first. A copy: callers may modify it.
    """
    if not np.isfinite([ra_deg, dec_deg, radius_deg]).all() or radius_deg <= 0:
        raise ValueError(f"bad cone ({ra_deg}, {dec_deg}, r={radius_deg})")
    cat = load_catalog()
    lo = np.searchsorted(cat["dec"], dec_deg - radius_deg, side="left")
    hi = np.searchsorted(cat["dec"], dec_deg + radius_deg, side="right")
    band = cat[lo:hi]
    if mag_limit is not None:
        band = band[band["vmag"] <= mag_limit]
    keep = angular_separation(ra_deg, dec_deg, band["ra"], band["dec"]) <= radius_deg
    out = band[keep]
    return out[np.argsort(out["vmag"], kind="stable")].copy()
