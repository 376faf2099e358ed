"""Timing the engine's own training step and a merged model's forward pass on random images: what
`saltbench bench` and `saltbench plan` measure. The step is engine.step's, built from the grid's
`train` settings exactly as a cell builds it, so the numbers are those of the step cells run."""
from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from torch import nn

from benchmark.engine.precision import autocast
from benchmark.engine.step import make_step
from benchmark.engine.train import set_train_mode
from benchmark.perf.step_memory import step_peak_mb


def synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer reads the work's end and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def device_label(device: torch.device) -> str:
    """The device every timing names: the GPU's name, or the CPU's and its thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def train_step_times(model: nn.Module, train_cfg: dict, size: int, batch: int, device: torch.device, warmup: int,
                     steps: int) -> list[float]:
    """Seconds of each of `steps` training steps (engine.step, with `train_cfg`'s optimizer, objective,
    precision and lean settings) on a random batch, after `warmup` untimed ones; a model with nothing
    trainable times its forward and objective."""
    return train_step_measure(model, train_cfg, size, batch, device, warmup, steps)[0]


def train_step_measure(model: nn.Module, train_cfg: dict, size: int, batch: int, device: torch.device, warmup: int,
                       steps: int) -> tuple[list[float], float | None]:
    """train_step_times, and the peak memory of the last warm-up step (perf.step_memory: the step's
    own MB above what was allocated before it; None without a warm-up step, or compiled on a CPU)."""
    step = make_step(model, train_cfg, device)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=generator).to(device)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float().to(device)
    set_train_mode(model)
    times, peak = [], None
    for index in range(warmup + steps):
        if index == warmup - 1:
            peak = step_peak_mb(lambda: step(image, mask), device, step.compiled)
            continue
        synchronise(device)
        began = time.perf_counter()
        step(image, mask)
        synchronise(device)
        if index >= warmup:
            times.append(time.perf_counter() - began)
    return times, peak


@torch.no_grad()
def inference_times(models: dict[str, nn.Module], size: int, batch: int, precision: str, device: torch.device,
                    warmup: int, steps: int) -> dict[str, list[float]]:
    """Seconds of each timed forward pass of each merged model (eval, no gradients), timed
    round-robin over the models so that a disturbance spreads over all of them."""
    image = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    times: dict[str, list[float]] = {row: [] for row in models}
    for model in models.values():
        model.eval()
    for index in range(warmup + steps):
        for row, model in models.items():
            synchronise(device)
            began = time.perf_counter()
            with autocast(precision, device):
                model(image)
            synchronise(device)
            if index >= warmup:
                times[row].append(time.perf_counter() - began)
    return times
