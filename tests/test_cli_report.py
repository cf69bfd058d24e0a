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


def test_a_borderline_call_is_said_in_the_line_the_json_and_the_page(tmp_path, capsys,
                                                                     borderline_calls):
    """Whatever the slide, a borderline call reads the same in all three outputs."""
    import json

    slide = tmp_path / "edge.tif"
    write_pyramid_tiff(slide, ihc_mosaic(rows=1, cols=1, gap=64), 0.5, tile=256)
    out = tmp_path / "out"
    assert main(["score", str(slide), "--out", str(out), "--report"]) == 0
    headline = ("HER2 borderline 0 / 1+: review (0 in 48% of resamplings, 1+ in 45%) "
                "by asco-cap-breast-2023-cells")
    assert capsys.readouterr().out.startswith(f"edge.tif: {headline}; ")
    data = json.loads((out / "edge.json").read_text())
    assert data["borderline"] == ["0", "1+"] and data["headline"] == headline
    assert data["score"] == "0" and data["confidence"] == 0.48
    page = Image.open(out / "edge.report.png").text["Description"].splitlines()
    assert page[0] == headline
    assert "Confidence: 48%, borderline 0 / 1+: 0 in 48% of resamplings, 1+ in 45%; review" \
        in page
    assert "Category: negative, borderline: review" in page
