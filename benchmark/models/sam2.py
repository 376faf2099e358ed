"""SAM2 (Hiera image encoder, `sam2` package) for single images, with the paper's text-prompt path.

The paper's SAM2 experiments (section 4.3, Fig. 4b) adapt the Hiera encoder at 512 x 512 with the
same text prompt -> TAL -> sparse token route as SAM. Only the single-image path is kept: Hiera +
FPN neck, SAM2's prompt encoder and mask decoder (with its high-resolution skip features), and
the "no memory" embedding that SAM2ImagePredictor adds to the lowest-resolution level. The video
memory modules are dropped. Hiera interpolates its positional embeddings to any input size on
every forward, so nothing needs resizing; weights come from a local SAM2 / SAM2.1 checkpoint or
are random on explicit request (`weights: random`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmark.models import text
from benchmark.models.backbone import Backbone
from benchmark.models.checkpoints import load_checked, read_state_dict
from benchmark.models.prompted import TAL_PREFIX, TextPromptedSAM
from benchmark.models.sam import extra_trainable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 32  # Hiera's coarsest feature stride: the input must tile into it
PROMPT_DIM = 256
_BLOCK = r"image_encoder\.trunk\.blocks\.\d+"
COMPONENTS = {
    "attn.qkv": rf"{_BLOCK}\.attn\.qkv",
    "attn.proj": rf"{_BLOCK}\.attn\.proj",
    "mlp": rf"{_BLOCK}\.mlp\.layers\.[01]",
    "neck": r"image_encoder\.neck\.convs\.\d+\.conv",
    "stage.proj": rf"{_BLOCK}\.proj",
}
POS_EMBEDS = ("image_encoder.trunk.pos_embed", "image_encoder.trunk.pos_embed_window")
# checkpoint prefix -> our prefix, for the parts the single-image path keeps
KEPT = {
    "image_encoder.": "image_encoder.",
    "sam_prompt_encoder.": "prompt_encoder.",
    "sam_mask_decoder.": "mask_decoder.",
    "no_mem_embed": "no_mem_embed",
}
URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class Hiera:
    label: str
    config: str
    checkpoint: str


ARCHS = {
    "sam2_hiera_t": Hiera("SAM2.1 Hiera-T", "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "sam2_hiera_s": Hiera("SAM2.1 Hiera-S", "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "sam2_hiera_b+": Hiera("SAM2.1 Hiera-B+", "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "sam2_hiera_l": Hiera("SAM2.1 Hiera-L", "configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}


class TextPromptedSAM2(TextPromptedSAM):
    """TextPromptedSAM whose encoder returns SAM2's feature pyramid (sam2_image_predictor's route)."""

    def __init__(self, *, no_mem_embed: nn.Parameter, **parts) -> None:
        super().__init__(**parts)
        self.no_mem_embed = no_mem_embed

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        levels = self.image_features(image)["backbone_fpn"]
        embedding = levels[-1] + self.no_mem_embed.reshape(1, -1, 1, 1)
        high_res = [self.mask_decoder.conv_s0(levels[0]), self.mask_decoder.conv_s1(levels[1])]
        return embedding, {"repeat_image": False, "high_res_features": high_res}


def build_sam2_base(arch: str, input_size: int) -> nn.Module:
    """The full SAM2Base of `arch` at `input_size`, randomly initialised, as sam2.build_sam2 builds
    it (without moving it to a device or loading weights)."""
    import sam2  # noqa: F401  (importing sam2 registers its configs with Hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if input_size % STRIDE:
        raise ValueError(f"{arch}: input_size must be a multiple of {STRIDE}, got {input_size}")
    cfg = compose(config_name=ARCHS[arch].config, overrides=[f"++model.image_size={input_size}"])
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def _load(model: nn.Module, base: nn.Module, cfg: dict) -> str:
    arch = ARCHS[cfg["name"]]
    hint = (f"Download {URL}{arch.checkpoint} (saltbench fetch --config <grid> does; or the SAM 2.0 file of "
            "the same size) and set backbone.checkpoint to its path.")
    if not cfg.get("checkpoint"):
        raise FileNotFoundError(f"backbone {cfg['name']} with weights: pretrained needs backbone.checkpoint. {hint}")
    path = Path(cfg["checkpoint"]).expanduser()
    renamed = {}
    for key, tensor in read_state_dict(path, hint).items():
        prefix = next((p for p in KEPT if key.startswith(p)), None)
        renamed[key if prefix is None else KEPT[prefix] + key[len(prefix):]] = tensor
    dropped = tuple(sorted({key.split(".")[0] for key in base.state_dict()} - {p.rstrip(".") for p in KEPT}))
    report = load_checked(model, renamed, path, f"{cfg['name']} ({arch.label})", ignore=dropped, own=(TAL_PREFIX,))
    return f"{arch.label} pretrained ({report.describe()})"


def build(cfg: dict, cache_dir: Path) -> Backbone:
    arch = cfg["name"]
    input_size = cfg.get("input_size", 512)
    encoder, checkpoint = cfg["text_encoder"], cfg.get("text_checkpoint")
    embedding = text.text_embedding(encoder, cfg["prompt"], cache_dir, checkpoint)
    base = build_sam2_base(arch, input_size)
    model = TextPromptedSAM2(
        image_encoder=base.image_encoder,
        prompt_encoder=base.sam_prompt_encoder,
        mask_decoder=base.sam_mask_decoder,
        no_mem_embed=base.no_mem_embed,
        tal=text.TextAffineLayer(text.embedding_dim(encoder), PROMPT_DIM, norm=cfg["tal_norm"]),
        text_embedding=embedding,
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
    )
    if cfg["weights"] == "pretrained":
        label = _load(model, base, cfg)
    else:
        label = f"RANDOM weights (weights: random; {ARCHS[arch].label} architecture, not a pretrained model)"
    return Backbone(
        name=arch,
        model=model,
        components=COMPONENTS,
        extra_trainable=extra_trainable(model, cfg, POS_EMBEDS),
        input_size=input_size,
        weights=f"{label}; text encoder {text.describe(encoder, checkpoint)}",
    )
