"""Shared fixtures: the real test files (skipped when absent) and slides built in tmp folders.

Real files live outside the repository in ``../shared/data`` (never copied in); set
``NAPARI_HER2_SHARED_DATA`` to point elsewhere. Everything else is built here from
``skimage.data.immunohistochemistry()`` so the suite runs on any machine.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from data_paths import SHARED_DATA_ENV, shared_data_dir

# CI runs the same examples every time (a failure there is reproducible, never a fluke of
# the draw); locally hypothesis keeps exploring new ones
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: Aperio ImageDescription of the synthetic SVS-like files (first line, then key = value pairs)
APERIO_DESCRIPTION = (
    "Aperio Image Library v12.0.15\n"
    "{w}x{h} [0,0 {w}x{h}] (256x256) J2K/KDU Q=70|AppMag = 20|MPP = 0.2500"
)
SYNTHETIC_MPP = 0.25


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real test data folder; the test is skipped when it is absent."""
    path = shared_data_dir()
    if not (path / "slides").is_dir():
        pytest.skip(
            f"real test data not found at {path} (set {SHARED_DATA_ENV} to the shared/data "
            "folder to run the tests on real slides)"
        )
    return path


@pytest.fixture(scope="session")
def shared_slides(shared_data: Path) -> Path:
    return shared_data / "slides"


# --------------------------------------------------------------------------- synthetic pixels


def ihc_mosaic(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 IHC-looking pixels: flipped copies of skimage's IHC image."""
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    h, w = base.shape[:2]
    rows = []
    for r in range(-(-height // h)):
        row = [base[:: -1 if r % 2 else 1, :: -1 if c % 2 else 1] for c in range(-(-width // w))]
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


@pytest.fixture(scope="session")
def ihc_rgb() -> np.ndarray:
    """A 1024 x 1536 RGB image (not a multiple of every tile size on purpose: see crops)."""
    return ihc_mosaic(1024, 1536)


@pytest.fixture(scope="session")
def make_ihc():
    """``make_ihc(height, width)``: IHC-looking RGB pixels of any size."""
    return ihc_mosaic


# --------------------------------------------------------------------------- synthetic slides


@pytest.fixture(scope="session")
def generic_pyramid_tiff(tmp_path_factory, ihc_rgb) -> Path:
    """Generic tiled JPEG pyramid (one page per level), 0.25 µm/px in resolution tags."""
    from napari_her2.slide import write_pyramid_tiff

    path = tmp_path_factory.mktemp("generic") / "generic.tif"
    return write_pyramid_tiff(path, ihc_rgb, SYNTHETIC_MPP, tile=256, compression="jpeg")


@pytest.fixture(scope="session")
def ome_pyramid_tiff(tmp_path_factory, ihc_rgb) -> Path:
    """OME-TIFF pyramid (lower levels in SubIFDs), lossless, PhysicalSize 0.25 µm."""
    from napari_her2.slide import write_pyramid_tiff

    path = tmp_path_factory.mktemp("ome") / "pyramid.ome.tif"
    return write_pyramid_tiff(path, ihc_rgb, SYNTHETIC_MPP, tile=256, compression="zlib", ome=True)


@pytest.fixture(scope="session")
def strip_tiff(tmp_path_factory, ihc_rgb) -> Path:
    """Single-level, strip-organised, deflate RGB TIFF (no resolution given)."""
    import tifffile

    path = tmp_path_factory.mktemp("strip") / "strip.tif"
    tifffile.imwrite(path, ihc_rgb[:700, :900], photometric="rgb", compression="zlib",
                     rowsperstrip=32)
    return path


@pytest.fixture(scope="session")
def big_single_level_tiff(tmp_path_factory) -> Path:
    """5000 x 5000 single-level JPEG strip TIFF (64-row full-width strips), 0.5 µm/px."""
    import tifffile

    path = tmp_path_factory.mktemp("big") / "big.tif"
    tifffile.imwrite(path, ihc_mosaic(5000, 5000), photometric="rgb", compression="jpeg",
                     rowsperstrip=64, resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    return path


def write_svs_like(path: Path, image: np.ndarray, tiles_for) -> Path:
    """An Aperio-like SVS: level 0, thumbnail, level 1 (tiled via ``tiles_for``), label, macro.

    tiles_for(level_image) returns (compression, iterable of encoded tile bytes or None);
    None lets tifffile encode with that compression.
    """
    import tifffile

    h, w = image.shape[:2]
    level1 = image[::2, ::2]
    thumb = np.ascontiguousarray(image[::8, ::8])
    label = np.full((96, 128, 3), 240, np.uint8)
    macro = np.ascontiguousarray(image[::4, ::4][:128, :320])
    with tifffile.TiffWriter(path) as tw:
        for i, lvl in enumerate((image, None, level1)):
            if lvl is None:
                tw.write(thumb, photometric="rgb", compression="jpeg", metadata=None,
                         description=f"Aperio Image Library v12.0.15\n{w}x{h} -> "
                         f"{thumb.shape[1]}x{thumb.shape[0]}")
                continue
            compression, tiles = tiles_for(lvl)
            lh, lw = lvl.shape[:2]
            desc = APERIO_DESCRIPTION.format(w=lw, h=lh) if i == 0 else (
                f"Aperio Image Library v12.0.15\n{w}x{h} -> {lw}x{lh}")
            if tiles is None:
                tw.write(lvl, tile=(256, 256), photometric="rgb", compression=compression,
                         compressionargs={"reversible": True}, description=desc, metadata=None)
            else:
                tw.write(tiles, shape=lvl.shape, dtype=np.uint8, tile=(256, 256),
                         photometric="rgb", compression=compression, description=desc,
                         metadata=None)
        tw.write(label, photometric="rgb", compression="lzw", subfiletype=1, metadata=None,
                 description="Aperio Image Library v12.0.15\nlabel 128x96")
        tw.write(macro, photometric="rgb", compression="jpeg", subfiletype=9, metadata=None,
                 description="Aperio Image Library v12.0.15\nmacro 320x128")
    return path


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range (JFIF) BT.601 YCbCr, as Aperio stores 33003 JPEG 2000 components."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _ycbcr_j2k_tiles(image: np.ndarray):
    """Tiles of ``image`` as raw J2K codestreams of YCbCr components (no colour transform)."""
    import imagecodecs

    ycc = rgb_to_ycbcr(image)
    h, w = ycc.shape[:2]
    for y in range(0, h, 256):
        for x in range(0, w, 256):
            tile = np.full((256, 256, 3), 0, np.uint8)
            part = ycc[y : y + 256, x : x + 256]
            tile[: part.shape[0], : part.shape[1]] = part
            yield imagecodecs.jpeg2k_encode(tile, level=0, codecformat="J2K", reversible=True,
                                            mct=False)


def write_tiled_tiff(path: Path, image: np.ndarray, *, compression="jpeg", tile=256) -> Path:
    """A single-level tiled RGB TIFF at 0.25 µm/px (image directory first, tiles after)."""
    import tifffile

    res = 1e4 / SYNTHETIC_MPP
    tifffile.imwrite(path, image, photometric="rgb", tile=(tile, tile), compression=compression,
                     resolution=(res, res), resolutionunit="CENTIMETER", metadata=None)
    return path


@pytest.fixture(scope="session")
def make_tiled_tiff():
    """``make_tiled_tiff(path, image, compression=..., tile=...)``: a single-level tiled TIFF."""
    return write_tiled_tiff


# --------------------------------------------------------------------------- bad input

#: kinds of unreadable input; each must give a one-line SlideReadError naming the file
BAD_INPUT_KINDS = (
    "empty-file",
    "text-renamed-svs",
    "missing-path",
    "tiff-without-image-data",
    "rgb-16-bit",
    "grayscale",
    "grayscale-tiled-jpeg",
    "truncated-tiled-tiff",
)


def make_bad_input(kind: str, folder: Path) -> Path:
    """Build one kind of bad input in ``folder`` and return its path."""
    import tifffile

    if kind == "empty-file":
        path = folder / "empty.svs"
        path.write_bytes(b"")
    elif kind == "text-renamed-svs":
        path = folder / "notes.svs"
        path.write_text("this is a text file, not a slide\n")
    elif kind == "missing-path":
        path = folder / "does-not-exist.svs"
    elif kind == "tiff-without-image-data":
        path = folder / "no-image.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tifffile: zero-size array
            tifffile.imwrite(path, np.zeros((0, 0), np.uint8))
    elif kind == "rgb-16-bit":
        path = folder / "rgb16.tif"
        tifffile.imwrite(path, np.full((64, 64, 3), 40000, np.uint16), photometric="rgb")
    elif kind == "grayscale":
        path = folder / "gray.tif"
        tifffile.imwrite(path, np.zeros((64, 64), np.uint8))
    elif kind == "grayscale-tiled-jpeg":
        path = folder / "gray-tiled.tif"
        tifffile.imwrite(path, np.zeros((512, 512), np.uint8), tile=(256, 256),
                         compression="jpeg")
    elif kind == "truncated-tiled-tiff":
        whole = write_tiled_tiff(folder / "whole.tif", ihc_mosaic(512, 768))
        path = folder / "truncated.tif"
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(kind)
    return path


@pytest.fixture(params=BAD_INPUT_KINDS)
def bad_input(request, tmp_path) -> Path:
    """Each kind of unreadable input in turn, built in tmp_path."""
    return make_bad_input(request.param, tmp_path)


@pytest.fixture(scope="session")
def svs_jp2k_rgb(tmp_path_factory, ihc_rgb) -> Path:
    """SVS-like file with Aperio JPEG 2000 RGB tiles (compression 33005), lossless."""
    path = tmp_path_factory.mktemp("svs33005") / "jp2k-rgb.svs"
    return write_svs_like(path, ihc_rgb, lambda lvl: (33005, None))


@pytest.fixture(scope="session")
def svs_jp2k_ycbcr(tmp_path_factory, ihc_rgb) -> Path:
    """SVS-like file with Aperio JPEG 2000 YCbCr tiles (compression 33003), as Aperio writes
    them: each tile a J2K codestream of Y, Cb, Cr components without a colour transform."""
    path = tmp_path_factory.mktemp("svs33003") / "jp2k-ycbcr.svs"
    return write_svs_like(path, ihc_rgb, lambda lvl: (33003, _ycbcr_j2k_tiles(lvl)))


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_folders(tmp_path_factory):
    """Tests never read the user's models folder nor write into the user's cache."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("user")
    mp.setenv("NAPARI_HER2_MODELS", str(root / "models"))
    mp.setenv("NAPARI_HER2_CACHE", str(root / "cache"))
    yield
    mp.undo()


# --------------------------------------------------------------------------- the dock widget


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    """A small 2 x 2 IHC mosaic at 0.5 µm/px, opened by the widget tests as ``ihc-small``."""
    from napari_her2._sample_data import ihc_mosaic as mosaic
    from napari_her2.slide import write_pyramid_tiff

    path = tmp_path_factory.mktemp("widget") / "ihc-small.tif"
    write_pyramid_tiff(path, mosaic(rows=2, cols=2, gap=64), 0.5, tile=256)
    return path


@pytest.fixture
def viewer_widget(make_napari_viewer, small_slide):
    """A viewer with ``small_slide`` open and the HER2 scoring widget docked."""
    from napari_her2._qt.widget import Her2ScoringWidget

    viewer = make_napari_viewer()
    viewer.open(str(small_slide), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    assert isinstance(widget, Her2ScoringWidget)
    yield viewer, widget
    widget.jobs.stop()


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Per test: no user checkpoints or sample cache leak in, and nothing one test writes there
    is seen by the next (stricter than the session-wide isolation)."""
    monkeypatch.setenv("NAPARI_HER2_MODELS", str(tmp_path / "user-models"))
    monkeypatch.setenv("NAPARI_HER2_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def borderline_calls(monkeypatch):
    """Every slide call of ``run.pipeline`` becomes borderline 0 / 1+ (0 in 48% of the
    resamplings, 1+ in 45%), whatever the tiles say."""
    from dataclasses import replace

    from napari_her2.run import pipeline

    real = pipeline.call_slide

    def borderline(results, **kwargs):
        call = real(results, **kwargs)
        shares = {"0": 0.48, "1+": 0.45, "2+": 0.07, "3+": 0.0}
        return replace(call, score="0", category="negative", confidence=0.48,
                       borderline=("0", "1+"),
                       evidence=replace(call.evidence, score_shares=shares))

    monkeypatch.setattr(pipeline, "call_slide", borderline)
