#!/usr/bin/env bash
# Install everything napari-astro needs on a fresh Debian 12 machine: the system
# libraries napari's Qt/OpenGL canvas needs (and Xvfb for headless use), then a
# virtual environment in .venv with the package, its Qt binding and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-dev gcc libgomp1 libtbb12 \
    xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3 \
    libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
    libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 \
    libxcb-xkb1 libx11-xcb1 >/dev/null
# Capture (INDI server and simulators; pyindi-client's dbus-python builds against these)
# and offline plate solving (Tycho-2 index files for fields of about 1-5 degrees).
$SUDO apt-get install -y -qq --no-install-recommends \
    indi-bin libdbus-1-dev libglib2.0-dev pkg-config \
    astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian \
    astrometry-data-tycho2-10-19-littleendian >/dev/null
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -e ".[all,testing]"
echo "napari-astro installed in $(pwd)/.venv"
# The stack run's entry kernels ahead of time into src/napari_astro/_aot*.so (loaded
# without numba: less memory and start-up; tools/build_aot.py), then numba's cache for
# the rest. Re-run both after editing a kernel (stale modules fall back to numba).
.venv/bin/python tools/build_aot.py -q || echo "AOT build failed: the kernels stay JIT"
# bytecode of the sources now (an editable install; with PYTHONDONTWRITEBYTECODE set
# every start would compile ~50 modules again: 0.17 s of CPU)
.venv/bin/python -m compileall -q src >/dev/null || true
# Compile the numba kernels now (each stack kernel once, on tiny inputs of a real run's
# types), so the first real stack after installing is not a compile run.
.venv/bin/python -m napari_astro.pipeline.warmup \
    || echo "warm-up failed: the kernels will compile on first use"
