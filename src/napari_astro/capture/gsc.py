"""A ``gsc``-compatible star lister answering from the shipped catalogue.

INDI's CCD simulator draws stars by running ``gsc -c RA DEC -r RADIUS -m MIN MAX -n N``
(RA, Dec in degrees J2000, radius in arcminutes) and parsing each output line with
``sscanf("%10s %f %f %f %f %f %d %d %4s %2s %f %d")``: id, ra, dec, position error,
magnitude, magnitude error, band, class, plate, origin, distance, direction. Debian
has no ``gsc``; ``capture/bin/gsc`` runs this file as a script so the simulator renders
the real sky at the mount's pointing (the catalogue of ``napari_astro.core.catalog``,
stars to V ~ 10.5).

This file is run directly (not as ``napari_astro.capture.gsc``) and imports only numpy:
importing the package pulls astropy and numba (3.5 s on the loaded 2-core test machine,
against 0.3 s for numpy alone), and the simulator runs it once per exposure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "format_lines", "cone"]

_CATALOG = Path(__file__).resolve().parent.parent / "data" / "stars.npz"


def cone(ra_deg: float, dec_deg: float, radius_deg: float, mag_max: float):
    """Catalogue stars in a cone, brightest first.

    Reads ``data/stars.npz`` with the units of ``core.catalog.load_catalog`` (positions
    in ``unit_deg`` steps, magnitudes in millimag).

    Returns
    -------
    ra, dec, vmag, dist : ndarray
        Degrees J2000, V magnitude, distance from the centre in degrees.
    """
    with np.load(_CATALOG) as z:
        unit = float(z["unit_deg"])
        dec_all = z["dec"] * unit
        lo = int(np.searchsorted(dec_all, dec_deg - radius_deg, side="left"))
        hi = int(np.searchsorted(dec_all, dec_deg + radius_deg, side="right"))
        ra = z["ra"][lo:hi] * unit
        dec = dec_all[lo:hi]
        vmag = z["vmag"][lo:hi] / 1000.0
    r1, d1, r2, d2 = (np.radians(a) for a in (ra_deg, dec_deg, ra, dec))
    s = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    dist = np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))
    keep = (dist <= radius_deg) & (vmag <= mag_max)
    order = np.argsort(vmag[keep], kind="stable")
    return ra[keep][order], dec[keep][order], vmag[keep][order], dist[keep][order]


def format_lines(ra_deg: float, dec_deg: float, radius_arcmin: float, mag_min: float,
                 mag_max: float, limit: int) -> list[str]:
    """The lines ``gsc`` prints for a cone query (brightest first, at most ``limit``)."""
    ra, dec, vmag, dist = cone(ra_deg % 360.0, max(-90.0, min(90.0, dec_deg)),
                               max(radius_arcmin, 0.1) / 60.0, mag_max)
    bright = vmag >= mag_min
    n = max(int(limit), 0)
    ra, dec, vmag, dist = (a[bright][:n] for a in (ra, dec, vmag, dist))
    # ids: at most 10 characters without spaces (the simulator reads them with %10s)
    return [f"N{i:09d} {r:10.6f} {d:+10.6f} 0.2 {m:5.2f} 0.20 0 0 0000 00 {x * 60:7.3f} 0"
            for i, (r, d, m, x) in enumerate(zip(ra, dec, vmag, dist))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gsc", description="list catalogue stars in a cone")
    p.add_argument("-c", nargs=2, type=float, metavar=("RA", "DEC"), required=True,
                   help="centre, degrees J2000")
    p.add_argument("-r", type=float, default=10.0, metavar="ARCMIN", help="radius, arcmin")
    p.add_argument("-m", nargs=2, type=float, default=(-5.0, 30.0), metavar=("MIN", "MAX"),
                   help="magnitude range")
    p.add_argument("-n", type=int, default=3000, help="at most this many stars")
    args = p.parse_args(argv)
    out = format_lines(args.c[0], args.c[1], args.r, args.m[0], args.m[1], args.n)
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
