"""S-SAM (Paranjape et al., MICCAI 2024): train a scale and a shift for every singular value.

W = U diag(sigma) V^T once; W' = U diag(ReLU(alpha * sigma + beta)) V^T, 2 * min(out, in)
parameters per layer. Two regularisers (`reg`):

- official (default): ||1 - alpha||_2 + ||beta||_2, as the official S-SAM layer of the SALT code
  (prompt_adapted_segment_anything/modeling/svd_layers.py:52). Its gradient on alpha does not
  grow with sigma.
- eq5: ||alpha * sigma + beta - sigma||_2, the scale/shift half of SALT's eq. 5. Its gradient on
  each alpha_i is reg_weight x sigma_i in the direction of the change, however small the change;
  over a whole run at reg_weight 0.01 it holds alpha near 1 (docs/official_protocol.md).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.base import (
    DEFAULT_TARGETS,
    AdaptedLayer,
    Method,
    adapt,
    matrix_to_weight,
    register_svd,
    resolve_hparams,
    weight_matrix,
)


REGULARISERS = {
    "official": "||1 - alpha|| + ||beta|| (official S-SAM layer)",
    "eq5": "||alpha * sigma + beta - sigma|| (eq. 5, scale/shift term)",
}


class SVDLayer(AdaptedLayer):
    """Scale/shift of all singular values. U, sigma, Vh are buffers from one SVD at wrap time."""

    def __init__(self, base: nn.Module, layer_name: str = "", reg: str = "official") -> None:
        super().__init__(base, layer_name)
        if reg not in REGULARISERS:
            raise ValueError(f"{self.layer_name}: S-SAM reg must be one of {sorted(REGULARISERS)}, got {reg!r}")
        self.reg = reg
        self.regulariser = REGULARISERS[reg]
        register_svd(self, weight_matrix(self))
        self.alpha = nn.Parameter(torch.ones_like(self.sigma))
        self.beta = nn.Parameter(torch.zeros_like(self.sigma))

    def adapted_singular_values(self) -> Tensor:
        """alpha * sigma + beta, before the ReLU."""
        return self.alpha * self.sigma + self.beta

    def adapted_weight(self) -> Tensor:
        """The diagonal scales U's columns (or V^T's rows, whichever is smaller): one out x r_max x in product."""
        values = F.relu(self.adapted_singular_values())
        out_dim, in_dim = self.matrix_shape
        matrix = self.U @ (values[:, None] * self.Vh) if in_dim <= out_dim else (self.U * values) @ self.Vh
        return matrix_to_weight(matrix, self.weight.shape)

    def regularization(self) -> Tensor:
        if self.reg == "official":
            return torch.linalg.vector_norm(1 - self.alpha) + torch.linalg.vector_norm(self.beta)
        return torch.linalg.vector_norm(self.adapted_singular_values() - self.sigma)

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, r_max={self.sigma.numel()}"


HPARAMS: dict[str, object] = {"targets": list(DEFAULT_TARGETS), "blocks": None, "reg": "official"}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    """`reg` chooses the regulariser: official (the S-SAM code's) or eq5 (SALT's scale/shift term)."""
    hparams = resolve_hparams(METHOD, spec)
    return adapt(model, components, hparams["targets"],
                 lambda name, _component, module: SVDLayer(module, name, reg=hparams["reg"]), hparams["blocks"])


METHOD = Method(
    name="svd",
    label="S-SAM",
    description="S-SAM: trainable scale and shift of every singular value of each targeted weight.",
    hparams=HPARAMS,
    apply=apply,
)
