"""A call of 0 from tiles read coarser than ×40 says that faint (1+) membranes, which the
magnification rule sees only at ×40, could not show (the 0-vs-1+ comment)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_her2 import score_slide
from napari_her2.ihc.cell_scorer import DabCellScorer
from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.run.pipeline import with_faint_caveat


def _unstained_carcinoma(path, px_um: float = 0.5, side_um: float = 384.0):
    """Plump 9 µm nuclei packed 12 µm apart at ``px_um`` µm/px, no DAB at all: HER2 0."""
    n = int(round(side_um / px_um))
    yy, xx = np.mgrid[:n, :n] * px_um
    dy, dx = yy % 12.0 - 6.0, xx % 12.0 - 6.0
    h = np.where(dx**2 + dy**2 < 4.5**2, 0.4, 0.0)
    matrix = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    od = h[..., None] * matrix[0] + 0.05 * matrix[0]
    imsave(path, np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8),
           check_contrast=False)
    return path


def test_the_scorer_knows_when_it_reads_coarser_than_x40():
    assert DabCellScorer().at_mpp(0.25).faint_caveat() == ""
    assert DabCellScorer().at_mpp(0.3).faint_caveat() == ""  # a ×40 scanner's 0.26-0.3
    caveat = DabCellScorer().at_mpp(0.5).faint_caveat()
    assert "0.5 µm/px" in caveat and "×40" in caveat


@pytest.mark.parametrize(("mpp", "said"), [(0.5, True), (0.25, False)])
def test_a_0_call_at_x20_says_what_it_cannot_see(tmp_path, mpp, said):
    report = score_slide(_unstained_carcinoma(tmp_path / "field.png", mpp), mpp=mpp)
    assert report.grid.target_mpp == mpp  # a ×40 scan is read at ×40, a ×20 one at ×20
    call = report.call
    assert call.score == "0", call.headline()
    assert ("review 0 vs 1+ at ×40" in call.evidence.her2_low.subcategory) is said
    assert call.evidence.her2_low.subcategory.startswith("0")
    report.slide.close()


def test_only_a_0_call_by_a_scorer_that_reads_cells_carries_it(tmp_path):
    from dataclasses import replace

    report = score_slide(_unstained_carcinoma(tmp_path / "field.png"), mpp=0.5)
    call = report.call
    low = call.evidence.her2_low
    plain = replace(call, evidence=replace(call.evidence, her2_low=replace(
        low, subcategory=low.subcategory.split(",")[0])))
    assert plain.evidence.her2_low.subcategory == "0 (null)"
    assert with_faint_caveat(plain, object()) is plain  # no faint_caveat: a tile model
    assert with_faint_caveat(plain, None) is plain
    one_plus = replace(plain, score="1+")
    assert with_faint_caveat(one_plus, report.predictor) is one_plus
    again = with_faint_caveat(plain, report.predictor)
    assert again.evidence.her2_low.subcategory == low.subcategory != "0 (null)"
    report.slide.close()


@pytest.mark.parametrize(("mpp", "said"), [(0.5, True), (0.25, False)])
def test_the_score_command_prints_the_caveat_under_its_line(capsys, tmp_path, mpp, said):
    from napari_her2.cli import main

    field = _unstained_carcinoma(tmp_path / "field.png", mpp)
    assert main(["score", str(field), "--mpp", str(mpp), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("field.png: HER2 0 (negative)")
    assert (lines[1].startswith("  0 vs 1+: 0 (null), read at 0.5 µm/px") and
            "review 0 vs 1+ at ×40" in lines[1]) is said
    after = lines[2 if said else 1:]
    assert after[0].startswith("  note: µm/px given by hand")  # a PNG gives none: --mpp
    assert after[1].startswith("wrote ")
