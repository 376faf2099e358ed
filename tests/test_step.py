"""One training step: cells, `saltbench bench` and `saltbench plan` all run engine.step's TrainStep,
built from the grid's own train settings, so what the bench and the planner time is the step cells take."""
from __future__ import annotations

import torch

from benchmark.config import validate
from benchmark.engine import step as step_module
from benchmark.engine.cell import run_cell
from benchmark.engine.step import make_step
from benchmark.grid import expand_cells
from benchmark.perf import plan as planner
from benchmark.perf.bench import train_speed
from benchmark.models.cell_model import build_cell_model
from tests.conftest import tiny_grid


class Calls:
    """Counts TrainStep calls and remembers each step's settings."""

    def __init__(self, monkeypatch) -> None:
        self.seen: list[tuple[str, float, float]] = []
        original = step_module.TrainStep.__call__

        def counted(step, image, mask, prompt=None):
            lr = step.optimizer.param_groups[0]["lr"] if step.optimizer is not None else None
            self.seen.append((step.precision, lr, step.objective.reg_weight))
            return original(step, image, mask, prompt)

        monkeypatch.setattr(step_module.TrainStep, "__call__", counted)


def test_a_cell_the_bench_and_the_planner_take_the_same_step(tmp_path, monkeypatch):
    config = validate(tiny_grid(tmp_path, train={"epochs": 2, "batch_size": 2, "lr": 2.5e-3, "reg_weight": 0.02,
                                                  "lr_step_epochs": 5, "augment": False}))
    calls = Calls(monkeypatch)
    cell = next(iter(expand_cells(config).values()))
    run_cell(config, cell.id)
    assert len(calls.seen) == 2 * 2, "4 training images in batches of 2, for 2 epochs"
    assert set(calls.seen) == {("fp32", 2.5e-3, 0.02)}, "the cell's own lr, regulariser weight and precision"

    calls.seen.clear()
    model = build_cell_model(cell, config).model
    train_speed(model, config["train"], config["input_size"], 2, torch.device("cpu"), warmup=1, steps=2)
    assert calls.seen == [("fp32", 2.5e-3, 0.02)] * 3, "the bench times the cell's step: 1 warm-up + 2 timed"

    calls.seen.clear()
    planner.measure(cell, config, torch.device("cpu"), batch=2, warmup=1, steps=3)
    assert calls.seen == [("fp32", 2.5e-3, 0.02)] * 4, "the planner too"


def test_a_model_with_nothing_trainable_steps_through_forward_and_objective_only():
    model = torch.nn.Conv2d(3, 1, 1).requires_grad_(False)
    train_cfg = {"lr": 1e-3, "weight_decay": 0.0, "reg_weight": 0.0, "precision": "fp32"}
    step = make_step(model, train_cfg, torch.device("cpu"))
    before = model.weight.detach().clone()
    losses = step(torch.rand(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float())
    assert step.optimizer is None and losses.shape == (3,) and torch.equal(model.weight, before)


def test_a_step_updates_exactly_what_adamw_would():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 1)
    reference = torch.nn.Conv2d(3, 1, 1)
    reference.load_state_dict(model.state_dict())
    train_cfg = {"lr": 1e-2, "weight_decay": 0.01, "reg_weight": 0.0, "precision": "fp32"}
    image, mask = torch.rand(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    make_step(model, train_cfg, torch.device("cpu"))(image, mask)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.01)
    seg = step_module.SegmentationObjective(0.0)(reference, reference(image).float(), mask)[0]
    seg.backward()
    optimizer.step()
    assert torch.allclose(model.weight, reference.weight) and torch.allclose(model.bias, reference.bias)
