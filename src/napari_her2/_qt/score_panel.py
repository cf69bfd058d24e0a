"""The slide-score panel: the call, how sure it is, and the tile fractions behind it."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QRectF, Qt
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from ..classes import CLASS_COLORS, HER2_SCORES

CATEGORY_TEXT = {
    "negative": "negative",
    "equivocal": "equivocal: reflex ISH",
    "positive": "positive",
}


class FractionBars(QWidget):
    """A small bar chart of the fraction of tumour tiles in each HER2 class."""

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


class ScorePanel(QWidget):
    """Shows a slide score (``SlideScore.to_dict()``) and what it was computed from."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score_label = QLabel("–")
        self.score_label.setObjectName("her2_score")
        font = self.score_label.font()
        font.setPointSize(font.pointSize() + 8)
        font.setBold(True)
        self.score_label.setFont(font)
        self.category_label = QLabel("")
        self.confidence_label = QLabel("")
        self.her2_low_label = QLabel("")
        self.her2_low_label.setWordWrap(True)
        self.tiles_label = QLabel("")
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.bars = FractionBars(self)
        form = QFormLayout()
        form.addRow("HER2 score", self.score_label)
        form.addRow("Category", self.category_label)
        form.addRow("Confidence", self.confidence_label)
        form.addRow("0 vs 1+", self.her2_low_label)
        form.addRow("Tiles", self.tiles_label)
        form.addRow("Model", self.model_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(QLabel("Tumour tiles by class"))
        layout.addWidget(self.bars)
        self.last: dict[str, Any] = {}

    def clear(self) -> None:
        self.show_score({}, None)

    def show_score(self, score: dict[str, Any], context: dict[str, Any] | None,
                   partial: bool = False) -> None:
        """Fill the panel from a score dict and a context (model, params, tile counts)."""
        self.last = dict(score)
        call = score.get("score")
        self.score_label.setText(("–" if call is None else str(call)) + (" …" if partial else ""))
        self.category_label.setText(CATEGORY_TEXT.get(score.get("category") or "", "–"))
        conf = score.get("confidence")
        self.confidence_label.setText(f"{100 * conf:.0f}%" if isinstance(conf, float | int) else "–")
        self.her2_low_label.setText(_her2_low_text(score))
        n_t, n_all = score.get("n_tumour_tiles"), score.get("n_tiles")
        self.tiles_label.setText(f"{n_t} tumour of {n_all} scored" if n_all is not None else "–")
        self.bars.set_fractions(score.get("class_fractions"))
        ctx = context or {}
        self.model_label.setText(
            ", ".join(f"{k} {v}" for k, v in ctx.items() if v is not None) if ctx else "–"
        )


def _her2_low_text(score: dict[str, Any]) -> str:
    low = score.get("her2_low") or {}
    if not low:
        return "–"
    parts = []
    for key, label in (("p_at_least_1plus", "P(≥1+)"), ("faint_fraction", "faint staining")):
        value = low.get(key)
        if isinstance(value, float | int):
            parts.append(f"{label} {100 * value:.0f}%")
    if low.get("subcategory"):
        parts.insert(0, str(low["subcategory"]))
    return "; ".join(parts) or "–"
