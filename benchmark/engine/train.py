"""Training with per-epoch checkpoints, so a killed cell resumes where it stopped.

Every source of randomness inside an epoch (batch order, augmentation, dropout) is seeded from
(seed, epoch), so a resumed run repeats exactly what an uninterrupted one would have done, and
DataLoader workers (`train.workers`) assemble the same batches as the training process would.
Each batch is one engine.step (forward in `train.precision`, objective, backward, optimizer step).
With a validation function, each epoch is scored on the validation images and the trainable state
of the best epoch is kept (in the checkpoint too) and restored at the end: model selection.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from benchmark.cost.measure import EPOCH_FIELDS, RunMeter
from benchmark.data.dataset import VesselDataset
from benchmark.data.prompts import stack_prompts, to_device
from benchmark.engine.step import TrainStep, make_step
from benchmark.errors import NonFiniteLoss
from benchmark.io import atomic_write, read_or_discard, write_text

CHECKPOINT = "checkpoint.pt"
# Test hook (docs/reliability.md): while the file this names exists, a cell waits before each epoch,
# so a test can keep a cell running, holding its lock, until it releases it, on any host's speed.
HOLD_FILE_ENV = "SALTBENCH_HOLD_FILE"
LOG_FIELDS = ("epoch", "lr", "loss", "seg_loss", "reg", "val_dice", "seconds", *EPOCH_FIELDS)
STATE_KEYS = {"model", "optimizer", "scheduler", "scaler", "log", "elapsed", "epoch", "fingerprint", "best"}


def _read_checkpoint(path: Path, device: torch.device) -> dict:
    state = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a training checkpoint of this engine (holds {found})")
    return state


def _hold() -> None:
    """Wait while the file SALTBENCH_HOLD_FILE names exists (unset: return at once)."""
    gate = os.environ.get(HOLD_FILE_ENV)
    while gate and os.path.exists(gate):
        time.sleep(0.1)


def _check_finite(mean_loss: float, epoch: int, cfg: dict) -> None:
    """NaN/inf loss: stop before the diverged state overwrites the previous epoch's checkpoint."""
    if not math.isfinite(mean_loss):
        raise NonFiniteLoss(
            f"the training loss became {mean_loss} in epoch {epoch} (lr {cfg['lr']}, precision {cfg['precision']}); "
            "no summary is written. Try a lower train.lr, precision fp32, or check the masks and images; "
            "a rerun resumes from the last finite epoch's checkpoint")


@dataclass
class Best:
    """The selected epoch (1-based) and its validation Dice; 0 and NaN before any epoch is scored."""

    epoch: int = 0
    val_dice: float = math.nan
    state: dict | None = None

    def offer(self, epoch: int, val_dice: float, model: nn.Module) -> None:
        """Keep `model`'s state if `val_dice` beats the best so far (ties keep the earlier epoch)."""
        if self.state is None or val_dice > self.val_dice:
            self.epoch, self.val_dice, self.state = epoch, val_dice, trainable_state(model)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the running statistics of trainable BatchNorms (e.g. the TAL's):
    everything that differs from the frozen backbone after training."""
    state = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and any(p.requires_grad for p in module.parameters()):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                state[f"{name}.{buffer_name}"] = buffer.detach().clone()
    return state


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = set(trainable_state(model))
    if set(state) != expected:
        raise ValueError(
            f"checkpoint does not fit this model: missing {sorted(expected - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected)[:5]}"
        )
    model.load_state_dict(state, strict=False)


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except BatchNorms whose weights are frozen: their statistics belong to the
    pretrained model and must not drift with the new data."""
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _batch_indices(count: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of indices; a trailing batch of one image joins the previous batch, because
    BatchNorm in training mode (e.g. DeepLabV3+'s ASPP pooling branch) cannot take a single image."""
    order = torch.randperm(count, generator=generator).tolist()
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] == 1:
        starts.pop()
    return [order[start:stop] for start, stop in zip(starts, starts[1:] + [len(order)])]


def _stack(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
    """A batch: images, masks, and the prompts of a box- or point-prompted row (None for text)."""
    prompts = stack_prompts([it["prompt"] for it in items]) if "prompt" in items[0] else None
    return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items]), prompts


def default_workers(device: torch.device) -> int:
    """DataLoader workers when train.workers is unset: none on a CPU, where workers would take cores
    from the training step itself; on a GPU enough to decode-free augment ahead of the step."""
    if device.type == "cpu":
        return 0
    return max(1, min(4, len(os.sched_getaffinity(0)) - 1))


def epoch_loader(dataset: VesselDataset, batch_size: int, seed: int, epoch: int, workers: int,
                 device: torch.device) -> DataLoader:
    """The batches of one epoch, assembled by `workers` processes (0: in this one) into pinned memory
    on CUDA. Batch order comes from rng(seed, epoch) and each image's augmentation from
    rng(seed, epoch, index) (VesselDataset), so the batches are the same whatever `workers` is."""
    dataset.set_epoch(epoch)
    order = _batch_indices(len(dataset), batch_size, torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    return DataLoader(dataset, batch_sampler=order, num_workers=workers, collate_fn=_stack,
                      pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def _write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


@dataclass
class Progress:
    """Where a run stands: the log of the epochs done, the training seconds they took, and the
    selected epoch so far; what a checkpoint carries across a kill."""

    rows: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    best: Best = field(default_factory=Best)

    @property
    def epoch(self) -> int:
        return len(self.rows)


def _resume(checkpoint: Path, fingerprint: str, step: TrainStep, scheduler, meter: RunMeter, epochs: int,
            device: torch.device) -> Progress:
    """The progress of an earlier run of this configuration, its state loaded into the step's model,
    optimizer and scaler and into the scheduler and meter; a fresh Progress when there is none."""
    state = read_or_discard(checkpoint, lambda path: _read_checkpoint(path, device), "training checkpoint")
    if state is not None and state.get("fingerprint") != fingerprint:
        print(f"{checkpoint} belongs to another configuration of this cell; starting afresh", flush=True)
        state = None
    if state is None:
        return Progress()
    load_trainable_state(step.model, state["model"])
    step.optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    step.scaler.load_state_dict(state["scaler"])
    meter.samples = list(state.get("step_memory", []))  # absent in checkpoints written before it was measured
    print(f"resuming from {checkpoint}: epoch {state['epoch']} of {epochs} done", flush=True)
    return Progress(state["log"], state["elapsed"], Best(**state["best"]))


def _save(checkpoint: Path, fingerprint: str, step: TrainStep, scheduler, meter: RunMeter, progress: Progress) -> None:
    state = {"model": trainable_state(step.model), "optimizer": step.optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": step.scaler.state_dict(), "log": progress.rows,
             "elapsed": progress.elapsed, "epoch": progress.epoch, "fingerprint": fingerprint,
             "best": vars(progress.best), "step_memory": list(meter.samples)}
    atomic_write(checkpoint, lambda tmp: torch.save(state, tmp))


def _epoch(step: TrainStep, batches: DataLoader, meter: RunMeter) -> list[float]:
    """One pass over the epoch's batches; the mean (total, segmentation, regulariser) loss."""
    totals = torch.zeros(3, device=step.device)
    steps = 0
    for image, mask, prompt in batches:
        image, mask = image.to(step.device, non_blocking=True), mask.to(step.device, non_blocking=True)
        totals += step(image, mask, to_device(prompt, step.device))
        steps += 1
        meter.step(image.shape[0])
    return (totals / max(steps, 1)).cpu().tolist()


def _log_divergence(progress: Progress, out_dir: Path, values: tuple, measured: dict, cfg: dict) -> None:
    """A tuning trial's diverged epoch: logged (its loss is the evidence), no checkpoint written."""
    progress.rows.append({**dict(zip(LOG_FIELDS, values)), **measured})
    _write_log(out_dir / "train_log.csv", progress.rows)
    print(f"epoch {values[0]}/{cfg['epochs']}: loss {values[2]}: diverged, training stops", flush=True)


def train(model: nn.Module, dataset: VesselDataset, cfg: dict, out_dir: Path, seed: int,
          device: torch.device, fingerprint: str,
          validate: Callable[[nn.Module], float] | None = None,
          meter: RunMeter | None = None, stop_on_nonfinite: bool = False) -> tuple[list[dict], float, Best]:
    """Train for cfg['epochs'] epochs, resuming from out_dir/checkpoint.pt if it was written for
    the same cell `fingerprint` (a checkpoint of a since-changed config is discarded).

    With `validate` (model -> validation Dice), the best epoch's trainable state is loaded into
    `model` at the end; without, the model stays at the last epoch.
    Returns the per-epoch log, the training seconds spent (summed over resumed runs, validation
    excluded) and the selected epoch. `meter` (default: one for `device`) measures every epoch's time,
    images and memory into the log and keeps the per-step memory samples, restored on a resume.
    A non-finite loss raises NonFiniteLoss; with `stop_on_nonfinite` (a tuning trial, for which
    diverging is an outcome to score, not an error) its epoch is logged and training stops there.
    """
    step = make_step(model, cfg, device)
    if step.optimizer is None or cfg["epochs"] == 0:
        return [], 0.0, Best()
    scheduler = torch.optim.lr_scheduler.StepLR(step.optimizer, step_size=cfg["lr_step_epochs"], gamma=cfg["lr_gamma"])
    workers = default_workers(device) if cfg["workers"] is None else cfg["workers"]
    meter = RunMeter.for_device(device) if meter is None else meter
    checkpoint = Path(out_dir) / CHECKPOINT
    progress = _resume(checkpoint, fingerprint, step, scheduler, meter, cfg["epochs"], device)
    for epoch in range(progress.epoch, cfg["epochs"]):
        _hold()
        meter.start_epoch()
        began = time.perf_counter()
        set_train_mode(model)
        torch.manual_seed(epoch_seed(seed, epoch))
        mean = _epoch(step, epoch_loader(dataset, cfg["batch_size"], seed, epoch, workers, device), meter)
        lr = step.optimizer.param_groups[0]["lr"]
        scheduler.step()
        seconds = time.perf_counter() - began
        progress.elapsed += seconds
        measured = meter.end_epoch(seconds)  # before validation, whose memory is not the training step's
        if not math.isfinite(mean[0]) and stop_on_nonfinite:
            _log_divergence(progress, Path(out_dir), (epoch + 1, lr, *mean, math.nan, round(seconds, 2)), measured, cfg)
            break
        _check_finite(mean[0], epoch + 1, cfg)
        val_dice = validate(model) if validate is not None else math.nan
        if validate is not None:
            progress.best.offer(epoch + 1, val_dice, model)
        progress.rows.append({**dict(zip(LOG_FIELDS, (epoch + 1, lr, *mean, val_dice, round(seconds, 2)))), **measured})
        _save(checkpoint, fingerprint, step, scheduler, meter, progress)
        _write_log(Path(out_dir) / "train_log.csv", progress.rows)
        scored = "" if validate is None else f", val Dice {val_dice:.4f}"
        print(f"epoch {epoch + 1}/{cfg['epochs']}: loss {mean[0]:.4f}{scored} ({seconds:.1f} s)", flush=True)
    if progress.best.state is not None:
        load_trainable_state(model, progress.best.state)
    return progress.rows, progress.elapsed, progress.best
