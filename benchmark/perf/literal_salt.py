"""SALT with eq. 4 rebuilt literally, as the official code does: the speed benches time it beside
saltbench's SALT layer, which builds the same weight without the dense r_max x r_max core."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from methods.base import matrix_to_weight
from methods.salt import SALTLayer


class DirectSALTLayer(SALTLayer):
    """SALT rebuilding eq. 4 literally: a dense r_max x r_max Sigma', then U @ ReLU(Sigma') @ V^T."""

    def adapted_weight(self) -> Tensor:
        r, r_max = self.r, self.sigma.numel()
        sigma_new = self.sigma.new_zeros(r_max, r_max)
        sigma_new[:r, :r] = torch.diag(self.adapted_top_values())
        sigma_new[r:, r:] = torch.diag(self.sigma[r:]) + self.X @ self.Y
        return matrix_to_weight(self.U @ F.relu(sigma_new) @ self.Vh, self.weight.shape)
