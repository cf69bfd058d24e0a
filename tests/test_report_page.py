"""The one-page slide report: A4 PNG and PDF with the call, evidence and model card."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_her2._sample_data import ihc_mosaic
from napari_her2.classes import CLASS_COLORS
from napari_her2.export.report_page import (
    NOT_FOR_DIAGNOSIS_LINE,
    PageOptions,
    report_lines,
    write_report_page,
)
from napari_her2.run.pipeline import score_slide
from napari_her2.slide import write_pyramid_tiff


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "page-slide.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5, tile=256)
    rep = score_slide(path)
    yield rep
    rep.slide.close()


def test_report_text_has_every_field(report):
    lines = report_lines(report, PageOptions(n_reviewed=7, n_changed=2, date="2026-11-03"))
    text = "\n".join(lines)
    assert lines[0] == report.call.headline()
    for needle in ("Confidence:", "Called by: asco-cap-breast-2023",
                   "Tumour cells by class, as called (95% range when tiles are resampled",
                   "7 tiles reviewed, 2 changed", "Model: dab-cells", "sha256",
                   "Training data:", "Intended use:", "Parameters: tile", "organ breast",
                   "2026-11-03", "napari-her2 "):
        assert needle in text, needle
    assert lines[-1] == NOT_FOR_DIAGNOSIS_LINE  # the rule-based scorer states no clinical use
    use = next(line for line in lines if line.startswith("Intended use:"))
    assert "research use only; not for diagnosis" in use.lower() and "breast" in use


def test_the_page_says_how_many_tumour_cells_dab_outlines_only(report):
    summary = report.results.cells.summary()
    # the sample's strongly stained carcinoma has both kinds of tumour cell
    assert 0 < summary["n_tumour_outlined"] < summary["n_tumour_cells"]
    share = 100 * summary["n_tumour_outlined"] / summary["n_tumour_cells"]
    said = [ln for ln in report_lines(report) if "outlined by DAB only" in ln]
    assert said == [f"Tumour cells {summary['n_tumour_outlined']:,} ({share:.0f}%) outlined by "
                    "DAB only, no blue nucleus: check they are carcinoma cells, not duct lumens"]


def test_a_tile_scorer_report_says_tiles(report):
    tiles = score_slide(report.slide.path, "dab-membrane")
    text = "\n".join(report_lines(tiles))
    assert "Tumour tiles by class, as called (95% range when tile classes are resampled" in text
    tiles.slide.close()


def test_report_files_are_an_a4_page_with_the_overlay(report, tmp_path):
    png, pdf = write_report_page(report, tmp_path / "slide.report.png")
    assert png.name == "slide.report.png" and pdf.name == "slide.report.pdf"
    image = Image.open(png)
    assert image.size == (1240, 1753) or image.size == (1240, 1754)
    assert report.call.headline() in image.text["Description"]
    rgb = np.asarray(image.convert("RGB")).astype(int)
    top = rgb[int(0.1 * rgb.shape[0]):int(0.38 * rgb.shape[0])]  # the image panels
    colours = [np.array(CLASS_COLORS[c]) for c in ("0", "1+", "2+", "3+", "non-tumour")]
    blended = [np.abs(top - (0.55 * c + 0.45 * top)).sum(axis=2) for c in colours]
    assert min(b.min() for b in blended) < 30  # tile colours are drawn over the thumbnail
    assert pdf.read_bytes().startswith(b"%PDF")
    assert report.call.headline().encode("utf-16-be") in pdf.read_bytes() or (
        b"HER2 IHC slide report" in pdf.read_bytes())
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_low_dpi_is_refused():
    with pytest.raises(ValueError, match="dpi"):
        PageOptions(dpi=72)


def test_a_borderline_call_is_said_on_the_page(report):
    from napari_her2.scoring import call_from_rule, score_tiles
    from napari_her2.tiles.results import TileResults

    rows = [[0, 0, 1, 0, 0]] * 5 + [[0.48, 0.30, 0.22, 0, 0]] * 45  # 0 / 1+ / 2+ in 48 / 30 / 22%
    probs = np.asarray(rows, np.float32)
    n = len(probs)
    results = TileResults(("0", "1+", "2+", "3+", "non-tumour"), (), (1, n), (0.0, 0.0),
                          (256.0, 256.0), rows=np.zeros(n, np.int32),
                          cols=np.arange(n, dtype=np.int32), probs=probs,
                          features=np.zeros((n, 0), np.float32), readable=np.ones(n, bool))
    call = call_from_rule(score_tiles(results))
    assert call.borderline == ("0", "1+")
    lines = report_lines(report, PageOptions(call=call))
    assert lines[0] == call.headline() and lines[0].startswith("HER2 borderline 0 / 1+: review")
    assert any(ln.startswith(f"Confidence: {100 * call.confidence:.0f}%, borderline 0 / 1+: 0 in")
               and ln.endswith("; review") for ln in lines)
    assert "Category: negative, borderline: review" in lines
    # every fraction shown lies inside the range printed beside it
    shown = [ln for ln in lines if "(range " in ln]
    assert len(shown) == 4
    for ln in shown:
        value = float(ln.split(":")[1].split("%")[0])
        lo, hi = (float(x) for x in ln.split("(range ")[1].rstrip("%)").split("-"))
        assert lo <= value <= hi, ln
