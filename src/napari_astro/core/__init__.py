"""Pure numerical core: no napari, Qt or magicgui imports allowed here."""

# Kernels are called from several threads at once (registration works on two frames
# at a time); numba's fallback "workqueue" layer aborts on concurrent use, so ask for
# a thread-safe layer (TBB or OpenMP; tools/install.sh installs both libraries).
try:  # pragma: no cover - depends on the installation
    import numba as _numba

    if _numba.config.THREADING_LAYER == "default":
        _numba.config.THREADING_LAYER = "threadsafe"
except ImportError:  # pragma: no cover
    pass
