"""The benchmark slide of real HER2 IHC pixels: a JPEG-tiled pyramidal TIFF mosaicked from
the BCI patches in ../shared/data/her2-ihc-bci (1024 px each).

Level 0 is a ``scale`` x ``scale`` grid of the patches (each row shifted by one patch, so no
two neighbours repeat in a column), 256 px tiles, JPEG quality 90 (YCbCr 4:2:0, as tifffile
writes JPEG tiles); each further level is the previous one averaged over 4 x 4 px, down to
1024 px or less on the short side. The resolution tags say 0.5 µm/px at level 0. Without the
shared patches, ``skimage.data.immunohistochemistry()`` (512 px, in scikit-image) is tiled
instead and the label says so.

    .venv/bin/python benchmarks/bci_fixture.py OUT.tif [SCALE]     # SCALE 8: 8192 px
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BCI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "her2-ihc-bci"
TILE = 256
QUALITY = 90
MPP = 0.5
#: levels are made until the short side is at most this (as the view benchmark's slide)
MIN_SIDE = 1024
STEP = 4


def patches() -> tuple[list[np.ndarray], str]:
    """The RGB patches the mosaic is made of, and where they come from."""
    files = sorted(BCI.glob("*.png")) if BCI.is_dir() else []
    if files:
        from PIL import Image

        images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        side = min(min(i.shape[:2]) for i in images)
        return [i[:side, :side] for i in images], f"BCI patches ({len(images)})"
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    return [np.rot90(base, k) for k in range(4)], "skimage IHC image (no BCI patches here)"


def mosaic(pieces: list[np.ndarray], scale: int) -> np.ndarray:
    """scale x scale pieces; row r starts at piece r (mod the number of pieces)."""
    side = pieces[0].shape[0]
    out = np.empty((side * scale, side * scale, 3), np.uint8)
    for r in range(scale):
        for c in range(scale):
            out[r * side : (r + 1) * side, c * side : (c + 1) * side] = pieces[(r + c) % len(pieces)]
    return out


def pyramid(image: np.ndarray) -> list[np.ndarray]:
    levels = [image]
    while min(levels[-1].shape[:2]) > MIN_SIDE:
        a = levels[-1]
        h, w = a.shape[0] // STEP * STEP, a.shape[1] // STEP * STEP
        a = a[:h, :w].reshape(h // STEP, STEP, w // STEP, STEP, 3).mean(axis=(1, 3))
        levels.append(np.rint(a).astype(np.uint8))
    return levels


def build(path: Path, scale: int) -> str:
    """Write the mosaic slide to ``path``; returns what its pixels are."""
    import tifffile

    pieces, source = patches()
    levels = pyramid(mosaic(pieces, scale))
    per_cm = 1e4 / MPP
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, level in enumerate(levels):
            tw.write(level, tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                     compressionargs={"level": QUALITY},
                     resolution=(per_cm / STEP**i, per_cm / STEP**i),
                     resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1)
    return source


def fixture(folder: Path, scale: int) -> tuple[Path, str]:
    """The mosaic slide of ``scale`` in ``folder``, built unless it is there already."""
    path = folder / f"bci-mosaic-{scale}.tif"
    source = f"BCI patches ({len(list(BCI.glob('*.png')))})" if BCI.is_dir() else "skimage IHC"
    if not path.is_file():
        tmp = path.with_suffix(".part")
        source = build(tmp, scale)
        tmp.replace(path)
    return path, source


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print(build(out, int(sys.argv[2]) if len(sys.argv) > 2 else 8), "->", out)
