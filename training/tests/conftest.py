"""Tiny labelled datasets built in tmp folders from scikit-image's IHC image.

Each class gets a different DAB strength (colour deconvolution, DAB channel scaled), so a
small model can learn the classes in a few epochs. Images are tiled TIFFs with a
resolution tag (µm/px), which every napari-her2 version opens.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

MPP = 0.5
SIZE = 512
DAB_SCALE = (0.05, 0.6, 1.4, 2.6)
CLASS_DIRS = ("0", "1+", "2+", "3+")
SHARED_ENV = "NAPARI_HER2_SHARED_DATA"


def ihc_image(label: int, index: int, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8 IHC-like pixels whose DAB strength depends on the label."""
    from skimage.color import hed2rgb, rgb2hed
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    y0 = (index * 97) % (base.shape[0] - size // 2)
    crop = base[y0:y0 + size // 2, :size // 2]
    crop = np.concatenate([crop, crop[:, ::-1]], axis=1)
    crop = np.concatenate([crop, crop[::-1]], axis=0)
    hed = rgb2hed(crop)
    hed[..., 2] *= DAB_SCALE[label]
    return (np.clip(hed2rgb(hed), 0, 1) * 255).astype(np.uint8)


def write_tiff(path: Path, rgb: np.ndarray, mpp: float = MPP) -> Path:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER",
                     photometric="rgb", tile=(256, 256))
    return path


def make_dataset(root: Path, per_class: int = 2, classes: tuple[int, ...] = (0, 1, 2, 3),
                 layout: str = "folders", offset: int = 0) -> Path:
    """A labelled folder: ``folders`` (DATA/<score>/img.tif) or ``bci`` (NNNNN_train_2+.tif)."""
    for label in classes:
        for i in range(per_class):
            rgb = ihc_image(label, i + offset + 3 * label)
            if layout == "folders":
                path = root / CLASS_DIRS[label] / f"img{i}.tif"
            else:
                path = root / f"{label * 10 + i:05d}_train_{CLASS_DIRS[label]}.tif"
            write_tiff(path, rgb)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """8 images, 2 per class, labels from folder names."""
    return make_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_external(tmp_path_factory) -> Path:
    """4 images in the BCI naming convention (an external test set)."""
    return make_dataset(tmp_path_factory.mktemp("ext"), per_class=1, layout="bci", offset=5)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    env = os.environ.get(SHARED_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (path / "her2-ihc-tma").is_dir():
        pytest.skip(f"shared real data not found at {path} (set {SHARED_ENV})")
    return path
