"""Registry: names, building by name, recorded arguments, duplicate and unknown names."""

from __future__ import annotations

import pytest
from torch import nn

from napari_her2.errors import ModelNotFoundError
from napari_her2.models import get_model, list_models, register_model
from napari_her2.models import registry as reg

EXPECTED = {"her2-resnet", "repvgg-gct", "repvgg-se", "resnet18", "abmil", "whspn-mlp", "whspn-svm"}


def test_all_seed_models_are_registered():
    assert EXPECTED <= set(list_models())
    assert set(list_models("tile")) == {"her2-resnet", "repvgg-gct", "repvgg-se", "resnet18"}
    assert list_models("mil") == ["abmil"]
    assert list_models("slide") == ["whspn-mlp", "whspn-svm"]


def test_get_model_records_full_arguments():
    model = get_model("her2-resnet", num_classes=3)
    assert model.arch_name == "her2-resnet"
    assert model.arch_args["num_classes"] == 3
    assert model.arch_args["kernel_sizes"] == (11, 7, 5, 3)  # defaults filled in


def test_duplicate_name_is_rejected(monkeypatch):
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))

    @register_model("test-dummy")
    def dummy() -> nn.Module:
        """A dummy."""
        return nn.Identity()

    assert "test-dummy" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-dummy")(dummy)
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18")(dummy)


def test_register_model_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        register_model("x", kind="volume")  # type: ignore[arg-type]


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ModelNotFoundError, match="no architecture named 'vgg16'") as err:
        get_model("vgg16")
    assert "resnet18" in str(err.value)
    with pytest.raises(TypeError):
        get_model("resnet18", no_such_arg=1)
    with pytest.raises(ValueError, match="widths"):
        get_model("repvgg-gct", widths=(8, 8))
