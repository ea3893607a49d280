"""Small plots drawn with QPainter (matplotlib is not a dependency).

:class:`Sparklines`: one band per series of per-frame values (FWHM, stars,
background), excluded frames in red. :class:`CurvePlot`: a histogram with optional
curves on top (for stretch and curves widgets). :class:`XYPlot`: points, lines and
markers on labelled axes (the autofocus curve, guide errors).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._controls import fmt_value as _fmt

__all__ = ["Sparklines", "CurvePlot", "XYPlot"]


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


class XYPlot(QWidget):
    """An x-y plot with labelled axes: point and line series and vertical markers.

    Used by the focus and guiding dock: HFR [px] against focuser position [steps]
    (measured points, the fitted hyperbola, the chosen best position) and the guide
    errors [px] against time [s]. ``set_series(name, x, y, points=, line=)`` adds or
    replaces a series; ``set_marker(name, x)`` a vertical line; ``clear()`` empties
    it. ``fixed_y`` keeps the y range symmetric about 0 at least that wide (guide
    errors). Display only: the data stay in :attr:`series` and :attr:`markers`.
    """

    COLORS = ("#66c2ff", "#ffcc66", "#ff6666", "#99e699", "#dddddd")

    def __init__(self, xlabel: str, ylabel: str, *, fixed_y: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.xlabel, self.ylabel, self.fixed_y = xlabel, ylabel, fixed_y
        self.series: dict[str, dict] = {}
        self.markers: dict[str, float] = {}
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_series(self, name: str, x: Sequence[float], y: Sequence[float], *,
                   points: bool = True, line: bool = False, color: str | None = None) -> None:
        self.series[name] = dict(x=[float(v) for v in x], y=[float(v) for v in y],
                                 points=points, line=line,
                                 color=color or self.COLORS[len(self.series) % len(self.COLORS)])
        self.update()

    def set_marker(self, name: str, x: float) -> None:
        self.markers[name] = float(x)
        self.update()

    def clear(self) -> None:
        self.series.clear()
        self.markers.clear()
        self.update()

    def _ranges(self) -> tuple[float, float, float, float]:
        xs = [v for s in self.series.values() for v in s["x"] if math.isfinite(v)]
        xs += list(self.markers.values())
        ys = [v for s in self.series.values() for v in s["y"] if math.isfinite(v)]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if self.fixed_y is not None:
            m = max(self.fixed_y, abs(y0), abs(y1))
            y0, y1 = -m, m
        if x1 - x0 <= 0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        pad = 0.06 * (y1 - y0 or 1.0)
        return x0, x1, y0 - pad, y1 + pad

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().windowText().color()
        left, right, top, bottom = 52, 10, 22, 34
        w, h = self.width() - left - right, self.height() - top - bottom
        x0, x1, y0, y1 = self._ranges()

        def xy(x: float, y: float) -> QPointF:
            return QPointF(left + w * (x - x0) / (x1 - x0), top + h - h * (y - y0) / (y1 - y0))

        p.setPen(QPen(QColor("#555555"), 1))
        p.drawRect(QRectF(left, top, w, h))
        if y0 < 0 < y1:   # the zero line of signed errors
            p.drawLine(xy(x0, 0.0), xy(x1, 0.0))
        p.setPen(fg)
        right_align = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for v in (y0, (y0 + y1) / 2, y1):
            pt = xy(x0, v)
            y = min(max(pt.y() - 8, top - 3), top + h - 13)   # clear of the header strip
            p.drawText(QRectF(0, y, left - 4, 16), right_align, _fmt(v))
        for v, align in ((x0, Qt.AlignmentFlag.AlignLeft), (x1, Qt.AlignmentFlag.AlignRight)):
            pt = xy(v, y0)
            p.drawText(QRectF(pt.x() - (0 if align == Qt.AlignmentFlag.AlignLeft else 80),
                              top + h + 2, 80, 14), int(align), _fmt(v))
        centre = int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        p.drawText(QRectF(left, top + h + 16, w, 16), centre, self.xlabel)
        # the header strip above the data: y label on the left, the legend on the right
        p.drawText(QRectF(4, 2, w, 16), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
                   self.ylabel)
        xr = left + w
        entries = [(n, s["color"]) for n, s in self.series.items()]
        entries += [(n, "#ff6666") for n in self.markers]
        metrics = p.fontMetrics()
        for name, color in reversed(entries):
            tw = metrics.horizontalAdvance(name)
            p.setPen(QColor(color))
            p.drawText(QRectF(xr - tw, 2, tw + 2, 16),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), name)
            xr -= tw + 12
        if not self.series:
            p.setPen(fg)
            p.drawText(QRectF(left, top, w, h), int(Qt.AlignmentFlag.AlignCenter), "no data yet")
        for s in self.series.values():
            pts = [xy(a, b) for a, b in zip(s["x"], s["y"]) if math.isfinite(a) and math.isfinite(b)]
            color = QColor(s["color"])
            if s["line"] and len(pts) > 1:
                p.setPen(QPen(color, 1.6))
                p.drawPolyline(QPolygonF(pts))
            if s["points"]:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(color)
                for pt in pts:
                    p.drawEllipse(pt, 3.0, 3.0)
                p.setBrush(Qt.BrushStyle.NoBrush)
        pen = QPen(QColor("#ff6666"), 1.4, Qt.PenStyle.DashLine)
        for x in self.markers.values():
            p.setPen(pen)
            p.drawLine(xy(x, y0), xy(x, y1))
        p.end()
