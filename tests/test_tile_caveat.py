"""Tiles smaller than the cell scorer counts tumour cells reliably from are said to be so:
tumour cells are found by their cohesive neighbours within a tile, so small tiles lose them
at their edges (docs/validation.md: with 64 µm tiles two shared images fell under the 50
tumour cells a call needs). The note reaches the JSON, the CLI line and the report page."""

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
from napari_her2.tiles.grid import tile_caveat


@pytest.fixture
def field(tmp_path):
    """Plump 9 µm nuclei packed 12 µm apart, 384 µm square at 0.5 µm/px, no DAB."""
    n = 768
    yy, xx = np.mgrid[:n, :n] * 0.5
    dy, dx = yy % 12.0 - 6.0, xx % 12.0 - 6.0
    h = np.where(dx**2 + dy**2 < 4.5**2, 0.4, 0.0)
    od = h[..., None] * stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)[0]
    path = tmp_path / "field.png"
    imsave(path, np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8),
           check_contrast=False)
    return path


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
