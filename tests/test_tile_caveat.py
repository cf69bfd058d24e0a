"""Notes the cell scorer states about how a run was set up, beside its call.

Tiles smaller than it counts tumour cells reliably from: tumour cells are found by their
cohesive neighbours within a tile, so small tiles lose them at their edges
(docs/validation.md: with 64 µm tiles two shared images fell under the 50 tumour cells a call
needs). A µm/px given by hand rather than read from the file: nuclei are judged by their area
in µm², so a value 10% off can halve or nearly double the tumour cells (docs/validation.md).
The notes reach the JSON, the CLI line and the report page."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.io import imsave

from napari_her2 import score_slide
from napari_her2.cli import main
from napari_her2.export.report_page import report_lines
from napari_her2.ihc.cell_scorer import MIN_TILE_UM, DabCellScorer
from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import scoring_notes, tile_caveat


def _field_rgb() -> np.ndarray:
    """Plump 9 µm nuclei packed 12 µm apart, 384 µm square at 0.5 µm/px, no DAB."""
    n = 768
    yy, xx = np.mgrid[:n, :n] * 0.5
    dy, dx = yy % 12.0 - 6.0, xx % 12.0 - 6.0
    h = np.where(dx**2 + dy**2 < 4.5**2, 0.4, 0.0)
    od = h[..., None] * stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)[0]
    return np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8)


@pytest.fixture
def field(tmp_path):
    """The field as a PNG, which gives no µm/px."""
    path = tmp_path / "field.png"
    imsave(path, _field_rgb(), check_contrast=False)
    return path


HAND = "µm/px given by hand"


def test_the_scorer_says_which_tiles_are_too_small():
    scorer = DabCellScorer()
    assert MIN_TILE_UM == 128.0
    assert scorer.tile_caveat(128.0) == "" and scorer.tile_caveat(512 * 0.25) == ""
    assert scorer.tile_caveat(127.99) == ""  # a rounding of 128, not a smaller tile
    caveat = scorer.tile_caveat(64.0)
    assert "tiles of 64 µm" in caveat and "128 µm or more" in caveat
    assert tile_caveat(object(), None) == ""  # a scorer without a note (a tile model)


@pytest.mark.parametrize(("tile_px", "noted"), [(128, True), (256, False)])
def test_the_report_carries_the_note(field, tile_px, noted):
    report = score_slide(field, mpp=0.5, tile_size=tile_px, target_mpp=0.5)
    said = [w for w in report.to_dict()["warnings"] if "tumour cells are found" in w]
    assert bool(said) is noted
    assert any(ln.startswith("Note: tiles of 64 µm") for ln in report_lines(report)) is noted
    report.slide.close()


def test_the_cli_line_says_it(field, tmp_path, capsys):
    assert main(["score", str(field), "--mpp", "0.5", "--tile-size", "128",
                 "--target-mpp", "0.5", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "  note: tiles of 64 µm" in out
    data = json.loads((tmp_path / "out" / "field.json").read_text())
    assert any("tiles of 64 µm" in w for w in data["warnings"])


def test_a_hand_given_mpp_is_noted_and_one_from_the_file_is_not():
    scorer = DabCellScorer()
    said = scorer.mpp_caveat("user")
    assert said.startswith(HAND) and "halve or nearly double" in said
    assert scorer.mpp_caveat("aperio.MPP") == "" and scorer.mpp_caveat("tiff.resolution") == ""
    assert scoring_notes(object(), None, "user") == []  # a scorer without notes


def test_the_report_says_the_mpp_was_given_by_hand(field, tmp_path):
    report = score_slide(field, mpp=0.5)
    assert report.to_dict()["mpp"]["source"] == "user"
    assert [w for w in report.to_dict()["warnings"] if HAND in w]
    assert any(ln.startswith(f"Note: {HAND}") for ln in report_lines(report))
    report.slide.close()
    tiff = write_pyramid_tiff(tmp_path / "field.tif", _field_rgb(), 0.5, tile=256,
                              compression="deflate")
    report = score_slide(tiff)  # the same field, its µm/px in the file
    assert report.to_dict()["mpp"]["source"] != "user"
    assert not [w for w in report.to_dict()["warnings"] if HAND in w]
    assert not any(HAND in ln for ln in report_lines(report))
    report.slide.close()


def test_the_cli_notes_each_on_its_own_line(field, tmp_path, capsys):
    assert main(["score", str(field), "--mpp", "0.5", "--tile-size", "128",
                 "--target-mpp", "0.5", "--out", str(tmp_path / "out")]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  note: ")]
    assert len(notes) == 2
    assert notes[0].startswith("  note: tiles of 64 µm")
    assert notes[1] == "  note: " + DabCellScorer().mpp_caveat("user")
