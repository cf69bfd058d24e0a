"""The foundation encoders' networks: small variants of each architecture (same blocks,
tokens and output rule; few layers, small width) with random weights written in timm's key
layout (Hugging Face Dinov2 layout for Phikon-v2, CONCH's for CONCH v1.5) as safetensors and
as .bin, loaded strictly; preprocessing, output shape, determinism, and the forward pass
against a reference written here from the timm definitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from napari_her2.errors import CheckpointError
from napari_her2.models.encoders import SPECS, encoder_from_spec
from napari_her2.models.encoders.vit import ConchVisionTower, VisionTransformer

SMALL = {"dim": 32, "depth": 2, "heads": 2, "grid": 4}


def small_spec(name: str):
    spec = SPECS[name].with_vit(**SMALL)
    if spec.layout == "conch":
        spec = dataclasses.replace(spec, pool_dim=16)
    return dataclasses.replace(spec, input_px=spec.vit.patch * 4)


def random_state(spec, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = (ConchVisionTower(spec.vit, spec.pool_dim) if spec.layout == "conch"
           else VisionTransformer(spec.vit))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def to_hf_dinov2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names -> transformers Dinov2Model names (written here, independently)."""
    out = {"embeddings.cls_token": state["cls_token"],
           "embeddings.mask_token": torch.zeros(1, state["cls_token"].shape[-1]),
           "embeddings.position_embeddings": state["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
           "layernorm.weight": state["norm.weight"], "layernorm.bias": state["norm.bias"]}
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    for i in blocks:
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[b + f"attn.qkv.{kind}"].chunk(3, dim=0)
            out[h + f"attention.attention.query.{kind}"] = q.contiguous()
            out[h + f"attention.attention.key.{kind}"] = k.contiguous()
            out[h + f"attention.attention.value.{kind}"] = v.contiguous()
            out[h + f"attention.output.dense.{kind}"] = state[b + f"attn.proj.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[h + f"{name}.{kind}"] = state[b + f"{name}.{kind}"]
        out[h + "layer_scale1.lambda1"] = state[b + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = state[b + "ls2.gamma"]
    return out


def reference_tokens(sd: dict[str, torch.Tensor], cfg, x: torch.Tensor, pre: str = ""):
    """timm's VisionTransformer.forward_features, step by step, at the stored grid."""
    g = lambda k: sd[pre + k]  # noqa: E731
    t = F.conv2d(x, g("patch_embed.proj.weight"), g("patch_embed.proj.bias"), stride=cfg.patch)
    t = t.flatten(2).transpose(1, 2)
    n = x.shape[0]
    prefix = [g("cls_token").expand(n, -1, -1)]
    if cfg.reg_tokens:
        prefix.append(g("reg_token").expand(n, -1, -1))
    if cfg.no_embed_class:  # position embeddings of the patches only
        t = torch.cat([*prefix, t + g("pos_embed")], 1)
    else:
        t = torch.cat([*prefix, t], 1) + g("pos_embed")
    heads, d = cfg.heads, cfg.dim

    def ln(v, name):
        return F.layer_norm(v, (d,), g(name + ".weight"), g(name + ".bias"), eps=cfg.norm_eps)

    for i in range(cfg.depth):
        b = f"blocks.{i}."
        h = ln(t, b + "norm1")
        qkv = F.linear(h, g(b + "attn.qkv.weight"), g(b + "attn.qkv.bias"))
        q, k, v = (z.reshape(n, -1, heads, d // heads).transpose(1, 2) for z in qkv.chunk(3, -1))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1) @ v
        a = F.linear(a.transpose(1, 2).reshape(n, -1, d), g(b + "attn.proj.weight"),
                     g(b + "attn.proj.bias"))
        t = t + a * g(b + "ls1.gamma")
        h = F.linear(ln(t, b + "norm2"), g(b + "mlp.fc1.weight"), g(b + "mlp.fc1.bias"))
        if cfg.swiglu:
            x1, x2 = h.chunk(2, -1)
            h = F.silu(x1) * x2
        else:
            h = F.gelu(h)
        t = t + F.linear(h, g(b + "mlp.fc2.weight"), g(b + "mlp.fc2.bias")) * g(b + "ls2.gamma")
    return ln(t, "norm")


def normalised(tiles: np.ndarray, spec) -> torch.Tensor:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != spec.input_px:
        x = F.interpolate(x, size=(spec.input_px,) * 2, mode="bilinear", antialias=True,
                          align_corners=False)
    mean = torch.tensor(spec.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(spec.std).reshape(1, 3, 1, 1)
    return (x - mean) / std


def reference_embedding(spec, sd, tiles):
    x = normalised(tiles, spec)
    if spec.layout == "conch":
        t = reference_tokens(sd, spec.vit, x, "trunk.")
        net = ConchVisionTower(spec.vit, spec.pool_dim)
        net.load_state_dict(sd)
        pool = net.attn_pool_contrast
        return net.ln_contrast(pool(t)[:, 0]).detach().numpy()
    t = reference_tokens(sd, spec.vit, x)
    if spec.output == "cls+mean":
        return torch.cat([t[:, 0], t[:, spec.vit.prefix_tokens:].mean(1)], -1).numpy()
    return t[:, 0].numpy()


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 40, 52, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_small_variant_loads_strictly_and_matches_the_reference(name, suffix, tmp_path, tiles):
    spec = small_spec(name)
    sd = random_state(spec)
    stored = to_hf_dinov2(sd) if spec.layout == "hf-dinov2" else sd
    path = tmp_path / f"weights{suffix}"
    if suffix == ".bin":
        torch.save(stored, path)
    else:
        save_file(stored, str(path))
    enc = encoder_from_spec(spec, path)
    out = enc.embed(tiles)
    assert out.shape == (3, spec.dim) and out.dtype == np.float32
    assert enc.dim == spec.dim and enc.input_px == spec.input_px and len(enc.sha256) == 64
    np.testing.assert_allclose(out, reference_embedding(spec, sd, tiles), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out, enc.embed(tiles))  # deterministic
    np.testing.assert_allclose(enc.embed(tiles[1:2]), out[1:2], rtol=1e-5, atol=1e-5)


def test_the_output_rules_and_dims_of_the_real_encoders():
    dims = {name: spec.dim for name, spec in SPECS.items()}
    assert dims == {"uni": 1024, "uni2-h": 1536, "virchow2": 2560, "h-optimus-0": 1536,
                    "h-optimus-1": 1536, "phikon-v2": 1024, "conch-v1.5": 768,
                    "prov-gigapath": 1536}
    assert SPECS["uni2-h"].vit.hidden == 8192 and SPECS["virchow2"].vit.hidden == 6832
    assert SPECS["h-optimus-0"].vit.hidden == 8192 and SPECS["prov-gigapath"].vit.hidden == 8192
    assert SPECS["virchow2"].vit.pos_len == 261 and SPECS["uni2-h"].vit.pos_len == 256
    assert SPECS["conch-v1.5"].input_px == 448


def test_other_input_sizes_resample_the_position_embeddings(tmp_path, tiles):
    spec = small_spec("uni2-h")
    sd = random_state(spec)
    save_file(sd, str(tmp_path / "w.safetensors"))
    big = dataclasses.replace(spec, input_px=spec.vit.patch * 6)
    out = encoder_from_spec(big, tmp_path / "w.safetensors").embed(tiles)
    assert out.shape == (3, spec.dim) and np.isfinite(out).all()


def test_weights_of_another_shape_are_refused_in_one_line(tmp_path):
    spec = small_spec("uni")
    sd = random_state(spec.with_vit(depth=1))
    sd["extra.weight"] = torch.zeros(2)
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError) as info:
        encoder_from_spec(spec, tmp_path / "w.safetensors")
    message = str(info.value)
    assert "\n" not in message and "UNI" in message
    assert "missing: blocks.1" in message and "unexpected: extra.weight" in message


def test_a_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "pytorch_model.bin"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot read the weights"):
        encoder_from_spec(small_spec("uni"), path)
