"""The model card decides the tiles: a network sees exactly its card's size and µm/px."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.ihc.scorer import DabMembraneScorer
from napari_her2.models import ModelCard, get_model, load_predictor, save_checkpoint
from napari_her2.params import ParamError
from napari_her2.slide import write_pyramid_tiff

HER2 = ("0", "1+", "2+", "3+")
CARD_SIZE, CARD_MPP, SCAN_MPP = 64, 0.8, 0.5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geometry")
    slide = write_pyramid_tiff(folder / "s.tif", ihc_mosaic(rows=2, cols=2, gap=64), SCAN_MPP)
    ckpt = folder / "cnn.safetensors"
    save_checkpoint(ckpt, get_model("her2-resnet", num_classes=4), ModelCard(
        architecture="her2-resnet", classes=HER2, input_size=CARD_SIZE, target_mpp=CARD_MPP,
        name="geometry-test"))
    return slide, ckpt


class Spy:
    """A predictor that records every batch it is given, then defers to the real one."""

    def __init__(self, inner):
        self.inner = inner
        self.seen: list[tuple[int, ...]] = []
        for name in ("name", "classes", "input_size", "target_mpp", "feature_names", "sha256"):
            setattr(self, name, getattr(inner, name))

    def predict(self, tiles):
        self.seen.append(tuple(np.asarray(tiles).shape[1:]))
        return self.inner.predict(tiles)

    def describe(self):
        return self.inner.describe()


def test_a_cnn_receives_tiles_at_exactly_its_card_size_and_resolution(files):
    slide, ckpt = files
    spy = Spy(load_predictor(str(ckpt), device="cpu"))
    report = score_slide(slide, spy)
    assert spy.seen and set(spy.seen) == {(CARD_SIZE, CARD_SIZE, 3)}
    grid = report.grid
    assert grid.tile_size == CARD_SIZE and grid.target_mpp == CARD_MPP
    seen_mpp = np.array(grid.tile_size0) * SCAN_MPP / CARD_SIZE  # µm per tile pixel
    np.testing.assert_allclose(seen_mpp, CARD_MPP, rtol=0.02)


@pytest.mark.parametrize("override", [{"tile_size": 256}, {"target_mpp": 0.5}])
def test_an_override_that_contradicts_the_card_is_refused(files, override):
    slide, ckpt = files
    with pytest.raises(ParamError, match="model card"):
        score_slide(slide, str(ckpt), **override)


def test_the_cli_refuses_it_in_one_line(files, tmp_path, capsys):
    slide, ckpt = files
    rc = main(["score", str(slide), "--model", str(ckpt), "--tile-size", "128",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "64 px tiles" in err


def test_the_weight_free_scorer_takes_any_size_and_resolution(files):
    slide, _ = files
    report = score_slide(slide, "dab-membrane", tile_size=96, target_mpp=1.0)
    assert report.grid.tile_size == 96 and report.grid.target_mpp == 1.0
    np.testing.assert_allclose(np.array(report.grid.tile_size0) * SCAN_MPP / 96, 1.0, rtol=0.02)
    default = score_slide(slide, "dab-membrane")
    assert (default.grid.tile_size, default.grid.target_mpp) == (256, 0.5)  # its card's


@pytest.mark.parametrize("scan, expected", [(0.25, (0.25, 512)), (0.228, (0.25, 512)),
                                            (0.3, (0.25, 512)), (0.32, (0.5, 256)),
                                            (0.46, (0.5, 256)), (0.5, (0.5, 256)),
                                            (1.0, (0.5, 256))])
def test_the_cell_scorer_reads_a_40x_scan_at_40x_in_128_um_tiles(scan, expected):
    """The magnification rule sees 1+ membranes only at ×40: dab-cells reads a ×40 scan there
    (and any other at ×20), in tiles of the card's 128 µm either way."""
    from napari_her2.ihc.cell_scorer import DabCellScorer
    from napari_her2.params import GridParams
    from napari_her2.run.pipeline import fit_geometry

    predictor, size, mpp = fit_geometry(DabCellScorer(), GridParams(), scan)
    assert (mpp, size) == expected and predictor.params.mpp == mpp
    # what is asked for wins; the tile-area scorer keeps its card's ×20
    assert fit_geometry(DabCellScorer(), GridParams(target_mpp=0.5), scan)[1:] == (256, 0.5)
    assert fit_geometry(DabCellScorer(), GridParams(tile_size=200), scan)[1:] == (200, mpp)
    assert fit_geometry(DabMembraneScorer(), GridParams(), scan)[1:] == (256, 0.5)
    # a scorer already set to another resolution (one a run has prepared) gets the same tiles
    for preset in (0.25, 1.0):
        assert fit_geometry(DabCellScorer().at_mpp(preset), GridParams(), scan)[1:] == (
            size, mpp)


def test_a_40x_slide_is_scored_at_40x(tmp_path):
    slide = write_pyramid_tiff(tmp_path / "x40.tif", ihc_mosaic(rows=2, cols=2, gap=64), 0.25)
    report = score_slide(slide)
    assert (report.grid.tile_size, report.grid.target_mpp) == (512, 0.25)
    assert report.to_dict()["params"]["grid"]["target_mpp"] is None  # chosen, not asked for
    assert (score_slide(slide, "dab-membrane").grid.target_mpp) == 0.5


def test_config_file_round_trips_through_the_report(files, tmp_path):
    import json

    slide, _ = files
    out = tmp_path / "out"
    assert main(["score", str(slide), "--tile-size", "128", "--organ", "gastric",
                 "--out", str(out)]) == 0
    report = json.loads((out / "s.json").read_text())
    config = tmp_path / "again.json"
    config.write_text(json.dumps(report))  # a report works as a --config file
    assert main(["score", str(slide), "--config", str(config), "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "s.json").read_text())
    assert again["params"] == report["params"] and again["score"] == report["score"]
    toml = tmp_path / "c.toml"
    toml.write_text('[grid]\ntile_size = 160\n[call]\norgan = "gastric"\n')
    assert main(["score", str(slide), "--config", str(toml), "--out", str(tmp_path / "c")]) == 0
    third = json.loads((tmp_path / "c" / "s.json").read_text())
    assert third["grid"]["tile_size"] == 160 and third["params"]["call"]["organ"] == "gastric"
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\ntile_sise = 160\n')
    assert main(["score", str(slide), "--config", str(bad), "--out", str(tmp_path / "d")]) == 2
