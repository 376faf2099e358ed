"""A finished cell's inference model rebuilt from what it left: the backbone built as the cell built
it (same seed, so `weights: random` gives the same frozen weights), its adapter file loaded and
checked against the model, adapters merged where the method can: the model its test scores came from."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import methods
from methods import svd_cache
from benchmark.engine.adapters import load_adapter
from benchmark.engine.attention import set_attention
from benchmark.engine.cell import finished_cell
from benchmark.engine.precision import enable_tf32
from benchmark.engine.step import step_setting
from benchmark.grid import Cell, cell_config
from benchmark.models.cell_model import build_cell_model


@dataclass
class Restored:
    """The merged model plus what using it needs: the cell, the grid as the cell saw it (input size,
    batch size, precision), its weights label, and each unmerged layer class with the reason."""

    cell: Cell
    config: dict
    model: nn.Module
    weights: str
    folder: Path
    unmerged: dict[str, str] = field(default_factory=dict)


def restore(config: dict, cell_id: str, device: torch.device) -> Restored:
    """Rebuild finished cell `cell_id` of the validated grid `config` on `device`, in eval mode."""
    cell, folder = finished_cell(config, cell_id)
    config = cell_config(config, cell)
    torch.set_num_threads(config["train"]["threads"] or len(os.sched_getaffinity(0)))  # as the cell ran
    enable_tf32(device)
    torch.manual_seed(cell.seed)
    with svd_cache.cached_in(Path(config["results_dir"]) / "cache" / "svd"):
        built = build_cell_model(cell, config)
    model = built.model.to(device, memory_format=torch.channels_last)
    load_adapter(model, folder / "adapter.safetensors", method=cell.entry, backbone=cell.backbone,
                 weights=built.weights)
    unmerged = {type(layer).__name__: layer.note for layer in methods.adapted_layers(model).values()
                if not layer.mergeable}
    merged = methods.merge_model(model).eval()
    set_attention(merged, step_setting(config["train"], "attention"))  # the attention its evaluation ran
    return Restored(cell, config, merged, built.weights, folder, unmerged)
