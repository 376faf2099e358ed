"""All six baselines of Table 1 go through the engine and come out as table rows."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import baselines
from benchmark.config import validate
from benchmark.grid import expand_cells
from benchmark.engine.cell import run_cell
from benchmark.report.build import write_grid_table1
from tests.conftest import tiny_grid


@pytest.mark.slow
def test_every_baseline_trains_evaluates_and_reaches_table1(tmp_path):
    entries = [{"name": name} for name in baselines.REGISTRY]
    config = validate(tiny_grid(tmp_path, baselines=entries, train={"epochs": 1, "batch_size": 2, "augment": False}))
    for cell in expand_cells(config):
        summary = json.loads(run_cell(config, cell).read_text())
        assert summary["method"]["group"] == "baseline" and summary["metrics"]["n_images"] == 2
        assert json.loads((run_cell(config, cell).parent / "cost.json").read_text())["gflops_inference"] > 0
    table = pd.read_csv(write_grid_table1(config).with_suffix(".csv"))
    assert list(table["Model"]) == [b.label for b in baselines.REGISTRY.values()]
    assert (table["%Trainable"].str.startswith("100%")).all()
