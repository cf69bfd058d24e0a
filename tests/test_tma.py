"""TMA dearraying and core-by-core scoring.

The grid fit is checked on rotated point grids with missing positions (always runs). The
end-to-end tests build a synthetic TMA from the real oesophageal cores in
``shared/data/her2-ihc-tma`` (downscaled 6x, so 1.5 µm/px given the source's estimated
0.25 µm/px), placed on a grid rotated by 4° with two empty positions, and check the ids, the
positions, and that each core scores as the same core alone on its own slide."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_her2.cli import main
from napari_her2.export import validate_qupath_geojson
from napari_her2.export.tma import write_tma_outputs
from napari_her2.params import ScoringParams
from napari_her2.run.pipeline import score_slide
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tma import core_id, parse_grid, score_tma
from napari_her2.tma.dearray import fit_grid

DOWNSCALE = 6
MPP = 0.25 * DOWNSCALE  # the source's estimate (0.25 µm/px), downscaled
PITCH = 1100
ANGLE_DEG = 4.0
SHAPE = (3, 3)
EMPTY = {"B2", "C1"}
GLASS = (234, 234, 241)  # the cores' own background colour
SNAP = 64  # core positions on multiples of the tile size: the same tiles as the core alone
PARAMS = ScoringParams().with_overrides(tile_size=64, target_mpp=MPP, organ="gastric")


# ---------------------------------------------------------------------- grid fit, always
def rotated_grid(rows, cols, angle_deg, pitch, jitter, drop, seed=0):
    rng = np.random.default_rng(seed)
    a = math.radians(angle_deg)
    pts, ids = [], []
    for r in range(rows):
        for c in range(cols):
            if (r, c) in drop:
                continue
            ux, uy = 500 + c * pitch, 700 + r * pitch
            x, y = math.cos(a) * ux - math.sin(a) * uy, math.sin(a) * ux + math.cos(a) * uy
            pts.append((x + rng.normal(0, jitter), y + rng.normal(0, jitter)))
            ids.append((r, c))
    return np.array(pts), ids


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rows=st.integers(2, 8), cols=st.integers(2, 10), angle=st.floats(-8, 8),
       pitch=st.floats(200, 3000), seed=st.integers(0, 1000))
def test_fit_grid_finds_rows_and_columns_of_rotated_grids(rows, cols, angle, pitch, seed):
    rng = np.random.default_rng(seed)
    # drop up to two interior positions (the outer ring keeps the grid's extent)
    interior = [(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)]
    drop = {interior[i] for i in rng.choice(len(interior), min(2, len(interior)), replace=False)} \
        if interior else set()
    pts, ids = rotated_grid(rows, cols, angle, pitch, 0.02 * pitch, drop, seed)
    fit = fit_grid(pts)
    assert list(zip(fit.rows.tolist(), fit.cols.tolist())) == ids
    # 2% jitter (sd) on the centres: one neighbour vector's angle then has an sd of about
    # 1.6°, so a 2 x 2 grid (two vectors per direction) can be off by up to ~5° (3 sd);
    # larger grids average many vectors
    small = rows * cols <= 4
    assert math.degrees(fit.angle) == pytest.approx(angle, abs=5.0 if small else 2.5)
    # a pitch from one difference of two jittered centres has an sd of about 2.8%
    assert fit.pitch == pytest.approx((pitch, pitch), rel=0.1 if small else 0.06)
    for (r, c), p in zip(ids, pts):  # the fitted positions lie on the centres
        assert math.dist(fit.position(r, c), p) < 0.1 * pitch


def test_ids_and_grid_option():
    assert [core_id(0, 0), core_id(1, 2), core_id(25, 0), core_id(26, 9)] == \
        ["A1", "B3", "Z1", "AA10"]
    assert parse_grid("6x8") == (6, 8) and parse_grid("2X3") == (2, 3)
    for bad in ("6", "x8", "0x3", "ax2"):
        with pytest.raises(ValueError, match="ROWSxCOLS|at least 1"):
            parse_grid(bad)


# ---------------------------------------------------------------------- synthetic TMA
def _cores(shared_data: Path) -> list[np.ndarray]:
    """The real cores, 6x smaller: JPEG-decoded at half size, then 3 x 3 block means."""
    from PIL import Image

    out = []
    for f in sorted((shared_data / "her2-ihc-tma").glob("*.jpg")):
        with Image.open(f) as im:
            im.draft("RGB", (im.width // 2, im.height // 2))
            half = np.asarray(im.convert("RGB"))
        n = min(half.shape[:2]) // 3
        blocks = half[: 3 * n, : 3 * n].reshape(n, 3, n, 3, 3)
        out.append((blocks.sum(axis=(1, 3), dtype=np.uint16) // 9).astype(np.uint8))
    return out


def _snap(v: float) -> int:
    return int(round(v / SNAP)) * SNAP


@pytest.fixture(scope="module")
def tma(shared_data, tmp_path_factory):
    """(slide path, {id: (x, y) true centre}, {id: alone-slide path})."""
    cores = _cores(shared_data)
    size = cores[0].shape[0]
    folder = tmp_path_factory.mktemp("tma")
    canvas = np.empty((4096, 4096, 3), np.uint8)
    canvas[:] = GLASS
    a = math.radians(ANGLE_DEG)
    truth, alone = {}, {}
    it = iter(cores)
    for r in range(SHAPE[0]):
        for c in range(SHAPE[1]):
            cid = core_id(r, c)
            if cid in EMPTY:
                continue
            core = next(it)
            ux, uy = (c - 1) * PITCH, (r - 1) * PITCH
            cx = 2048 + math.cos(a) * ux - math.sin(a) * uy
            cy = 2048 + math.sin(a) * ux + math.cos(a) * uy
            x0, y0 = _snap(cx - size / 2), _snap(cy - size / 2)
            canvas[y0 : y0 + size, x0 : x0 + size] = core
            truth[cid] = (x0 + size / 2, y0 + size / 2)
            own = np.empty((size + 4 * SNAP, size + 4 * SNAP, 3), np.uint8)
            own[:] = GLASS
            own[2 * SNAP : 2 * SNAP + size, 2 * SNAP : 2 * SNAP + size] = core
            alone[cid] = write_pyramid_tiff(folder / f"{cid}.tif", own, MPP, compression="zlib")
    path = write_pyramid_tiff(folder / "tma.tif", canvas, MPP, compression="zlib")
    return path, truth, alone


@pytest.fixture(scope="module")
def report(tma):
    return score_tma(tma[0], params=PARAMS)


def test_dearrayed_into_the_right_ids_and_positions(report, tma):
    _, truth, _ = tma
    grid = report.tma
    assert grid.shape == SHAPE
    assert [c.id for c in grid.cores] == ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]
    assert {c.id for c in grid.cores if c.missing} == EMPTY
    assert grid.angle_deg == pytest.approx(ANGLE_DEG, abs=1.0)
    for core in grid.present:
        assert math.dist(core.centre, truth[core.id]) < 0.08 * PITCH, core.id
        assert 0.6 * 911 < core.diameter < 1.5 * 911
    for cid in EMPTY:  # a missing core is placed where its position lies on the grid
        r, c = ord(cid[0]) - ord("A"), int(cid[1:]) - 1
        a = math.radians(ANGLE_DEG)
        ux, uy = (c - 1) * PITCH, (r - 1) * PITCH
        expected = (2048 + math.cos(a) * ux - math.sin(a) * uy,
                    2048 + math.sin(a) * ux + math.cos(a) * uy)
        assert math.dist(grid.core(cid).centre, expected) < 0.1 * PITCH


def test_each_core_scores_as_that_core_alone(report, tma):
    _, _, alone = tma
    scored = 0
    for s in report.scores:
        if s.core.missing:
            assert s.call.score is None and s.results is None
            continue
        own = score_slide(alone[s.core.id], params=PARAMS)
        assert s.call.score == own.call.score, (s.core.id, s.call.headline(), own.call.headline())
        assert s.call.no_call == own.call.no_call
        scored += s.call.score is not None
        # the core's outline leaves out the glass corners of its square image, so the tile
        # counts differ; the tumour tiles' class fractions (what the score rests on) agree
        for k, v in own.call.evidence.class_fractions.items():
            assert s.call.evidence.class_fractions.get(k, 0.0) == pytest.approx(v, abs=0.1)
    assert scored >= 5


def test_outputs_csv_and_qupath_geojson(report, tmp_path):
    written = write_tma_outputs(report, tmp_path)
    assert written["csv"].name == "tma_cores.csv"
    rows = list(csv.DictReader(written["csv"].open()))
    assert [r["core"] for r in rows][:3] == ["A1", "A2", "A3"] and len(rows) == 9
    b2 = next(r for r in rows if r["core"] == "B2")
    assert b2["missing"] == "True" and b2["score"] == "" and b2["no_call_reason"]
    for r, s in zip(rows, report.scores, strict=True):
        assert r["borderline"] == (" / ".join(s.call.borderline) if s.call.borderline else "")
    a1 = next(r for r in rows if r["core"] == "A1")
    assert float(a1["diameter_um"]) == pytest.approx(911 * MPP, rel=0.4)
    for r, s in zip(rows, report.scores, strict=True):  # each core's own tumour cells
        cells = None if s.results is None else s.results.cells
        if cells is None:
            assert r["n_tumour_cells"] == "" and r["tumour_pct_3+"] == ""
            continue
        assert int(r["n_tumour_cells"]) == int(cells.tumour.sum())
        for k, v in cells.tumour_percentages().items():
            assert float(r[f"tumour_pct_{k}"]) == pytest.approx(v, abs=0.01)
    assert any(r["n_tumour_cells"] not in ("", "0") for r in rows)
    assert 0.3 < float(a1["tissue_fraction"]) <= 1.0
    fc = json.loads(written["geojson"].read_text())
    assert validate_qupath_geojson(fc) == []
    names = [f["properties"]["name"] for f in fc["features"]]
    assert names == [r["core"] for r in rows]
    scores = {r["core"]: r["score"] for r in rows}
    for f in fc["features"]:
        cls = f["properties"]["classification"]["name"]
        s = scores[f["properties"]["name"]]
        assert cls == (f"HER2 {s}" if s else ("Missing core" if f["properties"]["name"] in EMPTY
                                               else "No call"))


def test_cli_tma(tma, tmp_path, capsys):
    path = tma[0]
    rc = main(["tma", str(path), "--grid", "3x3", "--out", str(tmp_path), "--tile-size", "64",
               "--target-mpp", str(MPP), "--organ", "gastric"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "tma_cores.csv").exists() and (tmp_path / "tma_cores.geojson").exists()
    assert "A1" in out and "7 cores" in out
    rc = main(["tma", str(path), "--grid", "2x2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "3 x 3" in err and "tma.tif" in err
    with pytest.raises(SystemExit) as usage:  # argparse: a usage error
        main(["tma", str(path), "--grid", "three", "--out", str(tmp_path / "x")])
    assert usage.value.code == 2 and "ROWSxCOLS" in capsys.readouterr().err
