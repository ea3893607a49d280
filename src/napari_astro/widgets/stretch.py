"""Stretch dock widgets: auto-stretch (display + histogram transformation), arcsinh, GHS.

:class:`AutoStretchWidget`
    (a) a *display* stretch of the selected layer from the auto-STF: napari's
    contrast limits and gamma are set, the data are untouched; "back it off" with a
    lower target background or a deeper shadows clip. An RGB layer has one
    contrast-limits pair in napari, so the display is the linked STF there
    (per-channel display of RGB layers lives in ``widgets/_layers.py``).
    (b) *Apply* makes a stretch permanent through the histogram transformation
    (``post.ht``): "Use STF values" fills its shadows/midtones/highlights from the
    STF (linked or per channel); the histogram of the layer is drawn with the
    transfer curve over it.
:class:`ArcsinhWidget`, :class:`GHSWidget`
    The registry steps ``post.arcsinh`` and ``post.ghs`` (GHS with its curve over the
    histogram).

The numerics are :mod:`napari_astro.core.stretch`; nothing here computes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (QCheckBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QPushButton,
                            QVBoxLayout, QWidget)

from ._base import ImageStepWidget
from ._controls import labelled
from ._plots import CurvePlot

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["AutoStretchWidget", "ArcsinhWidget", "GHSWidget"]

_CURVE_POINTS = 256


def _channel_first(layer: Any):
    """A channel-first float view of an image layer's data (``(H, W)`` or ``(3, H, W)``)."""
    import numpy as np

    from ._layers import layer_to_image

    try:
        return layer_to_image(layer).data
    except Exception:  # noqa: BLE001 - not one of ours: read the raw array
        data = np.asarray(layer.data, dtype=np.float32)
        return np.moveaxis(data, -1, 0) if getattr(layer, "rgb", False) else data


def _show_linear(layer: Any) -> None:
    """Make an RGB layer show its linear data (not a per-channel display copy) so that
    contrast limits and gamma act on the real values."""
    try:
        from ._layers import set_linked_display
    except ImportError:  # no per-channel display copies in this version
        return
    set_linked_display(layer, True)


class _HistogramMixin:
    """A histogram of the picked layer with the step's transfer curve(s) on top."""

    plot: CurvePlot

    def add_plot(self) -> None:
        self.plot = CurvePlot()
        self.plot.setObjectName("histogram")
        self.plot.setToolTip("histogram of the layer (log counts) and the transfer curve")
        self._layout.addWidget(self.plot)
        self._hist_layer = None
        self.image_picker.widget.changed.connect(self.refresh_plot)
        if self.form is not None:
            self.form.connect(self.refresh_plot)

    def curves(self, n_channels: int) -> dict:
        return {}

    def refresh_plot(self, *_: Any) -> None:
        from ..core.stretch import histogram

        layer = self.image_picker.value
        if layer is None:
            self.plot.set_histogram(None)
            self.plot.set_curves({})
            return
        data = _channel_first(layer)
        if layer is not self._hist_layer:
            self._hist_layer = layer
            self._hist_channels = 1 if data.ndim == 2 else data.shape[0]
            self.plot.set_histogram(histogram(data))
        try:
            self.plot.set_curves(self.curves(self._hist_channels))
        except (ValueError, TypeError):  # a half-typed value in the form: no curve yet
            self.plot.set_curves({})


class AutoStretchWidget(_HistogramMixin, ImageStepWidget):
    """Auto-stretch: STF display stretch, and the histogram transformation to apply it."""

    step_id = "post.ht"
    title = "Auto-stretch and histogram transformation"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, parent)
        # Start from the auto-STF: the identity transformation on a linear stack shows
        # a black preview and applies nothing (seen in the dock's screenshot).
        try:
            self.form["auto"].value = True
        except (KeyError, AttributeError):
            pass
        self.refresh_plot()

    def build(self) -> None:
        super().build()
        box = QGroupBox("Screen stretch (display only)")
        lay = QVBoxLayout(box)
        self.linked_box = QCheckBox("linked (one stretch for all channels)")
        self.linked_box.setObjectName("stf_linked")
        self.linked_box.setChecked(True)
        self.linked_box.setToolTip("RGB layers are always shown linked (napari has one "
                                   "contrast-limits pair per layer)")
        self.shadows_spin = QDoubleSpinBox()
        self.shadows_spin.setObjectName("stf_shadows_clip")
        self.shadows_spin.setRange(-10.0, 0.0)
        self.shadows_spin.setSingleStep(0.1)
        self.shadows_spin.setValue(-2.8)
        self.shadows_spin.setToolTip("shadows clip in normalised MAD from the median "
                                     "(more negative: less clipping)")
        self.target_spin = QDoubleSpinBox()
        self.target_spin.setObjectName("stf_target_background")
        self.target_spin.setRange(0.01, 0.9)
        self.target_spin.setSingleStep(0.01)
        self.target_spin.setDecimals(3)
        self.target_spin.setValue(0.25)
        self.target_spin.setToolTip("displayed brightness of the sky background: lower it "
                                    "to back the stretch off")
        lay.addWidget(self.linked_box)
        lay.addWidget(labelled("shadows clip [sigma]", self.shadows_spin))
        lay.addWidget(labelled("target background", self.target_spin))
        row = QHBoxLayout()
        self.display_button = QPushButton("Stretch display")
        self.display_button.setObjectName("stf_display")
        self.display_button.setToolTip("set the layer's contrast limits and gamma from the STF; "
                                       "the data are not changed")
        self.display_button.clicked.connect(self.display_stretch)
        self.reset_button = QPushButton("Linear display")
        self.reset_button.setObjectName("stf_reset")
        self.reset_button.clicked.connect(self.reset_display)
        self.use_button = QPushButton("Use STF values")
        self.use_button.setObjectName("stf_to_ht")
        self.use_button.setToolTip("fill the histogram transformation below with the STF "
                                   "(linked or per channel) so that Apply makes it permanent")
        self.use_button.clicked.connect(self.use_stf_values)
        for b in (self.display_button, self.reset_button, self.use_button):
            row.addWidget(b)
        lay.addLayout(row)
        self._layout.addWidget(box)
        self._displayed = False
        for spin in (self.shadows_spin, self.target_spin):
            spin.valueChanged.connect(self._display_controls_changed)
        self.linked_box.toggled.connect(self._display_controls_changed)

    def build_after_form(self) -> None:
        super().build_after_form()
        self.add_plot()

    # -- (a) display stretch -----------------------------------------------------------
    def _display_controls_changed(self, *_: Any) -> None:
        if self._displayed:  # live "back it off" while the display stretch is on
            self.display_stretch()

    def stf_settings(self) -> dict:
        return dict(shadows_clip=float(self.shadows_spin.value()),
                    target_background=float(self.target_spin.value()))

    def display_stretch(self) -> None:
        """Set contrast limits and gamma of the picked layer from the STF (data untouched)."""
        from ..core.stretch import display_stretch

        layer = self.image_picker.value
        if layer is None:
            self.set_status("pick an image layer first", error=True)
            return
        data = _channel_first(layer)
        rgb = bool(getattr(layer, "rgb", False))
        linked = True if rgb else self.linked_box.isChecked()
        settings = display_stretch(data, linked=linked, **self.stf_settings())
        lo, hi, gamma = settings[0]
        if rgb:
            _show_linear(layer)
        layer.contrast_limits = (lo, hi)
        layer.gamma = gamma
        astro = layer.metadata.get("astro") if isinstance(layer.metadata, dict) else None
        if isinstance(astro, dict) and rgb:
            astro["display"] = {"mode": "linked", "limits": [(lo, hi)] * 3, "gamma": gamma}
        self._displayed = True
        self.set_status(f"display: limits {lo:.5f}..{hi:.5f}, gamma {gamma:.3f}"
                        + (" (linked: RGB layer)" if rgb and not self.linked_box.isChecked() else ""))

    def reset_display(self) -> None:
        """Linear display: contrast limits 0..1, gamma 1."""
        layer = self.image_picker.value
        self._displayed = False
        if layer is not None:
            if getattr(layer, "rgb", False):
                _show_linear(layer)
            layer.contrast_limits = (0.0, 1.0)
            layer.gamma = 1.0

    # -- (b) the permanent stretch -----------------------------------------------------
    def use_stf_values(self) -> None:
        """Fill the HT form from the STF of the picked layer."""
        from ..core.stretch import stf_channel_parameters

        layer = self.image_picker.value
        if layer is None:
            self.set_status("pick an image layer first", error=True)
            return
        data = _channel_first(layer)
        stf = stf_channel_parameters(data, linked=self.linked_box.isChecked(), **self.stf_settings())
        cur = self.params()
        if len(set(stf)) == 1:
            s, m, h = stf[0]
            new = type(cur)(shadows=(round(s, 6),), midtones=(round(m, 6),),
                            highlights=(round(h, 6),), auto=False, linked=cur.linked)
        else:
            new = type(cur)(shadows=tuple(round(t[0], 6) for t in stf),
                            midtones=tuple(round(t[1], 6) for t in stf),
                            highlights=tuple(round(t[2], 6) for t in stf),
                            auto=False, linked=cur.linked)
        self.form.set_value(new)
        self.refresh_plot()

    def curves(self, n_channels: int) -> dict:
        import numpy as np

        from ..core.stretch import histogram_transform

        p = self.params()
        if p.auto:
            return {}
        x = np.linspace(0.0, 1.0, _CURVE_POINTS, dtype=np.float32)
        n = max(len(p.shadows), len(p.midtones), len(p.highlights))
        n = 3 if (n == 3 and n_channels == 3) else 1
        grid = np.broadcast_to(x, (n, 1, x.size))
        pick = (lambda v: list(v) if len(v) == n else [v[0]] * n)
        y = histogram_transform(grid, pick(p.shadows), pick(p.midtones), pick(p.highlights))
        names = ("R", "G", "B") if n == 3 else ("HT",)
        return {name: (x, y[i, 0]) for i, name in enumerate(names)}


class ArcsinhWidget(ImageStepWidget):
    """Colour-preserving arcsinh stretch (``post.arcsinh``)."""

    step_id = "post.arcsinh"


class GHSWidget(_HistogramMixin, ImageStepWidget):
    """Generalised hyperbolic stretch (``post.ghs``) with its curve over the histogram."""

    step_id = "post.ghs"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, parent)
        self.refresh_plot()

    def build_after_form(self) -> None:
        super().build_after_form()
        self.add_plot()

    def curves(self, n_channels: int) -> dict:
        import numpy as np

        from ..core.stretch import ghs_curve
        from ..pipeline.post.stretch import ghs_symmetry_point

        p = self.params()
        sp = p.SP
        if sp is None:
            layer = self.image_picker.value
            if layer is None:
                return {}
            from ..core.image import AstroImage

            sp = ghs_symmetry_point(AstroImage(_channel_first(layer)), p)
        x = np.linspace(0.0, 1.0, _CURVE_POINTS)
        return {"GHS": (x, ghs_curve(x, D=p.D, b=p.b, SP=sp, LP=p.LP, HP=p.HP))}
