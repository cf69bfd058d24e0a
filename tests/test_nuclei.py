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
