"""Cell-level measurement: nuclei split, rings measured, tumour cells by morphology, classes
by the guideline and the magnification rule; tiles summarised from their cells.

Synthetic tiles are rendered here from haematoxylin and DAB optical densities with the default
stain vectors (0.5 µm/px); the real images come from ``../shared/data`` and skip without it.

The BCI patches are read at 0.5 µm/px (as they are described) and at 1.0 µm/px (what their
nuclei say: stromal lymphocyte nuclei there are 6-7 px across and carcinoma nuclei 10-12 px;
a lymphocyte nucleus is 5-7 µm and a carcinoma nucleus 8-12 µm, and the oesophageal TMA cores
at about 0.25 µm/px show the same nuclei at 30-40 px; at 0.5 µm/px the lymphocytes would be
3 µm across). The assertions hold at both.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from napari_her2.ihc.cells import (
    CELL_CLASSES,
    CellBatch,
    CellParams,
    cell_counts,
    class_fractions,
    measure_cells,
    tile_classes,
)
from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.ihc.nuclei import NucleusParams
from napari_her2.ihc.scorer import DabMembraneScorer

MPP = 0.5
BCI_MPPS = (0.5, 1.0)  # the stated resolution and the one their nuclei give (module docstring)
TMA_MPP = 0.25  # the shared data README's estimate
MATRIX = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
PARAMS = CellParams(mpp=MPP)


def render(h: np.ndarray, d: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB of haematoxylin and DAB OD planes on a faint counterstain."""
    d = np.zeros_like(h) if d is None else d
    od = h[..., None] * MATRIX[0] + d[..., None] * MATRIX[1] + 0.02 * MATRIX[0]
    return np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8)


def microns(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:n, :n] * MPP
    return yy, xx


def lattice(period_um: float, radius_um: float, od: float = 0.4, *, elongate: float = 1.0,
            n: int = 256) -> np.ndarray:
    """Haematoxylin OD of nuclei on a square lattice (ellipses ``elongate`` times as long in
    x as in y), centred in each lattice cell."""
    yy, xx = microns(n)
    dy = yy % period_um - period_um / 2
    dx = xx % period_um - period_um / 2
    return np.where((dx / radius_um) ** 2 + (dy * elongate / radius_um) ** 2 < 1, od, 0.0)


def membranes(period_um: float, od: float, width_um: float, *, sides: str = "all",
              n: int = 256) -> np.ndarray:
    """DAB OD of membranes on the lattice lines (the borders between the lattice's cells):
    all of them (chicken wire) or only the horizontal ones (two opposite sides of a cell)."""
    yy, xx = microns(n)
    lines = yy % period_um < width_um
    if sides == "all":
        lines |= xx % period_um < width_um
    return np.where(lines, od, 0.0)


def measure(tile: np.ndarray, params: CellParams = PARAMS) -> CellBatch:
    return measure_cells(tile[None], params, MATRIX)


def classes_of_tumour(cells: CellBatch) -> np.ndarray:
    return np.bincount(cells.her2_class[cells.tumour], minlength=4)


def away_from_edge(cells: CellBatch, size: int = 256, margin_um: float = 12.0) -> CellBatch:
    """The cells whose centre is at least a lattice cell from the tile's edge (a cell cut by
    the edge, or whose membrane is the edge itself, is judged on what the tile shows)."""
    m = margin_um / MPP
    keep = (cells.y >= m) & (cells.x >= m) & (cells.y < size - m) & (cells.x < size - m)
    return cells.select(keep)


# --------------------------------------------------------------------------- synthetic cells


def test_touching_nuclei_are_split():
    """Three pairs of 8 µm nuclei overlapping by 1.5 µm (four connected objects, seven
    nuclei): the distance-transform watershed finds seven."""
    yy, xx = microns(128)
    h = np.zeros((128, 128))
    centres = [(12, 10), (12, 16.5), (32, 12), (32, 18.5), (52, 10), (52, 16.5), (32, 48)]
    for cy, cx in centres:
        h[(yy - cy) ** 2 + (xx - cx) ** 2 < 4.0**2] = 0.4
    assert ndi.label(h > 0)[1] == 4
    cells = measure(render(h))
    assert len(cells) == len(centres)
    found = sorted(zip(np.round(cells.y * MPP), np.round(cells.x * MPP)))
    for (y, x), (cy, cx) in zip(found, sorted(centres)):
        assert abs(y - cy) <= 1.5 and abs(x - cx) <= 1.5


def test_intense_complete_chicken_wire_is_3plus_and_seen_at_low_power():
    """Plump nuclei in a sheet, every cell border an intense 1.5 µm membrane: complete,
    visible at 2 µm/px (x5), class 3+."""
    tile = render(lattice(12, 3.5), membranes(12, 0.8, 1.5))
    cells = measure(tile)
    assert cells.tumour.mean() >= 0.9 and len(cells) > 50
    tumour = away_from_edge(cells.select(cells.tumour))
    assert np.all(tumour.complete)
    assert np.all(tumour.visibility == 3)
    assert np.all(tumour.contrast[:, 2] >= PARAMS.visible_od)  # at the x5 view
    assert np.all(tumour.her2_class == 3)
    assert tile_classes(cell_counts(cells, 1))[0] == CELL_CLASSES.index("3+")


def test_moderate_complete_membranes_are_2plus():
    """The same sheet with moderate 1 µm membranes: seen at ×10, lost at ×5, class 2+."""
    cells = measure(render(lattice(12, 3.5), membranes(12, 0.4, 1.0)))
    tumour = away_from_edge(cells.select(cells.tumour))
    assert len(tumour) > 50
    assert np.all(tumour.visibility == 2)
    assert np.all(tumour.contrast[:, 2] < PARAMS.visible_od)  # lost at the x5 view
    assert np.all(tumour.her2_class == 2)


@pytest.mark.parametrize("organ", ["breast", "gastric"])
def test_faint_incomplete_rings_are_1plus(organ):
    """Faint 1 µm membranes on two opposite sides of each cell (incomplete, no arc of half
    the ring): visible at full resolution only, class 1+ in both guidelines."""
    tile = render(lattice(12, 3.5), membranes(12, 0.12, 1.0, sides="horizontal"))
    cells = measure(tile, CellParams(mpp=MPP, organ=organ))
    assert cells.tumour.mean() >= 0.9
    tumour = away_from_edge(cells.select(cells.tumour))
    assert len(tumour) > 50
    assert not tumour.complete.any()
    assert np.all(tumour.visibility == 1)
    assert np.all(tumour.contrast[:, 1] < PARAMS.visible_od)  # gone at the x10 view
    assert np.all(tumour.her2_class == 1)


def test_unstained_carcinoma_clusters_are_tumour_cells_of_class_0():
    """HER2 0: no DAB at all. Plump packed nuclei are tumour cells, every one class 0."""
    cells = measure(render(lattice(14, 4.5)))
    assert cells.tumour.mean() >= 0.8
    assert np.all(cells.her2_class[cells.tumour] == 0)
    assert np.all(cells.her2_class[~cells.tumour] == -1)
    counts = cell_counts(cells, 1)
    assert tile_classes(counts)[0] == 0 and counts[0, 0] == cells.tumour.sum()


@pytest.mark.parametrize(
    "h",
    [
        lattice(40, 6.0, elongate=5),  # spindle (fibroblast / smooth muscle) nuclei
        lattice(9, 1.5),  # a sheet of small 3 µm nuclei
        lattice(30, 2.5, od=0.8),  # small dense round nuclei, scattered (lymphocytes)
        lattice(60, 4.5),  # plump nuclei, but single cells 60 µm apart
        np.zeros((256, 256)),  # fat: no nuclei
    ],
    ids=["spindle", "small-sheet", "small-scattered", "scattered-plump", "no-nuclei"],
)
def test_non_tumour_cells_are_not_tumour(h):
    cells = measure(render(h))
    assert not cells.tumour.any()
    assert np.all(cells.her2_class == -1)
    assert tile_classes(cell_counts(cells, 1))[0] == 4  # non-tumour


def test_batch_cells_keep_their_tile_and_position():
    sheet = render(lattice(14, 4.5))
    tiles = np.stack([render(np.zeros((256, 256))), sheet, sheet[:, ::-1]])
    cells = measure_cells(tiles, PARAMS, MATRIX)
    alone = measure(sheet)
    assert set(np.unique(cells.tile)) == {1, 2}
    assert np.sum(cells.tile == 1) == len(alone)
    np.testing.assert_allclose(np.sort(cells.y[cells.tile == 1]), np.sort(alone.y), atol=1e-4)
    assert cells.y.max() < 256 and cells.x.max() < 256 and cells.y.min() >= 0


def test_cells_in_context_are_those_of_the_whole_field():
    """A field cut into four tiles, each with 48 px of the field around it, gives the cells the
    whole field gives inside each tile: the same centres and classes, a cell at a tile's edge
    whole and with its neighbours across the edge (read alone, the tiles' corner cells lack the
    neighbours that make them tumour cells)."""
    field = render(lattice(14, 4.5, n=512), membranes(14, 0.5, 1.5, n=512))
    whole = measure(field)
    m = 48
    padded = np.pad(field, ((m, m), (m, m), (0, 0)), constant_values=255)
    tiles = np.stack([padded[y : y + 256 + 2 * m, x : x + 256 + 2 * m]
                      for y in (0, 256) for x in (0, 256)])
    cells = measure_cells(tiles, PARAMS, MATRIX, context=m)
    assert cells.y.min() >= -0.5 and cells.y.max() < 255.5 and cells.x.max() < 255.5
    y = cells.y + 256 * (cells.tile // 2)
    x = cells.x + 256 * (cells.tile % 2)
    assert len(cells) == len(whole)
    dist, match = cKDTree(np.stack([whole.y, whole.x], 1)).query(np.stack([y, x], 1))
    inner = (np.minimum(y, x) > 16) & (np.maximum(y, x) < 512 - 16)  # the field's own edge
    assert dist[inner].max() <= 0.5 and len(np.unique(match)) == len(whole)  # is white here
    np.testing.assert_array_equal(cells.her2_class, whole.her2_class[match])
    bare = measure_cells(np.stack([field[y:y + 256, x:x + 256] for y in (0, 256)
                                   for x in (0, 256)]), PARAMS, MATRIX)
    assert bare.tumour.sum() < whole.tumour.sum()  # cells at the corners lose neighbours
    with pytest.raises(ValueError, match="context"):
        measure_cells(tiles, PARAMS, MATRIX, context=200)


def test_tiles_at_other_resolutions_scale_in_microns():
    """The same tissue read at 0.25 µm/px (twice the pixels) gives the same cells."""
    fine = render(np.kron(lattice(14, 4.5), np.ones((2, 2))))
    coarse = measure(render(lattice(14, 4.5)))
    cells = measure_cells(fine[None], CellParams(mpp=0.25), MATRIX)
    assert abs(len(cells) - len(coarse)) <= 0.1 * len(coarse)
    assert abs(cells.tumour.sum() - coarse.tumour.sum()) <= 0.1 * coarse.tumour.sum()
    assert np.median(cells.nucleus_area_um2) == pytest.approx(
        np.median(coarse.nucleus_area_um2), rel=0.2)


def test_empty_and_blank_batches():
    assert len(measure_cells(np.zeros((0, 64, 64, 3), np.uint8), PARAMS)) == 0
    blank = measure_cells(np.full((2, 64, 64, 3), 255, np.uint8), PARAMS)
    assert len(blank) == 0 and blank.contrast.shape == (0, 3)
    assert cell_counts(blank, 2).tolist() == [[0] * 5] * 2
    with pytest.raises(ValueError, match="N, H, W, 3"):
        measure_cells(np.zeros((64, 64, 3), np.uint8), PARAMS)


def test_params_are_checked():
    with pytest.raises(ValueError):
        CellParams(organ="lung")
    with pytest.raises(ValueError):
        CellParams(expansion_um=0)
    with pytest.raises(ValueError):
        CellParams(view_um=(2.0, 1.0))
    with pytest.raises(ValueError):
        CellParams(complete_fraction=1.5)
    with pytest.raises(ValueError):
        NucleusParams(max_aspect=0.5)
    assert '"expansion_um": 5.0' in CellParams().to_json()


# --------------------------------------------------------------------------- summaries


def _batch(tile: list[int], cls: list[int]) -> CellBatch:
    empty = CellBatch.empty()
    n = len(tile)
    arrays = {name: np.zeros(n, getattr(empty, name).dtype) for name in
              ("y", "x", "epithelial", "neighbours", "ring_od_mean", "ring_od_max",
               "completeness", "longest_arc", "complete", "visibility", "cytoplasm_od",
               "nucleus_area_um2", "nucleus_od", "eccentricity", "fill", "unstained_nucleus")}
    c = np.array(cls, np.int8)
    return CellBatch(tile=np.array(tile, np.int32), her2_class=c, class_paler=c,
                     class_darker=c, tumour=c >= 0, contrast=np.zeros((n, 3), np.float32),
                     **arrays)


def test_counts_tile_classes_and_fractions():
    # tile 0: 20 tumour cells, 3 of them 3+ (15%) -> 3+
    # tile 1: 20 tumour cells, 1 3+ and 2 2+ (15% at least 2+) -> 2+ (cumulative rule)
    # tile 2: 20 tumour cells, 2 1+ (10%: not more than 10%) -> 0; plus 4 non-tumour cells
    # tile 3: only non-tumour cells -> non-tumour; tile 4: no cells -> non-tumour
    tile = [0] * 20 + [1] * 20 + [2] * 24 + [3] * 3
    cls = ([3] * 3 + [0] * 17) + ([3] + [2] * 2 + [0] * 17) + ([1] * 2 + [0] * 18 + [-1] * 4)
    cls += [-1] * 3
    counts = cell_counts(_batch(tile, cls), 5)
    assert counts.tolist() == [[17, 0, 0, 3, 0], [17, 0, 2, 1, 0], [18, 2, 0, 0, 4],
                               [0, 0, 0, 0, 3], [0, 0, 0, 0, 0]]
    assert tile_classes(counts).tolist() == [3, 2, 0, 4, 4]
    np.testing.assert_allclose(class_fractions(counts), [52 / 60, 2 / 60, 2 / 60, 4 / 60])
    assert class_fractions(counts[3:]).tolist() == [0, 0, 0, 0]


# --------------------------------------------------------------------------- real images


def _tiles(image: np.ndarray, size: int) -> np.ndarray:
    ny, nx = image.shape[0] // size, image.shape[1] // size
    cut = image[: ny * size, : nx * size]
    return cut.reshape(ny, size, nx, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)


def _real_cells(path, mpp: float, organ: str = "breast", crop=np.s_[:, :]
                ) -> tuple[CellBatch, np.ndarray]:
    """Cells of an image cut into 256 px tiles, with the scorer's stain vectors and
    background for it."""
    from skimage.io import imread

    tiles = _tiles(imread(path)[crop][..., :3], 256)
    scorer = DabMembraneScorer().at_mpp(mpp).for_slide(tiles)
    matrix = stain_matrix(scorer.params.haematoxylin, scorer.params.dab)
    cells = measure_cells(tiles, CellParams(mpp=mpp, organ=organ), matrix,
                          scorer.params.background)
    return cells, cell_counts(cells, len(tiles))


@pytest.mark.parametrize("mpp", BCI_MPPS)
def test_real_3plus_carcinoma_has_over_10_percent_3plus_tumour_cells(shared_data, mpp):
    """BCI 00052 (slide 3+): invasive carcinoma with intense complete chicken-wire membranes."""
    cells, counts = _real_cells(shared_data / "her2-ihc-bci" / "00052_test_3+.png", mpp)
    assert counts[:, :4].sum() >= 500
    fractions = class_fractions(counts)
    assert fractions[3] > 0.10, fractions
    assert fractions[2] + fractions[3] > 0.5, fractions  # most tumour cells stain strongly


@pytest.mark.parametrize("mpp", BCI_MPPS)
def test_real_field_without_carcinoma_has_almost_no_tumour_cells(shared_data, mpp):
    """BCI 00004 (fat and fibrous stroma, no carcinoma). Tumour cells come in clusters of at
    least ``cluster_min + 1`` (5), with the cells inside them; the field may hold a spurious
    cluster or two (grey debris in the fat): fewer than five five-cell clusters' worth per
    mm² (taken as 1 µm/px, one spurious cluster and its inner cells make 15), where the
    carcinoma of 00052 gives about 3000 tumour cells per mm² (over 100 times more)."""
    cells, counts = _real_cells(shared_data / "her2-ihc-bci" / "00004_test_0.png", mpp)
    area_mm2 = counts.shape[0] * (256 * mpp / 1000) ** 2
    cluster = CellParams().nucleus.cluster_min + 1
    assert counts[:, :4].sum() / area_mm2 < 5 * cluster, counts[:, :4].sum()
    assert len(cells) > 50  # stromal and adipocyte nuclei are found, as non-tumour cells


def test_real_normal_ducts_call_says_its_tumour_cells_are_outlined_by_dab(shared_data):
    """BCI 00249: stained normal ducts, called 3+ from their lumens and secretion vacuoles
    (unstained interiors closed by DAB, cell-sized at 0.5 µm/px; docs/validation.md). The
    call is wrong, and the report must at least say what it rests on: most of its tumour
    cells have no haematoxylin nucleus, only a DAB outline."""
    from napari_her2 import score_slide
    from napari_her2.export.report_page import report_lines

    report = score_slide(shared_data / "her2-ihc-bci" / "00249_test_2+.png", mpp=0.5)
    summary = report.results.cells.summary()
    assert summary["n_tumour_outlined"] > summary["n_tumour_cells"] / 2
    assert any(ln.startswith("Tumour cells ") and "outlined by DAB only" in ln
               for ln in report_lines(report))
    assert report.to_dict()["cells"]["n_tumour_outlined"] == summary["n_tumour_outlined"]
    report.slide.close()


def test_real_her2_0_core_has_at_most_10_percent_stained_tumour_cells(shared_data):
    """Oesophageal adenocarcinoma core scored 0 by pathologists (gastric rules, 0.25 µm/px):
    carcinoma found as tumour cells, and not more than 10% of them with any staining."""
    path = shared_data / "her2-ihc-tma" / "0_a6d0d6a6-4dc6-4368-9d69-8ded066cf60e.jpg"
    _, counts = _real_cells(path, TMA_MPP, "gastric", np.s_[1700:3748, 1700:3748])
    assert counts[:, :4].sum() >= 100
    assert class_fractions(counts)[1:].sum() <= 0.10, class_fractions(counts)


def test_real_strong_2plus_core_has_under_10_percent_3plus_tumour_cells(shared_data):
    """Oesophageal adenocarcinoma core scored 2+ by pathologists: glands with well stained
    membranes, most of them moderate. The ×5 view (2 µm/px) sees fewer than 10% of its tumour
    cells' membranes (8% of the whole core's); before cell interiors had to be bounded across
    two directions, 12% were seen there and the core was called 3+."""
    path = shared_data / "her2-ihc-tma" / "2_0123a214-85b7-4804-86db-474b05a4ae57.jpg"
    _, counts = _real_cells(path, TMA_MPP, "gastric", np.s_[1200:4272, 1200:4272])
    fractions = class_fractions(counts)
    assert counts[:, :4].sum() >= 1000
    assert fractions[2] + fractions[3] > 0.3, fractions  # well stained ...
    assert fractions[3] <= 0.10, fractions  # ... but not intense in more than a tenth


def test_each_cell_is_also_read_with_the_stains_weaker_and_stronger():
    """Membranes of 0.11 OD, just over the 0.1 a viewer needs: faint (1+) as measured, none
    (0) when the stains are recorded 15% weaker, still 1+ when stronger; the cells themselves
    are the same. Without a spread the three readings agree."""
    tile = render(lattice(12, 3.5), membranes(12, 0.11, 1.0, sides="horizontal"))
    cells = away_from_edge(measure(tile))
    tumour = cells.select(cells.tumour)
    assert len(tumour) > 50 and np.all(tumour.her2_class == 1)
    assert np.all(tumour.class_paler == 0) and np.all(tumour.class_darker == 1)
    assert np.all(cells.class_paler[~cells.tumour] == -1)
    same = measure(tile, CellParams(mpp=MPP, stain_spread=0.0))
    np.testing.assert_array_equal(same.class_paler, same.her2_class)
    np.testing.assert_array_equal(same.class_darker, same.her2_class)
    strong = away_from_edge(measure(render(lattice(12, 3.5), membranes(12, 0.8, 1.5))))
    assert np.all(strong.class_paler[strong.tumour] == 3)  # an intense 3+ stays 3+
