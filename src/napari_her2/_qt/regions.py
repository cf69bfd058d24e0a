"""The widget's **Region** chooser: score inside the shapes of a napari Shapes layer only.

Shapes are turned into a :class:`~napari_her2.tiles.regions.Region` in the slide's level-0
pixels through the layers' own transforms; a shape whose feature ``class`` / ``name``, or
text, is ``Ignore*`` / ``Exclude*`` is subtracted, and so is every shape of another Shapes
layer whose name starts with Ignore or Exclude.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..tiles.regions import Region, is_exclusion, merge_regions, region_from_shapes

if TYPE_CHECKING:
    import napari

WHOLE_SLIDE = ("Whole slide", None)
#: feature columns that name a shape's class
LABEL_COLUMNS = ("class", "classification", "name")


def shape_labels(shapes) -> list[str | None]:
    """Each shape's class: its feature ``class`` / ``classification`` / ``name``, else its
    text, else None."""
    n = len(shapes.data)
    features = shapes.features
    for column in LABEL_COLUMNS:
        if column in getattr(features, "columns", ()):
            return [None if v is None else str(v) for v in features[column].tolist()]
    values = np.asarray(getattr(shapes.text, "values", ()))
    if values.ndim == 1 and len(values) == n:  # no text: napari gives a 0-d ''
        return [str(v) if str(v) else None for v in values]
    return [None] * n


def shapes_to_level0(shapes, image) -> list[np.ndarray]:
    """Every shape's vertices as (y, x) level-0 pixels of ``image`` (through the world)."""
    out = []
    for verts in shapes.data:
        pts = [np.asarray(image.world_to_data(shapes.data_to_world(v)))[-2:] for v in verts]
        out.append(np.asarray(pts, np.float64))
    return out


def region_from_layer(shapes, image, exclusions: tuple = ()) -> Region:
    """The region a Shapes layer draws over ``image``, minus ``exclusions`` (Shapes layers
    whose every shape is subtracted)."""
    parts = [region_from_shapes(shapes_to_level0(shapes, image), list(shapes.shape_type),
                                shape_labels(shapes), source=shapes.name)]
    for layer in exclusions:
        if len(layer.data):
            verts = shapes_to_level0(layer, image)
            polys = region_from_shapes(verts, list(layer.shape_type), [None] * len(verts),
                                       source=layer.name)
            parts.append(Region((), polys.include, layer.name))
    return merge_regions(parts, source=shapes.name)


class RegionPanel(QWidget):
    """The Region chooser: the whole slide or the shapes of one Shapes layer."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.region_combo = ComboBox(name="region", label="Region", choices=[WHOLE_SLIDE])
        self.region_combo.tooltip = ("Score only inside the shapes of a Shapes layer "
                                     "(Ignore/Exclude shapes are left out)")
        self.fields = Container(widgets=[self.region_combo])
        left, _, right, _ = self.fields.margins
        self.fields.margins = (left, 0, right, 0)  # rows of the form above
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.fields.native)
        viewer.layers.events.inserted.connect(self.refresh_regions)
        viewer.layers.events.removed.connect(self.refresh_regions)
        self.refresh_regions()

    def _shapes_layers(self) -> list[Any]:
        from napari.layers import Shapes

        return [ly for ly in self.viewer.layers if isinstance(ly, Shapes)]

    def refresh_regions(self, event: Any = None) -> None:
        """List the viewer's Shapes layers (not the exclusion layers, not the TMA cores)."""
        current = self.region_combo.value
        names = [ly.name for ly in self._shapes_layers() if not is_exclusion(ly.name)]
        choices = [WHOLE_SLIDE] + [(n, n) for n in names]
        self.region_combo.choices = choices
        if current in names:
            self.region_combo.value = current

    def chosen_region(self, image: Any) -> Region | None:
        """The chosen layer's region over ``image`` (None: the whole slide)."""
        name = self.region_combo.value
        if not name or name not in self.viewer.layers:
            return None
        exclusions = tuple(ly for ly in self._shapes_layers() if is_exclusion(ly.name))
        return region_from_layer(self.viewer.layers[name], image, exclusions)
