"""Exports: QuPath GeoJSON (golden file, validator), CSV, report JSON, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from napari_her2.classes import CLASS_COLORS, LABEL_VALUES
from napari_her2.errors import OutputError
from napari_her2.export import (
    ID_NAMESPACE,
    ensure_out_dir,
    labels_to_geojson,
    tiles_csv_text,
    tiles_to_geojson,
    validate_qupath_geojson,
    write_geojson,
    write_report_json,
    write_text,
    write_tiles_csv,
)
from napari_her2.export import atomic as export_atomic
from napari_her2.tiles.results import TileResults

GOLDEN = Path(__file__).parent / "data" / "golden_tiles.geojson"
CLASSES = ("0", "1+", "2+", "3+", "non-tumour")


def golden_results() -> TileResults:
    """Four tiles of a 2 x 3 grid: 3+, 0, non-tumour (one NaN feature), unreadable."""
    probs = np.array([
        [0.01, 0.04, 0.15, 0.8, 0.0],
        [0.7, 0.2, 0.05, 0.0, 0.05],
        [0.1, 0.0, 0.0, 0.0, 0.9],
        [np.nan] * 5,
    ], np.float32)
    features = np.array([[0.9, 0.75], [0.6, 0.0], [0.05, np.nan], [np.nan, np.nan]], np.float32)
    return TileResults(
        classes=CLASSES, feature_names=("tumour_fraction", "dab_od_mean"), grid_shape=(2, 3),
        origin0=(50.0, 100.0), tile_size0=(512.0, 512.0),
        rows=np.array([0, 0, 1, 1], np.int32), cols=np.array([0, 1, 2, 0], np.int32),
        probs=probs, features=features, readable=np.array([True, True, True, False]),
    )


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- GeoJSON


def test_golden_geojson():
    fc = json.loads(json.dumps(tiles_to_geojson(golden_results(), name="golden")))
    assert fc == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_tiles_geojson_follows_qupath_rules():
    res = golden_results()
    fc = tiles_to_geojson(res, name="golden")
    assert validate_qupath_geojson(fc) == []
    feats = fc["features"]
    assert len(feats) == 4
    for feat, box in zip(feats, res.bboxes0(), strict=True):
        ring = feat["geometry"]["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[-1]
        x0, y0, x1, y1 = box
        assert ring[:4] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        props = feat["properties"]
        assert props["objectType"] == "tile" and props["isLocked"] is False
        assert len(props["classification"]["color"]) == 3
    names = [f["properties"]["classification"]["name"] for f in feats]
    assert names == ["HER2 3+", "HER2 0", "Non-tumour", "Unreadable"]
    assert feats[0]["properties"]["classification"]["color"] == list(CLASS_COLORS["3+"])
    assert feats[0]["properties"]["measurements"]["p(3+)"] == pytest.approx(0.8)
    assert "dab_od_mean" not in feats[2]["properties"]["measurements"]  # NaN dropped
    assert feats[3]["properties"]["measurements"] == {}  # unreadable: no probabilities
    assert feats[0]["geometry"]["coordinates"][0][0] == [100, 50]  # origin0 is (y, x)


def test_ids_are_deterministic_uuid5():
    a = tiles_to_geojson(golden_results(), name="slide-a")
    b = tiles_to_geojson(golden_results(), name="slide-a")
    c = tiles_to_geojson(golden_results(), name="slide-b")
    ids = [f["id"] for f in a["features"]]
    assert ids == [f["id"] for f in b["features"]]
    assert set(ids).isdisjoint(f["id"] for f in c["features"])
    assert ids[0] == str(uuid.uuid5(ID_NAMESPACE, "slide-a/0/0"))
    assert len(set(ids)) == len(ids)


def test_detection_objects_and_bad_object_type():
    fc = tiles_to_geojson(golden_results(), object_type="detection")
    assert {f["properties"]["objectType"] for f in fc["features"]} == {"detection"}
    with pytest.raises(ValueError):
        tiles_to_geojson(golden_results(), object_type="polygon")


def test_empty_results_give_an_empty_collection():
    res = TileResults(classes=CLASSES, feature_names=(), grid_shape=(2, 2), origin0=(0, 0),
                      tile_size0=(256, 256))
    fc = tiles_to_geojson(res)
    assert fc == {"type": "FeatureCollection", "features": []}
    assert validate_qupath_geojson(fc) == []


def test_labels_geojson_matches_tiles_geojson():
    res = golden_results()
    th, tw = res.tile_size0
    oy, ox = res.origin0
    translate = (oy + (th - 1) / 2, ox + (tw - 1) / 2)  # how the tile layer is placed
    fc = labels_to_geojson(res.label_image(), res.tile_size0, translate, name="golden")
    assert validate_qupath_geojson(fc) == []
    by_id = {f["id"]: f for f in tiles_to_geojson(res, name="golden")["features"]}
    assert len(fc["features"]) == len(by_id)
    for feat in fc["features"]:
        ref = by_id[feat["id"]]
        assert feat["geometry"] == ref["geometry"]
        assert feat["properties"]["classification"] == ref["properties"]["classification"]


def test_labels_geojson_default_translate_and_image_scale():
    labels = np.zeros((2, 2), np.uint8)
    labels[1, 0] = LABEL_VALUES["2+"]
    fc = labels_to_geojson(labels, (256, 256))
    assert fc["features"][0]["geometry"]["coordinates"][0][:3] == [[0, 256], [256, 256],
                                                                   [256, 512]]
    # an image layer in microns (0.5 um/px): the tile layer's scale is 128 world units
    fc = labels_to_geojson(labels, (128.0, 128.0), image_scale=(0.5, 0.5))
    assert fc["features"][0]["geometry"]["coordinates"][0][0] == [0, 256]
    with pytest.raises(ValueError, match="no tile class"):
        labels_to_geojson(np.array([[42]]), (256, 256))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["properties"]["classification"].pop("color"), "color"),
        (lambda f: f["properties"]["classification"].update(color=[300, 0, 0]), "color"),
        (lambda f: f["geometry"]["coordinates"][0].pop(), "closed"),
        (lambda f: f["properties"]["measurements"].update(bad=float("nan")), "finite"),
        (lambda f: f["properties"]["measurements"].update(nested={"a": 1}), "finite"),
        (lambda f: f.update(id="tile-1"), "UUID"),
        (lambda f: f["properties"].update(objectType="polygon"), "objectType"),
        (lambda f: f["properties"].update(isLocked="no"), "isLocked"),
        (lambda f: f["geometry"].update(type="LineString"), "geometry type"),
        (lambda f: f.pop("properties"), "properties"),
    ],
)
def test_validator_catches_bad_features(mutate, message):
    fc = tiles_to_geojson(golden_results())
    mutate(fc["features"][1])
    problems = validate_qupath_geojson(fc)
    assert problems and all(p.startswith("feature 1:") for p in problems)
    assert message in problems[0]


def test_validator_catches_bad_collections():
    assert validate_qupath_geojson([]) == ["not a GeoJSON FeatureCollection"]
    assert validate_qupath_geojson({"type": "FeatureCollection"})
    fc = tiles_to_geojson(golden_results())
    fc["features"][1]["id"] = fc["features"][0]["id"]
    assert "feature ids are not unique" in validate_qupath_geojson(fc)


# --------------------------------------------------------------------------- atomic writes


def test_write_geojson_round_trip_and_no_temp_left(tmp_path):
    fc = tiles_to_geojson(golden_results())
    path = write_geojson(tmp_path / "tiles.geojson", fc)
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(fc))
    assert temp_files(tmp_path) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_missing_folder_is_an_output_error(tmp_path):
    target = tmp_path / "missing" / "tiles.geojson"
    with pytest.raises(OutputError) as err:
        write_geojson(target, tiles_to_geojson(golden_results()))
    assert str(target) in str(err.value) and "\n" not in str(err.value)


def test_folder_that_is_a_file_is_an_output_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="a-file"):
        write_report_json(blocker / "report.json", {"score": "0"})
    with pytest.raises(OutputError, match="a-file"):
        ensure_out_dir(blocker)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_folder_is_an_output_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="ro"):
            write_text(folder / "x.txt", "x")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_via_mkstemp_failure(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export_atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        write_tiles_csv(tmp_path / "tiles.csv", golden_results())
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "tiles.geojson"

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export_atomic.json, "dumps", crash)
    with pytest.raises(OutputError, match="disk on fire"):
        write_geojson(target, tiles_to_geojson(golden_results()))
    assert list(tmp_path.iterdir()) == []


def test_crash_keeps_the_previous_file(tmp_path, monkeypatch):
    target = write_report_json(tmp_path / "report.json", {"score": "1+"})
    before = target.read_text(encoding="utf-8")
    with pytest.raises(OutputError):
        write_report_json(target, {"score": float("nan")})  # NaN is not JSON
    assert target.read_text(encoding="utf-8") == before
    assert temp_files(tmp_path) == []


def test_interrupt_removes_the_temp_file_and_propagates(tmp_path):
    with pytest.raises(KeyboardInterrupt), export_atomic.atomic_write(tmp_path / "x.txt") as f:
        f.write("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_report_json_is_indented(tmp_path):
    path = write_report_json(tmp_path / "r.json", {"score": "2+", "class_fractions": {"0": 0.5}})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and '\n  "score": "2+"' in text


def test_ensure_out_dir_creates_folders(tmp_path):
    out = ensure_out_dir(tmp_path / "a" / "b")
    assert out.is_dir()


# --------------------------------------------------------------------------- CSV


def test_tiles_csv(tmp_path):
    res = golden_results()
    path = write_tiles_csv(tmp_path / "tiles.csv", res)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert path.read_text(encoding="utf-8") == tiles_csv_text(res)
    assert list(rows[0]) == ["row", "col", "x0", "y0", "x1", "y1", "class", "p(0)", "p(1+)",
                             "p(2+)", "p(3+)", "p(non-tumour)", "tumour_fraction",
                             "dab_od_mean"]
    assert len(rows) == 4
    assert rows[0]["class"] == "3+" and float(rows[0]["p(3+)"]) == pytest.approx(0.8)
    assert (float(rows[0]["x0"]), float(rows[0]["y0"])) == (100.0, 50.0)
    assert rows[2]["dab_od_mean"] == ""
    assert rows[3]["class"] == "unreadable" and rows[3]["p(0)"] == ""


def test_edited_labels_are_clipped_to_the_image():
    from napari_her2.export import labels_to_geojson

    labels = np.zeros((2, 2), np.uint8)
    labels[1, 1] = 4
    fc = labels_to_geojson(labels, scale=(100.0, 100.0), image_shape0=(150, 170))
    ring = fc["features"][0]["geometry"]["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (min(xs), max(xs), min(ys), max(ys)) == (100, 170, 100, 150)
