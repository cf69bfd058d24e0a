"""Region reads from chunked levels: every read path gives the pixels of a reference image.

The level below is built in memory: an image cut into chunks, some of which the "file" does
not store (None), stores smaller than the grid says, stores with an alpha channel, or cannot
decode. Whatever the region, the number of decode threads and the state of the cache, a read
must equal the reference: image pixels where a chunk decodes, white everywhere else.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_her2.slide._chunks import FILL_VALUE, ChunkCache, ChunkDecodeError, ChunkedLevel

H, W, CH, CW = 70, 90, 16, 24
MISSING, SHORT, ALPHA, BROKEN = (0, 1), (2, 3), (1, 2), (3, 0)


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 250, (H, W, 3), dtype=np.uint8)


IMAGE = _image()


def _reference() -> np.ndarray:
    """What a lenient read of the whole level must give."""
    ref = IMAGE.copy()
    for iy, ix in (MISSING, BROKEN):
        ref[iy * CH : (iy + 1) * CH, ix * CW : (ix + 1) * CW] = FILL_VALUE
    y, x = SHORT[0] * CH, SHORT[1] * CW
    ref[y + CH - 5 : y + CH, x : x + CW] = FILL_VALUE  # stored 5 rows short
    return ref


REFERENCE = _reference()


def make_level(cache: ChunkCache | None, decodes: list | None = None) -> ChunkedLevel:
    lock = threading.Lock()

    def decode(iy: int, ix: int) -> np.ndarray | None:
        if decodes is not None:
            with lock:
                decodes.append((iy, ix))
        if (iy, ix) == MISSING:
            return None
        if (iy, ix) == BROKEN:
            raise ChunkDecodeError("broken chunk")
        chunk = np.full((CH, CW, 3), 7, np.uint8)  # edge chunks padded, as in a TIFF
        part = IMAGE[iy * CH : (iy + 1) * CH, ix * CW : (ix + 1) * CW]
        chunk[: part.shape[0], : part.shape[1]] = part
        if (iy, ix) == SHORT:
            chunk = chunk[: CH - 5]
        if (iy, ix) == ALPHA:
            chunk = np.concatenate([chunk, np.zeros((*chunk.shape[:2], 1), np.uint8)], axis=2)
        return chunk

    return ChunkedLevel(key="L0", shape=(H, W), chunk=(CH, CW), decode=decode, cache=cache)


def expected(y: int, x: int, h: int, w: int) -> np.ndarray:
    out = np.full((h, w, 3), FILL_VALUE, np.uint8)
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
    if y1 > y0 and x1 > x0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = REFERENCE[y0:y1, x0:x1]
    return out


regions = st.tuples(st.integers(-20, H + 5), st.integers(-20, W + 5),
                    st.integers(1, H + 30), st.integers(1, W + 30))


@settings(max_examples=150, deadline=None)
@given(region=regions, workers=st.sampled_from([1, 2, 3]), cached=st.booleans(),
       warm=st.booleans())
def test_every_read_path_gives_the_reference_pixels(region, workers, cached, warm):
    level = make_level(ChunkCache() if cached else None)
    if cached and warm:  # earlier partial reads left some chunks in the cache
        level.read_region(5, 5, 20, 30, strict=False)
    got = level.read_region(*region, strict=False, workers=workers)
    assert got.shape == (region[2], region[3], 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected(*region))


def test_a_region_that_is_one_chunk_is_that_chunk_decoded_once():
    decodes: list = []
    level = make_level(ChunkCache(), decodes)
    got = level.read_region(2 * CH, 0, CH, CW)
    np.testing.assert_array_equal(got, expected(2 * CH, 0, CH, CW))
    assert decodes == [(2, 0)]
    got[:] = 0  # the caller owns the result: nothing cached is changed
    np.testing.assert_array_equal(level.read_region(2 * CH, 0, CH, CW),
                                  expected(2 * CH, 0, CH, CW))


def test_chunks_a_region_covers_whole_are_not_cached():
    cache = ChunkCache()
    level = make_level(cache)
    level.read_region(CH * 2, CW * 2, CH * 2, CW, strict=False)  # two whole chunks
    assert cache.get(("L0", 2, 2)) is None and cache.get(("L0", 3, 2)) is None
    level.read_region(CH * 2 + 3, CW * 2 + 3, 4, 4)  # part of a chunk
    assert cache.get(("L0", 2, 2)) is not None


def test_each_chunk_is_decoded_once_with_several_threads():
    decodes: list = []
    level = make_level(ChunkCache(), decodes)
    np.testing.assert_array_equal(level.read_region(0, 0, H, W, strict=False, workers=2),
                                  expected(0, 0, H, W))
    assert sorted(decodes) == sorted(set(decodes))
    assert len(decodes) == level.grid[0] * level.grid[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_strict_reads_raise_on_a_broken_chunk(workers):
    level = make_level(ChunkCache())
    with pytest.raises(ChunkDecodeError, match="broken chunk"):
        level.read_region(0, 0, H, W, workers=workers)
    with pytest.raises(ChunkDecodeError):
        level.read_region(BROKEN[0] * CH, BROKEN[1] * CW, CH, CW)


def test_a_scan_in_tile_order_leaves_nothing_cached_and_decodes_each_chunk_once():
    """Chunks leave the cache once reads have used all their pixels: memory is reused."""
    decodes: list = []
    cache = ChunkCache()
    level = make_level(cache, decodes)
    for y in range(0, H, 20):  # 20 x 25 reads: never aligned with the 16 x 24 chunks
        for x in range(0, W, 25):
            np.testing.assert_array_equal(level.read_region(y, x, 20, 25, strict=False),
                                          expected(y, x, 20, 25))
    stored = [d for d in decodes if d not in (MISSING, BROKEN)]  # nothing to keep of those
    assert sorted(stored) == sorted(set(stored))
    assert cache._bytes == 0 and not cache._items  # every chunk was used up and dropped


def test_thin_strips_are_read_in_bands(tmp_path):
    """A TIFF of 8-row strips (as NDPI restart intervals) is read in 64-row bands: the same
    pixels, the file's strip size reported, a 256 px tile costs a handful of chunk reads."""
    import tifffile

    from napari_her2.slide import open_slide

    image = np.random.default_rng(1).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, image, photometric="rgb", compression="zlib", rowsperstrip=8,
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert slide.tile_size == (8, 200)
        assert slide.readers[0].chunk == (64, 200)
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 300, 200), image)
        np.testing.assert_array_equal(slide.read_region(0, 250, 150, 64, 64)[:50, :50],
                                      image[250:300, 150:200])
        assert (slide.read_region(0, 250, 150, 64, 64)[50:] == FILL_VALUE).all()
