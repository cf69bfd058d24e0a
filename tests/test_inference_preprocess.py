"""Tiles stay uint8 until the model; the predictor converts and normalises them in one pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from napari_her2.models.preprocess import preprocess

MEAN, STD = (0.8, 0.7, 0.75), (0.15, 0.2, 0.18)


def reference(tiles: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).reshape(1, -1, 1, 1)) / torch.tensor(std).reshape(1, -1, 1, 1)


@pytest.fixture()
def tiles() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_normalisation_matches_the_formula(tiles, channels_last):
    x = preprocess(tiles, 16, MEAN, STD, "cpu", channels_last)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 16, 16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(x, reference(tiles), rtol=0, atol=1e-5)


def test_resizing_inside_preprocess_still_normalises(tiles):
    x = preprocess(tiles, 8, MEAN, STD, "cpu", True)
    assert x.shape == (5, 3, 8, 8)
    flat = preprocess(np.full((1, 16, 16, 3), 204, np.uint8), 8, MEAN, STD)
    torch.testing.assert_close(flat, reference(np.full((1, 8, 8, 3), 204, np.uint8)),
                               rtol=0, atol=1e-5)


def test_read_only_tiles_are_taken_without_a_warning(tiles):
    tiles.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = preprocess(tiles, 16, MEAN, STD)
    torch.testing.assert_close(x, reference(np.array(tiles)), rtol=0, atol=1e-5)


def test_the_pipeline_hands_the_model_uint8_tiles(tmp_path):
    from napari_her2 import open_slide
    from napari_her2._sample_data import ihc_mosaic
    from napari_her2.ihc.tissue import detect_tissue
    from napari_her2.predict import Prediction
    from napari_her2.run.inference import iter_scoring, run_scoring
    from napari_her2.slide import write_pyramid_tiff
    from napari_her2.tiles.grid import make_grid

    seen: list[np.dtype] = []

    class Recorder:
        name, classes, input_size, target_mpp, feature_names, sha256 = (
            "rec", ("0", "1+"), 32, 0.5, (), "x")

        def predict(self, batch: np.ndarray) -> Prediction:
            seen.append(batch.dtype)
            return Prediction(probs=np.full((len(batch), 2), 0.5, np.float32),
                              features=np.zeros((len(batch), 0), np.float32))

        def describe(self) -> dict:
            return {}

    path = tmp_path / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=64), 0.3)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=32, target_mpp=0.5)
    run_scoring(iter_scoring(slide, Recorder(), grid, batch_size=16))
    assert seen and set(seen) == {np.dtype(np.uint8)}
