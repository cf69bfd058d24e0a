"""The pathology foundation encoders napari-her2 can run from weights the user downloads.

One :class:`EncoderSpec` per encoder: its architecture (a :class:`~.vit.ViTConfig`), the rule
that turns its tokens into one embedding, the tile it expects (pixels, µm/px, mean/std), its
licence and where its weights come from. The facts are those of each model card and of the
reference loaders that follow the cards (timm arguments, TRIDENT); docs/encoders.md lists
them with what could not be confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .vit import ViTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Bioptimus' H-optimus normalisation (their model cards)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
#: the file names a timm or Hugging Face snapshot folder holds weights under, in order
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class EncoderSpec:
    """What napari-her2 knows about one foundation encoder.

    ``layout``: the key names of its weights, ``"timm"`` (timm's VisionTransformer),
    ``"hf-dinov2"`` (transformers' Dinov2Model) or ``"conch"`` (CONCH v1.5's image tower);
    ``output``: ``"cls"``, ``"cls+mean"`` or ``"attn-pool"``; ``pool_dim``: the attentional
    pooler's width (CONCH); ``files``: weight file names looked for in a folder, in order.
    """

    name: str
    title: str
    architecture: str
    vit: ViTConfig
    output: str
    input_px: int
    mpp: float
    licence: str
    hf_repo: str
    layout: str = "timm"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pool_dim: int = 0
    files: tuple[str, ...] = WEIGHT_FILES
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        if self.output == "attn-pool":
            return self.pool_dim
        return self.vit.dim * (2 if self.output == "cls+mean" else 1)

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.hf_repo}"

    def with_vit(self, **changes: Any) -> EncoderSpec:
        """The same encoder with some architecture fields changed (small test variants)."""
        return replace(self, vit=replace(self.vit, **changes))

    def describe(self) -> dict[str, Any]:
        """JSON-able facts (no weights)."""
        return {
            "name": self.name, "title": self.title, "architecture": self.architecture,
            "dim": self.dim, "input_px": self.input_px, "mpp": self.mpp,
            "mean": list(self.mean), "std": list(self.std), "output": self.output,
            "licence": self.licence, "hf_repo": self.hf_repo, "weights_files": list(self.files),
            "notes": self.notes,
        }


_VIT_L16 = ViTConfig(patch=16, dim=1024, depth=24, heads=16, init_values=1e-5, grid=14)
_VIT_G14_REG4 = ViTConfig(patch=14, dim=1536, depth=40, heads=24, mlp_ratio=5.33334,
                          swiglu=True, reg_tokens=4, no_embed_class=True, init_values=1e-5,
                          grid=16)
_MAHMOOD = "CC-BY-NC-ND 4.0; gated: accept its terms on Hugging Face (non-commercial research)"

SPECS: dict[str, EncoderSpec] = {s.name: s for s in (
    EncoderSpec(
        "uni", "UNI", "ViT-L/16 (timm vit_large_patch16_224, LayerScale)", _VIT_L16, "cls",
        224, 0.5, _MAHMOOD, "MahmoodLab/UNI", aliases=("uni_v1", "uni-v1"),
        files=("pytorch_model.bin", "model.safetensors")),
    EncoderSpec(
        "uni2-h", "UNI2-h", "ViT-H/14, 24 blocks of width 1536, packed SwiGLU, 8 registers",
        ViTConfig(patch=14, dim=1536, depth=24, heads=24, mlp_ratio=2.66667 * 2, swiglu=True,
                  reg_tokens=8, no_embed_class=True, init_values=1e-5, grid=16),
        "cls", 224, 0.5, _MAHMOOD, "MahmoodLab/UNI2-h", aliases=("uni_v2", "uni2", "uni-2h"),
        files=("pytorch_model.bin", "model.safetensors")),
    EncoderSpec(
        "virchow2", "Virchow2", "ViT-H/14 (timm vit_huge_patch14_224), packed SwiGLU, "
        "4 registers", ViTConfig(patch=14, dim=1280, depth=32, heads=16, mlp_ratio=5.3375,
                                 swiglu=True, reg_tokens=4, init_values=1e-5, grid=16),
        "cls+mean", 224, 0.5, _MAHMOOD.replace("MahmoodLab", "Paige"), "paige-ai/Virchow2",
        notes="trained at mixed magnification (5x to 40x); the embedding is the class token "
        "beside the mean of the patch tokens (registers left out), 2560 values",
        files=("pytorch_model.bin", "model.safetensors")),
    EncoderSpec(
        "h-optimus-0", "H-optimus-0", "ViT-g/14 (timm vit_giant_patch14_reg4_dinov2)",
        _VIT_G14_REG4, "cls", 224, 0.5, "Apache-2.0", "bioptimus/H-optimus-0",
        mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD, aliases=("hoptimus0",),
        files=("pytorch_model.bin", "model.safetensors")),
    EncoderSpec(
        "h-optimus-1", "H-optimus-1", "ViT-g/14 (timm vit_giant_patch14_reg4_dinov2)",
        _VIT_G14_REG4, "cls", 224, 0.5,
        "gated; academic research use (Bioptimus' release note); the exact licence is on "
        "its model card (not confirmed here)", "bioptimus/H-optimus-1",
        mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD, aliases=("hoptimus1",),
        files=("pytorch_model.bin", "model.safetensors")),
    EncoderSpec(
        "phikon-v2", "Phikon-v2", "ViT-L/16 (transformers Dinov2Model, DINOv2)",
        replace(_VIT_L16, antialias_pos=False), "cls", 224, 0.5,
        "Owkin non-commercial licence (as recalled; not confirmed here: read its model card)",
        "owkin/phikon-v2", layout="hf-dinov2", aliases=("phikon_v2",),
        files=("model.safetensors", "pytorch_model.bin"),
        notes="a Hugging Face snapshot folder (config.json + model.safetensors); its keys are "
        "mapped onto the timm names"),
    EncoderSpec(
        "conch-v1.5", "CONCH v1.5", "ViT-L/16 trunk + attentional pooler (one query, 768)",
        replace(_VIT_L16, init_values=1.0, antialias_pos=False, grid=28), "attn-pool", 448,
        0.5, _MAHMOOD, "MahmoodLab/conchv1_5", layout="conch", pool_dim=768,
        aliases=("conch_v15", "conchv1_5", "conch-v15"),
        files=("pytorch_model_vision.bin", "model.safetensors"),
        notes="the image tower of the TITAN release; the stored position grid is read from "
        "the weights"),
    EncoderSpec(
        "prov-gigapath", "Prov-GigaPath (tile encoder)",
        "ViT-g with 16 px patches (timm vit_giant_patch14_dinov2, patch_size=16), packed "
        "SwiGLU", ViTConfig(patch=16, dim=1536, depth=40, heads=24, mlp_ratio=5.33334,
                            swiglu=True, init_values=1e-5, grid=14),
        "cls", 224, 0.5, "see its model card (not confirmed here)", "prov-gigapath/prov-gigapath",
        aliases=("gigapath",), files=("pytorch_model.bin", "model.safetensors")),
)}


def find_spec(name: str) -> EncoderSpec | None:
    """The spec called ``name`` (or one of its aliases), case-insensitive; None if none is."""
    key = name.strip().lower()
    for spec in SPECS.values():
        if key == spec.name or key in spec.aliases or key == spec.hf_repo.lower():
            return spec
    return None
