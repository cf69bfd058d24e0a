"""Atomic file writing: every export goes to a temporary file in the same folder, is flushed
and fsynced, then renamed over the target with ``os.replace``. A crash or an error mid-write
leaves the old file (or none) and no temporary file behind, and raises
:class:`~napari_her2.errors.OutputError` with a one-line message naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError

log = logging.getLogger(__name__)

_NEW_FILE_MODE = 0o644
#: our temporary files: ``.nh2-<random>.tmp`` (short whatever the target's name)
TEMP_PREFIX, TEMP_SUFFIX = ".nh2-", ".tmp"
#: temporaries of earlier versions: ``.<target name>.<random>.tmp``
_LEGACY_TEMP = re.compile(r"^\..+\.(?:geojson|json|csv|png|pdf)\.[A-Za-z0-9_]{8}\.tmp$")
#: a temporary older than this (seconds) was left by a killed process
STALE_TEMP_AGE_S = 300.0
#: longest output file stem in bytes: leaves room for a suffix within the usual 255-byte limit
MAX_STEM_BYTES = 150


def ensure_out_dir(path: str | os.PathLike) -> Path:
    """Create the output folder if needed; OutputError when it cannot be made or written."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output folder ({_reason(err)})") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: the output folder is not writable")
    return out


def _reason(err: BaseException) -> str:
    """A one-line reason for an error."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return " ".join((text or type(err).__name__).split())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that opens files by name (h5py); it
    replaces ``path`` (fsynced, with the old file's mode) only when the block succeeds."""
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.is_file() else _NEW_FILE_MODE
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as err:
        raise OutputError(f"{target}: cannot write to {target.parent} ({_reason(err)})") from err
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except Exception as err:
        _remove(tmp)
        raise OutputError(f"{target}: not written ({_reason(err)})") from err
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, newline: str | None = None,
                 binary: bool = False) -> Iterator[IO[Any]]:
    """Open a text (or, with ``binary``, a bytes) file that replaces ``path`` only when the
    ``with`` block succeeds (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        if binary:
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding="utf-8", newline=newline) as f:
                yield f


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_own_temp(name: str) -> bool:
    """True for the name of a temporary file that :func:`atomic_write` makes."""
    own = name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)
    return own or bool(_LEGACY_TEMP.match(name))


def sweep_stale_temps(out_dir: str | os.PathLike, *, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove our own temporary files older than ``max_age_s`` from ``out_dir`` (left by a
    process killed mid-write); returns the removed paths. Other files are never touched."""
    folder = Path(out_dir)
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_own_temp(entry.name):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    if removed:
        log.info("%s: removed %d stale temporary file(s)", folder, len(removed))
    return removed


def safe_stem(stem: str, *, max_bytes: int = MAX_STEM_BYTES) -> str:
    """A valid output file stem: path separators and control characters replaced, and a stem
    longer than ``max_bytes`` (UTF-8) cut with a short hash of the whole name, so that two
    long names that share a beginning still differ."""
    clean = "".join("_" if c in "/\\\0" or ord(c) < 32 else c for c in stem).strip() or "slide"
    if clean in (".", ".."):
        clean = "slide"
    if len(clean.encode()) <= max_bytes:
        return clean
    digest = hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    head = clean.encode()[: max_bytes - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}-{digest}"


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically; returns its path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = None,
               check_circular: bool = True) -> Path:
    """Write JSON atomically (no NaN or infinity: they are not JSON).

    ``check_circular=False`` skips the encoder's cycle bookkeeping (about 20% faster on large
    GeoJSON); a cyclic structure then fails with RecursionError, reported as OutputError.
    """
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=indent, allow_nan=False, separators=_separators(indent),
                           check_circular=check_circular))
        if indent is not None:
            f.write("\n")
    return Path(path)


def _separators(indent: int | None) -> tuple[str, str]:
    return (",", ": ") if indent is not None else (",", ":")


def write_report_json(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write the slide report (indented, human-readable) atomically."""
    return write_json(path, report, indent=2)


