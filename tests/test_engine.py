"""The engine end to end: a cell trains, evaluates and records provenance; a killed cell resumes
to the same result; bad data stops it before training."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import validate
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import split_pairs
from benchmark.data.sources import load_pairs
from benchmark.engine.cell import cell_dir, resolve_device, run_cell
from benchmark.errors import DatasetError
from benchmark.predictions import read_predictions
from benchmark.metrics import dice
from benchmark.engine.train import CHECKPOINT
from benchmark.report.build import write_grid_table1
from tests.conftest import tiny_grid, write_grid

REPO = Path(__file__).resolve().parents[1]


def _read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_cell_writes_results_with_provenance_and_is_not_rerun(tmp_path):
    config = validate(tiny_grid(tmp_path))
    summary_path = run_cell(config, "unet_tiny-bright-s0")
    out = summary_path.parent
    assert {p.name for p in out.iterdir()} == {"adapter.safetensors", "train_log.csv", "per_image.csv", "summary.json",
                                               "cost.json", "predictions.npz"}
    cost = json.loads((out / "cost.json").read_text())
    assert cost["gflops_inference"] > 0 and cost["counter"] == "fvcore" and "2 x MACs" in cost["convention"]
    summary = json.loads(summary_path.read_text())
    assert summary["metrics"]["n_images"] == 2 and 0.0 <= summary["metrics"]["dice_mean"] <= 1.0
    assert summary["params"]["trainable"] == summary["params"]["total"] > 0
    assert summary["dataset"]["data"].startswith("SYNTHETIC")
    assert "HD95" in summary["conventions"]["hd95"] and summary["method"]["group"] == "baseline"
    provenance = summary["provenance"]
    for key in ("config", "versions", "git_commit", "device", "train_seconds", "peak_memory", "started"):
        assert key in provenance
    assert provenance["versions"]["torch"] and provenance["device"].startswith("cpu")
    assert [row["epoch"] for row in _read_csv(out / "train_log.csv")] == ["1", "2"]
    per_image = _read_csv(out / "per_image.csv")
    assert len(per_image) == 2
    # the kept predictions are the masks that were scored: their Dice against the test masks is per_image.csv's
    test = VesselDataset(split_pairs(load_pairs("bright", config["datasets"]["bright"], tmp_path / "results"), "test"), 64)
    predictions = read_predictions(out / "predictions.npz")
    assert list(predictions) == [row["id"] for row in per_image] == [pair.id for pair in test.pairs]
    for index, row in enumerate(per_image):
        assert predictions[row["id"]].shape == (64, 64)
        assert dice(predictions[row["id"]], test.masks[index]) == pytest.approx(float(row["dice"]), abs=1e-6)
    measured = summary["measured"]  # what the cell cost, measured in this run (tests/test_measure.py)
    assert measured["adapter_bytes"] == (out / "adapter.safetensors").stat().st_size
    assert measured["device"] == provenance["device"] and measured["peak_allocated_mb"] is None
    assert measured["epochs"] == 2 and measured["train_images_per_s"] > 0 and measured["step_memory"]["steps"] == 4
    before = summary_path.stat().st_mtime_ns
    run_cell(config, "unet_tiny-bright-s0")
    assert summary_path.stat().st_mtime_ns == before
    # a cell finished without its predictions (by a version that kept none), or with a damaged file, is run
    # again, to the same metrics
    for damage in (Path.unlink, lambda path: path.write_bytes(path.read_bytes()[:100])):
        damage(out / "predictions.npz")
        before = summary_path.stat().st_mtime_ns
        run_cell(config, "unet_tiny-bright-s0")
        assert summary_path.stat().st_mtime_ns != before
        assert read_predictions(out / "predictions.npz").keys() == predictions.keys()
        assert _read_csv(out / "per_image.csv") == per_image
    table = write_grid_table1(config)
    assert "U-Net" in table.read_text()


def _run_cli(grid: Path, cell: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", "cell", "--config", str(grid), "--cell", cell],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_killed_cell_resumes_to_the_same_metrics(tmp_path):
    cell = "unet_tiny-bright-s0"
    grid = tiny_grid(tmp_path / "a")
    grid["train"]["epochs"] = 6
    grid["datasets"]["bright"]["n_train"] = 8
    killed = write_grid(tmp_path / "a", grid)
    out = cell_dir(grid, cell)
    job = _run_cli(killed, cell)
    deadline = time.monotonic() + 240
    while not (out / "train_log.csv").exists() or len(_read_csv(out / "train_log.csv")) < 2:
        assert job.poll() is None, job.stdout.read().decode()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (out / "summary.json").exists(), "the cell finished before it could be killed"
    assert (out / CHECKPOINT).exists()
    resumed_at = len(_read_csv(out / "train_log.csv"))
    assert 2 <= resumed_at < 6
    resumed = _run_cli(killed, cell)
    printed = resumed.communicate()[0].decode()
    assert resumed.returncode == 0, printed
    redone = [int(line.split()[1].split("/")[0]) for line in printed.splitlines() if line.startswith("epoch ")]
    assert redone and redone[0] > resumed_at and redone[-1] == 6  # only the epochs the kill cut off are trained

    straight_grid = {**grid, "results_dir": str(tmp_path / "b" / "results"), "figures_dir": str(tmp_path / "b" / "figures")}
    straight = write_grid(tmp_path, straight_grid)
    assert _run_cli(straight, cell).wait() == 0
    straight_out = cell_dir(straight_grid, cell)
    assert _read_csv(out / "per_image.csv") == _read_csv(straight_out / "per_image.csv")
    losses = [row["loss"] for row in _read_csv(out / "train_log.csv")]
    assert losses == [row["loss"] for row in _read_csv(straight_out / "train_log.csv")]
    assert not (out / CHECKPOINT).exists()


def test_bad_mask_stops_the_cell_before_training(tmp_path):
    root = tmp_path / "salt"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["imgs,split"]
    for i, split in enumerate(["train", "train", "test"]):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[4:9, 4:9] = 255 if i != 1 else 128
        mask[20:22, 20:22] = 255
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        rows.append(f"im{i}.png,{split}")
    (root / "data_split.csv").write_text("\n".join(rows) + "\n")
    config = validate(tiny_grid(tmp_path, datasets={"real": {"kind": "salt", "root": str(root)}}))
    with pytest.raises(DatasetError, match="im1.png"):
        run_cell(config, "unet_tiny-real-s0")
    assert not cell_dir(config, "unet_tiny-real-s0").exists()


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_gpu_grid_without_a_gpu_stops_before_loading_anything(tmp_path, monkeypatch, device):
    """The paper's grids (allow_cpu: false) refuse to train on a CPU, naming what to check."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = validate(tiny_grid(tmp_path, device=device, allow_cpu=False))
    with pytest.raises(RuntimeError, match="no GPU|sees no GPU") as error:
        run_cell(config, "unet_tiny-bright-s0")
    assert "allow_cpu: true" in str(error.value) and "CUDA_VISIBLE_DEVICES" in str(error.value)
    assert not (tmp_path / "results" / "data").exists() and not cell_dir(config, "unet_tiny-bright-s0").exists()


def test_cpu_is_used_when_the_grid_allows_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(validate(tiny_grid(tmp_path, device="auto"))) == torch.device("cpu")
