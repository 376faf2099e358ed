"""What a cell's training really costs, measured while it runs: seconds and images per epoch,
peak memory per epoch, and memory sampled after every step, summarised as the 99th percentile and
mean the way Hugging Face peft's method comparison reports accelerator memory.

On CUDA the per-step sample is the caching allocator's reserved memory (what an out-of-memory error
is about) and each epoch's peaks are the allocator's peak allocated and reserved bytes; on a CPU it is
the process's resident set (host RSS). The allocator readings are injected (`AcceleratorMemory`),
so the CUDA path runs in tests without a GPU. Per-epoch figures go into the training log and the
per-step samples into the checkpoint, so a resumed cell keeps the figures of the epochs it did not redo.
"""
from __future__ import annotations

import os
import resource
import statistics
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

MB = 2**20
ACCELERATOR_KIND = "accelerator reserved memory (CUDA caching allocator)"
HOST_KIND = "host RSS (resident set of the process)"
EPOCH_FIELDS = ("images", "images_per_s", "peak_rss_mb", "peak_allocated_mb", "peak_reserved_mb")


@dataclass(frozen=True)
class AcceleratorMemory:
    """The four allocator readings a cell needs, in bytes; `cuda_memory` gives the real ones."""

    reserved: Callable[[], int]
    peak_allocated: Callable[[], int]
    peak_reserved: Callable[[], int]
    reset_peak: Callable[[], None]


def cuda_memory(device: torch.device) -> AcceleratorMemory:
    return AcceleratorMemory(lambda: torch.cuda.memory_reserved(device), lambda: torch.cuda.max_memory_allocated(device),
                             lambda: torch.cuda.max_memory_reserved(device), lambda: torch.cuda.reset_peak_memory_stats(device))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_mb() -> float:
    """Resident memory now, from /proc/self/statm (one small read); the peak where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / MB
    except OSError:
        return peak_rss_mb()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


@dataclass
class RunMeter:
    """Measures every epoch of one training run. `memory` is the accelerator's allocator (None on a
    CPU); `sample_steps: False` skips the per-step sample (used only to measure what sampling costs)."""

    memory: AcceleratorMemory | None = None
    sample_steps: bool = True
    samples: list[float] = field(default_factory=list)  # per-step memory, MB, the whole run (resumes included)
    _images: int = 0

    @classmethod
    def for_device(cls, device: torch.device) -> "RunMeter":
        return cls(cuda_memory(device) if device.type == "cuda" else None)

    @property
    def kind(self) -> str:
        return ACCELERATOR_KIND if self.memory is not None else HOST_KIND

    def start_epoch(self) -> None:
        if self.memory is not None:
            self.memory.reset_peak()
        self._images = 0

    def step(self, images: int) -> None:
        """After each optimizer step (no device synchronisation: the reading is the allocator's own count)."""
        self._images += images
        if self.sample_steps:
            self.samples.append(self.memory.reserved() / MB if self.memory is not None else current_rss_mb())

    def end_epoch(self, seconds: float) -> dict[str, float | int | None]:
        """The epoch's figures, in the order of EPOCH_FIELDS (None where the device has no allocator)."""
        accelerator = self.memory is not None
        return {
            "images": self._images,
            "images_per_s": round(self._images / seconds, 3) if seconds > 0 else None,
            "peak_rss_mb": _round(peak_rss_mb()),
            "peak_allocated_mb": _round(self.memory.peak_allocated() / MB) if accelerator else None,
            "peak_reserved_mb": _round(self.memory.peak_reserved() / MB) if accelerator else None,
        }


def _values(rows: list[dict], key: str) -> list[float]:
    """A log column's numbers; blanks (a CPU's accelerator columns, a log written before a column
    existed) are skipped."""
    return [float(row[key]) for row in rows if row.get(key) not in (None, "")]


def _max(values: list[float]) -> float | None:
    return _round(max(values)) if values else None


def measured_cost(rows: list[dict], meter: RunMeter, eval_seconds: float, adapter_bytes: int | None,
                  device: str) -> dict:
    """The summary's `measured` section: every figure from this run's epochs (kept across a resume)
    and evaluation; peak memory also includes what the evaluation after training needed."""
    seconds = _values(rows, "seconds")
    images = _values(rows, "images")
    host = _values(rows, "peak_rss_mb") + [peak_rss_mb()]
    allocated, reserved = _values(rows, "peak_allocated_mb"), _values(rows, "peak_reserved_mb")
    if meter.memory is not None:  # the evaluation ran after the last epoch's peaks were read
        allocated.append(meter.memory.peak_allocated() / MB)
        reserved.append(meter.memory.peak_reserved() / MB)
    samples = np.asarray(meter.samples, dtype=float)
    return {
        "device": device,
        "epochs": len(seconds),
        "seconds_per_epoch_median": round(statistics.median(seconds), 3) if seconds else None,
        "train_seconds_total": round(sum(seconds), 2),
        "train_images_per_s": round(sum(images) / sum(seconds), 3) if images and sum(seconds) > 0 else None,
        "eval_seconds": round(eval_seconds, 2),
        "peak_host_rss_mb": _max(host),
        "peak_allocated_mb": _max(allocated),
        "peak_reserved_mb": _max(reserved),
        "step_memory": {"kind": meter.kind, "steps": int(samples.size),
                        "p99_mb": _round(np.percentile(samples, 99)) if samples.size else None,
                        "mean_mb": _round(samples.mean()) if samples.size else None},
        "adapter_bytes": adapter_bytes,
        "convention": "seconds: training steps of each epoch (validation excluded), median and sum over epochs; "
                      "images/s: training images over those seconds; eval: the test evaluation of the merged model; "
                      "peaks: host peak RSS of the process(es) that ran the cell, accelerator peak allocated and "
                      "reserved (CUDA only); step memory: sampled after every optimizer step, 99th percentile and mean",
    }
