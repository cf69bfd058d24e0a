"""A cohesive cluster's other cells: convex nuclei inside a cluster of tumour cells count as
tumour cells whatever size they measured (a pale vesicular carcinoma nucleus cut at its
half-maximum contour measures as small as a stromal one); a cell at the cluster's rim does
not."""

from __future__ import annotations

import numpy as np

from napari_her2.ihc.cells import CellParams, measure_cells
from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.ihc.nuclei import NucleusParams, cluster_members

P = NucleusParams()


def test_a_cell_touching_two_tumour_cells_joins_them_and_one_at_the_rim_does_not():
    #          seeds (a square 10 µm apart)  inside   rim (11 µm from one seed)  not convex
    y = np.array([0.0, 0.0, 10.0, 10.0, 5.0, 0.0, 5.0, 5.0])
    x = np.array([0.0, 10.0, 0.0, 10.0, 5.0, -11.0, 5.5, 5.0])
    tile = np.array([0, 0, 0, 0, 0, 0, 0, 1])  # the last one lies in another tile
    tumour = np.array([True] * 4 + [False] * 4)
    candidate = np.array([False] * 4 + [True, True, False, True])
    got = cluster_members(tile, y, x, tumour, candidate, P)
    assert got.tolist() == [True] * 4 + [True, False, False, False]
    one = cluster_members(tile, y, x, tumour, candidate, NucleusParams(member_min=1))
    assert one[5], "with one tumour cell enough, the rim cell joins too"


def test_no_cluster_no_members():
    y, x = np.array([0.0, 5.0, 10.0]), np.array([0.0, 5.0, 10.0])
    tile = np.zeros(3, int)
    got = cluster_members(tile, y, x, np.zeros(3, bool), np.ones(3, bool), P)
    assert not got.any()


def _render(h: np.ndarray) -> np.ndarray:
    matrix = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    od = h[..., None] * matrix[0] + 0.02 * matrix[0]
    return np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8)


def test_small_nuclei_inside_a_nest_are_its_tumour_cells_and_one_outside_is_not():
    """A 6 x 6 nest of plump 9 µm nuclei 12 µm apart, three of its inner nuclei small (3.6
    µm: below the epithelial 16 µm²); one small nucleus beside the nest, touching a single
    tumour cell, and one alone far away."""
    yy, xx = np.mgrid[:256, :256] * 0.5
    h = np.zeros((256, 256))
    small = {(44, 44), (44, 56), (56, 44)}
    for cy in range(20, 90, 12):
        for cx in range(20, 90, 12):
            r = 1.8 if (cy, cx) in small else 4.5
            h[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 0.4
    for cy, cx in [(20.0, 8.0), (110.0, 110.0)]:
        h[(yy - cy) ** 2 + (xx - cx) ** 2 < 1.8**2] = 0.4
    cells = measure_cells(_render(h)[None], CellParams(mpp=0.5),
                          stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB))
    at = {(int(round(cy * 0.5)), int(round(cx * 0.5))): i
          for i, (cy, cx) in enumerate(zip(cells.y, cells.x))}

    def cell(cy: int, cx: int) -> int:
        near = [i for (y, x), i in at.items() if abs(y - cy) <= 1 and abs(x - cx) <= 1]
        assert len(near) == 1, (cy, cx, sorted(at))
        return near[0]

    for cy, cx in small:
        i = cell(cy, cx)
        assert cells.tumour[i] and not cells.epithelial[i], (cy, cx)
    assert cells.tumour[cell(32, 32)] and cells.epithelial[cell(32, 32)]
    assert not cells.tumour[cell(20, 8)], "beside the nest: touches one tumour cell"
    assert not cells.tumour[cell(110, 110)], "alone"
