"""The guideline rule over tumour cells: the slide call from the percentages of tumour cells.

When the scorer found cells (``results.cells``), the slide call counts cells as ASCO/CAP and
the gastric guideline do: 3+ when more than 10% of the tumour cells are 3+, else 2+ when more
than 10% are 2+ or more, else 1+ when more than 10% are 1+ or more, else 0 (gastric biopsies:
a cluster of at least :data:`MIN_CLUSTER_CELLS` cells of a class, whatever its percentage).

Its confidence comes from the same computation as the call (:mod:`.modal`): the tiles are
resampled with replacement (cells of one tile are not independent of each other, tiles
nearly are), each resampling's cells are counted and called, and the call is the most
frequent outcome; its share is the confidence, a share below one half makes it borderline.
Each resampling also reads the cells with the stains as recorded, or recorded
``CellParams.stain_spread`` weaker or stronger (a third of the resamplings each, where the
scorer gives those classes: :data:`READINGS`): another laboratory's staining or another
scanner moves intensities that much, and a call that turns on it is not a sure one.
Fewer than :data:`MIN_TUMOUR_CELLS` tumour cells are not enough carcinoma to score: the
slide gets no call ("no tumour found").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..classes import HER2_SCORES, LABEL_NAMES
from ..predict import NOT_TUMOUR
from ..tiles.cells import CellTable
from ..tiles.results import TileResults
from .rules import RuleParams, SlideScore, get_rule, summarise_counts

#: fewer tumour cells than this give no call: less than a small nest of carcinoma
MIN_TUMOUR_CELLS = 50
#: gastric biopsy rule: a cohesive cluster of at least 5 stained tumour cells
MIN_CLUSTER_CELLS = 5
#: the method name's suffix that says the percentages are of cells
CELLS_SUFFIX = "-cells"
#: the cell classes a slide is read with: as measured, with the stains recorded weaker, and
#: stronger (columns of :class:`~napari_her2.tiles.cells.CellTable`)
READINGS = ("cls", "cls_paler", "cls_darker")


def tile_cell_counts(results: TileResults, column: str = "cls") -> np.ndarray:
    """(N, 5) cells of each scored tile: tumour cells of class 0..3+ (the classes of
    ``column``, one of :data:`READINGS`), then non-tumour."""
    return _reading_counts(results, (column,))[0]


def edited_cell_counts(results: TileResults, label_image: np.ndarray, column: str = "cls"
                       ) -> np.ndarray:
    """(N, 5) cells of each scored tile after a pathologist relabelled tiles by hand
    (:func:`edited_cells`), read in ``column`` (one of :data:`READINGS`)."""
    return _reading_counts(results, (column,), edited_cells(results, label_image)[0])[0]


def edited_cells(results: TileResults, label_image: np.ndarray
                 ) -> tuple[CellTable, np.ndarray]:
    """The cells of ``results`` after a pathologist relabelled tiles by hand, and which of
    them lie in a relabelled tile.

    ``label_image`` (rows, cols) holds ``classes.LABEL_VALUES``. A tile whose label differs
    from its scored class takes the label for its cells: labelled 0..3+, its tumour cells
    take that class (all its cells, when it had no tumour cells); labelled non-tumour,
    artefact, unreadable or left unlabelled, none of its cells is a tumour cell. Other tiles
    keep their cells. Every reading (:data:`READINGS`) is edited alike; the other columns
    are the unedited table's.
    """
    cells = results.cells if results.cells is not None else CellTable()
    labels = np.asarray(label_image)
    if labels.shape != tuple(results.grid_shape):
        raise ValueError(f"label image {labels.shape} does not match the grid "
                         f"{tuple(results.grid_shape)}")
    tile = results.cell_tiles()
    shown = labels[results.rows, results.cols]
    changed = np.flatnonzero(shown != results.tile_labels())
    edited = np.isin(tile, changed)
    if not edited.any():
        return cells, edited
    # per relabelled tile: the class its cells take (NOT_TUMOUR when it is not a HER2 class)
    new_class = np.full(len(results), NOT_TUMOUR, np.int64)
    for i in changed.tolist():
        name = LABEL_NAMES.get(int(shown[i]), "")
        if name in HER2_SCORES:
            new_class[i] = HER2_SCORES.index(name)
    had_tumour = np.zeros(len(results), bool)
    had_tumour[tile[(tile >= 0) & cells.tumour]] = True
    where = np.where(edited, tile, 0)
    target = new_class[where]
    # a relabelled tile's tumour cells take its class; all its cells do when it had none, or
    # when its new label is not a HER2 class (then none is a tumour cell)
    takes = edited & ((target == NOT_TUMOUR) | cells.tumour | ~had_tumour[where])
    classes = {}
    for column in READINGS:
        values = getattr(cells, column).copy()
        values[takes] = target[takes]
        classes[column] = values
    return replace(cells, **classes), edited


def _reading_counts(results: TileResults, columns: tuple[str, ...],
                    cells: CellTable | None = None) -> np.ndarray:
    """(R, N, 5) :func:`tile_cell_counts` of each of ``columns`` of ``cells`` (the results'
    own when None), each cell's tile found once."""
    width = len(HER2_SCORES) + 1
    counts = np.zeros((len(columns), len(results), width), np.int64)
    cells = results.cells if cells is None else cells
    if cells is None or len(cells) == 0 or len(results) == 0:
        return counts
    tile = results.cell_tiles()
    ok = tile >= 0
    tumour = cells.tumour[ok]
    for r, column in enumerate(columns):
        code = np.where(tumour, getattr(cells, column)[ok].astype(np.int64), width - 1)
        counts[r] = np.bincount(tile[ok] * width + code,
                                minlength=len(results) * width).reshape(-1, width)
    return counts


def score_cells(results: TileResults, organ: str = "breast", specimen: str = "resection", *,
                n_samples: int = 1000, seed: int = 0,
                label_image: np.ndarray | None = None) -> SlideScore:
    """The slide score of the tumour cells in ``results`` (see the module docstring); with
    ``label_image``, of the cells as a pathologist's tile labels say (:func:`edited_cell_counts`)."""
    params = RuleParams(min_cluster_tiles=MIN_CLUSTER_CELLS)
    rule = get_rule(organ, specimen, params)
    cells = None if label_image is None else edited_cells(results, label_image)[0]
    readings = _reading_counts(results, READINGS, cells)
    per_tile = readings[0]
    observed = per_tile.sum(axis=0)
    if observed[: len(HER2_SCORES)].sum() < MIN_TUMOUR_CELLS:
        observed = np.concatenate([np.zeros(len(HER2_SCORES), np.int64), observed[-1:]])
        readings = np.zeros_like(readings)
        per_tile = readings[0]
    samples = _resample_tiles(readings, n_samples, seed)
    score = summarise_counts(observed, samples, rule, n_tiles=len(results),
                       n_unreadable=int((~results.readable).sum()),
                       sampling="tile-bootstrap-of-cells-and-stain-strength", seed=seed)
    n_tumour_tiles = int((per_tile[:, : len(HER2_SCORES)].sum(axis=1) > 0).sum())
    return replace(score, method=rule.method + CELLS_SUFFIX, n_tumour_tiles=n_tumour_tiles)


def _resample_tiles(readings: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """(S, 5) cell counts of ``n_samples`` resamplings of the tiles with replacement, each
    read in one of the ``readings`` (R, N, 5) of the tiles' cells, drawn with equal odds."""
    n_readings, n, width = readings.shape
    if n == 0 or n_samples == 0:
        return np.zeros((0, width), np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples)  # times each tile is drawn
    which = rng.integers(n_readings, size=n_samples)
    out = np.empty((n_samples, width), np.int64)
    for r in range(n_readings):
        rows = which == r
        out[rows] = picks[rows] @ readings[r]
    return out

