"""npe2 reader: a slide file becomes one multiscale RGB image layer scaled in microns.

``get_reader`` never raises: it returns None for paths it does not handle. Errors of a file it
claimed are shown to the user as a notification naming the file and the reason, and the
reader then returns an empty layer list.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import Her2Error
from .slide import MissingMppWarning, Slide, is_slide_path, open_slide

log = logging.getLogger(__name__)

#: environment variable giving the µm/px of slides whose metadata has none
MPP_ENV = "NAPARI_HER2_MPP"


def get_reader(path: str | list[str]) -> Callable | None:
    """Return the slide reader for a path napari-her2 handles, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike):
        return None
    return read_slide_layers if is_slide_path(path) else None


#: QuPath GeoJSON annotations open as a Shapes layer over their slide
REGION_SUFFIX = ".geojson"


def get_region_reader(path: str | list[str]) -> Callable | None:
    """Return the region reader for one QuPath ``.geojson`` file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike) or not str(path).lower().endswith(REGION_SUFFIX):
        return None
    return read_region_layers


def read_region_layers(path: str | list[str], mpp: float | None = None) -> list[tuple]:
    """A QuPath GeoJSON region as a Shapes layer in the microns of the slide beside it
    (``<stem>.*``; else ``mpp`` or $NAPARI_HER2_MPP; else pixels), or [] after notifying."""
    from .tiles.regions import read_geojson_region, region_layer_kwargs

    region_path = Path(path[0] if isinstance(path, list) else path)
    try:
        region = read_geojson_region(region_path)
    except Her2Error as err:
        _notify_error(str(err))
        return []
    mpp = mpp or _slide_mpp_beside(region_path) or _env_mpp()
    if mpp is None:
        _notify_warning(f"{region_path.name}: no slide with a µm/px beside it; the region is "
                        "drawn in level-0 pixels")
    data, kwargs = region_layer_kwargs(region, None if mpp is None else (mpp, mpp),
                                       f"{region_path.stem} region")
    return [(data, kwargs, "shapes")]


def _slide_mpp_beside(path: Path) -> float | None:
    """µm/px (x) of the slide ``<stem>.*`` in the region file's folder, when it gives one."""
    for candidate in sorted(path.parent.glob(f"{path.stem}.*")):
        if candidate != path and is_slide_path(candidate):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with open_slide(candidate) as slide:
                        return None if slide.mpp is None else float(slide.mpp.x)
            except Her2Error:
                continue
    return None


def read_slide_layers(path: str | list[str], mpp: float | None = None) -> list[tuple]:
    """Layer data for napari: [(levels, kwargs, "image")], or [] after notifying an error."""
    if isinstance(path, list):
        path = path[0]
    if mpp is None:
        mpp = _env_mpp()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingMppWarning)
            slide = open_slide(path, mpp=mpp)
    except Her2Error as err:
        _notify_error(str(err))
        return []
    for w in caught:
        if issubclass(w.category, MissingMppWarning):
            _notify_warning(
                f"{Path(path).name}: no microns per pixel in the file; distances are in pixels. "
                "Enter the value in the HER2 scoring widget ('Slide µm/px') before scoring."
            )
    kwargs = dict(slide_layer_kwargs(slide))
    data = slide.levels if kwargs["multiscale"] else slide.levels[0]
    return [(data, kwargs, "image")]


def slide_layer_kwargs(slide: Slide) -> Mapping[str, Any]:
    """napari Image layer keyword arguments for a slide: multiscale RGB in microns.

    ``metadata["napari_her2"]["slide"]`` keeps the open :class:`Slide` itself, so that the
    scoring widget reads through it instead of opening the file again."""
    mpp = slide.mpp
    scale = (mpp.y, mpp.x) if mpp is not None else (1.0, 1.0)
    units = "um" if mpp is not None else "pixel"
    return {
        "name": slide.path.stem,
        "rgb": True,
        "multiscale": len(slide.levels) > 1,
        "scale": scale,
        "units": (units, units),
        "metadata": {
            "napari_her2": {
                "path": str(slide.path),
                "mpp": None if mpp is None else [mpp.x, mpp.y],
                "mpp_source": slide.mpp_source,
                "vendor": slide.vendor,
                "magnification": slide.magnification,
                "downsamples": [list(d) for d in slide.downsamples],
                "slide": slide,
            }
        },
    }


def _env_mpp() -> float | None:
    value = os.environ.get(MPP_ENV)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        _notify_warning(f"{MPP_ENV}={value!r} is not a number; ignored")
        return None


def _notify_error(message: str) -> None:
    log.error(message)
    try:
        from napari.utils.notifications import show_error
    except ImportError:
        return
    show_error(message)


def _notify_warning(message: str) -> None:
    log.warning(message)
    try:
        from napari.utils.notifications import show_warning
    except ImportError:
        return
    show_warning(message)
