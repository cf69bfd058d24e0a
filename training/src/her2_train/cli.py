"""The ``her2-train`` command: ``tiles``, ``mil``, ``whspn`` and ``ship`` subcommands.

Errors a user can cause end as one line on stderr naming the file and the problem, and
exit code 1; a finished run prints the path of its checkpoint and headline figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from napari_her2.errors import Her2Error

from . import __version__
from .augment import AugmentParams
from .commands import DataArgs, train_mil, train_mil_features, train_tiles, train_whspn
from .config import PRESETS, TileTrainConfig, preset, tile_size_for
from .data import TileSpec
from .errors import TrainError
from .mil import MILConfig
from .ship import ShipConfig, ship
from .whspn import KINDS, WHSPNConfig

TMA = Path("../shared/data/her2-ihc-tma")
BCI = Path("../shared/data/her2-ihc-bci")
MAX_TILES = 400


def _data_options(p: argparse.ArgumentParser, data_nargs: str | None = None) -> None:
    p.add_argument("data", type=Path, nargs=data_nargs, help="folder of labelled images")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--labels", type=Path, help="CSV: filename,label[,group] (or ihc_score)")
    p.add_argument("--mpp", type=float, help="µm/px of the images when the files lack it")
    p.add_argument("--external", type=Path, help="external test folder (never trained on)")
    p.add_argument("--external-labels", type=Path, help="CSV labels of the external folder")
    p.add_argument("--external-mpp", type=float, help="µm/px of the external images")
    p.add_argument("--max-tiles", type=int,
                   help=f"tiles per image (default {MAX_TILES}; feature files: all)")
    p.add_argument("--min-tissue", type=float, default=0.5, help="tissue fraction of a tile")
    p.add_argument("--folds", type=int, default=0, help="cross-validation folds (0: none)")
    p.add_argument("--cv", choices=("kfold", "montecarlo"), default="kfold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, help="tile/embedding cache (default RUN/cache)")
    p.add_argument("--name", help="checkpoint name (default: the architecture)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="her2-train", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"her2-train {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tiles", help="train a tile classifier")
    _data_options(t)
    t.add_argument("--arch", default="her2-resnet",
                   choices=("her2-resnet", "repvgg-gct", "repvgg-se", "resnet18"))
    t.add_argument("--arch-args", type=json.loads, default={}, help="JSON constructor args")
    t.add_argument("--preset", choices=tuple(PRESETS), default="default")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--tile-size", type=int, help="tile side in px (default: preset/arch)")
    t.add_argument("--target-mpp", type=float, default=0.5, help="µm/px of the tiles")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of training images held out for early stopping")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    for name, help_ in (("mil", "train attention MIL over a tile model's embeddings or "
                                "over feature files"),
                        ("whspn", "train the WHSPN aggregator over tile-class fractions")):
        s = sub.add_parser(name, help=help_)
        _data_options(s, "?" if name == "mil" else None)
        s.add_argument("--tile-model", type=Path, required=name != "mil",
                       help="tile checkpoint")
        s.add_argument("--epochs", type=int)
    sub.choices["mil"].add_argument(
        "--features", type=Path, help="folder of <stem>.h5 feature files (TRIDENT/CLAM "
        "layout, one encoder), instead of DATA and --tile-model; labels from --labels")
    sub.choices["mil"].add_argument("--bag-size", type=int, default=100)
    sub.choices["mil"].add_argument("--bags-per-image", type=int, default=8)
    sub.choices["mil"].add_argument("--lr", type=float, default=2e-4)
    sub.choices["whspn"].add_argument("--kind", choices=KINDS, default="mlp")
    s = sub.add_parser("ship", help="rebuild the shipped demo checkpoints")
    s.add_argument("--data", type=Path, default=TMA, help=f"TMA folder (default {TMA})")
    s.add_argument("--external", type=Path, default=BCI, help=f"BCI folder (default {BCI})")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--epochs", type=int, default=ShipConfig.epochs)
    s.add_argument("--folds", type=int, default=ShipConfig.folds)
    s.add_argument("--quiet", action="store_true")
    return parser


def _data(a: argparse.Namespace, data: Path | None = None) -> DataArgs:
    return DataArgs(data=data or a.data, labels=a.labels, mpp=a.mpp, external=a.external,
                    external_labels=a.external_labels, external_mpp=a.external_mpp,
                    max_tiles=MAX_TILES if a.max_tiles is None else a.max_tiles,
                    min_tissue=a.min_tissue)


def _tiles(a: argparse.Namespace) -> dict[str, Any]:
    recipe = preset(a.preset, batch_size=a.batch_size, lr=a.lr)
    size = tile_size_for(a.arch, recipe, a.tile_size)
    config = TileTrainConfig(arch=a.arch, arch_args=a.arch_args, preset=a.preset,
                             recipe=recipe, tiles=TileSpec(size, a.target_mpp),
                             augment=AugmentParams(), epochs=a.epochs, folds=a.folds,
                             cv=a.cv, val_fraction=a.val_fraction, seed=a.seed,
                             device=a.device)
    return train_tiles(_data(a), config, a.out, cache=a.cache, name=a.name,
                       progress=not a.quiet)


def _mil(a: argparse.Namespace) -> dict[str, Any]:
    cfg = MILConfig(bag_size=a.bag_size, bags_per_image=a.bags_per_image, lr=a.lr,
                    folds=a.folds, cv=a.cv, seed=a.seed,
                    **({"epochs": a.epochs} if a.epochs else {}))
    if a.features is not None:
        if a.data is not None or a.tile_model is not None:
            raise TrainError("mil: --features trains on feature files; leave out DATA and "
                             "--tile-model")
        return train_mil_features(_data(a, a.features), cfg, a.out, max_tiles=a.max_tiles,
                                  name=a.name or "abmil", progress=not a.quiet)
    if a.data is None or a.tile_model is None:
        raise TrainError("mil: give DATA and --tile-model (tile images), or --features DIR "
                         "(feature files)")
    return train_mil(_data(a), a.tile_model, cfg, a.out, cache=a.cache,
                     name=a.name or "abmil", progress=not a.quiet)


def _whspn(a: argparse.Namespace) -> dict[str, Any]:
    cfg = WHSPNConfig(kind=a.kind, folds=a.folds, cv=a.cv, seed=a.seed,
                      **({"epochs": a.epochs} if a.epochs else {}))
    return train_whspn(_data(a), a.tile_model, cfg, a.out, cache=a.cache, name=a.name)


def _ship(a: argparse.Namespace) -> dict[str, Any]:
    cfg = ShipConfig(epochs=a.epochs, folds=a.folds)
    return ship(a.data, a.external if a.external and a.external.is_dir() else None, a.out,
                cfg, progress=not a.quiet)


COMMANDS = {"tiles": _tiles, "mil": _mil, "whspn": _whspn, "ship": _ship}


def _report(command: str, result: dict[str, Any]) -> str:
    if command == "ship":
        return json.dumps({k: result[k] for k in ("checkpoints", "tiles", "mil", "whspn",
                                                  "seconds")}, indent=1, default=str)
    lines = [f"checkpoint: {result['checkpoint']['path']}"]
    cv = result.get("cross_validation")
    if cv:
        summ = cv["summary"].get("image", cv["summary"])
        lines.append("cross-validation (image level): " + ", ".join(
            f"{k} {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
            for k, v in summ.items() if v["mean"] is not None))
    ext = result.get("external")
    if ext:
        e = ext.get("image", ext)
        lines.append(f"external (image level): accuracy {e['accuracy']}, qwk {e['qwk']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        result = COMMANDS[args.command](args)
    except Her2Error as err:
        sys.stderr.write(f"her2-train: error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("her2-train: interrupted; run the same command again to resume\n")
        return 130
    sys.stdout.write(_report(args.command, result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
