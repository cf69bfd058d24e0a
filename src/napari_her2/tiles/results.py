"""Per-tile results of scoring one slide, in a form every consumer shares.

Inference fills a :class:`TileResults` batch by batch; the tile layer, the slide score,
the exports and the report all read it. Tiles are addressed by (row, col) in the tile grid;
``origin0`` and ``tile_size0`` place the grid on the slide in level-0 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import LABEL_VALUES, UNREADABLE, canonical_class, label_values_for
from .cells import CellTable
from .grid import TileGeometry


@dataclass
class TileResults:
    """Scored tiles of one slide (may be partial while inference runs).

    classes / feature_names: the model's class and feature names (columns of probs/features).
    grid_shape: (rows, cols) of the whole tile grid, tissue or not.
    origin0: (y, x) level-0 pixel of the grid's top-left corner.
    tile_size0: (h, w) level-0 pixels covered by one tile (float: level downsamples need not be
        integers).
    rows, cols: (N,) grid indices of the scored tiles.
    probs: (N, C) float32 class probabilities; features: (N, F) float32.
    readable: (N,) False where the tile could not be decoded (its probs are NaN).
    embeddings: (N, D) float32 tile embeddings when the model gives them (NaN rows for
        unreadable tiles), else None.
    cells: the cells found in the scored tiles, in level-0 pixels, when the scorer finds
        cells.
    """

    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    grid_shape: tuple[int, int]
    origin0: tuple[float, float]
    tile_size0: tuple[float, float]
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    readable: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    embeddings: np.ndarray | None = None
    #: (height, width) of level 0; edge tiles' boxes are clipped to it when known
    image_shape0: tuple[int, int] | None = None
    #: the cells of a scorer that finds cells (None for tile models)
    cells: CellTable | None = None

    def __post_init__(self) -> None:
        n_c, n_f = len(self.classes), len(self.feature_names)
        if self.probs.size == 0:
            self.probs = np.zeros((0, n_c), np.float32)
        if self.features.size == 0:
            self.features = np.zeros((len(self.rows), n_f), np.float32)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def extend(self, rows, cols, probs, features, readable, embeddings=None) -> None:
        """Append one batch of tiles (``embeddings``: (n, D), or None for a model without
        embeddings or a batch with no readable tile: such rows are NaN once any batch has
        embeddings)."""
        if embeddings is not None:
            emb = np.asarray(embeddings, np.float32)
            if self.embeddings is None:
                self.embeddings = np.full((len(self), emb.shape[1]), np.nan, np.float32)
            self.embeddings = np.concatenate([self.embeddings, emb])
        elif self.embeddings is not None:
            gap = np.full((len(rows), self.embeddings.shape[1]), np.nan, np.float32)
            self.embeddings = np.concatenate([self.embeddings, gap])
        self.rows = np.concatenate([self.rows, np.asarray(rows, np.int32)])
        self.cols = np.concatenate([self.cols, np.asarray(cols, np.int32)])
        self.probs = np.concatenate([self.probs, np.asarray(probs, np.float32)])
        feats = np.asarray(features, np.float32).reshape(len(rows), len(self.feature_names))
        self.features = np.concatenate([self.features, feats])
        self.readable = np.concatenate([self.readable, np.asarray(readable, bool)])

    @property
    def canonical_classes(self) -> tuple[str, ...]:
        """The model classes mapped onto canonical outcomes (same order as ``classes``)."""
        return tuple(canonical_class(c) for c in self.classes)

    def predicted_index(self) -> np.ndarray:
        """Arg-max class index per tile; -1 for unreadable tiles."""
        if len(self) == 0:
            return np.zeros(0, np.int64)
        idx = np.argmax(np.nan_to_num(self.probs, nan=-1.0), axis=1)
        return np.where(self.readable, idx, -1)

    def tile_outcomes(self) -> list[str]:
        """Canonical outcome name per tile ("0".."3+", non-tumour, artefact, unreadable)."""
        canon = self.canonical_classes
        return [canon[i] if i >= 0 else UNREADABLE for i in self.predicted_index()]

    def tile_labels(self) -> np.ndarray:
        """Label value per tile (see ``classes.LABEL_VALUES``)."""
        values = label_values_for(self.classes)
        idx = self.predicted_index()
        out = np.full(len(self), LABEL_VALUES[UNREADABLE], np.uint8)
        ok = idx >= 0
        out[ok] = values[idx[ok]]
        return out

    def label_image(self) -> np.ndarray:
        """(rows, cols) uint8 raster, one pixel per tile, 0 where no tile was scored."""
        img = np.zeros(self.grid_shape, np.uint8)
        img[self.rows, self.cols] = self.tile_labels()
        return img

    def cell_tiles(self) -> np.ndarray:
        """(M,) int64: for each cell of :attr:`cells`, the index of its tile among the scored
        tiles, -1 for a cell whose tile is not one of them (empty without cells)."""
        if self.cells is None or len(self.cells) == 0:
            return np.zeros(0, np.int64)
        rows, cols = self.grid_shape
        index = np.full(rows * cols, -1, np.int64)
        index[self.rows.astype(np.int64) * cols + self.cols] = np.arange(len(self))
        return index[self.cells.row.astype(np.int64) * cols + self.cells.col]

    @property
    def geometry(self) -> TileGeometry:
        """Where the grid's cells lie on the slide."""
        return TileGeometry(self.grid_shape, self.tile_size0, self.origin0, self.image_shape0)

    def bboxes0(self) -> np.ndarray:
        """(N, 4) float64 level-0 boxes (x0, y0, x1, y1) of the scored tiles, clipped to the
        image when its size is known (edge tiles reach past it, padded with background)."""
        return self.geometry.boxes0(self.rows, self.cols)
