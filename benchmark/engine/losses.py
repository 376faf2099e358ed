"""The paper's objective: focal + Dice on the mask logits, plus 0.01 x the method's regulariser."""
from __future__ import annotations

import torch
from monai.losses import DiceFocalLoss
from torch import nn

import methods


class SegmentationObjective(nn.Module):
    """Returns (total, segmentation, regulariser) so the log can show each part."""

    def __init__(self, reg_weight: float) -> None:
        super().__init__()
        self.reg_weight = reg_weight
        self.segmentation = DiceFocalLoss(sigmoid=True)

    def forward(self, model: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        seg = self.segmentation(logits, target)
        reg = methods.regularization(model)
        return seg + self.reg_weight * reg, seg, reg
