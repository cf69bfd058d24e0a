"""What the panels over a slide's scoring share: the viewer, the scoring controller, and the
two signals every panel speaks with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QWidget

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
