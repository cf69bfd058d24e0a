"""Dearraying a tissue microarray: find the cores on a low-resolution tissue mask, fit them
to a (slightly rotated) grid and name them by position as QuPath does (rows A, B, …;
columns 1, 2, …).

Tissue mask -> connected components (fragments of one core are joined by a closing) ->
centres -> grid angle from the nearest-neighbour vectors (folded to ±45°, averaged on the
circle) -> centres rotated upright -> rows and columns by gaps in the rotated y and x (a
missing row or column shows as a double gap) -> an id per position. Positions of the grid
without a core are listed as missing cores.
"""

from __future__ import annotations

import logging
import math
import string
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import Her2Error
from ..ihc.tissue import TissueMask
from ..tiles.regions import Polygon, Region, circle_polygon

log = logging.getLogger(__name__)

#: a core's outline is drawn this much wider than the tissue found (edge tiles stay in)
OUTLINE_MARGIN = 1.05
#: components smaller than this fraction of a typical core are dust, not cores
MIN_CORE_FRACTION = 0.2
#: optical density above the glass's (its 90th-percentile colour) that marks a core's pixel
CORE_OD = 0.01
GLASS_PERCENTILE = 90
#: closing radius that joins the fragments of one core, as a fraction of the core pitch
JOIN_FRACTION = 0.05


class TmaError(Her2Error, ValueError):
    """No cores found, or they do not fit the grid that was asked for."""


@dataclass(frozen=True)
class Core:
    """One grid position: ``centre`` (x, y) and ``diameter`` in level-0 px; ``missing``
    when no tissue lies there; ``tissue_fraction``: tissue over the core's disc."""

    id: str
    row: int
    col: int
    centre: tuple[float, float]
    diameter: float
    missing: bool = False
    tissue_fraction: float = 0.0

    def region(self) -> Region:
        """The core's outline (a circle) as a region named by its id."""
        ring = circle_polygon(*self.centre, self.diameter / 2)
        return Region((Polygon(ring, label=self.id),), (), self.id)


@dataclass(frozen=True)
class TmaGrid:
    """The dearrayed cores in row-major order; ``shape`` (rows, cols); ``angle_deg``: grid
    rotation; ``pitch`` (y, x): level-0 px between neighbouring positions."""

    cores: tuple[Core, ...]
    shape: tuple[int, int]
    angle_deg: float
    pitch: tuple[float, float]

    def core(self, core_id: str) -> Core:
        return next(c for c in self.cores if c.id == core_id)

    @property
    def present(self) -> tuple[Core, ...]:
        return tuple(c for c in self.cores if not c.missing)


def row_label(row: int) -> str:
    """QuPath's row labels: A … Z, then AA, AB, …"""
    letters = string.ascii_uppercase
    return letters[row] if row < 26 else row_label(row // 26 - 1) + letters[row % 26]


def core_id(row: int, col: int) -> str:
    """``A1`` for the top-left core, ``B3`` for the second row's third column."""
    return f"{row_label(row)}{col + 1}"


def parse_grid(text: str) -> tuple[int, int]:
    """``"6x8"`` -> (6, 8); TmaError when malformed."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise TmaError(f"grid {text!r}: expected ROWSxCOLS, e.g. 6x8") from None
    if rows < 1 or cols < 1:
        raise TmaError(f"grid {text!r}: rows and columns must be at least 1")
    return rows, cols


# ---------------------------------------------------------------------- components
def core_mask(tissue: TissueMask) -> np.ndarray:
    """The tissue mask plus anything darker than the glass by :data:`CORE_OD` (pale cores
    that the scoring mask leaves out must still be found), smoothed, holes filled."""
    mask = tissue.mask
    if tissue.thumbnail is not None:
        rgb = tissue.thumbnail[..., :3].astype(np.float32)
        glass = np.percentile(rgb.reshape(-1, 3), GLASS_PERCENTILE, axis=0)
        od = -np.log10(np.clip(rgb / np.maximum(glass, 1), 1e-3, 1)).mean(axis=-1)
        mask = mask | (ndi.gaussian_filter(od, 1.5) > CORE_OD)
        mask = ndi.binary_opening(mask, structure=np.ones((3, 3), bool))
    return ndi.binary_fill_holes(mask)


def _components(tissue: TissueMask) -> tuple[np.ndarray, list[int]]:
    """Labelled tissue pieces (holes filled) and the labels large enough to be cores."""
    mask = core_mask(tissue)
    labels, n = ndi.label(mask)
    if n == 0:
        return labels, []
    areas = np.bincount(labels.ravel())[1:]
    big = areas[areas >= 0.5 * areas.max()]
    typical = float(np.median(big))
    pitch_px = math.sqrt(typical)  # about one core diameter, in mask pixels
    radius = max(1, int(round(JOIN_FRACTION * pitch_px)))
    joined = ndi.binary_closing(mask, structure=np.ones((2 * radius + 1,) * 2, bool))
    labels, n = ndi.label(ndi.binary_fill_holes(joined | mask))
    areas = np.bincount(labels.ravel())[1:]
    keep = [i + 1 for i, a in enumerate(areas) if a >= MIN_CORE_FRACTION * typical]
    return labels, keep


def _centres(labels: np.ndarray, keep: list[int], tissue: TissueMask) -> np.ndarray:
    """(N, 2) level-0 (x, y) centroids of the kept components."""
    dy, dx = tissue.downsample
    yx = np.array(ndi.center_of_mass(np.ones_like(labels), labels, keep), float).reshape(-1, 2)
    return np.stack([(yx[:, 1] + 0.5) * dx, (yx[:, 0] + 0.5) * dy], axis=1)


# ---------------------------------------------------------------------- grid fit
def grid_angle(centres: np.ndarray) -> float:
    """Grid rotation (radians, within ±45°) from nearest-neighbour vectors: each vector's
    angle is folded to a quarter turn and averaged on the circle (angle x 4)."""
    if len(centres) < 2:
        return 0.0
    d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(d, np.inf)
    nn = centres[d.argmin(axis=1)] - centres
    theta = np.arctan2(nn[:, 1], nn[:, 0])
    return float(np.angle(np.exp(4j * theta).mean()) / 4)


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    """Points rotated by ``-angle`` (the grid upright)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * xy[:, 0] + s * xy[:, 1], -s * xy[:, 0] + c * xy[:, 1]], axis=1)


def _axis_index(values: np.ndarray, gap: float) -> tuple[np.ndarray, float]:
    """Index along one axis (0 = first) and the pitch: values split where they jump by more
    than ``gap``; a jump of k pitches skips k - 1 positions (a missing row/column)."""
    order = np.argsort(values)
    groups = np.cumsum(np.r_[0, np.diff(values[order]) > gap])
    means = np.array([values[order][groups == g].mean() for g in range(groups[-1] + 1)])
    steps = np.diff(means)
    pitch = float(np.median(steps[steps < 1.5 * steps.min()])) if len(steps) else 0.0
    index_of_group = np.zeros(len(means), int)
    if len(steps):
        index_of_group[1:] = np.cumsum(np.maximum(1, np.round(steps / pitch))).astype(int)
    out = np.empty(len(values), int)
    out[order] = index_of_group[groups]
    return out, pitch


@dataclass(frozen=True, eq=False)
class GridFit:
    """Core centres on a grid: ``rows`` / ``cols`` per centre; a position's level-0 (x, y)
    is ``origin + col * col_step + row * row_step`` (a least-squares fit to the centres)."""

    rows: np.ndarray
    cols: np.ndarray
    origin: np.ndarray
    col_step: np.ndarray
    row_step: np.ndarray

    @property
    def angle(self) -> float:
        """Rotation of the grid (radians)."""
        return math.atan2(self.col_step[1], self.col_step[0])

    @property
    def pitch(self) -> tuple[float, float]:
        """(y, x) level-0 px between neighbouring rows and columns."""
        return float(np.linalg.norm(self.row_step)), float(np.linalg.norm(self.col_step))

    def position(self, row: int, col: int) -> tuple[float, float]:
        x, y = self.origin + col * self.col_step + row * self.row_step
        return float(x), float(y)


def fit_grid(centres: np.ndarray, shape: tuple[int, int] | None = None) -> GridFit:
    """Rows and columns of core centres (N, 2) (x, y), then the grid fitted to them."""
    angle = grid_angle(centres)
    upright = _rotate(centres, angle)
    if len(centres) > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        np.fill_diagonal(d, np.inf)
        gap = 0.5 * float(np.median(d.min(axis=1)))
    else:
        gap = 1.0
    cols, px = _axis_index(upright[:, 0], gap)
    rows, py = _axis_index(upright[:, 1], gap)
    if shape is not None and (rows.max() >= shape[0] or cols.max() >= shape[1]):
        raise TmaError(f"the cores span {rows.max() + 1} x {cols.max() + 1} positions, more "
                       f"than the {shape[0]}x{shape[1]} grid given")
    px, py = px or py or 2 * gap, py or px or 2 * gap
    c, s = math.cos(angle), math.sin(angle)
    col_step, row_step = np.array([c * px, s * px]), np.array([-s * py, c * py])
    origin = np.median(centres - np.outer(cols, col_step) - np.outer(rows, row_step), axis=0)
    if len(set(rows.tolist())) > 1 and len(set(cols.tolist())) > 1 and len(centres) > 3:
        design = np.column_stack([np.ones(len(centres)), cols, rows])
        (origin, col_step, row_step), *_ = np.linalg.lstsq(design, centres, rcond=None)
    return GridFit(rows, cols, origin, col_step, row_step)


# ---------------------------------------------------------------------- dearraying
def find_cores(tissue: TissueMask, shape: tuple[int, int] | None = None) -> TmaGrid:
    """Dearray a TMA from its tissue mask; ``shape`` (rows, cols) when known (positions
    past the cores found are then listed as missing too)."""
    labels, keep = _components(tissue)
    if not keep:
        raise TmaError("no tissue cores found on the slide")
    centres = _centres(labels, keep, tissue)
    fit = fit_grid(centres, shape)
    rows, cols = fit.rows, fit.cols
    shape = shape or (int(rows.max()) + 1, int(cols.max()) + 1)
    cells: dict[tuple[int, int], list[int]] = {}
    for lab, r, c in zip(keep, rows.tolist(), cols.tolist(), strict=True):
        cells.setdefault((r, c), []).append(lab)
    found = {cell: _core_stats(labels, labs, tissue) for cell, labs in cells.items()}
    diameter = float(np.median([d for _, d, _ in found.values()]))
    cores = []
    for r in range(shape[0]):
        for c in range(shape[1]):
            if (r, c) in found:
                centre, diam, frac = found[(r, c)]
                cores.append(Core(core_id(r, c), r, c, centre, diam, False, frac))
            else:
                centre = fit.position(r, c)
                cores.append(Core(core_id(r, c), r, c, centre, diameter, True, 0.0))
    log.info("TMA: %d cores on a %d x %d grid rotated %.1f°", len(found), *shape,
             math.degrees(fit.angle))
    return TmaGrid(tuple(cores), shape, math.degrees(fit.angle), fit.pitch)


def _core_stats(labels: np.ndarray, labs: list[int], tissue: TissueMask
                ) -> tuple[tuple[float, float], float, float]:
    """(centre (x, y), outline diameter, tissue fraction of the disc), level-0 px."""
    dy, dx = tissue.downsample
    ys, xs = np.nonzero(np.isin(labels, labs))
    x, y = (xs + 0.5) * dx, (ys + 0.5) * dy
    cx, cy = float(x.mean()), float(y.mean())
    radius = float(np.percentile(np.hypot(x - cx, y - cy), 99)) * OUTLINE_MARGIN
    radius = max(radius, 0.5 * max(dx, dy))
    disc = math.pi * radius * radius / (dx * dy)
    inside = np.hypot(x - cx, y - cy) <= radius
    on_tissue = tissue.mask[ys[inside], xs[inside]].sum()
    return (cx, cy), 2 * radius, float(min(1.0, on_tissue / disc))
