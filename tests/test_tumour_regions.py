"""Tumour cells against the project's own region annotations of the shared images
(tests/data/regions: Tumor, Stroma, Fat and Normal regions of the BCI patches, Tumor and
Stroma regions of four TMA cores in tests/data/regions/tma; drawn by eye, QuPath GeoJSON).

Per region class: the share of the cells found there that are called tumour, and the
precision of the tumour cells (the share of those in annotated regions that lie in Tumor
regions). The goal is a precision of 0.9 and no tumour in stroma; this version reaches 0.97
on the BCI patches and 0.98 on the TMA cores at 0.5 µm/px, with a recall of 0.29 and 0.52 of
the cells in Tumor regions (docs/validation.md). The bounds sit a little below, so that a
change that makes tumour finding worse fails; 5% of the cells of normal ducts are still
counted as tumour (``test_normal_ducts_hold_few_tumour_cells``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import polygon as draw_polygon

from napari_her2.ihc.cells import measure_cells

REGIONS = Path(__file__).parent / "data" / "regions"
#: tile side at 0.5 µm/px, the default scoring resolution (128 µm)
TILE = 256
#: (annotation folder, image folder, image suffix, downsample to 0.5 µm/px, organ): the BCI
#: patches are taken as 0.5 µm/px, the TMA cores as 0.25 (an estimate) read at half size
SETS = {
    "bci": (REGIONS, "her2-ihc-bci", ".png", 1, "breast"),
    "tma": (REGIONS / "tma", "her2-ihc-tma", ".jpg", 2, "gastric"),
}


def _cells_by_region(rgb: np.ndarray, regions: Path, factor: int, organ: str
                     ) -> dict[str, tuple[int, int]]:
    """{region class: (cells inside, tumour cells inside)} for one image, scored as the
    pipeline scores it: tiles at 0.5 µm/px, each with its context, and the stain vectors
    estimated from them."""
    from napari_her2.ihc.cell_scorer import DabCellScorer
    from napari_her2.ihc.deconvolution import stain_matrix
    from napari_her2.run.inference import extend_edges

    features = json.loads(regions.read_text())["features"]
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    rgb = rgb[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean((1, 3))
    masks = {}
    for feature in features:
        name = feature["properties"]["classification"]["name"]
        ring = np.asarray(feature["geometry"]["coordinates"][0], float) / factor
        mask = masks.setdefault(name, np.zeros((h, w), bool))
        rr, cc = draw_polygon(ring[:, 1], ring[:, 0], mask.shape)
        mask[rr, cc] = True
    anywhere = np.logical_or.reduce(list(masks.values()))
    origins = [(y, x) for y in range(0, h - TILE + 1, TILE) for x in range(0, w - TILE + 1, TILE)
               if anywhere[y : y + TILE, x : x + TILE].any()]
    tiles = np.stack([rgb[y : y + TILE, x : x + TILE] for y, x in origins]).round().astype(np.uint8)
    scorer = DabCellScorer().for_organ(organ).for_slide(tiles[:: max(1, len(tiles) // 16)])
    m = scorer.context_px  # each tile with the image around it, as the runner reads it
    padded = np.pad(rgb.round().astype(np.uint8), ((m, m), (m, m), (0, 0)), constant_values=255)
    tiles = np.stack([padded[y : y + TILE + 2 * m, x : x + TILE + 2 * m] for y, x in origins])
    extend_edges(tiles, (h, w), origins, (m, m))
    cells = measure_cells(tiles, scorer.params, stain_matrix(scorer.haematoxylin, scorer.dab),
                          scorer.background, context=m)
    oy, ox = np.asarray(origins).T
    yy = np.clip((oy[cells.tile] + cells.y).astype(int), 0, h - 1)
    xx = np.clip((ox[cells.tile] + cells.x).astype(int), 0, w - 1)
    return {name: (int(mask[yy, xx].sum()), int((mask[yy, xx] & cells.tumour).sum()))
            for name, mask in masks.items()}


def _by_class(shared_data: Path, which: str) -> dict[str, tuple[int, int]]:
    from skimage.io import imread

    folder, images, suffix, factor, organ = SETS[which]
    total: dict[str, tuple[int, int]] = {}
    for regions in sorted(folder.glob("*.geojson")):
        image = shared_data / images / f"{regions.stem}{suffix}"
        if not image.is_file():
            pytest.skip(f"{image} not found")
        found = _cells_by_region(imread(image)[..., :3], regions, factor, organ)
        for name, (n, t) in found.items():
            n0, t0 = total.get(name, (0, 0))
            total[name] = (n0 + n, t0 + t)
    return total


@pytest.fixture(scope="module")
def by_class(shared_data) -> dict[str, tuple[int, int]]:
    return _by_class(shared_data, "bci")


@pytest.fixture(scope="module")
def tma_by_class(shared_data) -> dict[str, tuple[int, int]]:
    return _by_class(shared_data, "tma")


@pytest.mark.parametrize(("which", "n_files", "classes"), [
    ("bci", 4, {"Tumor", "Stroma", "Fat", "Normal"}), ("tma", 4, {"Tumor", "Stroma"})])
def test_the_annotations_are_qupath_geojson(which, n_files, classes):
    from napari_her2.export import validate_qupath_geojson

    files = sorted(SETS[which][0].glob("*.geojson"))
    assert len(files) == n_files
    names = set()
    for path in files:
        fc = json.loads(path.read_text())
        assert validate_qupath_geojson(fc) == [], path.name
        names |= {f["properties"]["classification"]["name"] for f in fc["features"]}
    assert names == classes


def test_no_tumour_cells_in_fat(by_class):
    n, t = by_class["Fat"]
    assert n > 0 and t / n <= 0.05


def test_tumour_cells_lie_mostly_in_tumour_regions(by_class):
    n_tumour_in_tumor = by_class["Tumor"][1]
    n_tumour = sum(t for _, t in by_class.values())
    assert n_tumour_in_tumor / n_tumour >= 0.95, by_class  # precision (the goal: 0.9)
    assert by_class["Tumor"][1] / by_class["Tumor"][0] >= 0.3, by_class  # recall in carcinoma
    assert by_class["Stroma"][1] / by_class["Stroma"][0] <= 0.05, by_class


def test_normal_ducts_hold_few_tumour_cells(by_class):
    """00249's ducts with a strongly stained lining: a dark spot in their brown band is not
    a nucleus, and a pale bay in their stained secretion is not a cell interior (16 of 200
    cells are tumour with each tile read in its context, 10 of 221 in bare tiles, whose edges
    cut some duct cells off from their neighbours; 42 of 229 with interiors closed by a
    square, 88 of 290 without the nucleus rule as well). Ducts are not tumour: the goal is
    none; the pipeline's own tiles give 19 of 199."""
    n, t = by_class["Normal"]
    assert n > 0 and t / n <= 0.10, by_class


def test_tumour_cells_lie_mostly_in_tumour_regions_of_the_tma_cores(tma_by_class):
    """The same on the oesophageal cores (tests/data/regions/tma): carcinoma glands against
    fibrous and cellular stroma."""
    (n_tumor, t_tumor), (n_stroma, t_stroma) = tma_by_class["Tumor"], tma_by_class["Stroma"]
    assert t_tumor / (t_tumor + t_stroma) >= 0.95, tma_by_class
    assert t_tumor / n_tumor >= 0.55, tma_by_class  # recall of cells in carcinoma regions
    assert t_stroma / n_stroma <= 0.05, tma_by_class


def _region_crops(shared_data: Path, classes: set[str], which: str = "bci",
                  min_side: int = 200):
    """(name, RGB crop) of the bounding box of every annotated region of ``classes`` (level-0
    pixels of the set's images)."""
    from skimage.io import imread

    folder, images, suffix, _, _ = SETS[which]
    for regions in sorted(folder.glob("*.geojson")):
        image = shared_data / images / f"{regions.stem}{suffix}"
        if not image.is_file():
            pytest.skip(f"{image} not found")
        rgb = imread(image)[..., :3]
        for i, feature in enumerate(json.loads(regions.read_text())["features"]):
            name = feature["properties"]["classification"]["name"]
            ring = np.asarray(feature["geometry"]["coordinates"][0], float)
            (x0, y0), (x1, y1) = np.maximum(ring.min(axis=0), 0).astype(int), ring.max(0).astype(int)
            if name in classes and min(x1 - x0, y1 - y0) >= min_side:
                yield f"{regions.stem[:10]}-{i}-{name}", rgb[y0:y1, x0:x1]


#: fields that get a call they should not yet, and why; the test fails when one of them
#: loses it, so that the entry is removed
CALLED = {
    ("00249_test-2-Stroma", 1.0): (
        "read at 1 µm/px and so upsampled twice, its stromal nuclei measure four times their "
        "area at 0.5 µm/px and 56 of them form clusters (34 when tiles were read without "
        "their context, whose edges broke the clusters up); a call of 0 at 0.67"),
}


@pytest.mark.parametrize("mpp", [0.5, 1.0])
def test_fields_of_stroma_or_fat_get_no_call(shared_data, tmp_path, mpp):
    """A field without carcinoma (the annotated stroma and fat regions, each cut out as an
    image of its own) gets no HER2 call from the default scorer: "no tumour found" (or no
    tissue), never a score. The stain check lets them through: their DAB-positive pixels are
    dark nuclei (haematoxylin), not a foreign chromogen. Read at 1 µm/px too (the BCI patches
    may be about that, docs/validation.md), where their stromal nuclei measure four times the
    area and pass as epithelial: the larger 00249 field got 1+ (86 tumour cells) while pale
    gaps between its stained strands were closed into cell interiors; now its stromal nuclei
    reach 56 tumour cells (``CALLED``)."""
    from skimage.io import imsave

    from napari_her2.run.pipeline import score_slide

    crops = list(_region_crops(shared_data, {"Stroma", "Fat"}))
    assert len(crops) >= 5
    for name, rgb in crops:
        path = tmp_path / f"{name}.png"
        imsave(path, rgb, check_contrast=False)
        data = score_slide(path, mpp=mpp).to_dict()
        if (name, mpp) in CALLED:
            assert data["score"] is not None, (name, "remove it from CALLED")
            continue
        assert data["score"] is None, (name, data["headline"])
        assert data["no_call"] in ("no tumour found", "no tissue found"), (name, data["no_call"])


def test_fields_of_oesophageal_stroma_get_no_call(shared_data, tmp_path):
    """The annotated stroma of the TMA cores (fibrous and cellular, some of it beside
    carcinoma glands), each cut out as a field of its own at 0.25 µm/px: "no tumour found"
    (or no tissue), never a score, with the gastric rules."""
    from skimage.io import imsave

    from napari_her2.run.pipeline import score_slide

    crops = list(_region_crops(shared_data, {"Stroma"}, "tma"))
    assert len(crops) >= 6
    for name, rgb in crops:
        path = tmp_path / f"{name}.png"
        imsave(path, rgb, check_contrast=False)
        report = score_slide(path, mpp=0.25, organ="gastric")
        data = report.to_dict()
        report.slide.close()
        assert data["score"] is None, (name, data["headline"])
        assert data["no_call"] in ("no tumour found", "no tissue found"), (name, data["no_call"])


@pytest.mark.parametrize(("which", "mpp", "organ", "recall"),
                         [("bci", 0.5, "breast", 0.3), ("tma", 0.25, "gastric", 0.55)])
def test_evaluate_gives_the_same_figures_from_the_pipeline(shared_data, tmp_path, which, mpp,
                                                           organ, recall):
    """`napari-her2 evaluate --regions`: the cells of the scored pipeline (its own tiles and
    stain estimate; the TMA cores read at 0.25 µm/px, as `score` reads a ×40 scan) against
    the same annotations (docs/validation.md: precision 0.96 and 0.97, recall 0.32 and
    0.58)."""
    from napari_her2.cohort.evaluate import evaluate_folder

    annotations, images = SETS[which][:2]
    folder = shared_data / images
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    figures = evaluate_folder(folder, tmp_path, mpp=mpp, organ=organ,
                              regions=annotations).regions
    assert figures is not None and figures["images"] == 4, figures
    assert figures["precision"] >= 0.95 and figures["recall"] >= recall, figures
    assert figures["classes"]["Stroma"]["tumour_share"] <= 0.05, figures
    if which == "bci":
        assert figures["classes"]["Normal"]["tumour_share"] <= 0.10, figures
        assert figures["classes"]["Fat"]["n_tumour_cells"] == 0, figures
