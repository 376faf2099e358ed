"""Backbone registry: a config names a backbone, the registry builds it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from benchmark.models import litemedsam, sam, sam2
from benchmark.models.backbone import Backbone
from benchmark.registry import Registry

Builder = Callable[[dict, Path], Backbone]
BACKBONES: Registry[Builder] = Registry("backbone")
BACKBONES.register("litemedsam", litemedsam.build)
for _arch in sam.ARCHS:
    BACKBONES.register(_arch, sam.build)
for _arch in sam2.ARCHS:
    BACKBONES.register(_arch, sam2.build)


def get_backbone(name: str) -> Builder:
    """The builder of the backbone a config names; UnknownNameError listing the known ones otherwise."""
    return BACKBONES.lookup(name)


def build_backbone(cfg: dict, cache_dir: Path) -> Backbone:
    """Build on the CPU, then move the model to the caller's default device.

    Some constructors read tensor values (TinyViT's and Hiera's drop-path rates), which the meta
    device cannot give; parameter counting (benchmark.cost.paper_params) sets the meta device as the
    default so that adapters, SVDs included, are then created without storage or cost.
    """
    builder = get_backbone(cfg["name"])
    device = torch.get_default_device()
    with torch.device("cpu"):
        backbone = builder(cfg, cache_dir)
    backbone.model.to(device)
    return backbone
