"""Rows for the widgets' tables, built from the library's result objects.

Kept apart from the Qt code so the mapping from library objects (frame infos,
calibration plan items, registration and stack quality rows) to table rows is in one
place and testable without a display. No numerics: only reading attributes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["label", "frame_rows", "group_rows", "plan_rows", "quality_rows", "QUALITY_COLUMNS",
           "QUALITY_SHOWN", "quality_columns"]

#: Preferred column order of frame-quality tables (others follow).
QUALITY_COLUMNS = ("include", "index", "frame", "accepted", "reason", "n_stars", "fwhm",
                   "fwhm_arcsec", "roundness", "background", "noise", "n_matches", "rms",
                   "weight", "rejected_low", "rejected_high")


#: The columns a frame-quality table shows (at most 10, the ones a user sorts by to
#: find bad frames); every other value is in the row's tooltip.
QUALITY_SHOWN = ("include", "frame", "accepted", "reason", "n_stars", "fwhm", "roundness",
                 "background", "rms", "weight")


def label(obj: Any) -> str:
    """Short readable name of a master / frame / key (``"—"`` for None)."""
    if obj is None:
        return "—"
    if isinstance(obj, (str, Path)):
        return Path(obj).name if isinstance(obj, Path) or "/" in str(obj) else str(obj)
    for attr in ("key", "group", "group_key"):
        value = getattr(obj, attr, None)
        if value is not None and not callable(value):
            return str(value)
    path = getattr(obj, "path", None)
    if path:
        return Path(path).name
    return str(obj)


def _value(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, Mapping) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            v = getattr(obj, n)
            if not callable(v):
                return v
    return None


def frame_rows(frames: Iterable[Any]) -> list[dict]:
    """One row per FrameInfo: file, type, exposure, filter, temperature, gain, size, CFA."""
    rows = []
    for f in frames:
        ftype = getattr(f.type, "value", f.type)
        rows.append({"file": Path(f.path).name, "type": str(ftype), "exposure": f.exposure,
                     "filter": f.filter, "temperature": f.temperature, "gain": f.gain,
                     "size": f"{f.shape[-1]}x{f.shape[-2]}", "cfa": f.bayer or "",
                     "path": str(f.path)})
    return rows


def group_rows(frames: Sequence[Any], *, temp_tolerance: float = 2.0) -> list[dict]:
    """One row per group of :func:`napari_astro.core.frames.group_frames`."""
    from ..core.frames import group_frames

    groups = group_frames(list(frames), temp_tolerance=temp_tolerance)
    keys = sorted(groups, key=lambda k: k.sort_key()) if all(hasattr(k, "sort_key") for k in groups) \
        else list(groups)
    return [{"group": str(k), "type": str(getattr(getattr(k, "type", ""), "value", "")),
             "frames": len(groups[k])} for k in keys]


def plan_rows(items: Iterable[Any], lights: Sequence[Any] = ()) -> list[dict]:
    """One row per light: which bias/dark/flat it gets and how (the calibration plan).

    ``items`` are :func:`napari_astro.pipeline.calibrate.plan_calibration` items;
    attribute names are read tolerantly (``light``/``frame``, ``dark``, ``flat``,
    ``bias``, ``darkflat``, ``dark_scale``, ``notes``).
    """
    rows = []
    items = list(items)
    for i, item in enumerate(items):
        light = _value(item, "light", "frame", "info")
        if light is None and i < len(lights):
            light = lights[i]
        row = {"light": label(getattr(light, "path", light)),
               "filter": getattr(light, "filter", None) or "",
               "exposure": getattr(light, "exposure", None)}
        for name in ("bias", "dark", "flat", "darkflat"):
            row[name] = label(_value(item, name, f"{name}_key", f"master_{name}"))
        scale = _value(item, "dark_scale", "scale")
        if scale is not None:
            row["dark scale"] = scale
        notes = _value(item, "notes", "note", "reason", "log")
        if notes:
            row["notes"] = "; ".join(notes) if isinstance(notes, (list, tuple)) else str(notes)
        rows.append(row)
    if not items:
        for light in lights:
            rows.append({"light": label(light.path), "filter": light.filter or "",
                         "exposure": light.exposure, "bias": "—", "dark": "—", "flat": "—"})
    return rows


def quality_rows(quality: Any) -> list[dict]:
    """Normalise a per-frame quality table to a list of dicts with an ``include`` key.

    Accepts a list of dicts, a list of dataclasses/objects, or a dict of columns.
    ``include`` starts as the row's ``accepted`` (True when absent).
    """
    if quality is None:
        return []
    if isinstance(quality, Mapping):  # columns -> rows
        cols = {k: list(v) for k, v in quality.items()}
        n = max((len(v) for v in cols.values()), default=0)
        rows = [{k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]
    else:
        rows = []
        for r in quality:
            if isinstance(r, Mapping):
                rows.append(dict(r))
            elif dataclasses.is_dataclass(r):
                rows.append(dataclasses.asdict(r))
            elif hasattr(r, "to_dict"):
                rows.append(dict(r.to_dict()))
            else:
                rows.append(dict(vars(r)))
    out = []
    for i, r in enumerate(rows):
        r = {k: v for k, v in r.items() if not _is_bulky(v)}
        for key in ("path", "file"):
            if key in r and r[key] is not None and "frame" not in r:
                r["frame"] = Path(str(r[key])).name
        r.setdefault("index", i)
        accepted = r.get("accepted", True)
        r["include"] = bool(accepted) if accepted is not None else True
        out.append(r)
    return out


def _is_bulky(v: Any) -> bool:
    shape = getattr(v, "shape", None)
    if shape is not None and len(shape) > 0:
        return True
    return isinstance(v, (list, tuple, dict)) and len(v) > 8


def ordered_columns(rows: Sequence[Mapping[str, Any]], preferred: Sequence[str] = QUALITY_COLUMNS,
                    hide: Sequence[str] = ("path", "matrix", "transform")) -> list[str]:
    """Columns present in ``rows``: the preferred ones first, in that order."""
    present: list[str] = []
    for r in rows:
        for k in r:
            if k not in present and k not in hide:
                present.append(k)
    first = [c for c in preferred if c in present]
    return first + [c for c in present if c not in first]


def quality_columns(rows: Sequence[Mapping[str, Any]], shown: Sequence[str] = QUALITY_SHOWN,
                    limit: int = 10) -> tuple[list[str], list[str]]:
    """(columns shown, columns left to the tooltip) of a frame-quality table.

    The preferred :data:`QUALITY_SHOWN` columns present come first; ``name``, ``file``
    and ``path`` are never columns (``frame`` is the file's name); other columns fill
    up to ``limit``.
    """
    present = ordered_columns(rows, hide=())
    dup = {"name", "file", "path", "index"}
    cols = [c for c in shown if c in present]
    for c in present:
        if len(cols) >= limit:
            break
        if c not in cols and c not in dup and c in QUALITY_COLUMNS:
            cols.append(c)
    hidden = [c for c in present if c not in cols and c not in ("matrix", "transform")]
    return cols, hidden
