"""Post-processing benchmark: colour calibration on a 6000x4000 colour image, ours vs
Siril 1.0.6's ``subsky`` as the reference timing.

Siril 1.0.6 has no photometric colour calibration from the command line offline (its
PCC queries online catalogues, and only from the GUI), so the reference is its
``subsky 1`` (degree-1 background extraction) on the same image, the closest offline
colour/background operation a script can run; the ``copy`` rows (read + write, no
step) are each tool's floor.

Input (made once, untimed, outside the repository in ``$BENCH_DATA/color``):
``field.fits``, a simulated linear field (:func:`napari_astro.core.simulate_field.
simulate_field`): 6000x4000 RGB float32 at 1.2"/px (2 x 1.3 degrees) near NGC 7023,
rendered from the shipped catalogue with a colour cast (1.25, 1, 0.78) and channel
offsets, RA/DEC and FOCALLEN/XPIXSZ hints in the header. Rows (each one whole
command, file in -> file out, float32 FITS):

* ``neutralize``: ``color IN OUT --method neutralize``
* ``basic``: ``color IN OUT --method basic``
* ``photometric``: ``color IN OUT`` (plate solve + catalogue photometry); the
  recovered factors are checked against the simulator's truth.
* ``siril-subsky``: ``load field; subsky 1; save``. Siril 1.0.6 reports a script
  with ``subsky`` as failed right after the extraction ran, so ``save`` never runs:
  the row is load + subsky (its own "Execution time" of the step is recorded too).

The two tools alternate (Siril first on even repetitions); medians of ``--reps`` runs
with min-max. Writes ``results/color.json`` and ``results/color.md``.

Usage::

    python benchmarks/bench_color.py [--reps 3] [--size 6000x4000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import siril  # noqa: E402
from measure import measure  # noqa: E402

#: row -> (tool, our CLI arguments after IN OUT, or Siril script lines)
ROWS = {
    "copy": ("ours", ["export"], None),
    "neutralize": ("ours", ["color", "--method", "neutralize"], None),
    "basic": ("ours", ["color", "--method", "basic"], None),
    "photometric": ("ours", ["color"], None),
    "siril-copy": ("siril", None, ["save s_copy"]),
    "siril-subsky": ("siril", None, ["subsky 1", "save s_subsky"]),
}


def make_input(folder: Path, size: tuple[int, int]) -> tuple[Path, dict]:
    """The simulated field (cached) and its truth (factors)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "field.fits"
    meta = folder / f"truth-{size[1]}x{size[0]}.json"
    if not (path.exists() and meta.exists()):
        from napari_astro.core.io import write_image
        from napari_astro.core.simulate_field import simulate_field

        img, truth = simulate_field(315.40, 68.17, shape=size, scale_arcsec=1.2 * 6000 / size[1],
                                    rotation_deg=25.0, fwhm_px=3.0, seed=0, keep_noiseless=False)
        write_image(img, path, overwrite=True)
        for old in folder.glob("truth-*.json"):
            old.unlink()
        meta.write_text(json.dumps({"true_factors": truth.true_factors.tolist(),
                                    "background": truth.background.tolist(),
                                    "stars": int(len(truth.stars))}))
    link = folder / "field.fit"  # Siril reads ".fit" names
    if not link.exists():
        link.symlink_to(path.name)
    return path, json.loads(meta.read_text())


#: Our CLI's ``--method`` clashes with the registry's generic ``--method`` until
#: pipeline/stepcli.py tells them apart; then the same work runs through this driver
#: (read, ``run_step("post.color")``, write: what the CLI does).
DRIVER = ("import sys, json; from napari_astro.core.io import read_image, write_image; "
          "from napari_astro.pipeline.registry import run_step; "
          "r = run_step('post.color', read_image(sys.argv[1]), json.loads(sys.argv[3])); "
          "write_image(r.image, sys.argv[2], overwrite=True); "
          "[print(m, file=sys.stderr) for m in r.messages]; "
          "k = r.extras['factors']; lv = r.extras['levels']; "
          "print(f\"colour ({r.extras['method']}): factors R {k[0]:.4f} G {k[1]:.4f} B {k[2]:.4f}; "
          "background\")")


def _siril_step_seconds(text: str) -> float | None:
    """Siril's own "Execution time" of the command after the last "Running command"."""
    import re

    m = re.findall(r"Execution time: ([\d.]+) (ms|s)", text)
    if not m:
        return None
    v, unit = m[-1]
    return float(v) / (1000.0 if unit == "ms" else 1.0)


def _step_alone(src: Path, reps: int) -> dict:
    """The step alone, in this process after a warm-up (imports, numba JIT), no file I/O:
    what compares with Siril's own "Execution time" of ``subsky``."""
    import time

    from napari_astro.core.color import calibrate_color
    from napari_astro.core.io import read_image

    img = read_image(src)
    out: dict = {}
    for method in ("neutralize", "basic", "photometric"):
        calibrate_color(img, method="basic" if method == "photometric" else method)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            calibrate_color(img, method=method)
            ts.append(time.perf_counter() - t0)
        out[method] = {"median_s": statistics.median(ts), "min": min(ts), "max": max(ts)}
        print(f"step alone {method:12s} {out[method]['median_s']:.2f} s", flush=True)
    return out


def siril_script(lines: list[str]) -> str:
    head = ["requires 1.0.0", "setcpu 2", "set32bits", "setcompress 0", "load field"]
    return "\n".join(head + lines + ["close"]) + "\n"


def _factors_from_log(text: str):
    for line in text.splitlines():
        if line.startswith("colour (") and "factors R" in line:
            part = line.split("factors", 1)[1].split(";")[0].split()
            return [float(part[1]), float(part[3]), float(part[5])], line.split(":")[0]
    return None, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default="6000x4000", help="WxH")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--data", default=str(common.BENCH_DATA / "color"))
    ap.add_argument("--work", default="/tmp/bench-color")
    ap.add_argument("--no-step-alone", action="store_true",
                    help="skip the in-process timing of the step alone")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = [r for r in args.rows.split(",") if r]
    src, truth = make_input(Path(args.data), (h, w))
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "field.fit").symlink_to(src)
    runs: list[dict] = []
    checks: dict = {}
    for rep in range(args.reps):
        sirils = [r for r in rows if ROWS[r][0] == "siril"]
        ours = [r for r in rows if ROWS[r][0] == "ours"]
        order = sirils + ours if rep % 2 == 0 else ours + sirils  # Siril first on even reps
        for row in order:
            tool, ours_args, siril_lines = ROWS[row]
            log = work / f"{row}.log"
            if tool == "siril":
                ssf = work / f"{row}.ssf"
                ssf.write_text(siril_script(siril_lines))
                m = measure([siril.SIRIL, "-s", str(ssf), "-d", str(work)], cwd=work, log=log,
                            timeout=1800)
                text = log.read_text(errors="replace")
                # Siril 1.0.6 reports a script with subsky as failed right after the
                # extraction has run (so its "save" never runs): the row is then load +
                # subsky, and Siril's own step time is kept too.
                done = "Background with polynomial interpolation computed" in text
                if "Script execution failed" in text and not (row == "siril-subsky" and done):
                    m.returncode = 1
                elif row == "siril-subsky":
                    m.returncode = 0
                    m.extra["step_s"] = _siril_step_seconds(text)
            else:
                out = work / f"{row}.fits"
                cmd = [ours_args[0], str(src), str(out), *ours_args[1:], "--overwrite"]
                m = common.run_ours(cmd, log, timeout=1800)
                if m.returncode == 2 and "unknown method" in log.read_text(errors="replace"):
                    method = ours_args[ours_args.index("--method") + 1]
                    m = measure([sys.executable, "-c", DRIVER, str(src), str(out),
                                 json.dumps({"method": method})], log=log, timeout=1800)
                    m.extra["via"] = "driver (stepcli --method clash)"
                k, how = _factors_from_log(log.read_text(errors="replace"))
                if k is not None and row == "photometric":
                    checks[row] = {"factors": k, "method": how,
                                   "error_vs_truth": [abs(a / b - 1) for a, b in
                                                      zip(k, truth["true_factors"])]}
            runs.append({"rep": rep, "row": row, "tool": tool, **m.to_dict()})
            print(f"rep {rep} {row:14s} {m.wall_s:7.2f} s {m.peak_rss_bytes / 2**20:7.0f} MB "
                  f"rc={m.returncode}", flush=True)
    inproc = _step_alone(src, args.reps) if not args.no_step_alone else {}
    summary = {}
    for row in rows:
        rr = [r for r in runs if r["row"] == row and r["returncode"] == 0]
        if rr:
            ws = [r["wall_s"] for r in rr]
            summary[row] = {"wall_s": statistics.median(ws), "min": min(ws), "max": max(ws),
                            "rss_mb": statistics.median(r["peak_rss_bytes"] for r in rr) / 2**20,
                            "n": len(rr), "via": rr[-1].get("extra", {}).get("via", "CLI")}
            steps = [r.get("extra", {}).get("step_s") for r in rr]
            if all(v is not None for v in steps):
                summary[row]["siril_step_s"] = statistics.median(steps)
    ref = summary.get("siril-subsky", {}).get("wall_s")
    result = {"size": [w, h], "reps": args.reps, "machine": common.machine_info(),
              "truth": truth, "runs": runs, "summary": summary, "checks": checks,
              "step_alone": inproc,
              "command": "python benchmarks/bench_color.py " + " ".join(argv or sys.argv[1:])}
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "color.json").write_text(json.dumps(result, indent=1))
    floor = {"ours": summary.get("copy", {}).get("wall_s"),
             "siril": summary.get("siril-copy", {}).get("wall_s")}
    lines = ["| row | wall s (median, min-max) | minus the tool's copy floor | peak RSS MB "
             "| wall / Siril subsky | run through |", "|---|---|---|---|---|---|"]
    for row in rows:
        s = summary.get(row)
        if not s:
            lines.append(f"| {row} | failed | | | | |")
            continue
        ratio = f"{s['wall_s'] / ref:.2f}" if ref else ""
        fl = floor[ROWS[row][0]]
        net = f"{s['wall_s'] - fl:.2f}" if fl and "copy" not in row else ""
        if "siril_step_s" in s:
            net += f" (Siril's own step time {s['siril_step_s']:.2f})"
        lines.append(f"| {row} | {s['wall_s']:.2f} ({s['min']:.2f}-{s['max']:.2f}) | {net} | "
                     f"{s['rss_mb']:.0f} | {ratio} | {s['via']} |")
    if inproc:
        sub = summary.get("siril-subsky", {}).get("siril_step_s")
        lines.append("\n| step alone (in process, warm, no I/O) | s (median, min-max) | / Siril's "
                     "own subsky time |\n|---|---|---|")
        for method, t in inproc.items():
            r = f"{t['median_s'] / sub:.2f}" if sub else ""
            lines.append(f"| {method} | {t['median_s']:.2f} ({t['min']:.2f}-{t['max']:.2f}) | {r} |")
    for row, c in checks.items():
        lines.append(f"\n`{row}` ({c['method']}): factors R {c['factors'][0]:.4f} G {c['factors'][1]:.4f}"
                     f" B {c['factors'][2]:.4f}; truth R {truth['true_factors'][0]:.4f} B "
                     f"{truth['true_factors'][2]:.4f} (error R {100 * c['error_vs_truth'][0]:.2f}%,"
                     f" B {100 * c['error_vs_truth'][2]:.2f}%)")
    (common.RESULTS_DIR / "color.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
