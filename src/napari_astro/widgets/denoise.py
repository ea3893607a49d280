"""Noise-reduction docks: wavelet MLT (``post.mlt``) and TGV denoise (``post.tgv``).

Both are plain :class:`~napari_astro.widgets._base.ImageStepWidget` subclasses: the
form, the mask picker, the live region preview and Run/Cancel come from the base; the
numerics are :mod:`napari_astro.core.wavelets` and :mod:`napari_astro.core.tgv`. The
status line shows the fine-scale noise before and after (the step's extras).
"""

from __future__ import annotations

from typing import Any

from ._base import ImageStepWidget

__all__ = ["MLTWidget", "TGVWidget"]


class _DenoiseWidget(ImageStepWidget):
    def show_extras(self, result: Any) -> None:
        from ..pipeline.post.denoise import summary_line

        if result.extras.get("noise"):
            self.set_status(summary_line(result))


class MLTWidget(_DenoiseWidget):
    """Multiscale linear transform noise reduction (starlet layers)."""

    step_id = "post.mlt"


class TGVWidget(_DenoiseWidget):
    """Total generalised variation denoise."""

    step_id = "post.tgv"
