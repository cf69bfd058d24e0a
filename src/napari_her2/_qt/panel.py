"""What the panels over a slide's scoring share: the viewer, the scoring controller, and the
two signals every panel speaks with; and the scrolling column the dock lays them out in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtWidgets import QFrame, QScrollArea, QWidget

if TYPE_CHECKING:
    import napari

    from .slide_scoring import SlideScoring


class ScoringPanel(QWidget):
    """A panel of the dock widget that works on the slide being scored."""

    #: a line for the status bar
    message = Signal(str)
    #: what went wrong, for the status bar and a notification
    failed = Signal(str)

    def __init__(self, viewer: napari.Viewer, scoring: SlideScoring,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.scoring = scoring


class ScrollColumn(QScrollArea):
    """A vertical scroll area as wide as its panels need beside the scroll bar (asked when
    the dock is laid out, after napari's theme has set the fonts): nothing is cut at the
    right, and a short dock scrolls."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _width(self) -> int:
        body = self.widget()
        inner = body.minimumSizeHint().width() if body is not None else 0
        bar = self.verticalScrollBar()
        bar_width = bar.sizeHint().width() if bar is not None else 0
        return inner + bar_width + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(self._width(), super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        body = self.widget()
        return QSize(self._width(), body.sizeHint().height() if body is not None else 0)
