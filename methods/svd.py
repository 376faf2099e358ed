"""S-SAM (Paranjape et al., MICCAI 2024): train a scale and a shift for every singular value.

W = U diag(sigma) V^T once; W' = U diag(ReLU(alpha * sigma + beta)) V^T, 2 * min(out, in)
parameters per layer. The regulariser is ||alpha * sigma + beta - sigma||_F, the scale/shift
half of SALT's eq. 5, so that SVD and SALT runs are penalised alike. (The official S-SAM layer
penalises ||1 - alpha|| + ||beta|| instead, which ignores how large each singular value is.)
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


class SVDLayer(AdaptedLayer):
    """Scale/shift of all singular values. U, sigma, Vh are buffers from one SVD at wrap time."""

    def __init__(self, base: nn.Module, layer_name: str = "") -> None:
        super().__init__(base, layer_name)
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
        return torch.linalg.vector_norm(self.adapted_singular_values() - self.sigma)

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, r_max={self.sigma.numel()}"


HPARAMS: dict[str, object] = {"targets": list(DEFAULT_TARGETS)}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    return adapt(model, components, hparams["targets"], lambda name, _component, module: SVDLayer(module, name))


METHOD = Method(
    name="svd",
    label="S-SAM",
    description="S-SAM: trainable scale and shift of every singular value of each targeted weight.",
    hparams=HPARAMS,
    apply=apply,
)
