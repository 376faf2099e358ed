"""What measuring a cell's cost adds to its training time, side by side in one process.

    python -m benchmark.perf.measure_overhead [--config config/default.yaml] [--cell unet-synth_bright-s0] [--rounds 3]

Trains one epoch of a real cell of the grid (its model, data, batch and objective, through
engine.train) again and again, alternating the per-step memory sampling on and off (the per-epoch
readings stay on: they happen once per epoch), and prints the ratio of the summed training seconds.
On a shared machine that ratio carries the host's noise, so it also times the sampling call itself
(a few thousand calls) and prints it as a share of the median training step the runs measured:
the overhead without the noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmark.allocator import reexec_with_allocator_settings
from benchmark.models.cell_model import build_cell_model
from benchmark.config import load_config
from benchmark.cost.measure import RunMeter
from benchmark.engine.cell import cell_datasets, resolve_device
from benchmark.engine.train import train
from benchmark.grid import expand_cells


def sampling_seconds(meter: RunMeter, calls: int) -> float:
    """Seconds of one per-step sample (the meter's step call), averaged over `calls` calls."""
    began = time.perf_counter()
    for _ in range(calls):
        meter.step(1)
    return (time.perf_counter() - began) / calls


def main(argv: list[str]) -> None:
    command = argparse.ArgumentParser(prog="python -m benchmark.perf.measure_overhead", description=__doc__.splitlines()[0])
    command.add_argument("--config", default="config/default.yaml")
    command.add_argument("--cell", default="unet-synth_bright-s0", help="cell id of the grid (default: %(default)s)")
    command.add_argument("--rounds", type=int, default=3, help="epochs with sampling on and off each (default: %(default)s)")
    args = command.parse_args(argv)
    config = load_config(args.config)
    cell = expand_cells(config)[args.cell]
    device = resolve_device(config)
    torch.set_num_threads(config["train"]["threads"] or len(os.sched_getaffinity(0)))
    model = build_cell_model(cell, config).model.to(device, memory_format=torch.channels_last)
    train_set = cell_datasets(cell, config)["train"]
    cfg = {**config["train"], "epochs": 1}
    seconds: dict[bool, list[float]] = {True: [], False: []}
    steps: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        # one untimed epoch first: the first epoch pays for allocations and caches whichever side it is on
        train(model, train_set, cfg, Path(scratch) / "warm-up", cell.seed, device, "overhead", None)
        for index in range(2 * args.rounds):
            sampling = (index % 2 == 0) == (index // 2 % 2 == 0)  # on/off, then off/on: neither always first
            meter = RunMeter.for_device(device)
            meter.sample_steps = sampling
            _, elapsed, _ = train(model, train_set, cfg, Path(scratch) / str(index), cell.seed, device, "overhead", None, meter)
            seconds[sampling].append(elapsed)
            if sampling:
                steps.append(elapsed / len(meter.samples))
    on, off = sum(seconds[True]), sum(seconds[False])
    per_sample = sampling_seconds(RunMeter.for_device(device), 5000)
    step = statistics.median(steps)
    print(f"cell {args.cell} on {device}: {args.rounds} epochs each, training seconds with per-step sampling "
          f"{on:.2f}, without {off:.2f}: ratio on/off {on / off:.4f} (host noise included)")
    print(f"one per-step sample: {per_sample * 1e6:.1f} us; median training step {step:.3f} s; "
          f"sampling adds {100 * per_sample / step:.4f}% per step")


if __name__ == "__main__":
    reexec_with_allocator_settings("benchmark.perf.measure_overhead", sys.argv[1:])
    main(sys.argv[1:])
