"""QuPath GeoJSON regions as tile labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ihc_image, write_tiff
from her2_train.data import TileSpec, load_tiles
from her2_train.errors import DatasetError, LabelError
from her2_train.geojson import label_points, read_regions, tile_centres
from her2_train.labels import NO_LABEL, discover


def square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(rings, name, kind="Polygon"):
    coords = rings if kind == "Polygon" else [rings]
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coords},
            "properties": {"objectType": "annotation", "classification": {"name": name}}}


def write(path, *features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def test_regions_holes_and_overlap(tmp_path):
    f = write(tmp_path / "a.geojson",
              feature([square(0, 0, 100, 100), square(40, 40, 60, 60)], "1+"),
              feature([square(80, 80, 200, 200)], "3+", kind="MultiPolygon"))
    regions = read_regions(f)
    assert [r.label for r in regions] == [1, 3]
    pts = np.array([[10, 10], [50, 50], [90, 90], [150, 150], [300, 10]])
    # hole -> no label; overlap -> the later feature (3+) wins; outside -> no label
    assert label_points(regions, pts).tolist() == [1, NO_LABEL, 3, 3, NO_LABEL]


def test_single_feature_file(tmp_path):
    f = tmp_path / "one.geojson"
    f.write_text(json.dumps(feature([square(0, 0, 10, 10)], "2+")))
    assert label_points(read_regions(f), np.array([[5, 5]])).tolist() == [2]


def test_bad_class_and_bad_json(tmp_path):
    with pytest.raises(LabelError, match="bad.geojson: 'tumour' is not a HER2 score"):
        read_regions(write(tmp_path / "bad.geojson", feature([square(0, 0, 1, 1)], "tumour")))
    (tmp_path / "broken.geojson").write_text("{not json")
    with pytest.raises(DatasetError, match="broken.geojson: not a readable GeoJSON"):
        read_regions(tmp_path / "broken.geojson")


def test_tile_centres():
    xy = tile_centres(np.array([0, 1]), np.array([2, 0]), (64.0, 32.0))
    assert xy.tolist() == [[80.0, 32.0], [16.0, 96.0]]


def test_tiles_take_the_class_of_their_region(tmp_path):
    # 512 px at 0.5 um/px; tiles of 32 px at 1 um/px cover 64 level-0 px
    write_tiff(tmp_path / "slide.tif", ihc_image(2, 0))
    write(tmp_path / "slide.geojson", feature([square(0, 0, 256, 512)], "0"),
          feature([square(256, 0, 512, 256)], "3+"))
    (item,) = discover(tmp_path)
    t = load_tiles(item, TileSpec(tile_size=32, target_mpp=1.0, max_tiles=100))
    assert len(t) > 0 and set(np.unique(t.labels)) == {0, 3}
    cols, rows = t.cells[:, 1], t.cells[:, 0]
    assert (t.labels[cols < 4] == 0).all()
    assert (t.labels[(cols >= 4) & (rows < 4)] == 3).all()
    assert not ((cols >= 4) & (rows >= 4)).any()  # outside every region: dropped


def test_run_reads_equal_single_tile_reads(tmp_path):
    from napari_her2 import open_slide
    from napari_her2.ihc.tissue import detect_tissue
    from napari_her2.run.inference import read_tile
    from napari_her2.tiles.grid import make_grid

    from her2_train.data import _cut

    path = write_tiff(tmp_path / "2+" / "a.tif", ihc_image(2, 1))
    (item,) = discover(tmp_path)
    spec = TileSpec(tile_size=24, target_mpp=0.8, max_tiles=1000)
    tiles, cells, _ = _cut(item, spec)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=24, target_mpp=0.8, min_tissue=0.5)
    assert len(tiles) == grid.n_tissue > 10
    for tile, (r, c) in zip(tiles, cells, strict=True):
        assert np.array_equal(tile, read_tile(slide, grid, int(r), int(c)))


def test_a_review_saved_in_napari_labels_the_tiles(tmp_path):
    """Corrections saved by the widget (``<stem>.review.geojson``) are training labels: the
    corrected HER2 classes label the tiles under them, non-tumour tiles are left out."""
    from napari_her2 import score_slide
    from napari_her2.export import review_path, save_review
    from napari_her2.scoring.review import ReviewLog

    image = write_tiff(tmp_path / "data" / "case.tif", np.concatenate(
        [ihc_image(2, 0), ihc_image(2, 1)], axis=1))
    report = score_slide(image, tile_size=128, min_tissue=0.0)
    results = report.results
    (r3, c3), (rn, cn) = zip(results.rows[:2].tolist(), results.cols[:2].tolist())
    log = ReviewLog(reviewer="test")
    log.record(r3, c3, results.tile_outcomes()[0], "3+")
    log.record(rn, cn, results.tile_outcomes()[1], "non-tumour")
    saved = save_review(review_path(image), log, results, name="case")
    (item,) = discover(tmp_path / "data", require_labels=False)
    assert item.geojson == saved
    tiles = load_tiles(item, TileSpec(tile_size=64, target_mpp=0.5, min_tissue=0.0))
    assert len(tiles) == 4 and set(tiles.labels.tolist()) == {3}  # 128 px = 4 x 64 px tiles
    cells = {tuple(c) for c in tiles.cells.tolist()}
    assert cells == {(2 * r3 + i, 2 * c3 + j) for i in (0, 1) for j in (0, 1)}
