"""Write benchmarks/RESULTS.md from the JSON files in benchmarks/results/.

The pre-processing sections are regenerated; every other ``## `` section already in
RESULTS.md (the other areas' own, e.g. "## Post-processing: ...") is kept, in its
order, after them, and a ``results/*.md`` this script does not know is appended when
RESULTS.md has no section of its title yet (one that is there is its owner's text).

Usage::

    python benchmarks/report.py [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import siril  # noqa: E402

ORDER = ["stack", "calibration", "registration", "integration"]
TITLES = {
    "stack": "Issue #6: the whole run (night folder -> stack), the headline",
    "calibration": "Issue #3: masters + calibration",
    "registration": "Issue #4: registration (same calibrated frames for both)",
    "integration": "Issue #5: integration (same registered frames for both)",
}


def _f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def _verdict(q: dict) -> str:
    t, m = q.get("wall_s"), q.get("peak_rss_MB")
    if t is None:
        return "-"
    ok_t = t <= common.GOAL_TIME_RATIO
    ok_m = m is None or m <= common.GOAL_MEM_RATIO
    if ok_t and ok_m:
        return "yes"
    return "no (" + ", ".join(w for w, ok in (("time", ok_t), ("memory", ok_m)) if not ok) + ")"


def stage_table(docs: list[dict]) -> str:
    rows = ["| night | stage | Siril wall s | ours wall s | wall ratio | Siril CPU s | "
            "ours CPU s | CPU ratio | Siril peak MB | ours peak MB | memory ratio | goal met |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in docs:
        night = Path(d["session"]).name
        for stage, r in d["summary"].items():
            s, o, q = r["siril"], r["ours"], r["ratio"]
            ours_wall = _f(o["wall_s"]) if o["status"] == "ok" else f"({o['status']})"
            rows.append(
                f"| {night} | {stage} | {_f(s['wall_s'])} | {ours_wall} | "
                f"**{_f(q['wall_s'])}** | {_f(s['cpu_s'])} | {_f(o['cpu_s'])} | "
                f"{_f(q['cpu_s'])} | {_f(s['peak_rss_MB'], 0)} | {_f(o['peak_rss_MB'], 0)} | "
                f"{_f(q['peak_rss_MB'])} | {_verdict(q)} |")
    return "\n".join(rows)


def reps_line(docs: list[dict]) -> str:
    parts = []
    for d in docs:
        for stage, r in d["summary"].items():
            parts.append(f"{Path(d['session']).name} {stage}: Siril "
                         f"{r['siril']['wall_all_s']} s, ours {r['ours']['wall_all_s']} s")
    return "; ".join(parts)


def quality_block(d: dict) -> str:
    q = d.get("quality") or {}
    if not q:
        return ""
    night = Path(d["session"]).name
    if "markdown" in q:
        res = q["result"]
        extra = ""
        if "equal_fwhm_px" in res:
            extra = (f"\nNoise at equal FWHM: the sharper stack is blurred with a Gaussian "
                     f"to {res['equal_fwhm_px']:.2f} px before its noise is measured.")
        orient = ", ".join(f"{k}: {v['orientation']}" for k, v in res.items()
                           if isinstance(v, dict) and "orientation" in v)
        colour = ", ".join(f"{k}: {'ok' if v['colour_check']['ok'] else 'CHANNELS SWAPPED'}"
                           for k, v in res.items()
                           if isinstance(v, dict) and "colour_check" in v)
        return (f"Quality, {night} ({q['what']}); noise in truth units (ADU/65535 of a "
                f"calibrated light):\n\n{q['markdown']}\n{extra}\nOrientation found: "
                f"{orient}. Colour channels: {colour}.\n")
    res = q.get("result", {})
    lines = [f"Quality, {night} ({q['what']}):", ""]
    lines.append("| frames of | frames checked | median FWHM px | FWHM growth % | "
                 "star offset RMS px | median shift dx, dy px |")
    lines.append("|---|---|---|---|---|---|")
    if "input" in res:
        lines.append(f"| input (calibrated) | - | {_f(res['input']['fwhm_px'])} | - | - | - |")
    for k, v in res.items():
        if k == "input":
            continue
        lines.append(f"| {k} | {v['frames']} | {_f(v['fwhm_px'])} | "
                     f"{_f(v['fwhm_growth_pct'], 1)} | {_f(v['star_offset_rms_px'], 3)} | "
                     f"{', '.join(_f(x, 3) for x in v['median_shift_dx_dy_px'])} |")
    return "\n".join(lines) + "\n"


# Sections written as Markdown by their own scripts, appended verbatim when present
# (e.g. seestar_registration.py: issue #4 on the real Seestar frames).
VERBATIM = ["seestar_registration.md", "first_run.md", "distributed.md",
            "profile_seestar.md"]


def build(results_dir: Path) -> str:
    text = _build_stages(results_dir)
    for name in VERBATIM:
        if (results_dir / name).exists():
            text += "\n" + (results_dir / name).read_text().rstrip("\n") + "\n"
    return text


def _sections(text: str) -> list[tuple[str, str]]:
    """(title, text) of every ``## `` section (the part before the first: title "")."""
    out: list = []
    title, lines = "", []
    in_code = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            in_code = not in_code
        if line.startswith("## ") and not in_code:
            out.append((title, "".join(lines)))
            title, lines = line[3:].strip(), []
        lines.append(line)
    out.append((title, "".join(lines)))
    return out


def merge(new: str, old: str, results_dir: Path) -> str:
    """``new`` + the sections of ``old`` it does not have + unknown results/*.md."""
    have = {t for t, _ in _sections(new) if t}
    kept = [(t, body) for t, body in _sections(old) if t and t not in have]
    for p in sorted(results_dir.glob("*.md")):
        if p.name in VERBATIM:
            continue
        secs = [(t, b) for t, b in _sections(p.read_text()) if t]
        for t, b in secs:
            if t in have:
                continue
            if all(kt != t for kt, _ in kept):   # a section already there is its owner's
                kept.append((t, b))
    text = new.rstrip("\n") + "\n"
    for _, body in kept:
        text += "\n" + body.strip("\n") + "\n"
    return text


def io_floor_table(docs: list[dict]) -> str:
    """Each whole run as a multiple of its session's I/O floor (bench_stack.py)."""
    rows = ["| night | I/O floor s (read inputs once + write the stack) | files | Siril wall / floor "
            "| ours wall / floor |", "|---|---|---|---|---|"]
    n = 0
    for d in docs:
        fl = d["machine"].get("io_floor")
        if not fl:
            continue
        for stage, r in d["summary"].items():
            s, o = r["siril"]["wall_s"], r["ours"]["wall_s"]
            x = fl["seconds"]
            rows.append(f"| {Path(d['session']).name} | {x:.2f} | {fl['files']} | "
                        f"{_f(s / x if s else None, 1)} | {_f(o / x if o else None, 1)} |")
            n += 1
    return "\n".join(rows) if n else ""


def _build_stages(results_dir: Path) -> str:
    docs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    # stage benchmarks (common.Bench) only: other areas' JSON files are theirs
    docs = [d for d in docs if "summary" in d and "machine" in d
            and any(str(d.get("name", "")).startswith(k + "_") for k in ORDER)]
    if not docs:
        return "# Benchmark results\n\nNo results yet: run `bash benchmarks/run_all.sh`.\n"
    m = docs[0]["machine"]
    dates = sorted(d["machine"]["date"] for d in docs)
    loads = [d["machine"].get("loadavg_start", [None])[0] for d in docs] + \
            [d["machine"].get("loadavg_end", [None])[0] for d in docs]
    loads = [x for x in loads if x is not None]
    out = ["# Benchmark results: napari-astro vs Siril 1.0.6", "",
           "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`; "
           "re-run everything with `bash benchmarks/run_all.sh` (see README.md).", "",
           f"- Date: {dates[0]} .. {dates[-1]}",
           f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_GiB']} GiB, Linux "
           f"{m['kernel']}, Python {m['python']}",
           f"- Versions: {m['siril']} (Debian package, `siril-cli`), napari-astro "
           f"{m['napari_astro']} at commit {m['commit']}",
           f"- Load average (1 min) seen at the start/end of the benchmarks: "
           f"{min(loads):.1f} .. {max(loads):.1f}"
           + (" -- the machine was shared with other work: wall times are inflated "
              "and noisy; CPU times and the ratios of the same run are the steadier "
              "figures" if loads and max(loads) > 1.5 else ""),
           "- Each figure is the median over repetitions in which the two tools "
           "alternate (Siril first on even repetitions, ours first on odd ones); the "
           "ratios are ours / Siril from the same run. Goal: wall ratio <= "
           f"{common.GOAL_TIME_RATIO} and memory ratio <= {common.GOAL_MEM_RATIO}.",
           "- Peak memory: the largest sum of RSS over the process tree (psutil, every "
           "50 ms), never below the kernel's ru_maxrss of its largest process (from GNU "
           "time, which each command runs under); CPU: user + system of the whole tree "
           "(GNU time). CPU > wall means both cores were used.",
           "- Data: the project's simulator, 2000x1500 one-shot colour (RGGB, 16-bit "
           "FITS), 20 bias, 20 darks (120 s), 20 flats, and 20 or 40 lights, seed 0 "
           "(`python benchmarks/make_nights.py 20 40`).", ""]
    for kind in ORDER:
        ds = [d for d in docs if d["name"].startswith(kind + "_")]
        if not ds:
            continue
        out += [f"## {TITLES[kind]}", "", stage_table(ds), "",
                f"Repetitions (wall): {reps_line(ds)}", ""]
        if kind == "stack" and io_floor_table(ds):
            out += ["The I/O floor: the time to read every input file once and write a "
                    "file of the stack's size on this machine (files in the page cache, "
                    "as for the runs; median of 3), and each run's wall time as a "
                    "multiple of it:", "", io_floor_table(ds), ""]
        for d in ds:
            qb = quality_block(d)
            if qb:
                out += [qb]
            for n in dict.fromkeys(d.get("notes", [])):
                out.append(f"- Note ({Path(d['session']).name}): {n}")
        out.append("")
        out.append("Commands as run:")
        out.append("")
        seen = set()
        out.append("```")
        for d in ds:
            for k, v in d.get("commands", {}).items():
                for c in v:
                    if c not in seen:  # a summed stage repeats its parts' commands
                        seen.add(c)
                        out.append(f"[{k}] {c}")
        out.append("```")
        out.append("")
    have = {"bias": 1, "darks": 1, "flats": 1, "lights": 1}
    out += ["## Siril's script", "",
            "Per stage, each in its own `siril-cli -i WORK/siril.config -s STAGE.ssf -d WORK` "
            "(the whole run is all of them in one script):", "", "```",
            siril.script(siril.STAGES, have).rstrip(), "```", "",
            "Siril settings: 2 threads (`setcpu 2`, also its default on this 2-core "
            "machine), 32-bit float FITS, no compression, RCD debayering with the "
            "pattern from the header, stacking memory ratio 0.9 of free memory "
            "(Siril's defaults, pinned in `siril.config`, see siril.py).", ""]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(common.RESULTS_DIR))
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a = ap.parse_args(argv)
    text = build(Path(a.results))
    out = Path(a.out)
    text = merge(text, out.read_text() if out.exists() else "", Path(a.results))
    out.write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
