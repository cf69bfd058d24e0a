"""The work behind each ``her2-train`` subcommand, callable from Python.

Each writes a run folder: ``config.json``, ``manifest.json`` (files + sha256), ``metrics.json``,
``plots/`` and the checkpoint, with ``states/`` (resumable) and ``cache/`` (tiles, embeddings).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from .config import TileTrainConfig
from .data import file_sha256, load_dataset, manifest
from .features_h5 import load_feature_bags
from .image_level import ImageFeatures, TileModel, load_features
from .labels import discover
from .mil import MILConfig, run_mil
from .plots import plot_confusions, plot_curves
from .runs import RunFolder, software
from .tile_training import run_tiles
from .whspn import WHSPNConfig, run_whspn

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataArgs:
    """Where the data is: training folder, labels, µm/px; optional external test folder."""

    data: Path
    labels: Path | None = None
    mpp: float | None = None
    external: Path | None = None
    external_labels: Path | None = None
    external_mpp: float | None = None
    max_tiles: int = 400
    min_tissue: float = 0.5
    #: what the data is (licence, provenance, µm/px source), for the model cards
    description: str = ""

    def card_text(self) -> str:
        text = self.description or str(self.data)
        if self.external is not None and not self.description:
            text += f". External test set (never trained on): {self.external}"
        return text


def _feature_manifest(feats: list[ImageFeatures]) -> list[dict[str, Any]]:
    return [{"file": str(f.image.path), "sha256": file_sha256(f.image.path),
             "label": int(f.image.label), "group": f.image.group,
             "n_tiles": int(len(f.probs))} for f in feats]


def _write_config(run: RunFolder, command: str, data: DataArgs, config: Any,
                  **extra: Any) -> None:
    run.write("config.json", {"command": command, "data": dataclasses.asdict(data),
                              "config": config.to_dict(), "software": software(), **extra})


def train_tiles(data: DataArgs, config: TileTrainConfig, out: Path, *,
                cache: Path | None = None, name: str | None = None,
                progress: bool = True) -> dict[str, Any]:
    """``her2-train tiles``: CV + final tile model + external test, in a run folder."""
    run = RunFolder.create(out, cache)
    spec = dataclasses.replace(config.tiles, slide_mpp=data.mpp, max_tiles=data.max_tiles,
                               min_tissue=data.min_tissue)
    config = dataclasses.replace(config, tiles=spec)
    _write_config(run, "tiles", data, config)
    images = load_dataset(discover(data.data, data.labels), spec, run.cache)
    external = None
    if data.external is not None:
        ext_spec = dataclasses.replace(spec, slide_mpp=data.external_mpp)
        external = load_dataset(discover(data.external, data.external_labels), ext_spec,
                                run.cache)
    run.write("manifest.json", {"train": manifest(images),
                                "external": manifest(external) if external else []})
    return run_tiles(images, config, run, external=external, name=name,
                     training_data=data.card_text(), progress=progress)


def _slide_features(data: DataArgs, tile_model: TileModel,
                    run: RunFolder) -> tuple[list[ImageFeatures], list[ImageFeatures] | None]:
    feats = load_features(discover(data.data, data.labels), tile_model, run.cache,
                          max_tiles=data.max_tiles, slide_mpp=data.mpp,
                          min_tissue=data.min_tissue)
    external = None
    if data.external is not None:
        external = load_features(discover(data.external, data.external_labels), tile_model,
                                 run.cache, max_tiles=data.max_tiles,
                                 slide_mpp=data.external_mpp, min_tissue=data.min_tissue)
    run.write("manifest.json", {"train": _feature_manifest(feats),
                                "external": _feature_manifest(external) if external else [],
                                "tile_model": {"path": str(tile_model.path),
                                               "sha256": tile_model.card.sha256}})
    return feats, external


def _recorded(run: RunFolder, metrics: dict[str, Any]) -> dict[str, Any]:
    """A slide-level run's metrics with the software versions, written to
    ``metrics.json`` with their plots."""
    metrics["software"] = software()
    run.write("metrics.json", metrics)
    _slide_plots(run, metrics)
    return metrics


def _slide_plots(run: RunFolder, metrics: dict[str, Any]) -> None:
    if metrics.get("history"):
        plot_curves({"final": metrics["history"]}, run.plot("training_curve.png"))
    if metrics.get("external"):
        plot_confusions(metrics["external"], run.plot("confusion_external.png"))
    cv = metrics.get("cross_validation")
    if cv:
        plot_confusions(cv["folds"][-1], run.plot("confusion_cv_last_fold.png"))


def train_mil(data: DataArgs, tile_model: Path, config: MILConfig, out: Path, *,
              cache: Path | None = None, name: str = "abmil",
              progress: bool = True) -> dict[str, Any]:
    """``her2-train mil``: attention MIL over a frozen tile model's embeddings."""
    run = RunFolder.create(out, cache)
    tm = TileModel.load(tile_model)
    _write_config(run, "mil", data, config, tile_model=str(tile_model))
    feats, external = _slide_features(data, tm, run)
    metrics = run_mil(feats, tm, config, run.root, external=external, name=name,
                      training_data=data.card_text(), progress=progress)
    return _recorded(run, metrics)


def train_mil_features(data: DataArgs, config: MILConfig, out: Path, *,
                       max_tiles: int | None = None, name: str = "abmil",
                       progress: bool = True) -> dict[str, Any]:
    """``her2-train mil --features``: attention MIL over the bags of shared feature files
    (``data.data``: a folder of ``<stem>.h5``; ``data.labels``: slide stem -> score; the
    external folder, when given, holds feature files of the same encoder)."""
    run = RunFolder.create(out)
    _write_config(run, "mil", data, config, features=True, max_tiles=max_tiles)
    feats, encoder = load_feature_bags(data.data, data.labels, max_tiles=max_tiles)
    external = None
    if data.external is not None:
        external, _ = load_feature_bags(data.external, data.external_labels,
                                        max_tiles=max_tiles, encoder=encoder)
    run.write("manifest.json", {"train": _feature_manifest(feats),
                                "external": _feature_manifest(external) if external else [],
                                "encoder": encoder.card_block()})
    metrics = run_mil(feats, encoder, config, run.root, external=external, name=name,
                      training_data=data.card_text(), progress=progress)
    return _recorded(run, metrics)


def train_whspn(data: DataArgs, tile_model: Path, config: WHSPNConfig, out: Path, *,
                cache: Path | None = None, name: str | None = None) -> dict[str, Any]:
    """``her2-train whspn``: WHSPN over a frozen tile model's tile-class fractions."""
    run = RunFolder.create(out, cache)
    tm = TileModel.load(tile_model)
    _write_config(run, "whspn", data, config, tile_model=str(tile_model))
    feats, external = _slide_features(data, tm, run)
    metrics = run_whspn(feats, tm, config, run.root, external=external, name=name,
                        training_data=data.card_text())
    return _recorded(run, metrics)

