"""Damaged chunk tables and size limits: refused with one line, never decoded or built."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from crafted_tiffs import claimed_size_tiff, huge_tile_tiff
from napari_her2.cli import main
from napari_her2.errors import SlideReadError
from napari_her2.ihc.tissue import TissueMask, TissueParams, bounded_level, detect_tissue
from napari_her2.slide import Mpp, Slide, open_slide
from napari_her2.slide._chunks import ChunkDecodeError, FileHandle, chunk_span_problem
from napari_her2.slide._model import SLIDE_LIMITS, SlideLimitError, lazy_pyramid
from napari_her2.tiles.grid import make_grid

NDPI = "test3-DAPI-2-387.ndpi"
MCU_STARTS = 65426


def fake_slide(*shapes: tuple[int, int], mpp: float = 0.25) -> Slide:
    """A slide of lazy zero levels (never computed by the tests that use it)."""
    levels = [da.zeros((h, w, 3), np.uint8, chunks=(4096, 4096, 3)) for h, w in shapes]
    h0, w0 = shapes[0]
    return Slide(path=Path("fake.tif"), levels=levels,
                 downsamples=[(h0 / h, w0 / w) for h, w in shapes], mpp=Mpp(mpp, mpp),
                 mpp_source="test", magnification=None, vendor="test", tile_size=(256, 256),
                 compression="none")


# --------------------------------------------------------------------------- chunk spans


@pytest.mark.parametrize(("offset", "length", "words"), [
    (-1, 10, "offset -1"), (10, -5, "byte count -5"), (10, 0, "empty chunk"),
    (90, 20, "past the end"), (0, 2**30, "past the end"),
])
def test_chunk_span_problems_are_named(offset, length, words):
    problem = chunk_span_problem(offset, length, 100, 2**28)
    assert problem is not None and words in problem


def test_absurd_byte_count_is_refused_even_inside_the_file():
    assert "limit" in chunk_span_problem(0, 2**20, 2**30, 2**16)
    assert chunk_span_problem(10, 20, 100, 2**28) is None


def test_pread_refuses_bad_spans_instead_of_raising_oserror(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(bytes(range(100)))
    fh = FileHandle(f)
    assert fh.pread(3, 10) == bytes([10, 11, 12])
    for length, offset in [(-7, 10), (10, -1), (20, 90), (2**63, 0)]:
        with pytest.raises(ChunkDecodeError):
            fh.pread(length, offset)
    fh.close()


# --------------------------------------------------------------------------- NDPI McuStarts


@pytest.fixture
def ndpi_with_flipped_mcu_start(shared_slides, tmp_path) -> Path:
    src = shared_slides / NDPI
    if not src.is_file():
        pytest.skip(f"{NDPI} is not in the shared data folder")
    path = tmp_path / "flipped.ndpi"
    shutil.copy(src, path)
    with tifffile.TiffFile(path) as tif:
        value_offset = tif.pages[0].tags[MCU_STARTS].valueoffset
    with open(path, "r+b") as f:  # strip 40 starts 32 KB late: strip 40's byte count < 0
        f.seek(value_offset + 4 * 40 + 1)
        byte = f.read(1)[0]
        f.seek(value_offset + 4 * 40 + 1)
        f.write(bytes([byte ^ 0x80]))
    return path


def test_flipped_mcu_start_is_a_slide_error_or_background(ndpi_with_flipped_mcu_start):
    path = ndpi_with_flipped_mcu_start
    with open_slide(path) as slide:
        ch, _ = slide.tile_size  # the file's strip (restart interval) height
        with pytest.raises(SlideReadError) as info:
            slide.read_region(0, 40 * ch, 0, ch, 64, strict=True)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "chunk" in message
        lenient = slide.read_region(0, 40 * ch, 0, ch, 64, strict=False)
        assert (lenient == 255).all()  # shown as background
        assert slide.levels[0][40 * ch : 41 * ch, :64].compute().min() == 255
        assert slide.read_region(0, 0, 0, ch, 64).std() > 0  # the rest still reads


def test_flipped_mcu_start_cli_gives_no_traceback(ndpi_with_flipped_mcu_start, tmp_path, capsys):
    rc = main(["info", str(ndpi_with_flipped_mcu_start)])
    assert rc == 0
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- size limits


def test_a_32768_px_tile_in_a_small_tiff_is_refused_not_decoded(tmp_path):
    path = huge_tile_tiff(tmp_path / "huge-tile.tif")
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(SlideLimitError) as info:
            open_slide(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    assert "32768 x 32768" in str(info.value) and str(path) in str(info.value)


def test_a_claimed_10e6_px_slide_is_refused_at_open_and_info_is_fast(tmp_path, capsys):
    path = claimed_size_tiff(tmp_path / "claims.tif")
    with pytest.raises(SlideLimitError, match="1000000 x 1000000"):
        open_slide(path)
    t0 = time.perf_counter()
    rc = main(["info", str(path)])
    assert time.perf_counter() - t0 < 3
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "1000000 x 1000000" in err


def test_a_slide_object_cannot_claim_more_than_the_level_limit():
    side = int(SLIDE_LIMITS.max_level_pixels**0.5) + 2
    with pytest.raises(SlideLimitError):
        fake_slide((side, side))


def test_no_lazy_levels_for_a_base_past_the_limit():
    side = int(SLIDE_LIMITS.max_lazy_base_pixels**0.5) + 2
    levels, downs = lazy_pyramid(da.zeros((side, side, 3), np.uint8, chunks=(8192, 8192, 3)))
    assert len(levels) == 1 and downs == [(1.0, 1.0)]
    levels, _ = lazy_pyramid(da.zeros((8192, 8192, 3), np.uint8, chunks=(1024, 1024, 3)))
    assert len(levels) > 1


def test_tissue_detection_reads_a_bounded_level_or_refuses():
    # mask_mpp 8 on a 8 µm/px scan picks level 0: too large, the coarser one is read instead
    slide = fake_slide((20000, 20000), (1000, 1000), mpp=8.0)
    assert bounded_level(slide, 0) == 1
    mask = detect_tissue(slide, TissueParams(mask_mpp=8.0))
    assert mask.mask.shape == (1000, 1000)
    huge = fake_slide((70000, 70000))
    t0 = time.perf_counter()
    with pytest.raises(SlideLimitError, match="tissue detection"):
        detect_tissue(huge)
    assert time.perf_counter() - t0 < 2  # refused, not computed


def test_tile_grid_cells_are_bounded():
    slide = fake_slide((100_000, 100_000), (1000, 1000), mpp=0.25)
    tissue = TissueMask(mask=np.ones((100, 100), bool), downsample=(1000.0, 1000.0),
                        mpp=(250.0, 250.0))
    with pytest.raises(SlideLimitError, match="tile grid"):
        make_grid(slide, tissue, tile_size=16, target_mpp=0.05)
    grid = make_grid(slide, tissue, tile_size=256, target_mpp=0.5)
    assert grid.shape[0] * grid.shape[1] <= SLIDE_LIMITS.max_grid_cells


@pytest.mark.parametrize("shape", [(96, 65632), (65632, 96), (3, 5000), (1, 9000)])
def test_lazy_pyramid_of_a_long_thin_image_stops_before_a_pixel(shape):
    levels, downs = lazy_pyramid(da.zeros((*shape, 3), np.uint8, chunks=(1024, 1024, 3)))
    assert all(min(a.shape[:2]) >= 1 for a in levels) and len(levels) == len(downs)
    assert levels[-1][:4, :4].compute().shape[2] == 3


def test_an_associated_image_claiming_a_huge_size_is_skipped(shared_slides, tmp_path):
    src = shared_slides / "cmu-1-small-region.svs"
    if not src.is_file():
        pytest.skip("cmu-1-small-region.svs is not in the shared data folder")
    path = tmp_path / "tall-thumbnail.svs"
    shutil.copy(src, path)
    with tifffile.TiffFile(path, mode="r+b") as tif:  # page 1 is the thumbnail
        tif.pages[1].tags[257].overwrite(60000)
        tif.pages[1].tags[278].overwrite(60000)
    with open_slide(path) as slide:
        assert "thumbnail" not in slide.associated and "label" in slide.associated
        assert slide.read_region(0, 0, 0, 64, 64).shape == (64, 64, 3)
    with open_slide(src) as slide:
        assert "thumbnail" in slide.associated


def test_a_huge_mcu_start_does_not_make_parsing_allocate_gigabytes(shared_slides, tmp_path):
    src = shared_slides / NDPI
    if not src.is_file():
        pytest.skip(f"{NDPI} is not in the shared data folder")
    path = tmp_path / "huge-mcu.ndpi"
    shutil.copy(src, path)
    with tifffile.TiffFile(path) as tif:  # found by the fuzzer: tifffile reads McuStarts[0] bytes
        value_offset = tif.pages[1].tags[MCU_STARTS].valueoffset
    with open(path, "r+b") as f:
        f.seek(value_offset)
        f.write((0x7FFFFFFF).to_bytes(4, "little"))
    tracemalloc.start()
    try:
        try:
            open_slide(path).close()
        except SlideReadError as err:
            assert "\n" not in str(err)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB traced"


def test_bounded_reader_reads_what_is_there(tmp_path):
    from napari_her2.slide.tiff import BoundedReader

    f = tmp_path / "x.bin"
    f.write_bytes(b"0123456789")
    with BoundedReader(f) as r:
        assert r.read(3) == b"012"
        assert r.read(2**40) == b"3456789"  # no 1 TB buffer
        assert r.read(5) == b"" and r.read() == b""
        r.seek(8)
        assert r.read(-1) == b"89"
