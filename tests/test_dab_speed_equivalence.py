"""The ``dab-membrane`` measurements stay what they were before the speed work.

``tests/data/dab_features_frozen.npz`` holds the features that the scorer computed, before its
per-tile work was made cheaper, for a fixed batch built here from scikit-image's IHC image
(every tile, always) and for tiles of the shared BCI patches (skipped when absent). To renew
it after an intended change of the measurements, run ``python tests/test_dab_speed_equivalence.py``.

Tolerance: the features are area ratios and OD means in [0, 2.4], computed in float32 from
Gaussian-smoothed images. A different but equivalent order of float32 operations moves a
smoothed value by a few ULP (~1e-7 relative); a pixel sitting exactly on a threshold may then
flip, which moves a ratio by 1 / (pixels counted), about 2e-5 for a 256 px tile. ``ATOL = 2e-4``
allows a handful of such flips and nothing more: any real change of the algorithm moves the
features by 1e-2 or more. The class probabilities that ``classify`` derives from them must
agree within 1e-4 wherever features agree, and the arg-max class must be identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_her2.ihc.membrane import DabMembraneParams, classify, measure

FROZEN = Path(__file__).parent / "data" / "dab_features_frozen.npz"
ATOL = 2e-4
PROB_ATOL = 1e-4
TILE = 256

#: parameter sets the batch is measured with: the default, the gastric rule, 40x tiles
PARAM_SETS: dict[str, DabMembraneParams] = {
    "breast_0.5": DabMembraneParams(),
    "gastric_0.5": DabMembraneParams(organ="gastric"),
    "breast_0.25": DabMembraneParams(mpp=0.25),
}


def _darken(rgb: np.ndarray, k: float) -> np.ndarray:
    """Every optical density times ``k`` (k > 1: stronger stain), rounded back to uint8."""
    scaled = 255.0 * (np.maximum(rgb, 1) / 255.0) ** k
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def synthetic_batch() -> np.ndarray:
    """(40, 256, 256, 3) uint8: crops, turns and stain strengths of skimage's IHC image,
    plus glass, a black tile and noise (edge cases of every mask)."""
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    tiles = []
    for i, (y, x) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256), (128, 128), (64, 192)]):
        crop = np.rot90(base[y : y + TILE, x : x + TILE], i % 4)
        for k in (0.4, 1.0, 1.6, 2.4, 3.5, 0.7):
            tiles.append(_darken(crop, k))
    rng = np.random.default_rng(7)
    tiles.append(np.full((TILE, TILE, 3), 255, np.uint8))
    tiles.append(np.zeros((TILE, TILE, 3), np.uint8))
    tiles.append(rng.integers(0, 256, (TILE, TILE, 3), dtype=np.uint8))
    tiles.append(np.ascontiguousarray(base[:TILE, -TILE:][::-1]))
    return np.ascontiguousarray(np.stack(tiles))


def bci_batch(folder: Path) -> np.ndarray:
    """(64, 256, 256, 3): the 16 tiles of each of the four BCI patches, in file order."""
    from skimage.io import imread

    tiles = []
    for path in sorted(folder.glob("*.png")):
        rgb = imread(path)[..., :3]
        h, w = rgb.shape[:2]
        tiles += [rgb[y : y + TILE, x : x + TILE] for y in range(0, h, TILE) for x in range(0, w, TILE)]
    return np.ascontiguousarray(np.stack(tiles))


def _bci_folder() -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from data_paths import shared_data_dir

    return shared_data_dir() / "her2-ihc-bci"


def frozen_features(batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Features of every batch under every parameter set, keyed ``<batch>/<params>``."""
    return {f"{b}/{name}": measure(tiles, p)
            for b, tiles in batches.items() for name, p in PARAM_SETS.items()}


def _assert_same(key: str, got: np.ndarray, want: np.ndarray, p: DabMembraneParams) -> None:
    assert got.shape == want.shape and got.dtype == np.float32, key
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=key)
    probs_got, probs_want = classify(got, p), classify(want, p)
    np.testing.assert_allclose(probs_got, probs_want, rtol=0, atol=PROB_ATOL, err_msg=key)
    assert (probs_got.argmax(1) == probs_want.argmax(1)).all(), key


@pytest.mark.parametrize("name", list(PARAM_SETS))
def test_synthetic_batch_matches_frozen(name):
    want = np.load(FROZEN)[f"synthetic/{name}"]
    _assert_same(name, measure(synthetic_batch(), PARAM_SETS[name]), want, PARAM_SETS[name])


def test_bci_tiles_match_frozen():
    folder = _bci_folder()
    if not folder.is_dir():
        pytest.skip(f"shared BCI patches not found at {folder}")
    want = np.load(FROZEN)["bci/breast_0.5"]
    p = PARAM_SETS["breast_0.5"]
    _assert_same("bci", measure(bci_batch(folder), p), want, p)


def test_frozen_batch_spans_every_class():
    """The frozen batch exercises every decision: all five classes occur as the arg-max."""
    data = np.load(FROZEN)
    seen = {int(c) for key in data.files for c in classify(data[key]).argmax(1)}
    assert seen == set(range(5))


def test_comparison_can_fail():
    """A real change of one threshold moves the features beyond the tolerance."""
    tiles = synthetic_batch()[:12]
    want = np.load(FROZEN)["synthetic/breast_0.5"][:12]
    got = measure(tiles, DabMembraneParams(ridge_min=0.04))
    assert np.abs(got - want).max() > 10 * ATOL


if __name__ == "__main__":  # renew the frozen features (after an intended change only)
    batches = {"synthetic": synthetic_batch()}
    if _bci_folder().is_dir():
        batches["bci"] = bci_batch(_bci_folder())
    feats = frozen_features(batches)
    feats = {k: v for k, v in feats.items() if k.startswith("synthetic") or k == "bci/breast_0.5"}
    np.savez_compressed(FROZEN, **feats)
