"""Fuzzing slide files: byte flips, extreme integers and truncations of real small slides
(the shared small.svs, boxes.tiff and NDPI, skipped when absent) and of TIFFs built here.

Every mutant must either open and give pixels of the asked shape, or be refused with a
one-line :class:`SlideReadError` naming the file, within a time bound per example (the
hypothesis deadline) and a memory bound (traced allocations per example, and the process'
peak RSS over the whole run). Mutations aim at the structure (image directories, tag
values: offsets, byte counts, sizes) as well as anywhere in the file.

A short budget runs in CI. For a long run set ``NAPARI_HER2_FUZZ_EXAMPLES`` (examples per
source), e.g. ``NAPARI_HER2_FUZZ_EXAMPLES=2000 pytest tests/test_slide_fuzz.py``.
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crafted_tiffs import small_tiff
from napari_her2.errors import SlideReadError
from napari_her2.slide import open_slide

EXAMPLES = int(os.environ.get("NAPARI_HER2_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms per example: a mutant must never make opening or reading slow
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
#: traced allocations of one example (numpy arrays, Python objects)
MAX_TRACED_BYTES = 512 * 2**20
#: growth of the process' peak RSS over a whole source's run (codec buffers included)
MAX_RSS_GROWTH_BYTES = 1536 * 2**20
SHARED = ("small.svs", "boxes.tiff", "test3-DAPI-2-387.ndpi")
EXTREMES = (0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


@dataclass(frozen=True)
class Original:
    """A source file's bytes and the offsets of its structure (IFDs, tag values)."""

    name: str
    data: bytes
    hot: tuple[int, ...]

    def __repr__(self) -> str:  # short, for hypothesis' failure reports
        return f"<{self.name}, {len(self.data)} bytes>"


def structure_offsets(path: Path) -> tuple[int, ...]:
    """Byte offsets of the image directories and of every tag's value."""
    hot: set[int] = {4}
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            hot.add(page.offset)
            for tag in page.tags.values():
                hot.update((tag.offset, tag.valueoffset))
    return tuple(sorted(h for h in hot if h < path.stat().st_size))


def load_original(path: Path) -> Original:
    return Original(path.name, path.read_bytes(), structure_offsets(path))


def crafted(folder: Path) -> list[Path]:
    """Small TIFFs built here: tiled deflate, tiled JPEG, one strip."""
    return [
        small_tiff(folder / "tiled-zlib.tif", size=96, tile=32),
        small_tiff(folder / "tiled-jpeg.tif", size=96, tile=32, compression="jpeg"),
        small_tiff(folder / "strip.tif", size=64, tile=None),
    ]


def sources() -> list:
    """Parameters: crafted TIFFs always, shared slides when present."""
    from data_paths import shared_data_dir

    params = [pytest.param(("crafted", i), id=f"crafted-{i}") for i in range(3)]
    slides = shared_data_dir() / "slides"
    for name in SHARED:
        present = (slides / name).is_file()
        params.append(pytest.param(("shared", name), id=name, marks=[] if present else
                                   pytest.mark.skip(reason=f"{name} is not in the shared data")))
    return params


@pytest.fixture(params=sources())
def original(request, tmp_path_factory) -> Original:
    kind, which = request.param
    if kind == "crafted":
        return load_original(crafted(tmp_path_factory.mktemp("crafted"))[which])
    from data_paths import shared_data_dir

    return load_original(shared_data_dir() / "slides" / which)


class Mutant(bytes):
    """A mutant's bytes with a short repr (hypothesis prints it); failing mutants are saved."""

    def __repr__(self) -> str:
        return f"<mutant of {len(self)} bytes, sha256 {self.digest()}>"

    def digest(self) -> str:
        return hashlib.sha256(self).hexdigest()[:16]


#: where a failing mutant is kept for replay (``open_slide`` on it reproduces the failure)
SAVED = Path(tempfile.gettempdir()) / "napari-her2-fuzz"


@st.composite
def mutations(draw, original: Original) -> Mutant:
    """The original with a few flipped bytes, extreme 2- or 4-byte integers at structural
    offsets, or cut short."""
    data = bytearray(original.data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip-hot", "int-hot", "truncate"]))
        if kind == "truncate":
            data = data[: draw(st.integers(8, max(8, len(data) - 1)))]
            continue
        hot = kind.endswith("hot")
        pos = (draw(st.sampled_from(original.hot)) + draw(st.integers(0, 3)) if hot
               else draw(st.integers(0, len(data) - 1)))
        if pos >= len(data):
            continue
        if kind == "int-hot":
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(EXTREMES) | st.integers(0, 2 ** (8 * width) - 1))
            value &= 2 ** (8 * width) - 1
            order = "little" if data[:2] == b"II" else "big"
            data[pos : pos + width] = value.to_bytes(width, order)[: len(data) - pos]
        else:
            data[pos] ^= draw(st.integers(1, 255))
    return Mutant(data)


def open_and_read(path: Path) -> None:
    """Open, read a region of the first and last levels (strict and lenient), and a dask
    block: each gives pixels of the right shape or a one-line SlideReadError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            slide = open_slide(path)
        except SlideReadError as err:
            assert_one_line(err, path)
            return
    with slide:
        for level in (0, slide.level_count - 1):
            for strict in (True, False):
                try:
                    region = slide.read_region(level, 0, 0, 48, 40, strict=strict)
                except SlideReadError as err:
                    assert strict, f"a lenient read raised: {err}"
                    assert_one_line(err, path)
                    continue
                assert region.shape == (48, 40, 3) and region.dtype == np.uint8
        block = slide.levels[-1][:32, :32].compute(scheduler="sync")
        assert block.shape[2] == 3


def assert_one_line(err: SlideReadError, path: Path) -> None:
    text = str(err)
    assert text and "\n" not in text, repr(text)
    assert str(path) in text or path.name in text, text


def test_mutated_slides_open_or_fail_cleanly_within_bounds(original):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    suffix = Path(original.name).suffix or ".tif"

    @FUZZ
    @given(data=mutations(original))
    def check(data: Mutant) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"mutant{suffix}"
            path.write_bytes(data)
            tracemalloc.start()
            try:
                open_and_read(path)
                peak = tracemalloc.get_traced_memory()[1]
                assert peak < MAX_TRACED_BYTES, f"{peak / 2**20:.0f} MiB traced"
            except BaseException as err:
                SAVED.mkdir(exist_ok=True)
                kept = SAVED / f"{original.name}-{data.digest()}{suffix}"
                kept.write_bytes(data)
                err.add_note(f"mutant saved to {kept}")
                raise
            finally:
                tracemalloc.stop()

    check()
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert growth < MAX_RSS_GROWTH_BYTES, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_the_originals_themselves_read(original, tmp_path):
    path = tmp_path / f"original{Path(original.name).suffix or '.tif'}"
    path.write_bytes(original.data)
    open_and_read(path)
    assert len(original.hot) > 5
