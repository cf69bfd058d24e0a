"""The guideline rule over tumour cells: the slide call from the percentages of tumour cells.

When the scorer found cells (``results.cells``), the slide call counts cells as ASCO/CAP and
the gastric guideline do: 3+ when more than 10% of the tumour cells are 3+, else 2+ when more
than 10% are 2+ or more, else 1+ when more than 10% are 1+ or more, else 0 (gastric biopsies:
a cluster of at least :data:`MIN_CLUSTER_CELLS` cells of a class, whatever its percentage).

Its confidence comes from the same computation as the call (:mod:`.modal`): the tiles are
resampled with replacement (cells of one tile are not independent of each other, tiles
nearly are), each resampling's cells are counted and called, and the call is the most
frequent outcome; its share is the confidence, a share below one half makes it borderline.
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


def tile_cell_counts(results: TileResults) -> np.ndarray:
    """(N, 5) cells of each scored tile: tumour cells of class 0..3+, then non-tumour."""
    counts = np.zeros((len(results), len(HER2_SCORES) + 1), np.int64)
    cells = results.cells
    if cells is None or len(cells) == 0 or len(results) == 0:
        return counts
    rows, cols = results.grid_shape
    index = np.full(rows * cols, -1, np.int64)
    index[results.rows.astype(np.int64) * cols + results.cols] = np.arange(len(results))
    tile = index[cells.row.astype(np.int64) * cols + cells.col]
    code = np.where(cells.tumour, cells.cls.astype(np.int64), len(HER2_SCORES))
    ok = tile >= 0
    np.add.at(counts, (tile[ok], code[ok]), 1)
    return counts


def edited_cell_counts(results: TileResults, label_image: np.ndarray) -> np.ndarray:
    """(N, 5) cells of each scored tile after a pathologist relabelled tiles by hand.

    ``label_image`` (rows, cols) holds ``classes.LABEL_VALUES``. A tile whose label differs
    from its scored class takes the label for its cells: labelled 0..3+, its tumour cells
    count as that class (all its cells, when it had no tumour cells); labelled non-tumour,
    artefact or unreadable, none of its cells is a tumour cell. Other tiles keep their cells.
    """
    counts = tile_cell_counts(results)
    labels = np.asarray(label_image)[results.rows, results.cols]
    changed = np.flatnonzero(labels != results.tile_labels())
    n_her2 = len(HER2_SCORES)
    for i in changed:
        name = LABEL_NAMES.get(int(labels[i]), "")
        tumour, total = counts[i, :n_her2].sum(), counts[i].sum()
        row = np.zeros(n_her2 + 1, np.int64)
        if name in HER2_SCORES:
            row[HER2_SCORES.index(name)] = tumour if tumour else total
            row[n_her2] = total - row[: n_her2].sum()
        else:
            row[n_her2] = total
        counts[i] = row
    return counts


def score_cells(results: TileResults, organ: str = "breast", specimen: str = "resection", *,
                n_samples: int = 1000, seed: int = 0,
                label_image: np.ndarray | None = None) -> SlideScore:
    """The slide score of the tumour cells in ``results`` (see the module docstring); with
    ``label_image``, of the cells as a pathologist's tile labels say (:func:`edited_cell_counts`)."""
    params = RuleParams(min_cluster_tiles=MIN_CLUSTER_CELLS)
    rule = get_rule(organ, specimen, params)
    per_tile = (tile_cell_counts(results) if label_image is None
                else edited_cell_counts(results, label_image))
    observed = per_tile.sum(axis=0)
    if observed[: len(HER2_SCORES)].sum() < MIN_TUMOUR_CELLS:
        observed = np.concatenate([np.zeros(len(HER2_SCORES), np.int64), observed[-1:]])
        per_tile = np.zeros_like(per_tile)
    samples = _resample_tiles(per_tile, n_samples, seed)
    score = summarise_counts(observed, samples, rule, n_tiles=len(results),
                       n_unreadable=int((~results.readable).sum()),
                       sampling="tile-bootstrap-of-cells", seed=seed)
    n_tumour_tiles = int((per_tile[:, : len(HER2_SCORES)].sum(axis=1) > 0).sum())
    return replace(score, method=rule.method + CELLS_SUFFIX, n_tumour_tiles=n_tumour_tiles)


def _resample_tiles(per_tile: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """(S, 5) cell counts of ``n_samples`` resamplings of the tiles with replacement."""
    n = per_tile.shape[0]
    if n == 0 or n_samples == 0:
        return np.zeros((0, per_tile.shape[1]), np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples)  # times each tile is drawn
    return picks @ per_tile

