"""Nucleus detection (``ihc/nuclei.py``) on haematoxylin and DAB planes drawn in OD on the
nucleus grid (1 µm per pixel): what counts as a nucleus where DAB is strong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_her2.ihc.nuclei import NucleusParams, find_nuclei

SIDE = 64


def _disc(radius: float, centre: tuple[float, float] = (SIDE / 2, SIDE / 2)) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _planes(h: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return h[None].astype(np.float32), d[None].astype(np.float32)


def test_a_dark_spot_in_stained_cytoplasm_is_not_a_nucleus():
    """In a field of brown cytoplasm (DAB 0.4), a spot with less haematoxylin than DAB (0.3,
    more than the leak of a skewed DAB vector explains) is not a nucleus; a blue nucleus
    (0.6) in the same field is, and so is the spot once the rule is switched off."""
    d = np.full((SIDE, SIDE), 0.4)
    spot = np.where(_disc(4), 0.3, 0.0)
    p = NucleusParams()
    assert len(find_nuclei(*_planes(spot, d), p)) == 0
    assert len(find_nuclei(*_planes(spot, d), replace(p, stained_od=np.inf))) == 1
    assert len(find_nuclei(*_planes(np.where(_disc(4), 0.6, 0.0), d), p)) == 1
    # unstained surroundings: the same spot is a nucleus (the rule reads only stained pixels)
    assert len(find_nuclei(*_planes(spot, np.full((SIDE, SIDE), 0.1)), p)) == 1


def _ring(inner: float, outer: float, gap_deg: float = 0.0) -> np.ndarray:
    """A membrane ring around the centre (radii in µm), with a gap of ``gap_deg`` opening to
    the right."""
    yy, xx = np.mgrid[:SIDE, :SIDE] - SIDE / 2
    ring = (np.hypot(yy, xx) >= inner) & (np.hypot(yy, xx) <= outer)
    return ring & (np.abs(np.degrees(np.arctan2(yy, xx))) >= gap_deg / 2)


def _unstained_interiors(d: np.ndarray, p: NucleusParams | None = None) -> int:
    """How many cells outlined by DAB alone (no haematoxylin) the planes hold."""
    nuclei = find_nuclei(*_planes(np.zeros_like(d), d), p or NucleusParams())
    return int(nuclei.unstained.sum())


def test_an_interior_bounded_across_two_directions_is_a_cell():
    """A cell outlined by a moderate membrane (DAB 0.4, 1 µm), its nucleus unstained: its
    interior is a cell, with a gap in the membrane too (closed across the other directions)."""
    assert _unstained_interiors(np.where(_ring(4, 5), 0.4, 0.0)) == 1
    assert _unstained_interiors(np.where(_ring(4, 5, gap_deg=40), 0.4, 0.0)) == 1


def test_a_corridor_or_a_bay_is_not_a_cell():
    """Two parallel membranes 10 µm apart (a row of cells stained on two sides, a strand of
    stroma) close a corridor across one direction only, and so does a bay of pale secretion
    opening onto a wider pale area (a ring open by half its circumference): neither is a
    cell. Bounded across one direction (``hole_directions=1``), both were, as a closing by a
    square had them."""
    yy = np.mgrid[:SIDE, :SIDE][0]
    corridor = np.where((yy % 11 == 0), 0.4, 0.0)
    bay = np.where(_ring(4, 5, gap_deg=180), 0.4, 0.0)
    square = replace(NucleusParams(), hole_directions=1)
    assert _unstained_interiors(corridor) == 0
    assert _unstained_interiors(corridor, square) > 0
    assert _unstained_interiors(bay) == 0
    assert _unstained_interiors(bay, square) == 1


def test_the_enclosing_wall_is_the_kth_highest_line_closing():
    """``hole_directions`` = k takes the k-th highest of the four line closings."""
    from scipy import ndimage as ndi

    from napari_her2.ihc.nuclei import _enclosing_wall, _line_footprints

    d = np.random.default_rng(1).random((2, 40, 40)).astype(np.float32)
    closings = np.sort(np.stack([
        ndi.minimum_filter(ndi.maximum_filter(d, footprint=fp), footprint=fp)
        for fp in _line_footprints(13)]), axis=0)
    for k in (1, 2, 3, 4):
        np.testing.assert_array_equal(_enclosing_wall(d, 13, k), closings[4 - k])
