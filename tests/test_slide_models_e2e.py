"""A slide-level model makes the call end to end: Python, CLI and the widget's heatmap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.models import ModelCard, fit_whspn_svm, get_model, save_checkpoint
from napari_her2.slide import write_pyramid_tiff

HER2 = ("0", "1+", "2+", "3+")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slide-models")
    slide = write_pyramid_tiff(folder / "s.tif", ihc_mosaic(rows=2, cols=2, gap=64), 0.5)
    tile = folder / "tile.safetensors"
    save_checkpoint(tile, get_model("her2-resnet", num_classes=4), ModelCard(
        architecture="her2-resnet", classes=HER2, input_size=64, target_mpp=0.5,
        name="tile-test"))
    from napari_her2.models import load_predictor

    dim = load_predictor(str(tile), device="cpu").predict(
        np.zeros((1, 64, 64, 3), np.uint8)).embeddings.shape[1]
    mil = folder / "mil.safetensors"
    save_checkpoint(mil, get_model("abmil", num_classes=4, in_features=dim), ModelCard(
        architecture="abmil", classes=HER2, name="mil-test"))
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=200)
    y = np.where(x[:, 3] > 0.1, 3, np.where(x[:, 2:].sum(1) > 0.1, 2,
                                            np.where(x[:, 1:].sum(1) > 0.1, 1, 0)))
    svm = folder / "whspn.safetensors"
    save_checkpoint(svm, fit_whspn_svm(x, y), ModelCard(architecture="whspn-svm", classes=HER2,
                                                        name="whspn-test"))
    return {"slide": slide, "tile": tile, "mil": mil, "svm": svm}


def test_mil_makes_the_call_and_gives_a_heatmap(files):
    report = score_slide(files["slide"], str(files["tile"]), slide_model=str(files["mil"]))
    data = report.to_dict()
    assert data["method"] == "abmil-monte-carlo"
    assert data["slide_model"]["name"] == "mil-test"
    assert data["score"] == report.call.score and report.call.method == "abmil-monte-carlo"
    assert data["evidence"]["rule"]["method"].startswith("asco-cap")  # the rule is kept
    assert set(data["evidence"]["probs"]) == set(HER2)
    low = data["evidence"]["her2_low"]
    if data["score"] in ("0", "1+"):  # the 0-vs-1+ comment is about the model's own call
        assert low["subcategory"].startswith(data["score"])
    else:
        assert low is None
    att = report.call.evidence.attention
    assert att.shape == (len(report.results),) and np.isfinite(att).any()


def test_whspn_from_the_cli(files, tmp_path, capsys):
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["svm"]),
               "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["method"] == "whspn-svm"
    assert "by whspn-svm" in capsys.readouterr().out
    fractions = np.array([data["class_fractions"][k] for k in HER2])
    expected = 3 if fractions[3] > 0.1 else 2 if fractions[2:].sum() > 0.1 else (
        1 if fractions[1:].sum() > 0.1 else 0)
    assert data["score"] == HER2[expected]


def test_a_tile_checkpoint_is_refused_as_slide_model(files, tmp_path, capsys):
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["tile"]),
               "--out", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "tile.safetensors" in err and "tile model" in err and "Traceback" not in err


def test_widget_shows_the_attention_layer(qtbot, make_napari_viewer, files):
    from napari_her2._qt.widget import Her2ScoringWidget

    viewer = make_napari_viewer()
    viewer.open(str(files["slide"]), plugin="napari-her2")
    widget = Her2ScoringWidget(viewer)
    qtbot.addWidget(widget)
    widget.form.add_checkpoint(files["tile"])
    widget.form.add_slide_model(files["mil"])
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=60_000)
    assert widget.report is not None, widget.status.text()
    layer = viewer.layers["s attention"]
    tiles = viewer.layers["s HER2 tiles"]
    assert layer.data.shape == tiles.data.shape
    np.testing.assert_allclose(layer.scale, tiles.scale)
    np.testing.assert_allclose(layer.translate, tiles.translate)
    assert 0 <= np.nanmin(layer.data) and np.nanmax(layer.data) <= 1
    assert widget.panel.score_label.text() == widget.report.call.score_text()


def test_a_learned_call_carries_its_validation_in_headline_report_and_page(tmp_path):
    """The shipped MIL model's call shows its validated accuracy beside its confidence."""
    from napari_her2 import score_slide
    from napari_her2._sample_data import sample_slide_path
    from napari_her2.export.report_page import report_lines
    from napari_her2.models.catalog import PACKAGE_CHECKPOINTS

    report = score_slide(sample_slide_path(), model=str(
        PACKAGE_CHECKPOINTS / "her2-resnet-tma.safetensors"),
        slide_model=str(PACKAGE_CHECKPOINTS / "abmil-tma.safetensors"))
    call = report.call
    assert call.has_score and call.validation is not None
    assert call.validation.model == "abmil-tma"
    headline = call.headline()
    shown = (f"P({call.score}) {call.confidence:.2f}" if call.borderline is not None
             else f"confidence {call.confidence:.2f}")  # a borderline call names both scores
    assert shown in headline, headline
    assert f"validated accuracy {call.validation.accuracy:.2f}" in headline, headline
    assert "demonstration model" in headline
    data = report.to_dict()
    assert data["validation"]["demonstration"] is True
    assert data["validation"]["text"].startswith("abmil-tma: validated accuracy")
    page = "\n".join(report_lines(report))
    assert "Model validation: abmil-tma: validated accuracy" in page
