"""Image steps (post-processing, masks, export), one module per step or family.

Each module defines its parameter dataclass(es) and calls
:func:`napari_astro.pipeline.registry.define_step`; :func:`registry.load_all` imports
every module here, so adding a step needs no edit elsewhere. Modules import core
lazily inside their runners so that ``napari-astro --help`` stays fast.
"""
