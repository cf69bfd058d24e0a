"""Review files: corrections written as QuPath GeoJSON and read back as labelled tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_her2.export import (
    ReviewFileError,
    read_review,
    review_path,
    save_review,
    validate_qupath_geojson,
)
from napari_her2.export.review import review_log_from
from napari_her2.scoring.review import ReviewLog
from napari_her2.tiles.results import TileResults


@pytest.fixture
def results() -> TileResults:
    res = TileResults(("0", "1+", "2+", "3+"), (), (2, 3), (0.0, 0.0), (100.0, 100.0),
                      image_shape0=(180, 250))
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2])
    probs = np.array([[0.6, 0.4, 0, 0], [0.1, 0.8, 0.1, 0], [0, 0.2, 0.7, 0.1], [0, 0, 0.4, 0.6]])
    res.extend(rows, cols, probs, np.zeros((4, 0)), np.ones(4, bool))
    return res


def _log() -> ReviewLog:
    log = ReviewLog(reviewer="Dr. Reviewer")
    log.record(0, 0, "0", "1+", time="2026-11-02T10:00:00+00:00")
    log.record(1, 2, "3+", "non-tumour")
    log.record(0, 1, "1+", "1+")  # confirmed
    return log


def test_review_path_sits_beside_the_slide(tmp_path):
    assert review_path(tmp_path / "case 1.svs") == tmp_path / "case 1.review.geojson"
    folder = tmp_path / "dicom-series"
    folder.mkdir()
    assert review_path(folder) == tmp_path / "dicom-series.review.geojson"


def test_review_round_trips_and_is_valid_qupath(tmp_path, results):
    path = save_review(review_path(tmp_path / "slide.svs"), _log(), results, name="slide")
    fc = json.loads(path.read_text())
    assert validate_qupath_geojson(fc) == []
    assert fc["features"][0]["properties"]["classification"]["name"] == "HER2 1+"
    assert fc["features"][0]["properties"]["measurements"]["p(0)"] == pytest.approx(0.6)
    tiles = read_review(path)
    assert [(t.row, t.col, t.original, t.label, t.changed) for t in tiles] == [
        (0, 0, "0", "1+", True), (0, 1, "1+", "1+", False), (1, 2, "3+", "non-tumour", True)]
    assert tiles[0].reviewer == "Dr. Reviewer" and tiles[0].time.startswith("2026-11-02")
    assert tiles[2].bbox0 == (200.0, 100.0, 250.0, 180.0)  # clipped to the slide edge
    again = review_log_from(tiles)
    assert again.n_reviewed == 3 and again.n_changed == 2


def test_a_review_saved_again_by_qupath_still_reads(tmp_path, results):
    path = save_review(tmp_path / "s.review.geojson", _log(), results)
    fc = json.loads(path.read_text())
    for f in fc["features"]:  # QuPath keeps geometry, classification and measurements only
        f["properties"].pop("her2Review")
    path.write_text(json.dumps(fc))
    tiles = read_review(path)
    assert [(t.original, t.label) for t in tiles] == [("0", "1+"), ("1+", "1+"),
                                                      ("3+", "non-tumour")]


def test_the_training_package_reads_the_her2_tiles(tmp_path, results):
    geo = pytest.importorskip("her2_train.geojson", reason="training package not installed")
    log = ReviewLog()
    log.record(0, 0, "0", "2+")
    path = save_review(tmp_path / "s.review.geojson", log, results)
    regions = geo.read_regions(path)
    assert [r.label for r in regions] == [2]
    assert regions[0].contains(np.array([[50.0, 50.0]]))[0]


@pytest.mark.parametrize("text, reason", [("{", "not JSON"), ('{"a": 1}', "FeatureCollection")])
def test_bad_review_files_are_refused_with_the_reason(tmp_path, text, reason):
    path = tmp_path / "bad.review.geojson"
    path.write_text(text)
    with pytest.raises(ReviewFileError, match=reason) as info:
        read_review(path)
    assert str(info.value).endswith(str(path))
