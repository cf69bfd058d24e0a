"""What the cell scorer's count does and does not depend on, and the notes it states beside
its call about how a run was set up.

Tiles are read with the slide around them (``DabCellScorer.context_um``), so the cells and the
tumour cells do not depend on the tile size: before, tumour cells were found by their cohesive
neighbours within their own tile and small tiles lost them at their edges. A µm/px given by
hand rather than read from the file is noted: nuclei are judged by their area in µm², so a
value 10% off can halve or nearly double the tumour cells (docs/validation.md). The note
reaches the JSON, the CLI line and the report page."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_her2 import score_slide
from napari_her2.cli import main
from napari_her2.export.report_page import report_lines
from napari_her2.ihc.cell_scorer import DabCellScorer
from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import scoring_notes


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


@pytest.fixture
def field_tiff(tmp_path):
    """The field as a pyramidal TIFF with its µm/px."""
    return write_pyramid_tiff(tmp_path / "field.tif", _field_rgb(), 0.5, tile=256,
                              compression="deflate")


def _cells(path, tile_px: int) -> dict:
    report = score_slide(path, tile_size=tile_px, target_mpp=0.5)
    try:
        data = report.to_dict()
        return {"by_class": data["cells"]["by_class"], "score": data["score"],
                "notes": data["warnings"]}
    finally:
        report.slide.close()


def test_the_cells_do_not_depend_on_the_tile_size(field_tiff):
    """Every nucleus of the field is one tumour cell of class 0, whether the field is cut into
    tiles of 48, 64, 128 or 192 µm (without the context, tiles of 64 and 128 µm cut the
    nuclei at their edges into 240 and 124 more objects)."""
    seen = {px: _cells(field_tiff, px) for px in (96, 128, 256, 384)}
    for px, got in seen.items():
        assert got["by_class"] == seen[384]["by_class"], px
        assert got["score"] == "0" and got["notes"] == [], px  # small tiles need no note
    by_class = seen[384]["by_class"]
    assert by_class["non-tumour"] == 0 and by_class["0"] == sum(by_class.values())


def test_the_scorer_asks_for_context_in_whole_grid_pixels():
    scorer = DabCellScorer()
    assert scorer.context_um == 49.0  # cluster radius 25 + member reach 12 + outline 12
    assert scorer.context_px == 98  # at 0.5 µm/px, a whole number of 1 µm grid pixels
    assert scorer.at_mpp(0.25).context_px == 196
    assert scorer.at_mpp(0.3).context_px % 3 == 0  # a 0.3 µm/px tile sits on a 3 px grid
    assert scorer.at_mpp(0.3).context_px * 0.3 >= 49.0


def test_a_hand_given_mpp_is_noted_and_one_from_the_file_is_not():
    scorer = DabCellScorer()
    said = scorer.mpp_caveat("user")
    assert said.startswith(HAND) and "halve or nearly double" in said
    assert scorer.mpp_caveat("aperio.MPP") == "" and scorer.mpp_caveat("tiff.resolution") == ""
    assert scoring_notes(object(), "user") == []  # a scorer without notes


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


def test_the_cli_says_the_note_on_its_own_line(field, tmp_path, capsys):
    assert main(["score", str(field), "--mpp", "0.5", "--tile-size", "128",
                 "--target-mpp", "0.5", "--out", str(tmp_path / "out")]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  note: ")]
    assert notes == ["  note: " + DabCellScorer().mpp_caveat("user")]
