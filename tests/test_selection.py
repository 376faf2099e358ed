"""Model selection: the epoch with the best validation Dice is the one restored, also across a
resume; a grid that selects on validation refuses data without validation images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from benchmark.config import validate
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import read_salt_layout
from benchmark.data.synthetic import write_dataset
from benchmark.engine.cell import run_cell
from benchmark.engine.train import train, trainable_state
from benchmark.errors import DatasetError
from tests.conftest import tiny_grid

CFG = {"epochs": 3, "batch_size": 2, "lr": 1e-2, "weight_decay": 0.0, "lr_step_epochs": 1, "lr_gamma": 0.5,
       "reg_weight": 0.0, "precision": "fp32", "workers": 0}


@pytest.fixture
def train_set(tmp_path: Path) -> VesselDataset:
    root = write_dataset(tmp_path / "synth", "bright_speckle", n_train=4, n_test=1, size=32, seed=0)
    return VesselDataset([p for p in read_salt_layout(root) if p.split == "train"], 32)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 1, 3, padding=1)


def _scores(values: list[float]):
    calls = iter(values)
    return lambda model: next(calls)


def test_best_validation_epoch_is_restored(tmp_path, train_set):
    reference = _model()
    train(reference, train_set, {**CFG, "epochs": 2}, tmp_path / "ref", 0, torch.device("cpu"), "f")
    model = _model()
    log, _, best = train(model, train_set, CFG, tmp_path / "sel", 0, torch.device("cpu"), "f", _scores([0.1, 0.9, 0.5]))
    assert (best.epoch, best.val_dice) == (2, 0.9)
    assert [row["val_dice"] for row in log] == [0.1, 0.9, 0.5]
    for name, tensor in trainable_state(model).items():
        torch.testing.assert_close(tensor, trainable_state(reference)[name], rtol=0, atol=0)


def test_best_epoch_survives_a_resume(tmp_path, train_set):
    reference = _model()
    train(reference, train_set, {**CFG, "epochs": 1}, tmp_path / "ref", 0, torch.device("cpu"), "f")
    model = _model()
    train(model, train_set, {**CFG, "epochs": 2}, tmp_path / "sel", 0, torch.device("cpu"), "f", _scores([0.8, 0.3]))
    resumed = _model()
    _, _, best = train(resumed, train_set, CFG, tmp_path / "sel", 0, torch.device("cpu"), "f", _scores([0.2]))
    assert (best.epoch, best.val_dice) == (1, 0.8)
    for name, tensor in trainable_state(resumed).items():
        torch.testing.assert_close(tensor, trainable_state(reference)[name], rtol=0, atol=0)


def test_cell_reports_selected_epoch_and_native_metrics(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["train"].update(metrics_resolution="native")
    config = validate(grid)
    assert config["datasets"]["bright"]["n_val"] == 1
    summary = json.loads(run_cell(config, "unet_tiny-bright-s0").read_text())
    trained = summary["trained"]
    assert trained["n_images"] == {"train": 4, "val": 1, "test": 2}
    assert trained["selected_epoch"] in (1, 2) and "best mean validation Dice" in trained["selection"]
    assert summary["conventions"]["resolution"].startswith("native image resolution")
    assert (Path(config["results_dir"]) / "cache" / "data").is_dir()


def test_selection_last_is_the_papers_protocol(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["train"].update(selection="last")
    config = validate(grid)
    assert config["datasets"]["bright"]["n_val"] == 0
    summary = json.loads(run_cell(config, "unet_tiny-bright-s0").read_text())
    assert summary["trained"]["selected_epoch"] == 2 and summary["trained"]["val_dice"] is None
    assert "paper's protocol" in summary["trained"]["selection"]


def test_validation_selection_without_val_images_fails_before_training(tmp_path):
    root = tmp_path / "salt"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["imgs,split"]
    for i, split in enumerate(["train", "train", "test"]):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"im{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[4:9, 4:9] = 255
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        rows.append(f"im{i}.png,{split}")
    (root / "data_split.csv").write_text("\n".join(rows) + "\n")
    config = validate(tiny_grid(tmp_path, datasets={"real": {"kind": "salt", "root": str(root)}}))
    with pytest.raises(DatasetError, match="no validation images.*selection: last"):
        run_cell(config, "unet_tiny-real-s0")
