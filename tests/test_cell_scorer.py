"""The ``dab-cells`` scorer end to end: tile classes from their cells, the slide call from the
percentages of tumour cells, the cells in the report, the GeoJSON and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.ihc.cell_scorer import DabCellScorer, tile_probabilities
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


def test_a_call_that_turns_on_the_stain_strength_is_not_a_sure_one(report):
    """A third of the resamplings read the cells with the stains recorded weaker, a third
    stronger: where the weaker reading takes every 3+ cell to 2+, the 3+ call holds in about
    two thirds of them and 2+ takes the rest; where the readings agree the call is sure."""
    results = replace(report.results)
    cells = results.cells.take(np.arange(len(results.cells)))
    assert score_cells(replace(results, cells=cells)).confidence == pytest.approx(1.0)
    cells.cls_paler = np.minimum(cells.cls, 2).astype(np.int8)
    cells.cls_darker = cells.cls.copy()
    score = score_cells(replace(results, cells=cells))
    assert score.score == "3+" and score.borderline is None
    assert 0.55 <= score.confidence <= 0.78, score.score_shares
    assert 0.22 <= score.score_shares["2+"] <= 0.45, score.score_shares
    assert score.sampling == "tile-bootstrap-of-cells-and-stain-strength"


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


@given(st.lists(st.tuples(*[st.integers(0, 60)] * 5), min_size=1, max_size=30))
@example([(9, 0, 1, 0, 3)])  # 1 of 10 tumour cells 2+: exactly at the 10% cut
def test_tile_probabilities_keep_the_cells_class(rows):
    counts = np.asarray(rows, np.int64)
    probs = tile_probabilities(counts)
    assert probs.shape == (len(rows), 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs >= 0).all()
    np.testing.assert_array_equal(probs.argmax(axis=1), tile_classes(counts))


def test_a_tile_a_cell_decides_is_split_one_far_from_the_cut_is_not():
    near = [90, 0, 10, 0, 0]  # 10 of 100 tumour cells 2+: one more would make it 2+
    far = [0, 0, 0, 100, 0]  # every tumour cell 3+
    none = [0, 0, 0, 0, 40]  # no tumour cells
    probs = tile_probabilities(np.asarray([near, far, none]))
    assert tile_classes(np.asarray([near]))[0] == 0
    assert 0.2 < probs[0, 2] < probs[0, 0]  # split across the 0/1+ ... 2+ boundary
    assert probs[1, 3] > 0.999 and probs[2, 4] == 1.0


def test_a_hand_edit_relabels_the_cells_of_that_tile(report):
    """A pathologist's tile label counts for the cells of that tile; the others keep theirs."""
    from napari_her2.classes import LABEL_VALUES
    from napari_her2.scoring.cells import edited_cell_counts

    results = report.results
    counts = tile_cell_counts(results)
    labels = results.label_image()
    np.testing.assert_array_equal(edited_cell_counts(results, labels), counts)
    tumour = np.flatnonzero(counts[:, :4].sum(axis=1) > 0)
    first, second = int(tumour[0]), int(tumour[1])
    at_first = (results.rows[first], results.cols[first])
    target = "0" if labels[at_first] == LABEL_VALUES["3+"] else "3+"
    labels[at_first] = LABEL_VALUES[target]
    labels[results.rows[second], results.cols[second]] = LABEL_VALUES["non-tumour"]
    edited = edited_cell_counts(results, labels)
    n_tumour = counts[first, :4].sum()
    k = 0 if target == "0" else 3
    assert edited[first, k] == n_tumour and edited[first, :4].sum() == n_tumour
    assert edited[second, :4].sum() == 0 and edited[second].sum() == counts[second].sum()
    others = np.setdiff1d(np.arange(len(results)), [first, second])
    np.testing.assert_array_equal(edited[others], counts[others])
    everything_3 = results.label_image()
    everything_3[results.rows, results.cols] = LABEL_VALUES["3+"]
    assert score_cells(results, label_image=everything_3).score == "3+"


def test_the_cells_of_relabelled_tiles_take_their_new_labels(report, tmp_path):
    """Relabelled tiles (to a class, to non-tumour, a tile without tumour cells to a class,
    and a tile left unlabelled): each cell's class in every reading, as the call counts it,
    the QuPath detections and the cells layer show it; only the cells of those tiles say so."""
    import json

    from napari_her2.classes import HER2_SCORES, LABEL_VALUES
    from napari_her2.export.cells import write_cells_geojson
    from napari_her2.predict import NOT_TUMOUR
    from napari_her2.scoring.cells import READINGS, edited_cells

    results = report.results
    tumour = np.flatnonzero(tile_cell_counts(results)[:, :4].sum(axis=1) > 0)
    assert len(tumour) >= 4
    # a tile whose cells are none of them tumour cells
    table = results.cells.take(np.arange(len(results.cells)))
    tile = results.cell_tiles()
    for column in READINGS:
        getattr(table, column)[tile == tumour[2]] = NOT_TUMOUR
    results = replace(results, cells=table)
    labels = results.label_image()
    unchanged, none = edited_cells(results, labels)
    np.testing.assert_array_equal(unchanged.cls, results.cells.cls)
    assert not none.any()
    new = {}
    for i, names in ((tumour[0], ("1+", "0")), (tumour[1], ("non-tumour",)),
                     (tumour[2], ("2+", "1+")), (tumour[3], (None,))):
        at = (results.rows[i], results.cols[i])
        value = next(0 if n is None else LABEL_VALUES[n] for n in names
                     if n is None or LABEL_VALUES[n] != labels[at])
        labels[at], new[int(i)] = value, value
    cells, edited = edited_cells(results, labels)
    np.testing.assert_array_equal(edited, np.isin(tile, list(new)))
    k0 = {v: k for k, v in LABEL_VALUES.items()}[new[int(tumour[0])]]
    k2 = {v: k for k, v in LABEL_VALUES.items()}[new[int(tumour[2])]]
    was_tumour = results.cells.tumour
    for column in READINGS:
        got, before = getattr(cells, column), getattr(results.cells, column)
        at0 = tile == tumour[0]
        assert (got[at0 & was_tumour] == HER2_SCORES.index(k0)).all()
        assert (got[at0 & ~was_tumour] == NOT_TUMOUR).all()
        assert (got[tile == tumour[1]] == NOT_TUMOUR).all()
        assert (got[tile == tumour[2]] == HER2_SCORES.index(k2)).all()
        assert (got[tile == tumour[3]] == NOT_TUMOUR).all()  # unlabelled: not counted
        np.testing.assert_array_equal(got[~edited], before[~edited])
    fc = json.loads(write_cells_geojson(tmp_path / "c.cells.geojson", cells, "c", 0.5,
                                        edited).read_text())
    flagged = [f["properties"]["measurements"].get("Tile relabelled by hand") == 1.0
               for f in fc["features"]]
    np.testing.assert_array_equal(flagged, edited)
