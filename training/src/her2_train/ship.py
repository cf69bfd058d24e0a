"""``her2-train ship``: rebuild napari-her2's demo checkpoints in one command.

Trains, only on the HER2 IHC tissue-microarray cores of Pisula et al. 2023 (Apache-2.0,
``her2-ihc-tma``: 7 oesophageal adenocarcinoma cores, one label per core), a small
``her2-resnet`` tile model, an ``abmil`` over its embeddings and a ``whspn-mlp`` over its
tile-class fractions, each cross-validated over cores. The BCI patches (non-commercial
terms) are used only as the external test set, never for training.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from .commands import DataArgs, train_mil, train_tiles, train_whspn
from .config import TileTrainConfig, preset
from .data import TileSpec
from .mil import MILConfig
from .runs import software, write_json
from .whspn import WHSPNConfig

log = logging.getLogger(__name__)

TMA_MPP = 0.25  # estimated from nuclear size and core diameter: the source gives none
BCI_MPP = 0.5  # assumed (20x); BCI's patches carry no resolution
NAMES = {"tiles": "her2-resnet-tma", "mil": "abmil-tma", "whspn": "whspn-mlp-tma"}
TMA_TEXT = (f"her2-ihc-tma (Pisula et al., Br J Cancer 2023; bozeklab/HER2-overexpression "
            f"example images, Apache-2.0): 7 HER2 IHC TMA cores of oesophageal "
            f"adenocarcinoma, labels per core (ihc_score 0/1/2; no 3+ core), µm/px "
            f"{TMA_MPP} ESTIMATED (the source gives none)")
EXTERNAL_TEXT = (f"External test only: 4 BCI patches (Liu et al. 2022; non-commercial terms; "
                 f"label = score of the whole slide, not the patch; µm/px {BCI_MPP} assumed)")

SLIDE_CV_NOTE = ("Cross-validation of this slide model uses the features of the tile model "
                 "trained on all 7 cores, which has seen every test core: its CV figures are "
                 "optimistic; the external figures are not")


@dataclasses.dataclass(frozen=True)
class ShipConfig:
    """Sizes chosen so that the whole rebuild runs on 2 CPU cores in a few minutes."""

    tile_size: int = 64
    target_mpp: float = 1.0
    max_tiles: int = 200
    epochs: int = 10
    folds: int = 4
    mil_epochs: int = 30
    seed: int = 0


def _copy(src: Path, out: Path) -> Path:
    dst = out / src.name
    shutil.copyfile(src, dst)
    return dst


def ship(data: Path, external: Path | None, out: Path, cfg: ShipConfig = ShipConfig(), *,
         progress: bool = True) -> dict[str, Any]:
    """Train the three shipped models; checkpoints in ``out``, runs in ``out/runs``."""
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    text = TMA_TEXT + (f". {EXTERNAL_TEXT}" if external else "")
    args = DataArgs(data=data, mpp=TMA_MPP, external=external,
                    external_mpp=BCI_MPP if external else None, max_tiles=cfg.max_tiles,
                    description=text)
    t0 = time.perf_counter()
    tile_cfg = TileTrainConfig(
        arch="her2-resnet", preset="default",
        # fixed epochs: with 7 cores a held-out validation core for early stopping is
        # noise, and CV then measures exactly the procedure that makes the final model
        recipe=preset("default", batch_size=64, early_stopping=False),
        tiles=TileSpec(tile_size=cfg.tile_size, target_mpp=cfg.target_mpp),
        epochs=cfg.epochs, folds=cfg.folds, seed=cfg.seed, device="cpu")
    tiles = train_tiles(args, tile_cfg, out / "runs" / "tiles", cache=cache,
                        name=NAMES["tiles"], progress=progress)
    tile_ckpt = Path(tiles["checkpoint"]["path"])
    slide_args = dataclasses.replace(args, description=f"{text}. {SLIDE_CV_NOTE}")
    mil = train_mil(slide_args, tile_ckpt, MILConfig(epochs=cfg.mil_epochs, folds=cfg.folds,
                                               seed=cfg.seed),
                    out / "runs" / "mil", cache=cache, name=NAMES["mil"], progress=progress)
    whspn = train_whspn(slide_args, tile_ckpt, WHSPNConfig(folds=cfg.folds, seed=cfg.seed),
                        out / "runs" / "whspn", cache=cache, name=NAMES["whspn"])
    files = [_copy(Path(m["checkpoint"]["path"]), out) for m in (tiles, mil, whspn)]
    result = {
        "training_data": TMA_TEXT, "external": EXTERNAL_TEXT if external else None,
        "config": dataclasses.asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
        "checkpoints": {f.name: f.stat().st_size for f in files},
        "tiles": _headline(tiles), "mil": _headline(mil), "whspn": _headline(whspn),
        "software": software(),
    }
    write_json(out / "ship_metrics.json", result)
    return result


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """CV summaries and external headline figures of one run (no per-image detail)."""
    cv = metrics.get("cross_validation")
    ext = metrics.get("external")

    def brief(r: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if r is None else {k: v for k, v in r.items()
                                       if k not in ("agreement", "images")}

    out: dict[str, Any] = {"cv": cv["summary"] if cv else None,
                           "calibration": cv.get("calibration") if cv else None}
    if ext is not None and "tile" in ext:
        out["external"] = {"tile": brief(ext["tile"]), "image": brief(ext["image"])}
    else:
        out["external"] = brief(ext)
    return out
