"""open_slide on the shared real files, against openslide (and tifffile) as the reference.

Skipped with a reason when ../shared/data is absent. Pixel tolerance: max abs difference <= 2
per channel value. Today both readers decode with libjpeg-turbo and agree exactly; the
tolerance only absorbs rounding differences between JPEG decoders.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from napari_her2 import SlideReadError, open_slide
from napari_her2.slide import MissingMppWarning, Slide

openslide = pytest.importorskip("openslide", reason="openslide-python is the reference reader")

PIXEL_TOL = 2


@dataclass(frozen=True)
class RealCase:
    """One shared slide and what we know about it independently of our reader."""

    name: str
    vendor: str
    mpp: float | None  # level-0 µm/px we must report (None: must be treated as missing)
    magnification: float | None
    associated: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.name


CASES = [
    RealCase("cmu-1-small-region.svs", "aperio", 0.499, 20.0,
             frozenset({"label", "macro", "thumbnail"})),
    RealCase("test3-DAPI-2-387.ndpi", "hamamatsu", 0.2281750559, 40.0, frozenset({"macro"})),
    RealCase("cmu-1-small-region-dicom", "dicom", 0.499, None,
             frozenset({"label", "macro", "thumbnail"})),
    RealCase("small.svs", "aperio", 0.499, 20.0, frozenset({"thumbnail"})),
    # 72 dpi resolution tags: openslide reports 352.8 µm/px, we must refuse it
    RealCase("boxes.tiff", "generic-tiff", None, None),
]


def openslide_path(path: Path) -> Path:
    """openslide opens one file of a DICOM folder: the VOLUME one, the biggest."""
    if path.is_dir():
        return max(path.glob("*.dcm"), key=lambda f: f.stat().st_size)
    return path


def open_quiet(path, **kw) -> Slide:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        return open_slide(path, **kw)


def openslide_rgb(region) -> np.ndarray:
    """openslide's RGBA PIL image as RGB on white (the slides here are fully opaque)."""
    rgba = np.asarray(region)
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request, shared_slides):
    path = shared_slides / request.param.name
    if not path.exists():
        pytest.skip(f"{path} is not in the shared data")
    return request.param, path


@pytest.fixture
def pair(case):
    """(case, our slide, openslide's slide)."""
    info, path = case
    ours = open_quiet(path)
    ref = openslide.OpenSlide(str(openslide_path(path)))
    yield info, ours, ref
    ref.close()
    ours.close()


def common_levels(ours: Slide, ref) -> list[tuple[int, int]]:
    """(our level, openslide level) pairs of the same size: openslide lists NDPI levels we
    do not have, and we build lazy levels openslide does not have."""
    ref_dims = {(h, w): i for i, (w, h) in enumerate(ref.level_dimensions)}
    return [(i, ref_dims[lvl.shape[:2]]) for i, lvl in enumerate(ours.levels)
            if lvl.shape[:2] in ref_dims]


def test_metadata(pair):
    info, ours, ref = pair
    assert ours.vendor == info.vendor
    assert ours.magnification == info.magnification
    if info.mpp is None:
        assert ours.mpp is None
        assert float(ref.properties["openslide.mpp-x"]) > 50  # openslide keeps the 72 dpi
    else:
        assert ours.mpp.x == pytest.approx(info.mpp, rel=1e-6)
        assert ours.mpp.x == pytest.approx(float(ref.properties["openslide.mpp-x"]), rel=1e-6)
        assert ours.mpp.y == pytest.approx(float(ref.properties["openslide.mpp-y"]), rel=1e-6)
    power = ref.properties.get("openslide.objective-power")
    if power is not None:
        assert ours.magnification == pytest.approx(float(power))
    assert info.associated <= set(ours.associated)


def test_dimensions_and_downsamples(pair):
    _, ours, ref = pair
    w0, h0 = ref.dimensions
    assert ours.dimensions == (h0, w0)
    pairs = common_levels(ours, ref)
    assert pairs[0] == (0, 0)
    for i, j in pairs:
        dy, dx = ours.downsamples[i]
        # openslide's downsample is the mean of the per-axis ratios
        assert (dy + dx) / 2 == pytest.approx(ref.level_downsamples[j], rel=1e-6)
    assert len(pairs) == min(len(ours.readers), ref.level_count)


def regions_for(shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Regions (y, x, h, w) inside a level: a corner, the centre, off-grid, the far corner."""
    h, w = shape
    rh, rw = min(h, 300), min(w, 260)
    return [(0, 0, rh, rw), ((h - rh) // 2, (w - rw) // 2, rh, rw),
            (min(37, h - rh), min(251, w - rw), rh, rw), (h - rh, w - rw, rh, rw)]


def test_pixels_match_openslide(pair):
    _, ours, ref = pair
    for i, j in common_levels(ours, ref):
        ds = ref.level_downsamples[j]
        for y, x, h, w in regions_for(ours.levels[i].shape[:2]):
            if j == 0:
                expected = openslide_rgb(ref.read_region((x, y), 0, (w, h)))
            else:
                full = openslide_rgb(ref.read_region((0, 0), j, ref.level_dimensions[j]))
                expected = full[y : y + h, x : x + w]
            got = ours.read_region(i, y, x, h, w, strict=True)
            assert max_abs_diff(got, expected) <= PIXEL_TOL, (i, (y, x, h, w), ds)
            lazy = ours.levels[i][y : y + h, x : x + w].compute()
            assert np.array_equal(lazy, got)


def test_associated_images_match_openslide(pair):
    _, ours, ref = pair
    for name, image in ref.associated_images.items():
        expected = openslide_rgb(image)
        assert max_abs_diff(ours.associated[name].compute(), expected) <= PIXEL_TOL, name


def test_ndpi_levels_tifffile_lists_are_a_subset(shared_slides):
    path = shared_slides / "test3-DAPI-2-387.ndpi"
    ours = open_quiet(path)
    ref = openslide.OpenSlide(str(path))
    assert ref.level_count > ours.level_count  # openslide builds some from restart markers
    assert [i for i, _ in common_levels(ours, ref)] == list(range(ours.level_count))
    assert ours.tile_size[1] == ours.dimensions[1]  # full-width restart-interval strips


def test_ndpi_region_reads_decode_each_strip_about_once(shared_slides):
    slide = open_quiet(shared_slides / "test3-DAPI-2-387.ndpi")
    reader = slide.readers[0]
    calls: list[tuple[int, int]] = []
    decode = reader.decode

    def counting(iy: int, ix: int):
        calls.append((iy, ix))
        return decode(iy, ix)

    reader.decode = counting
    h, w = reader.shape
    for y in range(0, h, 256):
        for x in range(0, w, 256):
            slide.read_region(0, y, x, 256, 256, strict=True)
    n_strips = reader.grid[0] * reader.grid[1]
    assert len(calls) <= 1.1 * n_strips, f"{len(calls)} strip decodes for {n_strips} strips"


def test_strip_tiff_against_tifffile(shared_slides):
    """openslide cannot open this plain strip TIFF: tifffile.imread is the reference."""
    import tifffile

    path = shared_slides / "kidney-48-5.tif"
    with pytest.raises(openslide.OpenSlideUnsupportedFormatError):
        openslide.OpenSlide(str(path))
    with pytest.warns(MissingMppWarning, match="kidney-48-5.tif"):
        slide = open_slide(path)
    expected = tifffile.imread(path)[..., :3]
    assert slide.mpp is None
    assert slide.dimensions == expected.shape[:2]
    assert slide.level_count == 1
    assert max_abs_diff(slide.levels[0].compute(), expected) == 0
    assert max_abs_diff(slide.read_region(0, 850, 1400, 100, 100)[:51, :93],
                        expected[850:, 1400:]) == 0


def test_boxes_level0_matches_openslide_reference_png(shared_slides):
    from skimage.io import imread

    slide = open_quiet(shared_slides / "boxes.tiff")
    expected = imread(shared_slides / "boxes.png")[..., :3]
    assert max_abs_diff(slide.levels[0].compute(), expected) <= PIXEL_TOL


def test_dicom_single_file_opens_the_series(shared_slides):
    folder = shared_slides / "cmu-1-small-region-dicom"
    volume = openslide_path(folder)
    slide = open_quiet(volume)
    whole = open_quiet(folder)
    assert slide.dimensions == whole.dimensions == (2967, 2220)
    assert slide.mpp == whole.mpp
    assert np.array_equal(slide.read_region(0, 1000, 1000, 240, 240),
                          whole.read_region(0, 1000, 1000, 240, 240))


def test_dicom_folder_with_upper_case_suffix(shared_slides, tmp_path):
    for f in (shared_slides / "cmu-1-small-region-dicom").glob("*.dcm"):
        shutil.copyfile(f, tmp_path / (f.stem + ".DCM"))
    assert open_quiet(tmp_path).dimensions == (2967, 2220)


SVS_CUTS = (8, 4096, 600_000, 1_275_900, 1_400_000, 1_900_000)


@pytest.mark.parametrize("length", SVS_CUTS)
def test_truncated_real_svs(shared_slides, tmp_path, length):
    data = (shared_slides / "cmu-1-small-region.svs").read_bytes()
    cut = tmp_path / f"cut-{length}.svs"
    cut.write_bytes(data[:length])
    with pytest.raises(SlideReadError) as info:
        open_quiet(cut)
    message = str(info.value)
    assert str(cut) in message and "\n" not in message
    assert "truncated" in message
