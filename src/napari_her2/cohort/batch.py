"""Score a cohort of slides over a dask.distributed cluster.

Each slide is one task: open, score, write ``<name>.geojson`` and ``<name>.json`` into the
output folder, where ``<name>`` is unique per input (:func:`output_stems`). Whatever a slide
raises, and however long it takes, it becomes one row of ``batch_summary.csv`` (ok, or error
with a one-line reason) and the others go on; the summary is written even when the cluster
fails part-way. Without a scheduler address a local cluster of worker processes is started.

With ``resume`` a slide whose outputs are complete (both files parse, and the report was made
with this run's parameters) is not scored again but listed as ``skipped``. A slide whose worker
dies under it (killed, out of memory) is run once more, then reported as an error.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..classes import PERCENT_COLUMNS, borderline_text, tumour_cell_columns
from ..errors import Her2Error
from ..params import ScoringParams

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("slide", "status", "score", "category", "confidence", "borderline",
                  "no_call", "n_tissue_tiles", "n_tumour_cells", *PERCENT_COLUMNS, "geojson",
                  "report", "error")
SUMMARY_NAME = "batch_summary.csv"
#: default per-slide time limit (seconds): generous, a large slide on a slow CPU takes minutes
DEFAULT_TIMEOUT_S = 3600.0
#: how many times a slide may be started (the first run and one retry after its worker died)
MAX_STARTS = 2
#: per-slide count of started runs, in the output folder (shared by every worker)
_STARTS_PREFIX, _STARTS_SUFFIX = ".nh2-starts-", ".count"
#: loggers of dask.distributed whose INFO lines would bury per-slide errors
_DASK_LOGGERS = ("distributed", "dask")


def one_line(err: BaseException) -> str:
    """The first line of an error's message, with the type for errors that are not ours."""
    text = " ".join(str(err).strip().splitlines()[:1]) if str(err).strip() else ""
    if isinstance(err, Her2Error):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def error_row(path: str, reason: str) -> dict[str, Any]:
    """A summary row for a slide that produced no result."""
    return {"slide": path, "status": "error", "error": reason}


def skipped_row(path: str, report: dict[str, Any], geojson: Path,
                report_path: Path) -> dict[str, Any]:
    """A summary row for a slide whose complete outputs were already there."""
    return {"slide": path, "status": "skipped", **call_columns(report),
            "geojson": str(geojson), "report": str(report_path)}


def call_columns(report: dict[str, Any]) -> dict[str, Any]:
    """The summary columns a slide report gives: its call (or why there is none), how many
    tissue tiles, and with a scorer that finds cells how many tumour cells and their
    percentages per class (empty for a tile model)."""
    return {"score": report.get("score"), "category": report.get("category"),
            "confidence": report.get("confidence"), "borderline": borderline_text(report),
            "no_call": report.get("no_call"), "n_tissue_tiles": report.get("n_tissue_tiles"),
            **tumour_cell_columns(report.get("cells"))}


def finished_row(path: str, out_dir: str | os.PathLike, stem: str,
                 params: dict[str, Any]) -> dict[str, Any] | None:
    """The ``skipped`` row of a slide whose outputs ``<stem>.json`` and ``<stem>.geojson``
    exist, parse, and were made with ``params`` (``ScoringParams.to_dict()``); else None."""
    out = Path(out_dir)
    report_path, geojson = out / f"{stem}.json", out / f"{stem}.geojson"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        json.loads(geojson.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("params") != params:
        return None
    return skipped_row(path, report, geojson, report_path)


def _starts_file(out_dir: str | os.PathLike, stem: str) -> Path:
    return Path(out_dir) / f"{_STARTS_PREFIX}{stem}{_STARTS_SUFFIX}"


def score_with_retry(task: Callable[..., dict[str, Any]], path: str, out_dir: str,
                     stem: str, *args: Any) -> dict[str, Any]:
    """Run ``task(path, out_dir, *args, ...)`` (``score_one``) on a worker, counting the
    starts of this slide in the output folder: when a worker died under the slide and the
    cluster runs it again, a second start is allowed; a third becomes an error row."""
    marker = _starts_file(out_dir, stem)
    try:
        starts = int(marker.read_text(encoding="ascii") or 0)
    except (OSError, ValueError):
        starts = 0
    if starts >= MAX_STARTS:
        marker.unlink(missing_ok=True)
        return error_row(path, f"{path}: its worker died in each of {starts} runs (killed or "
                         "out of memory?); not retried again")
    marker.write_text(str(starts + 1), encoding="ascii")
    try:
        return task(path, out_dir, *args)
    finally:  # a killed process never gets here: its count stays for the next start
        marker.unlink(missing_ok=True)


def score_one(path: str, out_dir: str, params: dict[str, Any], mpp: float | None = None,
              stem: str | None = None, timeout: float | None = DEFAULT_TIMEOUT_S,
              roi_dir: str | None = None) -> dict[str, Any]:
    """Score one slide exactly as ``napari-her2 score`` does (``params`` is
    ``ScoringParams.to_dict()``: every setting travels) and write its outputs as ``stem``.
    Its region is ``<stem>.geojson`` in ``roi_dir``, else beside the slide when there.

    Never raises: any error, and running past ``timeout`` seconds, become an error row (the
    scoring is then asked to stop at its next batch)."""
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["row"] = _score_and_write(path, out_dir, params, mpp, stem, cancel, roi_dir)
        except Exception as err:  # noqa: BLE001 - one slide must never stop the batch
            log.debug("%s failed", path, exc_info=True)
            reason = one_line(err)
            box["row"] = error_row(path, reason if isinstance(err, Her2Error)
                                   else f"{path}: {reason}")

    thread = threading.Thread(target=work, name="napari-her2-slide", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        cancel.set()
        return error_row(path, f"{path}: no result within {timeout:g} s "
                         "(the per-slide time limit, --timeout)")
    return box["row"]


def _score_and_write(path: str, out_dir: str, params: dict[str, Any], mpp: float | None,
                     stem: str | None, cancel: threading.Event,
                     roi_dir: str | None = None) -> dict[str, Any]:
    import dask

    from ..export import write_outputs
    from ..export.atomic import safe_stem
    from ..run.pipeline import score_slide
    from ..tiles.regions import roi_path_for

    # inside a dask worker, the slide's own dask arrays compute in local threads (their
    # graphs read from open files and are not meant to travel to the cluster)
    with dask.config.set(scheduler="threads"):
        report = score_slide(path, mpp=mpp, params=ScoringParams.from_dict(params), cancel=cancel,
                             region=roi_path_for(path, roi_dir))
    with report.slide:
        data = report.to_dict()
        written = write_outputs(out_dir, safe_stem(stem or report.stem), data, report.results)
    return {
        "slide": path,
        "status": "ok",
        **call_columns(data),
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
    timeout: float | None = DEFAULT_TIMEOUT_S,
    roi_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Score every slide on a dask cluster; return one summary row per slide (input order).
    A slide's region is ``<stem>.geojson`` in ``roi_dir`` (required), else beside it. With
    ``resume`` slides whose complete outputs exist (:func:`finished_row`) are ``skipped``.

    The rows are always written to ``out_dir/batch_summary.csv``, also when the cluster
    fails part-way (slides without a result then get an error row saying so).
    """
    from ..export import ensure_out_dir, write_text
    from ..export.atomic import sweep_stale_temps

    out = ensure_out_dir(out_dir)
    sweep_stale_temps(out)
    names = [str(p) for p in paths]
    stems = output_stems(paths)
    pdict = (params or ScoringParams().with_overrides(workers=1)).to_dict()
    rows = _finished_rows(names, stems, out, pdict) if resume else {}
    for i in rows:
        log.info("%s: complete outputs already in %s, skipped", names[i], out)
        if on_result is not None:
            on_result(rows[i])
    todo = [i for i in range(len(names)) if i not in rows]
    for i in todo:  # counts left by an earlier run that was stopped
        _starts_file(out, stems[i]).unlink(missing_ok=True)
    missing = "not scored: the batch stopped before this slide finished"
    try:
        if todo:
            workers = n_workers or min(len(todo), os.cpu_count() or 1)
            with _quiet_dask(), _client(scheduler, workers) as client:
                _run(client, todo, names, stems, str(out), (pdict, mpp, timeout,
                     None if roi_dir is None else str(roi_dir)), rows, on_result)
    except Exception as err:  # noqa: BLE001 - a failing cluster still leaves a summary
        log.error("the dask cluster failed: %s", one_line(err))
        missing = f"not scored: the dask cluster failed ({one_line(err)})"
    finally:
        ordered = [rows.get(i) or error_row(name, f"{name}: {missing}")
                   for i, name in enumerate(names)]
        write_text(out / SUMMARY_NAME, _csv(ordered))
    return ordered


def _finished_rows(names: list[str], stems: list[str], out: Path,
                   pdict: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Index -> ``skipped`` row of the slides whose complete outputs exist."""
    found = {i: finished_row(name, out, stem, pdict)
             for i, (name, stem) in enumerate(zip(names, stems))}
    return {i: row for i, row in found.items() if row is not None}


def _run(client, todo: list[int], names: list[str], stems: list[str], out: str,
         settings: tuple[Any, ...], rows: dict[int, dict[str, Any]],
         on_result: Callable[[dict[str, Any]], None] | None) -> None:
    """Submit the slides ``todo`` and collect a row per slide as they finish. ``settings``
    are ``score_one``'s arguments after the output folder: (params, mpp, timeout, roi_dir).
    A slide whose workers were killed by the cluster (dask's ``KilledWorker``) is submitted
    once more; the start count of :func:`score_with_retry` still bounds it to one retry."""
    from dask.distributed import as_completed

    pdict, mpp, timeout, roi_dir = settings

    def submit(i: int):
        return client.submit(score_with_retry, score_one, names[i], out, stems[i], pdict, mpp,
                             stems[i], timeout, roi_dir, pure=False)

    futures = {submit(i): i for i in todo}
    resubmitted: set[int] = set()
    pending = as_completed(futures)
    for fut in pending:
        i = futures[fut]
        if i not in resubmitted and _killed_worker(fut):
            log.warning("%s: its worker died; scoring it once more", names[i])
            resubmitted.add(i)
            again = submit(i)
            futures[again] = i
            pending.add(again)
            continue
        rows[i] = _row_of(fut, names[i])
        if on_result is not None:
            on_result(rows[i])


def _killed_worker(fut) -> bool:
    """True when the cluster gave up on a task because its workers kept dying."""
    from dask.distributed import KilledWorker

    try:
        return fut.status == "error" and isinstance(fut.exception(), KilledWorker)
    except Exception:  # noqa: BLE001 - a cancelled or lost future is no retry
        return False


def _row_of(fut, name: str) -> dict[str, Any]:
    """The row a finished future stands for; a task that failed on the cluster (its worker
    died, it could not be run) becomes an error row."""
    try:
        if fut.status == "finished":
            return fut.result()
        err = fut.exception()
    except Exception as exc:  # noqa: BLE001 - cancelled, lost: still one row
        err = exc
    return error_row(name, f"{name}: the worker failed ({one_line(err)})")


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int) -> Iterator[Any]:
    """A client of the given scheduler, or of a local cluster of worker processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=max(1, n_workers), threads_per_worker=1, processes=True,
                      dashboard_address=None, scheduler_kwargs={"dashboard": False},
                      silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """dask's INFO lines only when our own log shows INFO (``-v``): per-slide errors stay
    visible."""
    import dask.distributed  # noqa: F401 - its import sets its loggers' levels: before ours

    level = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
    loggers = [logging.getLogger(name) for name in _DASK_LOGGERS]
    before = [lg.level for lg in loggers]
    if logging.getLogger("napari_her2").getEffectiveLevel() > logging.INFO:
        for lg in loggers:
            lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, before):
            lg.setLevel(old)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def _base_stem(p: Path) -> str:
    """``slide.svs`` -> ``slide``; a DICOM folder keeps its name."""
    return p.stem if p.suffix and not p.is_dir() else p.name


def output_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One output stem per input, unique (also ignoring case) and deterministic.

    Inputs whose stems clash get a short suffix from what tells them apart: the file suffix
    (``slide-svs``, ``slide-ndpi``), else the parent folder (``slide-a``), else both; what
    still clashes gets a hash of the path. Long stems are cut (with a hash) to stay valid.
    """
    from ..export.atomic import safe_stem

    ps = [Path(p) for p in paths]
    stems = [safe_stem(_base_stem(p)) for p in ps]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(stems):
        groups.setdefault(s.casefold(), []).append(i)
    for members in groups.values():
        if len(members) > 1:
            for i, tag in zip(members, _tags([ps[i] for i in members])):
                stems[i] = safe_stem(f"{stems[i]}-{tag}")
    return _dedupe(stems, ps)


def _tags(group: list[Path]) -> list[str]:
    """The shortest of suffix, parent folder, or both that tells the paths apart."""
    options = [
        [p.suffix.lstrip(".").lower() or "dir" for p in group],
        [p.parent.name or "root" for p in group],
        [f"{p.parent.name or 'root'}-{p.suffix.lstrip('.').lower() or 'dir'}" for p in group],
    ]
    for tags in options:
        if len({t.casefold() for t in tags}) == len(tags):
            return tags
    return options[-1]


def _dedupe(stems: list[str], paths: list[Path]) -> list[str]:
    """Stems that still clash (or clash with a renamed one) get a hash of path and position."""
    seen: set[str] = set()
    out = []
    for i, (s, p) in enumerate(zip(stems, paths)):
        if s.casefold() in seen:
            digest = hashlib.sha1(f"{i}:{p}".encode("utf-8", "surrogateescape")).hexdigest()[:6]
            s = f"{s}-{digest}"
        seen.add(s.casefold())
        out.append(s)
    return out


def expand_paths(items: Sequence[str]) -> list[Path]:
    """Slide paths from files, DICOM folders and folders of slides (one level deep)."""
    from ..slide import is_dicom_folder, is_slide_path

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and not is_dicom_folder(p):
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and is_slide_path(f)))
        else:
            out.append(p)
    return out
