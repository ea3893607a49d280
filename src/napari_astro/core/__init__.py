"""Pure numerical core: no napari, Qt or magicgui imports allowed here."""

import os as _os
import sys as _sys

# Kernels are called from several threads at once (registration works on two frames
# at a time); numba's fallback "workqueue" layer aborts on concurrent use, so ask for
# a thread-safe layer (TBB or OpenMP; tools/install.sh installs both libraries).
# Without importing numba here (0.4 s CPU and 159 MB of resident memory for a module
# that only needs numpy, e.g. the CLI's errors): numba reads NUMBA_THREADING_LAYER
# when it is imported; once it is, its config is set directly.
if "numba" in _sys.modules and hasattr(_sys.modules["numba"], "config"):  # pragma: no cover
    if _sys.modules["numba"].config.THREADING_LAYER == "default":
        _sys.modules["numba"].config.THREADING_LAYER = "threadsafe"
elif _os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower() in ("", "default"):
    _os.environ["NUMBA_THREADING_LAYER"] = "threadsafe"
