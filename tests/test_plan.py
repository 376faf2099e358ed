"""saltbench plan: projections from a few real steps, checked against the cells' measured times;
the grid's total on K devices; the batch size that fits a GPU's memory."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.config import validate
from benchmark.perf import plan as planner
from benchmark.cost.measure import ACCELERATOR_KIND
from benchmark.engine.cell import run_cell
from benchmark.grid import all_cells, expand_cells
from tests.conftest import tiny_grid

# the stated trust of a projection on this shared 2-core host: training seconds per epoch within 3x
FACTOR = 3.0


@pytest.mark.slow  # it compares two timings taken minutes apart: on a shared host their ratio moves with the load
def test_projection_matches_the_cells_measured_training_time(tmp_path):
    grid = tiny_grid(tmp_path, datasets={
        "bright": {"kind": "synthetic", "modality": "bright_speckle", "n_train": 12, "n_test": 2, "size": 64, "seed": 0}})
    grid["baselines"] = [{"id": "unet_small", "name": "unet", "channels": [16, 32, 64], "num_res_units": 2}]
    grid["train"].update(augment=False, epochs=2)
    config = validate(grid)
    projections, measured = planner.plan(config, torch.device("cpu"), warmup=1, steps=3)
    assert [p.cell for p in projections] == list(expand_cells(config)) and len(measured) == 1
    projection = projections[0]
    assert (projection.images["train"], projection.images["test"]) == (12, 2)
    measured_cell = json.loads(run_cell(config, projection.cell).read_text())["measured"]
    ratio = projection.seconds_per_epoch / measured_cell["seconds_per_epoch_median"]
    print(f"projected {projection.seconds_per_epoch:.3f} s/epoch, measured {measured_cell['seconds_per_epoch_median']:.3f}: "
          f"ratio {ratio:.2f}")
    assert 1 / FACTOR < ratio < FACTOR


def _measured(step_s: float, peak: float = 100.0, trains: bool = True) -> planner.Measured:
    return planner.Measured(step_s, step_s / 4, peak, ACCELERATOR_KIND, 2.0, trains)


def test_projection_scales_steps_by_image_counts(tiny):
    config = validate({**tiny, "train": {**tiny["train"], "selection": "validation", "epochs": 3, "batch_size": 2}})
    cell = next(iter(expand_cells(config).values()))
    images = {"train": 10, "val": 4, "test": 6}
    projection = planner.project(cell, config, _measured(0.5), images)
    assert projection.seconds_per_epoch == pytest.approx(10 / 2 * 0.5)
    # build + 3 x (train + validation forward) + test forward
    assert projection.total_s == pytest.approx(2.0 + 3 * (2.5 + 4 / 2 * 0.125) + 6 / 2 * 0.125)
    frozen = planner.project(cell, config, _measured(0.5, trains=False), images)
    assert frozen.seconds_per_epoch == 0.0 and frozen.total_s == pytest.approx(2.0 + 3 * 0.125)


def test_grid_total_on_k_devices_puts_the_longest_cells_first():
    assert planner.makespan([5.0, 4.0, 3.0, 3.0, 3.0], 1) == 18.0
    assert planner.makespan([5.0, 4.0, 3.0, 3.0, 3.0], 2) == 10.0  # {5, 3} and {4, 3, 3}
    assert planner.makespan([5.0], 4) == 5.0


def test_fitting_batch_from_peaks_linear_in_the_batch():
    # 1000 MB fixed + 500 MB per image: 8000 MB fits batch 14
    assert planner.fitting_batch({1: 1500.0, 2: 2000.0, 5: 3500.0}, 8000.0) == 14
    assert planner.fitting_batch({1: 9000.0, 2: 9500.0}, 8000.0) == 0


def test_cells_over_the_gpu_memory_are_named_with_a_batch_that_fits(tiny, monkeypatch):
    config = validate({**tiny, "seeds": [0, 1], "train": {**tiny["train"], "batch_size": 5}})
    cells = expand_cells(config)
    key = planner.setup_key(next(iter(cells.values())), config)
    monkeypatch.setattr(planner, "measure", lambda cell, config, device, batch, warmup, steps:
                        _measured(0.1, peak=1000.0 + 500.0 * batch))
    warnings = planner.over_memory(config, cells, {key: _measured(0.1, peak=3500.0)}, 3000.0,
                                   torch.device("cpu"), 1, 1)
    assert len(warnings) == 1
    assert "unet_tiny-bright-s0, unet_tiny-bright-s1" in warnings[0] and "train.batch_size 4 would fit" in warnings[0]
    assert planner.over_memory(config, cells, {key: _measured(0.1, peak=2900.0)}, 3000.0, torch.device("cpu"), 1, 1) == []


def test_a_tuned_grid_projects_its_trials_and_table_cells_apart(tiny):
    tuned = {**tiny, "tune": {"lr": [1.0e-3, 1.0e-2], "rows": "all"},
             "datasets": {"bright": {**tiny["datasets"]["bright"], "n_val": 2}}}
    config = validate(tuned)
    cells = all_cells(config)
    images = {"train": 4, "val": 2, "test": 2}
    projections = [planner.project(cell, config, _measured(0.5), images) for cell in cells.values()]
    roles = [p.role for p in projections]
    assert roles == ["trial", "trial", "reuses a trial"], "a table cell takes the trial with its settings: no cost"
    assert projections[-1].total_s == 0.0 and projections[0].total_s > 0.0
    text = planner.to_markdown(projections, {"k": _measured(0.5)}, 1, "cpu")
    assert "Of which tuning trials: 2 cells" in text and "table cells: 1" in text and "(1 reuse the trial" in text
    screened = validate({**tuned, "tune": {**tuned["tune"], "epochs": 1}})
    table = planner.project(next(iter(expand_cells(screened).values())), screened, _measured(0.5), images)
    trial = planner.project(next(iter(all_cells(screened).values())), screened, _measured(0.5), images)
    assert table.role == "table" and table.total_s > trial.total_s, "screening trials are shorter than the table cell"


def test_the_cheapest_fitting_setting_is_named_from_measurements(tiny, monkeypatch):
    """Of the settings that keep the batch and fit, the fastest measured; checkpointing costs time."""
    config = validate({**tiny, "train": {**tiny["train"], "batch_size": 4}})
    cells = expand_cells(config)
    key = planner.setup_key(next(iter(cells.values())), config)
    needs = {(False, 1): 5000.0, (True, 1): 2500.0, (False, 2): 2900.0, (False, 4): 1800.0}
    seconds = {(False, 1): 1.0, (True, 1): 1.3, (False, 2): 1.1, (False, 4): 1.4}

    def measure(cell, config, device, batch, warmup, steps):
        train = config["train"]
        setting = (train["activation_checkpointing"], train["grad_accumulation"])
        need = needs.get(setting, 1500.0)
        return _measured(seconds.get(setting, 1.6), peak=need)

    monkeypatch.setattr(planner, "measure", measure)
    [warning] = planner.over_memory(config, cells, {key: _measured(1.0, peak=5000.0)}, 3000.0, torch.device("cpu"), 1, 1)
    assert "cheapest setting that fits: train.grad_accumulation: 2 (2,900 MB, step 1.10 x" in warning
    [warning] = planner.over_memory(config, cells, {key: _measured(1.0, peak=5000.0)}, 2600.0, torch.device("cpu"), 1, 1)
    assert "cheapest setting that fits: train.activation_checkpointing: true (2,500 MB, step 1.30 x" in warning


def test_gpu_memory_sizes_are_read_or_refused():
    assert planner.parse_memory("24GB") == planner.parse_memory("24 GiB") == 24 * 1024
    assert planner.parse_memory("16000MB") == 16000
    with pytest.raises(ValueError, match="not a size like 24GB"):
        planner.parse_memory("lots")


def test_plan_advice_on_a_tiny_grid_measured_on_the_cpu(tmp_path):
    """Measured, not assumed: a U-Net (no encoder blocks to checkpoint) over a memory limit between its
    full-batch step and its micro-batched one is told to accumulate, and that setting does fit."""
    grid = tiny_grid(tmp_path, train={"epochs": 1, "batch_size": 4, "lr": 1e-3, "augment": False})
    config = validate(grid)
    cells = expand_cells(config)
    cell = next(iter(cells.values()))
    full = planner.measure(cell, config, torch.device("cpu"), 4, 1, 1)
    micro = planner.measure(cell, {**config, "train": {**config["train"], "grad_accumulation": 4}},
                            torch.device("cpu"), 4, 1, 1)
    assert micro.needed_mb < full.needed_mb, "a quarter of the batch at a time holds fewer activations"
    limit = (full.needed_mb + micro.needed_mb) / 2
    [warning] = planner.over_memory(config, cells, {planner.setup_key(cell, config): full}, limit,
                                    torch.device("cpu"), 1, 1)
    assert "cheapest setting that fits: train.grad_accumulation: " in warning, warning
    assert "activation_checkpointing: true: " in warning, "checkpointing was measured too (and saved nothing here)"
