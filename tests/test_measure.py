"""What a cell measures while it trains: per-epoch time, images and memory in the log, per-step
memory samples summarised as p99 and mean, kept across a resume; the CUDA path with the allocator
injected, so it runs without a GPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.cost.measure import ACCELERATOR_KIND, EPOCH_FIELDS, HOST_KIND, MB, AcceleratorMemory, RunMeter, measured_cost
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import read_salt_layout
from benchmark.data.synthetic import write_dataset
from benchmark.engine.train import train

CFG = {"epochs": 2, "batch_size": 2, "lr": 1e-2, "weight_decay": 0.0, "lr_step_epochs": 1, "lr_gamma": 0.5,
       "reg_weight": 0.0, "precision": "fp32", "workers": 0}


class FakeAllocator:
    """A CUDA caching allocator as the meter sees it: reserved grows by 1 MiB per reading, and the
    peaks are what was set since the last reset."""

    def __init__(self) -> None:
        self.now, self.resets = 100 * MB, 0

    def reserved(self) -> int:
        self.now += MB
        return self.now

    def reset(self) -> None:
        self.resets += 1

    def memory(self) -> AcceleratorMemory:
        return AcceleratorMemory(self.reserved, lambda: self.now - 10 * MB, lambda: self.now, self.reset)


@pytest.fixture
def train_set(tmp_path: Path) -> VesselDataset:
    root = write_dataset(tmp_path / "synth", "bright_speckle", n_train=5, n_test=1, size=32, seed=0)
    return VesselDataset([p for p in read_salt_layout(root) if p.split == "train"], 32)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 1, 3, padding=1)


def test_cuda_path_logs_allocator_peaks_and_summarises_step_samples(tmp_path, train_set):
    allocator = FakeAllocator()
    meter = RunMeter(allocator.memory())
    log, seconds, _ = train(_model(), train_set, CFG, tmp_path, 0, torch.device("cpu"), "f", meter=meter)
    # 5 images at batch 2: batches of 2 and 3 (a single trailing image joins the previous batch)
    assert [row["images"] for row in log] == [5, 5]
    assert allocator.resets == 2
    assert meter.samples == [101.0, 102.0, 103.0, 104.0]
    assert [row["peak_reserved_mb"] for row in log] == [102.0, 104.0]
    assert [row["peak_allocated_mb"] for row in log] == [92.0, 94.0]
    cost = measured_cost(log, meter, 1.5, 1234, "cuda: fake")
    assert cost["step_memory"] == {"kind": ACCELERATOR_KIND, "steps": 4, "p99_mb": round(np.percentile([101, 102, 103, 104], 99), 1),
                                   "mean_mb": 102.5}
    assert cost["peak_reserved_mb"] == 104.0  # the allocator's peak after training, evaluation included
    assert cost["train_seconds_total"] == pytest.approx(sum(row["seconds"] for row in log))
    assert cost["seconds_per_epoch_median"] == pytest.approx(np.median([row["seconds"] for row in log]), abs=1e-3)
    assert cost["train_images_per_s"] == pytest.approx(10 / sum(row["seconds"] for row in log), rel=1e-3)
    assert (cost["eval_seconds"], cost["adapter_bytes"], cost["device"], cost["epochs"]) == (1.5, 1234, "cuda: fake", 2)


def test_cpu_path_samples_host_rss_and_leaves_accelerator_columns_empty(tmp_path, train_set):
    meter = RunMeter()
    log, _, _ = train(_model(), train_set, CFG, tmp_path, 0, torch.device("cpu"), "f", meter=meter)
    assert all(row["peak_allocated_mb"] is None and row["peak_rss_mb"] > 50 for row in log)
    cost = measured_cost(log, meter, 0.1, 10, "cpu")
    assert cost["peak_allocated_mb"] is None and cost["step_memory"]["kind"] == HOST_KIND
    # /proc/self/statm and getrusage round differently: within 1%
    assert 50 < cost["step_memory"]["mean_mb"] <= 1.01 * cost["peak_host_rss_mb"]
    csv = (tmp_path / "train_log.csv").read_text().splitlines()
    assert csv[0].endswith("seconds,images,images_per_s,peak_rss_mb,peak_allocated_mb,peak_reserved_mb")


def test_a_resumed_run_keeps_the_figures_of_the_epochs_it_did_not_redo(tmp_path, train_set):
    first = RunMeter(FakeAllocator().memory())
    done, _, _ = train(_model(), train_set, {**CFG, "epochs": 1}, tmp_path, 0, torch.device("cpu"), "f", meter=first)
    later = FakeAllocator()
    later.now = 500 * MB
    resumed = RunMeter(later.memory())
    log, _, _ = train(_model(), train_set, CFG, tmp_path, 0, torch.device("cpu"), "f", meter=resumed)
    kept = ("seconds", *EPOCH_FIELDS)  # epoch 1 measured by the first run, not re-measured
    assert [log[0][key] for key in kept] == [done[0][key] for key in kept]
    assert log[1]["peak_reserved_mb"] == 502.0
    assert resumed.samples == [101.0, 102.0, 501.0, 502.0]
    assert measured_cost(log, resumed, 0.0, 0, "cuda: fake")["step_memory"]["steps"] == 4

