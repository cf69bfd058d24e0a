"""Every architecture: output shapes, parameter counts, and that a few steps reduce loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_her2.models import MILOutput, count_parameters, get_model
from napari_her2.models.her2_resnet import ResidualUnit


def _steps_reduce_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 8, lr: float = 3e-3
) -> tuple[float, float]:
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        logits = out.logits if isinstance(out, MILOutput) else out
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]


def _batch(n: int, size: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.arange(n) % classes


def test_her2_resnet_layout_and_params():
    torch.manual_seed(0)
    model = get_model("her2-resnet")
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 4)
    assert model.forward_features(x).shape == (2, 512)  # 4 x 4 x 32 -> dense 512 -> 4
    assert model.head.in_features == 512
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs if c.kernel_size[0] > 1] == [11, 7, 7, 5, 5, 5, 5, 3]
    units = [m for m in model.modules() if isinstance(m, ResidualUnit)]
    assert [type(u.shortcut).__name__ for u in units] == ["Identity", "ConvBN", "Identity"]
    assert 30_000 < count_parameters(model) < 50_000
    assert get_model("her2-resnet", num_classes=6)(torch.randn(1, 3, 96, 96)).shape == (1, 6)


def test_her2_resnet_learns():
    torch.manual_seed(0)
    x, y = _batch(4, 64, 4)
    first, last = _steps_reduce_loss(get_model("her2-resnet", dropout=0.0), x, y, steps=6)
    assert last < 0.7 * first


@pytest.mark.parametrize("name", ["repvgg-gct", "repvgg-se"])
def test_repvgg_shapes(name, tiny_repvgg):
    torch.manual_seed(0)
    model = get_model(name, num_classes=4, **tiny_repvgg)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    assert model.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, 32)


@pytest.mark.parametrize(
    ("name", "train_m", "deploy_m"),
    [("repvgg-gct", 7.849, 7.049), ("repvgg-se", 8.115, 7.316)],
)
def test_repvgg_default_params_match_paper(name, train_m, deploy_m):
    """Seed 001 Table 7 / Table 4: 7.849 M -> 7.049 M (GCT), 7.316 M deploy (SE), 6 classes."""
    from napari_her2.models import reparameterize_model

    model = get_model(name)
    assert count_parameters(model) / 1e6 == pytest.approx(train_m, rel=0.01)
    assert count_parameters(reparameterize_model(model)) / 1e6 == pytest.approx(deploy_m, rel=0.01)


@pytest.mark.parametrize("name", ["repvgg-gct", "repvgg-se"])
def test_repvgg_learns(name, tiny_repvgg):
    torch.manual_seed(0)
    x, y = _batch(8, 32, 4)
    first, last = _steps_reduce_loss(get_model(name, num_classes=4, **tiny_repvgg), x, y)
    assert last < 0.7 * first


def test_resnet18_shapes_and_params(tiny_resnet):
    model = get_model("resnet18")
    assert 11.1e6 < count_parameters(model) < 11.3e6  # ResNet-18 with a 4-class head
    small = get_model("resnet18", num_classes=3, **tiny_resnet)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert small(torch.randn(1, 3, 80, 48)).shape == (1, 3)  # any input size
    with pytest.raises(ValueError, match="input_size"):
        get_model("resnet18", input_size=8)


def test_resnet18_learns(tiny_resnet):
    torch.manual_seed(0)
    x, y = _batch(8, 32, 4)
    first, last = _steps_reduce_loss(get_model("resnet18", **tiny_resnet), x, y)
    assert last < 0.7 * first


def test_abmil_on_features_returns_attention():
    torch.manual_seed(0)
    model = get_model("abmil", in_features=16, num_classes=4).eval()
    out = model(torch.randn(3, 10, 16))
    assert isinstance(out, MILOutput)
    assert out.logits.shape == (3, 4)
    assert out.attention.shape == (3, 10)
    assert torch.allclose(out.attention.sum(1), torch.ones(3))
    single = model(torch.randn(7, 16))
    assert single.logits.shape == (1, 4) and single.attention.shape == (1, 7)


def test_abmil_mask_and_permutation_invariance():
    torch.manual_seed(0)
    model = get_model("abmil", in_features=8).eval()
    bag = torch.randn(1, 6, 8)
    perm = torch.randperm(6)
    a, b = model(bag), model(bag[:, perm])
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert torch.allclose(a.attention[:, perm], b.attention, atol=1e-6)
    mask = torch.tensor([[True, True, True, False, False, False]])
    masked = model(bag, mask)
    assert torch.all(masked.attention[0, 3:] == 0)
    assert torch.allclose(masked.logits, model(bag[:, :3]).logits, atol=1e-6)


def test_abmil_with_registered_backbone(tiny_repvgg):
    torch.manual_seed(0)
    model = get_model(
        "abmil", backbone="repvgg-gct", backbone_args={"num_classes": 4, **tiny_repvgg}
    )
    out = model(torch.randn(2, 5, 3, 32, 32))
    assert out.logits.shape == (2, 4) and out.attention.shape == (2, 5)
    with pytest.raises(ValueError, match="tile model"):
        get_model("abmil", backbone="whspn-mlp")


def test_abmil_learns():
    torch.manual_seed(0)
    bags = torch.randn(8, 12, 16)
    y = torch.arange(8) % 4
    bags[torch.arange(8), 0, :4] += 3.0 * nn.functional.one_hot(y, 4).float()  # key instance
    first, last = _steps_reduce_loss(
        get_model("abmil", in_features=16, dropout=0.0), bags, y, steps=15
    )
    assert last < 0.7 * first


def test_whspn_mlp_shape_and_learning():
    model = get_model("whspn-mlp")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 and sum(isinstance(m, nn.ReLU) for m in model.modules()) == 3
    torch.manual_seed(0)
    x = torch.distributions.Dirichlet(torch.ones(4)).sample((32,))
    y = x.argmax(1)
    assert model(x).shape == (32, 4)
    first, last = _steps_reduce_loss(model, x, y, steps=40, lr=1e-2)
    assert last < 0.8 * first
