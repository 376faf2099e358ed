"""A tiny grid through workflow/profiles/slurm on a real one-node SLURM cluster (cluster.py), against
the same grid run locally: every job is a SLURM job, one cell is scancel-led mid-training and resumed
by Snakemake's retry, and Table 1 is the same. Root and a few minutes: `make test-slurm`."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cluster import PARTITION, Cluster, running

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CANCELLED_CELL_METHOD = "lora_r4"
WORK = Path(os.environ.get("SALTBENCH_SLURM_WORK", "/tmp/saltbench-slurm-work"))

pytestmark = pytest.mark.slurm

# One synthetic dataset, LiteMedSAM frozen + SVD + LoRA. Two epochs, so that a checkpoint exists
# mid-training to resume from; two threads in both runs, since CPU results depend on the count.
GRID = {
    "name": "slurm_tiny",
    "results_dir": "results",
    "figures_dir": "figures",
    "device": "cpu",
    "input_size": 256,
    "seeds": [0],
    "datasets": {"synth": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 2, "n_test": 2,
                           "size": 256, "seed": 0}},
    "backbones": {"litemedsam": {"name": "litemedsam", "weights": "pretrained", "text_encoder": "all-MiniLM-L6-v2",
                                 "prompt": "Vein", "tal_norm": "layer", "train_norms": True}},
    "methods": [{"id": "frozen", "name": "frozen"}, {"id": "svd", "name": "svd"},
                {"id": "lora_r4", "name": "lora", "rank": 4, "lora_alpha": 4}],
    "train": {"epochs": 2, "batch_size": 2, "lr": 3.0e-3, "lr_step_epochs": 1, "threads": 2, "augment": False},
}

# The node's partition and sizes, given on the command line over the shipped profile (which stays as
# it is for a GPU cluster). No GPU here: the cell's gpu=1 becomes 0, so sbatch gets no --gpus.
SLURM_OVERRIDES = [
    "--default-resources", f"slurm_partition={PARTITION}", "mem_mb=2000", "runtime=30", "cpus_per_task=1",
    "--set-resources", f"cell:slurm_partition={PARTITION}", "cell:gpu=0", "cell:mem_mb=8000", "cell:runtime=30",
    "cell:cpus_per_task=2", f"dataset:slurm_partition={PARTITION}", "dataset:mem_mb=2000", "dataset:runtime=10",
    "--set-threads", "cell=2", "dataset=1",
    "--slurm-init-seconds-before-status-checks", "5",
]


def _cells(grid: Path) -> list[str]:
    listed = subprocess.run([sys.executable, "-m", "benchmark.cli", "cells", "--config", str(grid)],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout
    return listed.split()


def _snakemake(workdir: Path, grid: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(grid), *extra], cwd=REPO, env=env, capture_output=True, text=True)


def _cancel_mid_training(cluster: Cluster, workdir: Path, cell: str, done: threading.Event, log: list) -> None:
    """scancel the cell's SLURM job once its first epoch's checkpoint is on disk (training goes on)."""
    checkpoint = workdir / "results" / "cells" / cell / "checkpoint.pt"
    while not done.is_set():
        if checkpoint.exists():
            queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True,
                                   env=cluster.env).stdout
            jobs = [line.split()[0] for line in queue.splitlines() if line.endswith(f"_wildcards_{cell}")]
            if jobs:
                subprocess.run(["scancel", *jobs], check=True, env=cluster.env)
                log.extend(jobs)
                return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def runs():
    """The grid run locally, then through SLURM with one cell cancelled mid-training; the accounting.
    Its own folder, not pytest's tmp_path: other pytest runs of the same user prune those meanwhile."""
    root = WORK
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    grid = root / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    cells = _cells(grid)
    started = time.monotonic()
    local = _snakemake(root / "local", grid, "--cores", "2", "--resources", "gpu=1")
    assert local.returncode == 0, local.stderr[-4000:]
    local_seconds = time.monotonic() - started
    cancelled_cell = next(cell for cell in cells if CANCELLED_CELL_METHOD in cell)
    with running() as cluster:
        done, cancelled = threading.Event(), []
        watcher = threading.Thread(target=_cancel_mid_training,
                                   args=(cluster, root / "slurm", cancelled_cell, done, cancelled))
        watcher.start()
        started = time.monotonic()
        try:
            slurm = _snakemake(root / "slurm", grid, "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
                               *SLURM_OVERRIDES, env=cluster.env)
        finally:
            done.set()
            watcher.join()
        slurm_seconds = time.monotonic() - started
        assert slurm.returncode == 0, slurm.stderr[-6000:]
        accounting = subprocess.run(["sacct", "-X", "-n", "--parsable2", "--format=JobID,Comment,State"],
                                    capture_output=True, text=True, check=True, env=cluster.env).stdout
    print(f"\nlocal run {local_seconds:.0f} s; SLURM run {slurm_seconds:.0f} s (one cell cancelled and resumed)")
    jobs = [dict(zip(("id", "comment", "state"), line.split("|"))) for line in accounting.splitlines()]
    return {"root": root, "cells": cells, "cancelled_cell": cancelled_cell, "cancelled_jobs": cancelled, "jobs": jobs}


def _summary(workdir: Path, cell: str) -> dict:
    return json.loads((workdir / "results" / "cells" / cell / "summary.json").read_text())


def test_every_cell_ran_as_a_slurm_job(runs) -> None:
    """sacct lists a COMPLETED job for each cell, and each summary names the job that wrote it."""
    for cell in runs["cells"]:
        completed = [job for job in runs["jobs"]
                     if job["comment"] == f"rule_cell_wildcards_{cell}" and job["state"] == "COMPLETED"]
        assert len(completed) == 1, (cell, runs["jobs"])
        assert _summary(runs["root"] / "slurm", cell)["provenance"]["slurm_job"] == completed[0]["id"]
        assert _summary(runs["root"] / "local", cell)["provenance"]["slurm_job"] is None
    assert any(job["comment"] == "rule_dataset_wildcards_synth" and job["state"] == "COMPLETED" for job in runs["jobs"])
    assert any(job["comment"] == "rule_figures" and job["state"] == "COMPLETED" for job in runs["jobs"])


# train_log.csv's columns that a rerun must repeat; the others are what the epoch cost (seconds, memory)
DETERMINED = ("epoch", "lr", "loss", "seg_loss", "reg", "val_dice")


def _same_files(runs, cell: str) -> None:
    """The cell's per-image scores, and its per-epoch losses to the last digit, equal the local run's."""
    for name in ("per_image.csv", "train_log.csv"):
        files = [runs["root"] / run / "results" / "cells" / cell / name for run in ("slurm", "local")]
        if not files[1].exists():
            assert not files[0].exists()
            continue
        slurm_rows, local_rows = ([{key: row[key] for key in (DETERMINED if name == "train_log.csv" else row)}
                                   for row in csv.DictReader(path.open())] for path in files)
        assert slurm_rows and slurm_rows == local_rows, (cell, name)


def test_table1_and_training_equal_the_local_run(runs) -> None:
    """On this tiny grid (2 images, 2 steps) every Dice is 0.000, so Table 1 alone would say little:
    the losses of every epoch of every cell are compared too."""
    def rows(workdir: Path) -> list[dict]:
        with (workdir / "figures" / "table1.csv").open() as handle:
            return list(csv.DictReader(handle))

    local, slurm = rows(runs["root"] / "local"), rows(runs["root"] / "slurm")
    assert len(local) == len(runs["cells"])
    assert slurm == local
    for cell in runs["cells"]:
        _same_files(runs, cell)
        resumed, uninterrupted = _summary(runs["root"] / "slurm", cell), _summary(runs["root"] / "local", cell)
        assert resumed["metrics"] == uninterrupted["metrics"]
        assert resumed["trained"] == uninterrupted["trained"]


def test_a_cancelled_cell_resumes_from_its_checkpoint_with_the_same_metrics(runs) -> None:
    """scancel mid-training (after epoch 1 of 2): the retry resumes at epoch 2, and the cell's
    metrics and per-epoch log equal those of the uninterrupted local run."""
    cell = runs["cancelled_cell"]
    assert runs["cancelled_jobs"], "the cell finished before its job could be cancelled"
    states = {job["id"]: job["state"] for job in runs["jobs"]}
    assert all(states[job].startswith("CANCELLED") for job in runs["cancelled_jobs"])
    log = (runs["root"] / "slurm" / "results" / "logs" / f"cell-{cell}.log").read_text()
    assert "resuming from" in log and "epoch 1 of 2 done" in log and "epoch 1/2:" not in log
    resumed, uninterrupted = _summary(runs["root"] / "slurm", cell), _summary(runs["root"] / "local", cell)
    assert resumed["trained"]["epochs"] == 2
    assert resumed["trained"]["final_loss"] == uninterrupted["trained"]["final_loss"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    _same_files(runs, cell)
