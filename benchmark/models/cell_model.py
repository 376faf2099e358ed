"""Turn a cell into a model with exactly the paper's trainable set, and say what it is."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

import baselines
import methods
from benchmark.grid import Cell
from benchmark.models import build_backbone
from benchmark.models.prompted import TAL_PREFIX
from benchmark.prompting import entry_prompt

ENCODER = "image_encoder."


@dataclass
class CellModel:
    """The model plus what outputs must report about it."""

    model: nn.Module
    weights: str
    label: str
    adapted: list[str] = field(default_factory=list)
    extra_trainable: list[str] = field(default_factory=list)


def _unfreeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Make parameters trainable whose names start with any prefix; the names unfrozen."""
    chosen = [name for name, p in model.named_parameters() if name.startswith(tuple(prefixes))]
    params = dict(model.named_parameters())
    for name in chosen:
        params[name].requires_grad_(True)
    return chosen


def build_cell_model(cell: Cell, config: dict) -> CellModel:
    """Baselines train every weight; SAM-family cells get the method's adapters, then the
    backbone's extra trainable set (TAL, norms) unless the method is zero-shot. A row prompted
    without text neither feeds nor trains the TAL (its parameters would count but never move)."""
    if cell.backbone is None:
        baseline = baselines.get_baseline(cell.entry["name"])
        model = baselines.build_baseline(baseline.name, cell.hparams(), config["input_size"])
        model.requires_grad_(True)
        return CellModel(model, "randomly initialised, trained from scratch", baseline.row_label(cell.entry))
    backbone_cfg = config["backbones"][cell.backbone]
    backbone = build_backbone(backbone_cfg, Path(config["results_dir"]) / "cache")
    if backbone.input_size != config["input_size"]:
        raise ValueError(f"backbone {backbone.name} takes {backbone.input_size} px input; set input_size: {backbone.input_size}")
    adapted = methods.apply_method(backbone.model, cell.hparams(), backbone.components)
    method = methods.get_method(cell.entry["name"])
    prompt = entry_prompt(cell.entry)
    backbone.model.use_text = prompt.text
    prefixes = [p for p in backbone.extra_trainable if not (method.frozen_encoder and p.startswith(ENCODER))
                and (prompt.text or p != TAL_PREFIX)]
    extra = [] if cell.group == "zero-shot" else _unfreeze(backbone.model, prefixes)
    return CellModel(backbone.model, backbone.weights, method.row_label(cell.entry), adapted, extra)

