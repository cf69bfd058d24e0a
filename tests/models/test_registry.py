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


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"num_classes": 0}, "num_classes = 0 is outside 1..1000"),
        ({"num_classes": 10**12}, "num_classes = 1000000000000"),
        ({"num_classes": 2**200}, "an integer of 201 bits"),
        ({"widths": [8, 8, 8, 8, 5000]}, "widths = 5000"),
        ({"widths": [8] * 9}, "widths has 9 entries"),
        ({"dropout": 1.5}, "dropout"),
        ({"gamma": float("nan")}, "gamma = nan"),
        ({"unknown_int": 10**9}, "unknown_int"),
        ({"backbone": "r" * 500}, "longer than 128"),
        ({"backbone_args": {"a": {"b": {"c": {"d": 1}}}}}, "nested deeper than 3"),
        ({"widths": [8, "x"]}, "must hold numbers"),
        ({"x": object()}, "unsupported type"),
    ],
)
def test_arch_args_beyond_bounds_are_refused(args, reason):
    with pytest.raises(ValueError, match=reason):
        reg.check_arch_args(args)


def test_arch_args_within_bounds_pass_and_limits_cover_every_int_argument():
    reg.check_arch_args({"num_classes": 4, "widths": (8, 16), "backbone_args": {"depths": [1]}})
    for name in list_models():
        spec = reg.model_spec(name)
        reg.check_arch_args(spec.default_args())  # every default is within its bounds
        for arg, default in spec.default_args().items():
            if isinstance(default, int | tuple) and not isinstance(default, bool):
                assert arg in reg.ARG_LIMITS, f"{name}.{arg} has no bounds in ARG_LIMITS"


def test_get_model_refuses_out_of_bounds_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        get_model("her2-resnet", num_classes=-4)
    with pytest.raises(ValueError, match="in_features"):
        get_model("abmil", in_features=10**7)


def test_estimate_parameters_matches_the_real_model_without_allocating():
    real = get_model("repvgg-gct", num_classes=4, widths=(8, 8, 16, 16, 32))
    assert reg.estimate_parameters(
        "repvgg-gct", num_classes=4, widths=(8, 8, 16, 16, 32)
    ) == reg.count_parameters(real)
    big = reg.estimate_parameters("repvgg-gct", widths=(2048,) * 5, depths=(16,) * 5)
    assert big > reg.MAX_PARAMETERS  # counted on the meta device: no 100+ GB allocated
