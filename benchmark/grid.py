"""A validated grid as cells: the names every layer shares (a row's id, a cell, its fingerprint).

A cell is (model, dataset, seed) where model is a backbone + PEFT method or a fully trained
baseline. The Snakefile, the CLI, the engine and the report all expand cells here, so they can
never disagree. Nothing here reads files or builds models: config.py validates a grid first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

# Keys of a method/baseline entry that describe the row, not the method's hyper-parameters.
ROW_KEYS = ("id", "label")
# Training settings that change how fast a cell runs, never its result (tests/test_engine.py
# trains with 0 and 2 DataLoader workers and compares bit for bit): not part of the fingerprint.
RESULT_FREE_TRAIN_KEYS = ("workers",)


class ConfigError(ValueError):
    """A config that cannot run; raised before any job starts."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: trained once, evaluated once, written to results/cells/<id>/."""

    id: str
    seed: int
    dataset: str
    group: str  # "baseline", "zero-shot" or "peft"
    entry: dict  # the method or baseline entry of the config (id, label, name, hparams)
    backbone: str | None  # key into config["backbones"]; None for baselines

    def hparams(self) -> dict:
        return {k: v for k, v in self.entry.items() if k not in ROW_KEYS}


def entry_id(entry: dict) -> str:
    """Row id of a method/baseline entry: explicit `id`, else name plus rank (lora_r4) plus the
    placement: `_late6` for the last 6 encoder blocks, `_blocks0-3` for a list of block indices."""
    if "id" in entry:
        return entry["id"]
    row = f"{entry['name']}_r{entry['rank']}" if "rank" in entry else entry["name"]
    blocks = entry.get("blocks")
    if blocks is None:
        return row
    if isinstance(blocks, int):
        return f"{row}_late{blocks}"
    return f"{row}_blocks{'-'.join(str(b) for b in blocks)}"


def row_keys(config: dict) -> list[str]:
    """Every table row of the grid as `paper.rows` names it: `<backbone>/<method id>` or a baseline id."""
    keys = [entry_id(entry) for entry in config["baselines"]]
    for cell in expand_cells(config).values():
        if cell.backbone is not None and f"{cell.backbone}/{entry_id(cell.entry)}" not in keys:
            keys.append(f"{cell.backbone}/{entry_id(cell.entry)}")
    return keys


def _group(entry: dict) -> str:
    return "zero-shot" if entry["name"] == "frozen" else "peft"


def expand_cells(config: dict) -> dict[str, Cell]:
    """Every cell of the grid, keyed by id, in table order (baselines, then backbone x method)."""
    cells: dict[str, Cell] = {}
    for seed in config["seeds"]:
        for dataset in config["datasets"]:
            for entry in config["baselines"]:
                cell = Cell(f"{entry_id(entry)}-{dataset}-s{seed}", seed, dataset, "baseline", entry, None)
                cells[cell.id] = cell
            for backbone, spec in config["backbones"].items():
                if dataset not in spec.get("datasets", config["datasets"]):
                    continue
                for entry in config["methods"]:
                    if entry_id(entry) not in spec.get("methods", [entry_id(e) for e in config["methods"]]):
                        continue
                    cell_id = f"{backbone}-{entry_id(entry)}-{dataset}-s{seed}"
                    cells[cell_id] = Cell(cell_id, seed, dataset, _group(entry), entry, backbone)
    return cells


def backbone_spec(config: dict, key: str) -> dict:
    """A backbone's model settings, without the lists of rows and datasets it runs (which select
    cells but do not change any one cell)."""
    return {k: v for k, v in config["backbones"][key].items() if k not in ("methods", "datasets")}


def fingerprint(cell: Cell, config: dict) -> str:
    """Hash of everything that determines a cell's result; a changed config invalidates old files."""
    relevant = {
        "entry": cell.entry,
        "seed": cell.seed,
        "dataset": config["datasets"][cell.dataset],
        "backbone": backbone_spec(config, cell.backbone) if cell.backbone else None,
        "train": {k: v for k, v in config["train"].items() if k not in RESULT_FREE_TRAIN_KEYS},
        "input_size": config["input_size"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
