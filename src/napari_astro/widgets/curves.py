"""The Curves dock: a curve editor (a monotone spline through control points the user
drags) for RGB/K, R, G, B and CIE L*, a saturation factor, the image's histogram
under the curve, and the result live on the view (the base widget's Preview) or on the
whole image (Apply).

Editor: click adds a point (and drags it), drag moves one (its x stays between its
neighbours, the end points move only up and down), right-click deletes one. Each
channel's curve is one field of :class:`~napari_astro.pipeline.post.curves.
CurvesParams` (the text fields under "Advanced" show the same points), so Apply, the
HISTORY line and a saved recipe hold exactly the curves drawn.
"""

from __future__ import annotations

from typing import Any, Sequence

from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from ._base import ImageStepWidget
from ._controls import labelled

__all__ = ["CurveEditor", "CurvesWidget", "CHANNELS"]

#: Editor channel label -> CurvesParams field.
CHANNELS = {"RGB/K": "rgb", "R": "red", "G": "green", "B": "blue", "L*": "lightness"}
_CURVE_COLOURS = {"rgb": "#e0e0e0", "red": "#ff5555", "green": "#55dd55", "blue": "#5599ff",
                  "lightness": "#ffd966"}
_HIST_COLOURS = ("#ff5555", "#55dd55", "#5599ff")
_PICK_PX = 8.0   # a press within this many pixels of a point grabs it
_MIN_DX = 1e-3   # control points keep at least this x distance


class CurveEditor(QWidget):
    """A square curve editor on [0, 1] x [0, 1].

    Attributes
    ----------
    points : list of [x, y]
        Control points in increasing x, always starting at x = 0 and ending at x = 1.
    changed : Signal
        Emitted after every edit (add, move, delete, reset).
    """

    changed = Signal()
    MARGIN = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("curve_editor")
        self.setMinimumSize(220, 220)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(False)
        self.points: list[list[float]] = [[0.0, 0.0], [1.0, 1.0]]
        self.colour = QColor(_CURVE_COLOURS["rgb"])
        self.hist: Any = None
        self._drag: int | None = None
        self.setToolTip("click: add a point; drag: move it; right-click: delete it")

    def heightForWidth(self, w: int) -> int:  # noqa: N802 - Qt override
        return w

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    # -- state ---------------------------------------------------------------------------
    def set_points(self, flat: Sequence[float], *, emit: bool = False) -> None:
        """Show a curve given as flat ``x1, y1, x2, y2, ...`` (fixed ends added)."""
        from ..core.curves import curve_points

        pts = curve_points(tuple(flat) if flat else ())
        self.points = [[float(x), float(y)] for x, y in pts]
        self.update()
        if emit:
            self.changed.emit()

    def flat_points(self) -> tuple:
        """The curve as the params store it: flat floats, () for the identity."""
        from ..core.curves import is_identity

        flat = tuple(round(float(v), 4) for p in self.points for v in p)
        return () if is_identity(flat) else flat

    def set_histogram(self, counts: Any, colours: Sequence[str] = ()) -> None:
        """``(C, bins)`` counts drawn under the curve (None: none)."""
        self.hist = None if counts is None else (counts, tuple(colours))
        self.update()

    def set_colour(self, colour: str) -> None:
        self.colour = QColor(colour)
        self.update()

    # -- geometry ------------------------------------------------------------------------
    def _plot_rect(self) -> QRectF:
        m = self.MARGIN
        return QRectF(m, m, max(self.width() - 2 * m, 1), max(self.height() - 2 * m, 1))

    def to_pixel(self, x: float, y: float) -> QPointF:
        r = self._plot_rect()
        return QPointF(r.left() + x * r.width(), r.bottom() - y * r.height())

    def to_value(self, pos: QPointF) -> tuple[float, float]:
        r = self._plot_rect()
        x = (pos.x() - r.left()) / r.width()
        y = (r.bottom() - pos.y()) / r.height()
        return min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)

    def _nearest(self, pos: QPointF) -> int | None:
        best, best_d = None, _PICK_PX
        for i, (x, y) in enumerate(self.points):
            p = self.to_pixel(x, y)
            d = ((p.x() - pos.x()) ** 2 + (p.y() - pos.y()) ** 2) ** 0.5
            if d <= best_d:
                best, best_d = i, d
        return best

    # -- editing -------------------------------------------------------------------------
    def add_point(self, x: float, y: float) -> int | None:
        """Insert a point (None if too close in x to an existing one); returns its index."""
        for px, _ in self.points:
            if abs(px - x) < _MIN_DX:
                return None
        idx = next(i for i, (px, _) in enumerate(self.points) if px > x)
        self.points.insert(idx, [x, y])
        self.update()
        self.changed.emit()
        return idx

    def move_point(self, i: int, x: float, y: float) -> None:
        """Move point ``i``; x stays between its neighbours, end points keep their x."""
        n = len(self.points)
        if i == 0:
            x = 0.0
        elif i == n - 1:
            x = 1.0
        else:
            x = min(max(x, self.points[i - 1][0] + _MIN_DX), self.points[i + 1][0] - _MIN_DX)
        self.points[i] = [x, min(max(y, 0.0), 1.0)]
        self.update()
        self.changed.emit()

    def delete_point(self, i: int) -> bool:
        if i in (0, len(self.points) - 1):
            return False
        del self.points[i]
        self.update()
        self.changed.emit()
        return True

    def reset(self) -> None:
        self.set_points((), emit=True)

    # -- mouse ---------------------------------------------------------------------------
    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        pos = event.position() if hasattr(event, "position") else QPointF(event.pos())
        hit = self._nearest(pos)
        if event.button() == Qt.MouseButton.RightButton:
            if hit is not None:
                self.delete_point(hit)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        if hit is None:
            hit = self.add_point(*self.to_value(pos))
        self._drag = hit

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if self._drag is None:
            return
        pos = event.position() if hasattr(event, "position") else QPointF(event.pos())
        self.move_point(self._drag, *self.to_value(pos))

    def mouseReleaseEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self._drag = None

    # -- drawing -------------------------------------------------------------------------
    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        import numpy as np

        from ..core.curves import curve_function

        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self._plot_rect()
        p.fillRect(r, QColor("#1e1e1e"))
        p.setPen(QPen(QColor("#3a3a3a"), 1))
        for k in range(1, 4):
            x = r.left() + r.width() * k / 4
            y = r.top() + r.height() * k / 4
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
        if self.hist is not None:
            counts, colours = self.hist
            counts = np.asarray(counts, dtype=float)
            top = float(np.percentile(counts, 99.5)) or float(counts.max()) or 1.0
            for c, row in enumerate(counts):
                colour = QColor(colours[c] if c < len(colours) else "#888888")
                colour.setAlpha(70)
                path = QPainterPath(QPointF(r.left(), r.bottom()))
                nb = row.size
                for b, v in enumerate(row):
                    path.lineTo(QPointF(r.left() + r.width() * (b + 0.5) / nb,
                                        r.bottom() - min(v / top, 1.0) * r.height()))
                path.lineTo(QPointF(r.right(), r.bottom()))
                path.closeSubpath()
                p.fillPath(path, colour)
        p.setPen(QPen(QColor("#666666"), 1, Qt.PenStyle.DashLine))
        p.drawLine(self.to_pixel(0, 0), self.to_pixel(1, 1))
        xs = np.linspace(0.0, 1.0, 201)
        flat = tuple(v for pt in self.points for v in pt)
        ys = np.clip(curve_function(flat)(xs), 0.0, 1.0)
        p.setPen(QPen(self.colour, 2))
        p.drawPolyline(QPolygonF([self.to_pixel(float(x), float(y)) for x, y in zip(xs, ys)]))
        p.setBrush(self.colour)
        p.setPen(Qt.PenStyle.NoPen)
        for x, y in self.points:
            p.drawEllipse(self.to_pixel(x, y), 4.0, 4.0)
        p.end()


class CurvesWidget(ImageStepWidget):
    """Curves and saturation, with a curve editor, through an optional mask."""

    step_id = "post.curves"

    def build(self) -> None:
        super().build()
        self.channel = QComboBox()
        self.channel.setObjectName("channel")
        self.channel.addItems(list(CHANNELS))
        self.channel.setToolTip("which curve the editor shows: RGB/K (all channels), R, G, "
                                "B, or CIE L* (lightness; colours keep their hue)")
        self._layout.addWidget(labelled("curve", self.channel))
        self.editor = CurveEditor()
        self._layout.addWidget(self.editor)
        row = QHBoxLayout()
        self.reset_button = QPushButton("Reset curve")
        self.reset_button.setObjectName("reset_curve")
        self.reset_button.clicked.connect(self.editor.reset)
        self.readout = QLabel("")
        self.readout.setObjectName("readout")
        row.addWidget(self.reset_button)
        row.addWidget(self.readout, 1)
        self._layout.addLayout(row)
        self._syncing = False
        self.channel.currentIndexChanged.connect(self._channel_changed)
        self.editor.changed.connect(self._editor_changed)
        self.image_picker.widget.changed.connect(self.refresh_histogram)

    def build_after_form(self) -> None:
        super().build_after_form()
        assert self.form is not None
        for field in CHANNELS.values():
            self.form[field].changed.connect(self._field_changed)
        self.refresh_histogram()

    # -- sync between the editor and the form -----------------------------------------
    @property
    def field(self) -> str:
        """The CurvesParams field the editor edits."""
        return CHANNELS[self.channel.currentText()]

    def _channel_changed(self, *_: Any) -> None:
        self.editor.set_colour(_CURVE_COLOURS[self.field])
        self._load_field()
        self.refresh_histogram()

    def _load_field(self) -> None:
        from ..core.curves import parse_points
        from ..core.errors import BadInputError

        assert self.form is not None
        try:
            flat = parse_points(self.form[self.field].value or ()).ravel()
        except BadInputError as exc:
            self.set_status(str(exc), error=True)
            return
        self._syncing = True
        try:
            self.editor.set_points(tuple(flat))
        finally:
            self._syncing = False
        self._show_readout()

    def _editor_changed(self) -> None:
        if self._syncing:
            return
        assert self.form is not None
        self._syncing = True
        try:
            self.form[self.field].value = self.editor.flat_points()  # -> form changed -> preview
        finally:
            self._syncing = False
        self._show_readout()

    def _field_changed(self) -> None:
        if not self._syncing:
            self._load_field()

    def _show_readout(self) -> None:
        pts = self.editor.points
        self.readout.setText(f"{len(pts)} points: " + "  ".join(f"{x:.2f}:{y:.2f}" for x, y in pts))

    def set_curve(self, field: str, flat: Sequence[float]) -> None:
        """Script/test helper: select ``field``'s curve and set its points."""
        label = next(k for k, v in CHANNELS.items() if v == field)
        self.channel.setCurrentText(label)
        self.editor.set_points(tuple(flat), emit=True)

    # -- histogram ---------------------------------------------------------------------
    def refresh_histogram(self, *_: Any) -> None:
        from ..core.curves import histogram
        from ..core.errors import BadInputError

        try:
            image = self.input_image()
        except (BadInputError, ValueError):
            self.editor.set_histogram(None)
            return
        field = self.field
        if field == "lightness":
            self.editor.set_histogram(histogram(image, lightness=True), ("#ffd966",))
            return
        counts = histogram(image)
        if image.is_color and field in ("red", "green", "blue"):
            k = ("red", "green", "blue").index(field)
            self.editor.set_histogram(counts[k:k + 1], (_HIST_COLOURS[k],))
        else:
            self.editor.set_histogram(counts, _HIST_COLOURS if image.is_color else ("#aaaaaa",))
