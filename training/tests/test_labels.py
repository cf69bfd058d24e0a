"""Labels from CSV files, BCI names, leading scores and folder names."""

from __future__ import annotations

from pathlib import Path

import pytest

from her2_train.errors import DatasetError, LabelError
from her2_train.labels import NO_LABEL, discover, label_from_name, parse_score, read_label_csv


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("1", 1), ("1+", 1), ("2+", 2), (" 3+ ", 3), ("HER2 2+", 2), ("her2_3", 3),
])
def test_parse_score(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text", ["4", "", "2++", "+", "negative", "1.5"])
def test_parse_score_refuses(text):
    with pytest.raises(LabelError, match="not a HER2 score"):
        parse_score(text)


@pytest.mark.parametrize("name,expected", [
    ("00052_train_3+.png", 3), ("00004_test_0.png", 0), ("00249_val_2+.png", 2),
    ("2_0123a214-85b7.jpg", 2), ("0_9b0f.jpg", 0), ("1+/slide.tif", 1), ("2/x.png", 2),
    ("other/x.png", NO_LABEL), ("5_abc.jpg", NO_LABEL),
])
def test_label_from_name(name, expected):
    assert label_from_name(Path("/data") / name) == expected


def test_csv_with_ihc_score_and_group(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,ihc_score,her2_status,patient\na.jpg,2,1,p1\nb.jpg,0,0,p1\n")
    assert read_label_csv(csv) == {"a.jpg": (2, "p1"), "b.jpg": (0, "p1")}


def test_csv_bad_label_names_file_and_line(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,label\na.jpg,2+\nb.jpg,7\n")
    with pytest.raises(LabelError, match=r"labels.csv: line 3: '7' is not a HER2 score"):
        read_label_csv(csv)


def test_csv_without_label_column(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,colour\na.jpg,red\n")
    with pytest.raises(DatasetError, match="needs a filename column and a label column"):
        read_label_csv(csv)


def test_discover_csv_overrides_names_and_groups(tmp_path):
    for name in ("3_a.tif", "b.tif", "c.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("filename,label,group\n3_a.tif,1+,g1\nb.tif,0,g1\n")
    items = discover(tmp_path, require_labels=False)
    assert [(i.path.name, i.label, i.group) for i in items] == [("3_a.tif", 1, "g1"),
                                                                ("b.tif", 0, "g1")]
    with pytest.raises(LabelError, match="c.tif: no label"):
        discover(tmp_path)


def test_discover_geojson_needs_no_label(tmp_path):
    (tmp_path / "slide.tif").write_bytes(b"x")
    (tmp_path / "slide.geojson").write_text("{}")
    (item,) = discover(tmp_path)
    assert item.label == NO_LABEL and item.geojson == tmp_path / "slide.geojson"


def test_discover_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        discover(tmp_path / "nope")


def test_real_tma_and_bci_labels(shared_data):
    tma = discover(shared_data / "her2-ihc-tma")
    assert len(tma) == 7
    assert sorted(i.label for i in tma) == [0, 0, 1, 1, 2, 2, 2]
    assert all(i.path.name[0] == str(i.label) for i in tma)
    bci = discover(shared_data / "her2-ihc-bci")
    assert {i.path.name: i.label for i in bci} == {
        "00004_test_0.png": 0, "00007_test_1+.png": 1, "00052_test_3+.png": 3,
        "00249_test_2+.png": 2}
