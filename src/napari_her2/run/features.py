"""Tile features of a slide for multiple-instance learning, in the TRIDENT/CLAM layout.

The slide is tiled exactly as ``score`` tiles it (the same tissue mask, grid and region
handling) but at the encoder's tile size and µm/px, and its tissue tiles go through the same
read-ahead generator (:func:`~napari_her2.run.inference.iter_scoring`), with the encoder in
the predictor's place. What comes out is one embedding per readable tile and the level-0
top-left (x, y) of each tile; :func:`write_features` stores them as ``<stem>.h5``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..classes import NON_TUMOUR
from ..ihc.tissue import TissueMask, detect_tissue
from ..models.encoders import Encoder, load_encoder
from ..params import ScoringParams
from ..predict import Prediction
from ..slide import Slide
from ..tiles.grid import TileGrid, make_grid
from ..tiles.regions import Region, as_region
from .inference import ScoringUpdate, Timings, iter_scoring
from .pipeline import as_slide


class EncoderPredictor:
    """An encoder in a tile predictor's place: every tile "non-tumour" (one class, no call is
    made from it), its embedding in ``Prediction.embeddings``."""

    classes: tuple[str, ...] = (NON_TUMOUR,)
    feature_names: tuple[str, ...] = ()

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.input_size = encoder.input_px

    @property
    def target_mpp(self) -> float:
        return self.encoder.mpp

    @property
    def sha256(self) -> str:
        return self.encoder.sha256

    def predict(self, tiles: np.ndarray) -> Prediction:
        emb = self.encoder.embed(tiles)
        return Prediction(probs=np.ones((len(emb), 1), np.float32),
                          features=np.zeros((len(emb), 0), np.float32), embeddings=emb)

    def describe(self) -> dict[str, Any]:
        return self.encoder.describe()


@dataclass
class PreparedFeatures:
    """Where the tiles of a slide lie, before any is read."""

    slide: Slide
    encoder: Encoder
    params: ScoringParams
    tissue: TissueMask
    grid: TileGrid
    region: Region | None = None


@dataclass
class SlideFeatures:
    """The embeddings of a slide's readable tissue tiles and where the tiles are.

    features: (N, D) float32; coords: (N, 2) int64 level-0 top-left (x, y), in the grid's
    row-major order; n_unreadable: tissue tiles left out because they could not be decoded.
    """

    prepared: PreparedFeatures
    features: np.ndarray
    coords: np.ndarray
    n_unreadable: int
    timings: Timings

    @property
    def slide(self) -> Slide:
        return self.prepared.slide

    @property
    def stem(self) -> str:
        from ..export.atomic import safe_stem

        p = self.slide.path
        return safe_stem(p.stem if p.is_file() else p.name)

    def attrs(self, name: str | None = None) -> dict[str, Any]:
        """The HDF5 attributes (TRIDENT's names where it has them)."""
        prep = self.prepared
        grid, enc = prep.grid, prep.encoder
        mpp0 = self.slide.require_mpp()
        h0, w0 = self.slide.dimensions
        return {
            "patch_size": int(enc.input_px),
            "patch_size_level0": int(round(grid.tile_size0[1])),
            "mpp": float(grid.target_mpp),
            "target_mpp": float(grid.target_mpp),
            "level0_mpp": float(mpp0.x),
            "target_magnification": int(round(10.0 / grid.target_mpp)),
            "level0_magnification": int(round(10.0 / mpp0.x)),
            "overlap": 0,
            "level0_width": int(w0),
            "level0_height": int(h0),
            "name": name or self.stem,
            "coords_order": "level-0 top-left x, y",
            "encoder": enc.name,
            "encoder_sha256": enc.sha256,
            "encoder_dim": int(enc.dim),
            "n_unreadable_tiles": int(self.n_unreadable),
            "region": "" if prep.region is None else "restricted to a region",
            "slide": str(self.slide.path),
            "software": f"napari-her2 {__version__}",
        }


def as_encoder(encoder: Encoder | str, weights: str | os.PathLike | None = None,
               device: str = "cpu") -> Encoder:
    """An encoder from an Encoder or a name/path (see ``load_encoder``)."""
    if isinstance(encoder, Encoder):
        return encoder
    return load_encoder(str(encoder), weights=None if weights is None else Path(weights),
                        device=device)


def prepare_features(slide_or_path: Slide | str | os.PathLike, encoder: Encoder, *,
                     mpp: float | None = None, params: ScoringParams | None = None,
                     region: Region | str | os.PathLike | None = None) -> PreparedFeatures:
    """Open the slide, find its tissue and lay the encoder's grid (within ``region``)."""
    params = params or ScoringParams()
    slide = as_slide(slide_or_path, mpp)
    slide.require_mpp()
    tissue = detect_tissue(slide, params.tissue)
    grid = make_grid(slide, tissue, tile_size=encoder.input_px, target_mpp=encoder.mpp,
                     min_tissue=params.grid.min_tissue)
    area = as_region(region)
    if area is not None:
        area.check_on_slide(slide.dimensions)
        grid = area.restrict(grid)
    return PreparedFeatures(slide, encoder, params, tissue, grid, area)


def tile_coords(grid: TileGrid, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, 2) int64 level-0 top-left (x, y) of grid tiles."""
    th, tw = grid.tile_size0
    x = np.rint(np.asarray(cols, np.float64) * tw)
    y = np.rint(np.asarray(rows, np.float64) * th)
    return np.stack([x, y], axis=1).astype(np.int64).reshape(-1, 2)


def iter_features(slide_or_path: Slide | str | os.PathLike, encoder: Encoder | str, *,
                  weights: str | os.PathLike | None = None, mpp: float | None = None,
                  params: ScoringParams | None = None,
                  region: Region | str | os.PathLike | None = None,
                  cancel: threading.Event | None = None,
                  ) -> Generator[ScoringUpdate, None, SlideFeatures]:
    """Embed every tissue tile of a slide; yield after each batch, return the features."""
    t0 = time.perf_counter()
    params = params or ScoringParams()
    enc = as_encoder(encoder, weights, params.model.device.value)
    prep = prepare_features(slide_or_path, enc, mpp=mpp, params=params, region=region)
    m = params.model
    updates = iter_scoring(prep.slide, EncoderPredictor(enc), prep.grid,
                           batch_size=m.batch_size, workers=m.workers, cancel=cancel)
    timings = Timings()
    while True:
        try:
            update = next(updates)
        except StopIteration as stop:
            results = stop.value
            break
        timings = update.timings
        yield update
    ok = results.readable
    emb = results.embeddings
    features = (emb[ok] if emb is not None else np.zeros((0, enc.dim), np.float32))
    timings.total = time.perf_counter() - t0
    return SlideFeatures(prep, np.ascontiguousarray(features, np.float32),
                         tile_coords(prep.grid, results.rows[ok], results.cols[ok]),
                         int((~ok).sum()), timings)


def extract_features(slide_or_path: Slide | str | os.PathLike, encoder: Encoder | str, *,
                     progress: Callable[[ScoringUpdate], None] | None = None,
                     **kwargs: Any) -> SlideFeatures:
    """:func:`iter_features` drained (``progress`` sees every batch)."""
    steps = iter_features(slide_or_path, encoder, **kwargs)
    while True:
        try:
            update = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(update)


def write_features(result: SlideFeatures, out_dir: str | os.PathLike,
                   stem: str | None = None) -> Path:
    """Write ``<out_dir>/<stem>.h5`` atomically (see :mod:`napari_her2.export.features`)."""
    from ..export.atomic import ensure_out_dir, safe_stem
    from ..export.features import write_features_h5

    name = safe_stem(stem or result.stem)
    out = ensure_out_dir(out_dir) / f"{name}.h5"
    return write_features_h5(out, result.features, result.coords, result.attrs(name))
