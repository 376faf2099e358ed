"""SALT (paper section 2.2, eq. 2-5): scale/shift the top-r singular values, low-rank-update the rest.

W = U Sigma V^T once (eq. 2). The top r singular values get alpha, beta (eq. 3); the remaining
r' = r_max - r get a dense r' x r' core diag(sigma_r') + X Y. ReLU acts element-wise on the whole
core (eq. 4), so with the off-diagonal blocks being zero:

    W' = U_r diag(ReLU(alpha * sigma_r + beta)) V_r^T + U_r' ReLU(diag(sigma_r') + X Y) V_r'^T

Only the r' x r' block is ever dense; the top block stays a vector. `sv_energy` chooses r per
layer as the smallest count of top singular values keeping that fraction of sum sigma^2.
Regulariser (eq. 5):
||alpha * sigma_r + beta - sigma_r||_F + ||X Y||_F. Parameters per layer: 2 r + 2 r' d_lora.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.base import (
    DEFAULT_TARGETS,
    AdaptedLayer,
    Method,
    adapt,
    component_overrides,
    matrix_to_weight,
    register_svd,
    resolve_hparams,
    weight_matrix,
)

INITS = ("paper", "identity")
INIT_STD = 0.01


def top_rank(sv_rank: int | float, r_max: int, layer_name: str) -> int:
    """r from sv_rank: an int is a count in [0, r_max]; a float in (0, 1] a fraction of r_max,
    rounded half up. (So 1 means one singular value and 1.0 means all of them.)"""
    if isinstance(sv_rank, bool) or not isinstance(sv_rank, (int, float)):
        raise ValueError(f"{layer_name}: sv_rank must be an int or a float fraction, got {sv_rank!r}")
    if isinstance(sv_rank, float):
        if not 0.0 < sv_rank <= 1.0:
            raise ValueError(
                f"{layer_name}: fractional sv_rank must be in (0, 1], got {sv_rank!r} (r_max = {r_max}; "
                "write an int to give a count)"
            )
        return math.floor(sv_rank * r_max + 0.5)
    if not 0 <= sv_rank <= r_max:
        raise ValueError(f"{layer_name}: sv_rank {sv_rank} is outside [0, r_max = {r_max}]")
    return sv_rank


def energy_rank(sigma: Tensor, energy: float, layer_name: str) -> int:
    """The smallest r whose top singular values keep `energy` of the spectral energy:
    sum_{i<r} sigma_i^2 >= energy * sum_i sigma_i^2 (the paper's future work: a rank per layer
    from its own spectrum instead of one sv_rank for all)."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0.0 < energy <= 1.0:
        raise ValueError(f"{layer_name}: sv_energy must be a fraction in (0, 1], got {energy!r}")
    squares = sigma.detach().to(torch.float64) ** 2
    kept = torch.cumsum(squares, 0) / squares.sum()
    return min(int(torch.searchsorted(kept, torch.tensor(energy * (1 - 1e-12), dtype=torch.float64))) + 1, sigma.numel())


class SALTLayer(AdaptedLayer):
    """SALT on one frozen Linear/Conv2d; U, sigma, Vh are buffers from one float64 SVD at wrap time.

    Initialisation, init="paper" follows the official code (the SALTLinear/SALTConv2d of
    SALT_layers_please_work.py that its image_encoder.py imports): alpha = 1, beta = 0, and both
    X and Y drawn from N(0, 0.01^2). XY is then small but not zero, and the ReLU clips its
    negative off-diagonal entries, so W' differs slightly from W at step 0. The official layer
    also calls torch.manual_seed(42) in its constructor; this one leaves the global RNG to the
    caller's seed. init="identity": X from N(0, 0.01^2), Y = 0, so W' == W at step 0 (as LoRA).

    Edge cases: r == r_max leaves no X/Y (pure scale/shift, S-SAM on all values); r == 0 leaves
    no alpha/beta (pure low-rank core). d_lora (rank) may exceed r': X Y is then a full-rank,
    over-parameterised r' x r' block, still 2 r' d_lora parameters. The official code allows it
    and the paper's Fig. 4a uses it (SALT rank 700 with LoRA rank 256 on 768-wide layers, r' = 68).
    """

    regulariser = "||alpha * sigma_r + beta - sigma_r|| + ||X Y|| (eq. 5)"

    def __init__(
        self,
        base: nn.Module,
        rank: int = 4,
        sv_rank: int | float = 0.5,
        init: str = "paper",
        layer_name: str = "",
        sv_energy: float | None = None,
    ) -> None:
        super().__init__(base, layer_name)
        if init not in INITS:
            raise ValueError(f"{self.layer_name}: SALT init must be one of {INITS}, got {init!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"{self.layer_name}: SALT rank (d_lora) must be a positive integer, got {rank!r}")
        register_svd(self, weight_matrix(self))
        r_max = self.sigma.numel()
        r = top_rank(sv_rank, r_max, self.layer_name) if sv_energy is None else energy_rank(
            self.sigma, sv_energy, self.layer_name)
        rest = r_max - r
        self.r = r
        self.d_lora = rank if rest else 0
        factory = {"dtype": self.sigma.dtype, "device": self.sigma.device}
        self.register_parameter("alpha", nn.Parameter(torch.ones(r, **factory)) if r else None)
        self.register_parameter("beta", nn.Parameter(torch.zeros(r, **factory)) if r else None)
        x = y = None
        if rest:
            x = nn.Parameter(torch.randn(rest, rank, **factory) * INIT_STD)
            y_init = torch.randn(rank, rest, **factory) * INIT_STD if init == "paper" else torch.zeros(rank, rest, **factory)
            y = nn.Parameter(y_init)
        self.register_parameter("X", x)
        self.register_parameter("Y", y)

    def adapted_top_values(self) -> Tensor:
        """Eq. 3: alpha * sigma_r + beta, before the ReLU."""
        return self.alpha * self.sigma[: self.r] + self.beta

    def core(self) -> Tensor:
        """The dense r' x r' block diag(sigma_r') + X Y, before the ReLU."""
        core = self.X @ self.Y
        core.diagonal().add_(self.sigma[self.r :])
        return core

    def adapted_weight(self) -> Tensor:
        """Eq. 4 in one out x r_max x in product.

        The diagonal top block only scales rows of V_r^T (or columns of U_r); the dense ReLU(core)
        multiplies whichever of V_r'^T, U_r' is smaller, so the rebuild costs
        out * in * r_max + r'^2 * min(out, in), against out * r_max * (r_max + in) for a
        literal U ReLU(Sigma') V^T.
        """
        r = self.r
        out_dim, in_dim = self.matrix_shape
        top = None if self.alpha is None else F.relu(self.adapted_top_values())
        core = None if self.X is None else F.relu(self.core())
        if in_dim <= out_dim:
            rows = [] if top is None else [top[:, None] * self.Vh[:r]]
            rows += [] if core is None else [core @ self.Vh[r:]]
            matrix = self.U @ (rows[0] if len(rows) == 1 else torch.cat(rows))
        else:
            columns = [] if top is None else [self.U[:, :r] * top]
            columns += [] if core is None else [self.U[:, r:] @ core]
            matrix = (columns[0] if len(columns) == 1 else torch.cat(columns, dim=1)) @ self.Vh
        return matrix_to_weight(matrix, self.weight.shape)

    def regularization(self) -> Tensor:
        penalty = self.weight.new_zeros(())
        if self.alpha is not None:
            penalty = penalty + torch.linalg.vector_norm(self.adapted_top_values() - self.sigma[: self.r])
        if self.X is not None:
            penalty = penalty + torch.linalg.vector_norm(self.X @ self.Y)
        return penalty

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        rest = self.sigma.numel() - self.r
        return f"{self.layer_name}: {out_dim}x{in_dim}, r={self.r}, r'={rest}, d_lora={self.d_lora}"


HPARAMS: dict[str, object] = {
    "targets": list(DEFAULT_TARGETS),
    "blocks": None,
    "rank": 4,
    "sv_rank": 0.5,
    "init": "paper",
    "ranks": {},
    "sv_ranks": {},
    "sv_energy": None,
}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    """`rank` is d_lora, `sv_rank` the top-r count or fraction; `ranks` / `sv_ranks` override per
    component; `sv_energy` instead chooses each layer's r from its spectrum."""
    hparams = resolve_hparams(METHOD, spec)
    ranks = component_overrides(hparams, "ranks")
    sv_ranks = component_overrides(hparams, "sv_ranks")
    if hparams["sv_energy"] is not None and ("sv_rank" in spec or sv_ranks):
        raise ValueError("salt: give sv_energy (a rank per layer from its spectrum) or sv_rank / sv_ranks, not both")

    def build(name: str, component: str, module: nn.Module) -> SALTLayer:
        return SALTLayer(
            module,
            rank=ranks.get(component, hparams["rank"]),
            sv_rank=sv_ranks.get(component, hparams["sv_rank"]),
            init=hparams["init"],
            layer_name=name,
            sv_energy=hparams["sv_energy"],
        )

    return adapt(model, components, hparams["targets"], build, hparams["blocks"])


METHOD = Method(
    name="salt",
    label="SALT",
    description="SALT: scale/shift of the top-r singular values plus a low-rank X Y update of the rest (eq. 2-5).",
    hparams=HPARAMS,
    apply=apply,
)
