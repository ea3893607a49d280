"""Small plots drawn with QPainter (matplotlib is not a dependency).

:class:`Sparklines`: one band per series of per-frame values (FWHM, stars,
background), excluded frames in red. :class:`CurvePlot`: a histogram with optional
curves on top (for stretch and curves widgets).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._controls import fmt_value as _fmt

__all__ = ["Sparklines", "CurvePlot"]


class Sparklines(QWidget):
    """Small per-frame line plots (one row per series), drawn with QPainter.

    matplotlib is not a dependency and a full plot widget would be overkill for
    "which frames are bad": each series gets a band with its min/max and the frames
    marked ``excluded`` are drawn in red.
    """

    COLORS = ("#66c2ff", "#ffcc66", "#99e699", "#ff99cc")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[float]] = {}
        self.excluded: set[int] = set()
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_series(self, series: Mapping[str, Sequence[float]], excluded: Sequence[int] = ()) -> None:
        self.series = {k: [float(v) if v is not None else math.nan for v in vals]
                       for k, vals in series.items()}
        self.excluded = set(excluded)
        self.setMinimumHeight(max(60, 42 * len(self.series)))
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if not self.series:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        band = h / len(self.series)
        left, right = 96, 8
        fg = self.palette().windowText().color()
        for k, (name, vals) in enumerate(self.series.items()):
            top = k * band + 4
            bh = band - 10
            finite = [v for v in vals if math.isfinite(v)]
            p.setPen(fg)
            lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
            p.drawText(QRectF(2, top, left - 6, bh), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                       f"{name}\n{_fmt(lo)}–{_fmt(hi)}")
            if len(vals) < 1 or not finite:
                continue
            span = hi - lo or 1.0
            n = len(vals)

            def xy(i: int, v: float) -> QPointF:
                x = left + (w - left - right) * (i / (n - 1) if n > 1 else 0.5)
                y = top + bh - (v - lo) / span * bh
                return QPointF(x, y)

            p.setPen(QPen(QColor("#555555"), 1))
            p.drawLine(QPointF(left, top + bh), QPointF(w - right, top + bh))
            pts = [xy(i, v) for i, v in enumerate(vals) if math.isfinite(v)]
            p.setPen(QPen(QColor(self.COLORS[k % len(self.COLORS)]), 1.6))
            p.drawPolyline(QPolygonF(pts))
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    continue
                bad = i in self.excluded
                p.setBrush(QColor("#ff4444") if bad else QColor(self.COLORS[k % len(self.COLORS)]))
                p.setPen(Qt.PenStyle.NoPen)
                r = 3.5 if bad else 2.2
                p.drawEllipse(xy(i, v), r, r)
        p.end()


class CurvePlot(QWidget):
    """A histogram (log counts) per channel with curves drawn over it, in [0, 1] x [0, 1].

    ``set_histogram(counts)`` takes ``(C, bins)`` or ``(bins,)`` counts (e.g.
    :func:`napari_astro.core.stretch.histogram`); ``set_curves({"name": (x, y)})``
    draws transfer curves (a stretch, a curves step) on top. Display only.
    """

    COLORS = ("#ff6666", "#66dd66", "#6699ff", "#dddddd")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts: list[list[float]] = []
        self.curves: dict[str, tuple[list[float], list[float]]] = {}
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_histogram(self, counts: Any) -> None:
        rows = counts if counts is not None else []
        rows = [rows] if len(rows) and not hasattr(rows[0], "__len__") else rows
        self.counts = [[float(v) for v in r] for r in rows]
        self.update()

    def set_curves(self, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> None:
        self.curves = {k: ([float(v) for v in x], [float(v) for v in y])
                       for k, (x, y) in curves.items()}
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width() - 4, self.height() - 4
        p.setPen(QPen(QColor("#555555"), 1))
        p.drawRect(QRectF(2, 2, w, h))
        n_ch = len(self.counts)
        for k, row in enumerate(self.counts):
            if not row:
                continue
            logs = [math.log1p(max(v, 0.0)) for v in row]
            top = max(logs) or 1.0
            color = QColor(self.COLORS[k % 3] if n_ch > 1 else self.COLORS[3])
            color.setAlpha(200)
            p.setPen(QPen(color, 1.2))
            n = len(logs)
            pts = [QPointF(2 + w * i / max(n - 1, 1), 2 + h - h * v / top)
                   for i, v in enumerate(logs)]
            p.drawPolyline(QPolygonF(pts))
        for k, (x, y) in enumerate(self.curves.values()):
            p.setPen(QPen(QColor("#ffcc66" if k == 0 else self.COLORS[k % 4]), 1.8))
            pts = [QPointF(2 + w * min(max(a, 0.0), 1.0), 2 + h - h * min(max(b, 0.0), 1.0))
                   for a, b in zip(x, y)]
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
        p.end()
