"""Coordinates between our J2000 catalogue/WCS and INDI's mounts (equinox of date).

INDI's ``EQUATORIAL_EOD_COORD`` is RA (hours) / Dec (degrees) of the current epoch
(JNow); catalogues, plate solutions and FITS headers are J2000. The difference is the
precession since 2000 (about 0.3 deg in 2026), more than a small field.
"""

from __future__ import annotations

__all__ = ["j2000_to_jnow", "jnow_to_j2000"]


def _now_frame():
    from astropy.coordinates import FK5
    from astropy.time import Time

    now = Time.now()
    return FK5(equinox=now)


def j2000_to_jnow(ra_deg: float, dec_deg: float) -> tuple[float, float]:
    """J2000 (degrees) -> (RA hours, Dec degrees) of date, for the mount."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs").transform_to(_now_frame())
    return float(c.ra.hour), float(c.dec.deg)


def jnow_to_j2000(ra_hours: float, dec_deg: float) -> tuple[float, float]:
    """(RA hours, Dec degrees) of date from the mount -> J2000 degrees."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra_hours * u.hourangle, dec_deg * u.deg, frame=_now_frame()).transform_to("icrs")
    return float(c.ra.deg), float(c.dec.deg)
