"""open_slide on broken input: one-line errors that name the file, truncated and cut files,
and a corrupt tile inside an otherwise readable slide."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_her2 import Her2Error, SlideReadError, UnsupportedFormatError
from slide_checks import max_abs_diff, open_quiet

# --------------------------------------------------------------------------- bad input


def test_bad_input_gives_a_one_line_error_naming_the_file(bad_input):
    with pytest.raises(SlideReadError) as info:
        open_quiet(bad_input)
    err = info.value
    assert isinstance(err, Her2Error)
    assert err.path == bad_input
    assert str(bad_input) in str(err)
    assert "\n" not in str(err) and err.reason


def test_folder_without_dicom_is_unsupported(tmp_path):
    (tmp_path / "readme.txt").write_text("no slide here")
    with pytest.raises(UnsupportedFormatError, match=str(tmp_path)):
        open_quiet(tmp_path)


@pytest.mark.parametrize("fraction", [0.0005, 0.1, 0.5, 0.72, 0.9, 0.95])
def test_truncated_svs_like_file(svs_jp2k_rgb, tmp_path, fraction):
    data = svs_jp2k_rgb.read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideReadError) as info:
        open_quiet(cut)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)
    assert "truncated" in str(info.value)


def test_cut_macro_only_keeps_the_pyramid(svs_jp2k_rgb, tmp_path, caplog, ihc_rgb):
    """Cutting only the last associated image's data opens the slide without it (logged)."""
    data = svs_jp2k_rgb.read_bytes()
    cut = tmp_path / "cut-macro.svs"
    cut.write_bytes(data[:-100])
    with caplog.at_level(logging.WARNING):
        slide = open_quiet(cut)
    assert "macro" not in slide.associated
    assert any("macro" in r.getMessage() for r in caplog.records)
    assert max_abs_diff(slide.levels[0].compute(), ihc_rgb) == 0


# --------------------------------------------------------------------------- corrupt tile


def corrupt_one_tile(path: Path, index: int) -> tuple[int, int]:
    """Overwrite one level-0 tile's bytes with garbage; return its (row, column)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        columns = math.ceil(page.imagewidth / page.tilewidth)
    data = bytearray(path.read_bytes())
    garbage = np.random.default_rng(7).integers(0, 256, count, dtype=np.uint8).tobytes()
    data[offset : offset + count] = b"\x5f" + garbage[1:]
    path.write_bytes(bytes(data))
    return divmod(index, columns)


@pytest.mark.parametrize("compression", ["jpeg", "zlib"])
def test_corrupt_tile(tmp_path, compression, caplog, make_ihc, make_tiled_tiff):
    image = make_ihc(768, 1024)
    path = make_tiled_tiff(tmp_path / f"corrupt-{compression}.tif", image,
                            compression=compression)
    before = open_quiet(path)
    clean = before.levels[0].compute()
    before.close()
    row, col = corrupt_one_tile(path, 5)
    assert (row, col) == (1, 1)
    slide = open_quiet(path)
    with pytest.raises(SlideReadError, match=f"corrupt-{compression}.tif"):
        slide.read_region(0, 200, 200, 200, 200, strict=True)
    # the tiles around it still read strictly
    assert np.array_equal(slide.read_region(0, 0, 0, 256, 512, strict=True), clean[:256, :512])
    with caplog.at_level(logging.WARNING):
        level = slide.levels[0].compute()  # never raises: the bad tile shows as background
    assert (level[256:512, 256:512] == 255).all()
    mask = np.ones(level.shape[:2], bool)
    mask[256:512, 256:512] = False
    assert np.array_equal(level[mask], clean[mask])
    lenient = slide.read_region(0, 200, 200, 200, 200, strict=False)
    assert (lenient[56:, 56:] == 255).all()
