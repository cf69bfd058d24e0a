"""Every no-call says why, the same in the report, the CLI line and the widget panel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2.cli import main
from napari_her2.errors import MissingMppError
from napari_her2.run.pipeline import no_call_for_error
from napari_her2.scoring import NoCallReason
from napari_her2.slide import write_pyramid_tiff


def _slide(tmp_path, name: str, rgb: tuple[int, int, int], size: int = 768):
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rgb
    return write_pyramid_tiff(tmp_path / f"{name}.tif", image, 0.5, compression="zlib")


@pytest.mark.parametrize(("name", "rgb", "reason"), [
    ("glass", (245, 245, 244), NoCallReason.NO_TISSUE),         # a blank slide
    ("stroma", (200, 178, 150), NoCallReason.NO_TUMOUR),  # tan tissue without any nucleus
])
def test_no_call_reasons_end_to_end(tmp_path, capsys, name, rgb, reason):
    path = _slide(tmp_path, name, rgb)
    report = score_slide(path, tile_size=128)
    assert report.call.score is None and report.call.no_call is reason
    data = report.to_dict()
    assert data["score"] is None and data["no_call"] == reason.value
    assert main(["score", str(path), "--tile-size", "128", "--out", str(tmp_path / "o")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert f"no HER2 score: {reason.value}" in line
    saved = json.loads((tmp_path / "o" / f"{name}.json").read_text())
    assert saved["no_call"] == reason.value and saved["headline"] == report.call.headline()


def test_h_and_e_is_a_stain_check_no_call(shared_slides):
    report = score_slide(shared_slides / "cmu-1-small-region.svs")
    assert report.call.no_call is NoCallReason.STAIN_CHECK and report.call.score is None
    assert report.to_dict()["warnings"]  # and the warning is in the report


def test_fluorescence_is_a_stain_check_no_call(shared_slides):
    report = score_slide(shared_slides / "test3-DAPI-2-387.ndpi")
    assert report.call.no_call is NoCallReason.STAIN_CHECK and report.call.score is None


def test_missing_mpp_is_a_no_call_with_its_reason(tmp_path):
    call = no_call_for_error(MissingMppError(tmp_path / "x.png"))
    assert call.no_call is NoCallReason.MISSING_MPP
    assert call.headline().startswith("no HER2 score: slide µm/px missing")


def test_the_panel_shows_the_reason_never_a_bare_dash(qtbot, tmp_path):
    from napari_her2._qt.score_panel import ScorePanel

    report = score_slide(_slide(tmp_path, "glass", (245, 245, 244)), tile_size=128)
    panel = ScorePanel()
    qtbot.addWidget(panel)
    assert panel.score_label.text() == "not scored"
    panel.show_call(report.call)
    assert panel.score_label.text() == "no call"
    assert panel.category_label.text() == NoCallReason.NO_TISSUE.value
    texts = [w.text() for w in (panel.score_label, panel.category_label,
                                panel.confidence_label, panel.tiles_label)]
    assert "–" not in texts and "-" not in texts
