"""Offline sample data: an IHC slide built at first use from pixels shipped with scikit-image.

The slide mosaics ``skimage.data.immunohistochemistry()`` (a DAB + haematoxylin IHC image) in
flipped and rotated copies with background gaps into a tiled JPEG pyramidal TIFF at a
declared 0.5 µm/px, written once into a cache folder and opened through the plugin's reader.
It is a demonstration slide, not a HER2 case.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .slide import write_pyramid_tiff

#: environment variable overriding the cache folder
CACHE_ENV = "NAPARI_HER2_CACHE"
SAMPLE_NAME = "ihc-sample-v1.tif"
SAMPLE_MPP = 0.5


def cache_dir() -> Path:
    """Folder for built sample data (``$NAPARI_HER2_CACHE`` or ``~/.cache/napari-her2``)."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root) if root else Path.home() / ".cache" / "napari-her2"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ihc_mosaic(rows: int = 3, cols: int = 4, gap: int = 96) -> np.ndarray:
    """The mosaic's pixels: rows x cols transformed copies of the IHC image on white."""
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    h, w = base.shape[:2]
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c
            piece = np.rot90(base, k % 4)
            if (k // 4) % 2:
                piece = piece[:, ::-1]
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            canvas[y : y + h, x : x + w] = piece
    return canvas


def sample_slide_path() -> Path:
    """Path of the sample slide, built on first use."""
    path = cache_dir() / SAMPLE_NAME
    if not path.exists():
        write_pyramid_tiff(path, ihc_mosaic(), SAMPLE_MPP, tile=256, compression="jpeg")
    return path


def ihc_sample() -> list[tuple]:
    """npe2 sample-data command: the IHC sample slide as a multiscale layer."""
    from ._reader import read_slide_layers

    return read_slide_layers(str(sample_slide_path()))
