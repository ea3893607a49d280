#!/usr/bin/env python
"""Convert Stellarium's default star catalogue into napari-astro's shipped catalogue.

Reads Debian's ``stellarium-data`` files ``stars/default/stars_0..3*.cat`` (Hipparcos
and Tycho-2 stars to V ~ 10.5 with B-V; about 600 000 stars) and writes
``src/napari_astro/data/stars.npz``: RA, Dec (J2000, deg), V and B-V (mag), sorted by
Dec so that :func:`napari_astro.core.catalog.stars_in_cone` finds a band with a binary
search. Run once, by hand::

    .venv/bin/python tools/make_catalog.py [/usr/share/stellarium/stars/default]

The binary format (Stellarium's ``ZoneArray.cpp``, ``Star.hpp``, ``StelGeodesicGrid.cpp``,
by Johannes Gajdosik): a header of eight little-endian uint32 (magic 0x835f040a, type,
major, minor, level, mag_min [mmag, signed], mag_range [mmag], mag_steps), then one
uint32 star count per zone (20 * 4**level zones of a subdivided icosahedron), then the
packed stars zone after zone. A star's position is ``centre + x0 * axis0 + x1 * axis1``
of its zone (axes scaled so the largest coordinate spans the zone), normalised;
``V = (mag_min + mag * mag_range / mag_steps) / 1000``; ``B-V = bV * 4 / 127 - 0.5``.
Star record types: 0 = Star1 (28 bytes, Hipparcos: int24 hip, uint8 components, int32
x0, x1, uint8 bV, uint8 mag, uint16 spInt, int32 dx0, dx1, plx), 1 = Star2 (10 bytes of
gcc bit fields: int20 x0, int20 x1, int14 dx0, int14 dx1, uint7 bV, uint5 mag),
2 = Star3 (6 bytes: int18 x0, int18 x1, uint7 bV, uint5 mag). Positions are the J2000
catalogue positions (proper motion is not applied: a few arcsec over 25 years for the
fastest Tycho stars, well inside the matching radius).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

FILE_MAGIC = 0x835F040A
_G = 0.5 * (1.0 + np.sqrt(5.0))
_B = 1.0 / np.sqrt(1.0 + _G * _G)
_A = _B * _G
ICOSAHEDRON_CORNERS = np.array([
    (_A, -_B, 0.0), (_A, _B, 0.0), (-_A, _B, 0.0), (-_A, -_B, 0.0),
    (0.0, _A, -_B), (0.0, _A, _B), (0.0, -_A, _B), (0.0, -_A, -_B),
    (-_B, 0.0, _A), (_B, 0.0, _A), (_B, 0.0, -_A), (-_B, 0.0, -_A)])
ICOSAHEDRON_TRIANGLES = [
    (1, 0, 10), (0, 1, 9), (0, 9, 6), (9, 8, 6), (0, 7, 10), (6, 7, 0), (7, 6, 3),
    (6, 8, 3), (11, 10, 7), (7, 3, 11), (3, 2, 11), (2, 3, 8), (10, 11, 4), (2, 4, 11),
    (5, 4, 2), (2, 8, 5), (4, 1, 10), (4, 5, 1), (5, 9, 1), (8, 9, 5)]
MAX_POS_VAL = {0: 0x7FFFFFFF, 1: (1 << 19) - 1, 2: (1 << 17) - 1}
RECORD_SIZE = {0: 28, 1: 10, 2: 6}


def _unit(v):
    return v / np.linalg.norm(v)


def zone_triangles(level: int) -> np.ndarray:
    """Corners of the geodesic grid's zones at ``level`` in Stellarium's order, (N, 3, 3)."""
    out = np.empty((20 * 4 ** level, 3, 3))

    def visit(lev, index, c0, c1, c2):
        if lev == level:
            out[index] = (c0, c1, c2)
            return
        e0, e1, e2 = _unit(c1 + c2), _unit(c2 + c0), _unit(c0 + c1)
        index *= 4
        visit(lev + 1, index + 0, c0, e2, e1)
        visit(lev + 1, index + 1, e2, c1, e0)
        visit(lev + 1, index + 2, e1, e0, c2)
        visit(lev + 1, index + 3, e0, e1, e2)

    for i, (a, b, c) in enumerate(ICOSAHEDRON_TRIANGLES):
        visit(0, i, ICOSAHEDRON_CORNERS[a], ICOSAHEDRON_CORNERS[b], ICOSAHEDRON_CORNERS[c])
    return out


def zone_frames(level: int, star_type: int):
    """Per-zone centre and scaled axes, as Stellarium's ``initTriangle``/``scaleAxis``."""
    tri = zone_triangles(level)
    centre = tri.sum(axis=1)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    axis0 = np.cross(np.array([0.0, 0.0, 1.0]), centre)
    axis0 /= np.linalg.norm(axis0, axis=1, keepdims=True)
    axis1 = np.cross(centre, axis0)
    d = tri - centre[:, None, :]
    mu0 = np.einsum("zcj,zj->zc", d, axis0)
    mu1 = np.einsum("zcj,zj->zc", d, axis1)
    f = 1.0 / np.sqrt(1.0 - mu0 ** 2 - mu1 ** 2)
    scale = max(np.max(np.abs(mu0) * f), np.max(np.abs(mu1) * f)) / MAX_POS_VAL[star_type]
    return centre, axis0 * scale, axis1 * scale


def _bits(raw: np.ndarray, start: int, width: int, signed: bool) -> np.ndarray:
    """Bit field ``[start, start+width)`` of little-endian packed records (N, nbytes)."""
    nbytes = raw.shape[1]
    # records are at most 10 bytes: two uint64 words hold one
    lo = np.zeros(len(raw), np.uint64)
    hi = np.zeros(len(raw), np.uint64)
    for b in range(min(nbytes, 8)):
        lo |= raw[:, b].astype(np.uint64) << np.uint64(8 * b)
    for b in range(8, nbytes):
        hi |= raw[:, b].astype(np.uint64) << np.uint64(8 * (b - 8))
    if start >= 64:
        v = (hi >> np.uint64(start - 64)) & np.uint64((1 << width) - 1)
    elif start + width <= 64:
        v = (lo >> np.uint64(start)) & np.uint64((1 << width) - 1)
    else:
        # straddling fields: shift the pair right by ``start``
        v = ((lo >> np.uint64(start)) | (hi << np.uint64(64 - start))) & np.uint64((1 << width) - 1)
    v = v.astype(np.int64)
    if signed:
        v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
    return v


def read_cat(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Read one Stellarium ``stars_*.cat`` file; returns ra, dec [deg], vmag, bv [mag]."""
    buf = path.read_bytes()
    head = np.frombuffer(buf, "<u4", count=8)
    if head[0] != FILE_MAGIC:
        raise ValueError(f"{path}: not a little-endian Stellarium star catalogue")
    star_type, level = int(head[1]), int(head[4])
    mag_min = int(head[5]) - (1 << 32) if int(head[5]) >= 1 << 31 else int(head[5])
    mag_range, mag_steps = int(head[6]), int(head[7])
    nz = 20 * 4 ** level
    sizes = np.frombuffer(buf, "<u4", count=nz, offset=32).astype(np.int64)
    rec = RECORD_SIZE[star_type]
    n = int(sizes.sum())
    raw = np.frombuffer(buf, np.uint8, count=n * rec, offset=32 + 4 * nz).reshape(n, rec)
    if star_type == 0:
        x0 = raw[:, 4:8].copy().view("<i4")[:, 0].astype(np.float64)
        x1 = raw[:, 8:12].copy().view("<i4")[:, 0].astype(np.float64)
        bv_idx = raw[:, 12].astype(np.int64)
        mag_idx = raw[:, 13].astype(np.int64)
    elif star_type == 1:
        x0 = _bits(raw, 0, 20, True).astype(np.float64)
        x1 = _bits(raw, 20, 20, True).astype(np.float64)
        bv_idx = _bits(raw, 68, 7, False)
        mag_idx = _bits(raw, 75, 5, False)
    else:
        x0 = _bits(raw, 0, 18, True).astype(np.float64)
        x1 = _bits(raw, 18, 18, True).astype(np.float64)
        bv_idx = _bits(raw, 36, 7, False)
        mag_idx = _bits(raw, 43, 5, False)
    zone = np.repeat(np.arange(nz), sizes)
    centre, axis0, axis1 = zone_frames(level, star_type)
    pos = centre[zone] + x0[:, None] * axis0[zone] + x1[:, None] * axis1[zone]
    pos /= np.linalg.norm(pos, axis=1, keepdims=True)
    ra = np.degrees(np.arctan2(pos[:, 1], pos[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(pos[:, 2], -1, 1)))
    vmag = (mag_min + mag_idx * mag_range / mag_steps) / 1000.0
    bv = bv_idx * (4.0 / 127.0) - 0.5
    return {"ra": ra, "dec": dec, "vmag": vmag, "bv": bv}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = pathlib.Path(argv[0] if argv else "/usr/share/stellarium/stars/default")
    out = pathlib.Path(__file__).resolve().parents[1] / "src/napari_astro/data/stars.npz"
    files = sorted(src.glob("stars_[0-3]_*.cat"))
    if not files:
        print(f"{src}: no stars_[0-3]_*.cat files (apt-get install stellarium-data)")
        return 2
    parts = [read_cat(f) for f in files]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cat["dec"], kind="stable")
    # Storage: RA/Dec as uint32/int32 in units of 360/2**32 deg (0.3 mas, far below the
    # catalogue's own precision), V and B-V in mmag: 12 bytes a star before compression.
    unit = 360.0 / 2 ** 32
    np.savez_compressed(
        out,
        ra=np.round(cat["ra"][order] / unit).astype(np.uint64).astype(np.uint32),
        dec=np.round(cat["dec"][order] / unit).astype(np.int32),
        vmag=np.round(cat["vmag"][order] * 1000).astype(np.int16),
        bv=np.round(cat["bv"][order] * 1000).astype(np.int16),
        unit_deg=np.float64(unit),
        source=np.array("Stellarium stellarium-data stars/default " + " ".join(f.name for f in files)),
    )
    print(f"{out}: {len(order)} stars, {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
