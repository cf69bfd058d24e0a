"""Catalog: listing reads cards from headers only, and one bad file never breaks a listing."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import napari_her2.models.catalog as catalog
import napari_her2.models.checkpoint as checkpoint
import napari_her2.models.registry as registry
from napari_her2.errors import CheckpointError
from napari_her2.models import (
    ModelCard,
    available_predictors,
    available_slide_models,
    describe_models,
    get_model,
    load_checkpoint,
    save_checkpoint,
)
from napari_her2.models.catalog import find_checkpoint
from napari_her2.models.checkpoint import CARD_KEY, FORMAT, FORMAT_KEY

HER2 = ("0", "1+", "2+", "3+")


@pytest.fixture
def real_folder(models_folder, tiny_repvgg) -> Path:
    """A models folder with two tile checkpoints, one WHSPN and one MIL checkpoint."""
    torch.manual_seed(0)
    tile_card = ModelCard(architecture="repvgg-gct", classes=HER2, input_size=32, target_mpp=0.5)
    save_checkpoint(
        models_folder / "gct.safetensors",
        get_model("repvgg-gct", num_classes=4, **tiny_repvgg),
        tile_card.replace(name="tiny gct"),
    )
    save_checkpoint(
        models_folder / "resnet.safetensors",
        get_model("her2-resnet"),
        ModelCard(architecture="her2-resnet", classes=HER2, input_size=64, target_mpp=0.5),
    )
    save_checkpoint(
        models_folder / "mlp.safetensors",
        get_model("whspn-mlp"),
        ModelCard(architecture="whspn-mlp", classes=HER2),
    )
    save_checkpoint(
        models_folder / "mil.safetensors",
        get_model("abmil", in_features=16),
        ModelCard(architecture="abmil", classes=HER2),
    )
    return models_folder


def _names(infos) -> list[str]:
    """Names of the listed models, leaving out the checkpoints shipped with the package."""
    from napari_her2.models.catalog import PACKAGE_CHECKPOINTS

    return [i.name for i in infos if i.path is None or Path(i.path).parent != PACKAGE_CHECKPOINTS]


def _forbid_weights(monkeypatch) -> None:
    """Make every way of reading tensors or building a model with real weights raise."""

    def boom(*args, **kwargs):
        raise AssertionError("listing read weights or built a model")

    real_get_model = registry.get_model

    def meta_only(name, **kwargs):
        if torch.empty(0).device.type != "meta":
            boom()
        return real_get_model(name, **kwargs)

    monkeypatch.setattr(checkpoint, "load_checkpoint", boom)
    monkeypatch.setattr(checkpoint, "safe_open", boom)
    monkeypatch.setattr(checkpoint, "_stream_weights", boom)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", boom)
    monkeypatch.setattr(registry, "get_model", meta_only)
    monkeypatch.setattr(catalog, "get_model", meta_only)
    monkeypatch.setattr(catalog, "load_checkpoint", boom, raising=False)


def test_listing_never_reads_weights_or_builds_models(real_folder, monkeypatch):
    _forbid_weights(monkeypatch)
    assert _names(available_predictors()) == ["dab-cells", "dab-membrane", "gct", "resnet"]
    assert sorted(_names(available_slide_models())) == ["mil", "mlp"]
    entries = {e["name"]: e for e in describe_models()}
    assert entries["gct"]["valid"] and entries["gct"]["kind"] == "tile"
    assert entries["mil"]["kind"] == "mil" and entries["mlp"]["kind"] == "slide"
    assert entries["repvgg-gct"]["parameters"] > entries["repvgg-gct"]["deploy_parameters"]
    assert find_checkpoint("tiny gct") == real_folder / "gct.safetensors"


def test_architecture_counts_match_real_models():
    entries = {e["name"]: e for e in describe_models() if e["type"] == "architecture"}
    for name in ("her2-resnet", "repvgg-se", "abmil"):
        real = sum(p.numel() for p in get_model(name).parameters())
        assert entries[name]["parameters"] == real


def test_corrupted_tensor_bytes_still_list_with_their_card(real_folder):
    path = real_folder / "gct.safetensors"
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for i in range(start, len(data), 97):  # corrupt the tensor bytes, not the header
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    by_name = {i.name: i for i in available_predictors()}
    assert by_name["gct"].card["name"] == "tiny gct"  # listed: its weights were not read
    entry = {e["name"]: e for e in describe_models()}["gct"]
    assert entry["valid"] and entry["file_bytes"] == len(data)
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(path)  # the full check happens when it is loaded for scoring
    assert str(path) in str(err.value)


def _write_header(path: Path, header: bytes, length: int | None = None, tail: bytes = b"") -> None:
    n = len(header) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + header + tail)


def _card_json(**changes) -> str:
    card = ModelCard(architecture="her2-resnet", classes=HER2, input_size=64).to_dict()
    return json.dumps({**card, **changes})


def _bad_files(folder: Path) -> dict[str, str]:
    """Write hostile files into ``folder``; name -> expected reason (a regex)."""
    (folder / "pickled.safetensors").write_bytes(b"\x80\x04\x95garbage")
    _write_header(folder / "absurd.safetensors", b"{}", length=2**40)
    _write_header(folder / "past-end.safetensors", b'{"a": 1}', length=5000)
    _write_header(folder / "deep.safetensors", b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    (folder / "folder.safetensors").mkdir()
    huge = _card_json(arch_args={"num_classes": 10**12})
    save_file(
        {"w": torch.zeros(2)},
        folder / "huge-classes.safetensors",
        metadata={CARD_KEY: huge, FORMAT_KEY: FORMAT},
    )
    tiny_mpp = _card_json(target_mpp=1e-9)
    save_file(
        {"w": torch.zeros(2)},
        folder / "tiny-mpp.safetensors",
        metadata={CARD_KEY: tiny_mpp, FORMAT_KEY: FORMAT},
    )
    reasons = {
        "pickled": "pickle",
        "absurd": "exceeds the .* byte limit",
        "past-end": "past the end of the file",
        "deep": "nested",
        "folder": "not a regular file",
        "huge-classes": "num_classes",
        "tiny-mpp": "target_mpp",
    }
    if hasattr(os, "mkfifo"):  # a FIFO would block a reader forever
        os.mkfifo(folder / "fifo.safetensors")
        reasons["fifo"] = "not a regular file"
    return reasons


def test_bad_files_are_skipped_with_a_warning_and_shown_invalid(real_folder, caplog):
    reasons = _bad_files(real_folder)
    with caplog.at_level(logging.WARNING, logger="napari_her2.models.catalog"):
        assert _names(available_predictors()) == ["dab-cells", "dab-membrane", "gct", "resnet"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in reasons:
        assert f"{name}.safetensors" in warned
    assert sorted(_names(available_slide_models())) == ["mil", "mlp"]
    entries = {e["name"]: e for e in describe_models() if e["type"] == "checkpoint"}
    for name, reason in reasons.items():
        entry = entries[name]
        assert not entry["valid"], name
        error = entry["error"]
        assert "\n" not in error and str(real_folder / f"{name}.safetensors") in error
        assert re.search(reason, error), (name, error)
    assert entries["gct"]["valid"] and entries["mil"]["valid"]
    assert find_checkpoint("tiny gct") == real_folder / "gct.safetensors"


def test_card_read_does_not_read_the_whole_file(real_folder, monkeypatch):
    path = real_folder / "resnet.safetensors"
    n = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    reads: list[int] = []
    real_read = checkpoint._read

    def counting_read(p, fh, size):
        reads.append(size)
        return real_read(p, fh, size)

    monkeypatch.setattr(checkpoint, "_read", counting_read)
    assert checkpoint.read_card(path).architecture == "her2-resnet"
    assert reads and sum(reads) <= n < path.stat().st_size


def test_truncated_header_only_file_is_invalid_but_tensor_loss_is_found(real_folder):
    path = real_folder / "resnet.safetensors"
    tensors = load_file(path)
    assert tensors  # the file holds real tensors
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # tensor bytes cut: the header no longer fits the file
    entry = {e["name"]: e for e in describe_models()}["resnet"]
    assert not entry["valid"] and "outside the file" in entry["error"]
