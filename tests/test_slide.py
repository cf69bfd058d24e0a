"""open_slide on slides the tests build: formats, metadata, lazy levels, region cost, errors."""

from __future__ import annotations

import gc
import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_her2 import (
    MissingMppError,
    SlideReadError,
    open_slide,
)
from napari_her2.slide import MissingMppWarning, Mpp, Slide
from slide_checks import max_abs_diff, open_quiet

#: JPEG (quality 90) against its source: mean absolute difference per channel value
JPEG_MEAN_TOL = 5.0


def open_no_warning(path, **kw) -> Slide:
    """open_slide, failing the test if it warns that the mpp is missing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMppWarning)
        return open_slide(path, **kw)


def count_decodes(level) -> list[tuple[int, int]]:
    """Record every chunk decode of a ChunkedLevel from now on."""
    calls: list[tuple[int, int]] = []
    original = level.decode

    def counting(iy: int, ix: int):
        calls.append((iy, ix))
        return original(iy, ix)

    level.decode = counting
    return calls


def halve(image: np.ndarray) -> np.ndarray:
    """Reference 2x2 mean (rounded) of an even-cropped image."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    b = image[:h, :w].astype(np.uint32)
    return ((b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2] + 2) // 4).astype(
        np.uint8
    )


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------- formats


def test_generic_pyramid_levels_mpp_and_pixels(generic_pyramid_tiff, ihc_rgb):
    slide = open_no_warning(generic_pyramid_tiff)
    assert isinstance(slide, Slide)
    assert slide.vendor == "generic-tiff"
    assert slide.mpp == pytest.approx(Mpp(0.25, 0.25))
    assert slide.mpp_source == "tiff.resolution"
    assert slide.magnification is None
    assert slide.compression == "JPEG"
    assert slide.tile_size == (256, 256)
    assert [lvl.shape for lvl in slide.levels] == [(1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    assert slide.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert slide.dimensions == (1024, 1536)
    assert slide.level_count == 3
    assert slide.name == "generic.tif"
    assert all(isinstance(lvl, da.Array) and lvl.dtype == np.uint8 for lvl in slide.levels)
    assert mean_abs_diff(slide.levels[0].compute(), ihc_rgb) < JPEG_MEAN_TOL
    assert mean_abs_diff(slide.levels[1].compute(), halve(ihc_rgb)) < JPEG_MEAN_TOL


def test_ome_pyramid_from_subifds(ome_pyramid_tiff, ihc_rgb):
    slide = open_no_warning(ome_pyramid_tiff)
    assert slide.vendor == "ome"
    assert slide.mpp == pytest.approx(Mpp(0.25, 0.25))
    assert slide.mpp_source == "ome.PhysicalSize"
    assert [lvl.shape[:2] for lvl in slide.levels] == [(1024, 1536), (512, 768), (256, 384)]
    assert slide.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    # deflate is lossless: level 0 is the source, level 1 its 2x2 mean (rounding: 1)
    assert max_abs_diff(slide.levels[0].compute(), ihc_rgb) == 0
    assert max_abs_diff(slide.levels[1].compute(), halve(ihc_rgb)) <= 1


def test_ome_xml_units_and_objective_magnification(tmp_path, make_ihc):
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="40"/>'
        '</Instrument><Image ID="Image:0" Name="t"><InstrumentRef ID="Instrument:0"/>'
        '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="512" SizeY="256" '
        'SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="250" PhysicalSizeXUnit="nm" '
        'PhysicalSizeY="0.00026" PhysicalSizeYUnit="mm" Interleaved="true">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="3"/><TiffData IFD="0" PlaneCount="1"/>'
        "</Pixels></Image></OME>"
    )
    path = tmp_path / "units.ome.tif"
    tifffile.imwrite(path, make_ihc(256, 512), description=xml, metadata=None,
                     tile=(256, 256), photometric="rgb", compression="zlib")
    slide = open_no_warning(path)
    assert slide.vendor == "ome"
    assert slide.mpp == pytest.approx(Mpp(0.25, 0.26))
    assert slide.magnification == 40.0


def test_svs_like_jpeg2000_rgb_33005(svs_jp2k_rgb, ihc_rgb):
    slide = open_no_warning(svs_jp2k_rgb)
    assert slide.vendor == "aperio"
    assert slide.compression == "APERIO_JP2000_RGB"
    assert slide.mpp == pytest.approx(Mpp(0.25, 0.25))
    assert slide.mpp_source == "aperio.MPP"
    assert slide.magnification == 20.0
    assert slide.properties["aperio.AppMag"] == "20"
    assert [lvl.shape[:2] for lvl in slide.levels] == [(1024, 1536), (512, 768)]
    assert slide.downsamples == [(1.0, 1.0), (2.0, 2.0)]
    assert {k: v.shape[:2] for k, v in slide.associated.items()} == {
        "thumbnail": (128, 192), "label": (96, 128), "macro": (128, 320)
    }
    # reversible (5/3 wavelet) JPEG 2000 is lossless: any conforming decoder gives the source
    assert max_abs_diff(slide.levels[0].compute(), ihc_rgb) == 0
    assert max_abs_diff(slide.levels[1].compute(), ihc_rgb[::2, ::2]) == 0
    assert max_abs_diff(slide.associated["label"].compute(), np.full((96, 128, 3), 240)) == 0


def test_svs_like_jpeg2000_ycbcr_33003_metadata(svs_jp2k_ycbcr):
    slide = open_no_warning(svs_jp2k_ycbcr)
    assert slide.vendor == "aperio"
    assert slide.compression == "APERIO_JP2000_YCBC"
    assert slide.mpp == pytest.approx(Mpp(0.25, 0.25))
    assert [lvl.shape[:2] for lvl in slide.levels] == [(1024, 1536), (512, 768)]


def test_svs_like_jpeg2000_ycbcr_33003_pixels_are_rgb(svs_jp2k_ycbcr, ihc_rgb):
    slide = open_no_warning(svs_jp2k_ycbcr)
    # lossless codestream of YCbCr rounded to 8 bits: the round trip costs at most 2 levels
    assert max_abs_diff(slide.levels[0].compute(), ihc_rgb) <= 3


def test_strip_tiff_single_level(strip_tiff, ihc_rgb):
    slide = open_quiet(strip_tiff)
    assert slide.vendor == "generic-tiff"
    assert slide.level_count == 1  # 700 x 900 is small enough to need no lower levels
    assert slide.tile_size == (32, 900)
    assert max_abs_diff(slide.levels[0].compute(), ihc_rgb[:700, :900]) == 0
    assert max_abs_diff(slide.read_region(0, 650, 850, 100, 100)[:50, :50],
                        ihc_rgb[650:700, 850:900]) == 0


def test_big_single_level_gets_lazy_lower_levels(big_single_level_tiff):
    slide = open_no_warning(big_single_level_tiff)
    assert slide.mpp == pytest.approx(Mpp(0.5, 0.5))
    assert [lvl.shape[:2] for lvl in slide.levels] == [
        (5000, 5000), (2500, 2500), (1250, 1250), (625, 625)
    ]
    assert slide.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0), (8.0, 8.0)]
    assert slide.level_mpp(3) == pytest.approx(Mpp(4.0, 4.0))
    calls = count_decodes(slide.readers[0])
    region = slide.levels[1][100:356, 1200:1456].compute()
    n_strips = slide.readers[0].grid[0] * slide.readers[0].grid[1]
    assert 0 < len(calls) < n_strips / 2, "a small region of a lazy level read most of level 0"
    source = slide.read_region(0, 200, 2400, 512, 512)
    assert max_abs_diff(region, halve(source)) == 0
    # a lazy level read through read_region: white outside the image
    edge = slide.read_region(3, 600, 600, 50, 50)
    assert edge.shape == (50, 50, 3)
    assert (edge[25:, :] == 255).all() and (edge[:, 25:] == 255).all()
    assert max_abs_diff(edge[:25, :25], slide.levels[3][600:, 600:].compute()) == 0


# --------------------------------------------------------------------------- dask levels


@pytest.mark.parametrize(
    "fixture", ["generic_pyramid_tiff", "ome_pyramid_tiff", "svs_jp2k_rgb", "strip_tiff",
                "big_single_level_tiff"]
)
def test_dask_chunks_are_whole_multiples_of_file_tiles(fixture, request):
    slide = open_quiet(request.getfixturevalue(fixture))
    assert slide.readers, "file levels have chunk readers"
    for reader, level in zip(slide.readers, slide.levels):
        th, tw = reader.chunk
        ys, xs = level.chunks[0], level.chunks[1]
        assert all(c % th == 0 for c in ys[:-1]), (fixture, reader.key, ys, th)
        assert all(c % tw == 0 for c in xs[:-1]), (fixture, reader.key, xs, tw)
        assert sum(ys) == level.shape[0] and sum(xs) == level.shape[1]
        assert level.chunks[2] == (3,)


def test_a_small_dask_slice_does_not_read_the_level(generic_pyramid_tiff):
    slide = open_quiet(generic_pyramid_tiff)
    calls = count_decodes(slide.readers[0])
    slide.levels[0][300:400, 500:600].compute()
    n_tiles = slide.readers[0].grid[0] * slide.readers[0].grid[1]
    assert 0 < len(calls) < n_tiles


def test_region_reads_match_the_dask_level(generic_pyramid_tiff):
    slide = open_quiet(generic_pyramid_tiff)
    level0 = slide.levels[0].compute()
    for y, x, h, w in [(0, 0, 256, 256), (100, 130, 300, 500), (1000, 1500, 24, 36)]:
        assert np.array_equal(slide.read_region(0, y, x, h, w), level0[y : y + h, x : x + w])
    outside = slide.read_region(0, 1000, 1500, 100, 100)
    assert np.array_equal(outside[:24, :36], level0[1000:, 1500:])
    assert (outside[24:] == 255).all() and (outside[:, 36:] == 255).all()
    assert (slide.read_region(1, -50, -50, 40, 40) == 255).all()
    negative = slide.read_region(2, -10, -20, 30, 40)
    assert np.array_equal(negative[10:, 20:], slide.levels[2][:20, :20].compute())


def test_region_reads_are_thread_safe(generic_pyramid_tiff):
    slide = open_quiet(generic_pyramid_tiff)
    boxes = [(y, x) for y in range(0, 1024, 128) for x in range(0, 1536, 192)]
    expected = [slide.read_region(0, y, x, 200, 200) for y, x in boxes]
    slide.readers[0].cache.clear()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda b: slide.read_region(0, b[0], b[1], 200, 200), boxes))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    threaded = slide.levels[0].compute(scheduler="threads")
    assert np.array_equal(threaded, slide.levels[0].compute(scheduler="sync"))


def test_full_width_strips_decode_about_once_in_row_order(big_single_level_tiff):
    """Reading 256 x 256 tiles in row order costs each full-width strip about one decode."""
    slide = open_quiet(big_single_level_tiff)
    reader = slide.readers[0]
    assert reader.chunk == (64, 5000)
    calls = count_decodes(reader)
    h, w = reader.shape
    for y in range(0, h, 256):
        for x in range(0, w, 256):
            slide.read_region(0, y, x, 256, 256)
    n_strips = reader.grid[0]
    assert len(calls) <= 1.1 * n_strips, f"{len(calls)} decodes for {n_strips} strips"
    reader.cache.clear()
    calls.clear()
    slide.read_region(0, 130, 4000, 256, 256)  # rows 130..385 touch strips 2..6
    assert sorted(calls) == [(iy, 0) for iy in range(2, 7)]



def test_a_whole_lazy_level_decodes_each_strip_once_and_matches_dask(big_single_level_tiff):
    """The lowest lazily built level, read whole in two threads, costs one decode per strip of
    level 0 and equals the 2x reductions computed by dask."""
    from napari_her2.slide._model import lazy_pyramid

    slide = open_quiet(big_single_level_tiff)
    calls = count_decodes(slide.readers[0])
    low = len(slide.levels) - 1
    h, w = slide.levels[low].shape[:2]
    got = slide.read_region(low, 0, 0, h, w, workers=2)
    assert sorted(calls) == sorted(set(calls)), "a strip of level 0 was decoded twice"
    assert len(calls) == slide.readers[0].grid[0]
    dask_levels, _ = lazy_pyramid(slide.levels[0])
    assert max_abs_diff(got, dask_levels[low].compute()) == 0


# --------------------------------------------------------------------------- mpp


def test_slide_without_mpp_warns_and_never_assumes_one(strip_tiff):
    with pytest.warns(MissingMppWarning, match="strip.tif"):
        slide = open_slide(strip_tiff)
    assert slide.mpp is None
    assert slide.level_mpp(0) is None
    with pytest.raises(MissingMppError, match="strip.tif"):
        slide.require_mpp()


def test_screen_resolution_72_dpi_is_treated_as_missing(tmp_path, make_ihc):
    path = tmp_path / "screen.tif"
    tifffile.imwrite(path, make_ihc(256, 256), photometric="rgb", tile=(128, 128),
                     resolution=(72, 72), resolutionunit="INCH")
    with pytest.warns(MissingMppWarning, match="screen.tif"):
        slide = open_slide(path)
    assert slide.mpp is None
    assert "ignored" in slide.mpp_source


def test_resolution_tags_in_inches(tmp_path, make_ihc):
    path = tmp_path / "inch.tif"
    tifffile.imwrite(path, make_ihc(256, 256), photometric="rgb", tile=(128, 128),
                     resolution=(25400 / 0.5, 25400 / 0.4), resolutionunit="INCH")
    slide = open_no_warning(path)
    assert slide.mpp == pytest.approx(Mpp(0.5, 0.4))
    assert slide.mpp_source == "tiff.resolution"


def test_user_mpp_is_accepted(strip_tiff, generic_pyramid_tiff):
    slide = open_no_warning(strip_tiff, mpp=0.4)
    assert slide.mpp == pytest.approx(Mpp(0.4, 0.4)) and slide.mpp_source == "user"
    slide = open_no_warning(strip_tiff, mpp=(0.3, 0.35))
    assert slide.mpp == pytest.approx(Mpp(0.3, 0.35))
    slide = open_no_warning(generic_pyramid_tiff, mpp=0.3)  # overrides the file's 0.25
    assert slide.mpp == pytest.approx(Mpp(0.3, 0.3)) and slide.mpp_source == "user"
    assert slide.level_mpp(1) == pytest.approx(Mpp(0.6, 0.6))


def test_with_mpp_returns_a_copy(strip_tiff):
    slide = open_quiet(strip_tiff)
    copy = slide.with_mpp(0.5)
    assert copy.mpp == pytest.approx(Mpp(0.5, 0.5))
    assert slide.mpp is None


@pytest.mark.parametrize("mpp", [0.0, -0.5, 1000.0, float("nan"), float("inf")])
def test_implausible_user_mpp_is_refused(strip_tiff, mpp):
    with pytest.raises(SlideReadError, match="strip.tif"):
        open_quiet(strip_tiff, mpp=mpp)


def test_slide_opened_with_user_mpp_can_read(generic_pyramid_tiff):
    slide = open_no_warning(generic_pyramid_tiff, mpp=0.3)
    gc.collect()
    assert slide.read_region(0, 0, 0, 64, 64).shape == (64, 64, 3)


def test_dask_levels_outlive_the_slide_object(generic_pyramid_tiff):
    levels = open_no_warning(generic_pyramid_tiff).levels
    gc.collect()
    assert levels[0][:64, :64].compute().shape == (64, 64, 3)


# --------------------------------------------------------------------------- helpers


def test_best_level_and_level_mpp(generic_pyramid_tiff):
    slide = open_quiet(generic_pyramid_tiff)
    assert [slide.best_level_for_downsample(d) for d in (0.5, 1, 1.9, 2, 3.9, 4, 100)] == [
        0, 0, 0, 1, 1, 2, 2
    ]
    assert slide.level_mpp(2) == pytest.approx(Mpp(1.0, 1.0))


def test_summary_is_json(generic_pyramid_tiff):
    slide = open_quiet(generic_pyramid_tiff)
    info = json.loads(json.dumps(slide.summary()))
    assert info["file"] == str(generic_pyramid_tiff)
    assert info["mpp"] == pytest.approx({"x": 0.25, "y": 0.25})
    assert [lvl["shape"] for lvl in info["levels"]] == [[1024, 1536], [512, 768], [256, 384]]


def test_close_is_idempotent_and_a_context_manager(generic_pyramid_tiff):
    with open_quiet(generic_pyramid_tiff) as slide:
        assert slide.read_region(0, 0, 0, 8, 8).shape == (8, 8, 3)
    slide.close()


def test_a_closed_slide_never_reads_another_file(tmp_path, make_ihc):
    image = make_ihc(512, 768)
    for name, pixels in (("a.tif", image), ("b.tif", 255 - image)):
        # uncompressed tiles: both files have the same byte layout
        tifffile.imwrite(tmp_path / name, pixels, tile=(256, 256), photometric="rgb")
    first = open_quiet(tmp_path / "a.tif")
    first.close()
    second = open_quiet(tmp_path / "b.tif")  # reuses the descriptor numbers just freed
    try:
        pixels = first.read_region(0, 0, 0, 256, 256, strict=True)
    except SlideReadError as err:  # a clear error is fine
        assert "a.tif" in str(err)
    else:  # and so are the right pixels; another file's are not
        assert np.array_equal(pixels, image[:256, :256])
    finally:
        second.close()
