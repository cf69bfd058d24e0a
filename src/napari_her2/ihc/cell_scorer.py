"""The weight-free ``dab-cells`` scorer: HER2 counted over tumour cells, as the guideline does.

:class:`DabCellScorer` implements ``ContextPredictor`` on top of :func:`.cells.measure_cells`:
every tile is read with the slide around it (:attr:`DabCellScorer.context_um`), its cells are
found and classed on the whole window and those inside the tile kept; the tile's class is the
one the guideline gives to *its* tumour cells (the highest class reached by more than 10% of
them; non-tumour without tumour cells), so the tile overlay and the cells never disagree, and
the cells themselves
travel with the prediction so that the slide call is made from the percentages of tumour
cells (:func:`napari_her2.scoring.cells.score_cells`). Stain vectors are estimated per slide
as the ``dab-membrane`` scorer does, and reported beside the identity, not in it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special

from ..predict import CellColumns, Prediction
from .cells import CellBatch, CellParams, cell_counts, grid_factors, measure_cells, tile_classes
from .deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    WHITE,
    Vector3,
    stain_estimates,
    stain_matrix,
)
from .membrane import CLASSES, DabMembraneParams
from .scorer import INTENDED_USE, DabMembraneScorer, over_slices

#: version of the measurement, part of the identity: the same parameters measured another way
#: give another hash (2: tile probabilities carry the sampling error of their cell counts;
#: 3: OD read against the slide's background; 4: cell outlines seen at ×20 and bounded across
#: two directions, strong membranes seen at ×5, each cell also read with the stains weaker and
#: stronger; 5: each tile judged with the slide around it, :attr:`DabCellScorer.context_um`;
#: 6: beyond the slide's edge that context is the edge's mean colour, not white:
#: ``run.inference.extend_edges``)
METHOD_VERSION = 6
#: per-tile features: tumour cells of each class, non-tumour cells, and the mean ring OD
FEATURE_NAMES: tuple[str, ...] = ("cells_0", "cells_1+", "cells_2+", "cells_3+",
                                  "cells_non_tumour", "ring_od_mean")
LIMITS = (
    "Counts tumour cells found by nuclear morphology and clustering (never by DAB); sheets of "
    "lymphocytes can still be counted as tumour, a carcinoma with small pale nuclei can be "
    "missed, and in-situ carcinoma and normal epithelium cannot be told from invasive "
    "carcinoma.",
    "Each membrane ring is placed by a 5 µm expansion of its nucleus, not traced: the basal "
    "membrane of columnar cells can be missed.",
    "Each tile is read with {context_um:g} µm of the slide around it: a cell at its edge is "
    "judged on its whole ring and with its neighbours across the edge, so the cells do not "
    "depend on the tile size; beyond the slide's edge the runner gives the edge's mean "
    "colour, so a cell at the slide's edge has neighbours on one side only. A cell whose "
    "centre lies within about half a pixel of a tile's edge, as each tile measures it, can be "
    "counted by both tiles or by neither.",
    "3+ against 2+ turns on the membranes seen at x5: on the shared images 12% of the tumour "
    "cells of a textbook 3+ and 7% of those of a 2+ core, against a cut of 10%.",
    "Not a validated device; not for diagnosis.",
)


#: a scan up to this factor coarser than ``CellParams.fine_um`` (×40) is read at ×40
FORTY_X_SLACK = 1.2


@dataclass
class DabCellScorer:
    """The weight-free ``dab-cells`` tile scorer (implements ``TilePredictor``)."""

    params: CellParams = field(default_factory=CellParams)
    haematoxylin: Vector3 = DEFAULT_HAEMATOXYLIN
    dab: Vector3 = DEFAULT_DAB
    #: colour of glass the slide's OD is read against (estimated by :meth:`for_slide`)
    background: Vector3 = WHITE
    name: str = field(default="dab-cells", init=False)
    classes: tuple[str, ...] = field(default=CLASSES, init=False)
    input_size: int = field(default=256, init=False)
    feature_names: tuple[str, ...] = field(default=FEATURE_NAMES, init=False)

    @property
    def target_mpp(self) -> float:
        return self.params.mpp

    @property
    def sha256(self) -> str:
        """Hash of the fixed parameters (the stain vectors and the background are
        estimated per slide)."""
        return hashlib.sha256(json.dumps(
            {"scorer": self.name, "version": METHOD_VERSION,
             "params": json.loads(self.params.to_json())},
            sort_keys=True).encode()).hexdigest()

    def slide_estimates(self) -> dict[str, Any]:
        return stain_estimates(self.haematoxylin, self.dab, self.background)

    def faint_caveat(self) -> str:
        """"" when the tiles are read at ×40 (where the magnification rule sees 1+
        membranes); otherwise what a call of 0 cannot rule out, said beside it."""
        if self.params.mpp <= self.params.fine_um * FORTY_X_SLACK:
            return ""
        return (f"read at {self.params.mpp:g} µm/px, where faint (1+) membranes seen only at "
                "×40 do not show: review 0 vs 1+ at ×40")

    def mpp_caveat(self, source: str) -> str:
        """"" when the slide's µm/px was read from its file; otherwise (``source`` "user": given
        by hand) what a wrong value does, said beside the call. Nuclei are judged by their area
        in µm² and clusters by distances in µm, so the tumour cells follow the stated value
        steeply: on the shared 1+ core 491 / 952 / 1,763 of them at 0.9 / 1 / 1.1 times it."""
        if source != "user":
            return ""
        return ("µm/px given by hand, not read from the file: tumour cells are judged by the "
                "size of their nuclei, and a value 10% off can halve or nearly double how many "
                "are found; check it against the scanner's")

    def geometry_for_scan(self, scan_mpp: float) -> tuple[int, float]:
        """(tile px, µm/px) this scorer reads a scan of ``scan_mpp`` at when no resolution is
        asked for: ×40 (``fine_um``, 0.25) where the scan has it, else ×20 (0.5), in tiles of
        the card's 128 µm either way. The magnification rule sees 1+ membranes only at ×40;
        a scan up to a fifth coarser than ×40 (0.3 µm/px: Aperio, Hamamatsu, Leica and
        3DHistech ×40 scanners give 0.23-0.26) counts as ×40."""
        default = CellParams().mpp
        mpp = self.params.fine_um if scan_mpp <= self.params.fine_um * FORTY_X_SLACK else default
        return int(round(self.input_size * default / mpp)), mpp

    def at_mpp(self, mpp: float) -> DabCellScorer:
        return self if mpp == self.params.mpp else replace(
            self, params=replace(self.params, mpp=float(mpp)))

    def for_organ(self, organ: str) -> DabCellScorer:
        return self if organ == self.params.organ else replace(
            self, params=replace(self.params, organ=organ))

    def for_slide(self, rgb_sample: np.ndarray,
                  tissue_mask: np.ndarray | None = None) -> DabCellScorer:
        """A copy with the slide's own stain vectors and background (estimated as
        ``dab-membrane`` does)."""
        membrane = DabMembraneScorer(DabMembraneParams(mpp=self.params.mpp))
        adapted = membrane.for_slide(rgb_sample, tissue_mask).params
        return replace(self, haematoxylin=adapted.haematoxylin, dab=adapted.dab,
                       background=adapted.background)

    @property
    def context_um(self) -> float:
        """How far (µm) beyond a tile its cells are judged from: a tumour cell needs its
        epithelial neighbours within ``cluster_radius_um``, a cluster's other cell the tumour
        cells within ``member_um``, and each of those its whole nucleus, whose background
        and outline are read within ``hole_um``."""
        n = self.params.nucleus
        return n.cluster_radius_um + n.member_um + n.hole_um

    @property
    def context_px(self) -> int:
        """:attr:`context_um` in tile pixels, a whole number of nucleus-grid pixels, so that
        a tile read with it lies on the same grid."""
        fine, grid = grid_factors(self.params)
        step = fine * grid
        return step * int(np.ceil(self.context_um / (self.params.mpp * step)))

    def predict(self, tiles: np.ndarray, context: int = 0) -> Prediction:
        """Find and class the cells of uint8 tiles (N, H, W, 3); tile classes from them.
        ``context``: pixels of the surrounding slide on each side of every tile (the runner
        reads :attr:`context_px`); the cells are judged with it and kept inside the tile."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"expected tiles of shape (N, H, W, 3), got {tiles.shape}")
        n = tiles.shape[0]
        cells = self._measure(tiles, context)
        counts = cell_counts(cells, n)
        probs = tile_probabilities(counts)
        ring = np.full(n, np.nan, np.float32)
        if len(cells):
            total = np.bincount(cells.tile, weights=cells.ring_od_mean, minlength=n)
            seen = np.bincount(cells.tile, minlength=n)
            ring = np.where(seen > 0, total / np.maximum(seen, 1), np.nan).astype(np.float32)
        features = np.concatenate([counts.astype(np.float32), ring[:, None]], axis=1)
        return Prediction(probs, features, cells=_columns(cells))

    def _measure(self, tiles: np.ndarray, context: int = 0) -> CellBatch:
        """``measure_cells`` over slices of the batch in threads (see :func:`over_slices`)."""
        matrix = stain_matrix(self.haematoxylin, self.dab)
        parts = over_slices(len(tiles),
                            lambda idx: measure_cells(tiles[idx], self.params, matrix,
                                                      self.background, context), "cells")
        return parts[0][1] if len(parts) == 1 else _concat(parts)

    def describe(self) -> dict[str, Any]:
        """Model card: what the scorer measures, its parameters and its limits."""
        return {
            "name": self.name,
            "kind": "rule-based (no weights)",
            "classes": list(self.classes),
            "input_size": self.input_size,
            "target_mpp": self.target_mpp,
            "context_um": self.context_um,
            "feature_names": list(self.feature_names),
            "sha256": self.sha256,
            "thresholds": asdict(self.params),
            "method": (
                "H-DAB colour deconvolution; nuclei split by a distance-transform watershed; "
                "cells by a 5 µm expansion, each tile judged with the slide around it; "
                "membrane ring completeness in 16 sectors; "
                "intensity by the magnification rule (visible at 2 / 1 µm/px or only at full "
                "resolution); tumour cells by nuclear morphology in cohesive clusters; ASCO/CAP "
                "cell classes; tile class = the guideline's class of its tumour cells"
            ),
            "training_data": None,
            "intended_use": INTENDED_USE,
            "limits": tuple(limit.format(context_um=self.context_um) for limit in LIMITS),
        }


def tile_probabilities(counts: np.ndarray, cut: float = 0.1) -> np.ndarray:
    """(n_tiles, 5) float32 class probabilities of tiles from their cell counts (rows of
    :func:`.cells.cell_counts`), whose arg-max is always :func:`.cells.tile_classes`.

    Half the mass is the class the cells give. The other half says how near the tile is to
    the guideline's cut: with ``a_k`` of its ``n`` tumour cells of class k or higher, whether
    more than ``cut`` of its cells are is uncertain by the sampling error of a proportion,
    P(>= k) = Phi((a_k - cut n) / sqrt(n cut (1 - cut))), and class k gets
    P(>= k) - P(>= k + 1). A tile whose class a cell or two decide is then split across that
    boundary, and the review queue finds it; a tile far from every cut stays one-hot. Tiles
    without tumour cells are non-tumour with certainty.
    """
    counts = np.asarray(counts, np.float64)
    hard = tile_classes(counts, cut)
    n = counts[:, :4].sum(axis=1)
    at_least = np.cumsum(counts[:, 3::-1], axis=1)[:, ::-1][:, 1:]  # classes >= 1+, 2+, 3+
    spread = np.sqrt(np.maximum(n * cut * (1 - cut), 1e-12))[:, None]
    over = special.ndtr((at_least - cut * n[:, None]) / spread)
    cumulative = np.concatenate([np.ones((len(n), 1)), over, np.zeros((len(n), 1))], axis=1)
    soft = np.zeros((len(n), len(CLASSES)))
    soft[:, :4] = cumulative[:, :-1] - cumulative[:, 1:]
    probs = np.eye(len(CLASSES))[hard]
    tumour = n > 0
    probs[tumour] = 0.5 * probs[tumour] + 0.5 * soft[tumour]
    return probs.astype(np.float32)


def _concat(parts: list[tuple[int, CellBatch]]) -> CellBatch:
    """One CellBatch of (first tile, batch) slices, tile indices shifted by each first tile."""
    shifted = [replace(b, tile=b.tile + off) for off, b in parts]
    names = [f for f in CellBatch.__dataclass_fields__ if f != "views_um"]
    joined = {f: np.concatenate([getattr(b, f) for b in shifted]) for f in names}
    return CellBatch(**joined, views_um=parts[0][1].views_um)


def _columns(cells: CellBatch) -> CellColumns:
    """The cells as the prediction carries them; ``visible_mpp`` the coarsest view at which
    the membrane is seen (NaN when it is not)."""
    views = np.array([np.nan, *cells.views_um], np.float32)  # visibility 0..3
    return CellColumns(tile=cells.tile.astype(np.int32), y=cells.y, x=cells.x,
                       cls=cells.her2_class.astype(np.int8), ring_od=cells.ring_od_mean,
                       completeness=cells.completeness,
                       visible_mpp=views[cells.visibility.astype(np.int64)],
                       nucleus_um2=cells.nucleus_area_um2, outlined=cells.unstained_nucleus,
                       cls_paler=cells.class_paler, cls_darker=cells.class_darker,
                       ring_od_max=cells.ring_od_max, cytoplasm_od=cells.cytoplasm_od,
                       longest_arc=cells.longest_arc, eccentricity=cells.eccentricity)
