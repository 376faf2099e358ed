"""`saltbench plan`: what a grid will cost, before anything trains.

For every distinct (backbone, method entry, batch size, input size) of the grid, the model is built
as its cells build it (models.cell_model.build_cell_model, the grid's own weights and SVD cache) and
timed for a few of the training steps its cells take (engine.step with the grid's `train` settings,
through perf.timing; the median of the timed steps) on random images on the device at hand, plus a few forward passes of its merged model; the peak memory of those
steps is read (CUDA: the caching allocator's peak reserved memory; CPU: the process's peak RSS,
which never falls, so later setups repeat the largest peak so far). Each cell's projection scales
that setup's times by its dataset's image counts: training images / batch x step seconds per
epoch, validation and test images / batch x forward seconds, plus the measured model build.
Not included: process start (torch imports, 5-10 s on a CPU), the one-time GFLOPs count per
backbone and the per-image metric computation (HD95), data generation or decoding.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import methods
from methods import svd_cache
from benchmark.models.cell_model import build_cell_model
from benchmark.cost.measure import ACCELERATOR_KIND, HOST_KIND, MB, cuda_memory, peak_rss_mb
from benchmark.data.layout import split_pairs
from benchmark.data.sources import load_pairs
from benchmark.engine.step import micro_batches, trained_batchnorms
from benchmark.grid import STEP_DEFAULTS, Cell, all_cells, cell_config, row_train
from benchmark.perf.timing import inference_times, train_step_measure

TRUST = ("How far to trust it: a projection from a few steps on random images, in the plan's process, at the "
         "load the host has while it measures; a grid run later on a busier or quieter machine differs by that "
         "much. The test holds training seconds per epoch within 3x of a real cell on a shared CPU host (docs/cost.md "
         "shows plan against measured for the default grid's cells). Memory on CUDA is the "
         "allocator's peak reserved memory for the same step and batch, what an out-of-memory error is about; "
         "on a CPU it is the plan process's peak RSS so far, which never falls.")


@dataclass(frozen=True)
class Measured:
    """One setup's measurement: median seconds of a training step and of a forward pass (merged
    model) at the grid's batch, peak memory in MB and its kind, build seconds, whether it trains."""

    step_s: float
    forward_s: float
    peak_mb: float
    memory_kind: str
    build_s: float
    trains: bool
    step_peak_mb: float | None = None  # the step's own peak (perf.step_memory), above the model's memory
    model_mb: float = 0.0  # parameters and buffers
    batchnorm: bool = False  # a BatchNorm trains (the step's floor of 2 images per micro-batch)

    @property
    def needed_mb(self) -> float:
        """What the setup needs on a GPU: the allocator's peak reserved memory, measured on CUDA; from a
        CPU, the model plus the step's own peak, the tensors the same step allocates (a GPU adds its
        allocator's caching and the CUDA context, several hundred MB, on top)."""
        if self.memory_kind == ACCELERATOR_KIND or self.step_peak_mb is None:
            return self.peak_mb
        return self.model_mb + self.step_peak_mb


@dataclass(frozen=True)
class Projection:
    """One cell's projected cost."""

    cell: str
    setup: str
    images: dict[str, int]
    seconds_per_epoch: float
    total_s: float
    peak_mb: float
    role: str = "table"  # "table", "trial" (tuning), or "reuses a trial" (a tuned cell whose trial has its settings)


def setup_key(cell: Cell, config: dict) -> str:
    """What fixes a training step's cost: the model (backbone and method entry), the row's batch and
    precision, and the input size (not the lr or the epochs: a step costs the same)."""
    train = row_train(config, cell.entry)
    return json.dumps({"backbone": cell.backbone, "entry": {k: v for k, v in cell.entry.items() if k != "train"},
                       "batch": train["batch_size"], "precision": train["precision"],
                       "step": {key: train.get(key, value) for key, value in STEP_DEFAULTS.items()},
                       "input_size": config["input_size"]}, sort_keys=True)


def setup_label(cell: Cell) -> str:
    return f"{cell.backbone}/{cell.entry['id']}" if cell.backbone else cell.entry["id"]


def image_counts(config: dict) -> dict[str, dict[str, int]]:
    """Training, validation and test images per dataset of the grid (synthetic data is generated
    here, as its first cell would; real data is checked)."""
    counts = {}
    for name, dataset in config["datasets"].items():
        pairs = load_pairs(name, dataset, Path(config["results_dir"]))
        counts[name] = {split: len(split_pairs(pairs, split)) for split in ("train", "val", "test")}
    return counts


def measure(cell: Cell, config: dict, device: torch.device, batch: int, warmup: int, steps: int) -> Measured:
    """Build `cell`'s model and time `steps` training steps and forward passes at `batch`."""
    torch.manual_seed(cell.seed)
    began = time.perf_counter()
    with svd_cache.cached_in(Path(config["results_dir"]) / "cache" / "svd"):
        model = build_cell_model(cell, config).model
    build_s = time.perf_counter() - began
    model = model.to(device, memory_format=torch.channels_last)
    trains = any(p.requires_grad for p in model.parameters())
    memory = cuda_memory(device) if device.type == "cuda" else None
    if memory is not None:
        memory.reset_peak()
    size, precision = config["input_size"], config["train"]["precision"]
    model_mb = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / MB
    times, step_peak = train_step_measure(model, config["train"], size, batch, device, max(warmup, 1), steps)
    peak = memory.peak_reserved() / MB if memory is not None else peak_rss_mb()
    merged = methods.merge_model(copy.deepcopy(model))
    forward = statistics.median(inference_times({"merged": merged}, size, batch, precision, device, warmup, steps)["merged"])
    return Measured(statistics.median(times), forward, peak, ACCELERATOR_KIND if memory is not None else HOST_KIND,
                    build_s, trains, step_peak, model_mb, bool(trained_batchnorms(model)))


def _measure_or_overflow(cell: Cell, config: dict, device: torch.device, batch: int, warmup: int,
                         steps: int) -> Measured:
    """measure, or on a CUDA out-of-memory error a setup with unknown times and infinite peak."""
    try:
        return measure(cell, config, device, batch, warmup, steps)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Measured(math.nan, math.nan, math.inf, ACCELERATOR_KIND, math.nan, True)


def project(cell: Cell, config: dict, measured: Measured, images: dict[str, int]) -> Projection:
    """Scale the setup's step and forward times by the cell's image counts, with the cell's row's
    settings; a tuned cell whose trials ran at its full budget reuses the chosen trial and costs nothing."""
    if cell.tuned and "epochs" not in config["tune"]:
        return Projection(cell.id, setup_label(cell), images, 0.0, 0.0, measured.peak_mb, "reuses a trial")
    train_cfg = cell_config(config, cell)["train"]
    batch, epochs = train_cfg["batch_size"], train_cfg["epochs"] if measured.trains else 0
    per_epoch = images["train"] / batch * measured.step_s if epochs else 0.0
    validates = (train_cfg["selection"] == "validation" or cell.trial_of is not None) and epochs > 0
    validation = images["val"] / batch * measured.forward_s if validates else 0.0
    test = images["test"] / batch * measured.forward_s
    total = measured.build_s + epochs * (per_epoch + validation) + test
    return Projection(cell.id, setup_label(cell), images, per_epoch, total, measured.peak_mb,
                      "trial" if cell.trial_of is not None else "table")


def makespan(seconds: list[float], gpus: int) -> float:
    """Wall time of the cells on `gpus` devices, one cell each at a time, longest first onto the
    least loaded device (Snakemake schedules in its own order; this is the usual bound's estimate)."""
    loads = [0.0] * max(gpus, 1)
    for value in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += value
    return max(loads)


def parse_memory(text: str) -> float:
    """"24GB", "24 GiB", "24000MB" -> MB (GB and GiB alike: 1024 MB, as nvidia-smi's "MiB" counts)."""
    value = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("I")
    units = {"G": 1024.0, "M": 1.0}
    if not value or value[-1] not in units:
        raise ValueError(f"--gpu-memory: {text!r} is not a size like 24GB or 16000MB")
    try:
        return float(value[:-1]) * units[value[-1]]
    except ValueError:
        raise ValueError(f"--gpu-memory: {text!r} is not a size like 24GB or 16000MB") from None


def fitting_batch(peaks: dict[int, float], limit_mb: float) -> int:
    """Largest batch whose peak fits `limit_mb`, from peaks measured at two or more batch sizes
    (peak = fixed + batch x per image, fitted through the smallest and largest); 0 when not even
    the fixed part fits."""
    small, large = min(peaks), max(peaks)
    per_image = (peaks[large] - peaks[small]) / (large - small) if large > small else peaks[small] / small
    fixed = peaks[small] - small * per_image
    if fixed >= limit_mb:
        return 0
    return max(int(math.floor((limit_mb - fixed) / max(per_image, 1e-9))), 0)


def candidates(train: dict, batchnorm: bool) -> list[dict]:
    """Settings that lower a step's memory without changing its batch, to measure in turn:
    checkpointing, micro-batches (2, and the fewest images a micro-batch may hold), and both."""
    batch = train["batch_size"]
    smallest = micro_batches(batch, batch, batchnorm)
    accumulations = sorted({k for k in (2, smallest) if 2 <= k <= smallest and k > train["grad_accumulation"]})
    options = [] if train["activation_checkpointing"] else [{"activation_checkpointing": True}]
    options += [{"grad_accumulation": k} for k in accumulations]
    if options and accumulations and not train["activation_checkpointing"]:
        options += [{"activation_checkpointing": True, "grad_accumulation": k} for k in accumulations]
    return options


def _setting(change: dict) -> str:
    return ", ".join(f"train.{key}: {str(value).lower() if isinstance(value, bool) else value}" for key, value in change.items())


def _saves(change: dict, measured: Measured, tried: list[tuple[dict, Measured]], current: Measured) -> bool:
    """Whether checkpointing in `change` lowers the need measured without it (a model with no encoder
    blocks, such as a U-Net, checkpoints nothing: its step time would only add noise to the choice)."""
    if not change.get("activation_checkpointing"):
        return True
    without = {key: value for key, value in change.items() if key != "activation_checkpointing"}
    reference = current if not without else next((m for c, m in tried if c == without), current)
    return measured.needed_mb < 0.99 * reference.needed_mb


def advice(config: dict, cell: Cell, current: Measured, limit_mb: float, device: torch.device, warmup: int,
           steps: int) -> str:
    """The cheapest measured setting under which `cell`'s setup fits `limit_mb`: of the settings that keep
    the batch (candidates) and save what they claim to (_saves), the one with the fastest measured step;
    else the largest batch that fits."""
    train = row_train(config, cell.entry)
    tried = []
    for change in candidates(train, current.batchnorm):
        trial = {**cell_config(config, cell), "train": {**train, **change}}
        tried.append((change, _measure_or_overflow(cell, trial, device, train["batch_size"], warmup, steps)))
    fitting = [(change, m) for change, m in tried if m.needed_mb <= limit_mb and _saves(change, m, tried, current)]
    measured = "; ".join(f"{_setting(change)}: {m.needed_mb:,.0f} MB, {m.step_s / current.step_s:.2f} x the step time"
                         for change, m in tried)
    if fitting:
        change, m = min(fitting, key=lambda item: item[1].step_s)
        return (f"cheapest setting that fits: {_setting(change)} ({m.needed_mb:,.0f} MB, step {m.step_s / current.step_s:.2f} "
                f"x the current; measured: {measured})")
    batch = train["batch_size"]
    peaks = {b: _measure_or_overflow(cell, cell_config(config, cell), device, b, warmup, steps).needed_mb
             for b in (1, 2) if b < batch}
    peaks = {b: peak for b, peak in peaks.items() if math.isfinite(peak)}
    fits = fitting_batch({**peaks, batch: current.needed_mb}, limit_mb) if peaks else 0
    tail = f" (neither fits: {measured})" if tried else ""
    if fits:
        return (f"train.batch_size {fits} would fit (peak linear in the batch, from batches {sorted(peaks)} and {batch}; "
                f"a smaller batch changes the training){tail}")
    return f"no batch size fits: the model alone exceeds it (try precision bf16){tail}"


def over_memory(config: dict, cells: dict[str, Cell], measured: dict[str, Measured], limit_mb: float,
                device: torch.device, warmup: int, steps: int) -> list[str]:
    """Warnings for the setups whose measured need exceeds `limit_mb`, naming their cells and the
    cheapest setting under which they would fit (advice, from further measurements)."""
    warnings = []
    batch = config["train"]["batch_size"]
    for key, value in measured.items():
        if value.needed_mb <= limit_mb:
            continue
        cell = next(c for c in cells.values() if setup_key(c, config) == key)
        names = [c for c in cells if setup_key(cells[c], config) == key]
        warnings.append(f"{setup_label(cell)} at batch {batch} needs {value.needed_mb:,.0f} MB, over the "
                        f"{limit_mb:,.0f} MB of the GPU: cells {', '.join(names)}; "
                        f"{advice(config, cell, value, limit_mb, device, warmup, steps)}")
    return warnings


def plan(config: dict, device: torch.device, warmup: int = 1, steps: int = 3) -> tuple[list[Projection], dict[str, Measured]]:
    """Measure each distinct setup once and project every cell of the grid."""
    cells = all_cells(config)
    counts = image_counts(config)
    measured: dict[str, Measured] = {}
    for cell in cells.values():
        key = setup_key(cell, config)
        if key not in measured:
            measured[key] = _measure_or_overflow(cell, cell_config(config, cell), device,
                                                 row_train(config, cell.entry)["batch_size"], warmup, steps)
            print(f"measured {setup_label(cell)}: {measured[key].step_s:.3f} s per step, "
                  f"{measured[key].peak_mb:,.0f} MB peak, needs {measured[key].needed_mb:,.0f} MB on a GPU", flush=True)
    return [project(cell, config, measured[setup_key(cell, config)], _images(counts[cell.dataset], cell))
            for cell in cells.values()], measured


def _images(counts: dict[str, int], cell: Cell) -> dict[str, int]:
    """The dataset's image counts, with a training subset's size for a cell on one."""
    return counts if cell.n_train is None else {**counts, "train": cell.n_train}


def to_markdown(projections: list[Projection], measured: dict[str, Measured], gpus: int, device: str) -> str:
    kinds = {m.memory_kind for m in measured.values()}
    lines = [f"Device: {device}. Peak memory: {'; '.join(sorted(kinds))}.", "",
             "| cell | setup | train / val / test images | s / epoch | total min | peak MB |", "|---|---|---|---|---|---|"]
    for p in projections:
        images = f"{p.images['train']} / {p.images['val']} / {p.images['test']}"
        lines.append(f"| {p.cell} | {p.setup} | {images} | {p.seconds_per_epoch:.1f} | {p.total_s / 60:.2f} | {p.peak_mb:,.0f} |")
    totals = [p.total_s for p in projections]
    lines += ["", f"Grid: {len(projections)} cells, {sum(totals) / 3600:.2f} h on 1 device"
              + (f", {makespan(totals, gpus) / 3600:.2f} h on {gpus} devices (longest cells first)" if gpus > 1 else "")
              + "."]
    trials = [p.total_s for p in projections if p.role == "trial"]
    if trials:
        table = [p.total_s for p in projections if p.role != "trial"]
        reused = sum(p.role == "reuses a trial" for p in projections)
        lines += ["", f"Of which tuning trials: {len(trials)} cells, {sum(trials) / 3600:.2f} h; table cells: "
                  f"{len(table)}, {sum(table) / 3600:.2f} h ({reused} reuse the trial that trained with their settings)."]
    lines += ["", TRUST]
    return "\n".join(lines) + "\n"
