"""CPU time per light of the one-pass stack stage's kernels, on real Seestar lights.

The one-pass stage of ``napari-astro stack`` (lights only, raw 1080x1920 RGGB) takes
each light through: read, calibrate + cosmetic (the lights' bad-pixel vote),
measure stars on the CFA luminance (box luminance, background mesh, matched filter,
noise, peaks, adaptive moments), triangle matching, RCD debayer, Lanczos-3 resampling
of 3 channels and write. This harness runs that chain in-process on the lights of a
session and reports the process CPU time (``time.process_time``: the kernels' pool
threads count too) of each piece, the median over ``--reps`` calls on every light::

    PYTHONPATH=src python benchmarks/bench_onepass_kernels.py \
        /work/bench-data/seestar/seestar-m94-both/lights --reps 20 [--threads 1]

``--threads`` sets numba's thread count (the kernels' ``run_in_threads``); the stack
run uses 2, but runs calibration, measurement and resampling in three threads at once
on 2 cores, so the serial (``--threads 1``) CPU is the figure that adds up there.
``--json`` writes the medians; ``--check`` prints checksums of every product (equal
across trees = the same results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--reps", type=int, default=20, help="calls per piece (over the lights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=4, help="lights used (first N by name)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--no-mmap", action="store_true",
                    help="keep glibc's dynamic mmap threshold (the CLI fixes it at 128 KiB, so "
                         "every frame buffer is a fresh mmap and its page faults count)")
    args = ap.parse_args(argv)

    import numpy as np

    import napari_astro
    from napari_astro.core.calibration import BadPixelAccumulator, calibrate_arrays
    from napari_astro.core.debayer import debayer_array
    from napari_astro.core.io import read_image, write_image
    from napari_astro.core.jit import set_num_threads
    from napari_astro.core.registration import apply_transform, find_transform
    from napari_astro.core.stars import cfa_box_luminance, detect_stars, estimate_background
    from napari_astro.pipeline.register import measure_frame

    set_num_threads(args.threads)
    if not args.no_mmap:
        from napari_astro.cli import _return_freed_frames_to_the_os
        _return_freed_frames_to_the_os()
    print(f"napari_astro from {Path(napari_astro.__file__).parent}, threads {args.threads}",
          file=sys.stderr)
    paths = sorted(args.folder.iterdir())
    imgs = [read_image(p) for p in paths]
    pattern = imgs[0].bayer
    acc = BadPixelAccumulator(imgs[0].data.shape, pattern)
    for im in imgs:
        acc.add(im.data)
    bpm = acc.result()
    use = imgs[:max(2, args.n)]
    cal = [calibrate_arrays(im.data, pedestal=0.0, clip=(0.0, 1.0), bad_pixels=bpm,
                            pattern=pattern) for im in use]
    cimgs = [im.replace(data=c, bayer=pattern) for im, c in zip(use, cal)]
    lums = [np.ascontiguousarray(cfa_box_luminance(c), np.float32) for c in cal]
    bkgs = [estimate_background(lum) for lum in lums]
    meas = [measure_frame(ci) for ci in cimgs]
    ref_stars = meas[0][0]
    trans = [find_transform(m[0], ref_stars).transform for m in meas[1:]]
    rgbs = [debayer_array(c, pattern) for c in cal]
    shape = cal[0].shape
    from napari_astro.core.image import AstroImage
    rgb_imgs = [AstroImage(r) for r in rgbs]
    tmpdir = Path(tempfile.mkdtemp(prefix="bench_onepass_"))
    regs = [apply_transform(rgb_imgs[k + 1], t, shape=shape) for k, t in enumerate(trans)]

    n = len(use)
    m = len(trans)
    cases = {
        "read": lambda k: read_image(paths[k % n]),
        "vote add": lambda k: acc.add(use[k % n].data),
        "calibrate+cosmetic": lambda k: calibrate_arrays(use[k % n].data, pedestal=0.0,
                                                         clip=(0.0, 1.0), bad_pixels=bpm,
                                                         pattern=pattern),
        "  box luminance": lambda k: cfa_box_luminance(cal[k % n]),
        "  background": lambda k: estimate_background(lums[k % n]),
        "  detect_stars": lambda k: detect_stars(lums[k % n], background=bkgs[k % n],
                                                 _box_variance=0.25),
        "measure_frame": lambda k: measure_frame(cimgs[k % n]),
        "find_transform": lambda k: find_transform(meas[1 + k % m][0], ref_stars),
        "debayer rcd": lambda k: debayer_array(cal[k % n], pattern),
        "apply_transform": lambda k: apply_transform(rgb_imgs[1 + k % m], trans[k % m],
                                                     shape=shape),
        "write": lambda k: write_image(regs[k % m].copy(), tmpdir / "r.fits", overwrite=True,
                                       inplace=True),
    }
    chain = ["read", "calibrate+cosmetic", "measure_frame", "find_transform", "debayer rcd",
             "apply_transform", "write"]
    res = {}
    for name, fn in cases.items():
        fn(0)
        fn(1)
        ts = []
        for k in range(args.reps):
            t0 = time.process_time()
            fn(k)
            ts.append(time.process_time() - t0)
        res[name] = statistics.median(ts)
        print(f"{name:22s} {1e3 * res[name]:7.1f} ms   (min {1e3 * min(ts):6.1f})")
    total = sum(res[c] for c in chain)
    kern = sum(res[c] for c in chain if c not in ("read", "write"))
    print(f"{'chain (per light)':22s} {1e3 * total:7.1f} ms   kernels only (no read/write) "
          f"{1e3 * kern:6.1f} ms")
    res["chain"] = total
    res["chain kernels"] = kern
    if args.check:
        import hashlib

        def cs(*arrays):  # sha1 of the bytes: equal = bit for bit the same results
            hs = hashlib.sha1()
            for a in arrays:
                hs.update(np.ascontiguousarray(a).tobytes())
            return hs.hexdigest()[:16]
        print("check bpm", len(bpm), bpm.n_hot, bpm.n_cold, cs(bpm.rows, bpm.cols))
        print("check cal", cs(*cal))
        print("check lum", cs(*lums))
        print("check bkg", cs(*[b[0] for b in bkgs]), [b[1] for b in bkgs])
        for k, (s, q) in enumerate(meas):
            print("check stars", k, len(s), cs(s.x, s.y, s.flux, s.fwhm, s.roundness, s.peak,
                                               s.saturated, s.snr), q)
        print("check trans", cs(*[t.matrix for t in trans]))
        print("check rgb", cs(*rgbs))
        print("check reg", cs(*[r.data for r in regs]), cs(*[r.mask for r in regs]))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
