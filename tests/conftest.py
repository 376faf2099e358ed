"""Shared fixtures: tiny grid configs that run in seconds on a CPU, and no hub access."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path_factory, monkeypatch):
    """Every test starts without remembered check verdicts (benchmark/check_cache.py), so that no
    test passes because another one, or the user's own runs, checked the same entries before."""
    monkeypatch.setenv("SALTBENCH_CACHE", str(tmp_path_factory.mktemp("saltbench-cache")))


def tiny_grid(tmp_path: Path, **overrides) -> dict:
    """A small synthetic grid: 64 px, a tiny U-Net, results under tmp_path."""
    grid = {
        "name": "tiny",
        "results_dir": str(tmp_path / "results"),
        "figures_dir": str(tmp_path / "figures"),
        "device": "cpu",
        "input_size": 64,
        "seeds": [0],
        "datasets": {
            "bright": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 4, "n_test": 2, "size": 64, "seed": 0},
        },
        "baselines": [{"id": "unet_tiny", "name": "unet", "channels": [8, 16, 32], "num_res_units": 1}],
        "train": {"epochs": 2, "batch_size": 2, "lr": 1e-3, "lr_step_epochs": 1, "augment": True},
    }
    grid.update(overrides)
    return grid


def write_grid(tmp_path: Path, grid: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> dict:
    return tiny_grid(tmp_path)
