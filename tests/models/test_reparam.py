"""Structural re-parameterization: equivalence, copy semantics, idempotence, deploy builds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from napari_her2.models import get_model, reparameterize_model
from napari_her2.models.repvgg import RepVGGBlock


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


@pytest.mark.parametrize("name", ["repvgg-gct", "repvgg-se"])
def test_deploy_form_gives_same_outputs(name, tiny_repvgg, randomize):
    torch.manual_seed(0)
    model = randomize(get_model(name, num_classes=6, **tiny_repvgg), seed=1).eval()
    deployed = reparameterize_model(model)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    assert float(ref.std()) > 1e-2  # outputs are not trivially flat
    assert _max_diff(model, deployed, x) < 1e-4


@pytest.mark.parametrize("name", ["repvgg-gct", "repvgg-se"])
def test_full_size_repvgg_equivalence(name, calibrate, randomize):
    """The default network (RepVGG-A0 widths, 22 blocks) in float32. BN statistics are set
    from a pass over the data, as training leaves them (purely random statistics make an
    untrained 22-block network's logits grow to the hundreds, where float32 rounding alone
    exceeds 1e-4), then perturbed; GCT parameters are random."""
    torch.manual_seed(3)
    model = randomize(get_model(name), seed=3)  # random GCT gates; BN is replaced next
    x = torch.randn(4, 3, 64, 64)
    calibrate(model, x, seed=3)
    deployed = reparameterize_model(model)
    with torch.no_grad():
        ref = model(x[:2])
    assert float(ref.std()) > 0.1
    assert _max_diff(model, deployed, x[:2]) < 1e-4


def test_fusion_is_sensitive_to_bn_statistics(tiny_repvgg, randomize):
    """Guard against a vacuous test: a fused model built from other BN stats differs."""
    torch.manual_seed(0)
    model = randomize(get_model("repvgg-gct", **tiny_repvgg), seed=1).eval()
    other = copy.deepcopy(model)
    for m in other.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(1.5)
    assert _max_diff(model, reparameterize_model(other), torch.randn(2, 3, 32, 32)) > 1e-3


def test_original_untouched_and_branches_removed(tiny_repvgg, randomize):
    model = randomize(get_model("repvgg-se", **tiny_repvgg)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = reparameterize_model(model)
    assert model.training and not deployed.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(".dense." in k for k in model.state_dict())
    keys = deployed.state_dict().keys()
    assert not any(".dense." in k or ".pointwise." in k or ".identity." in k for k in keys)
    assert sum(
        isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in deployed.modules()
    ) == sum(isinstance(m, RepVGGBlock) for m in deployed.modules())
    assert model.arch_args["deploy"] is False and deployed.arch_args["deploy"] is True


def test_reparameterize_is_idempotent(tiny_repvgg, randomize):
    model = randomize(get_model("repvgg-gct", **tiny_repvgg)).eval()
    once = reparameterize_model(model)
    twice = reparameterize_model(once)
    s1, s2 = once.state_dict(), twice.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    block = RepVGGBlock(8, 8).eval()
    block.reparameterize()
    kernel = block.fused.weight.clone()
    block.reparameterize()
    assert torch.equal(kernel, block.fused.weight)


def test_block_built_in_deploy_form_loads_fused_weights(randomize):
    torch.manual_seed(0)
    train_block = randomize(nn.Sequential(RepVGGBlock(8, 8, attention="gct"))).eval()
    fused = reparameterize_model(train_block)
    direct = nn.Sequential(RepVGGBlock(8, 8, attention="gct", deploy=True)).eval()
    direct.load_state_dict(fused.state_dict())
    x = torch.randn(2, 8, 12, 12)
    assert _max_diff(train_block, direct, x) < 1e-5


def test_stride_two_and_channel_change_fusion(randomize):
    torch.manual_seed(0)
    block = randomize(nn.Sequential(RepVGGBlock(4, 8, stride=2, attention="se"))).eval()
    assert block[0].identity is None
    assert _max_diff(block, reparameterize_model(block), torch.randn(2, 4, 15, 15)) < 1e-5


def test_abmil_with_repvgg_backbone_reparameterizes(tiny_repvgg, randomize):
    torch.manual_seed(0)
    model = randomize(
        get_model("abmil", backbone="repvgg-gct", backbone_args={"num_classes": 4, **tiny_repvgg})
    ).eval()
    deployed = reparameterize_model(model)
    assert deployed.arch_args["backbone_args"]["deploy"] is True
    bag = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        a, b = model(bag), deployed(bag)
    assert float((a.logits - b.logits).abs().max()) < 1e-4
    assert float((a.attention - b.attention).abs().max()) < 1e-5
