"""Run one cell end to end: validate data, build, train (resumable; best validation epoch selected),
save adapter, evaluate merged, and write per_image.csv, the test predictions (predictions.npz) and
summary.json with provenance. A finished cell is re-run only when its configuration (fingerprint)
changed or its predictions are missing."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import methods
from methods import svd_cache
from benchmark.errors import CellNotFinished, ConfigError, DatasetError
from benchmark.grid import (Cell, all_cells, backbone_spec, cell_config, entry_id, fingerprint, train_overrides,
                            tuned_param, tuning_key)
from benchmark.cost.counting import GFLOPS_CONVENTION, cached_gflops
from benchmark.cost.measure import RunMeter, measured_cost
from benchmark.cost.training import cached_training_cost, encoder_megabytes, trainable_share
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import split_pairs
from benchmark.data.sources import data_label, load_pairs
from benchmark.data.subsets import nested_subset
from benchmark.engine.adapters import save_adapter
from benchmark.models.cell_model import CellModel, build_cell_model
from benchmark.engine.evaluate import evaluate, resolution_convention
from benchmark.engine.precision import enable_tf32
from benchmark.engine.step import step_record
from benchmark.engine.scales import layer_notes, regularisers, scale_shift_movement, singular_value_ranks
from benchmark.engine.train import CHECKPOINT, Best, train
from benchmark.gpus import cell_gpu
from benchmark.io import atomic_write, exclusive, read_json_object, read_or_discard, write_json, write_text
from benchmark.summary import write_summary
from benchmark.tuning import read_selection
from benchmark.metrics import DICE_CONVENTION, HD95_CONVENTION, summarise
from benchmark.models.embedding_cache import EmbeddingCache, why_not_cached
from benchmark.predictions import PREDICTIONS, read_predictions, write_predictions
from benchmark.prompting import NO_PROMPT_RECORD, entry_prompt
from benchmark.provenance import device_name, git_commit, peak_memory_mb, scheduler, versions

def resolve_device(config: dict) -> torch.device:
    """The device a cell runs on; a grid that needs a GPU stops here, before any data or model is
    loaded, when none is visible (a cluster job without --gpus, a wrong CUDA_VISIBLE_DEVICES)."""
    wanted = config["device"]
    gpu = torch.cuda.is_available()
    fix = ("check that the job was given a GPU (Snakemake --resources gpu=1 locally; --gpus or gres on SLURM), "
           "CUDA_VISIBLE_DEVICES and the driver (nvidia-smi); to run on the CPU anyway set device: auto and allow_cpu: true")
    if wanted == "cuda" and not gpu:
        raise RuntimeError(f"the config asks for device: cuda but torch sees no GPU; {fix}")
    if wanted == "auto":
        wanted = "cuda" if gpu else "cpu"
    if wanted == "cpu" and not config["allow_cpu"]:
        raise RuntimeError(f"no GPU is visible and the config sets allow_cpu: false; {fix}")
    return torch.device(wanted)


def cell_dir(config: dict, cell_id: str) -> Path:
    return Path(config["results_dir"]) / "cells" / cell_id


def _per_image_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("id", "dice", "hd95"))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _architecture(cell: Cell, config: dict) -> dict:
    """What fixes the merged model's layers (not its weights): the key its GFLOPs are cached by."""
    if cell.backbone is None:
        return {"baseline": cell.hparams()}
    backbone = backbone_spec(config, cell.backbone)
    prompt = entry_prompt(cell.entry)  # a box or point row's decoder takes other tokens than a text row's
    return {"backbone": {k: v for k, v in backbone.items() if k not in ("weights", "checkpoint", "text_checkpoint")},
            **({} if prompt.mode == "text" else {"prompt": prompt.mode})}


SELECTION = {
    "validation": "the epoch with the best mean validation Dice (network resolution) is evaluated on test",
    "last": "the last epoch is evaluated on test (the paper's protocol)",
}


def cell_datasets(cell: Cell, config: dict) -> dict[str, VesselDataset | None]:
    """train / val / test sets of the cell; val is None unless the grid selects on validation or the
    cell is a tuning trial, and then a dataset without validation images is an error before any training."""
    train_cfg = config["train"]
    dataset_cfg = config["datasets"][cell.dataset]
    pairs = load_pairs(cell.dataset, dataset_cfg, Path(config["results_dir"]))
    if cell.n_train is not None:  # the training-set-size axis: a nested subset, the same for every row
        pairs = nested_subset(pairs, cell.n_train, cell.seed)
    size, cache = config["input_size"], Path(config["results_dir"]) / "cache" / "data"

    prompt = entry_prompt(cell.entry)

    def dataset(split: str, augment: bool) -> VesselDataset:
        return VesselDataset(split_pairs(pairs, split), size, augment=augment, seed=cell.seed,
                             crop=train_cfg["crop"], cache_dir=cache, prompt=prompt, resample_prompts=split == "train")

    val = None
    scored = train_cfg["selection"] == "validation" or cell.trial_of is not None  # a trial is scored on validation
    if scored and cell.group != "zero-shot" and train_cfg["epochs"] > 0:
        if not split_pairs(pairs, "val"):
            raise DatasetError(
                f"dataset {cell.dataset!r} has no validation images, which train.selection: validation needs; "
                "give it some (n_val for synthetic data, `validation: true` with a split file, val rows in "
                "data_split.csv) or set train.selection: last"
            )
        val = dataset("val", False)
    return {"train": dataset("train", train_cfg["augment"]), "val": val, "test": dataset("test", False)}


def _validation(val_set: VesselDataset | None, device: torch.device, train_cfg: dict):
    """model -> mean validation Dice, or None when the cell does no model selection. Scored on a
    merged copy, the model the test evaluates: the same function, without LoRA's separate branch or
    SALT's per-forward rebuild."""
    if val_set is None:
        return None

    def validate(model: torch.nn.Module) -> float:
        merged = methods.merge_model(copy.deepcopy(model))
        rows = evaluate(merged, val_set, device, train_cfg["batch_size"], precision=train_cfg["precision"])
        return float(np.nanmean([row["dice"] for row in rows]))

    return validate


def _training_cost(model: torch.nn.Module, adapted: list[str], cell: Cell, architecture: str,
                   config: dict) -> dict | None:
    """GFLOPs of a training step's forward per image with the adapters unmerged (SVD rebuild
    amortised over the batch) and the one-time SVD; None for a model without adapters, whose
    step's forward is the inference model itself."""
    if not adapted:
        return None
    key = json.dumps({"architecture": architecture, "method": cell.hparams()}, sort_keys=True)
    return cached_training_cost(model, config["input_size"], config["train"]["batch_size"], key,
                                Path(config["results_dir"]) / "cache", architecture=architecture)


def _embedding_cache(model: torch.nn.Module, train_cfg: dict) -> EmbeddingCache | dict:
    """Set an embedding cache on `model` when its frozen encoder's output can be reused across
    epochs (models.embedding_cache); otherwise the summary's record of why not."""
    if train_cfg["epochs"] == 0 or not any(p.requires_grad for p in model.parameters()):
        return {"used": False, "reason": "nothing trains"}
    reason = why_not_cached(model, train_cfg["augment"])
    if reason is not None:
        return {"used": False, "reason": reason}
    model.embedding_cache = EmbeddingCache()
    return model.embedding_cache


def run_cell(config: dict, cell_id: str) -> Path:
    """Run `cell_id` of the validated grid `config` (a table cell or a tuning trial); returns its
    summary.json path. A tuned row's table cell trains with the value chosen on validation, or takes
    the outputs of the trial that already trained with exactly its settings."""
    cells = all_cells(config)
    if cell_id not in cells:
        raise KeyError(f"no cell {cell_id!r} in this config; e.g. {', '.join(list(cells)[:3])}")
    cell: Cell = cells[cell_id]
    tuning = _tuning_record(config, cell)
    if cell.tuned:
        cell = _with_setting(cell, tuning["param"], tuning["value"])
    summary_path = cell_dir(config, cell_id) / "summary.json"
    cell_fingerprint = fingerprint(cell, config)
    if _finished(summary_path, cell_fingerprint):
        return summary_path
    # two runs of one grid (two Snakemake processes, or saltbench cell twice) never train one cell at once
    locks = Path(config["results_dir"]) / "locks"
    with exclusive(locks / f"{cell_id}.lock", f"cell {cell_id}"):
        if _finished(summary_path, cell_fingerprint):
            return summary_path
        record = {"tuning": tuning, "train_overrides": train_overrides(config, cell.entry)}
        trial = _identical_trial(config, cell, tuning, cell_fingerprint)
        if trial is not None:
            _reuse(trial, summary_path, cell, record)
            return summary_path
        # its own GPU when Snakemake runs several cells at once; claimed before CUDA is touched
        with cell_gpu(locks / "gpus", config["device"], config["gpu_slots_per_device"]) as gpu:
            _run(cell_config(config, cell), cell, cell_fingerprint, summary_path, gpu, record)
    return summary_path


def finished_cell(config: dict, cell_id: str) -> tuple[Cell, Path]:
    """`cell_id` as it trained (a tuned row with its chosen value) and its folder, for using what it
    left (saltbench predict, export); CellNotFinished unless it finished with this configuration."""
    cells = all_cells(config)
    if cell_id not in cells:
        raise ConfigError(f"no cell {cell_id!r} in this config; e.g. {', '.join(list(cells)[:3])} (saltbench cells)")
    cell = cells[cell_id]
    summary_path = cell_dir(config, cell_id) / "summary.json"
    run = f"run it first: saltbench cell --config <grid> --cell {cell_id} (or the grid's Snakemake command)"
    if not summary_path.is_file():
        raise CellNotFinished(f"cell {cell_id} has not finished (no {summary_path}); {run}")
    if cell.tuned:
        tuning = _tuning_record(config, cell)
        cell = _with_setting(cell, tuning["param"], tuning["value"])
    if not _finished(summary_path, fingerprint(cell, config)) or not (summary_path.parent / "adapter.safetensors").is_file():
        raise CellNotFinished(f"cell {cell_id}: {summary_path.parent} was written with another configuration of "
                              f"this cell, or is incomplete; {run}")
    return cell, summary_path.parent


def _with_setting(cell: Cell, param: str, value: float) -> Cell:
    """The tuned table cell with its chosen value as the row's own setting."""
    entry = {**cell.entry, "train": {**cell.entry.get("train", {}), param: value}}
    return replace(cell, entry=entry, tuned=False)


def _tuning_record(config: dict, cell: Cell) -> dict | None:
    """The summary's `tuning` section: a trial's value, or a tuned cell's choice (read from the
    selection file, which Snakemake has the select job write before this cell); None otherwise."""
    param = tuned_param(config)
    tune = config.get("tune") or {}
    budget = {"trial_epochs": tune.get("epochs", config["train"]["epochs"]), "final_epochs": config["train"]["epochs"]}
    if cell.trial_of is not None:
        return {"role": "trial", "of": cell.trial_of, "param": param, "value": cell.entry["train"][param],
                "values": tune[param], **budget, "reused_trial": None, "diverged_epoch": None}
    if not cell.tuned:
        return None
    selection = read_selection(config, tuning_key(cell))
    return {"role": "selected", "of": tuning_key(cell), "param": param, "value": selection["chosen"],
            "values": selection["values"], **budget, "reused_trial": None, "diverged_epoch": None}


def _identical_trial(config: dict, cell: Cell, tuning: dict | None, cell_fingerprint: str) -> Path | None:
    """The folder of the finished trial that trained with exactly this tuned cell's settings (no
    shorter screening budget): its outputs are this cell's, so it is not trained twice."""
    if tuning is None or tuning["role"] != "selected":
        return None
    trial = cell_dir(config, f"{cell.id}-{tuning['param']}{tuning['value']:g}")
    return trial if _finished(trial / "summary.json", cell_fingerprint) else None


def _reuse(trial: Path, summary_path: Path, cell: Cell, record: dict) -> None:
    """Copy the identical trial's outputs into this cell's folder, its summary naming this cell and
    the trial it came from; summary.json last, so it marks completion."""
    out = summary_path.parent
    out.mkdir(parents=True, exist_ok=True)
    for name in ("adapter.safetensors", "train_log.csv", "per_image.csv", "cost.json", PREDICTIONS):
        if (trial / name).exists():
            atomic_write(out / name, lambda tmp, name=name: shutil.copyfile(trial / name, tmp))
    summary = read_json_object(trial / "summary.json")
    summary.pop("format", None)
    tuning = {**record["tuning"], "reused_trial": trial.name, "diverged_epoch": summary["tuning"]["diverged_epoch"]}
    write_summary(summary_path, {**summary, "cell": cell.id, "tuning": tuning, "train_overrides": record["train_overrides"]})


def _finished(summary_path: Path, cell_fingerprint: str) -> bool:
    """A summary of this configuration exists, with readable predictions beside it (a cell finished
    before predictions were kept is rerun); an unreadable summary or predictions file is discarded
    and the cell rerun."""
    summary = read_or_discard(summary_path, read_json_object, "cell summary")
    if summary is None or summary.get("fingerprint") != cell_fingerprint:
        return False
    return read_or_discard(summary_path.parent / PREDICTIONS, read_predictions, "predictions file") is not None


@dataclass
class Trained:
    """What training left: the log, its seconds, the selected epoch, and what the adapted layers
    say about themselves (read before merging folds them away)."""

    log: list[dict]
    seconds: float
    best: Best
    embeddings: dict
    movement: dict
    penalties: dict
    sv_ranks: dict
    notes: dict
    step: dict


def _train(cell: Cell, config: dict, model: torch.nn.Module, sets: dict, out: Path,
           cell_fingerprint: str, device: torch.device, meter: RunMeter) -> Trained:
    """Train the cell's model (resumable, selecting on validation) and read off its adapted layers.
    A tuning trial of a grid that tests the last epoch is scored on validation at that epoch."""
    train_cfg = config["train"]
    embeddings = _embedding_cache(model, train_cfg)
    validate = _validation(sets["val"], device, train_cfg)
    selects = train_cfg["selection"] == "validation"
    log, seconds, best = train(model, sets["train"], train_cfg, out, cell.seed, device, cell_fingerprint,
                               validate if selects else None, meter, stop_on_nonfinite=cell.trial_of is not None)
    if validate is not None and not selects and log:
        best = Best(len(log), validate(model), {})
    embeddings = model.embedding_cache.report() if isinstance(embeddings, EmbeddingCache) else embeddings
    if hasattr(model, "embedding_cache"):
        model.embedding_cache = None  # test images go through the encoder; the cached features are freed
    return Trained(log, seconds, best, embeddings, scale_shift_movement(model), regularisers(model),
                   singular_value_ranks(model), layer_notes(model), step_record(model, train_cfg))


def _merge_and_count(cell: Cell, config: dict, built: CellModel, model: torch.nn.Module, share: dict,
                     out: Path) -> tuple[torch.nn.Module, str]:
    """The inference model (adapters merged where they can be) and the summary's inference note;
    writes cost.json: parameter shares and GFLOPs of inference and of a training step."""
    architecture = _architecture(cell, config)
    if any(not layer.mergeable for layer in methods.adapted_layers(model).values()):
        architecture["unmerged_method"] = cell.hparams()  # its layers stay in the inference model
    architecture = json.dumps(architecture, sort_keys=True)
    training = _training_cost(model, built.adapted, cell, architecture, config)
    merged = methods.merge_model(model)
    unmerged = sorted({type(layer).__name__ for layer in methods.adapted_layers(merged).values()})
    cost = cached_gflops(merged, config["input_size"], architecture, Path(config["results_dir"]) / "cache")
    write_json(out / "cost.json", {**share, "gflops_inference": cost["gflops"], "counter": cost["counter"],
                                   "convention": GFLOPS_CONVENTION, "training": training})
    return merged, f"unmerged: {', '.join(unmerged)} cannot be merged" if unmerged else "merged"


def _test(merged: torch.nn.Module, test_set: VesselDataset, device: torch.device, train_cfg: dict,
          out: Path) -> tuple[list[dict], float]:
    """Score the merged model on the test images; writes per_image.csv and predictions.npz."""
    predictions: dict[str, np.ndarray] = {}
    began = time.perf_counter()
    rows = evaluate(merged, test_set, device, train_cfg["batch_size"], resolution=train_cfg["metrics_resolution"],
                    precision=train_cfg["precision"], keep=predictions)
    seconds = time.perf_counter() - began
    write_text(out / "per_image.csv", _per_image_csv(rows))
    write_predictions(out / PREDICTIONS, predictions)
    return rows, seconds


def _diverged(log: list[dict]) -> int | None:
    """The epoch whose loss was not finite (a trial stops there), or None."""
    return next((row["epoch"] for row in log if not math.isfinite(row["loss"])), None)


def _trained_record(built: CellModel, trained: Trained, sets: dict, train_cfg: dict) -> dict:
    log, best = trained.log, trained.best
    return {"adapted_modules": len(built.adapted), "extra_trainable": built.extra_trainable,
            "epochs": len(log), "final_loss": log[-1]["loss"] if log else None,
            "selection": "none (nothing trained)" if not log else SELECTION[train_cfg["selection"]],
            "selected_epoch": best.epoch if best.state is not None else len(log),
            "val_dice": None if best.state is None else best.val_dice,
            "n_images": {split: 0 if data is None else len(data) for split, data in sets.items()},
            "scale_shift_movement": trained.movement, "singular_value_ranks": trained.sv_ranks,
            "notes": trained.notes, "embedding_cache": trained.embeddings, "step": trained.step}


def _dataset_record(cell: Cell, dataset_cfg: dict) -> dict:
    """The dataset column the cell reports in; a training subset names its size in label and data."""
    label, data = dataset_cfg.get("label", cell.dataset), data_label(dataset_cfg)
    if cell.n_train is not None:
        label += f" ({cell.n_train} train)"
        data += (f"; trained on a nested subset of {cell.n_train} of its training images (seed {cell.seed}), "
                 "validation and test images unchanged")
    return {"name": cell.column, "label": label, "data": data, "n_train_subset": cell.n_train}


def _params_record(share: dict, encoder_size: dict | None) -> dict:
    return {"trainable": share["trainable"], "total": share["total"], "trainable_pct": share["pct_model"],
            "trainable_pct_with_text_encoder": share["pct_with_text"],
            "text_encoder_parameters": share["text_encoder_parameters"], "denominator": share["denominators"],
            "image_encoder_megabytes": encoder_size}


def _provenance(cell: Cell, config: dict, device: torch.device, gpu: dict | None, trained: Trained,
                started: str, wall: float) -> dict:
    train_cfg = config["train"]
    return {
        "config": {"train": train_cfg, "dataset": config["datasets"][cell.dataset], "input_size": config["input_size"],
                   "backbone": backbone_spec(config, cell.backbone) if cell.backbone else None},
        "versions": versions(),
        "git_commit": git_commit(),
        "device": device_name(device),
        "gpu": gpu if device.type == "cuda" else None,
        **scheduler(),
        "precision": train_cfg["precision"],
        # CPU results depend on the thread count (reduction order); threads: 0 means "every core"
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(trained.seconds, 2),
        "wall_seconds_last_run": round(time.perf_counter() - wall, 2),
        "peak_memory": peak_memory_mb(device),
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _run(config: dict, cell: Cell, cell_fingerprint: str, summary_path: Path, gpu: dict | None, record: dict) -> None:
    """Train, evaluate and write every output of `cell` (`config` is the grid as the cell sees it,
    cell_config); summary.json last, so it marks completion. `record`: its tuning and overrides."""
    out = summary_path.parent
    started, wall = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    device = resolve_device(config)
    train_cfg = config["train"]
    torch.set_num_threads(train_cfg["threads"] or len(os.sched_getaffinity(0)))
    sets = cell_datasets(cell, config)
    enable_tf32(device)
    torch.manual_seed(cell.seed)
    with svd_cache.cached_in(Path(config["results_dir"]) / "cache" / "svd"):
        built = build_cell_model(cell, config)
    # channels-last convolutions: about 10% faster LiteMedSAM steps on a CPU (TinyViT's MBConv stages)
    model = built.model.to(device, memory_format=torch.channels_last)
    share = trainable_share(model, backbone_spec(config, cell.backbone).get("text_encoder") if cell.backbone else None)
    encoder_size = encoder_megabytes(model)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # half a write of a killed run (benchmark.io.atomic_write); never read
        stale.unlink()
    meter = RunMeter.for_device(device)
    trained = _train(cell, config, model, sets, out, cell_fingerprint, device, meter)
    save_adapter(out / "adapter.safetensors", model, method=cell.entry, backbone=cell.backbone, weights=built.weights)
    merged, inference = _merge_and_count(cell, config, built, model, share, out)
    rows, eval_seconds = _test(merged, sets["test"], device, train_cfg, out)
    dataset_cfg = config["datasets"][cell.dataset]
    write_summary(summary_path, {
        "cell": cell.id,
        "fingerprint": cell_fingerprint,
        "backbone": cell.backbone or "none (trained from scratch)",
        "architecture": config["backbones"][cell.backbone]["name"] if cell.backbone else cell.entry["name"],
        "weights": built.weights,
        "method": {"rank": None, **cell.entry, "id": entry_id(cell.entry), "label": built.label, "group": cell.group},
        "prompt": NO_PROMPT_RECORD if cell.backbone is None else entry_prompt(cell.entry).record(),
        "dataset": _dataset_record(cell, dataset_cfg),
        "seed": cell.seed,
        "params": _params_record(share, encoder_size),
        "trained": _trained_record(built, trained, sets, train_cfg),
        "inference": inference,
        "regulariser": {"weight": train_cfg["reg_weight"], "forms": trained.penalties},
        "metrics": summarise(rows),
        "measured": measured_cost(trained.log, meter, eval_seconds, (out / "adapter.safetensors").stat().st_size,
                                  device_name(device)),
        "conventions": {"dice": DICE_CONVENTION, "hd95": HD95_CONVENTION,
                        "resolution": resolution_convention(train_cfg["metrics_resolution"], config["input_size"])},
        "provenance": _provenance(cell, config, device, gpu, trained, started, wall),
        "tuning": None if record["tuning"] is None else {**record["tuning"], "diverged_epoch": _diverged(trained.log)},
        "train_overrides": record["train_overrides"],
    })
    (out / CHECKPOINT).unlink(missing_ok=True)
