"""A borderline call is said in every table that lists calls: the batch summary, the
evaluation CSV and the TMA cores CSV carry its pair ("0 / 1+"), a clear call leaves it empty."""

from __future__ import annotations

import csv

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cohort.batch import SUMMARY_FIELDS, score_one, skipped_row
from napari_her2.cohort.evaluate import CSV_FIELDS, evaluate_folder
from napari_her2.export.tma import CSV_FIELDS as TMA_FIELDS
from napari_her2.params import ScoringParams
from napari_her2.slide import write_pyramid_tiff


def test_every_table_has_the_column():
    for fields in (SUMMARY_FIELDS, CSV_FIELDS, TMA_FIELDS):
        assert fields.index("borderline") == fields.index("confidence") + 1


def test_the_batch_row_of_a_borderline_slide(tmp_path, borderline_calls):
    slide = tmp_path / "edge.tif"
    write_pyramid_tiff(slide, ihc_mosaic(rows=1, cols=1, gap=64), 0.5, tile=256)
    params = ScoringParams().with_overrides(workers=1).to_dict()
    row = score_one(str(slide), str(tmp_path / "out"), params)
    assert row["status"] == "ok" and row["borderline"] == "0 / 1+"
    again = skipped_row(str(slide), {"score": "2+", "borderline": None}, slide, slide)
    assert again["borderline"] is None


def test_the_evaluation_csv_of_a_borderline_image(tmp_path, borderline_calls):
    from skimage.io import imsave

    folder = tmp_path / "labelled"
    folder.mkdir()
    imsave(folder / "00001_test_1+.png", ihc_mosaic(rows=1, cols=1, gap=64)[:512, :512],
           check_contrast=False)
    result = evaluate_folder(folder, tmp_path / "eval", mpp=0.5)
    assert result.images[0].borderline == "0 / 1+"
    rows = list(csv.DictReader((tmp_path / "eval" / "evaluation.csv").open()))
    assert rows[0]["borderline"] == "0 / 1+" and rows[0]["call"] == "0"
