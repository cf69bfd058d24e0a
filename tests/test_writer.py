"""The npe2 writer: a HER2 tile Labels layer saved from napari as QuPath GeoJSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2._qt.layers import tile_layer_kwargs
from napari_her2._sample_data import ihc_mosaic
from napari_her2.classes import LABEL_NAMES, LABEL_VALUES
from napari_her2.export import QUPATH_NAMES, tile_id, validate_qupath_geojson
from napari_her2.export import layer_geojson as tiles_geojson
from napari_her2.slide import write_pyramid_tiff

STEM = "writer-slide"


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("writer") / f"{STEM}.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5)


@pytest.fixture(scope="module")
def report(slide_path):
    # 64 px tiles at 1 µm/px: 128 level-0 px per tile on this 0.5 µm/px slide
    return score_slide(slide_path, tile_size=64, target_mpp=1.0)


def add_tile_layer(viewer, report, slide_path):
    """Open the slide and add its tile layer as the scoring widget does."""
    (image,) = viewer.open(str(slide_path), plugin="napari-her2")
    data, kwargs = tile_layer_kwargs(
        image.name, report.grid.shape, report.grid.tile_size0, tuple(image.scale[-2:]),
        tuple(image.translate[-2:]),
        extra_meta={"slide": str(report.slide.path), "model": report.predictor.name},
    )
    kwargs["units"] = tuple(image.units[-2:])
    tiles = viewer.add_labels(data, **kwargs)
    tiles.data = report.results.label_image()
    return image, tiles


def save_selected(viewer, layer, path: Path) -> list[str]:
    viewer.layers.selection.clear()
    viewer.layers.selection.add(layer)
    return viewer.layers.save(str(path), selected=True, plugin="napari-her2")


def expected_boxes(report) -> dict[str, list[list[float]]]:
    """Tile id -> closed ring of the tile's level-0 box, from the results."""
    res = report.results
    out = {}
    for r, c, (x0, y0, x1, y1) in zip(res.rows.tolist(), res.cols.tolist(),
                                      res.bboxes0().tolist(), strict=True):
        out[tile_id(STEM, r, c)] = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return out


def tile_cells(report) -> dict[str, tuple[int, int]]:
    """Tile id -> (row, col) of every scored tile."""
    res = report.results
    return {tile_id(STEM, r, c): (r, c)
            for r, c in zip(res.rows.tolist(), res.cols.tolist(), strict=True)}


def features_by_id(fc: dict) -> dict[str, dict]:
    ids = [f["id"] for f in fc["features"]]
    assert len(set(ids)) == len(ids)
    return dict(zip(ids, fc["features"], strict=True))


def test_saving_the_tile_layer_writes_the_tiles(make_napari_viewer, report, slide_path,
                                                tmp_path):
    viewer = make_napari_viewer()
    image, tiles = add_tile_layer(viewer, report, slide_path)
    assert tuple(image.scale) == (0.5, 0.5)  # world units are microns, not level-0 pixels
    path = tmp_path / "tiles.geojson"
    assert save_selected(viewer, tiles, path) == [str(path)]

    fc = json.loads(path.read_text())
    assert validate_qupath_geojson(fc) == []
    labels = np.asarray(tiles.data)
    assert len(fc["features"]) == np.count_nonzero(labels) == len(report.results)
    feats = features_by_id(fc)
    boxes = expected_boxes(report)
    assert set(feats) == set(boxes)
    outcomes = dict(zip(tile_cells(report), report.results.tile_outcomes(), strict=True))
    for fid, feat in feats.items():
        assert feat["geometry"]["coordinates"] == [boxes[fid]]
        assert feat["properties"]["classification"]["name"] == QUPATH_NAMES[outcomes[fid]]
        assert feat["properties"]["objectType"] == "tile"


def test_a_hand_edit_is_saved(make_napari_viewer, report, slide_path, tmp_path):
    viewer = make_napari_viewer()
    _, tiles = add_tile_layer(viewer, report, slide_path)
    r, c = int(report.results.rows[0]), int(report.results.cols[0])
    old = LABEL_NAMES[int(tiles.data[r, c])]
    new = "0" if old != "0" else "3+"
    tiles.data_setitem((np.array([r]), np.array([c])), LABEL_VALUES[new])
    assert tiles.data[r, c] == LABEL_VALUES[new]
    path = tmp_path / "edited.geojson"
    assert save_selected(viewer, tiles, path) == [str(path)]

    fc = json.loads(path.read_text())
    assert validate_qupath_geojson(fc) == []
    feats = features_by_id(fc)
    assert len(feats) == len(report.results)
    edited = feats.pop(tile_id(STEM, r, c))
    assert edited["properties"]["classification"]["name"] == QUPATH_NAMES[new]
    assert edited["geometry"]["coordinates"] == [expected_boxes(report)[tile_id(STEM, r, c)]]
    unchanged = report.results.label_image()
    cells = tile_cells(report)
    for fid, feat in feats.items():
        name = QUPATH_NAMES[LABEL_NAMES[int(unchanged[cells[fid]])]]
        assert feat["properties"]["classification"]["name"] == name


@pytest.mark.parametrize("image_scale,image_translate", [
    ((0.5, 0.5), (0.0, 0.0)),
    ((0.5, 0.5), (120.0, -40.5)),  # the image layer moved in the viewer
    ((1.0, 1.0), (0.0, 0.0)),  # a slide shown in pixels
])
def test_npe2_write_puts_tiles_on_their_level0_boxes(report, tmp_path, image_scale,
                                                     image_translate):
    import npe2

    data, kwargs = tile_layer_kwargs("slide", report.grid.shape, report.grid.tile_size0,
                                     image_scale, image_translate,
                                     extra_meta={"slide": str(report.slide.path)})
    data[...] = report.results.label_image()
    meta = {k: v for k, v in kwargs.items() if k != "colormap"}
    path = tmp_path / "tiles.geojson"
    written = npe2.write(str(path), [(data, meta, "labels")], plugin_name="napari-her2")
    assert [str(p) for p in written] == [str(path)]
    fc = json.loads(path.read_text())
    assert validate_qupath_geojson(fc) == []
    feats = features_by_id(fc)
    boxes = expected_boxes(report)
    assert set(feats) == set(boxes)
    for fid, feat in feats.items():
        np.testing.assert_allclose(feat["geometry"]["coordinates"][0], boxes[fid], atol=1e-6)


def test_tiles_geojson_keeps_model_measurements_until_edited(report, slide_path):
    image_scale = (0.5, 0.5)
    _, kwargs = tile_layer_kwargs("slide", report.grid.shape, report.grid.tile_size0,
                                  image_scale, extra_meta={"slide": str(slide_path)})
    labels = report.results.label_image()
    fc = tiles_geojson(labels, kwargs["metadata"], report.results)
    assert validate_qupath_geojson(fc) == []
    res = report.results
    assert len(fc["features"]) == len(res)
    for i, feat in enumerate(fc["features"]):
        meas = feat["properties"]["measurements"]
        for k, cls in enumerate(res.classes):
            assert meas[f"p({cls})"] == pytest.approx(float(res.probs[i, k]), abs=1e-6)
        for k, name in enumerate(res.feature_names):
            assert meas[name] == pytest.approx(float(res.features[i, k]), abs=1e-6)

    edited = labels.copy()
    r, c = int(res.rows[-1]), int(res.cols[-1])
    assert edited[r, c] != LABEL_VALUES["1+"], "the edit changes the tile's class"
    edited[r, c] = LABEL_VALUES["1+"]
    fc = tiles_geojson(edited, kwargs["metadata"], res)
    assert validate_qupath_geojson(fc) == []
    feats = features_by_id(fc)
    assert len(feats) == len(res)
    assert all("measurements" not in f["properties"] for f in feats.values())
    feat = feats[tile_id(STEM, r, c)]
    assert feat["properties"]["classification"]["name"] == QUPATH_NAMES["1+"]
    assert feat["geometry"]["coordinates"] == [expected_boxes(report)[tile_id(STEM, r, c)]]
