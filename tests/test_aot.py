"""Ahead-of-time kernels (core/jit.py, tools/build_aot.py): a toy kernel module built
with pycc into tmp_path runs without numba, releases the GIL, equals the JIT, falls
back to the JIT for other types, and NAPARI_ASTRO_NO_AOT=1 forces the JIT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_astro.core import jit

ROOT = Path(__file__).resolve().parents[1]

HELPERS = '''
from napari_astro.core.jit import njit


@njit(cache=True, nogil=True)
def offset(v):
    return v + 0.25
'''

KERNELS = '''
import math

import numpy as np
from napari_astro.core.jit import njit

from toy_aot_helpers import offset

GAIN = 1.5


@njit(cache=True, nogil=True, inline="always")
def _sq(v):
    return v * v


@njit(cache=True, nogil=True,
      aot=("void(f4[:, ::1], f4[:, ::1], f8, i8, i8)",
           "void(u2[:, ::1], f4[:, ::1], f8, i8, i8)"))
def rows(src, out, scale, i0, i1):
    for i in range(i0, i1):
        for j in range(src.shape[1]):
            out[i, j] = np.float32(_sq(np.float32(src[i, j])) * scale * GAIN
                                   + offset(math.sqrt(j)))


@njit(cache=True, nogil=True, aot="f8(i8)")
def spin(n):
    s = 0.0
    for i in range(n):
        s += math.sqrt(i) * 1e-9
    return s
'''

CHILD = r'''
import importlib.abc, json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numba", "llvmlite"):
            raise ImportError("blocked: " + name)
blocker = Block()
mode = sys.argv[1]
if mode == "aot":
    sys.meta_path.insert(0, blocker)   # napari_astro.core's optional numba import fails

import toy_aot_kernels as K

def threaded(kernel, n, *args, threads=2):       # run_in_threads: kernel(*args, i0, i1)
    b = [n * i // 4 for i in range(5)]
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda k: kernel(*args, b[k], b[k + 1]), range(4)))

rng = np.random.default_rng(1)
src = rng.random((37, 53), dtype=np.float32)
raw = rng.integers(0, 65535, (37, 53)).astype(np.uint16)
out = np.zeros_like(src); out16 = np.zeros_like(src)
threaded(K.rows, 37, src, out, 0.5)
threaded(K.rows, 37, raw, out16, 1e-9)
import pickle
res = {"numba_after_calls": "numba" in sys.modules,
       "pickles": pickle.loads(pickle.dumps(K.rows)) is K.rows,
       "aot": len(K.rows.aot_functions), "spin_aot": len(K.spin.aot_functions)}

if mode == "aot":
    # the GIL is released: this thread keeps running while another is in the kernel
    n = 1
    while True:                          # a call of ~0.25 s
        t = time.perf_counter(); K.spin(n); dt = time.perf_counter() - t
        if dt > 0.25 or n > 1 << 34:
            break
        n *= 2
    done = threading.Event()
    def work():
        K.spin(n); done.set()
    th = threading.Thread(target=work); th.start()
    gap, last, t0 = 0.0, time.perf_counter(), time.perf_counter()
    while not done.is_set():
        now = time.perf_counter(); gap = max(gap, now - last); last = now
    th.join()
    res.update(call_s=dt, max_gap_s=gap, wall_s=time.perf_counter() - t0)
    sys.meta_path.remove(blocker)

# the JIT's result, and a dtype with no AOT entry
before = "numba" in sys.modules
ref = np.zeros_like(src); ref16 = np.zeros_like(src)
K.rows.dispatcher(src, ref, 0.5, 0, 37)
K.rows.dispatcher(raw, ref16, 1e-9, 0, 37)
out64 = np.zeros(src.shape)
K.rows(src.astype(np.float64), out64, 0.5, 0, 37)
res.update(equal=bool(np.array_equal(out, ref)), equal16=bool(np.array_equal(out16, ref16)),
           fallback_ok=bool(np.allclose(out64, ref, rtol=1e-6, atol=1e-6)),
           numba_before_fallback=before, numba_after_fallback="numba" in sys.modules,
           aot_spin=K.spin(1000) == K.spin.dispatcher(1000))
print("RESULT " + json.dumps(res))
'''


def _have_pycc() -> bool:
    try:
        import numba.pycc  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not _have_pycc():
        pytest.skip("numba.pycc or a C compiler is missing")
    d = tmp_path_factory.mktemp("aot")
    (d / "toy_aot_helpers.py").write_text(HELPERS)
    (d / "toy_aot_kernels.py").write_text(KERNELS)
    (d / "child.py").write_text(CHILD)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_aot.py"), "-o",
                        str(d / "out"), "--modules", "toy_aot_kernels", "--path", str(d)],
                       capture_output=True, text=True, timeout=300, cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    so = list((d / "out").glob("_aot*.so")) + list((d / "out").glob("_aot*.pyd"))
    assert len(so) == 1, r.stdout
    return d, so[0]


def _child(d: Path, so: Path, mode: str, **env_extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), str(ROOT / "src")]),
               NAPARI_ASTRO_AOT=str(so), NUMBA_CACHE_DIR=str(d / "nbcache"), **env_extra)
    env.pop("NAPARI_ASTRO_NO_AOT", None)
    env.update(env_extra)
    r = subprocess.run([sys.executable, str(d / "child.py"), mode], capture_output=True,
                       text=True, timeout=240, cwd=d, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def test_manifest_lists_entries(built):
    d, so = built
    man = json.loads(so.with_name("_aot.json").read_text())
    sigs = sorted(e["signature"] for e in man["entries"].values())
    assert sigs == ["f8(i8)", "void(f4[:, ::1], f4[:, ::1], f8, i8, i8)",
                    "void(u2[:, ::1], f4[:, ::1], f8, i8, i8)"]
    # the helper module the kernels call into is a dependency of their build
    assert set(man["modules"]["toy_aot_kernels"]["deps"]) == {"toy_aot_kernels",
                                                               "toy_aot_helpers"}


def test_aot_runs_without_numba_releases_gil_and_equals_jit(built):
    d, so = built
    r = _child(d, so, "aot")
    assert r["aot"] == 2 and r["spin_aot"] == 1 and r["pickles"]
    assert not r["numba_after_calls"]          # imported and ran with numba blocked
    assert r["equal"] and r["equal16"]        # bit-identical to the JIT
    assert r["aot_spin"]
    # while one thread was ~0.25 s in the kernel, this one kept running
    assert r["max_gap_s"] < 0.5 * r["call_s"], r
    assert not r["numba_before_fallback"]
    assert r["numba_after_fallback"] and r["fallback_ok"]   # float64: the JIT


def test_no_aot_env_forces_jit(built):
    d, so = built
    r = _child(d, so, "jit", NAPARI_ASTRO_NO_AOT="1")
    assert r["aot"] == 0 and r["spin_aot"] == 0
    assert r["numba_after_calls"]
    assert r["equal"] and r["equal16"] and r["fallback_ok"]


def test_changed_source_is_not_run_from_a_stale_build(built, tmp_path):
    d, so = built
    (tmp_path / "toy_aot_helpers.py").write_text(HELPERS + "\n# edited\n")
    shutil.copy(d / "toy_aot_kernels.py", tmp_path)
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import toy_aot_kernels"
            " as K; print('N', len(K.rows.aot_functions))")
    env = dict(os.environ, NAPARI_ASTRO_AOT=str(so),
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "N 0" in r.stdout


def test_type_check_mirrors_numba_typeof():
    chk = jit.make_checker("void(f4[:, ::1], f8[:], Array(u2, 1, 'C', readonly=True), "
                           "f8, i8, b1, UniTuple(i8, 2))")
    a = np.zeros((3, 4), np.float32)
    b = np.zeros(5)
    c = np.zeros(6, np.uint16)
    ok = (a, b, c, 1.0, 2, True, (1, 2))
    assert chk(ok)
    assert chk((a, b[::2], c, 1.0, 2, True, (1, 2)))       # f8[:] takes any layout
    c.flags.writeable = False
    assert chk((a, b, c, 1.0, 2, True, (1, 2)))            # declared read-only
    bad = [
        (a.T, b, c, 1.0, 2, True, (1, 2)),                 # not C-contiguous
        (a.astype(np.float64), b, c, 1.0, 2, True, (1, 2)),
        (a[None], b, c, 1.0, 2, True, (1, 2)),             # ndim
        (a, b, c, 1, 2, True, (1, 2)),                     # int where f8: JIT types it i8
        (a, b, c, np.float32(1), 2, True, (1, 2)),
        (a, b, c, 1.0, True, True, (1, 2)),                # bool is not i8
        (a, b, c, 1.0, 2, 1, (1, 2)),
        (a, b, c, 1.0, 2, True, (1, 2, 3)),
        (a, b, c, 1.0, 2, True),
    ]
    for args in bad:
        assert not chk(args), args
    ro = a.copy()
    ro.flags.writeable = False
    assert not chk((ro, b, c, 1.0, 2, True, (1, 2)))       # mutable signature


def test_signature_parsing_and_symbols():
    t = jit.parse_signature("UniTuple(f8, 2)(f4[::1, :], i4[:, :, ::1])")
    assert t[0][3] == "F" and t[1][2] == 3 and t[1][3] == "C"
    t = jit.parse_signature("void(Tuple((f8, i8[::1])), UniTuple(i8, 2))")
    assert t[0] == ("tuple", [("scalar", np.dtype("f8")), ("array", np.dtype("i8"), 1, "C", False)])
    assert jit.make_checker("void(Tuple((f8, i8)))")(((1.0, 2),))
    with pytest.raises(ValueError):
        jit.parse_signature("void(f4[1:, :])")
    with pytest.raises(ValueError):
        jit.njit(parallel=True, aot="void(i8)")
    names = {jit.entry_symbol("a.b_c", "f", 0), jit.entry_symbol("a_b.c", "f", 0),
             jit.entry_symbol("a.b_c", "f", 1)}
    assert len(names) == 3


def test_build_without_pycc_exits_zero(tmp_path):
    # numba may drop pycc: the build says why and leaves the kernels JIT
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent('''
        import sys
        sys.modules["numba.pycc"] = None
    '''))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_aot.py"), "-o",
                        str(tmp_path / "out"), "--modules", "nothing"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "not available" in r.stdout
    assert not (tmp_path / "out").exists()


def test_thread_counts_without_numba():
    code = textwrap.dedent('''
        import importlib.abc, sys, threading
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("numba", "llvmlite"):
                    raise ImportError(name)
        b = Block(); sys.meta_path.insert(0, b)
        from napari_astro.core import jit
        jit.set_num_threads(1)
        other = []
        t = threading.Thread(target=lambda: other.append(jit.get_num_threads())); t.start(); t.join()
        try:
            jit.set_num_threads(jit.max_num_threads() + 1); bad = False
        except ValueError:
            bad = True
        assert "numba" not in sys.modules
        sys.meta_path.remove(b)
        numba = jit.load_numba()
        print(jit.get_num_threads(), numba.get_num_threads(), other[0] == jit.max_num_threads(), bad)
    ''')
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), NUMBA_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1", "True", "True"]
