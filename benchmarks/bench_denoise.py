"""Issue 11 benchmark: noise reduction on a 6000x4000 colour image, ours vs scikit-image.

Each tool runs as its own measured process (``measure.py``: wall, CPU of the tree,
peak RSS) on the same FITS file, alternating the order between repetitions:

* ours: ``napari-astro denoise IN OUT --method mlt`` and ``--method tgv``, defaults;
* scikit-image, the nearest equivalents: ``denoise_wavelet`` (BayesShrink, soft,
  sigma estimated, per channel) for MLT and ``denoise_tv_chambolle`` (weight 5 x the
  estimated noise sigma, the weight that leaves as much noise on a flat sky as
  default TGV in tests/test_denoise.py) for TGV. They run through this script's
  ``--peer`` mode (read FITS, denoise, write FITS), like our CLI.

Quality: PSNR against the simulator's noiseless truth before and after, per tool.

    python benchmarks/bench_denoise.py [--reps 1] [--size 6000x4000]

The image (``simulate_linear``: sky 0.1, Poisson noise 0.005 at the sky, 6000 stars)
and the outputs go to ``$BENCH_DATA/denoise`` (default /work/bench-data/denoise).
Writes ``results/denoise.json`` and prints the Markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _peer(kind: str, src: str, dst: str) -> int:
    """The scikit-image side: read, denoise, write (as our CLI does)."""
    import numpy as np
    from skimage.restoration import denoise_tv_chambolle, denoise_wavelet, estimate_sigma

    from napari_astro.core.image import AstroImage
    from napari_astro.core.io import read_image, write_image

    img = read_image(src)
    data = img.data
    axis = 0 if data.ndim == 3 else None
    if kind == "wavelet":
        out = denoise_wavelet(data, channel_axis=axis, rescale_sigma=True)
    elif kind == "tv":
        sigma = float(np.mean(estimate_sigma(data, channel_axis=axis)))
        out = denoise_tv_chambolle(data, weight=5.0 * sigma, channel_axis=axis)
    else:
        raise SystemExit(f"unknown peer {kind}")
    write_image(AstroImage(np.asarray(out, np.float32), header=img.header), dst,
                overwrite=True)
    return 0


def _make_image(path: Path, truth_path: Path, size: tuple[int, int]) -> None:
    import numpy as np

    from napari_astro.core.image import AstroImage
    from napari_astro.core.io import write_image
    from napari_astro.core.simulate_post import simulate_linear

    h, w = size
    n_stars = int(6000 * h * w / 24e6)
    img, tr = simulate_linear((h, w), color=True, sky=0.1, noise=0.005, poisson=True,
                              stars=n_stars, bright_stars=max(5, n_stars // 300),
                              border="none", seed=11)
    write_image(img, str(path), overwrite=True)
    np.save(truth_path, tr.signal.astype(np.float32))


def _psnr(path: Path, truth) -> float:
    import numpy as np

    from napari_astro.core.io import read_image

    d = read_image(str(path)).data
    err = 0.0
    for c in range(d.shape[0]):  # channel by channel: float64 of one plane at a time
        err += float(np.mean((d[c].astype(np.float64) - truth[c]) ** 2))
    return 10 * math.log10(1.0 / (err / d.shape[0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", nargs=3, metavar=("KIND", "IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--size", default="6000x4000", help="WxH")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--only", nargs="*", default=None,
                    help="subset of: mlt tgv sk-wavelet sk-tv")
    args = ap.parse_args(argv)
    if args.peer:
        return _peer(*args.peer)

    import numpy as np

    from common import BENCH_DATA, RESULTS_DIR, machine_info, napari_astro_cmd
    from measure import measure

    w, h = (int(v) for v in args.size.lower().split("x"))
    work = BENCH_DATA / "denoise"
    work.mkdir(parents=True, exist_ok=True)
    src, truth_path = work / f"linear_{w}x{h}.fits", work / f"linear_{w}x{h}_truth.npy"
    if not src.exists() or not truth_path.exists():
        print(f"simulating {w}x{h} colour (untimed) -> {src}", flush=True)
        _make_image(src, truth_path, (h, w))
    py = sys.executable
    me = str(Path(__file__).resolve())
    tools = {
        "mlt": napari_astro_cmd() + ["denoise", str(src), "OUT", "--method", "mlt", "--overwrite"],
        "sk-wavelet": [py, me, "--peer", "wavelet", str(src), "OUT"],
        "tgv": napari_astro_cmd() + ["denoise", str(src), "OUT", "--method", "tgv", "--overwrite"],
        "sk-tv": [py, me, "--peer", "tv", str(src), "OUT"],
    }
    if args.only:
        tools = {k: v for k, v in tools.items() if k in args.only}
    info = machine_info()
    runs = []
    for rep in range(args.reps):
        order = list(tools) if rep % 2 == 0 else list(tools)[::-1]
        for name in order:
            out = work / f"out_{name}.fits"
            cmd = [str(out) if c == "OUT" else c for c in tools[name]]
            m = measure(cmd, log=work / f"{name}.log", timeout=args.timeout)
            r = {"tool": name, "rep": rep, "returncode": m.returncode, "wall_s": m.wall_s,
                 "cpu_s": m.cpu_s, "peak_rss_MB": m.peak_rss_bytes / 2**20,
                 "loadavg": os.getloadavg()[0], "cmd": " ".join(cmd)}
            runs.append(r)
            print(f"  rep {rep} {name:10s} rc {m.returncode} wall {m.wall_s:7.1f} s  cpu "
                  f"{m.cpu_s:7.1f} s  peak {r['peak_rss_MB']:6.0f} MB  load {r['loadavg']:.1f}",
                  flush=True)
    truth = np.load(truth_path, mmap_mode="r")
    quality = {"input": _psnr(src, truth)}
    for name in tools:
        out = work / f"out_{name}.fits"
        if out.exists():
            quality[name] = _psnr(out, truth)
    doc = {"machine": info, "loadavg_end": os.getloadavg(), "size": [w, h], "runs": runs,
           "psnr_dB": quality, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "denoise.json").write_text(json.dumps(doc, indent=1, default=float))
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    import statistics

    rows = ["| tool | command | wall s | CPU s | peak MB | PSNR gain dB |", "|---|---|---|---|---|---|"]
    q = doc["psnr_dB"]
    for name in ("mlt", "sk-wavelet", "tgv", "sk-tv"):
        ok = [r for r in doc["runs"] if r["tool"] == name and r["returncode"] == 0]
        if not ok:
            continue
        med = lambda k: statistics.median(r[k] for r in ok)  # noqa: E731
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in ok)
        gain = f"{q[name] - q['input']:+.2f}" if name in q else "-"
        rows.append(f"| {name} | `{ok[0]['cmd']}` | {med('wall_s'):.1f} ({walls}) | "
                    f"{med('cpu_s'):.1f} | {med('peak_rss_MB'):.0f} | {gain} |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
