"""``njit`` for our kernels: ahead-of-time compiled code when it is there, numba otherwise
(issue 13: memory and start-up).

``import numba`` alone costs 0.42 s CPU and 159 MB of resident memory (llvmlite's
LLVM library), and loading numba's cache still needs LLVM at run time. A kernel module
converted to this decorator runs in a Python where numba is never imported, from one
extension module compiled by ``tools/build_aot.py`` with ``numba.pycc`` (the
``napari_astro._aot`` extension beside the package, its manifest ``_aot.json``).

Converting a kernel module means changing its import line and giving its entry
kernels (those called from Python) their signatures::

    from .jit import njit            # was: from numba import njit

    @njit(cache=True, nogil=True, aot="void(f4[:, ::1], f4[:, ::1], i8, i8)")
    def _rows(src, out, i0, i1): ...

    @njit(cache=True, nogil=True, inline="always")      # a helper: no ``aot=``
    def _helper(v): ...

``aot`` is one signature string or a sequence of them, in numba's syntax (``f4[:, ::1]``
a C-contiguous 2-D float32 array, ``f8[:]`` any 1-D float64 array, ``Array(u2, 1, 'C',
readonly=True)`` a read-only one, ``UniTuple(f8, 2)``, ``Tuple((f8, i8))``, scalars
``i8 f8 f4 b1 ...``).

A call goes to the AOT function when the extension holds it, the manifest says it was
built from the current sources of its module (and the modules it imports from), and the
arguments' types are exactly those of one signature -- the types numba's ``typeof``
would give them (a Python ``int`` is ``i8``, a ``float`` ``f8``, ``np.float32`` ``f4``;
arrays by dtype, ndim, layout, writeable), so the AOT code is the code the JIT would
compile for that call. Anything else (another dtype, keywords, ``NAPARI_ASTRO_NO_AOT=1``,
no extension, a stale one) goes to a numba dispatcher created on first need with the
decorator's flags (``cache=True`` as before: same cache files as ``numba.njit``).
``NAPARI_ASTRO_AOT_DEBUG=1`` prints each kernel's first fallback and the argument types.

The decorator returns a :class:`Kernel`: the Python function and its options. numba
sees it as its dispatcher wherever a kernel calls another one (``_numba_type_`` and
``targetoptions``/``py_func`` for ``inline="always"``), so module globals are never
rebound and Python callers always reach the AOT route.

Thread counts: :func:`get_num_threads`/:func:`set_num_threads`/:func:`max_num_threads`
are numba's when numba is imported, a per-thread value (default ``NUMBA_NUM_THREADS``
or the usable cores, as numba) otherwise, so that ``run_in_threads`` and the pipeline's
thread pools need not import numba for a pool size; a value set before numba's import
is handed to numba when that thread next asks.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["njit", "Kernel", "AOT_MODULES", "AOT_NAME", "aot_entries", "registered",
           "aot_status", "entry_symbol", "get_num_threads", "set_num_threads",
           "max_num_threads", "parse_signature", "load_numba"]

#: Kernel modules whose entry kernels ``tools/build_aot.py`` compiles. A module that
#: is not converted yet (still ``from numba import njit``) registers nothing.
AOT_MODULES: Tuple[str, ...] = (
    "napari_astro.core.io.fits",
    "napari_astro.core.calibration",
    "napari_astro.core.cosmetic",
    "napari_astro.core.stats",
    "napari_astro.core.debayer.cfa",
    "napari_astro.core.debayer.kernels",
    "napari_astro.core.stars.background",
    "napari_astro.core.stars.detect",
    "napari_astro.core.stars.measure",
    "napari_astro.core.registration.resample",
    "napari_astro.core.integration.kernels",
    "napari_astro.core.crop",
)

#: Name of the extension module (``napari_astro/_aot.<EXT_SUFFIX>``) and its manifest.
AOT_NAME = "_aot"
AOT_FULLNAME = "napari_astro._aot"
#: The extension's build stamp, an exported function the manifest must agree with.
BUILD_ID_SYMBOL = "_aot_build_id"

_REGISTRY: Dict[str, List["Kernel"]] = {}
_NUMBA_OPTS = ("cache", "nogil", "inline", "fastmath", "error_model", "boundscheck",
               "parallel", "locals", "nopython", "forceobj", "looplift", "no_cpython_wrapper",
               "no_cfunc_wrapper", "_nrt", "debug", "opt", "target_backend",
               "no_rewrites", "forceinline", "writable_args")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------- numba

_NUMBA_LOCK = threading.RLock()


def load_numba():
    """``import numba`` (the JIT fallback), asking for a thread-safe threading layer as
    :mod:`napari_astro.core` does, and giving numba this thread's :func:`set_num_threads`."""
    if "numba" in sys.modules and hasattr(sys.modules["numba"], "njit"):
        return sys.modules["numba"]
    with _NUMBA_LOCK:
        import numba

        if numba.config.THREADING_LAYER == "default":
            numba.config.THREADING_LAYER = "threadsafe"
        n = getattr(_TLS, "threads", None)
        if n is not None:
            numba.set_num_threads(n)
            _TLS.synced = True
        return numba


_TLS = threading.local()


def max_num_threads() -> int:
    """numba's ``config.NUMBA_NUM_THREADS`` without numba: ``NUMBA_NUM_THREADS`` or the
    usable cores (what numba defaults to)."""
    nb = sys.modules.get("numba")
    if nb is not None and hasattr(nb, "config"):
        return int(nb.config.NUMBA_NUM_THREADS)
    env = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _numba_if_loaded():
    nb = sys.modules.get("numba")
    return nb if nb is not None and hasattr(nb, "get_num_threads") else None


def get_num_threads() -> int:
    """This thread's thread count, as ``numba.get_num_threads()``: numba's own when
    numba is imported (after handing it a value set here before the import), else the
    value of :func:`set_num_threads` in this thread, else :func:`max_num_threads`."""
    n = getattr(_TLS, "threads", None)
    nb = _numba_if_loaded()
    if nb is not None:
        if n is not None and not getattr(_TLS, "synced", False):
            nb.set_num_threads(n)
            _TLS.synced = True
        return int(nb.get_num_threads())
    return n if n is not None else max_num_threads()


def set_num_threads(n: int) -> None:
    """``numba.set_num_threads`` for this thread, without importing numba (numba gets
    the value when it is imported and this thread asks again). Usable as a pool's
    ``initializer``. Raises ``ValueError`` outside 1..:func:`max_num_threads`."""
    n = int(n)
    if not 1 <= n <= max_num_threads():
        raise ValueError(f"number of threads must be between 1 and {max_num_threads()}")
    _TLS.threads = n
    nb = _numba_if_loaded()
    _TLS.synced = nb is not None
    if nb is not None:
        nb.set_num_threads(n)


# ---------------------------------------------------------------- signatures

_SCALARS = {
    "f4": np.float32, "float32": np.float32, "f8": np.float64, "float64": np.float64,
    "double": np.float64,
    "i1": np.int8, "int8": np.int8, "i2": np.int16, "int16": np.int16,
    "i4": np.int32, "int32": np.int32, "i8": np.int64, "int64": np.int64,
    "intp": np.intp, "u1": np.uint8, "uint8": np.uint8, "u2": np.uint16,
    "uint16": np.uint16, "u4": np.uint32, "uint32": np.uint32, "u8": np.uint64,
    "uint64": np.uint64, "uintp": np.uintp, "b1": np.bool_, "boolean": np.bool_,
    "bool_": np.bool_, "c8": np.complex64, "complex64": np.complex64,
    "c16": np.complex128, "complex128": np.complex128,
}
# Python scalars as numba's typeof types them (an int is int64, a float float64).
_PY_SCALAR = {np.int64: int, np.float64: float, np.bool_: bool, np.complex128: complex}


def _split_top(s: str, sep: str = ",") -> List[str]:
    out, depth, cur = [], 0, []
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail or out:
        out.append(tail)
    return [t for t in out if t]


def _parse_type(t: str):
    """One argument type -> ``("scalar", dtype)``, ``("array", dtype, ndim, layout,
    readonly)`` or ``("tuple", [types])``."""
    t = t.strip()
    if t in _SCALARS:
        return ("scalar", np.dtype(_SCALARS[t]))
    if t.endswith("]") and "[" in t:
        name, dims = t[:-1].split("[", 1)
        name = name.strip()
        if name not in _SCALARS:
            raise ValueError(f"unsupported array dtype {name!r} in {t!r}")
        parts = [p.replace(" ", "") for p in _split_top(dims)]
        nd = len(parts)
        if any(p not in (":", "::1") for p in parts) or parts.count("::1") > 1:
            raise ValueError(f"unsupported array layout {t!r}")
        if "::1" not in parts:
            layout = "A"
        elif parts[-1] == "::1":
            layout = "C"
        elif parts[0] == "::1":
            layout = "F"
        else:
            raise ValueError(f"unsupported array layout {t!r}")
        return ("array", np.dtype(_SCALARS[name]), nd, layout, False)
    if t.endswith(")") and "(" in t:
        head, inner = t[:-1].split("(", 1)
        head = head.strip()
        args = _split_top(inner)
        if head == "Array":
            kw = {}
            pos = []
            for a in args:
                if "=" in a:
                    k, v = a.split("=", 1)
                    kw[k.strip()] = v.strip()
                else:
                    pos.append(a)
            if len(pos) < 2 or pos[0] not in _SCALARS:
                raise ValueError(f"unsupported array type {t!r}")
            layout = (pos[2] if len(pos) > 2 else kw.get("layout", "'A'")).strip("'\"")
            ro = kw.get("readonly", "False") == "True"
            if layout not in ("C", "F", "A"):
                raise ValueError(f"unsupported layout in {t!r}")
            return ("array", np.dtype(_SCALARS[pos[0]]), int(pos[1]), layout, ro)
        if head == "UniTuple" and len(args) == 2:
            el = _parse_type(args[0])
            return ("tuple", [el] * int(args[1]))
        if head == "Tuple":          # numba's spelling: Tuple((a, b, ...))
            if len(args) == 1 and args[0].startswith("(") and args[0].endswith(")"):
                args = _split_top(args[0][1:-1])
            return ("tuple", [_parse_type(a) for a in args])
    raise ValueError(f"unsupported argument type {t!r} (the AOT type check knows "
                     "scalars, arrays and tuples of them)")


def parse_signature(sig: str) -> list:
    """The argument types of ``"ret(arg, ...)"`` (the return type is pycc's business)."""
    s = sig.strip()
    if not s.endswith(")"):
        raise ValueError(f"not a signature: {sig!r}")
    depth = 0
    for i in range(len(s) - 1, -1, -1):
        if s[i] == ")":
            depth += 1
        elif s[i] == "(":
            depth -= 1
            if depth == 0:
                break
    else:  # pragma: no cover
        raise ValueError(f"not a signature: {sig!r}")
    if not s[:i].strip():
        raise ValueError(f"signature {sig!r} has no return type (use void)")
    return [_parse_type(a) for a in _split_top(s[i + 1:-1])]


def _check_expr(var: str, t, consts: dict) -> str:
    kind = t[0]
    if kind == "scalar":
        dt = t[1]
        types = {dt.type}
        if dt.type in _PY_SCALAR:
            types.add(_PY_SCALAR[dt.type])
        name = f"S{len(consts)}"
        consts[name] = frozenset(types)
        return f"type({var}) in {name}"
    if kind == "array":
        _, dt, nd, layout, ro = t
        name = f"D{len(consts)}"
        consts[name] = dt
        fl = f"F{len(consts)}"
        consts[fl] = None
        cond = [f"isinstance({var}, _nd)", f"{var}.ndim == {nd}",
                f"({var}.dtype is {name} or {var}.dtype == {name})",
                f"({fl} := {var}.flags).aligned"]
        if layout == "C":
            cond.append(f"{fl}.c_contiguous")
        elif layout == "F":
            cond.append(f"{fl}.f_contiguous")
        if not ro:
            cond.append(f"{fl}.writeable")
        return "(" + " and ".join(cond) + ")"
    els = t[1]
    parts = [f"type({var}) is tuple", f"len({var}) == {len(els)}"]
    parts += [_check_expr(f"{var}[{k}]", e, consts) for k, e in enumerate(els)]
    return "(" + " and ".join(parts) + ")"


def make_checker(sig: str) -> Callable[[tuple], bool]:
    """``check(args) -> bool``: do ``args`` have exactly the types of ``sig``?

    Generated code, one boolean expression per signature (attribute tests only, no
    numba). Measured for the 20 arguments of integration's ``_rows_winsorized``: the
    check 3.5 us, the whole wrapped call 4.4 us against 2.8 us for numba's dispatcher
    (its typeof is C) -- noise next to a kernel call over a row chunk (~50 ms)."""
    types = parse_signature(sig)
    consts: dict = {}
    n = len(types)
    names = [f"a{i}" for i in range(n)]
    conds = [_check_expr(v, t, consts) for v, t in zip(names, types)]
    unpack = (", ".join(names) + ("," if n == 1 else "")) if n else "_"
    body = " and ".join(conds) if conds else "True"
    src = (f"def check(args):\n"
           f"    if len(args) != {n}:\n        return False\n"
           + (f"    {unpack} = args\n" if n else "")
           + f"    return bool({body})\n")
    ns = {"_nd": np.ndarray, **{k: v for k, v in consts.items() if v is not None}}
    exec(compile(src, f"<aot check {sig}>", "exec"), ns)
    return ns["check"]


def _describe(args: tuple) -> str:
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            lay = "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else "A"
            out.append(f"{a.dtype}[{a.ndim}d,{lay}{'' if a.flags.writeable else ',ro'}]")
        else:
            out.append(type(a).__name__)
    return "(" + ", ".join(out) + ")"


def entry_symbol(module: str, qualname: str, index: int) -> str:
    """The exported name of signature ``index`` of ``module.qualname``: readable and
    unique across modules (a short hash of the full name settles underscores)."""
    h = hashlib.sha1(f"{module}:{qualname}:{index}".encode()).hexdigest()[:6]
    return f"{module.rsplit('.', 1)[-1]}__{qualname.replace('.', '_')}__{index}_{h}"


# ----------------------------------------------------------------- extension

_EXT_LOCK = threading.Lock()
_EXT: Optional[tuple] = None     # (module or None, manifest dict, reason)
_FILE_OK: Dict[str, bool] = {}


def _ext_path() -> Path:
    env = os.environ.get("NAPARI_ASTRO_AOT", "").strip()
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[1]
            / (AOT_NAME + importlib.machinery.EXTENSION_SUFFIXES[0]))


def cpu_key() -> str:
    """What the extension's machine code depends on: the machine and (Linux) the CPU's
    model and feature flags, read without LLVM."""
    import platform

    info = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            seen = set()
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and key not in seen:
                    seen.add(key)
                    info += "|" + line.strip()
    except OSError:  # pragma: no cover - not Linux
        info += "|" + platform.processor()
    return hashlib.sha1(info.encode()).hexdigest()[:16]


def _load_ext() -> tuple:
    global _EXT
    if _EXT is not None:
        return _EXT
    with _EXT_LOCK:
        if _EXT is not None:
            return _EXT
        _EXT = _open_ext()
        if _truthy("NAPARI_ASTRO_AOT_DEBUG"):
            print(f"napari-astro AOT: {_EXT[2]}", file=sys.stderr)
        return _EXT


def _open_ext() -> tuple:
    if _truthy("NAPARI_ASTRO_NO_AOT"):
        return None, {}, "disabled (NAPARI_ASTRO_NO_AOT)"
    path = _ext_path()
    man_path = path.with_name(path.name.split(".", 1)[0] + ".json")
    if not path.is_file() or not man_path.is_file():
        return None, {}, f"no extension at {path}"
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, ValueError) as exc:
        return None, {}, f"unreadable manifest {man_path}: {exc}"
    want = {"python": sys.implementation.cache_tag, "numpy": np.__version__,
            "cpu": cpu_key()}
    for k, v in want.items():
        if manifest.get(k) != v:
            return None, {}, f"extension built for {k} {manifest.get(k)}, not {v}"
    try:
        spec = importlib.util.spec_from_file_location(AOT_FULLNAME, str(path))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        build_id = getattr(mod, BUILD_ID_SYMBOL)()
    except Exception as exc:  # noqa: BLE001 - a broken extension means JIT
        return None, {}, f"cannot load {path}: {exc!r}"
    if build_id != manifest.get("build_id"):
        return None, {}, f"{path} and {man_path} are from different builds"
    return mod, manifest, f"loaded {path} ({len(manifest.get('entries', {}))} entries)"


def source_hash(path: Union[str, Path]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


def _module_file(name: str) -> Optional[str]:
    mod = sys.modules.get(name)
    f = getattr(mod, "__file__", None)
    if f:
        return f
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def _module_fresh(name: str, manifest: dict) -> bool:
    """Was the extension built from the current source of ``name`` and of every module
    its kernels took code or constants from (the manifest's ``deps``)?"""
    info = manifest.get("modules", {}).get(name)
    if info is None:
        return False
    for dep, digest in info.get("deps", {}).items():
        ok = _FILE_OK.get(dep)
        if ok is None:
            f = _module_file(dep)
            try:
                ok = f is not None and source_hash(f) == digest
            except OSError:
                ok = False
            _FILE_OK[dep] = ok
        if not ok:
            return False
    return True


def aot_status() -> str:
    """Why the AOT route is or is not used (for logs and ``--version`` like reports)."""
    return _load_ext()[2]


# --------------------------------------------------------------------- Kernel

class Kernel:
    """A kernel decorated with :func:`njit`: calls go to its AOT entry when the
    arguments match, else to its numba dispatcher (created on first need)."""

    def __init__(self, py_func: Callable, options: dict, aot: Sequence[str]):
        self.py_func = py_func
        self.options = dict(options)
        # what numba's inline pass reads on a dispatcher-like global
        self.targetoptions = {k: v for k, v in options.items()
                              if k not in ("cache", "locals")}
        self.targetoptions.setdefault("nopython", True)
        self.aot_signatures: Tuple[str, ...] = tuple(aot)
        self._checks = [make_checker(s) for s in self.aot_signatures]
        self._route: Optional[list] = None
        self._dispatcher = None
        self._warned = False
        self.called_from_python = False
        self._lock = threading.Lock()
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__
        self.__wrapped__ = py_func

    def __repr__(self) -> str:
        return f"<napari_astro kernel {self.__module__}.{self.__qualname__}>"

    def __reduce__(self):
        # pickled by name (dask, multiprocessing): the receiver imports the module
        return _lookup_kernel, (self.__module__, self.__qualname__)

    # -- the JIT side
    @property
    def dispatcher(self):
        """numba's dispatcher for this function (imports numba)."""
        d = self._dispatcher
        if d is None:
            # created outside any lock (this may run inside numba's compiler lock, as
            # another kernel's compilation types this one); the first one set wins
            d = load_numba().njit(**self.options)(self.py_func)
            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = d
                d = self._dispatcher
        return d

    @property
    def _numba_type_(self):
        # numba types a global (another kernel calling this one) through this
        return self.dispatcher._numba_type_

    def __getattr__(self, name: str):
        # signatures, overloads, stats, inspect_types, _cache ...: numba's dispatcher
        if name.startswith("__") or name in ("_dispatcher", "_route", "_checks"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)

    # -- the AOT side
    def _resolve(self) -> list:
        route = []
        if self.aot_signatures:
            mod, manifest, _ = _load_ext()
            if mod is not None and _module_fresh(self.__module__, manifest):
                entries = manifest.get("entries", {})
                for j, (sig, chk) in enumerate(zip(self.aot_signatures, self._checks)):
                    sym = entry_symbol(self.__module__, self.__qualname__, j)
                    e = entries.get(sym)
                    fn = getattr(mod, sym, None)
                    if fn is not None and e is not None and e.get("signature") == sig:
                        route.append((chk, fn))
        self._route = route
        return route

    @property
    def aot_functions(self) -> list:
        """The extension's functions this kernel calls, one per usable signature."""
        route = self._route if self._route is not None else self._resolve()
        return [fn for _, fn in route]

    def __call__(self, *args, **kwargs):
        route = self._route
        if route is None:
            route = self._resolve()
        if not kwargs:
            for chk, fn in route:
                if chk(args):
                    return fn(*args)
        self.called_from_python = True        # an entry kernel (build_aot --suggest)
        if not self._warned and _truthy("NAPARI_ASTRO_AOT_DEBUG"):
            self._warned = True
            why = ("no aot= signature" if not self.aot_signatures
                   else "keywords" if kwargs else "types" if route else "no AOT entry")
            print(f"napari-astro AOT: {self.__module__}.{self.__qualname__} falls back "
                  f"to numba for {_describe(args)} ({why})", file=sys.stderr)
        return self.dispatcher(*args, **kwargs)


def _lookup_kernel(module: str, qualname: str) -> "Kernel":
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def njit(*args, aot: Union[None, str, Sequence[str]] = None, **options):
    """``numba.njit`` that does not import numba: ``@njit``, ``@njit(**options)`` or
    ``@njit(**options, aot=signature(s))`` for an entry kernel (see the module doc).
    A signature as first positional argument is not supported (give ``aot=``)."""
    if aot is None:
        sigs: Tuple[str, ...] = ()
    elif isinstance(aot, str):
        sigs = (aot,)
    else:
        sigs = tuple(aot)
    if sigs and options.get("parallel"):
        raise ValueError("aot= is not available for parallel=True kernels (pycc has "
                         "no parfors); use run_in_threads over a nogil kernel")
    unknown = set(options) - set(_NUMBA_OPTS)
    if unknown:
        raise TypeError(f"njit: unknown option(s) {sorted(unknown)}")

    def wrap(func: Callable) -> Kernel:
        k = Kernel(func, options, sigs)
        _REGISTRY.setdefault(func.__module__, []).append(k)
        return k

    if args:
        if len(args) == 1 and callable(args[0]) and not options and not sigs:
            return wrap(args[0])
        raise TypeError("njit: give signatures as aot=..., options as keywords")
    return wrap


def registered(module: Optional[str] = None) -> List[Kernel]:
    """Every kernel decorated so far (of ``module``), in definition order."""
    if module is not None:
        return list(_REGISTRY.get(module, ()))
    return [k for ks in _REGISTRY.values() for k in ks]


def aot_entries(modules: Optional[Sequence[str]] = None) -> List[Tuple[str, str, Tuple[str, ...], Kernel]]:
    """``(module, qualname, signatures, kernel)`` of every registered entry kernel
    (those with ``aot=``) of ``modules`` (default: all imported so far): what
    ``tools/build_aot.py`` compiles."""
    out = []
    for mod, ks in _REGISTRY.items():
        if modules is not None and mod not in modules:
            continue
        for k in ks:
            if k.aot_signatures:
                out.append((mod, k.__qualname__, k.aot_signatures, k))
    return out
