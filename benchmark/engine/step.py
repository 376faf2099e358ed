"""The training step: forward under the cell's precision, the objective, backward, and the optimizer
and loss-scaler step. Cells (engine.train), `saltbench bench` and `saltbench plan` all run this one
step, so a change to how a step computes is made once and timed where it runs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from benchmark.engine.losses import SegmentationObjective
from benchmark.engine.precision import autocast, grad_scaler


@dataclass
class TrainStep:
    """One optimizer step of `model` per call. `optimizer` is None for a model with nothing
    trainable, whose step is its forward and objective (what a zero-shot row costs to score)."""

    model: nn.Module
    objective: SegmentationObjective
    optimizer: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    precision: str
    device: torch.device

    def __call__(self, image: Tensor, mask: Tensor, prompt: dict[str, Tensor] | None = None) -> Tensor:
        """Step on one batch (with its box or point prompts, benchmark.data.prompts, for a row that
        has them); the detached (total, segmentation, regulariser) losses."""
        with autocast(self.precision, self.device):
            logits = self.model(image) if prompt is None else self.model(image, prompt)
            loss, seg, reg = self.objective(self.model, logits.float(), mask)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return torch.stack([loss.detach(), seg.detach(), reg.detach()])


def make_step(model: nn.Module, train_cfg: dict, device: torch.device) -> TrainStep:
    """The step a cell with settings `train_cfg` (a grid's validated `train`) takes: AdamW over the
    trainable parameters at the cell's lr and weight decay, the paper's objective with its
    regulariser weight, and the cell's precision."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"]) if params else None
    return TrainStep(model, SegmentationObjective(train_cfg["reg_weight"]), optimizer,
                     grad_scaler(train_cfg["precision"], device), train_cfg["precision"], device)
