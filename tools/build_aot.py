#!/usr/bin/env python
"""Compile the entry kernels into one extension module, ``napari_astro/_aot`` (issue 13).

Imports the kernel modules (``napari_astro.core.jit.AOT_MODULES`` unless ``--modules``),
collects the entry kernels their ``@njit(..., aot="sig")`` registered
(:func:`napari_astro.core.jit.aot_entries`) and compiles them with ``numba.pycc.CC``
into ``OUT/_aot.<EXT_SUFFIX>`` plus its manifest ``OUT/_aot.json`` (build id, Python,
numpy, CPU, the entries and the source hashes of the modules they were compiled from).
At run time :mod:`napari_astro.core.jit` calls these functions without importing numba.

* Each exported wrapper is compiled with its kernel's own numba flags (``nogil=True``
  releases the GIL around the call, ``fastmath``, ``error_model``, ``boundscheck``, as
  the JIT would), by wrapping pycc's ``compile_extra`` while building.
* Machine code for this host: CPU name and feature flags as numba's JIT uses them
  (pycc's default is the generic x86-64, without AVX). The extension is built on the
  machine that runs it; the manifest's CPU key makes another machine fall back to JIT.
* Entry names: ``<module tail>__<function>__<signature index>_<hash>`` (unique).
* No pycc (numba may drop it) or no entries: says why, builds nothing, exits 0 (the
  kernels stay JIT). A compile error exits 1 and leaves any previous build in place.

Usage::

    python tools/build_aot.py [-o OUT_DIR] [--modules a.b,c.d] [--path DIR] [-q]
    python tools/build_aot.py --suggest      # signatures seen in a warm-up, to convert

``OUT_DIR`` defaults to the imported ``napari_astro`` package's folder.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _imported_modules(mod) -> set:
    """Absolute names of the modules ``mod``'s source imports from (``import x``,
    ``from x import y``, relative ones resolved), read with ``ast``."""
    f = getattr(mod, "__file__", None)
    if not f or not f.endswith(".py"):
        return set()
    tree = ast.parse(Path(f).read_text(encoding="utf-8"))
    pkg = mod.__name__ if f.endswith("__init__.py") else mod.__name__.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            for a in node.names:          # "from . import kernels" imports a module
                sub = f"{name}.{a.name}"
                if sub in sys.modules:
                    out.add(sub)
    return out


def _deps(modname: str, jit) -> dict:
    """``{module: source hash}`` the compiled code of ``modname`` may depend on: itself,
    the modules of its own package (and any kernel module) it imports from (kernels,
    constants), and recursively theirs when they hold kernels. jit.py is left out."""
    top = modname.split(".")[0]
    seen, todo, out = set(), [modname], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        mod = sys.modules.get(name)
        f = getattr(mod, "__file__", None)
        if mod is None or not f or name == jit.__name__:
            continue
        out[name] = jit.source_hash(f)
        holds_kernels = name == modname or bool(jit.registered(name)) or any(
            type(v).__name__.endswith("Dispatcher") for v in vars(mod).values())
        if not holds_kernels:
            continue
        for dep in _imported_modules(mod):
            if dep in sys.modules and (dep.split(".")[0] == top or jit.registered(dep)):
                todo.append(dep)
    return dict(sorted(out.items()))


_SHORT = {"float32": "f4", "float64": "f8", "int8": "i1", "int16": "i2", "int32": "i4",
          "int64": "i8", "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
          "bool": "b1", "complex64": "c8", "complex128": "c16"}


def sig_string(t) -> str:
    """A numba type as ``aot=`` syntax: ``Array(float32, 2, 'C')`` -> ``f4[:, ::1]``."""
    from numba.core import types

    if isinstance(t, types.Array):
        dt = _SHORT.get(str(t.dtype), str(t.dtype))
        if not t.mutable or not t.aligned:
            return f"Array({dt}, {t.ndim}, '{t.layout}'" + (", readonly=True" if not t.mutable
                                                           else "") + ")"
        dims = [":"] * t.ndim
        if t.layout == "C":
            dims[-1] = "::1"
        elif t.layout == "F":
            dims[0] = "::1"
        return f"{dt}[{', '.join(dims)}]"
    if isinstance(t, types.UniTuple):
        return f"UniTuple({sig_string(t.dtype)}, {t.count})"
    if isinstance(t, types.BaseTuple):
        return "Tuple((" + ", ".join(sig_string(x) for x in t.types) + ",))"
    if isinstance(t, types.NoneType) or str(t) == "none":
        return "void"
    return _SHORT.get(str(t), str(t))


def suggest(modules, *, warm: bool = True) -> int:
    """Run the warm-up (a stack run's kernel calls on tiny inputs, JIT) and print, per
    kernel module, the ``aot=`` signatures its kernels were compiled for."""
    from napari_astro.core import jit

    mods = []
    for m in modules:
        try:
            mods.append(importlib.import_module(m))
        except ImportError as exc:
            print(f"# cannot import {m}: {exc}")
    if warm:
        from napari_astro.pipeline.warmup import warm_kernels

        warm_kernels()
    for mod in mods:
        lines = []
        for name, v in vars(mod).items():
            if isinstance(v, jit.Kernel):
                if v.__module__ != mod.__name__:
                    continue
                d = v._dispatcher
                role = ("entry (called from Python)" if v.called_from_python
                        else "helper (kernels only)")
                opts = v.options
            elif hasattr(v, "py_func") and hasattr(v, "signatures") and \
                    getattr(v.py_func, "__module__", None) == mod.__name__:
                d = v
                opts = v.targetoptions
                role = "not converted"
            else:
                continue
            sigs = []
            if d is not None:
                for cres in d.overloads.values():
                    ret = sig_string(cres.signature.return_type)
                    sigs.append(f"{ret}({', '.join(sig_string(a) for a in cres.signature.args)})")
            if opts.get("inline") == "always":
                role = "inline helper"
            if not sigs:
                role += ", not called"
            lines.append(f"  {name}: [{role}]" + "".join(f"\n      aot=\"{s}\"" for s in sigs))
        if lines:
            print(mod.__name__)
            print("\n".join(lines))
    return 0


def build(out_dir: Path, modules, *, quiet: bool = False, cpu: str = "host") -> int:
    try:
        from numba.pycc import CC
        import numba.pycc.compiler as pycc_compiler
        from numba.core import codegen as nb_codegen
        from numba.core.cpu import CPUTargetOptions
    except Exception as exc:  # noqa: BLE001 - any reason means: stay JIT
        print(f"build_aot: numba.pycc is not available ({exc!r}); nothing built, the "
              "kernels stay JIT-compiled")
        return 0
    import numba
    import numpy as np

    from napari_astro.core import jit

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as exc:
            print(f"build_aot: cannot import {m} ({exc}); skipped")
    entries = jit.aot_entries(modules)
    if not entries:
        print(f"build_aot: no AOT entries in {', '.join(modules)}; nothing built")
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=".aot-build-", dir=out_dir))
    cc = CC(jit.AOT_NAME, source_module=jit)
    cc.output_dir = str(build_dir)
    cc.verbose = False
    cc.target_cpu = cpu

    by_func, manifest_entries, symbols = {}, {}, set()
    for mod, qual, sigs, kernel in entries:
        for j, sig in enumerate(sigs):
            sym = jit.entry_symbol(mod, qual, j)
            if sym in symbols:
                raise RuntimeError(f"duplicate AOT entry name {sym}")
            symbols.add(sym)
            try:
                cc.export(sym, sig)(kernel.py_func)
            except Exception as exc:  # noqa: BLE001 - a bad signature string
                print(f"build_aot: {mod}.{qual}: bad signature {sig!r}: {exc}")
                return 1
            manifest_entries[sym] = {"module": mod, "qualname": qual, "signature": sig}
        by_func[kernel.py_func] = kernel
    build_id = random.getrandbits(62)
    ns = {"BUILD_ID": build_id}
    exec("def _aot_build_id():\n    return BUILD_ID\n", ns)
    cc.export(jit.BUILD_ID_SYMBOL, "i8()")(ns["_aot_build_id"])

    # Each wrapper gets its kernel's numba flags (nogil -> release_gil: the wrapper
    # calls PyEval_SaveThread around the kernel); pycc itself gives all the same Flags.
    orig_compile_extra = pycc_compiler.compile_extra
    times: dict = {}

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, locals,
                      **kws):
        kernel = by_func.get(func)
        if kernel is not None:
            flags = flags.copy()
            CPUTargetOptions.parse_as_flags(flags, dict(kernel.targetoptions))
            locals = dict(kernel.options.get("locals") or {})
        t0 = time.perf_counter()
        try:
            return orig_compile_extra(typingctx, targetctx, func, args, return_type,
                                      flags, locals, **kws)
        finally:
            if kernel is not None:
                key = f"{kernel.__module__}.{kernel.__qualname__}{tuple(args)}"
                times[key] = time.perf_counter() - t0

    # The host's feature flags as the JIT sees them (pycc derives them from the CPU
    # name only, which a VM's masked features can contradict).
    orig_features = nb_codegen.AOTCPUCodegen._customize_tm_features

    def host_features(self):
        return self._get_host_cpu_features() if cpu == "host" else ""

    pycc_compiler.compile_extra = compile_extra
    nb_codegen.AOTCPUCodegen._customize_tm_features = host_features
    t0 = time.perf_counter()
    c0 = os.times()
    try:
        cc.compile()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("build_aot: compilation failed; previous build (if any) left in place, "
              "kernels without it stay JIT")
        return 1
    finally:
        pycc_compiler.compile_extra = orig_compile_extra
        nb_codegen.AOTCPUCodegen._customize_tm_features = orig_features
    c1 = os.times()
    wall = time.perf_counter() - t0
    cpu_s = (c1.user + c1.system) - (c0.user + c0.system)          # numba + LLVM
    cc_s = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)

    built = build_dir / cc.output_file
    final = out_dir / cc.output_file
    from llvmlite import binding as ll

    manifest = {
        "build_id": build_id,
        "python": sys.implementation.cache_tag,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "cpu": jit.cpu_key(),
        "cpu_name": ll.get_host_cpu_name() if cpu == "host" else cpu,
        "entries": manifest_entries,
        "modules": {m: {"deps": _deps(m, jit)} for m in sorted({e[0] for e in entries})},
        "compile_s": {k: round(v, 3) for k, v in times.items()},
        "build_s": {"wall": round(wall, 2), "cpu": round(cpu_s, 2),
                    "c_compiler_cpu": round(cc_s, 2)},
    }
    man_tmp = build_dir / (jit.AOT_NAME + ".json")
    man_tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(built, final)        # a running process keeps the old file mapped
    os.replace(man_tmp, out_dir / (jit.AOT_NAME + ".json"))
    for p in build_dir.iterdir():
        p.unlink()
    build_dir.rmdir()
    _log(quiet, f"build_aot: {len(symbols)} entries from {len(manifest['modules'])} "
                f"module(s) -> {final} ({final.stat().st_size / 1e6:.1f} MB) in "
                f"{wall:.1f} s wall, {cpu_s:.1f} s CPU + {cc_s:.1f} s in the C compiler "
                f"(numba's helper C files)")
    if not quiet:
        for k, v in sorted(times.items(), key=lambda kv: -kv[1]):
            print(f"  {v:7.2f} s  {k[:150]}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=None,
                    help="output folder (default: the napari_astro package folder)")
    ap.add_argument("--modules", default=None,
                    help="comma-separated kernel modules (default jit.AOT_MODULES)")
    ap.add_argument("--path", action="append", default=[],
                    help="prepend to sys.path before importing the modules")
    ap.add_argument("--cpu", default="host", help="LLVM CPU name (default host)")
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("--suggest", action="store_true",
                    help="build nothing: run the warm-up (JIT) and print the signatures "
                         "each kernel was compiled for, in aot= syntax")
    a = ap.parse_args(argv)
    for p in reversed(a.path):
        sys.path.insert(0, p)
    # importing the modules must not pick up an older extension's functions
    os.environ["NAPARI_ASTRO_NO_AOT"] = "1"
    from napari_astro.core import jit

    modules = tuple(m for m in (a.modules.split(",") if a.modules else jit.AOT_MODULES) if m)
    if a.out is None:
        import napari_astro

        a.out = Path(napari_astro.__file__).resolve().parent
    if a.suggest:
        return suggest(modules)
    return build(a.out, modules, quiet=a.quiet, cpu=a.cpu)


if __name__ == "__main__":
    sys.exit(main())
