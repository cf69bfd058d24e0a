"""The OpenSlide backend: same Slide as the native readers, routing by format, clear errors."""

from __future__ import annotations

import builtins
import struct
import warnings

import numpy as np
import pytest

from napari_her2 import SlideReadError, open_slide
from napari_her2.errors import Her2Error, UnsupportedFormatError
from napari_her2.slide import FORMATS, Mpp, Slide, formats
from napari_her2.slide import openslide_backend as osb

OPENSLIDE_SUFFIXES = (".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide")
REAL = ["cmu-1-small-region.svs", "test3-DAPI-2-387.ndpi"]
#: (y, x, h, w) level-0 regions compared between the backends
REGIONS = [(0, 0, 256, 256), (517, 733, 300, 420), (1500, 1100, 512, 512)]


def _fake_slide(p) -> Slide:
    import dask.array as da

    arr = da.from_array(np.full((64, 64, 3), 200, np.uint8))
    return Slide(path=p, levels=[arr], downsamples=[(1.0, 1.0)], mpp=Mpp(0.5, 0.5),
                 mpp_source="test", magnification=None, vendor="fake", tile_size=(64, 64),
                 compression="none")


@pytest.fixture
def recorded(monkeypatch):
    """Calls of the OpenSlide backend's opener (which returns a small fake slide)."""
    calls = []

    def fake(p):
        calls.append(p)
        return _fake_slide(p)

    monkeypatch.setattr(osb, "open_openslide", fake)
    return calls


def _no_openslide(monkeypatch):
    real_import = builtins.__import__

    def fail(name, *args, **kwargs):
        if name == "openslide" or name.startswith("openslide."):
            raise ImportError("No module named 'openslide'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fail)


def _bif_tiff(path, xmp: bytes) -> None:
    """A minimal little-endian TIFF: one 1x1 RGB strip with an XMP (700) tag."""
    entries = []
    pixel_at = 8
    ifd_at = pixel_at + 4
    n = 9
    xmp_at = ifd_at + 2 + n * 12 + 4
    for tag, typ, count, value in [
        (256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, pixel_at), (277, 3, 1, 3), (279, 4, 1, 3), (700, 1, len(xmp), xmp_at),
    ]:
        entries.append(struct.pack("<HHII", tag, typ, count, value))
    data = (b"II*\x00" + struct.pack("<I", ifd_at) + b"\xc8\xc8\xc8\x00"
            + struct.pack("<H", n) + b"".join(entries) + struct.pack("<I", 0) + xmp)
    path.write_bytes(data)


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("suffix", OPENSLIDE_SUFFIXES)
def test_each_openslide_suffix_goes_to_the_openslide_backend(tmp_path, recorded, suffix):
    p = tmp_path / f"slide{suffix.upper() if suffix == '.scn' else suffix}"
    p.write_bytes(b"II*\x00\x08\x00\x00\x00" if suffix in (".scn", ".bif") else b"[GENERAL]\n")
    slide = open_slide(p)
    assert recorded == [p] and slide.vendor == "fake"
    slide.close()


def test_the_table_has_one_openslide_row_and_its_suffixes_are_slide_paths():
    rows = [f for f in FORMATS if f.backend == "openslide"]
    assert len(rows) == 1 and set(rows[0].suffixes) == set(OPENSLIDE_SUFFIXES)
    assert all(formats.is_slide_path(f"a{s}") for s in OPENSLIDE_SUFFIXES)


def test_a_bif_named_tif_is_recognised_by_its_iscan_xmp(tmp_path, recorded):
    bif = tmp_path / "ventana.tif"
    _bif_tiff(bif, b'<x:xmpmeta><iScan Magnification="40" ScanRes="0.25"/></x:xmpmeta>')
    assert formats.detect_format(bif).backend == "openslide"
    open_slide(bif).close()
    assert recorded == [bif]
    plain = tmp_path / "plain.tif"
    _bif_tiff(plain, b"<x:xmpmeta><other/></x:xmpmeta>")
    assert formats.detect_format(plain).name == "tiff"


def test_native_backend_on_an_mrxs_is_a_clear_one_line_error(tmp_path, recorded):
    p = tmp_path / "case.mrxs"
    p.write_text("[GENERAL]\n")
    with pytest.raises(UnsupportedFormatError) as info:
        open_slide(p, backend="native")
    msg = str(info.value)
    assert "\n" not in msg and str(p) in msg and "no native reader" in msg
    assert "backend='openslide'" in msg and recorded == []


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        open_slide(tmp_path / "x.svs", backend="bioformats")  # type: ignore[arg-type]


def test_a_missing_file_is_named_before_openslide_is_tried(tmp_path, recorded):
    with pytest.raises(SlideReadError, match="no such file"):
        open_slide(tmp_path / "gone.mrxs")
    with pytest.raises(SlideReadError, match="no such file"):
        open_slide(tmp_path / "gone.svs", backend="openslide")
    assert recorded == []


# --------------------------------------------------------------------------- missing extra


def test_without_openslide_the_error_is_one_line_naming_the_file_and_extra(tmp_path,
                                                                         monkeypatch):
    p = tmp_path / "case.mrxs"
    p.write_text("[GENERAL]\n")
    _no_openslide(monkeypatch)
    with pytest.raises(SlideReadError) as info:
        open_slide(p)
    err = info.value
    msg = str(err)
    assert isinstance(err, Her2Error)
    assert "\n" not in msg
    assert msg.startswith("OpenSlide is not available")
    assert str(p) in msg and "pip install 'napari-her2[openslide]'" in msg


# --------------------------------------------------------------------------- pixels


def test_rgba_is_composited_on_white():
    rgba = np.array([[[0, 0, 0, 0], [100, 50, 0, 255], [0, 0, 0, 128]]], np.uint8)
    rgb = osb.rgba_on_white(rgba)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [100, 50, 0]
    assert rgb[0, 2].tolist() == [127, 127, 127]


def _open(path, **kw) -> Slide:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_slide(path, **kw)


@pytest.mark.parametrize("name", REAL)
def test_real_slides_agree_between_the_backends(shared_slides, name):
    pytest.importorskip("openslide", reason="openslide-python (napari-her2[openslide]) is "
                        "not installed")
    path = shared_slides / name
    if not path.exists():
        pytest.skip(f"{path} is not in the shared data")
    native, other = _open(path), _open(path, backend="openslide")
    try:
        assert other.mpp is not None and native.mpp is not None
        assert other.mpp.x == pytest.approx(native.mpp.x, rel=1e-6)
        assert other.mpp.y == pytest.approx(native.mpp.y, rel=1e-6)
        assert other.dimensions == native.dimensions
        assert other.mpp_source == "openslide.mpp-x/y"
        for y, x, h, w in REGIONS:
            a = native.read_region(0, y, x, h, w).astype(np.int16)
            b = other.read_region(0, y, x, h, w).astype(np.int16)
            assert np.abs(a - b).mean() < 1, (y, x)
        # the dask levels read the same pixels as read_region
        y, x, h, w = REGIONS[1]
        lazy = np.asarray(other.levels[0][y : y + h, x : x + w])
        assert np.array_equal(lazy, other.read_region(0, y, x, h, w))
        assert all(a.shape[2] == 3 and a.dtype == np.uint8 for a in other.associated.values())
        assert "macro" in other.associated
        assert np.asarray(other.associated["macro"]).ndim == 3
    finally:
        native.close()
        other.close()
    with pytest.raises(SlideReadError, match="closed"):
        other.read_region(0, 0, 0, 16, 16)
