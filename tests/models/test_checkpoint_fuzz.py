"""Fuzzing checkpoints: byte flips, truncations and hostile header/card JSON.

Every mutant of a real (tiny) checkpoint must either load, or be refused with a one-line
:class:`CheckpointError` (a ``Her2Error``) naming the file, within a time bound per example;
listing it (``read_card``, ``describe_checkpoint``) must never raise anything else.

A short budget runs in CI. For a long run set ``NAPARI_HER2_FUZZ_EXAMPLES`` (examples per
test), e.g. ``NAPARI_HER2_FUZZ_EXAMPLES=5000 pytest tests/models/test_checkpoint_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_her2.errors import CheckpointError, Her2Error
from napari_her2.models import ModelCard, get_model, load_checkpoint, read_card, save_checkpoint
from napari_her2.models.catalog import describe_checkpoint
from napari_her2.models.checkpoint import CARD_KEY

EXAMPLES = int(os.environ.get("NAPARI_HER2_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=3000,  # ms per example: a mutant must never make loading slow
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HER2 = ("0", "1+", "2+", "3+")


def _save(folder: Path, name: str, arch: str, card: dict[str, Any], **args: Any) -> bytes:
    torch.manual_seed(0)
    path = folder / f"{name}.safetensors"
    save_checkpoint(path, get_model(arch, **args), ModelCard(architecture=arch, **card))
    return path.read_bytes()


class _Originals(list):
    """The original files' bytes, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} original checkpoints>"


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> _Originals:
    """Bytes of real small checkpoints: a RepVGG-GCT tile model and a WHSPN MLP."""
    folder = tmp_path_factory.mktemp("fuzz-originals")
    tile = {"classes": HER2, "input_size": 32, "target_mpp": 0.5, "metrics": {"acc": 0.5}}
    repvgg = {"widths": (8, 8, 8, 8, 16), "depths": (1, 1, 1, 1, 1), "num_classes": 4}
    return _Originals(
        [
            _save(folder, "tile", "repvgg-gct", tile, **repvgg),
            _save(folder, "slide", "whspn-mlp", {"classes": HER2}, hidden=(8, 8, 8)),
        ]
    )


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict[str, Any], tail: bytes) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return len(raw).to_bytes(8, "little") + raw + tail


def _check_outcome(data: bytes) -> None:
    """Load and list ``data`` from a file; only success or a one-line CheckpointError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.safetensors"
        path.write_bytes(data)
        for action in (read_card, load_checkpoint):
            try:
                action(path)
            except CheckpointError as err:
                message = str(err)
                assert isinstance(err, Her2Error)
                assert "\n" not in message and str(path) in message, message
        entry = describe_checkpoint("mutant", path)  # listing never raises
        assert entry["valid"] or str(path) in entry["error"]


# --------------------------------------------------------------------------- byte level


@FUZZ
@given(
    which=st.integers(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=8),
    header_bias=st.booleans(),
)
def test_byte_flips(originals, which, flips, header_bias):
    data = bytearray(originals[which])
    span = 8 + int.from_bytes(data[:8], "little") if header_bias else len(data)
    for where, mask in flips:
        data[int(where * span)] ^= mask
    _check_outcome(bytes(data))


@FUZZ
@given(which=st.integers(0, 1), cut=st.floats(0, 1, exclude_max=True))
def test_truncations(originals, which, cut):
    data = originals[which]
    _check_outcome(data[: int(cut * len(data))])


# --------------------------------------------------------------------------- header JSON

_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 10**12, 2**63, -(2**63), 30000, 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-9, 1e9, 0.04, 51.0, -0.5]),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=30))
_json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_nested = st.integers(5, 3000).map(lambda d: json.loads("[" * d + "]" * d) if d < 900 else d)
_hostile = st.one_of(
    _json_values,
    _nested,
    st.integers(10, 5000).map(lambda n: "x" * n),
    st.integers(1, 3000).map(lambda n: list(range(n))),
)
_CARD_FIELDS = ["architecture", "classes", "arch_args", "input_size", "target_mpp", "mean",
                "std", "name", "metrics", "sha256", "format_version", "extra"]  # fmt: skip
_ARCH_ARGS = ["num_classes", "widths", "depths", "in_channels", "in_features", "hidden",
              "deploy", "backbone", "backbone_args", "dropout"]  # fmt: skip
_TENSOR_FIELDS = ["dtype", "shape", "data_offsets"]


def _deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def header_mutations(draw: st.DrawFn) -> tuple[int, str, Any, Any]:
    which = draw(st.integers(0, 1))
    target = draw(st.sampled_from(["card", "arch_args", "tensor", "card_text", "length"]))
    key = draw(
        st.sampled_from(
            {"card": _CARD_FIELDS, "arch_args": _ARCH_ARGS, "tensor": _TENSOR_FIELDS}.get(
                target, ["-"]
            )
        )
    )
    value = draw(_hostile)
    return which, target, key, value


def _mutate(data: bytes, target: str, key: str, value: Any) -> bytes:
    header, tail = _split(data)
    meta = header["__metadata__"]
    card = json.loads(meta[CARD_KEY])
    if target == "card":
        card[key] = value
    elif target == "arch_args":
        card["arch_args"][key] = value
    elif target == "tensor":
        name = sorted(k for k in header if k != "__metadata__")[0]
        header[name][key] = value
    elif target == "card_text":  # raw text: deep nesting beyond the JSON parser's limit
        depth = value if isinstance(value, int) and value > 0 else 100_000
        meta[CARD_KEY] = _deep_text(min(depth, 200_000))
        return _join(header, tail)
    else:  # a header length that lies
        raw = _join(header, tail)
        length = value if isinstance(value, int) and 0 <= value < 2**64 else 2**40
        return length.to_bytes(8, "little") + raw[8:]
    meta[CARD_KEY] = json.dumps(card, allow_nan=True)
    return _join(header, tail)


@FUZZ
@given(mutation=header_mutations())
def test_header_and_card_mutations(originals, mutation):
    which, target, key, value = mutation
    _check_outcome(_mutate(originals[which], target, key, value))


def test_originals_load(originals):
    """The fuzzed files are real checkpoints that load (so mutants start from valid ones)."""
    with tempfile.TemporaryDirectory() as folder:
        for i, data in enumerate(originals):
            path = Path(folder) / f"{i}.safetensors"
            path.write_bytes(data)
            model, card = load_checkpoint(path)
            assert card.classes == HER2 and not model.training
