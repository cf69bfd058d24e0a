"""Regions: QuPath GeoJSON and napari shapes restrict the scored tiles exactly (holes and
Ignore*/Exclude shapes subtracted), the report states the region, bad regions are one-line
errors, and ``score --roi`` uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.run.pipeline import prepare, score_slide
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import TileGrid
from napari_her2.tiles.regions import (
    Region,
    RegionError,
    geojson_region,
    read_geojson_region,
    region_from_shapes,
)

MPP = 0.5
FAST = {"tile_size": 64, "target_mpp": 0.5}  # 64 level-0 px per tile on a 0.5 µm/px scan
#: the region drawn on the 1216 x 1216 px mosaic (x0, y0, x1, y1): an outer box with a hole,
#: an Ignore* box cutting its corner, and a second polygon (a triangle)
OUTER = (100, 80, 900, 700)
HOLE = (300, 250, 500, 450)
IGNORE = (700, 500, 1000, 800)
TRIANGLE = [(200, 900), (1100, 900), (650, 1180)]


def box(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def in_box(x, y, b) -> np.ndarray:
    return (x > b[0]) & (x < b[2]) & (y > b[1]) & (y < b[3])


def in_triangle(x, y) -> np.ndarray:
    """Point in TRIANGLE by the signs of the three edge cross products."""
    (ax, ay), (bx, by), (cx, cy) = TRIANGLE
    d1 = (x - bx) * (ay - by) - (ax - bx) * (y - by)
    d2 = (x - cx) * (by - cy) - (bx - cx) * (y - cy)
    d3 = (x - ax) * (cy - ay) - (cx - ax) * (y - ay)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def expected_inside(x, y) -> np.ndarray:
    """The drawn region written out by hand, independent of the Region code."""
    return ((in_box(x, y, OUTER) & ~in_box(x, y, HOLE)) | in_triangle(x, y)) & ~in_box(x, y, IGNORE)


def qupath_fc() -> dict:
    def feat(geom, cls=None):
        props = {"objectType": "annotation"}
        if cls:
            props["classification"] = {"name": cls, "color": [255, 0, 0]}
        return {"type": "Feature", "geometry": geom, "properties": props}

    return {"type": "FeatureCollection", "features": [
        feat({"type": "MultiPolygon", "coordinates": [
            [box(*OUTER), box(*HOLE)],
            [[*map(list, TRIANGLE), list(TRIANGLE[0])]]]}, "Tumor"),
        feat({"type": "Polygon", "coordinates": [box(*IGNORE)]}, "Ignore*"),
        feat({"type": "Point", "coordinates": [5, 5]}),
    ]}


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("regions") / "mosaic.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), MPP)


@pytest.fixture(scope="module")
def roi_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("roi") / "mosaic.geojson"
    path.write_text(json.dumps(qupath_fc()))
    return path


@pytest.fixture(scope="module")
def whole(slide):
    """The grid of the whole slide (no region)."""
    return prepare(slide, params=_params()).grid


def _params():
    from napari_her2.params import ScoringParams

    return ScoringParams().with_overrides(**FAST)


def centres_xy(grid: TileGrid, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    th, tw = grid.tile_size0
    return (np.asarray(cols) + 0.5) * tw, (np.asarray(rows) + 0.5) * th


# ---------------------------------------------------------------------- GeoJSON, end to end
def test_geojson_region_restricts_scored_tiles_exactly(slide, roi_file, whole):
    report = score_slide(slide, region=roi_file, **FAST)
    rows, cols = report.results.rows, report.results.cols
    x, y = centres_xy(report.grid, rows, cols)
    assert len(rows) > 10
    assert expected_inside(x, y).all(), "a scored tile's centre lies outside the region"
    assert not in_box(x, y, HOLE).any() and not in_box(x, y, IGNORE).any()
    # exactly the tissue tiles of the whole slide whose centre is inside: none is lost
    wr, wc = whole.tissue_tiles()
    wx, wy = centres_xy(whole, wr, wc)
    keep = expected_inside(wx, wy)
    assert set(zip(wr[keep].tolist(), wc[keep].tolist())) == set(zip(rows.tolist(), cols.tolist()))
    assert len(report.results) < whole.n_tissue


def test_report_states_the_region(slide, roi_file):
    data = score_slide(slide, region=roi_file, **FAST).to_dict()
    region = data["region"]
    assert region["source"] == str(roi_file)
    assert (region["n_shapes"], region["n_excluded_shapes"]) == (2, 1)
    um2 = MPP * MPP / 1e6
    outer = (800 * 620 - 200 * 200) * um2
    tri = 0.5 * 900 * 280 * um2
    cut = 200 * 200 * um2  # the Ignore box covers 200 x 200 px of OUTER, none of the triangle
    expected = outer + tri - cut
    assert region["area_mm2"] == pytest.approx(expected, rel=0.02)
    assert region["excluded_area_mm2"] == pytest.approx(cut, rel=0.05)
    assert data["n_scored_tiles"] == data["n_tissue_tiles"]
    assert score_slide(slide, **FAST).to_dict()["region"] is None


def test_cli_score_roi(slide, roi_file, tmp_path, capsys):
    rc = main(["score", str(slide), "--roi", str(roi_file), "--out", str(tmp_path),
               "--tile-size", "64", "--target-mpp", "0.5"])
    assert rc == 0
    report = json.loads((tmp_path / "mosaic.json").read_text())
    fc = json.loads((tmp_path / "mosaic.geojson").read_text())
    assert report["region"]["n_shapes"] == 2
    assert len(fc["features"]) == report["n_scored_tiles"]
    for feat in fc["features"]:  # every exported tile's centre is in the region
        ring = np.asarray(feat["geometry"]["coordinates"][0], float)
        cx, cy = (ring[:, 0].min() + ring[:, 0].max()) / 2, (ring[:, 1].min() + ring[:, 1].max()) / 2
        if ring[:, 0].max() < 1216 and ring[:, 1].max() < 1216:  # edge tiles are clipped
            assert expected_inside(np.array([cx]), np.array([cy]))[0]


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not valid GeoJSON"),
    ('{"type": "Polygon", "coordinates": []}', "expected a GeoJSON Feature"),
    ('{"type": "Feature", "properties": {}}', "no geometry"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 5]]]}}',
     "at least 3"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 0], [5, 5], '
     '[0, 5]]]}}', "not numbers"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 5], '
     '[9, 9]]]}}', "no area"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [50, 0], '
     '[50, 50]]]}, "properties": {"classification": {"name": "Ignore*"}}}', "only Ignore"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": '
     '"Polygon", "coordinates": [[[0, 0], [50, 0], [50, 50]]]}, "properties": {"objectType": '
     '"tile"}}]}', "only tiles"),
    ('{"type": "FeatureCollection", "features": []}', "no polygon"),
])
def test_malformed_geojson_is_a_one_line_error(tmp_path, content, reason):
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(RegionError) as info:
        read_geojson_region(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and reason in message


@pytest.mark.parametrize("coords, reason", [
    (box(5000, 5000, 6000, 6000), "outside the slide"),
    (box(610, 610, 660, 660), "no tile centre"),  # tile centres lie at 32 + 64 k
])
def test_outside_or_empty_region_is_a_cli_error(slide, tmp_path, capsys, coords, reason):
    path = tmp_path / "roi.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon",
                                                                "coordinates": [coords]}}))
    rc = main(["score", str(slide), "--roi", str(path), "--out", str(tmp_path / "out"),
               "--tile-size", "64", "--target-mpp", "0.5"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and reason in err and str(path) in err
    assert not (tmp_path / "out" / "mosaic.json").exists()


# ---------------------------------------------------------------------- napari shapes
def test_napari_shapes_with_ellipse_and_ignore(whole):
    # napari vertices are (y, x); the ellipse is given by its bounding box corners
    rect = np.array([[100, 100], [100, 600], [500, 600], [500, 100]], float)
    ellipse = np.array([[600, 700], [600, 1100], [1000, 1100], [1000, 700]], float)
    ignore = np.array([[0, 0], [0, 300], [300, 300], [300, 0]], float)
    line = np.array([[0, 0], [900, 900]], float)
    region = region_from_shapes([rect, ellipse, ignore, line],
                                ["rectangle", "ellipse", "rectangle", "line"],
                                [None, "tumour", "IGNORE", None], source="shapes")
    mask = region.tile_mask(whole)
    rows, cols = np.indices(whole.shape).reshape(2, -1)
    x, y = centres_xy(whole, rows, cols)
    in_rect = (x > 100) & (x < 600) & (y > 100) & (y < 500)
    in_ellipse = ((x - 900) / 200) ** 2 + ((y - 800) / 200) ** 2 < 1
    expected = (in_rect | in_ellipse) & ~((x < 300) & (y < 300))
    # the ellipse is a 64-gon: points within 1% of its radius from the rim may differ
    rim = np.abs(np.hypot((x - 900) / 200, (y - 800) / 200) - 1) < 0.01
    assert (mask.ravel() == expected)[~rim].all()
    assert expected.sum() > 20
    restricted = region.restrict(whole)
    assert not (restricted.tissue & ~mask).any()
    assert (restricted.tissue == (whole.tissue & mask)).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1100), st.integers(0, 1100), st.integers(1, 600),
                          st.integers(1, 600), st.booleans()), min_size=1, max_size=5))
def test_random_boxes_restrict_to_their_union_minus_exclusions(whole, boxes):
    if all(ex for *_, ex in boxes):
        return
    # corners at half pixels: no tile centre (32 + 64 k) lies on an edge, where "inside" is
    # a matter of convention
    boxes = [(x0 + 0.5, y0 + 0.5, w, h, ex) for x0, y0, w, h, ex in boxes]
    data, labels = [], []
    for x0, y0, w, h, ex in boxes:
        data.append(np.array([[y0, x0], [y0, x0 + w], [y0 + h, x0 + w], [y0 + h, x0]], float))
        labels.append("Exclude" if ex else "Tumour")
    region = region_from_shapes(data, ["rectangle"] * len(data), labels)
    rows, cols = np.indices(whole.shape).reshape(2, -1)
    x, y = centres_xy(whole, rows, cols)
    inc = np.zeros(x.shape, bool)
    exc = np.zeros(x.shape, bool)
    for x0, y0, w, h, ex in boxes:
        hit = in_box(x, y, (x0, y0, x0 + w, y0 + h))
        if ex:
            exc |= hit
        else:
            inc |= hit
    assert (region.tile_mask(whole).ravel() == (inc & ~exc)).all()


def test_geojson_and_shapes_agree():
    fc = qupath_fc()
    a = geojson_region(fc)
    pts = np.random.default_rng(0).uniform(0, 1216, size=(2000, 2))
    assert (a.contains(pts) == expected_inside(pts[:, 0], pts[:, 1])).all()
    assert isinstance(a, Region) and len(a.include) == 2 and len(a.exclude) == 1


# ---------------------------------------------------------------------- batch
def test_batch_slide_uses_its_roi_from_roi_dir_or_beside(slide, roi_file, tmp_path):
    from napari_her2.cohort.batch import score_one
    from napari_her2.tiles.regions import roi_path_for

    assert roi_path_for(slide, roi_file.parent) == roi_file
    assert roi_path_for(slide) is None  # nothing beside the slide: the whole slide
    beside = tmp_path / "a.tif"
    beside.write_bytes(b"")
    (tmp_path / "a.geojson").write_text("{}")
    assert roi_path_for(beside) == tmp_path / "a.geojson"
    with pytest.raises(RegionError, match="no region file for mosaic.tif"):
        roi_path_for(slide, tmp_path / "empty")

    pdict = _params().to_dict()
    row = score_one(str(slide), str(tmp_path / "out"), pdict, roi_dir=str(roi_file.parent))
    assert row["status"] == "ok", row
    report = json.loads(Path(row["report"]).read_text())
    assert report["region"]["source"] == str(roi_file)
    missing = score_one(str(slide), str(tmp_path / "out2"), pdict, roi_dir=str(tmp_path))
    assert missing["status"] == "error" and "no region file" in missing["error"]
