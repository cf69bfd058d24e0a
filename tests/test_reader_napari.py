"""The npe2 manifest, the reader entry point and sample data, alone and in a napari viewer."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_her2 import open_slide
from napari_her2._reader import MPP_ENV, get_reader, read_slide_layers, slide_layer_kwargs
from napari_her2._sample_data import CACHE_ENV, SAMPLE_MPP, ihc_sample, sample_slide_path
from napari_her2.slide import MissingMppWarning

PLUGIN = "napari-her2"
MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"
REAL_FILES = ("cmu-1-small-region.svs", "test3-DAPI-2-387.ndpi", "cmu-1-small-region-dicom",
              "kidney-48-5.tif", "small.svs", "boxes.tiff")



def open_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        return open_slide(path, **kw)


@pytest.fixture
def notifications(monkeypatch) -> dict[str, list[str]]:
    """Messages the reader sends to napari's notification area, by severity."""
    seen: dict[str, list[str]] = {"error": [], "warning": []}
    monkeypatch.setattr("napari.utils.notifications.show_error", seen["error"].append)
    monkeypatch.setattr("napari.utils.notifications.show_warning", seen["warning"].append)
    return seen


@pytest.fixture
def sample_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def expected_layer(path: Path) -> tuple[tuple[float, float], str, bool]:
    """(scale, unit, multiscale) the reader must give a file, from open_slide."""
    slide = open_quiet(path)
    multiscale = slide.level_count > 1
    if slide.mpp is None:
        return (1.0, 1.0), "pixel", multiscale
    return (slide.mpp.y, slide.mpp.x), "micrometer", multiscale


def check_image_layer(layer, scale, unit: str, multiscale: bool) -> None:
    assert layer.rgb
    assert layer.multiscale == multiscale
    assert tuple(layer.scale) == pytest.approx(scale)
    assert [str(u) for u in layer.units] == [unit, unit]


# --------------------------------------------------------------------------- manifest


def test_packaged_manifest_is_the_repository_one():
    packaged = importlib.resources.files("napari_her2") / "napari.yaml"
    assert packaged.read_text(encoding="utf-8") == MANIFEST.read_text(encoding="utf-8")


def test_entry_point_points_at_the_manifest():
    eps = importlib.metadata.entry_points(group="napari.manifest")
    assert {ep.name: ep.value for ep in eps}.get(PLUGIN) == "napari_her2:napari.yaml"


def test_manifest_validates_with_npe2():
    import npe2

    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == PLUGIN
    assert [r.command for r in manifest.contributions.readers] == ["napari-her2.get_reader",
                                                                  "napari-her2.get_region_reader"]
    assert [s.key for s in manifest.contributions.sample_data] == ["ihc-sample"]


def test_napari_discovers_the_installed_plugin():
    import npe2

    manager = npe2.PluginManager()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manager.discover()
    assert PLUGIN in {m.name for m in manager.iter_manifests()}


# --------------------------------------------------------------------------- get_reader


@pytest.mark.parametrize("name", ["a.svs", "a.SVS", "a.ndpi", "a.tif", "a.tiff", "a.ome.tif",
                                  "a.ome.tiff", "a.dcm", "missing.svs"])
def test_get_reader_claims_slide_suffixes(tmp_path, name):
    assert get_reader(str(tmp_path / name)) is read_slide_layers
    assert get_reader([str(tmp_path / name)]) is read_slide_layers


def test_get_reader_claims_a_dicom_folder(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"")
    assert get_reader(str(tmp_path)) is read_slide_layers


@pytest.mark.parametrize("path", ["a.bmp", "a.txt", "a.zarr", ["a.svs", "b.svs"], [], 42, None])
def test_get_reader_declines_other_paths(path):
    assert get_reader(path) is None


def test_get_reader_declines_a_folder_without_dicom(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    assert get_reader(str(tmp_path)) is None


# --------------------------------------------------------------------------- read_slide_layers


def test_reader_layer_data(generic_pyramid_tiff, notifications):
    layers = read_slide_layers(str(generic_pyramid_tiff))
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image"
    assert isinstance(data, list) and all(isinstance(d, da.Array) for d in data)
    assert [d.shape for d in data] == [(1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    assert kwargs["rgb"] and kwargs["multiscale"]
    assert kwargs["scale"] == pytest.approx((0.25, 0.25))
    assert kwargs["units"] == ("um", "um")
    assert kwargs["name"] == "generic"
    meta = kwargs["metadata"]["napari_her2"]
    assert meta["mpp"] == pytest.approx([0.25, 0.25])
    assert meta["vendor"] == "generic-tiff"
    assert meta["path"] == str(generic_pyramid_tiff)
    assert notifications == {"error": [], "warning": []}


def test_reader_warns_about_missing_mpp(strip_tiff, notifications, monkeypatch):
    monkeypatch.delenv(MPP_ENV, raising=False)
    [(data, kwargs, _)] = read_slide_layers(str(strip_tiff))
    assert not kwargs["multiscale"] and isinstance(data, da.Array)
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["units"] == ("pixel", "pixel")
    assert kwargs["metadata"]["napari_her2"]["mpp"] is None
    assert len(notifications["warning"]) == 1 and "strip.tif" in notifications["warning"][0]


def test_reader_takes_mpp_from_the_environment(strip_tiff, notifications, monkeypatch):
    monkeypatch.setenv(MPP_ENV, "0.4")
    [(_, kwargs, _)] = read_slide_layers(str(strip_tiff))
    assert kwargs["scale"] == pytest.approx((0.4, 0.4)) and kwargs["units"] == ("um", "um")
    assert kwargs["metadata"]["napari_her2"]["mpp_source"] == "user"
    assert notifications["warning"] == []


def test_reader_ignores_a_non_numeric_environment_mpp(strip_tiff, notifications, monkeypatch):
    monkeypatch.setenv(MPP_ENV, "half a micron")
    [(_, kwargs, _)] = read_slide_layers(str(strip_tiff))
    assert kwargs["scale"] == (1.0, 1.0)
    assert any(MPP_ENV in m for m in notifications["warning"])


def test_reader_bad_input_notifies_and_returns_nothing(bad_input, notifications):
    assert get_reader(str(bad_input)) is read_slide_layers
    assert read_slide_layers(str(bad_input)) == []
    assert len(notifications["error"]) == 1
    message = notifications["error"][0]
    assert str(bad_input) in message and "\n" not in message


@pytest.mark.parametrize("length", [100, 1_400_000])
def test_reader_truncated_real_svs(shared_slides, tmp_path, notifications, length):
    cut = tmp_path / "cut.svs"
    cut.write_bytes((shared_slides / "cmu-1-small-region.svs").read_bytes()[:length])
    assert read_slide_layers(str(cut)) == []
    assert len(notifications["error"]) == 1 and str(cut) in notifications["error"][0]


def test_reader_layer_pixels_can_be_read(generic_pyramid_tiff):
    [(data, _, _)] = read_slide_layers(str(generic_pyramid_tiff))
    assert data[-1].compute().shape == (256, 384, 3)


# --------------------------------------------------------------------------- sample data


def test_sample_data_is_built_offline_in_the_cache(sample_cache, notifications):
    path = sample_slide_path()
    assert path.parent == sample_cache and path.exists()
    built = path.stat().st_mtime_ns
    [(data, kwargs, kind)] = ihc_sample()
    assert kind == "image" and kwargs["multiscale"] and len(data) > 1
    assert kwargs["scale"] == pytest.approx((SAMPLE_MPP, SAMPLE_MPP))
    assert path.stat().st_mtime_ns == built  # reused, not rebuilt
    with open_quiet(path) as slide:
        thumb = slide.levels[-1].compute()
    assert thumb.min() < 200 < thumb.max()  # stained tissue on white background
    assert notifications["error"] == []


# --------------------------------------------------------------------------- in a viewer


@pytest.mark.parametrize("name", REAL_FILES)
def test_our_layer_kwargs_in_a_viewer(make_napari_viewer, shared_slides, name):
    """napari accepts the layer arguments (multiscale RGB, scale in µm, units)."""
    viewer = make_napari_viewer()
    slide = open_quiet(shared_slides / name)
    kwargs = dict(slide_layer_kwargs(slide))
    data = slide.levels if kwargs["multiscale"] else slide.levels[0]
    layer = viewer.add_image(data, **kwargs)
    check_image_layer(layer, *expected_layer(shared_slides / name))
    assert layer.metadata["napari_her2"]["vendor"] == slide.vendor
    slide.close()


@pytest.mark.parametrize("name", REAL_FILES)
def test_viewer_opens_real_files_with_the_plugin(make_napari_viewer, shared_slides, name):
    path = shared_slides / name
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = viewer.layers[0]
    check_image_layer(layer, *expected_layer(path))
    meta = layer.metadata["napari_her2"]
    assert meta["path"] == str(path)
    smallest = layer.data[-1] if layer.multiscale else layer.data
    assert np.asarray(smallest).dtype == np.uint8


def test_viewer_opens_the_sample_data(make_napari_viewer, sample_cache):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "ihc-sample")
    assert len(viewer.layers) == 1
    layer = viewer.layers[0]
    check_image_layer(layer, (SAMPLE_MPP, SAMPLE_MPP), "micrometer", True)
    assert np.asarray(layer.data[-1]).std() > 0
    assert (sample_cache / sample_slide_path().name).exists()


def test_viewer_unreadable_file_gives_no_layer(make_napari_viewer, tmp_path, notifications):
    bad = tmp_path / "notes.svs"
    bad.write_text("not a slide")
    viewer = make_napari_viewer()
    try:
        viewer.open(str(bad), plugin=PLUGIN)
    except ValueError as err:
        # napari itself refuses a chosen reader that returned no layers; nothing of ours leaks
        assert "returned no data" in str(err), err
    assert len(viewer.layers) == 0
    assert len(notifications["error"]) == 1 and str(bad) in notifications["error"][0]
