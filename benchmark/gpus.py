"""One GPU per cell when Snakemake runs several cells at once on one machine (`--resources gpu=K`).

Snakemake counts GPU jobs but does not say which GPU a job gets. A cell therefore claims a
(device, slot) pair itself by flock-ing a lock file per pair under the results folder
(benchmark.io.exclusive: the kernel frees it however the job ends, SIGKILL included) and then
restricts itself to that device with CUDA_VISIBLE_DEVICES, which must happen before anything asks
CUDA about devices. `gpu_slots_per_device` lets one large GPU hold several small cells. Under SLURM
the scheduler has already given the job its own GPUs, so nothing is claimed there.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import Busy, NoFreeGpu
from benchmark.io import exclusive


@dataclass(frozen=True)
class GpuClaim:
    """The device a cell holds (as CUDA_VISIBLE_DEVICES names it), its slot and the lock that holds it."""
    device: str
    slot: int
    slots_per_device: int
    lock: str

    def provenance(self) -> dict:
        return {"device": self.device, "slot": self.slot, "slots_per_device": self.slots_per_device,
                "assigned_by": f"saltbench GPU lock {self.lock}"}


def visible_gpus() -> list[str]:
    """The GPUs this process may use, read without initialising CUDA (after that, CUDA_VISIBLE_DEVICES
    no longer has any effect): CUDA_VISIBLE_DEVICES when set, else nvidia-smi's indices, else none."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    found = _nvidia_smi(["--query-gpu=index", "--format=csv,noheader"])
    return [] if found is None else [line.strip() for line in found.splitlines() if line.strip()]


def foreign_processes(device: str, ours: set[int]) -> list[int]:
    """Compute processes on `device` that are not saltbench cells holding its slots (`ours`):
    another user's job, or a program started by hand. Empty when nvidia-smi is absent."""
    found = _nvidia_smi(["--query-compute-apps=pid", "--format=csv,noheader", "-i", device])
    pids = [] if found is None else [int(line) for line in found.split() if line.strip().isdigit()]
    return [pid for pid in pids if pid not in ours]


def _nvidia_smi(args: list[str]) -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run([smi, *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def lock_path(lock_dir: Path, device: str, slot: int) -> Path:
    """Per host: a results folder on a shared file system serves cells on several machines."""
    return Path(lock_dir) / f"{socket.gethostname()}-gpu{device}-slot{slot}.lock"


def _holder_pid(path: Path) -> int | None:
    """The pid benchmark.io.exclusive wrote into a held lock ("pid N on host")."""
    try:
        words = path.read_text().split()
    except OSError:
        return None
    return int(words[1]) if len(words) > 1 and words[0] == "pid" and words[1].isdigit() else None


@contextmanager
def claimed_gpu(lock_dir: Path, devices: list[str], slots_per_device: int = 1,
                foreign: Callable[[str, set[int]], list[int]] | None = None) -> Iterator[GpuClaim]:
    """Hold a free (device, slot) of `devices` for the block. Slot 0 of every device is tried before
    slot 1 of any, so cells spread over GPUs before they share one. A device that another program
    computes on is skipped (`foreign`: default nvidia-smi). Raises NoFreeGpu, naming every holder,
    when nothing is free."""
    foreign = foreign or foreign_processes
    refused = []
    for slot in range(slots_per_device):
        for device in devices:
            path = lock_path(lock_dir, device, slot)
            stack = ExitStack()
            try:
                stack.enter_context(exclusive(path, f"GPU {device} slot {slot}"))
            except Busy as error:
                refused.append(str(error))
                continue
            ours = {pid for other in range(slots_per_device)
                    if (pid := _holder_pid(lock_path(lock_dir, device, other))) is not None}
            others = foreign(device, ours)
            if others:
                stack.close()
                refused.append(f"GPU {device} is in use by process(es) {', '.join(map(str, others))} "
                               "that are not saltbench cells")
                continue
            with stack:
                yield GpuClaim(device, slot, slots_per_device, str(path))
            return
    raise NoFreeGpu(
        f"no free GPU for this cell: {len(devices)} visible ({', '.join(devices)}) x {slots_per_device} "
        f"slot(s) each, all taken:\n  " + "\n  ".join(refused) + "\nRun with Snakemake --resources gpu=N where N "
        "is at most the free GPUs x gpu_slots_per_device, free the busy GPU, or hide it with CUDA_VISIBLE_DEVICES")


def gpu_budget_problem(requested: int | None, devices: list[str], slots_per_device: int) -> str | None:
    """Why Snakemake's `--resources gpu=requested` could start more GPU cells at once than this
    machine has GPU slots, or None. Checked before the first job so that no cell fails half-way."""
    if not devices:
        return None  # no GPU: cells run on the CPU, or refuse to when allow_cpu is false
    capacity = len(devices) * slots_per_device
    have = (f"{len(devices)} visible GPU(s) ({', '.join(devices)}) x gpu_slots_per_device {slots_per_device} "
            f"= {capacity} cell(s) at once")
    if requested is None:
        return f"give Snakemake --resources gpu=N, N at most {capacity}: {have}; without it every cell starts at once"
    if requested > capacity:
        return (f"--resources gpu={requested} is more than {have}; lower it, or raise gpu_slots_per_device "
                "if several cells fit in one GPU's memory")
    return None


@contextmanager
def cell_gpu(lock_dir: Path, device: str, slots_per_device: int) -> Iterator[dict | None]:
    """The GPU part of a cell's provenance, for the block: a claimed device, restricted to with
    CUDA_VISIBLE_DEVICES; the SLURM job's own GPUs; or None when the cell runs on the CPU."""
    if device == "cpu":
        yield None
        return
    if "SLURM_JOB_ID" in os.environ:
        yield {"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "assigned_by": f"SLURM job {os.environ['SLURM_JOB_ID']}"}
        return
    devices = visible_gpus()
    if not devices:
        yield None
        return
    with claimed_gpu(lock_dir, devices, slots_per_device) as claim:
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = claim.device
        print(f"GPU {claim.device} (slot {claim.slot} of {slots_per_device}) claimed: {claim.lock}", flush=True)
        try:
            yield claim.provenance()
        finally:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES")
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
