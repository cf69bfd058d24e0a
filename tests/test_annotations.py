"""Tumour cells against annotated regions (`napari-her2 evaluate --regions DIR`): each
image's cells counted per region class of its QuPath GeoJSON, pooled into the precision and
recall of the tumour cells, written to regions.csv and evaluation.json."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from skimage.io import imsave

from napari_her2.cli import main
from napari_her2.cohort.annotations import (
    cells_in_regions,
    format_regions,
    pooled,
    region_files,
    regions_csv_text,
)
from napari_her2.cohort.evaluate import evaluate_folder
from napari_her2.tiles.cells import CellTable
from napari_her2.tiles.regions import RegionError, geojson_region


def _square(x0, y0, x1, y1, name):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "annotation", "classification": {"name": name}}}


def _annotations(width, height):
    """Tumor on the left half (drawn as two overlapping shapes), Stroma on the right half, and
    an Ignore square across the middle."""
    half = width // 2
    return {"type": "FeatureCollection", "features": [
        _square(0, 0, half, height // 2 + 10, "Tumor"),
        _square(0, height // 2 - 10, half, height, "Tumor"),
        _square(half, 0, width, height, "Stroma"),
        _square(half - 50, height // 2 - 50, half + 50, height // 2 + 50, "Ignore*")]}


def test_cells_are_counted_once_per_class_and_not_inside_an_ignored_shape():
    region = geojson_region(_annotations(200, 200))
    #             left tumour cells, left non-tumour, right tumour, right non-tumour, ignored
    x = np.array([10, 20, 30, 40, 150, 160, 170, 95], np.float32)
    y = np.array([10, 100, 190, 50, 10, 190, 150, 100], np.float32)
    cls = np.array([3, 2, -1, -1, 0, -1, -1, 3], np.int8)
    cells = CellTable(x0=x, y0=y, cls=cls, row=np.zeros(8, np.int32), col=np.zeros(8, np.int32))
    counts = cells_in_regions(cells, region)
    assert counts == {"Stroma": (3, 1), "Tumor": (4, 2)}  # (95, 100) is ignored
    figures = pooled({"a.png": counts, "b.png": {"Tumor": (6, 0), "Fat": (5, 0)}})
    assert figures["classes"]["Tumor"] == {"n_cells": 10, "n_tumour_cells": 2,
                                           "tumour_share": 0.2}
    assert figures["precision"] == round(2 / 3, 4) and figures["recall"] == 0.2
    assert figures["classes"]["Fat"]["tumour_share"] == 0.0
    assert pooled({"c.png": {"Stroma": (4, 0)}})["precision"] is None  # no tumour cells at all
    rows = list(csv.reader(regions_csv_text({"a.png": counts}).splitlines()))
    assert rows == [["file", "region_class", "n_cells", "n_tumour_cells"],
                    ["a.png", "Stroma", "3", "1"], ["a.png", "Tumor", "4", "2"]]
    assert format_regions(figures).endswith("(2 images): precision 0.67, recall 0.20")


def test_region_files_are_read_before_scoring_and_a_bad_one_is_named(tmp_path):
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.geojson").write_text(json.dumps(_annotations(100, 100)))
    assert list(region_files(images, tmp_path / "ann")) == [images[0]]  # b has none
    with pytest.raises(RegionError, match="annotation folder does not exist"):
        region_files(images, tmp_path / "missing")
    (tmp_path / "ann" / "b.geojson").write_text("{not json")
    with pytest.raises(RegionError, match=r"b\.geojson: not valid GeoJSON"):
        region_files(images, tmp_path / "ann")


@pytest.fixture
def annotated_folder(tmp_path, make_ihc):
    """A labelled folder of one IHC image (0.5 µm/px given) and its annotations."""
    folder, ann = tmp_path / "images", tmp_path / "annotations"
    folder.mkdir()
    ann.mkdir()
    rgb = make_ihc(768, 768)
    imsave(folder / "3+_mosaic.png", rgb, check_contrast=False)
    (ann / "3+_mosaic.geojson").write_text(json.dumps(_annotations(768, 768)))
    return folder, ann


def test_evaluate_counts_the_cells_of_annotated_images(annotated_folder, tmp_path):
    folder, ann = annotated_folder
    result = evaluate_folder(folder, tmp_path / "out", mpp=0.5, regions=ann)
    [image] = result.images
    assert image.regions is not None and set(image.regions) == {"Tumor", "Stroma"}
    n_tumour = image.n_tumour_cells
    assert n_tumour and sum(t for _, t in image.regions.values()) < n_tumour  # some ignored
    assert result.regions is not None and result.regions["images"] == 1
    saved = json.loads((tmp_path / "out" / "evaluation.json").read_text())["regions"]
    assert saved == result.regions
    rows = list(csv.DictReader((tmp_path / "out" / "regions.csv").open()))
    assert {r["region_class"] for r in rows} == {"Tumor", "Stroma"}
    assert sum(int(r["n_tumour_cells"]) for r in rows) == sum(
        t for _, t in image.regions.values())


def test_without_regions_nothing_changes(annotated_folder, tmp_path):
    folder, _ = annotated_folder
    result = evaluate_folder(folder, tmp_path / "out", mpp=0.5)
    assert result.regions is None and result.images[0].regions is None
    assert not (tmp_path / "out" / "regions.csv").exists()
    assert "regions" not in json.loads((tmp_path / "out" / "evaluation.json").read_text())


def test_the_cli_reports_the_figures_and_stops_on_a_bad_file(annotated_folder, tmp_path,
                                                             capsys):
    folder, ann = annotated_folder
    assert main(["evaluate", str(folder), "--mpp", "0.5", "--regions", str(ann),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "tumour cells against annotated regions (1 images): precision" in out
    assert f"wrote {tmp_path / 'out' / 'regions.csv'}" in out
    (ann / "3+_mosaic.geojson").write_text('{"type": "Feature"}')
    code = main(["evaluate", str(folder), "--mpp", "0.5", "--regions", str(ann),
                 "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert code != 0 and "3+_mosaic.geojson" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out2").exists()  # nothing written before the regions were read
