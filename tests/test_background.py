"""The slide's background (the colour of its glass) and OD read against it: a darker or
greyer scan of the same glass gives the same stains and the same cells."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from napari_her2.ihc import scorer as scorer_module
from napari_her2.ihc.cell_scorer import DabCellScorer
from napari_her2.ihc.cells import cell_counts
from napari_her2.ihc.deconvolution import (
    WHITE,
    deconvolve,
    estimate_background,
    optical_density,
)


def _dimmed(rgb: np.ndarray, exposure: float) -> np.ndarray:
    """The same glass scanned with less light: every intensity times ``exposure``."""
    return np.clip(np.round(rgb * exposure), 0, 255).astype(np.uint8)


def _tiles(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    ny, nx = rgb.shape[0] // size, rgb.shape[1] // size
    return np.stack([rgb[y * size:(y + 1) * size, x * size:(x + 1) * size]
                     for y in range(ny) for x in range(nx)])


def test_the_background_is_the_brightest_neutral_colour():
    rng = np.random.default_rng(0)
    glass = np.full((100, 100, 3), (200, 201, 199), np.uint8)
    glass[:60] = (150, 110, 80)  # brown (DAB): coloured, never taken for glass
    glass[60:80] = (90, 100, 160)  # blue (haematoxylin)
    noisy = np.clip(glass + rng.normal(0, 1, glass.shape), 0, 255).astype(np.uint8)
    assert estimate_background(noisy) == pytest.approx((200, 201, 199), abs=2)
    assert estimate_background(np.full((50, 50, 3), 255, np.uint8)) == WHITE
    # no neutral pixel, or a "glass" too dark to be one: white, the white-balanced default
    assert estimate_background(np.full((50, 50, 3), (150, 110, 80), np.uint8)) == WHITE
    assert estimate_background(np.full((50, 50, 3), 100, np.uint8)) == WHITE


def test_od_against_the_background_does_not_depend_on_the_exposure():
    rgb = data.immunohistochemistry()
    h, d = deconvolve(rgb, background=estimate_background(rgb))
    dim = _dimmed(rgb, 0.75)
    h_dim, d_dim = deconvolve(dim, background=estimate_background(dim))
    # the same within 8-bit rounding (a level of 250 is 0.002 OD, of 60 about 0.007)
    assert np.abs(d_dim - d).mean() < 0.005 and np.abs(h_dim - h).mean() < 0.005
    # against white, the dimmer scan carries log10(1 / 0.75) = 0.125 OD more everywhere
    assert (optical_density(dim) - optical_density(rgb)).mean() > 0.1
    assert optical_density(rgb, WHITE).tolist() == optical_density(rgb).tolist()


@pytest.fixture(scope="module")
def counts_by_exposure() -> dict[tuple[float, bool], np.ndarray]:
    """Cells of each class (0, 1+, 2+, 3+, non-tumour) in the skimage IHC image scanned at
    two exposures, with the background estimated (True) or taken as white (False)."""
    out = {}
    for exposure in (1.0, 0.7):
        tiles = _tiles(_dimmed(data.immunohistochemistry(), exposure))
        scorers = {True: DabCellScorer().for_slide(tiles)}
        with pytest.MonkeyPatch.context() as white:
            white.setattr(scorer_module, "estimate_background", lambda rgb: WHITE)
            scorers[False] = DabCellScorer().for_slide(tiles)
        for estimated, scorer in scorers.items():
            out[exposure, estimated] = cell_counts(scorer._measure(tiles), len(tiles)).sum(0)
    return out


def test_a_dimmer_scan_gives_the_same_cells(counts_by_exposure):
    """Scanned with 30% less light, the image keeps its cells and their classes (within 3%
    of its tumour cells per class); read against white instead, its membranes look more
    intense: the 3+ cells gain more than 5% of the tumour cells."""
    full, dim = counts_by_exposure[1.0, True], counts_by_exposure[0.7, True]
    n_tumour = full[:4].sum()
    assert n_tumour > 300
    assert np.abs(dim[:4] - full[:4]).max() <= 0.03 * n_tumour, counts_by_exposure
    gain = counts_by_exposure[0.7, False][3] - counts_by_exposure[1.0, False][3]
    assert gain > 0.05 * n_tumour, counts_by_exposure
