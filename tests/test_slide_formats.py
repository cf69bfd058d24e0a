"""The formats table, plain PNG/JPEG images as slides, non-regular files, copies with an mpp."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from napari_her2 import open_slide
from napari_her2.errors import SlideReadError, UnsupportedFormatError
from napari_her2.slide import FORMATS, SUFFIXES, MissingMppWarning, is_slide_path

ROOT = Path(__file__).resolve().parents[1]


def _png_with_phys(rgb: np.ndarray, mpp: float) -> bytes:
    """A PNG whose pHYs chunk says ``mpp`` µm/px (pixels per metre, unit 1)."""
    import struct
    import zlib

    data = imagecodecs.png_encode(rgb)
    ppm = round(1e6 / mpp)
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    end_ihdr = 8 + 8 + 13 + 4
    return data[:end_ihdr] + chunk + data[end_ihdr:]


def test_png_opens_with_identical_pixels_and_user_mpp(tmp_path, make_ihc):
    rgb = make_ihc(600, 900)
    path = tmp_path / "patch.png"
    path.write_bytes(imagecodecs.png_encode(rgb))
    with open_slide(path, mpp=0.5) as slide:
        assert slide.vendor == "png" and slide.mpp_source == "user"
        assert slide.dimensions == (600, 900)
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 600, 900), rgb)
        np.testing.assert_array_equal(np.asarray(slide.levels[0][10:20, 30:40]), rgb[10:20, 30:40])
        whole = slide.read_region(0, 0, 0, 600, 900)  # one chunk: the fast path
        whole[:] = 0  # the caller's copy: the slide's pixels do not change
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 600, 900), rgb)


def test_png_without_resolution_warns_and_has_no_mpp(tmp_path, make_ihc):
    path = tmp_path / "nores.png"
    path.write_bytes(imagecodecs.png_encode(make_ihc(64, 64)))
    with pytest.warns(MissingMppWarning):
        slide = open_slide(path)
    assert slide.mpp is None


def test_png_phys_chunk_gives_the_resolution(tmp_path, make_ihc):
    path = tmp_path / "res.png"
    path.write_bytes(_png_with_phys(make_ihc(64, 80), 0.25))
    slide = open_slide(path)
    assert slide.mpp_source == "png.pHYs"
    assert slide.mpp.x == pytest.approx(0.25, rel=1e-3)


def test_jpeg_opens_as_a_slide_with_a_lazy_pyramid(tmp_path, make_ihc):
    rgb = make_ihc(3000, 2500)
    path = tmp_path / "core.jpg"
    path.write_bytes(imagecodecs.jpeg8_encode(rgb, level=95))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        slide = open_slide(path)
    assert slide.vendor == "jpeg" and slide.dimensions == (3000, 2500)
    assert slide.level_count > 1  # lower levels built lazily for a large single-level image
    region = slide.read_region(0, 100, 100, 50, 50)
    assert np.abs(region.astype(int) - rgb[100:150, 100:150]).mean() < 6  # lossy


@pytest.mark.parametrize("cut", [10, 40, 200])
def test_truncated_plain_images_give_one_line_errors(tmp_path, make_ihc, cut):
    for suffix, data in ((".png", imagecodecs.png_encode(make_ihc(128, 128))),
                         (".jpg", imagecodecs.jpeg8_encode(make_ihc(128, 128)))):
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(data[:cut])
        with pytest.raises(SlideReadError) as info:
            open_slide(path, mpp=0.5)
        assert "\n" not in str(info.value) and path.name in str(info.value)


def test_grayscale_png_is_refused(tmp_path):
    path = tmp_path / "gray.png"
    path.write_bytes(imagecodecs.png_encode(np.zeros((32, 32), np.uint8)))
    with pytest.raises(SlideReadError, match="RGB"):
        open_slide(path, mpp=0.5)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)
    with pytest.raises(SlideReadError, match="not a regular file"):
        open_slide(fifo)


def test_unknown_header_names_the_supported_formats(tmp_path):
    path = tmp_path / "x.svs"
    path.write_bytes(b"GIF89a" + bytes(200))
    with pytest.raises(UnsupportedFormatError, match="PNG or JPEG"):
        open_slide(path)


def test_closing_a_copy_with_mpp_leaves_the_original_readable(generic_pyramid_tiff):
    slide = open_slide(generic_pyramid_tiff)
    copy = slide.with_mpp(0.3)
    copy.close()
    copy.close()  # idempotent
    assert slide.read_region(0, 0, 0, 8, 8).shape == (8, 8, 3)
    again = slide.with_mpp(0.4)
    slide.close()
    assert again.read_region(0, 0, 0, 8, 8).shape == (8, 8, 3)
    again.close()
    with pytest.raises(SlideReadError, match="closed"):
        again.read_region(0, 0, 0, 8, 8)


def test_one_format_table_drives_suffixes_and_the_napari_manifest():
    assert SUFFIXES == tuple(s for f in FORMATS for s in f.suffixes)
    manifest = (ROOT / "napari.yaml").read_text()
    patterns = re.search(r"filename_patterns: \[(.*)\]", manifest).group(1)
    declared = {p.strip().strip('"') for p in patterns.split(",")}
    assert declared == {f"*{s}" for s in SUFFIXES} | {f"*{s.upper()}" for s in SUFFIXES}
    assert is_slide_path("A.NDPI") and is_slide_path("core.jpeg") and not is_slide_path("x.bmp")


def test_real_bci_png_and_tma_jpeg_open(shared_data):
    png = next((shared_data / "her2-ihc-bci").glob("*.png"))
    jpg = next((shared_data / "her2-ihc-tma").glob("*.jpg"))
    with open_slide(png, mpp=0.5) as a:
        assert a.dimensions == (1024, 1024)
    with open_slide(jpg, mpp=0.25) as b:
        assert b.dimensions == (5468, 5468) and b.level_count >= 3
