"""Compile the numba kernels of a stack run ahead of their first use (issue 13).

numba compiles a kernel on its first call and keeps the machine code in its cache
(``cache=True``: ``__pycache__`` beside the module, or ``NUMBA_CACHE_DIR``). After a
fresh install the cache is empty and the first stack run would compile every kernel
it meets, in the middle of the run. This module calls each kernel once on tiny inputs
of the types a real run passes (so the cache entry it writes is the one the run looks
up), stage by stage in the order a stack run needs them:

* :func:`warm_kernels` -- in the calling thread (an install script; seconds when the
  cache is already warm, as the kernels only load);
* :func:`warm_in_subprocess` -- in a separate, lower-priority Python process, for the
  napari plugin: nothing runs in napari's process (no GIL held by the compiler, the
  viewer never waits), and it does nothing when the cache is already warm.

``python -m napari_astro.pipeline.warmup`` runs :func:`warm_kernels` (what
``tools/install.sh`` and the plugin's subprocess do). Compiling in a background
thread or process during a CLI run was measured and dropped: on 2 cores it fought
the run for the GIL and numba's compiler lock (33-47 s against 21-23 s without;
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

__all__ = ["STAGES", "warm_kernels", "warm_in_subprocess",
           "cache_is_warm", "main"]

#: Stages in the order a stack run reaches them.
STAGES = ("read", "calibrate", "measure", "register", "integrate")

_H, _W = 96, 128          # tiny frames: every kernel runs its interior and its edges


def _cfa_frame(seed: int = 3) -> np.ndarray:
    """A raw GRBG-like mosaic in [0, 1] with a few Gaussian stars, a hot and a cold
    pixel (float32, C-contiguous, as the calibration pass holds a light)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:_H, 0:_W].astype(np.float32)
    img = 0.05 + 0.002 * rng.standard_normal((_H, _W)).astype(np.float32)
    for cx, cy, f in ((30.3, 25.6, 0.4), (80.7, 60.2, 0.3), (100.1, 30.8, 0.2),
                      (50.5, 70.4, 0.25), (20.2, 80.9, 0.15), (110.6, 85.3, 0.35)):
        img += f * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.3 ** 2))
    img[40, 41] = 0.95
    img[10, 12] = 0.0
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def _stage_read(tmp: Path) -> None:
    from astropy.io import fits

    from ..core.io import read_fits

    raw = np.round(_cfa_frame() * 65535).astype(np.uint16)
    path = tmp / "raw.fits"
    hdu = fits.PrimaryHDU(raw.astype(np.int32) - 32768)
    hdu.header["BZERO"] = 32768
    hdu.header["BAYERPAT"] = "GRBG"
    hdu.data = hdu.data.astype(np.int16)
    hdu.writeto(path, overwrite=True)
    read_fits(path)


def _stage_calibrate(tmp: Path) -> None:
    from ..core.calibration import BadPixelAccumulator, calibrate_arrays, correct_bad_pixels_array
    from ..core.debayer import debayer_array

    frames = [_cfa_frame(s) for s in (3, 4, 5)]
    acc = BadPixelAccumulator(frames[0].shape, "GRBG")
    for f in frames:
        acc.add(f)
    bpm = acc.result()
    data = frames[0]
    correct_bad_pixels_array(data, bpm, pattern="GRBG", inplace=True)
    calibrate_arrays(data, pedestal=0.0, clip=(0.0, 1.0), out=data)
    # the fused pass (arithmetic + cosmetic correction) the stack run takes per light,
    # with a non-empty map so its replacement kernel compiles too
    from ..core.calibration import auto_pedestal
    from ..core.cosmetic import BadPixelMap

    one = BadPixelMap(np.array([5]), np.array([5]), np.array([1], np.uint8), data.shape)
    auto_pedestal(data, pattern="GRBG")
    calibrate_arrays(frames[1], pedestal=0.0, clip=(0.0, 1.0), bad_pixels=one, pattern="GRBG")
    debayer_array(data, "GRBG")


def _stage_measure(tmp: Path) -> None:
    from ..core.debayer import debayer_array
    from ..core.image import AstroImage
    from .register import measure_frame

    rgb = debayer_array(_cfa_frame(), "GRBG")
    measure_frame(AstroImage(rgb))
    measure_frame(AstroImage(_cfa_frame(), bayer="GRBG"))


def _stage_register(tmp: Path) -> None:
    from ..core.debayer import debayer_array
    from ..core.registration import Transform, apply_transform

    rgb = debayer_array(_cfa_frame(), "GRBG")
    apply_transform(rgb, Transform.from_similarity(angle_deg=0.7, dx=1.3, dy=-2.2))


def _stage_integrate(tmp: Path) -> None:
    from ..core.integration.combine import combine_stack
    from ..core.integration.strategies import Winsorized
    from ..core.stats import b3_layer1, location_scale

    rng = np.random.default_rng(0)
    stack = (0.1 + 0.01 * rng.standard_normal((5, 3, 8, 130))).astype(np.float32)
    combine_stack(stack, rejection=Winsorized())
    band = np.ascontiguousarray(stack[0, 0])
    b3_layer1(band)
    location_scale(band.ravel(), "bwmv")


_STAGE_FUNCS: dict[str, Callable[[Path], None]] = {
    "read": _stage_read, "calibrate": _stage_calibrate, "measure": _stage_measure,
    "register": _stage_register, "integrate": _stage_integrate}


def warm_kernels(stages: Iterable[str] = STAGES, *,
                 log: Optional[Callable[[str], None]] = None) -> float:
    """Compile (or load from numba's cache) the kernels of ``stages``, in order.

    Parameters
    ----------
    stages : iterable of str
        Names from :data:`STAGES` (default all, in a stack run's order).
    log : callable, optional
        Called with one line per stage (its name and seconds).

    Returns
    -------
    float
        Seconds it took: the compile time on an empty cache (about 10 s of CPU on
        the 2-core test machine), well under a second per stage when warm.
    """
    stages = list(stages)
    unknown = [s for s in stages if s not in _STAGE_FUNCS]
    if unknown:
        raise ValueError(f"unknown warm-up stage(s) {unknown}; known: {', '.join(STAGES)}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="napari-astro-warmup-") as tmp:
        for s in stages:
            t = time.perf_counter()
            _STAGE_FUNCS[s](Path(tmp))
            if log is not None:
                log(f"warm-up {s}: {time.perf_counter() - t:.1f} s")
    return time.perf_counter() - t0


def cache_is_warm() -> bool:
    """Whether numba's cache holds the last stage's kernel (the default integration
    kernel) for this version of its source: read from the cache index, nothing
    compiled. (numba's index loader is internal; any failure counts as cold.)"""
    from ..core.integration.kernels import _rows_winsorized

    if getattr(_rows_winsorized, "aot_functions", None):
        return True  # compiled ahead of time (tools/build_aot.py): nothing to warm
    try:
        return bool(_rows_winsorized._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - unreadable or moved internals: treat as cold
        return False


def warm_in_subprocess(*, only_if_cold: bool = True,
                       nice: int = 10) -> Optional[subprocess.Popen]:
    """Fill numba's cache from a separate, lower-priority process (for napari).

    Parameters
    ----------
    only_if_cold : bool
        Start nothing when :func:`cache_is_warm`.
    nice : int
        Priority decrease of the process (0-19): it uses idle CPU only.

    Returns
    -------
    subprocess.Popen or None
        The process (it exits when done; its output is discarded), or None.
    """
    if only_if_cold and cache_is_warm():
        return None
    # the child lowers its own priority (no preexec_fn: unsafe in a threaded parent)
    return subprocess.Popen([sys.executable, "-m", "napari_astro.pipeline.warmup", "-q",
                             "--nice", str(int(nice))],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m napari_astro.pipeline.warmup",
                                 description="Compile napari-astro's numba kernels into "
                                             "numba's cache (once after installing).")
    ap.add_argument("stages", nargs="*", default=list(STAGES),
                    help=f"stages to warm (default all: {' '.join(STAGES)})")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    ap.add_argument("--nice", type=int, default=0,
                    help="lower this process's priority by this much first (0-19)")
    a = ap.parse_args(argv)
    if a.nice > 0 and hasattr(os, "nice"):
        os.nice(a.nice)
    log = None if a.quiet else print
    s = warm_kernels(a.stages, log=log)
    if not a.quiet:
        print(f"kernels compiled in {s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
