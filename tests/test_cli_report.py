"""``napari-her2 score --report`` writes the one-page report beside the other outputs."""

from __future__ import annotations

from PIL import Image

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.slide import write_pyramid_tiff


def test_score_report_writes_png_and_pdf(tmp_path, capsys):
    slide = tmp_path / "cli-slide.tif"
    write_pyramid_tiff(slide, ihc_mosaic(rows=1, cols=2, gap=64), 0.5, tile=256)
    out = tmp_path / "out"
    assert main(["score", str(slide), "--out", str(out), "--report"]) == 0
    png, pdf = out / "cli-slide.report.png", out / "cli-slide.report.pdf"
    assert Image.open(png).size[0] == 1240 and pdf.read_bytes().startswith(b"%PDF")
    assert "cli-slide.report.png" in capsys.readouterr().out
    assert "HER2" in Image.open(png).text["Description"]
