"""Hand-made grids and cell files for the report tests (summary.json, per_image.csv, cost.json,
predictions.npz and train_log.csv written into tmp_path, never results/), and a check that they
look like what benchmark.engine.cell writes."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.config import validate
from benchmark.predictions import PREDICTIONS, write_predictions
from benchmark.engine.train import LOG_FIELDS

from benchmark.grid import Cell, entry_id, expand_cells
from benchmark.summary import as_summary

LABELS = {"frozen": "LiteMedSAM (zero-shot)", "lora": "LoRA", "salt": "SALT", "svd": "S-SAM", "unet": "U-Net"}
METHODS = [
    {"id": "frozen", "name": "frozen"},
    {"id": "lora_r4", "name": "lora", "rank": 4},
    {"id": "salt_r4", "name": "salt", "rank": 4, "sv_rank": 0.5},
    {"id": "salt_r256", "name": "salt", "rank": 256, "sv_rank": 8, "targets": ["attn.qkv", "attn.proj", "mlp", "neck"],
     "sv_ranks": {"attn.qkv": 64, "attn.proj": 64, "mlp": 64}},
]
# trainable, total per row key
PARAMS = {"unet": (6_500_000, 6_500_000), "frozen": (0, 10_000_000), "lora_r4": (1_500_000, 100_000_000),
          "salt_r4": (460_000, 100_000_000), "salt_r256": (5_840_000, 100_000_000)}
# the test ids of make_grid's synthetic datasets (4 train images come first), so that figures that
# show test images (qualitative.png) find them
IMAGES = tuple(f"synth_{index:04d}" for index in range(4, 11))
SIZE = 256


def make_grid(tmp_path: Path, **overrides) -> dict:
    """A validated grid: one LiteMedSAM backbone with METHODS, a U-Net baseline, synthetic data."""
    raw = {
        "name": "reportgrid",
        "results_dir": str(tmp_path / "results"),
        "figures_dir": str(tmp_path / "figures"),
        "input_size": 256,
        "seeds": [0, 1],
        "datasets": {
            "bright": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 4, "n_test": 7, "size": 64, "label": "Bright"},
            "dark": {"kind": "synthetic", "modality": "dark_fundus", "n_train": 4, "n_test": 7, "size": 64, "label": "Dark"},
        },
        "backbones": {"litemedsam": {"name": "litemedsam"}},
        "methods": METHODS,
        "baselines": [{"id": "unet", "name": "unet"}],
        "train": {"epochs": 2},
    }
    raw.update(overrides)
    return validate(raw)


def default_dice(cell: Cell) -> list[float]:
    """Per-image Dice: a level per method, a per-image pattern, a small shift per seed."""
    levels = {"unet": 0.5, "frozen": 0.0, "lora_r4": 0.7, "salt_r4": 0.75, "salt_r256": 0.8}
    level = levels.get(entry_id(cell.entry), 0.6)
    return [round(level + 0.01 * i * (-1) ** i + 0.005 * cell.seed, 4) for i in range(len(IMAGES))]


def cell_summary(config: dict, cell: Cell, dice: list[float], hd95: list[float]) -> dict:
    """A summary.json as benchmark.engine.cell writes it, with the fields the report reads."""
    row = entry_id(cell.entry)
    method_name = cell.entry["name"]
    trainable, total = PARAMS.get(row, (1000, 100_000))
    if cell.backbone is None:
        backbone, weights = "none (trained from scratch)", "randomly initialised, trained from scratch"
    else:
        backbone, weights = cell.backbone, f"{config['backbones'][cell.backbone]['name']} pretrained (test weights)"
    defined = [h for h in hd95 if not math.isnan(h)]
    return {
        "cell": cell.id,
        "backbone": backbone,
        "architecture": config["backbones"][cell.backbone]["name"] if cell.backbone else cell.entry["name"],
        "weights": weights,
        "method": {"rank": None, **cell.entry, "id": row, "label": cell.entry.get("label", LABELS[method_name]),
                   "group": cell.group},
        "dataset": {"name": cell.dataset, "label": config["datasets"][cell.dataset].get("label", cell.dataset),
                    "data": f"SYNTHETIC {cell.dataset} (test fixture)"},
        "seed": cell.seed,
        "params": {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total,
                   "denominator": "all parameters"},
        "trained": {"epochs": 0 if cell.group == "zero-shot" else config["train"]["epochs"],
                    "selected_epoch": config["train"]["epochs"],
                    "val_dice": None if cell.group == "zero-shot" else 0.1 * config["train"]["epochs"]},
        "metrics": {"dice_mean": sum(dice) / len(dice), "n_images": len(dice),
                    "hd95_mean": sum(defined) / len(defined) if defined else math.nan},
        "measured": measured(row, cell.seed),
    }


def measured(row: str, seed: int, device: str = "cpu: test host, 2 threads") -> dict:
    """A summary's `measured` section: a training speed per row, seed 1 a second slower per epoch."""
    seconds = SECONDS_PER_EPOCH.get(row, 5.0) + seed
    return {"device": device, "epochs": 2, "seconds_per_epoch_median": seconds, "train_seconds_total": 2 * seconds,
            "train_images_per_s": 32 / (2 * seconds), "eval_seconds": 1.0, "peak_host_rss_mb": 1000.0 + 100 * seed,
            "peak_allocated_mb": None, "peak_reserved_mb": None,
            "step_memory": {"kind": "host RSS", "steps": 16, "p99_mb": 900.0, "mean_mb": 800.0},
            "adapter_bytes": 4 * PARAMS.get(row, (1000, 0))[0]}


SECONDS_PER_EPOCH = {"unet": 2.0, "frozen": 1.0, "lora_r4": 8.0, "salt_r4": 10.0, "salt_r256": 12.0}


# GFLOPs per row key (inference, added per image, SVD once); rows without adapters have no training cost
GFLOPS = {"unet": (6.0, None, None), "frozen": (80.0, None, None), "lora_r4": (80.0, 1.25, 0.0),
          "salt_r4": (80.0, 12.0, 390.0), "salt_r256": (80.0, 13.0, 390.0)}
TEXT_PARAMETERS = 22_713_216


def cell_cost(summary: dict) -> dict:
    """A cost.json as benchmark.engine.cell writes it (fields the cost table reads)."""
    trainable, total = summary["params"]["trainable"], summary["params"]["total"]
    inference, added, svd = GFLOPS.get(summary["method"]["id"], (1.0, None, None))
    text = None if summary["method"]["group"] == "baseline" else TEXT_PARAMETERS
    training = None if added is None else {
        "gflops_step_per_image": inference + added, "gflops_merged_per_image": inference,
        "gflops_added_per_image": added, "gflops_adapters_per_image": 0.0 if svd else added,
        "gflops_rebuild_per_batch": 2 * added if svd else 0.0, "gflops_svd_once": svd, "batch_size": 2}
    return {"trainable": trainable, "total": total, "pct_model": 100.0 * trainable / total,
            "text_encoder_parameters": text, "pct_with_text": None if text is None else 100.0 * trainable / (total + text),
            "gflops_inference": inference, "counter": "fvcore", "training": training}


def write_cell(cells_dir: Path, summary: dict, ids: list[str], dice: list[float], hd95: list[float]) -> None:
    folder = Path(cells_dir) / summary["cell"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "cost.json").write_text(json.dumps(cell_cost(summary)))
    with (folder / "per_image.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dice", "hd95"])
        writer.writerows(zip(ids, dice, hd95))
    rng = np.random.default_rng(len(summary["cell"]))
    write_predictions(folder / PREDICTIONS, {image_id: rng.random((SIZE, SIZE)) > 0.9 for image_id in ids})
    epochs = summary["trained"]["epochs"]
    if epochs:
        with (folder / "train_log.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(LOG_FIELDS)
            writer.writerows((e, 1e-3, 1.0 / e, 1.0 / e, 0.0, 0.1 * e, 1.0) for e in range(1, epochs + 1))


def populate(config: dict, dice: Callable[[Cell], list[float]] = default_dice) -> list[dict]:
    """Write every cell of the grid; returns the summaries in table order, as the report reads them
    (benchmark.summary records: a reader asking for an undeclared field fails its test)."""
    cells_dir = Path(config["results_dir"]) / "cells"
    summaries = []
    for cell in expand_cells(config).values():
        values = dice(cell)
        hd95 = [math.nan if d == 0.0 else round(40.0 * (1.0 - d), 3) for d in values]
        summary = cell_summary(config, cell, values, hd95)
        write_cell(cells_dir, summary, list(IMAGES[: len(values)]), values, hd95)
        summaries.append(as_summary(summary))
    return summaries


def test_fixture_summaries_pass_table1_validation(tmp_path):
    from benchmark.summary import load_summaries

    config = make_grid(tmp_path)
    written = populate(config)
    loaded = load_summaries(Path(config["results_dir"]) / "cells")
    assert len(loaded) == len(written) == len(expand_cells(config)) == 2 * 2 * (1 + len(METHODS))
