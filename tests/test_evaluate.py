"""Labels of a folder (file names, sub-folders, CSV) and ``evaluate_folder`` end to end."""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_her2 import __version__
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cohort.evaluate import CSV_FIELDS, evaluate_folder, summary_line
from napari_her2.cohort.labels import LabelledImage, label_from_name, load_labelled_folder
from napari_her2.errors import Her2Error, ModelNotFoundError
from napari_her2.params import ScoringParams

#: small, fast scoring (64 px tiles at 1 µm/px): a 640 px image at 0.5 µm/px is 25 tiles
FAST = ScoringParams().with_overrides(tile_size=64, target_mpp=1.0)
MPP = 0.5


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --------------------------------------------------------------------------- labels from names


@pytest.mark.parametrize("name, expected", [
    ("00052_test_3+.png", "3+"),
    ("00004_test_0.png", "0"),
    ("00007_train_1+.png", "1+"),
    ("0_9b0f64d1-6785-49d9-b279-004b2deb8478.jpg", "0"),
    ("1_154ae963.jpg", "1+"),
    ("2+_core.tif", "2+"),
    ("10_core.tif", None),
    ("slide.svs", None),
    ("00052_test_4.png", None),
])
def test_label_from_file_name(name, expected):
    assert label_from_name(Path("/data") / name, Path("/data")) == expected


def test_label_from_sub_folder_wins_over_a_leading_digit():
    root = Path("/data")
    assert label_from_name(root / "1+" / "case7.png", root) == "1+"
    assert label_from_name(root / "3" / "2_core.png", root) == "3+"
    assert label_from_name(root / "other" / "case7.png", root) is None


def test_folder_labels_from_names_and_sub_folders(tmp_path):
    for name in ("00052_test_3+.png", "0_abc.jpg", "2+/x.tiff", "0/y.ndpi", "notes.png",
                 "README.md", "3+/.hidden.png"):
        touch(tmp_path / name)
    images = load_labelled_folder(tmp_path)
    got = {p.path.relative_to(tmp_path).as_posix(): p.label for p in images}
    assert got == {"00052_test_3+.png": "3+", "0_abc.jpg": "0", "2+/x.tiff": "2+",
                   "0/y.ndpi": "0"}
    assert all(isinstance(p, LabelledImage) and p.group is None for p in images)
    assert [p.path for p in images] == sorted(p.path for p in images)


def test_folder_without_labelled_images(tmp_path):
    touch(tmp_path / "slide.png")
    with pytest.raises(Her2Error, match=f"{tmp_path}: no labelled image"):
        load_labelled_folder(tmp_path)
    with pytest.raises(Her2Error, match="not a folder"):
        load_labelled_folder(tmp_path / "slide.png")


# --------------------------------------------------------------------------- labels from a CSV


def test_csv_with_ihc_score_and_patient_columns(tmp_path):
    for name in ("a.jpg", "b.jpg", "sub/c.png"):
        touch(tmp_path / name)
    table = tmp_path / "my labels.csv"
    table.write_text("filename,ihc_score,her2_status,patient\n"
                     "a.jpg,0,0,P1\nb.jpg,2,1,P1\nsub/c.png,3+,1,\n")
    images = load_labelled_folder(tmp_path, table)
    assert [(p.path.name, p.label, p.group) for p in images] == [
        ("a.jpg", "0", "P1"), ("b.jpg", "2+", "P1"), ("c.png", "3+", None)]


def test_labels_csv_in_the_folder_is_used_and_headerless_rows_work(tmp_path):
    touch(tmp_path / "1_x.jpg")  # the name says 1+, the CSV says 2+: the CSV decides
    (tmp_path / "labels.csv").write_text("1_x.jpg,2+,case-9\n")
    [image] = load_labelled_folder(tmp_path)
    assert (image.label, image.group) == ("2+", "case-9")


def test_csv_naming_a_missing_file(tmp_path):
    touch(tmp_path / "a.png")
    table = tmp_path / "labels.csv"
    table.write_text("filename,label\na.png,1\nb.png,2\n")
    with pytest.raises(Her2Error, match=r"labels.csv: line 3: image 'b.png' not found") as err:
        load_labelled_folder(tmp_path, table)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("label", ["4", "", "positive"])
def test_csv_with_a_bad_label(tmp_path, label):
    touch(tmp_path / "a.png")
    table = tmp_path / "labels.csv"
    table.write_text(f"filename,label\na.png,{label}\n")
    with pytest.raises(Her2Error, match=r"labels.csv: line 2: label .* is not a HER2 score"):
        load_labelled_folder(tmp_path, table)


def test_csv_listing_a_file_twice_or_empty(tmp_path):
    touch(tmp_path / "a.png")
    table = tmp_path / "labels.csv"
    table.write_text("file,score\na.png,1\na.png,2\n")
    with pytest.raises(Her2Error, match="listed twice"):
        load_labelled_folder(tmp_path, table)
    table.write_text("\n")
    with pytest.raises(Her2Error, match="labels CSV is empty"):
        load_labelled_folder(tmp_path, table)


def test_shared_labelled_folders(shared_data):
    bci = load_labelled_folder(shared_data / "her2-ihc-bci")
    assert [(p.path.name, p.label) for p in bci] == [
        ("00004_test_0.png", "0"), ("00007_test_1+.png", "1+"),
        ("00052_test_3+.png", "3+"), ("00249_test_2+.png", "2+")]
    tma = load_labelled_folder(shared_data / "her2-ihc-tma")  # its labels.csv, ihc_score
    assert len(tma) == 7
    assert [p.label for p in tma] == ["0", "0", "1+", "1+", "2+", "2+", "2+"]
    assert all(p.path.name[0] == p.label[0] for p in tma)


# --------------------------------------------------------------------------- end to end


def write_tiff(path: Path, image: np.ndarray, mpp: float | None = MPP) -> Path:
    import tifffile

    kw = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp),
                                 "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, image, photometric="rgb", **kw)
    return path


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> Path:
    """Three IHC images (one copy of skimage's IHC image on white, rotated), a blank one, one
    without µm/px and one that is not an image, named by the BCI convention."""
    root = tmp_path_factory.mktemp("labelled")
    tissue = ihc_mosaic(rows=1, cols=1, gap=64)
    for k, score in enumerate(("0", "2+", "3+")):
        write_tiff(root / f"0000{k}_test_{score}.tif", np.ascontiguousarray(np.rot90(tissue, k)))
    write_tiff(root / "00003_test_1+.tif", np.full((640, 640, 3), 250, np.uint8))
    write_tiff(root / "00004_test_2+.tif", tissue, mpp=None)
    (root / "00005_test_0.tif").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def evaluation(labelled_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the image without µm/px warns before it fails
        result = evaluate_folder(labelled_folder, out, organ="gastric", params=FAST,
                                 progress=lambda done, total, row: seen.append((done, total, row)))
    return result, out, seen


def test_evaluation_calls_every_scorable_image_and_says_why_not_the_others(evaluation):
    result, _, _ = evaluation
    rows = {r.file: r for r in result.images}
    assert sorted(rows) == [f"0000{k}_test_{s}.tif"
                            for k, s in enumerate(("0", "2+", "3+", "1+", "2+", "0"))]
    for name in ("00000_test_0.tif", "00001_test_2+.tif", "00002_test_3+.tif"):
        row = rows[name]
        assert row.call in ("0", "1+", "2+", "3+") and row.no_call_reason is None, row
        assert row.n_tumour_tiles > 0 and 0 <= row.confidence <= 1
        assert row.n_tumour_cells >= 50 and 0 <= row.n_tumour_outlined <= row.n_tumour_cells
        assert sum(row.tumour_percent) == pytest.approx(100.0, abs=0.05)
    assert rows["00003_test_1+.tif"].call is None
    assert rows["00003_test_1+.tif"].n_tumour_cells is None  # nothing was measured
    assert rows["00003_test_1+.tif"].no_call_reason.startswith("no tissue found")
    missing_mpp = rows["00004_test_2+.tif"].no_call_reason
    assert missing_mpp.startswith("slide µm/px missing") and "microns per pixel" in missing_mpp
    unreadable = rows["00005_test_0.tif"].no_call_reason
    assert unreadable.startswith("slide unreadable") and "00005_test_0.tif" in unreadable
    figures = result.agreement
    assert (figures["n"], figures["n_called"]) == (6, 3)
    assert figures["no_call_rate"] == pytest.approx(0.5)


def test_evaluation_writes_csv_json_and_png(evaluation):
    result, out, _ = evaluation
    assert result.files == {"csv": out / "evaluation.csv", "json": out / "evaluation.json",
                            "png": out / "evaluation.png",
                            "reliability": out / "evaluation-reliability.png"}
    with open(out / "evaluation.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(CSV_FIELDS)
    assert len(table) == 6
    assert [r["label"] for r in table] == ["0", "2+", "3+", "1+", "2+", "0"]
    assert table[3]["call"] == "" and table[3]["no_call_reason"].startswith("no tissue found")
    assert table[3]["tumour_pct_3+"] == ""  # nothing measured
    rows = {r.file: r for r in result.images}
    assert float(table[2]["tumour_pct_3+"]) == rows[table[2]["file"]].tumour_percent[3]
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["version"] == __version__
    assert summary["params"]["call"]["organ"] == "gastric"
    assert summary["params"]["grid"]["tile_size"] == 64
    assert summary["model"]["name"] == "dab-cells"
    assert summary["labels"] == "image names"
    assert summary["agreement"]["confusion_4"]["matrix"][1] == [0, 0, 0, 0, 1]  # the blank 1+
    assert summary["agreement"]["ci"]["no_call_rate"] is not None
    assert len(summary["images"]) == 6
    png = (out / "evaluation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sorted(p.name for p in out.iterdir()) == [
        "evaluation-reliability.png", "evaluation.csv", "evaluation.json", "evaluation.png"]


def test_evaluation_reports_calibration_of_the_calls(evaluation):
    result, out, _ = evaluation
    calibration = json.loads((out / "evaluation.json").read_text())["calibration"]
    assert calibration == result.calibration
    called = [r for r in result.images if r.call is not None]
    assert calibration["n"] == len(called) == 3 and calibration["bins"] == 10
    assert calibration["left_out_no_calls"] == 3 and calibration["left_out_no_confidence"] == 0
    assert sum(b["n"] for b in calibration["per_bin"]) == 3
    expected = sum(abs(float(r.call == r.label) - r.confidence) for r in called) / 3
    if len({min(int(np.ceil(r.confidence * 10)) - 1, 9) for r in called}) == 3:
        assert calibration["ece"] == pytest.approx(expected)  # one call per bin
    assert 0 <= calibration["ece"] <= 1
    png = (out / "evaluation-reliability.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_progress_and_summary_line(evaluation):
    result, _, seen = evaluation
    assert [(d, t) for d, t, _ in seen] == [(i, 6) for i in range(1, 7)]
    assert [row for _, _, row in seen] == list(result.images)
    line = summary_line(result)
    assert "\n" not in line and line.startswith(f"{result.folder.name}: n=6, called 3")
    assert "QWK" in line and "no-call 50%" in line
    assert re.search(r"; ECE [01]\.\d\d over 3 calls \(3 no-calls left out\)$", line), line


def test_mpp_supplies_the_missing_resolution(labelled_folder, tmp_path):
    table = tmp_path / "one.csv"
    table.write_text("filename,label\n00004_test_2+.tif,2+\n")
    result = evaluate_folder(labelled_folder, tmp_path / "out", labels_csv=table, mpp=MPP,
                             params=FAST)
    [row] = result.images
    assert row.call is not None and row.no_call_reason is None
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["mpp"] == MPP and summary["labels"] == str(table)


def test_unknown_model_is_an_error_for_the_whole_run(labelled_folder, tmp_path):
    with pytest.raises(ModelNotFoundError):
        evaluate_folder(labelled_folder, tmp_path / "out", model="no-such-model", params=FAST)


def test_bad_organ_is_an_error_for_the_whole_run(labelled_folder, tmp_path):
    with pytest.raises(Her2Error, match="organ must be one of"):
        evaluate_folder(labelled_folder, tmp_path / "out", organ="lung", params=FAST)
