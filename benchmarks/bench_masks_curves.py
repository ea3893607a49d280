"""Benchmark: the mask and curves steps on a 6000x4000 colour image, with scikit-image's
``rgb2lab`` / ``lab2rgb`` round trip (what a numpy implementation of the L* curve and
the saturation factor would start from) as the comparison, measured in the same run.

Each measurement is a fresh worker process (``--worker NAME``): it loads the input
(``.npy`` in ``$BENCH_DATA``, made once from ``core.simulate_post.simulate_linear``),
records its resident memory, resets the kernel's peak-RSS mark, runs the step once
through ``registry.run_step`` (after a warm-up on a 64x64 image so numba's
compile/cache load is not counted), and reports the step's wall time and the peak RSS
during the step (VmHWM): absolute, and above what the process held before the step
(the input image and the libraries). Workers alternate in order from one repetition
to the next; medians and min-max spreads over the repetitions go to
``results/masks_curves.json`` and a Markdown table to stdout.

    python benchmarks/bench_masks_curves.py [--reps 3] [--size 6000x4000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_DATA = Path(os.environ.get("BENCH_DATA", "/work/bench-data"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", HERE / "results"))

#: name -> (input kind, description)
CASES = {
    "mask-luminance": ("linear", "post.mask --type luminance (auto-STF, blur 2 px, levels)"),
    "mask-inverted": ("linear", "post.mask --type inverted"),
    "mask-stars": ("linear", "post.mask --type stars (detection + top-hat, soft discs)"),
    "curves-rgb": ("stretched", "post.curves --rgb 0.25:0.2,0.75:0.85 (PCHIP LUT)"),
    "curves-saturation": ("stretched", "post.curves --saturation 1.3 (CIELab, numba)"),
    "curves-lightness-saturation": ("stretched",
                                    "post.curves --lightness 0.5:0.6 --saturation 1.3"),
    "curves-masked": ("stretched", "post.curves --saturation 1.3 --mask luminance "
                                   "(mask made + blend)"),
    "skimage-lab-roundtrip": ("stretched", "scikit-image rgb2lab + chroma x1.3 + lab2rgb "
                                           "(float64, the comparison)"),
}


def _rss_mb() -> float:
    """Peak RSS since the last :func:`_reset_peak` (VmHWM), else the process's ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: ``5 > /proc/self/clear_refs``), so
    the peak is the step's own and not an import's or the input loading's."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_inputs(size: tuple[int, int]) -> dict[str, Path]:
    """The linear and stretched inputs (made once, kept in $BENCH_DATA)."""
    h, w = size
    paths = {k: BENCH_DATA / f"post_{w}x{h}_{k}.npy" for k in ("linear", "stretched")}
    if all(p.exists() for p in paths.values()):
        return paths
    import numpy as np

    from napari_astro.core.simulate_post import simulate_linear
    from napari_astro.core.stretch import auto_stretch

    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    img, _ = simulate_linear((h, w), stars=4000, nebula=0.04, gradient=0.0, sky=0.03,
                             border="none", seed=0)
    np.save(paths["linear"], img.data)
    np.save(paths["stretched"], auto_stretch(img, linked=True).data)
    return paths


def worker(name: str, path: Path) -> dict:
    import numpy as np

    from napari_astro.core.image import AstroImage
    from napari_astro.pipeline.registry import run_step

    small = AstroImage(np.random.default_rng(0).uniform(0.01, 0.9, (3, 64, 64)).astype(np.float32))
    img = AstroImage(np.load(path))
    if name.startswith("skimage"):
        from skimage.color import lab2rgb, rgb2lab

        def fn(im):
            lab = rgb2lab(np.moveaxis(im.data, 0, -1))
            lab[..., 1:] *= 1.3
            return np.moveaxis(lab2rgb(lab), -1, 0).astype(np.float32)
    else:
        from napari_astro.pipeline.post.mask import NAMED_MASKS

        params = {
            "mask-luminance": ("post.mask", {"type": "luminance"}),
            "mask-inverted": ("post.mask", {"type": "inverted"}),
            "mask-stars": ("post.mask", {"type": "stars"}),
            "curves-rgb": ("post.curves", {"rgb": "0.25:0.2,0.75:0.85"}),
            "curves-saturation": ("post.curves", {"saturation": 1.3}),
            "curves-lightness-saturation": ("post.curves", {"lightness": "0.5:0.6",
                                                            "saturation": 1.3}),
            "curves-masked": ("post.curves", {"saturation": 1.3}),
        }[name]

        def fn(im):
            if name == "curves-masked":
                m = NAMED_MASKS["luminance"](im)
                return run_step(params[0], im, params[1], mask=m, mask_spec="luminance")
            return run_step(params[0], im, params[1])
    fn(small)  # warm-up: numba cache load, imports
    base = _current_rss_mb()
    _reset_peak()
    t0 = time.perf_counter()
    fn(img)
    dt = time.perf_counter() - t0
    peak = _rss_mb()
    return {"name": name, "seconds": dt, "peak_rss_MB": peak, "above_input_MB": peak - base,
            "input_MB": img.data.nbytes / 2**20}


def run(reps: int, size: tuple[int, int], cases: list[str]) -> dict:
    paths = make_inputs(size)
    runs: list[dict] = []
    for rep in range(reps):
        order = cases if rep % 2 == 0 else cases[::-1]
        for name in order:
            kind = CASES[name][0]
            out = subprocess.run([sys.executable, __file__, "--worker", name, str(paths[kind])],
                                 capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rec["rep"] = rep
            runs.append(rec)
            print(f"rep {rep} {name}: {rec['seconds']:.2f} s, peak {rec['peak_rss_MB']:.0f} MB "
                  f"(+{rec['above_input_MB']:.0f})", file=sys.stderr, flush=True)
    summary = {}
    for name in cases:
        rs = [r for r in runs if r["name"] == name]
        secs = [r["seconds"] for r in rs]
        summary[name] = {
            "what": CASES[name][1],
            "seconds_median": statistics.median(secs), "seconds_min": min(secs),
            "seconds_max": max(secs),
            "peak_rss_MB_median": statistics.median(r["peak_rss_MB"] for r in rs),
            "above_input_MB_median": statistics.median(r["above_input_MB"] for r in rs),
        }
    ref = summary.get("skimage-lab-roundtrip")
    if ref:
        for name, s in summary.items():
            s["time_ratio_vs_skimage"] = s["seconds_median"] / ref["seconds_median"]
            s["memory_ratio_vs_skimage"] = s["above_input_MB_median"] / max(ref["above_input_MB_median"], 1e-9)
    return {"size": f"{size[1]}x{size[0]}", "reps": reps, "loadavg_start": os.getloadavg(),
            "command": " ".join([Path(sys.executable).name, "benchmarks/bench_masks_curves.py"]
                                + sys.argv[1:]),
            "summary": summary, "runs": runs}


def table(result: dict) -> str:
    lines = ["| step | time s (median, min-max) | x skimage | peak RSS MB | above input MB | x skimage |",
             "|---|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {s['what']} | {s['seconds_median']:.2f} ({s['seconds_min']:.2f}-"
                     f"{s['seconds_max']:.2f}) | {s.get('time_ratio_vs_skimage', float('nan')):.2f} | "
                     f"{s['peak_rss_MB_median']:.0f} | {s['above_input_MB_median']:.0f} | "
                     f"{s.get('memory_ratio_vs_skimage', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "INPUT"), help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default="6000x4000", help="WxH")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return 0
    w, h = (int(v) for v in args.size.lower().split("x"))
    result = run(args.reps, (h, w), args.cases)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "masks_curves.json").write_text(json.dumps(result, indent=1))
    md = markdown(result)
    (RESULTS / "masks_curves.md").write_text(md)
    print(md)
    return 0


def markdown(result: dict) -> str:
    """The RESULTS.md section body: table, conditions and the command."""
    runs = result["runs"]
    load = result["loadavg_start"]
    return "\n".join([
        f"{result['size']} colour float32 image ({runs[0]['input_MB']:.0f} MB), "
        f"{result['reps']} repetitions per step, each a fresh process, order alternating; "
        f"median (min-max) wall time of the step alone; peak RSS during the step "
        f"(VmHWM reset before it) and its part above what the process held before the step "
        f"(input + libraries). Load average at the start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on 2 cores shared with other jobs: "
        f"absolute times are several times those of a quiet machine; the ratios were "
        f"measured under the same load.",
        "",
        table(result),
        "",
        "```",
        result["command"],
        "```",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
