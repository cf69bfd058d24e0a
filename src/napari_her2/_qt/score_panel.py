"""The slide-score panel: the call, how sure it is, and the tile fractions behind it.

Every line is one line: text wider than the dock is cut with an ellipsis at its end, and the
whole text is the line's tooltip, so no line is ever clipped mid-height whatever the dock's
width."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QFormLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..classes import CLASS_COLORS, HER2_SCORES
from ..scoring import Her2LowEvidence, SlideCall
from ..scoring.cells import CELLS_SUFFIX

#: what the bars show: the percentages of tumour cells when the call counted cells
BARS_TITLE = {"tiles": "Tumour tiles by class", "cells": "Tumour cells by class"}


class FractionBars(QWidget):
    """A small bar chart of the fraction of tumour cells (or tiles) in each HER2 class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fractions: dict[str, float] = {}
        self.setMinimumHeight(70)

    def set_fractions(self, fractions: dict[str, float] | None) -> None:
        self.fractions = dict(fractions or {})
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        w, h = self.width(), self.height()
        n = len(HER2_SCORES)
        slot = w / n
        text_h = 16
        for i, name in enumerate(HER2_SCORES):
            frac = float(self.fractions.get(name, 0.0) or 0.0)
            bar_h = (h - 2 * text_h) * min(max(frac, 0.0), 1.0)
            x = i * slot + slot * 0.2
            painter.fillRect(QRectF(x, h - text_h - bar_h, slot * 0.6, bar_h),
                             QColor(*CLASS_COLORS[name]))
            painter.setPen(self.palette().color(self.foregroundRole()))
            painter.drawText(QRectF(i * slot, h - text_h, slot, text_h),
                             Qt.AlignmentFlag.AlignCenter, name)
            painter.drawText(QRectF(i * slot, h - 2 * text_h - bar_h, slot, text_h),
                             Qt.AlignmentFlag.AlignCenter, f"{100 * frac:.0f}%")
        painter.end()


class ElidedLabel(QLabel):
    """A one-line label that elides what does not fit and shows all of it on hover."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(1)
        self.setText(text)

    def full_text(self) -> str:
        return self._full

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """One line of the current font high: a short dock squeezes the review list, never a
        line of text (the font is read now, after napari's theme has set it)."""
        return QSize(1, self.fontMetrics().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        return QSize(hint.width(), max(hint.height(), self.fontMetrics().height()))

    def setText(self, text: str | None) -> None:  # noqa: N802 - Qt API
        self._full = text or ""
        self.setToolTip(self._full)
        self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(self.width(), 1))
        super().setText(shown)


class ScorePanel(QWidget):
    """Shows a :class:`SlideCall`: the score (or why there is none) and its evidence."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score_label = QLabel("–")
        self.score_label.setObjectName("her2_score")
        font = self.score_label.font()
        font.setPointSize(font.pointSize() + 8)
        font.setBold(True)
        self.score_label.setFont(font)
        self.category_label = ElidedLabel()
        self.confidence_label = ElidedLabel()
        self.validation_label = ElidedLabel()
        self.her2_low_label = ElidedLabel()
        self.tiles_label = ElidedLabel()
        self.cells_label = ElidedLabel()
        self.method_label = ElidedLabel()
        self.model_label = ElidedLabel()
        self.bars = FractionBars(self)
        form = QFormLayout()
        form.addRow("HER2 score", self.score_label)
        form.addRow("Category", self.category_label)
        form.addRow("Confidence", self.confidence_label)
        form.addRow("Validated", self.validation_label)
        form.addRow("0 vs 1+", self.her2_low_label)
        form.addRow("Tiles", self.tiles_label)
        form.addRow("Cells", self.cells_label)
        form.addRow("Called by", self.method_label)
        form.addRow("Model", self.model_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        self.bars_title = QLabel(BARS_TITLE["tiles"])
        layout.addWidget(self.bars_title)
        layout.addWidget(self.bars)
        self.last: SlideCall | None = None
        self.clear()

    def clear(self) -> None:
        """Nothing scored yet: every field says so in words."""
        self.last = None
        self.score_label.setText("not scored")
        for label in (self.category_label, self.confidence_label, self.validation_label,
                      self.her2_low_label, self.tiles_label, self.cells_label,
                      self.model_label):
            label.setText("")
        self.method_label.setText("")
        self.bars.set_fractions(None)

    def show_call(self, call: SlideCall, context: dict[str, Any] | None = None) -> None:
        """Render a :class:`SlideCall`: the score or the reason for no call, its evidence and
        the context (model, tile size, resolution, organ)."""
        self.last = call
        ev = call.evidence
        if call.score is None:
            reason = call.no_call.value if call.no_call else "no call"
            self.score_label.setText("no call")
            self.category_label.setText(reason)
            if call.no_call_detail:
                self.category_label.setToolTip(f"{reason}: {call.no_call_detail}")
        else:
            # a borderline call shows both scores ("0 / 1+") and "borderline: review"
            self.score_label.setText(call.score_text() + (" …" if call.partial else ""))
            self.category_label.setText(call.category_text())
        self.confidence_label.setText(_confidence_text(call))
        # a learned model speaks with its validation, right under its confidence
        valid = call.validation
        self.validation_label.setText(
            "weight-free scorer, no learned model" if valid is None
            else valid.brief().removeprefix("validated ").replace(", ", " · "))
        if valid is not None:
            self.validation_label.setToolTip(valid.text())
        self.her2_low_label.setText(_her2_low_text(ev.her2_low))
        self.tiles_label.setText(f"{ev.n_tumour_tiles} tumour of {ev.n_tiles} scored"
                                 + (f", {ev.n_unreadable} unreadable" if ev.n_unreadable else ""))
        self.method_label.setText(call.method + (" (partial)" if call.partial else ""))
        self.bars.set_fractions(ev.class_fractions or None)
        self.bars_title.setText(BARS_TITLE["cells" if call.method.endswith(CELLS_SUFFIX)
                                           else "tiles"])
        ctx = dict(context or {})
        self.cells_label.setText(ctx.pop("cells", None) or "not counted (tile scorer)")
        self.model_label.setText(", ".join(f"{k} {v}" for k, v in ctx.items() if v is not None))


def _confidence_text(call: SlideCall) -> str:
    """"87%", or for a borderline call "48%: 0 in 48% of resamplings, 1+ in 45%"."""
    if call.confidence is None:
        return "n/a"
    text = f"{100 * call.confidence:.0f}%"
    return f"{text}: {call.borderline_shares()}" if call.borderline else text


def _her2_low_text(low: Her2LowEvidence | None) -> str:
    if low is None:
        return "not applicable (call above 1+)"
    return (f"{low.subcategory}; P(≥1+) {100 * low.p_at_least_1plus:.0f}%; "
            f"faint staining {100 * low.faint_fraction:.0f}%")
