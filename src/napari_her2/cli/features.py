"""``napari-her2 features``: tile embeddings of slides as TRIDENT/CLAM-style ``.h5`` files;
and the encoder lines of ``napari-her2 models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import Her2Error
from ..params import Device, ParamError
from ._common import EXIT_ERROR, EXIT_OK, params_from_args, slide_mpp


def encoder_entries() -> list[dict[str, Any]]:
    """The foundation encoders as entries of ``napari-her2 models`` (name, kind, summary,
    path); the tile-model checkpoints listed there are encoders too."""
    from ..models.encoders import list_encoders

    out = []
    for e in list_encoders():
        if e["kind"] != "foundation":
            continue
        where = (f"weights: {e['weights']}" if e["weights_found"] else
                 f"weights not found: put them in {e['weights_dir']} (get them from "
                 f"{e['get_weights']})")
        summary = (f"{e['title']}: {e['architecture']}; {e['dim']}-d embedding of "
                   f"{e['input_px']} px tiles at {e['mpp']:g} µm/px; licence: {e['licence']}; "
                   f"{where}")
        out.append({**e, "kind": "encoder", "summary": summary})
    return out


def _progress(name: str):
    """A one-line progress display on a terminal's stderr (nothing when stderr is a file)."""
    if not sys.stderr.isatty():
        return None

    def show(update) -> None:
        end = "\n" if update.done >= update.total else ""
        sys.stderr.write(f"\r{name}: {update.done}/{update.total} tiles{end}")
        sys.stderr.flush()

    return show


def _cmd_features(args: argparse.Namespace) -> int:
    from ..cohort.batch import expand_paths, output_stems
    from ..export.atomic import ensure_out_dir, safe_stem, sweep_stale_temps
    from ..export.features import require_h5py
    from ..models.encoders import load_encoder
    from ..run.features import extract_features, write_features
    from ..tiles.regions import roi_path_for

    require_h5py()
    paths = expand_paths(args.slides)
    if not paths:
        sys.stderr.write("napari-her2: error: no slides found in the given paths\n")
        return EXIT_ERROR
    if args.roi and len(paths) > 1:
        raise ParamError("--roi gives the region of one slide; for several use --roi-dir")
    params = params_from_args(args)
    encoder = load_encoder(args.encoder, weights=args.weights, device=params.model.device.value)
    single = len(paths) == 1
    stems = [safe_stem(Path(paths[0]).stem)] if single else output_stems(paths)
    out = ensure_out_dir(args.out)
    sweep_stale_temps(out)
    failed = 0
    for path, stem in zip(paths, stems):
        region = args.roi or (roi_path_for(path, args.roi_dir) if args.roi_dir else None)
        try:
            result = extract_features(path, encoder, mpp=args.mpp, params=params,
                                      region=region, progress=_progress(path.name))
            with result.slide:
                written = write_features(result, out, stem)
        except Her2Error as err:
            if single:
                raise
            sys.stderr.write(f"napari-her2: error: {err}\n")
            failed += 1
            continue
        sys.stdout.write(f"{path.name}: {len(result.features)} tiles x {encoder.dim} "
                         f"({encoder.name}) in {result.timings.total:.1f} s\nwrote {written}\n")
    if not single:
        sys.stdout.write(f"{len(paths) - failed} of {len(paths)} slides embedded\n")
    return EXIT_OK if failed == 0 else EXIT_ERROR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features", help="embed the tissue tiles of slides with an encoder; writes <stem>.h5 "
        "(features, level-0 coords) as TRIDENT and CLAM do")
    p.add_argument("slides", nargs="+", help="slide files or folders of slides")
    p.add_argument("--encoder", required=True, metavar="NAME_OR_PATH",
                   help="foundation encoder (uni, uni2-h, virchow2, h-optimus-0, h-optimus-1, "
                   "phikon-v2, conch-v1.5, prov-gigapath), timm:ARCH, a snapshot folder, or a "
                   "tile-model checkpoint (her2-resnet-tma); see napari-her2 models")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="weights file or Hugging Face snapshot folder (default: "
                   "<models dir>/encoders/<name>/); nothing is downloaded")
    p.add_argument("--out", default="napari-her2-features", help="output folder")
    p.add_argument("--mpp", type=slide_mpp, default=None,
                   help="level-0 µm/px of the slide (overrides or supplies the file's)")
    p.add_argument("--roi", "--region", dest="roi", metavar="FILE", default=None,
                   help="QuPath GeoJSON of the region to embed (one slide)")
    p.add_argument("--roi-dir", metavar="DIR", default=None,
                   help="folder of regions, <stem>.geojson per slide")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="ScoringParams JSON/TOML: tissue detection, minimum tissue, batch size")
    p.add_argument("--device", choices=[d.value for d in Device], default=None)
    p.set_defaults(func=_cmd_features)
