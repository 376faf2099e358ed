"""SVFT (Lingam et al., NeurIPS 2024, "SVFT: Parameter-Efficient Fine-Tuning with Singular Vectors").

W = U Sigma V^T once; SVFT trains a sparse r_max x r_max matrix M of coefficients on the frozen
singular vectors (their section 3):

    W' = U (Sigma + M) V^T = W + U M V^T

M starts at zero, so W' == W at the start. The sparsity pattern fixes which entries of M train:
- `plain` (SVFT^P): the diagonal only: one shift per singular value, r_max parameters per layer
  (S-SAM's beta without its alpha and ReLU);
- `banded` (SVFT^B_d): the diagonal and the `bandwidth` = d off-diagonals on each side, so u_i may
  mix with v_j for |i - j| <= d: r_max + 2 sum_{k=1..d} (r_max - k) parameters per layer.
The paper also has random and top-k patterns; they differ only in the index set.

Stored as one vector of the trained entries (`coefficients`) and a non-persistent index buffer;
U, sigma, V^T are the cached canonical SVD shared with S-SAM and SALT.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

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

PATTERNS = ("plain", "banded")


def band_indices(r_max: int, bandwidth: int) -> tuple[Tensor, Tensor]:
    """(rows, columns) of the entries of an r_max x r_max matrix with |i - j| <= bandwidth, diagonal first."""
    rows, columns = [torch.arange(r_max)], [torch.arange(r_max)]
    for offset in range(1, min(bandwidth, r_max - 1) + 1):
        upper = torch.arange(r_max - offset)
        rows += [upper, upper + offset]
        columns += [upper + offset, upper]
    return torch.cat(rows), torch.cat(columns)


class SVFTLayer(AdaptedLayer):
    """Frozen layer plus U M V^T with a sparse trainable M on its singular vectors."""

    def __init__(self, base: nn.Module, pattern: str = "plain", bandwidth: int = 0, layer_name: str = "") -> None:
        super().__init__(base, layer_name)
        if pattern not in PATTERNS:
            raise ValueError(f"{self.layer_name}: SVFT pattern must be one of {PATTERNS}, got {pattern!r}")
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth < 0:
            raise ValueError(f"{self.layer_name}: SVFT bandwidth must be a non-negative integer, got {bandwidth!r}")
        if pattern == "plain" and bandwidth:
            raise ValueError(f"{self.layer_name}: SVFT pattern 'plain' trains the diagonal only; "
                             f"use pattern: banded for bandwidth {bandwidth}")
        register_svd(self, weight_matrix(self))
        r_max = self.sigma.numel()
        rows, columns = band_indices(r_max, bandwidth)
        self.register_buffer("M_index", (rows * r_max + columns).to(self.sigma.device), persistent=False)
        self.coefficients = nn.Parameter(torch.zeros(rows.numel(), dtype=self.sigma.dtype, device=self.sigma.device))
        self.pattern, self.bandwidth = pattern, bandwidth

    def M(self) -> Tensor:
        """The sparse coefficient matrix, dense r_max x r_max (zero outside the pattern)."""
        r_max = self.sigma.numel()
        dense = self.coefficients.new_zeros(r_max * r_max).index_put((self.M_index,), self.coefficients)
        return dense.reshape(r_max, r_max)

    def adapted_weight(self) -> Tensor:
        """W + U M V^T; with the plain pattern only a row scaling of V^T, never a dense M."""
        if self.bandwidth == 0:
            delta = self.U @ (self.coefficients[:, None] * self.Vh)
        else:
            delta = self.U @ (self.M() @ self.Vh)
        return self.weight + matrix_to_weight(delta, self.weight.shape)

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, {self.pattern}, bandwidth={self.bandwidth}"


HPARAMS: dict[str, object] = {"targets": list(DEFAULT_TARGETS), "blocks": None, "pattern": "plain", "bandwidth": 0}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)

    def build(name: str, component: str, module: nn.Module) -> SVFTLayer:
        return SVFTLayer(module, hparams["pattern"], hparams["bandwidth"], layer_name=name)

    return adapt(model, components, hparams["targets"], build, hparams["blocks"])


METHOD = Method(
    name="svft",
    label="SVFT",
    description="SVFT: W + U M V^T on the frozen singular vectors, M sparse (plain: diagonal; banded: bandwidth d).",
    hparams=HPARAMS,
    apply=apply,
)
