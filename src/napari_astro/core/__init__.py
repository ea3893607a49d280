"""Pure numerical core: no napari, Qt or magicgui imports allowed here."""
