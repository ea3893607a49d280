"""Offline catalogue of named sky objects, for slewing by name.

All Messier objects, NGC/IC (and a few addendum) objects brighter than about V 12 or
having a common name, from OpenNGC, and the stars with IAU (WGSN) names, from
Stellarium's sky-culture and Hipparcos data: about 2 300 rows in
``napari_astro/data/objects.csv.gz`` (made by ``tools/make_objects.py``; sources and
licences in ``napari_astro/data/README.md``). Coordinates are J2000 (ICRS), degrees.

Names match case-, space-, punctuation-, accent- and leading-zero-insensitively:
"m31", "M 31", "M031", "Messier 31", "NGC 224" and "Andromeda Galaxy" are one object;
stars answer to their IAU name, "HIP 91262", "HD 172167", "HR 7001" and their Bayer
or Flamsteed designation ("Alpha Lyr", "alf Lyr", "α Lyr", "Alpha Lyrae").

    >>> lookup("m31")
    (10.68479, 41.26906)
"""

from __future__ import annotations

import bisect
import csv
import functools
import gzip
import importlib.resources
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["SkyObject", "all_objects", "complete", "find", "lookup", "normalize"]

DATA_FILE = "objects.csv.gz"
COLUMNS = ("name", "kind", "ra_deg", "dec_deg", "mag", "aliases")
ALIAS_SEP = "|"

_DROP = re.compile(r"[^\w-]|_")              # spaces, dots, apostrophes, plus signs ...
_LONE_HYPHEN = re.compile(r"(?<!\d)-|-(?!\d)")  # "Sh2-155" keeps its hyphen, "Kaus-Australis" not
_LEADING_ZEROS = re.compile(r"(?<!\d)0+(?=\d)")
_CATALOGUE_WORDS = re.compile(r"^(messier|caldwell|collinder|melotte|barnard|sharpless2?)(?=\d)")
_CATALOGUE_SHORT = {"messier": "m", "caldwell": "c", "collinder": "cr", "melotte": "mel",
                    "barnard": "b", "sharpless": "sh2", "sharpless2": "sh2"}


@dataclass(frozen=True)
class SkyObject:
    """One catalogue object. ``mag`` is V (B where the source gives no V), or None."""

    name: str                 # canonical name: "M 31", "NGC 7023", "Vega"
    kind: str                 # "galaxy", "open cluster", "planetary nebula", "star", ...
    ra_deg: float             # J2000 right ascension [deg]
    dec_deg: float            # J2000 declination [deg]
    mag: float | None = None  # visual magnitude [mag]
    aliases: tuple[str, ...] = ()  # other names: "NGC 224", "Andromeda Galaxy", ...

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def normalize(name: str) -> str:
    """The matching key of a name: "M 031" -> "m31", "Rigil Kentaurus" -> "rigilkentaurus"."""
    s = str(name).casefold()
    if not s.isascii():
        s = "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))
    s = _LONE_HYPHEN.sub("", _DROP.sub("", s))
    s = _LEADING_ZEROS.sub("", s)
    return _CATALOGUE_WORDS.sub(lambda m: _CATALOGUE_SHORT[m.group(1)], s)


def _parse_row(row: list[str]) -> SkyObject:
    name, kind, ra, dec, mag, aliases = row
    return SkyObject(name, kind, float(ra), float(dec), float(mag) if mag else None,
                     tuple(a for a in aliases.split(ALIAS_SEP) if a))


@functools.cache
def _catalogue() -> tuple[tuple[SkyObject, ...], dict[str, SkyObject], list[str], list[str]]:
    """(objects, key -> object, sorted keys, display name of each sorted key); read once."""
    ref = importlib.resources.files("napari_astro") / "data" / DATA_FILE
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows)
        if tuple(header) != COLUMNS:
            raise ValueError(f"{DATA_FILE}: unexpected columns {header}")
        objects = tuple(_parse_row(r) for r in rows)
    index: dict[str, SkyObject] = {}
    display: dict[str, str] = {}
    # canonical names first, so that no alias of another object can shadow one
    for obj in objects:
        k = normalize(obj.name)
        if k not in index:
            index[k], display[k] = obj, obj.name
    for obj in objects:
        for a in obj.aliases:
            k = normalize(a)
            if k not in index:
                index[k], display[k] = obj, a
    keys = sorted(index)
    return objects, index, keys, [display[k] for k in keys]


def all_objects() -> tuple[SkyObject, ...]:
    """Every object of the catalogue (Messier first, then stars, then NGC/IC by magnitude)."""
    return _catalogue()[0]


def find(name: str) -> SkyObject | None:
    """The object called ``name`` (any of its names, loosely spelt), or None."""
    key = normalize(name)
    return _catalogue()[1].get(key) if key else None


def lookup(name: str) -> tuple[float, float] | None:
    """J2000 (RA, Dec) in degrees of the object called ``name``, or None if unknown."""
    obj = find(name)
    return None if obj is None else (obj.ra_deg, obj.dec_deg)


def complete(prefix: str, limit: int = 20) -> list[str]:
    """Up to ``limit`` names starting with ``prefix`` (loosely), shortest first, for a completer.

    ``complete("M 1")`` gives "M 1", "M 10" ... "M 19", then "M 100" ...
    """
    key = normalize(prefix)
    if not key or limit <= 0:
        return []
    _, _, keys, names = _catalogue()
    lo = bisect.bisect_left(keys, key)
    hi = bisect.bisect_left(keys, key + "\U0010ffff", lo)
    order = sorted(range(lo, hi), key=lambda i: (len(keys[i]), _natural(keys[i])))
    return [names[i] for i in order[:limit]]


def _natural(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))
