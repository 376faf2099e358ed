"""Backbone registry: a config names a backbone, the registry builds it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from benchmark.models import litemedsam
from benchmark.models.backbone import Backbone

BACKBONES: dict[str, Callable[[dict, Path], Backbone]] = {"litemedsam": litemedsam.build}


def build_backbone(cfg: dict, cache_dir: Path) -> Backbone:
    if cfg["name"] not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg['name']!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[cfg["name"]](cfg, cache_dir)
