"""Wheel build hook: ship the stack run's numba kernels compiled (issue 13).

A plain ``pip install napari-astro`` (or of this repository: the route napari's plugin
manager takes) used to leave numba's cache empty, so the first ``napari-astro stack``
compiled every kernel on the way (2.3x a warm run). numba >= 0.59 stamps its cache
index with a hash of the module's source (``numba.core.caching._hash_source_file``),
not its path or mtime, so the machine code compiled from the same sources is valid
wherever pip puts them. When a standard wheel is built (pip builds one on the machine
it installs on), this hook copies the package to a temporary folder, runs
``python -m napari_astro.pipeline.warmup`` there (the kernels compile into the copy's
``__pycache__`` folders), and adds those ``*.nbi``/``*.nbc`` files to the wheel. The
cache entries are keyed by numba's version and this CPU's name and features: a wheel
built elsewhere, or a different numba at run time, just compiles on first use as
before (numba ignores non-matching entries).

The hook never fails a build: if the warm-up cannot run (a missing dependency in the
build environment, a time limit of 10 minutes), the wheel is built without the cache
and a warning says so. Editable installs (``pip install -e``, the README's
``tools/install.sh``) keep compiling in place with ``python -m
napari_astro.pipeline.warmup`` after installing. ``NAPARI_ASTRO_NO_PREBUILD=1`` skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class NumbaCacheHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        if os.environ.get("NAPARI_ASTRO_NO_PREBUILD"):
            return
        src = Path(self.root) / "src" / "napari_astro"
        self._tmp = tempfile.mkdtemp(prefix="napari-astro-numba-")
        dst = Path(self._tmp) / "napari_astro"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        env = dict(os.environ)
        env.pop("NUMBA_CACHE_DIR", None)        # compile into the copy's __pycache__
        # the copy first, then everything this interpreter sees: pip's build isolation
        # may itself live on PYTHONPATH (pip 23 does), so it is extended, not replaced
        env["PYTHONPATH"] = os.pathsep.join(
            [self._tmp] + [p for p in sys.path if p]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["NAPARI_ASTRO_NO_WARMUP"] = "1"
        t0 = time.perf_counter()
        # 1. the entry kernels ahead of time into napari_astro/_aot*.so (loaded without
        #    numba: tools/build_aot.py, core/jit.py); never fails the build
        aot_ok = False
        tool = Path(self.root) / "tools" / "build_aot.py"
        if tool.exists():
            try:
                r = subprocess.run([sys.executable, str(tool), "-q", "-o", str(dst)],
                                   cwd=self._tmp, env=env, capture_output=True, text=True,
                                   timeout=1200)
                aot_ok = r.returncode == 0 and any(dst.glob("_aot*.so"))
                if r.returncode != 0:
                    why = (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])
                    self.app.display_warning(f"napari-astro: AOT kernels not built ({why[-1]})")
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.app.display_warning(f"napari-astro: AOT kernels not built ({exc})")
        if aot_ok:
            for f in sorted(dst.glob("_aot*")):
                if f.suffix in (".so", ".json", ".pyd"):
                    build_data["force_include"][str(f)] = f"napari_astro/{f.name}"
            build_data["pure_python"] = False   # a compiled extension: this Python, platform
            build_data["infer_tag"] = True
        # 2. numba's cache of every other kernel the stack run may still JIT
        try:
            r = subprocess.run([sys.executable, "-m", "napari_astro.pipeline.warmup", "-q"],
                               cwd=self._tmp, env=env, capture_output=True, text=True,
                               timeout=600)
            ok = r.returncode == 0
            why = (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, str(exc)
        if not ok:
            self.app.display_warning(
                f"napari-astro: numba kernels not prebuilt ({why}); they compile on "
                "first use")
            return
        n = 0
        for f in sorted(dst.rglob("__pycache__/*.nb[ic]")):
            build_data["force_include"][str(f)] = str(Path("napari_astro") / f.relative_to(dst))
            n += 1
        self.app.display_info(f"napari-astro: {'AOT kernels and ' if aot_ok else ''}{n} numba "
                              f"cache files prebuilt in {time.perf_counter() - t0:.0f} s")

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
