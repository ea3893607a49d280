"""napari widgets: thin layers over the library (one per step)."""
