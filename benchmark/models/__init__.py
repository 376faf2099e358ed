"""Backbone registry: a config names a backbone, the registry builds it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from benchmark.models import litemedsam, sam, sam2
from benchmark.models.backbone import Backbone

BACKBONES: dict[str, Callable[[dict, Path], Backbone]] = {
    "litemedsam": litemedsam.build,
    **{arch: sam.build for arch in sam.ARCHS},
    **{arch: sam2.build for arch in sam2.ARCHS},
}


def build_backbone(cfg: dict, cache_dir: Path) -> Backbone:
    """Build on the CPU, then move the model to the caller's default device.

    Some constructors read tensor values (TinyViT's and Hiera's drop-path rates), which the meta
    device cannot give; parameter counting (benchmark.cost.paper_params) sets the meta device as the
    default so that adapters, SVDs included, are then created without storage or cost.
    """
    if cfg["name"] not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg['name']!r}; known: {', '.join(sorted(BACKBONES))}")
    device = torch.get_default_device()
    with torch.device("cpu"):
        backbone = BACKBONES[cfg["name"]](cfg, cache_dir)
    backbone.model.to(device)
    return backbone
