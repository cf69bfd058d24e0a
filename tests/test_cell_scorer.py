"""The ``dab-cells`` scorer end to end: tile classes from their cells, the slide call from the
percentages of tumour cells, the cells in the report, the GeoJSON and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.ihc.cell_scorer import DabCellScorer
from napari_her2.ihc.cells import tile_classes
from napari_her2.models import load_predictor
from napari_her2.scoring.cells import MIN_TUMOUR_CELLS, score_cells, tile_cell_counts
from napari_her2.scoring.rules import get_rule
from napari_her2.slide import write_pyramid_tiff


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_pyramid_tiff(tmp_path_factory.mktemp("cells") / "m.tif",
                              ihc_mosaic(rows=1, cols=2, gap=64), 0.5)


@pytest.fixture(scope="module")
def report(slide):
    return score_slide(slide, "dab-cells")


def test_dab_cells_is_a_registered_weight_free_scorer():
    scorer = load_predictor("dab-cells")
    assert isinstance(scorer, DabCellScorer) and scorer.describe()["kind"].startswith("rule")
    nudged = replace(scorer, haematoxylin=tuple(np.add(scorer.haematoxylin, 1e-9)))
    assert nudged.sha256 == scorer.sha256, "stain estimates are not the identity"
    assert scorer.at_mpp(0.25).sha256 != scorer.sha256


def test_tile_classes_are_the_classes_of_their_cells(report):
    results = report.results
    assert results.cells is not None and len(results.cells) > 0
    counts = tile_cell_counts(results)
    np.testing.assert_array_equal(results.predicted_index(), tile_classes(counts))


def test_the_call_is_the_rule_over_tumour_cells(report):
    results, call = report.results, report.call
    counts = tile_cell_counts(results).sum(axis=0)
    assert counts[:4].sum() >= MIN_TUMOUR_CELLS, "the IHC mosaic is carcinoma"
    rule = get_rule("breast", "resection")
    as_called = int(rule.apply(counts[:4]))
    assert call.evidence.rule.as_called == ("0", "1+", "2+", "3+")[as_called]
    assert call.method.endswith("-cells")
    shown = call.evidence.class_fractions
    np.testing.assert_allclose([shown[k] for k in ("0", "1+", "2+", "3+")],
                               counts[:4] / counts[:4].sum())
    for k, (lo, hi) in call.evidence.class_fraction_intervals.items():
        assert lo <= shown[k] <= hi
    assert call.confidence is not None and (call.confidence >= 0.5 or call.borderline)
    data = report.to_dict()
    assert data["cells"]["n_tumour_cells"] == int(counts[:4].sum())
    assert sum(data["cells"]["by_class"].values()) == len(results.cells)


def test_too_few_tumour_cells_is_no_tumour_found(report):
    results = replace(report.results)
    cells = results.cells
    keep = np.flatnonzero(cells.tumour)[: MIN_TUMOUR_CELLS - 1]
    results.cells = cells.take(np.concatenate([keep, np.flatnonzero(~cells.tumour)]))
    assert score_cells(results).score is None


def test_the_cli_writes_the_cells_as_qupath_detections(slide, tmp_path, capsys):
    assert main(["score", str(slide), "--model", "dab-cells", "--out", str(tmp_path),
                 "--report"]) == 0
    out = capsys.readouterr().out
    assert "cells" in out
    fc = json.loads((tmp_path / "m.cells.geojson").read_text())
    data = json.loads((tmp_path / "m.json").read_text())
    assert len(fc["features"]) == data["cells"]["n_cells"]
    assert {f["properties"]["objectType"] for f in fc["features"]} == {"detection"}


def _bci(shared_data, name):
    path = shared_data / "her2-ihc-bci" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_the_chicken_wire_3plus_field_reads_3plus(shared_data):
    """BCI 00052: invasive carcinoma with complete intense membranes, visible at low power."""
    rep = score_slide(_bci(shared_data, "00052_test_3+.png"), "dab-cells", mpp=0.5)
    assert rep.call.score == "3+", rep.call.headline()
    strong = np.isfinite(rep.results.cells.visible_mpp) & (rep.results.cells.visible_mpp >= 2)
    assert strong[rep.results.cells.cls == 3].all(), "3+ cells are visible at ~2 µm/px"


def test_a_field_of_fat_and_stroma_has_no_tumour(shared_data):
    """BCI 00004: fat and fibrous stroma, no carcinoma: no call, whatever the slide's label."""
    rep = score_slide(_bci(shared_data, "00004_test_0.png"), "dab-cells", mpp=0.5)
    assert rep.call.score is None and rep.call.no_call.value == "no tumour found"
