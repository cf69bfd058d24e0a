"""The one interface every tile scorer implements, weight-free or deep.

Inference, the widget, the CLI and batch mode only ever see a :class:`TilePredictor`: a
callable from a batch of RGB uint8 tiles to class probabilities, with the metadata needed
to tile a slide for it (input size, resolution) and to report it (name, weights hash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: the class code of a cell that is not a tumour cell (tumour cells have 0..3 for 0..3+)
NOT_TUMOUR = -1


@dataclass(frozen=True)
class CellColumns:
    """The cells a scorer found in one batch of tiles, one entry per cell.

    tile: (M,) index of the cell's tile in the batch; y, x: its centre in that tile's pixels
    (as the predictor was given them); cls: int8 HER2 class 0..3 of a tumour cell, or
    :data:`NOT_TUMOUR`; ring_od: mean DAB optical density of its membrane ring;
    completeness: fraction of the ring above the intensity floor; visible_mpp: the coarsest
    µm/px at which its membrane is still visible (NaN: not visible at all); nucleus_um2: its
    nucleus area; outlined: (M,) bool, True for a cell found as an unstained interior that
    DAB outlines, without a haematoxylin nucleus of its own (None: the scorer does not say);
    cls_paler, cls_darker: the class of each cell with the stains recorded weaker and stronger
    (the same cells; None: the scorer does not say, and ``cls`` stands for both);
    ring_od_max: the ring's 95th percentile DAB OD; cytoplasm_od: the mean DAB OD inside the
    cell, the background its membrane is seen against; longest_arc: the longest run of stained
    ring sectors as a fraction of the ring (basolateral / lateral staining);
    eccentricity: of its nucleus' moment ellipse (0 round, towards 1 elongated). None: the
    scorer does not measure it.
    """

    tile: np.ndarray
    y: np.ndarray
    x: np.ndarray
    cls: np.ndarray
    ring_od: np.ndarray
    completeness: np.ndarray
    visible_mpp: np.ndarray
    nucleus_um2: np.ndarray
    outlined: np.ndarray | None = None
    cls_paler: np.ndarray | None = None
    cls_darker: np.ndarray | None = None
    ring_od_max: np.ndarray | None = None
    cytoplasm_od: np.ndarray | None = None
    longest_arc: np.ndarray | None = None
    eccentricity: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tile.shape[0])


@dataclass(frozen=True)
class Prediction:
    """Result of one batch.

    probs: (N, C) float32, rows sum to 1, columns in ``predictor.classes`` order.
    features: (N, F) float32 measurements named by ``predictor.feature_names`` (may be F=0).
    embeddings: (N, D) float32 tile embeddings for MIL, or None.
    cells: the cells of a scorer that finds cells, or None.
    """

    probs: np.ndarray
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    embeddings: np.ndarray | None = None
    cells: CellColumns | None = None


@runtime_checkable
class TilePredictor(Protocol):
    """A tile model ready for inference (deploy form, eval mode, on its device)."""

    name: str
    classes: tuple[str, ...]
    input_size: int
    feature_names: tuple[str, ...]

    @property
    def target_mpp(self) -> float | None:
        """µm/px the tiles must be read at; None when the model card does not say."""
        ...

    @property
    def sha256(self) -> str:
        """Hash of the weights (of the parameters for a scorer without weights)."""
        ...

    def predict(self, tiles: np.ndarray) -> Prediction:
        """Score a batch of tiles, uint8 array (N, H, W, 3) at the predictor's resolution."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able model card: name, classes, parameters, provenance, limits."""
        ...


@runtime_checkable
class ContextPredictor(TilePredictor, Protocol):
    """A tile predictor that judges each tile with the slide around it (the cell scorer: a
    cell at a tile's edge needs its whole ring and its neighbours across the edge)."""

    @property
    def context_px(self) -> int:
        """Pixels of the slide it wants on each side of a tile, at the tile resolution."""
        ...

    def predict(self, tiles: np.ndarray, context: int = 0) -> Prediction:
        """Score tiles of (N, H, W, 3) that carry ``context`` pixels of the slide on each
        side; the results are those of the tiles proper (the middle H - 2 context pixels)."""
        ...
