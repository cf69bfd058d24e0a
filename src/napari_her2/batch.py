"""Score a cohort of slides over a dask.distributed cluster.

Each slide is one task: open, score, write ``<stem>.geojson`` and ``<stem>.json`` into the
output folder. A slide that fails (unreadable file, missing mpp) is reported and the others
go on. Without a scheduler address a local cluster of worker processes is started.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import Her2Error
from .params import ScoringParams
from .pipeline import score_slide, write_outputs

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("slide", "status", "score", "category", "confidence", "n_tissue_tiles",
                  "geojson", "report", "error")


def score_one(path: str, out_dir: str, params: dict[str, Any],
              mpp: float | None = None) -> dict[str, Any]:
    """Score one slide exactly as ``napari-her2 score`` does (``params`` is
    ``ScoringParams.to_dict()``: every setting travels) and write its outputs; errors become
    a row, never an exception."""
    import dask

    try:
        # inside a dask worker, the slide's own dask arrays compute in local threads (their
        # graphs read from open files and are not meant to travel to the cluster)
        with dask.config.set(scheduler="threads"):
            report = score_slide(path, mpp=mpp, params=ScoringParams.from_dict(params))
        with report.slide:
            written = write_outputs(report, out_dir)
    except Her2Error as err:
        return {"slide": path, "status": "error", "error": str(err)}
    data = report.to_dict()
    return {
        "slide": path,
        "status": "ok",
        "score": data["score"],
        "category": data["category"],
        "confidence": data["confidence"],
        "n_tissue_tiles": data["n_tissue_tiles"],
        "geojson": str(written["geojson"]),
        "report": str(written["report"]),
    }


def score_cohort(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    params: ScoringParams | None = None,
    mpp: float | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every slide on a dask cluster; return one summary row per slide (input order).

    The rows are also written to ``out_dir/batch_summary.csv``.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from .export import ensure_out_dir, write_text

    out = ensure_out_dir(out_dir)
    pdict = (params or ScoringParams().with_overrides(workers=1)).to_dict()
    cluster = None
    if scheduler is None:
        n = n_workers or min(len(paths), os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=max(1, n), threads_per_worker=1, processes=True,
                               dashboard_address=None, scheduler_kwargs={"dashboard": False},
                               silence_logs=logging.WARNING)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    rows: dict[str, dict[str, Any]] = {}
    try:
        futures = [client.submit(score_one, str(p), str(out), pdict, mpp, pure=False)
                   for p in paths]
        for fut in as_completed(futures):
            row = fut.result()
            rows[row["slide"]] = row
            if on_result is not None:
                on_result(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [rows[str(p)] for p in paths]
    write_text(out / "batch_summary.csv", _csv(ordered))
    return ordered


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def expand_paths(items: Sequence[str]) -> list[Path]:
    """Slide paths from files, DICOM folders and folders of slides (one level deep)."""
    from .slide import is_dicom_folder, is_slide_path

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and not is_dicom_folder(p):
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and is_slide_path(f)))
        else:
            out.append(p)
    return out
