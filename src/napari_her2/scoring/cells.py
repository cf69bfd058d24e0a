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
    """(N, 5) cells of each scored tile after a pathologist relabelled tiles by hand.

    ``label_image`` (rows, cols) holds ``classes.LABEL_VALUES``. A tile whose label differs
    from its scored class takes the label for its cells: labelled 0..3+, its tumour cells
    count as that class (all its cells, when it had no tumour cells); labelled non-tumour,
    artefact or unreadable, none of its cells is a tumour cell. Other tiles keep their cells
    (read in ``column``, one of :data:`READINGS`).
    """
    return _edited(_reading_counts(results, (column,)), results, label_image)[0]


def _reading_counts(results: TileResults, columns: tuple[str, ...]) -> np.ndarray:
    """(R, N, 5) :func:`tile_cell_counts` of each of ``columns``, each cell's tile found once."""
    width = len(HER2_SCORES) + 1
    counts = np.zeros((len(columns), len(results), width), np.int64)
    cells = results.cells
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


def _edited(counts: np.ndarray, results: TileResults, label_image: np.ndarray) -> np.ndarray:
    """``counts`` (R, N, 5) with the cells of the tiles ``label_image`` relabels counted as
    :func:`edited_cell_counts` says, in every reading (in place)."""
    labels = np.asarray(label_image)[results.rows, results.cols]
    n_her2 = len(HER2_SCORES)
    for i in np.flatnonzero(labels != results.tile_labels()):
        name = LABEL_NAMES.get(int(labels[i]), "")
        tumour, total = counts[:, i, :n_her2].sum(axis=1), counts[:, i].sum(axis=1)
        row = np.zeros_like(counts[:, i])
        if name in HER2_SCORES:
            row[:, HER2_SCORES.index(name)] = np.where(tumour > 0, tumour, total)
            row[:, n_her2] = total - row[:, :n_her2].sum(axis=1)
        else:
            row[:, n_her2] = total
        counts[:, i] = row
    return counts


def score_cells(results: TileResults, organ: str = "breast", specimen: str = "resection", *,
                n_samples: int = 1000, seed: int = 0,
                label_image: np.ndarray | None = None) -> SlideScore:
    """The slide score of the tumour cells in ``results`` (see the module docstring); with
    ``label_image``, of the cells as a pathologist's tile labels say (:func:`edited_cell_counts`)."""
    params = RuleParams(min_cluster_tiles=MIN_CLUSTER_CELLS)
    rule = get_rule(organ, specimen, params)
    readings = _reading_counts(results, READINGS)
    if label_image is not None:
        readings = _edited(readings, results, label_image)
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

