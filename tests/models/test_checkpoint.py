"""Checkpoints: round trips, model cards, and every refusal (one line, naming the file)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_her2.errors import CheckpointError
from napari_her2.models import (
    ModelCard,
    get_model,
    load_checkpoint,
    read_card,
    reparameterize_model,
    save_checkpoint,
)
from napari_her2.models.checkpoint import CARD_KEY, FORMAT, FORMAT_KEY, weights_sha256

HER2 = ("0", "1+", "2+", "3+")
SIX = (*HER2, "normal", "noise")


def _card(arch: str, classes=HER2, **kw) -> ModelCard:
    return ModelCard(
        architecture=arch,
        classes=classes,
        input_size=64,
        target_mpp=1.0,
        mean=(0.8, 0.7, 0.75),
        std=(0.15, 0.2, 0.18),
        **kw,
    )


@pytest.fixture
def saved(tmp_path, tiny_repvgg, randomize) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = randomize(get_model("repvgg-gct", num_classes=6, **tiny_repvgg)).eval()
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, _card("repvgg-gct", SIX, training_data="synthetic"))
    return path, model


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def _rewrite(path: Path, card_json: str | None = None, tensors=None) -> None:
    """Rewrite a checkpoint with edited metadata or tensors (simulates tampering)."""
    tensors = load_file(path) if tensors is None else tensors
    meta = {FORMAT_KEY: FORMAT}
    if card_json is not None:
        meta[CARD_KEY] = card_json
    save_file(tensors, path, metadata=meta)


def _card_dict(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(path, "pt") as fh:
        return json.loads(fh.metadata()[CARD_KEY])


@pytest.mark.parametrize(
    ("arch", "kwargs", "size"),
    [
        ("her2-resnet", {}, 64),
        (
            "repvgg-se",
            {"num_classes": 4, "widths": (8, 8, 16, 16, 32), "depths": (1, 1, 1, 1, 1)},
            32,
        ),
        ("resnet18", {"widths": (8, 8, 16, 16), "input_size": 32}, 32),
    ],
)
def test_round_trip_gives_same_outputs(tmp_path, randomize, arch, kwargs, size):
    torch.manual_seed(0)
    model = randomize(get_model(arch, **kwargs)).eval()
    path = tmp_path / f"{arch}.safetensors"
    written = save_checkpoint(path, model, _card(arch, metrics={"accuracy": 0.5}))
    loaded, card = load_checkpoint(path)
    assert card == written and len(card.sha256) == 64
    assert card.arch_args == json.loads(json.dumps(model.arch_args))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away


def test_deploy_checkpoint_loads_into_deploy_built_model(tmp_path, saved):
    path, model = saved
    deployed = reparameterize_model(model)
    deploy_path = tmp_path / "deploy.safetensors"
    card = save_checkpoint(deploy_path, deployed, _card("repvgg-gct", SIX))
    assert card.arch_args["deploy"] is True
    loaded, _ = load_checkpoint(deploy_path)
    assert not any(".dense." in k for k in loaded.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert float((model(x) - loaded(x)).abs().max()) < 1e-4


def test_model_card_json_round_trip_and_validation():
    card = _card("her2-resnet", description="d", metrics={"acc": 0.9, "n": 3})
    again = ModelCard.from_json(card.to_json())
    assert again == card and again.name == "her2-resnet"
    assert "Not for diagnosis" in card.intended_use or "not for diagnosis" in card.intended_use
    with pytest.raises(ValueError, match="std"):
        _card("x").replace(std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="maps to no HER2"):
        ModelCard(architecture="x", classes=("cat", "dog"))
    with pytest.raises(ValueError, match="unknown model card field"):
        ModelCard.from_json(json.dumps({**card.to_dict(), "extra": 1}))
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelCard.from_json("{nope")
    with pytest.raises(ValueError, match="input_size"):
        _card("x").replace(input_size=-3)
    with pytest.raises(ValueError, match="sha256"):
        _card("x").replace(sha256="abc")
    with pytest.raises(Exception, match="frozen|cannot assign"):
        card.name = "other"  # type: ignore[misc]


def test_atomic_write_keeps_old_file_on_failure(tmp_path, saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, _card("repvgg-gct", SIX, description="new"))
    assert path.read_bytes() == before
    assert not list(path.parent.glob("*.tmp"))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(("suffix", "protocol"), [(".safetensors", 4), (".bin", 2), ("", 5)])
def test_pickle_content_is_refused_without_running_it(tmp_path, suffix, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle") as err:
        load_checkpoint(path)
    _one_line(err, path)
    assert not marker.exists()


def test_torch_save_zip_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="zip") as err:
        load_checkpoint(path)
    _one_line(err, path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_extensions_are_refused(tmp_path, saved, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(saved[0].read_bytes())  # even valid safetensors bytes
    with pytest.raises(CheckpointError, match="pickle-based") as err:
        load_checkpoint(path)
    _one_line(err, path)


def test_missing_truncated_and_cardless_files(tmp_path, saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        load_checkpoint(tmp_path / "absent.safetensors")
    _one_line(err, tmp_path / "absent.safetensors")
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(short)
    _one_line(err, short)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-64])  # header intact, tensor data truncated
    with pytest.raises(CheckpointError, match="corrupt safetensors data") as err:
        load_checkpoint(cut)
    _one_line(err, cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(pickle.dumps(1, protocol=2))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tiny)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(3)}, bare)
    with pytest.raises(CheckpointError, match="no napari-her2 model card") as err:
        load_checkpoint(bare)
    _one_line(err, bare)


def test_unknown_architecture_and_bad_arguments(saved):
    path, _ = saved
    card = _card_dict(path)
    _rewrite(path, json.dumps({**card, "architecture": "vgg16"}))
    with pytest.raises(CheckpointError, match="unknown architecture") as err:
        load_checkpoint(path)
    _one_line(err, path)
    _rewrite(path, json.dumps({**card, "arch_args": {**card["arch_args"], "colour": 1}}))
    with pytest.raises(CheckpointError, match="do not fit 'repvgg-gct'") as err:
        load_checkpoint(path)
    _one_line(err, path)


def test_card_and_architecture_mismatch_on_save_and_load(tmp_path, saved):
    path, model = saved
    with pytest.raises(CheckpointError, match="model is 'repvgg-gct'"):
        save_checkpoint(tmp_path / "x.safetensors", model, _card("repvgg-se", SIX))
    with pytest.raises(CheckpointError, match="6 outputs"):
        save_checkpoint(tmp_path / "x.safetensors", model, _card("repvgg-gct", HER2))
    card = _card_dict(path)
    _rewrite(path, json.dumps({**card, "classes": list(HER2)}))
    with pytest.raises(CheckpointError, match="4 classes, model has 6 outputs"):
        load_checkpoint(path)


def test_shape_mismatch_is_refused(saved):
    path, _ = saved
    card = _card_dict(path)
    args = {**card["arch_args"], "widths": [8, 8, 16, 16, 48]}  # last stage wider
    _rewrite(path, json.dumps({**card, "arch_args": args}))
    with pytest.raises(CheckpointError, match="shapes do not match") as err:
        load_checkpoint(path)
    assert "stages.4.0" in _one_line(err, path)


def test_missing_keys_are_refused(saved):
    path, _ = saved
    card = _card_dict(path)
    tensors = load_file(path)
    del tensors["head.bias"]
    card["sha256"] = weights_sha256(tensors)
    _rewrite(path, json.dumps(card), tensors)
    with pytest.raises(CheckpointError, match="missing keys head.bias") as err:
        load_checkpoint(path)
    _one_line(err, path)


def test_tampered_weights_or_hash_are_refused(saved):
    path, _ = saved
    card = _card_dict(path)
    tensors = load_file(path)
    tensors["head.weight"][0, 0] += 1.0
    _rewrite(path, json.dumps(card), tensors)
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(path)
    _one_line(err, path)
    _rewrite(path, json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_tampered_metadata_is_refused(saved):
    path, _ = saved
    card = _card_dict(path)
    _rewrite(path, json.dumps(card)[:-5])
    with pytest.raises(CheckpointError, match="not valid JSON") as err:
        load_checkpoint(path)
    _one_line(err, path)
    _rewrite(path, json.dumps({**card, "mean": [0.5, 0.5]}))
    with pytest.raises(CheckpointError, match="invalid model card: mean and std"):
        load_checkpoint(path)
    _rewrite(path, json.dumps({**card, "loader": "os.system"}))
    with pytest.raises(CheckpointError, match="unknown model card field"):
        load_checkpoint(path)


def test_save_requires_registry_model_and_safetensors_suffix(tmp_path):
    with pytest.raises(CheckpointError, match="get_model"):
        save_checkpoint(tmp_path / "a.safetensors", torch.nn.Linear(2, 4), _card("x"))
    model = get_model("whspn-mlp")
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        save_checkpoint(tmp_path / "a.pt", model, _card("whspn-mlp"))
    assert not (tmp_path / "a.pt").exists()


# --------------------------------------------------------------------------- hostile cards


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_CARDS = [
    # (change to the card dict, or a function of the card dict; expected reason)
    ({"arch_args": {"num_classes": -1}}, "num_classes = -1 is outside 1..1000"),
    ({"arch_args": {"num_classes": 10**12}}, "num_classes"),
    ({"arch_args": {"widths": [8, 8, 16, 16, 10**6]}}, "widths"),
    ({"arch_args": {"depths": [1, 1, 1, 1, 10**4]}}, "depths"),
    ({"arch_args": {"in_channels": 4096}}, "in_channels"),
    ({"arch_args": {"widths": list(range(1, 200))}}, "widths has 199 entries"),
    ({"arch_args": {"colour": "x" * 1000}}, "longer than"),
    ({"arch_args": {"backbone_args": {"a": {"b": {"c": {"d": {}}}}}}}, "nested deeper"),
    ({"input_size": 30000}, "input_size must be an integer in 16..1024"),
    ({"input_size": 8}, "input_size"),
    ({"mean": [0.5, 0.5]}, "mean and std need 3 values"),
    ({"std": [0.2, 0.2, 0.2, 0.2]}, "std got"),
    ({"mean": [1e308, 0, 0]}, "mean must hold finite numbers"),
    ({"target_mpp": 1e-9}, "target_mpp must be a number in 0.05..50"),
    ({"target_mpp": 1e6}, "target_mpp"),
    ({"classes": ["0"] * 100}, "more than 32 classes"),
    ({"name": "n" * 5000}, "name is longer than 200"),
    ({"description": "d" * 100_000}, "description is longer"),
    ({"metrics": {"curve": list(range(20_000))}}, "metrics are larger"),
    ({"metrics": {"deep": _deep(20)}}, "nested deeper than"),
    ({"format_version": 10**30}, "format_version"),
]


@pytest.mark.parametrize(("change", "reason"), HOSTILE_CARDS)
def test_hostile_cards_are_refused_before_building(saved, monkeypatch, change, reason):
    path, _ = saved
    card = _card_dict(path)
    for key, value in change.items():
        card[key] = {**card[key], **value} if key == "arch_args" else value
    _rewrite(path, json.dumps(card))

    def no_build(*args, **kwargs):
        raise AssertionError("a model was built from a hostile card")

    monkeypatch.setattr("napari_her2.models.checkpoint.get_model", no_build)
    with pytest.raises(CheckpointError, match=reason) as err:
        load_checkpoint(path)
    assert "invalid model card" in _one_line(err, path)
    with pytest.raises(CheckpointError, match=reason):
        read_card(path)


@pytest.mark.parametrize(
    ("card_text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"architecture": "her2-resnet", "classes": ["0"], "input_size": NaN}', "NaN"),
        ('{"architecture": "her2-resnet", "classes": ["0"], "target_mpp": Infinity}', "Infinity"),
        ("{" + " " * (300 * 1024) + "}", "larger than"),
        ('{"architecture": "her2-resnet", "classes": ["0"], "mean": 3}', "mean and std"),
        (
            '{"architecture": "her2-resnet", "classes": ["0"], "input_size": 1' + "0" * 5000 + "}",
            "not acceptable JSON",
        ),
    ],
)
def test_hostile_card_json_is_refused(saved, card_text, reason):
    path, _ = saved
    _rewrite(path, card_text)
    with pytest.raises(CheckpointError, match=reason) as err:
        load_checkpoint(path)
    _one_line(err, path)


def test_architecture_too_large_is_refused_before_allocating(saved, monkeypatch):
    path, _ = saved
    card = _card_dict(path)
    args = {**card["arch_args"], "widths": [2048] * 5, "depths": [16] * 5}  # within bounds
    _rewrite(path, json.dumps({**card, "arch_args": args}))
    with pytest.raises(CheckpointError, match="parameters and buffers, more than the") as err:
        load_checkpoint(path)
    _one_line(err, path)
    args = {"n_support_vectors": 10**6, "in_features": 65_536}  # a 0.5 TB buffer if built
    _rewrite(path, json.dumps({**card, "architecture": "whspn-svm", "arch_args": args}))
    with pytest.raises(CheckpointError, match="more than the"):
        load_checkpoint(path)


def _raw(path: Path, header: bytes, length: int | None = None, tail: bytes = b"") -> Path:
    n = len(header) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + header + tail)
    return path


@pytest.mark.parametrize(
    ("header", "length", "reason"),
    [
        (b"{}", 2**62, "exceeds the 16777216 byte limit"),
        (b'{"a": 1}', 4096, "runs past the end of the file"),
        (b'{"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", None, "nested"),
        (b'{"__metadata__": {"k": 1}}', None, "map names to strings"),
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', None, "outside"),
        (b'{"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}', None, "unknown dtype"),
        (b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', None, "invalid shape"),
        (b'{"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 4]}}', None, "not what"),
        (b'{"w": "x"}', None, "not described by an object"),
        (b"{\xff\xfe}", None, "UTF-8"),
    ],
)
def test_hostile_headers_are_refused_with_one_line(tmp_path, header, length, reason):
    path = _raw(tmp_path / "h.safetensors", header, length, tail=b"\0" * 8)
    with pytest.raises(CheckpointError, match=reason) as err:
        read_card(path)
    _one_line(err, path)


def test_non_regular_files_are_refused_without_blocking(tmp_path):
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="not a regular file") as err:
        load_checkpoint(folder)
    _one_line(err, folder)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.safetensors"
        os.mkfifo(fifo)
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_checkpoint(fifo)


def test_loading_streams_instead_of_reading_the_file(saved, monkeypatch):
    path, model = saved
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    loaded, card = load_checkpoint(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
