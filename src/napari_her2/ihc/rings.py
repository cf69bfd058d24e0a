"""Cell geometry and membrane-ring statistics for :mod:`.cells` (vectorised over a stack).

- :func:`grow_cells`: each nucleus grown by a bounded expansion (every pixel to its nearest
  nucleus, within that nucleus' reach), and the membrane ring: every pixel within ``ring``
  of the cell's boundary on either side (the expansion boundary plus and minus ``ring``;
  two touching cells share the band between them);
- :func:`ring_sectors`, :func:`crest`: the ring pixels of each cell binned into angular
  sectors around its nucleus, and per (cell, sector) the crest (maximum) of a plane;
- :func:`label_means`, :func:`label_quantile`: per-label means and quantiles by bincount and
  one sort;
- :func:`longest_run`: the longest circular run of stained sectors of each ring;
- :func:`measure_rings`: per cell the crest of each ring sector over the cell's background
  at each view, the background, the ring's mean and its robust maximum;
- :func:`read_sectors`: which sectors are stained, and the completeness, longest arc and
  contrast at each view that follow, with every OD scaled (stains recorded weaker or
  stronger).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Geometry", "Rings", "crest", "grow_cells", "ring_sectors", "label_means",
           "label_quantile", "longest_run", "measure_rings", "read_sectors"]

#: the ring quantile reported as its robust maximum
RING_QUANTILE = 0.95


Pixels = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Geometry:
    """Cells of a (N, h, w) stack: label maps (the nucleus label, 0 elsewhere) and the ring.

    A ring pixel near the boundary of two cells belongs to both rings, so the ring is a list
    of (pixel, cell) entries: ``ring_at`` (as ``np.nonzero`` gives them) and ``ring_cell``.
    """

    cell: np.ndarray
    ring_at: Pixels
    ring_cell: np.ndarray  #: int64 label (1..n) of each ring entry
    cytoplasm: np.ndarray  #: interior minus nuclei
    interior: np.ndarray  #: cell minus its inner ring band and the tile's edge band


def _expand(nuclei: np.ndarray, reach_px: np.ndarray, ring_px: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cells (each background pixel joins its nearest nucleus within that nucleus' reach) and
    the band just beyond a free cell boundary (labelled with the nearest nucleus)."""
    cell = np.zeros_like(nuclei)
    outer = np.zeros_like(nuclei)
    for i in np.flatnonzero(nuclei.reshape(len(nuclei), -1).any(axis=1)):
        dist, (iy, ix) = ndi.distance_transform_edt(nuclei[i] == 0, return_indices=True)
        near = nuclei[i][iy, ix]
        reach = reach_px.take(near)
        cell[i] = np.where(dist <= reach, near, 0)
        outer[i] = np.where((dist > reach) & (dist <= reach + ring_px), near, 0)
    return cell, outer


def grow_cells(nuclei: np.ndarray, reach_px: np.ndarray, ring_px: int) -> Geometry:
    """Cells of labelled ``nuclei`` (N, h, w) and their rings.

    Each background pixel joins its nearest nucleus (Euclidean, within its tile) when it lies
    within that nucleus' ``reach_px`` (indexed by label, 0 for the background): touching
    cells meet half-way, as QuPath's cell expansion does. A cell's ring is every pixel within
    ``ring_px`` (a square window) of its boundary, on both sides: its own band, the band of a
    touching neighbour (two rings share the membrane between them) and the band outside a free
    boundary.
    """
    cell, outer = _expand(nuclei, reach_px, ring_px)
    k = (1, 2 * ring_px + 1, 2 * ring_px + 1)
    hi, lo = ndi.maximum_filter(cell, size=k), ndi.minimum_filter(cell, size=k)
    inside = cell > 0
    inner = (hi != lo) & inside
    parts = [(inner, cell), ((hi != cell) & inside, hi),
             ((lo != cell) & (lo != hi) & (lo > 0) & inside, lo), (outer > 0, outer)]
    found = [(np.nonzero(m), lab) for m, lab in parts]
    z, y, x = (np.concatenate([w[a] for w, _ in found]) for a in range(3))
    ring_cell = np.concatenate([lab[w] for w, lab in found]).astype(np.int64)
    interior = np.where(inner, 0, cell)
    interior[:, :ring_px] = interior[:, -ring_px:] = 0  # the tile's edge may be membrane
    interior[:, :, :ring_px] = interior[:, :, -ring_px:] = 0
    return Geometry(cell, (z, y, x), ring_cell, np.where(nuclei > 0, 0, interior), interior)


def ring_sectors(at: Pixels, label: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                 n_sectors: int) -> np.ndarray:
    """Key ``cell * n_sectors + sector`` of each ring entry (pixel ``at``, cell ``label`` 1..n):
    its cell index and its angular sector around the cell's centre (``cy``, ``cx`` per cell,
    in the pixels of the grid)."""
    cell = label - 1
    angle = np.arctan2(at[1] - cy[cell], at[2] - cx[cell])
    sector = ((angle + np.pi) * (n_sectors / (2 * np.pi))).astype(np.int64)
    np.minimum(sector, n_sectors - 1, out=sector)
    return cell * n_sectors + sector


def crest(values: np.ndarray, key: np.ndarray, size: int) -> np.ndarray:
    """Per key 0..size-1: the maximum of ``values`` (-inf where a key has none)."""
    out = np.full(size, -np.inf, np.float32)
    np.maximum.at(out, key, values)
    return out


def label_means(labels: np.ndarray, planes: list[np.ndarray], n: int
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pixel count of labels 1..n and each plane's mean over them (0 where empty)."""
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    safe = np.maximum(count, 1)
    means = [np.bincount(flat, weights=pl.ravel(), minlength=n + 1)[1:] / safe for pl in planes]
    return count, means


def label_quantile(values: np.ndarray, label: np.ndarray, n: int, q: float) -> np.ndarray:
    """Per label 0..n-1 the ``q`` quantile (nearest rank) of ``values`` (0 where empty)."""
    out = np.zeros(n, np.float64)
    if len(values) == 0:
        return out
    v = np.clip(values.astype(np.float64), 0, None)
    top = float(v.max()) + 1
    order = np.argsort(label + v / top, kind="stable")
    ranked = v[order]
    count = np.bincount(label, minlength=n)
    start = np.cumsum(count) - count
    has = count > 0
    pick = start[has] + np.ceil(q * count[has]).astype(np.int64) - 1
    out[has] = ranked[np.clip(pick, start[has], start[has] + count[has] - 1)]
    return out


def longest_run(stained: np.ndarray) -> np.ndarray:
    """Longest circular run of True per row of a (n, k) array (k where a row is all True)."""
    n, k = stained.shape
    if n == 0:
        return np.zeros(0, np.int64)
    twice = np.concatenate([stained, stained], axis=1).astype(np.int64)
    total = np.cumsum(twice, axis=1)
    at_gap = np.maximum.accumulate(np.where(twice == 0, total, 0), axis=1)
    return np.minimum((total - at_gap).max(axis=1), k)


def read_sectors(crests: list[np.ndarray], present: np.ndarray, background: np.ndarray,
                 floor_od: float, visible_od: float, scale: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Completeness, longest arc (fractions of the present sectors) and contrast at each view
    (n, len(crests)) of rings whose sector crests over the cell's background are ``crests``
    (one (n, k) array per view, the first at full resolution), ``present`` (n, k) the sectors
    that hold ring pixels and ``background`` (n,) the cell's background at full resolution.

    A sector is stained when its crest reaches ``floor_od`` and stands ``visible_od`` above
    the background; the contrast is the mean crest over the stained sectors (over all present
    ones when none is). ``scale`` multiplies every OD: the same membranes recorded weaker or
    stronger (deconvolution is linear in OD).
    """
    fine = crests[0] * scale
    stained = present & (fine + background[:, None] * scale >= floor_od) & (fine >= visible_od)
    n_present = np.maximum(present.sum(axis=1), 1)
    n_stained = stained.sum(axis=1)
    use = np.where((n_stained > 0)[:, None], stained, present)
    n_use = np.maximum(use.sum(axis=1), 1)
    contrast = np.stack([np.where(use, c, 0).sum(axis=1) / n_use for c in crests], axis=1)
    return n_stained / n_present, longest_run(stained) / n_present, contrast * scale


@dataclass(frozen=True)
class Rings:
    """Per cell (n) of a stack: the crest of each of its k ring sectors over the cell's
    background at each view, which sectors hold ring pixels, the background at full
    resolution, the ring's mean and its :data:`RING_QUANTILE` at full resolution."""

    crests: list[np.ndarray]  #: per view (n, k)
    present: np.ndarray  #: (n, k)
    background: np.ndarray
    ring_mean: np.ndarray
    ring_max: np.ndarray


def measure_rings(crest_planes: list[np.ndarray], mean_planes: list[np.ndarray], geo: Geometry,
                  centres: tuple[np.ndarray, np.ndarray], closed: np.ndarray, n_sectors: int
                  ) -> Rings:
    """:class:`Rings` of the cells of ``geo`` (``centres``: their (y, x) on the grid).

    ``crest_planes`` give each sector's crest (its maximum) and ``mean_planes`` the cell's
    background (mean), one of each per view; all on the grid of ``geo``. The background is the
    cytoplasm's mean DAB; for a ``closed`` cell (its object is the whole unstained interior)
    and a cell without cytoplasm pixels, the interior's.
    """
    n, k, where = len(closed), n_sectors, geo.ring_at
    key = ring_sectors(where, geo.ring_cell, centres[0], centres[1], k)
    present = (np.bincount(key, minlength=n * k) > 0).reshape(n, k)
    n_cyto, bg_cyto = label_means(geo.cytoplasm, mean_planes, n)
    _, bg_inside = label_means(geo.interior, mean_planes, n)
    use_cyto = (n_cyto > 0) & ~closed
    backgrounds = [np.where(use_cyto, c, i) for c, i in zip(bg_cyto, bg_inside)]
    crests = [crest(pl[where], key, n * k).reshape(n, k) - bg[:, None]
              for pl, bg in zip(crest_planes, backgrounds)]
    ring = geo.ring_cell - 1
    count = np.bincount(ring, minlength=n)
    ring_mean = np.bincount(ring, weights=mean_planes[0][where], minlength=n) / np.maximum(count, 1)
    return Rings(crests=crests, present=present, background=backgrounds[0], ring_mean=ring_mean,
                 ring_max=label_quantile(crest_planes[0][where], key // k, n, RING_QUANTILE))
