"""Post-processing benchmark: stretches and export, ours vs Siril 1.0.6, 6000x4000 colour.

Inputs (made once, untimed, outside the repository in ``$BENCH_DATA/stretch``):
``linear.fits``, a simulated linear stack (:func:`napari_astro.core.simulate_post.
simulate_linear`, 6000x4000 RGB float32), and ``stretched.fits``, its auto-stretch
(the input of the export rows).

Each row is one whole command, file in -> file out, both tools reading and writing
float32 FITS (pictures for the export rows); the ``copy`` row (read + write, no step)
is each tool's floor, so the step's own cost is roughly the row minus the floor.
Siril 1.0.6 has ``asinh``, ``mtf``, ``savejpg``/``savepng``/``savetif`` and
``resample`` in scripts, not ``autostretch`` (scripts from 1.2) nor ``ght`` (1.2): those
rows are ours alone. Our options are the ones that compute what Siril computes where it
has the step (arcsinh: mean luminance, clipping; HT = ``mtf`` with the same values);
the last run's outputs are compared pixel by pixel (max |ours - Siril|).

The two tools alternate (Siril first on even repetitions); medians of ``--reps`` runs,
with min-max. Writes ``results/stretch/stretch_export.json`` and
``results/stretch_export.md`` (the table for RESULTS.md).

Usage::

    python benchmarks/bench_stretch.py [--reps 3] [--size 6000x4000] [--rows ht,arcsinh,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import siril  # noqa: E402
from measure import measure  # noqa: E402

# HT values for the ht/mtf row: about the auto-STF of the simulated image.
HT_S, HT_M = 0.09, 0.02

#: row -> (our CLI arguments after IN OUT, our output name, Siril script lines or None,
#:         input: "linear" or "stretched")
ROWS = {
    "copy": (["export"], "copy.fits", ["save s_copy"], "linear"),
    "stf": (["stretch", "--method", "stf"], "stf.fits", None, "linear"),
    "ht": (["stretch", "--method", "ht", "--shadows", str(HT_S), "--midtones", str(HT_M)],
           "ht.fits", [f"mtf {HT_S} {HT_M} 1", "save s_ht"], "linear"),
    "arcsinh": (["stretch", "--method", "arcsinh", "--stretch", "50", "--luminance", "mean",
                 "--no-protect-highlights"], "arcsinh.fits", ["asinh 50", "save s_arcsinh"],
                "linear"),
    "arcsinh-default": (["stretch", "--method", "arcsinh"], "arcsinh_def.fits", None, "linear"),
    "ghs": (["stretch", "--method", "ghs", "--D", "2", "--b", "2", "--SP", "0.09"], "ghs.fits",
            None, "linear"),
    "jpg": (["export"], "full.jpg", ["savejpg s_full 95"], "stretched"),
    "jpg-web": (["export", "--max-size", "2048"], "web.jpg",
                ["resample {scale}", "savejpg s_web 95"], "stretched"),
    "png16": (["export", "--bits", "16"], "a.png", ["savepng s_png"], "stretched"),
    "tif16": (["export", "--bits", "16"], "a.tif", ["savetif s_tif"], "stretched"),
    "xisf": (["export"], "a.xisf", None, "stretched"),
}
#: rows whose outputs are compared with Siril's: (ours, Siril's)
COMPARE = {"ht": ("ht.fits", "s_ht.fit"), "arcsinh": ("arcsinh.fits", "s_arcsinh.fit")}


def make_inputs(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    """The linear and the stretched 6000x4000 inputs (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    lin, st = folder / "linear.fits", folder / "stretched.fits"
    tag = folder / f"size-{size[1]}x{size[0]}"
    if not (lin.exists() and st.exists() and tag.exists()):
        from napari_astro.core.io import write_image
        from napari_astro.core.simulate_post import simulate_linear
        from napari_astro.pipeline.registry import run_step

        img, _ = simulate_linear(size, color=True, sky=0.1, stars=3000, border="none", seed=0)
        write_image(img, lin, overwrite=True)
        write_image(run_step("post.stf", img).image, st, overwrite=True)
        for old in folder.glob("size-*"):
            old.unlink()
        tag.touch()
    # Siril reads ".fit" names in its working folder: links, no copy.
    for p in (lin, st):
        link = folder / (p.stem + ".fit")
        if not link.exists():
            link.symlink_to(p.name)
    return {"linear": lin, "stretched": st}


def siril_script(lines: list[str], src: str, scale: float) -> str:
    head = ["requires 1.0.0", "setcpu 2", "set32bits", "setcompress 0", f"load {src}"]
    return "\n".join(head + [ln.format(scale=scale) for ln in lines] + ["close"]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default="6000x4000", help="WxH")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--data", default=str(common.BENCH_DATA / "stretch"))
    ap.add_argument("--work", default="/tmp/bench-stretch")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = [r for r in args.rows.split(",") if r]
    inputs = make_inputs(Path(args.data), (h, w))
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for p in inputs.values():  # Siril works in `work`: links to the inputs
        (work / (p.stem + ".fit")).symlink_to(p)
    scale = min(1.0, 2048 / max(w, h))
    runs: list[dict] = []
    info = common.machine_info()
    for rep in range(args.reps):
        for row in rows:
            ours_args, ours_out, siril_lines, src = ROWS[row]
            order = ["siril", "ours"] if rep % 2 == 0 else ["ours", "siril"]
            for tool in order:
                if tool == "siril":
                    if siril_lines is None:
                        continue
                    ssf = work / f"{row}.ssf"
                    ssf.write_text(siril_script(siril_lines, inputs[src].stem, scale))
                    m = measure([siril.SIRIL, "-s", str(ssf), "-d", str(work)], cwd=work,
                                log=work / f"{row}-siril.log", timeout=1800)
                    text = (work / f"{row}-siril.log").read_text(errors="replace")
                    if "Script execution failed" in text:
                        m.returncode = 1
                else:
                    out = work / ours_out
                    cmd = [ours_args[0], str(inputs[src]), str(out), *ours_args[1:], "--overwrite"]
                    m = common.run_ours(cmd, work / f"{row}-ours.log", timeout=1800)
                runs.append({"rep": rep, "row": row, "tool": tool, **m.to_dict()})
                print(f"rep {rep} {row:16s} {tool:5s} {m.wall_s:7.2f} s "
                      f"{m.peak_rss_bytes / 2**20:7.0f} MB rc={m.returncode}", flush=True)
    agree = {}
    from napari_astro.core.io import read_image

    for row, (a, b) in COMPARE.items():
        if row in rows and (work / a).exists() and (work / b).exists():
            import numpy as np

            da, db = read_image(work / a).data, read_image(work / b).data
            agree[row] = float(np.abs(da - db).max())
    summary = {}
    for row in rows:
        for tool in ("ours", "siril"):
            ok = [r for r in runs if r["row"] == row and r["tool"] == tool and r["returncode"] == 0]
            if not ok:
                continue
            t = [r["wall_s"] for r in ok]
            mem = [r["peak_rss_bytes"] / 2**20 for r in ok]
            summary.setdefault(row, {})[tool] = {
                "wall_s": statistics.median(t), "wall_min": min(t), "wall_max": max(t),
                "mem_MB": statistics.median(mem), "mem_min": min(mem), "mem_max": max(mem)}
    doc = {"machine": info, "size": [w, h], "reps": args.reps, "runs": runs,
           "summary": summary, "agreement_max_abs": agree, "rows": {r: ROWS[r][0] for r in rows}}
    out_dir = HERE / "results" / "stretch"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stretch_export.json").write_text(json.dumps(doc, indent=1, default=str))
    md = markdown(doc, scale)
    (HERE / "results" / "stretch_export.md").write_text(md)
    print(md)
    return 0


def markdown(doc: dict, scale: float) -> str:
    m = doc["machine"]
    w, h = doc["size"]
    lines = [
        "## Post-processing: stretches and export", "",
        f"{w}x{h} colour float32 FITS in, one whole command per row (start-up, read, step, "
        f"write), median of {doc['reps']} alternating runs (min-max). {m['date']}, {m['cpu']}, "
        f"{m['cores']} cores, load average at start {tuple(round(x, 1) for x in m['loadavg'])}: "
        "**the machine was shared with other jobs, so the times are loose** (compare the two "
        "tools within a row, measured in the same minute). Siril 1.0.6 script: `setcpu 2`, "
        "`set32bits`, `load`, the step, `save`/`savejpg`...; `copy` is each tool's read+write "
        "floor. `python benchmarks/bench_stretch.py --reps "
        f"{doc['reps']} --size {w}x{h}`.", "",
        "| row | ours | ours time s | ours peak MB | Siril 1.0.6 | Siril time s | Siril peak MB | time ratio |",
        "|---|---|---|---|---|---|---|---|"]
    siril_cmd = {"copy": "save", "ht": f"mtf {HT_S} {HT_M} 1", "arcsinh": "asinh 50",
                 "jpg": "savejpg 95", "jpg-web": f"resample {scale:.4f}; savejpg 95",
                 "png16": "savepng", "tif16": "savetif (16-bit)"}
    for row, tools in doc["summary"].items():
        o, s = tools.get("ours"), tools.get("siril")
        ot = f"{o['wall_s']:.2f} ({o['wall_min']:.2f}-{o['wall_max']:.2f})" if o else "-"
        om = f"{o['mem_MB']:.0f} ({o['mem_min']:.0f}-{o['mem_max']:.0f})" if o else "-"
        st = f"{s['wall_s']:.2f} ({s['wall_min']:.2f}-{s['wall_max']:.2f})" if s else "-"
        sm = f"{s['mem_MB']:.0f} ({s['mem_min']:.0f}-{s['mem_max']:.0f})" if s else "-"
        ratio = f"{o['wall_s'] / s['wall_s']:.2f}" if o and s else "-"
        args = " ".join(doc["rows"][row])
        lines.append(f"| {row} | `{args}` | {ot} | {om} | "
                     f"{'`' + siril_cmd[row] + '`' if row in siril_cmd else 'not in 1.0.6 scripts'} "
                     f"| {st} | {sm} | {ratio} |")
    if doc["agreement_max_abs"]:
        lines += ["", "Same pixels: " + "; ".join(
            f"{row}: max |ours - Siril| = {v:.2g}" for row, v in doc["agreement_max_abs"].items())
            + " (arcsinh: Siril's even weights are 0.3333, ours 1/3)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
