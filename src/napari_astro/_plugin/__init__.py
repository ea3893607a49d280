"""Holds the npe2 manifest (``napari.yaml``) that napari's plugin discovery reads.

The ``napari.manifest`` entry point names this subpackage rather than the top-level
package on purpose: npe2 locates a manifest with ``importlib.util.find_spec``, which
imports a submodule's parent package, so naming ``napari_astro._plugin`` runs
``napari_astro/__init__`` at discovery. That is where napari-astro registers itself as
the preferred reader for FITS/XISF/raw patterns that have no preference yet, so the
very first file dropped on napari opens with napari-astro, without a reader dialog and
without the user changing settings (a user's own choice is never replaced).
"""
