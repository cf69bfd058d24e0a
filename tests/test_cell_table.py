"""Cells placed on the slide: the table, its counts, its QuPath export and the inference wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_her2 import open_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.export import validate_qupath_geojson, write_outputs
from napari_her2.export.cells import NUCLEUS_VERTICES, write_cells_geojson
from napari_her2.ihc.tissue import detect_tissue
from napari_her2.predict import NOT_TUMOUR, CellColumns, Prediction
from napari_her2.run.inference import iter_scoring, run_scoring
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.cells import CellTable
from napari_her2.tiles.grid import TileGeometry, make_grid


def columns(tile, y, x, cls, outlined=None) -> CellColumns:
    n = len(tile)
    return CellColumns(tile=np.asarray(tile), y=np.asarray(y, float), x=np.asarray(x, float),
                       cls=np.asarray(cls, np.int8), ring_od=np.full(n, 0.3),
                       completeness=np.linspace(0, 1, n),
                       visible_mpp=np.array([2.0] + [np.nan] * (n - 1)),
                       nucleus_um2=np.full(n, 50.0),
                       outlined=None if outlined is None else np.asarray(outlined, bool))


def test_cells_are_placed_in_level0_pixels_through_the_grid():
    geometry = TileGeometry((4, 5), (128.0, 128.0), origin0=(10.0, 20.0))
    table = CellTable()
    # two tiles of 64 px (each covers 128 level-0 px): grid cells (1, 2) and (3, 0)
    table.extend(columns([0, 1, 1], [0, 31.5, 63], [0, 31.5, 63], [3, 0, NOT_TUMOUR]),
                 np.array([1, 3]), np.array([2, 0]), (64, 64), geometry)
    np.testing.assert_array_equal(table.row, [1, 3, 3])
    np.testing.assert_array_equal(table.col, [2, 0, 0])
    # pixel j of a 64 px tile spans level-0 [2 j, 2 j + 2): its centre is at 2 j + 1
    np.testing.assert_allclose(table.y0, [10 + 128 + 1, 10 + 3 * 128 + 64, 10 + 3 * 128 + 127])
    np.testing.assert_allclose(table.x0, [20 + 256 + 1, 20 + 64, 20 + 127])
    table.extend(columns([], [], [], []), np.array([0]), np.array([0]), (64, 64), geometry)
    assert len(table) == 3


def test_counts_are_of_tumour_cells_per_class():
    table = CellTable()
    table.extend(columns([0] * 6, [1] * 6, [1] * 6, [0, 3, 3, 3, NOT_TUMOUR, 1]),
                 np.array([0]), np.array([0]), (8, 8), TileGeometry((1, 1), (8.0, 8.0)))
    assert table.class_counts() == {"0": 1, "1+": 1, "2+": 0, "3+": 3, "non-tumour": 1}
    summary = table.summary()
    assert summary["n_cells"] == 6 and summary["n_tumour_cells"] == 5
    assert summary["tumour_percent"] == {"0": 20.0, "1+": 20.0, "2+": 0.0, "3+": 60.0}
    assert sorted(table.in_box(0, 0, 8, 8).tolist()) == list(range(6))
    assert table.take(np.array([1, 2])).class_counts()["3+"] == 2
    assert CellTable().tumour_percentages() == {}


def test_tumour_cells_outlined_by_dab_only_are_counted_and_said():
    """Cells found as interiors outlined by DAB (no haematoxylin nucleus) are counted among the
    tumour cells, so that the report can say how much of a call rests on them; a scorer that
    does not say counts none."""
    from napari_her2.tiles.cells import outlined_text

    geometry = TileGeometry((1, 1), (8.0, 8.0))
    table = CellTable()
    table.extend(columns([0] * 5, [1] * 5, [1] * 5, [3, 3, 3, 0, NOT_TUMOUR],
                         outlined=[True, True, False, False, True]),
                 np.array([0]), np.array([0]), (8, 8), geometry)
    table.extend(columns([0] * 2, [1] * 2, [1] * 2, [3, 3]), np.array([0]), np.array([0]),
                 (8, 8), geometry)  # outlined=None: the scorer does not say
    summary = table.summary()
    assert summary["n_tumour_cells"] == 6 and summary["n_tumour_outlined"] == 2  # not the stroma
    assert outlined_text(summary) == "2 (33%) outlined by DAB only, no blue nucleus"
    assert outlined_text(CellTable().summary()) == ""
    assert table.take(np.array([0, 4])).outlined.tolist() == [True, True]


def test_cells_export_as_qupath_detections(tmp_path):
    table = CellTable()
    table.extend(columns([0, 0], [4, 10], [4, 10], [3, NOT_TUMOUR], outlined=[True, False]),
                 np.array([2]), np.array([1]), (16, 16), TileGeometry((3, 3), (32.0, 32.0)))
    path = write_cells_geojson(tmp_path / "s.cells.geojson", table, "s", mpp=0.5)
    fc = json.loads(path.read_text())
    assert validate_qupath_geojson(fc) == []
    first, second = fc["features"]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["classification"]["name"] == "HER2 3+"
    assert second["properties"]["classification"]["name"] == "Non-tumour"
    m = first["properties"]["measurements"]
    assert m["Tumour"] == 1.0 and m["Membrane visible at um/px"] == 2.0
    assert m["Outlined by DAB only"] == 1.0
    assert second["properties"]["measurements"]["Outlined by DAB only"] == 0.0
    assert "Membrane visible at um/px" not in second["properties"]["measurements"]
    ring = np.array(first["geometry"]["coordinates"][0])
    assert len(ring) == NUCLEUS_VERTICES + 1 and (ring[0] == ring[-1]).all()
    # a 50 µm² nucleus at 0.5 µm/px: radius 4 µm = 8 level-0 px around the cell's centre
    centre = np.array([table.x0[0], table.y0[0]])
    np.testing.assert_allclose(np.hypot(*(ring[:-1] - centre).T), np.sqrt(50 / np.pi) / 0.5,
                               atol=0.02)


def test_measurements_the_scorer_did_not_make_are_left_out(tmp_path):
    table = CellTable()
    table.extend(columns([0], [4], [4], [3]), np.array([0]), np.array([0]), (16, 16),
                 TileGeometry((1, 1), (32.0, 32.0)))
    assert np.isnan(table.cytoplasm_od).all() and np.isnan(table.eccentricity).all()
    fc = json.loads(write_cells_geojson(tmp_path / "s.cells.geojson", table, "s", 0.5)
                    .read_text())
    m = fc["features"][0]["properties"]["measurements"]
    assert "Cytoplasm DAB OD" not in m and "Nucleus eccentricity" not in m
    assert validate_qupath_geojson(fc) == []


def test_the_cell_scorers_measurements_reach_the_detections(tmp_path):
    """Per cell the guideline's evidence: membrane DAB mean and maximum, completeness, the
    longest stained arc, cytoplasmic DAB, nucleus size and shape, as CellBatch measured."""
    from napari_her2.ihc.cell_scorer import DabCellScorer
    from napari_her2.ihc.cells import measure_cells

    tile = ihc_mosaic(rows=1, cols=1, gap=0)[:256, :256]
    scorer = DabCellScorer()
    batch = measure_cells(tile[None], scorer.params)
    assert len(batch) > 10
    pred = scorer.predict(tile[None])
    table = CellTable()
    table.extend(pred.cells, np.array([0]), np.array([0]), (256, 256),
                 TileGeometry((1, 1), (256.0, 256.0)))
    for column, measured in (("ring_od_max", batch.ring_od_max),
                             ("cytoplasm_od", batch.cytoplasm_od),
                             ("longest_arc", batch.longest_arc),
                             ("eccentricity", batch.eccentricity)):
        np.testing.assert_allclose(getattr(table, column), measured, rtol=1e-6)
    assert (table.ring_od_max >= table.ring_od - 1e-6).all()  # a 95th percentile >= the mean
    fc = json.loads(write_cells_geojson(tmp_path / "c.cells.geojson", table, "c", 0.5)
                    .read_text())
    i = int(np.argmax(table.ring_od_max))
    m = fc["features"][i]["properties"]["measurements"]
    assert m["Membrane DAB OD max"] == pytest.approx(table.ring_od_max[i], abs=1e-4)
    assert m["Cytoplasm DAB OD"] == pytest.approx(table.cytoplasm_od[i], abs=1e-4)
    assert m["Nucleus eccentricity"] == pytest.approx(table.eccentricity[i], abs=1e-4)
    assert m["Membrane longest arc"] == pytest.approx(table.longest_arc[i], abs=1e-4)
    assert validate_qupath_geojson(fc) == []


class CellFinder:
    """A stand-in scorer that finds one 3+ tumour cell in the middle of every tile."""

    name = "cells-test"
    classes = ("0", "1+", "2+", "3+", "non-tumour")
    input_size = 64
    target_mpp = 1.0
    feature_names = ()
    sha256 = "test"

    def predict(self, tiles: np.ndarray) -> Prediction:
        n = len(tiles)
        probs = np.tile(np.eye(5, dtype=np.float32)[3], (n, 1))
        return Prediction(probs, cells=columns(np.arange(n), [31.5] * n, [31.5] * n, [3] * n))

    def describe(self) -> dict:
        return {"name": self.name}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=64, target_mpp=1.0)
    return grid, run_scoring(iter_scoring(slide, CellFinder(), grid, batch_size=5))


def test_inference_collects_the_cells_of_every_tile(scored):
    grid, results = scored
    cells = results.cells
    assert cells is not None and len(cells) == len(results) == grid.n_tissue
    np.testing.assert_array_equal(cells.row, results.rows)
    # one cell in the middle of each tile: the tile's centre in level-0 pixels
    boxes = results.bboxes0()
    np.testing.assert_allclose(cells.x0, (boxes[:, 0] + grid.tile_size0[1] / 2), atol=1e-3)
    np.testing.assert_allclose(cells.y0, (boxes[:, 1] + grid.tile_size0[0] / 2), atol=1e-3)


def test_write_outputs_adds_the_cells_file(scored, tmp_path):
    _, results = scored
    report = {"score": "3+", "mpp": {"x": 0.5, "y": 0.5, "source": "test"}}
    written = write_outputs(tmp_path, "m", report, results)
    fc = json.loads(written["cells"].read_text())
    assert len(fc["features"]) == len(results.cells)
    assert validate_qupath_geojson(fc) == []


def test_the_cells_csv_has_one_row_per_cell_with_its_measurements(tmp_path):
    import csv as csv_module

    from napari_her2 import score_slide

    path = tmp_path / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=0), 0.5)
    report = score_slide(path)
    cells = report.results.cells
    written = write_outputs(tmp_path / "out", "m", report.to_dict(), report.results, csv=True)
    report.slide.close()
    with written["cells_csv"].open() as f:
        rows = list(csv_module.DictReader(f))
    assert len(rows) == len(cells) > 10
    assert list(rows[0])[:8] == ["row", "col", "x0", "y0", "x_um", "y_um", "class",
                                 "class_stains_paler"]
    i = int(np.argmax(cells.ring_od))
    row = rows[i]
    assert row["class"] == {-1: "non-tumour", 0: "0", 1: "1+", 2: "2+", 3: "3+"}[cells.cls[i]]
    assert row["tumour"] == str(int(cells.tumour[i]))
    assert float(row["x_um"]) == pytest.approx(cells.x0[i] * 0.5, abs=0.01)
    for name, column in (("membrane_od", "ring_od"), ("membrane_od_max", "ring_od_max"),
                         ("cytoplasm_od", "cytoplasm_od"), ("completeness", "completeness"),
                         ("nucleus_eccentricity", "eccentricity")):
        assert float(row[name]) == pytest.approx(getattr(cells, column)[i], abs=1e-4), name
    not_seen = [r["visible_at_um_per_px"] for r, v in zip(rows, cells.visible_mpp) if np.isnan(v)]
    assert not_seen and all(v == "" for v in not_seen)  # NaN is written empty
    assert "cells_csv" not in write_outputs(tmp_path / "plain", "m", report.to_dict(),
                                            report.results)
