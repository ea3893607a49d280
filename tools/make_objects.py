#!/usr/bin/env python
"""Build napari-astro's offline catalogue of named objects (``data/objects.csv.gz``).

Sources (licences and credits in ``src/napari_astro/data/README.md``):

- deep sky: the OpenNGC database (Mattia Verga, CC-BY-SA-4.0) as shipped in the PyPI
  package ``pyongc`` (``ongc.db``; used here only, never at run time). Kept: every
  Messier object; NGC, IC and addendum objects with V (else B) <= ``--mag`` or a common
  name; duplicates' names become aliases of the object they duplicate.
- stars: the IAU (WGSN) star names of Stellarium's ``skycultures/western/star_names.fab``
  (the names citing its references 4, 6, 12, 36: IAU-CSN, IAU Naming Stars,
  NameExoWorlds), their Bayer/Flamsteed designations from ``stars/default/name.fab``,
  HD/HR/SAO numbers from ``cross-id.dat``, and their J2000 positions and V magnitudes
  from the Hipparcos records (type 0) of Stellarium's ``stars_*.cat`` (Debian
  ``stellarium-data``), decoded by ``tools/make_catalog.py``.

Run by hand, then commit the output::

    .venv/bin/pip download --no-deps pyongc -d /tmp/ongc     # or have pyongc installed
    apt-get install -y stellarium-data
    .venv/bin/python tools/make_objects.py --ongc /tmp/ongc/pyongc-*.whl

Messier 102 follows the common usage of planetarium and GoTo software (NGC 5866);
OpenNGC records it as a duplicate of M 101.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import pathlib
import re
import sqlite3
import sys
import tempfile
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))
from make_catalog import read_cat  # noqa: E402

from napari_astro.capture.objects import ALIAS_SEP, COLUMNS, normalize  # noqa: E402

OUT = ROOT / "src/napari_astro/data/objects.csv.gz"
IAU_REFS = {"4", "6", "12", "36"}    # star_names.fab references that are IAU names
M102_NGC = "NGC5866"

KINDS = {
    "G": "galaxy", "GPair": "galaxy group", "GTrpl": "galaxy group", "GGroup": "galaxy group",
    "OCl": "open cluster", "GCl": "globular cluster", "*Ass": "star association",
    "Cl+N": "cluster with nebula", "Neb": "nebula", "EmN": "emission nebula",
    "HII": "emission nebula", "RfN": "reflection nebula", "PN": "planetary nebula",
    "DrkN": "dark nebula", "SNR": "supernova remnant", "*": "star", "**": "double star",
    "Nova": "nova", "Other": "other",
}
# identifier catalogues kept as aliases (OpenNGC "identifiers" column)
ID_PREFIXES = ("PGC", "UGC", "UGCA", "ESO", "LBN", "Mel", "Cl ", "C ", "HD", "HIP", "SAO")
PREFIX_NAMES = {"Cl": "Cr", "C": "C"}   # OpenNGC "Cl" is Collinder
GREEK = {
    "α": ("Alpha", "alf"), "β": ("Beta", "bet"), "γ": ("Gamma", "gam"), "δ": ("Delta", "del"),
    "ε": ("Epsilon", "eps"), "ζ": ("Zeta", "zet"), "η": ("Eta", "eta"), "θ": ("Theta", "tet"),
    "ι": ("Iota", "iot"), "κ": ("Kappa", "kap"), "λ": ("Lambda", "lam"), "μ": ("Mu", "mu"),
    "ν": ("Nu", "nu"), "ξ": ("Xi", "ksi"), "ο": ("Omicron", "omi"), "π": ("Pi", "pi"),
    "ρ": ("Rho", "rho"), "σ": ("Sigma", "sig"), "τ": ("Tau", "tau"), "υ": ("Upsilon", "ups"),
    "φ": ("Phi", "phi"), "χ": ("Chi", "chi"), "ψ": ("Psi", "psi"), "ω": ("Omega", "ome"),
}
GENITIVE = dict(p.split(":") for p in (
    "And:Andromedae Ant:Antliae Aps:Apodis Aqr:Aquarii Aql:Aquilae Ara:Arae Ari:Arietis "
    "Aur:Aurigae Boo:Bootis Cae:Caeli Cam:Camelopardalis Cnc:Cancri CVn:Canum_Venaticorum "
    "CMa:Canis_Majoris CMi:Canis_Minoris Cap:Capricorni Car:Carinae Cas:Cassiopeiae "
    "Cen:Centauri Cep:Cephei Cet:Ceti Cha:Chamaeleontis Cir:Circini Col:Columbae "
    "Com:Comae_Berenices CrA:Coronae_Australis CrB:Coronae_Borealis Crv:Corvi Crt:Crateris "
    "Cru:Crucis Cyg:Cygni Del:Delphini Dor:Doradus Dra:Draconis Equ:Equulei Eri:Eridani "
    "For:Fornacis Gem:Geminorum Gru:Gruis Her:Herculis Hor:Horologii Hya:Hydrae Hyi:Hydri "
    "Ind:Indi Lac:Lacertae Leo:Leonis LMi:Leonis_Minoris Lep:Leporis Lib:Librae Lup:Lupi "
    "Lyn:Lyncis Lyr:Lyrae Men:Mensae Mic:Microscopii Mon:Monocerotis Mus:Muscae "
    "Nor:Normae Oct:Octantis Oph:Ophiuchi Ori:Orionis Pav:Pavonis Peg:Pegasi Per:Persei "
    "Phe:Phoenicis Pic:Pictoris Psc:Piscium PsA:Piscis_Austrini Pup:Puppis Pyx:Pyxidis "
    "Ret:Reticuli Sge:Sagittae Sgr:Sagittarii Sco:Scorpii Scl:Sculptoris Sct:Scuti "
    "Ser:Serpentis Sex:Sextantis Tau:Tauri Tel:Telescopii Tri:Trianguli "
    "TrA:Trianguli_Australis Tuc:Tucanae UMa:Ursae_Majoris UMi:Ursae_Minoris Vel:Velorum "
    "Vir:Virginis Vol:Volantis Vul:Vulpeculae").split())


def catalogue_name(raw: str) -> str:
    """OpenNGC's "NGC0224" -> "NGC 224", "IC2431 NED02" -> "IC 2431 NED02", "Cl399" -> "Cr 399"."""
    m = re.fullmatch(r"([A-Za-z]+)(\d+)(.*)", raw)
    if not m:
        return raw
    prefix, num, rest = m.groups()
    prefix = PREFIX_NAMES.get(prefix, prefix)
    return f"{prefix} {int(num)}{rest}"


def open_ongc(path: pathlib.Path | None, tmp: pathlib.Path) -> sqlite3.Connection:
    if path is None:
        import pyongc  # build-time only

        path = pathlib.Path(pyongc.__file__).with_name("ongc.db")
    elif path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            (tmp / "ongc.db").write_bytes(z.read("pyongc/ongc.db"))
        path = tmp / "ongc.db"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def deep_sky(db: sqlite3.Connection, max_mag: float) -> list[dict]:
    cols = [d[1] for d in db.execute("pragma table_info(objects)")]
    rows = [dict(zip(cols, r)) for r in db.execute("select * from objects")]
    by_name = {r["name"]: r for r in rows}
    dup_names: dict[str, list[str]] = {}
    for r in rows:
        if r["type"] == "Dup":
            target = ("NGC" + r["ngc"]) if r["ngc"] else ("IC" + r["ic"]) if r["ic"] else None
            if target:
                dup_names.setdefault(target, []).append(catalogue_name(r["name"]))
    out = []
    for r in rows:
        if r["type"] in ("Dup", "NonEx") or r["ra"] is None:
            continue
        mag = r["vmag"] if r["vmag"] is not None else r["bmag"]
        messier = int(r["messier"]) if r["messier"] else (102 if r["name"] == M102_NGC else None)
        if messier is None and not r["commonnames"] and (mag is None or mag > max_mag):
            continue
        own = catalogue_name(r["name"])
        aliases = [own] if messier else []
        if " NED" in own:           # a component: "NGC 520 NED01" is also "NGC 520"
            aliases.append(own.split(" NED")[0])
        for cat in ("ngc", "ic"):
            aliases += [f"{cat.upper()} {re.sub(r'^0+(?=[0-9])', '', n.strip())}"
                        for n in (r[cat] or "").split(",") if n.strip()]
        aliases += dup_names.get(r["name"], [])
        aliases += [c.strip() for c in (r["commonnames"] or "").split(",") if c.strip()]
        for ident in filter(None, (i.strip() for i in (r["identifiers"] or "").split(","))):
            if ident.startswith(ID_PREFIXES):
                if ident.startswith("C "):      # Caldwell
                    n = int(ident[2:])
                    aliases += [f"C {n}", f"Caldwell {n}"]
                elif ident.startswith("Cl "):
                    aliases.append("Cr " + ident[3:].lstrip("0"))
                else:
                    aliases.append(re.sub(r"(?<=\s)0+(?=\d)", "", ident))
        out.append(dict(
            name=f"M {messier}" if messier else own, kind=KINDS[r["type"]],
            ra=np.degrees(r["ra"]), dec=np.degrees(r["dec"]), mag=mag, aliases=aliases,
            order=(0, messier) if messier else (2, mag if mag is not None else 99.0)))
    assert M102_NGC in by_name
    return out


def designations(name_fab: pathlib.Path) -> dict[int, list[str]]:
    """Bayer/Flamsteed designations by HIP: "α_Lyr" -> "α Lyr", "Alpha Lyr", "alf Lyr", ..."""
    out: dict[int, list[str]] = {}
    base: dict[int, list[str]] = {}
    for line in name_fab.read_text(encoding="utf-8").splitlines():
        if "|" not in line:
            continue
        hip, des = line.split("|", 1)
        m = re.fullmatch(r"(.+?)_([A-Za-z]{3})(?:_(\w+))?", des.strip())
        if not m:
            continue
        tok, con, comp = m.groups()
        comp = f" {comp}" if comp else ""
        forms = [tok]
        if tok[0] in GREEK:
            word, abbr = GREEK[tok[0]]
            forms += [word + tok[1:], abbr + tok[1:]]
        names = [f"{f} {con}{comp}" for f in forms]
        gen = GENITIVE.get(con)
        if gen:
            names += [f"{f} {gen.replace('_', ' ')}{comp}" for f in forms[:2]]
        if tok[0] in GREEK and tok[1:].isdigit():   # "α1 Cen" is also "Alpha Cen" (if unique)
            forms = [f"{f} {con}" for f in (tok[0], *GREEK[tok[0]])]
            if gen:
                forms.append(f"{GREEK[tok[0]][0]} {gen.replace('_', ' ')}")
            base.setdefault(int(hip), []).extend(forms)
        out.setdefault(int(hip), []).extend(names)
    for hip, names in base.items():
        out[hip].extend(names)
    return out


def star_names(path: pathlib.Path) -> tuple[dict[int, str], dict[int, list[str]]]:
    """(HIP -> IAU name, HIP -> other traditional names) from a ``star_names.fab``."""
    iau: dict[int, str] = {}
    other: dict[int, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r'\s*(\d+)\|_\("(.+?)"\)\s*([\d,]*)', line)
        if not m:
            continue
        hip, name, refs = int(m.group(1)), m.group(2), set(m.group(3).split(","))
        if refs & IAU_REFS and hip not in iau:
            iau[hip] = name
        else:
            other.setdefault(hip, []).append(name)
    return iau, other


def hipparcos(stars_dir: pathlib.Path) -> dict[int, tuple[float, float, float]]:
    """HIP -> (ra, dec [deg, J2000], V) from the type-0 (Hipparcos) Stellarium files."""
    out = {}
    for f in sorted(stars_dir.glob("stars_[0-9]_0v*.cat")):
        buf = f.read_bytes()
        head = np.frombuffer(buf, "<u4", count=8)
        if int(head[1]) != 0:
            continue
        nz = 20 * 4 ** int(head[4])
        n = int(np.frombuffer(buf, "<u4", count=nz, offset=32).sum())
        raw = np.frombuffer(buf, np.uint8, count=n * 28, offset=32 + 4 * nz).reshape(n, 28)
        b = raw[:, :3].astype(np.int64)
        hip = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16      # int24 little-endian
        cat = read_cat(f)          # same record order as ``raw``
        for h, ra, dec, v in zip(hip, cat["ra"], cat["dec"], cat["vmag"]):
            if h > 0 and int(h) not in out:
                out[int(h)] = (float(ra), float(dec), float(v))
    return out


def cross_ids(path: pathlib.Path) -> dict[int, list[str]]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) >= 5 and f[0].strip() and f[1].strip() in ("", "A") and int(f[0]) not in out:
            sao, hd, hr = (x.strip() for x in f[2:5])   # column 2: the component (A, B)
            out[int(f[0])] = [f"{k} {v}" for k, v in (("HD", hd), ("HR", hr), ("SAO", sao)) if v]
    return out


def stars(stel: pathlib.Path) -> tuple[list[dict], int]:
    iau, other = star_names(stel / "skycultures/western/star_names.fab")
    des = designations(stel / "stars/default/name.fab")
    ids = cross_ids(stel / "stars/default/cross-id.dat")
    pos = hipparcos(stel / "stars/default")
    out, missing = [], 0
    for hip, name in iau.items():
        if hip not in pos:
            missing += 1
            continue
        ra, dec, v = pos[hip]
        aliases = [f"HIP {hip}", *des.get(hip, []), *ids.get(hip, []), *other.get(hip, [])]
        out.append(dict(name=name, kind="star", ra=ra, dec=dec, mag=v, aliases=aliases,
                        order=(1, v)))
    return out, missing


def write(rows: list[dict], out: pathlib.Path) -> dict[str, int]:
    rows.sort(key=lambda r: r["order"])
    taken = {normalize(r["name"]): r["name"] for r in rows}
    dropped = 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        own, keep = normalize(r["name"]), []
        for a in r["aliases"]:
            k = normalize(a)
            if not k or k == own:
                continue
            if k in taken:              # a name of an earlier (brighter) object, or a repeat
                dropped += taken[k] != r["name"]
                continue
            taken[k] = r["name"]
            keep.append(a)
        mag = "" if r["mag"] is None else f"{r['mag']:.2f}"
        w.writerow([r["name"], r["kind"], f"{r['ra'] % 360:.5f}", f"{r['dec']:.5f}", mag,
                    ALIAS_SEP.join(keep)])
    data = gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0)
    with tempfile.NamedTemporaryFile(dir=out.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(data)
    pathlib.Path(tmp.name).chmod(0o644)
    pathlib.Path(tmp.name).replace(out)
    return {"dropped": dropped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ongc", type=pathlib.Path, help="ongc.db or a pyongc wheel "
                    "(default: the installed pyongc)")
    ap.add_argument("--stellarium", type=pathlib.Path,
                    default=pathlib.Path("/usr/share/stellarium"),
                    help="Stellarium data folder (Debian stellarium-data)")
    ap.add_argument("--mag", type=float, default=12.0, help="faintest NGC/IC kept without a "
                    "common name [mag]")
    ap.add_argument("-o", "--output", type=pathlib.Path, default=OUT)
    a = ap.parse_args(argv)
    if not (a.stellarium / "stars/default/name.fab").is_file():
        print(f"{a.stellarium}: no Stellarium data (apt-get install stellarium-data)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = open_ongc(a.ongc, pathlib.Path(tmp))
        dso = deep_sky(db, a.mag)
        db.close()
    star_rows, missing = stars(a.stellarium)
    info = write(dso + star_rows, a.output)
    kinds: dict[str, int] = {}
    for r in dso + star_rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{a.output}: {len(dso) + len(star_rows)} objects ({len(dso)} deep sky, "
          f"{len(star_rows)} stars; {missing} IAU-named stars without a Hipparcos record), "
          f"{a.output.stat().st_size / 1e3:.0f} kB, {info['dropped']} ambiguous aliases dropped")
    for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {k}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
