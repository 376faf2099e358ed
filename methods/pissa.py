"""PiSSA (Meng et al., NeurIPS 2024): LoRA whose factors start as W's principal singular part.

W = U S V^T; with s = lora_alpha / rank, B0 = U_r sqrt(S_r / s) and A0 = sqrt(S_r / s) V_r^T,
so s B0 A0 is the best rank-r approximation of W. PiSSA trains B, A from (B0, A0) on the frozen
residual W - s B0 A0 (huggingface/peft's init_lora_weights="pissa", exact SVD):

    W' = (W - s B0 A0) + s B A = W + s (B A - B0 A0)

The second form is what is computed: the frozen weight keeps its values and checkpoint key,
B0 and A0 are buffers rebuilt from the SVD (sign-invariant: a flipped singular pair flips a
column of B0 and a row of A0 together), and W' == W holds exactly at the start (the unmerged
output to float rounding). Forward never builds the dense update. rank * (in*kh*kw + out) parameters per layer, as LoRA.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import Method, matrix_to_weight, thin_svd, weight_matrix
from methods.lora import HPARAMS as LORA_HPARAMS
from methods.lora import LoRALayer, low_rank_apply


class PiSSALayer(LoRALayer):
    """LoRA initialised on the top-`rank` singular triplets; dropout acts on the trainable branch only."""

    def __init__(
        self,
        base: nn.Module,
        rank: int = 4,
        lora_alpha: float | None = None,
        dropout: float = 0.0,
        layer_name: str = "",
    ) -> None:
        super().__init__(base, rank, lora_alpha, dropout, layer_name)
        u, sigma, vh = thin_svd(weight_matrix(self))
        if rank > sigma.numel():
            raise ValueError(f"{self.layer_name}: {type(self).__name__[:-5]} rank {rank} exceeds "
                             f"r_max = min(out, in*kh*kw) = {sigma.numel()}")
        part = self.singular_part(sigma.numel(), rank)
        root = (sigma[part] / self.scaling).sqrt()
        self.register_buffer("A0", root[:, None] * vh[part], persistent=False)
        self.register_buffer("B0", u[:, part] * root, persistent=False)
        with torch.no_grad():
            self.lora_A.copy_(self.A0)
            self.lora_B.copy_(self.B0)

    @staticmethod
    def singular_part(r_max: int, rank: int) -> slice:
        """Which singular triplets the factors start from: the `rank` largest."""
        return slice(0, rank)

    def adapted_weight(self) -> Tensor:
        delta = self.lora_B @ self.lora_A - self.B0 @ self.A0
        return self.weight + self.scaling * matrix_to_weight(delta, self.weight.shape)

    def forward(self, x: Tensor) -> Tensor:
        trained = self.low_rank(self.dropout(x), self.lora_A, self.lora_B)
        principal = self.low_rank(x, self.A0, self.B0)
        return self.layer_forward(x, self.weight) + self.scaling * (trained - principal)


METHOD = Method(
    name="pissa",
    label="PiSSA",
    description="PiSSA: LoRA whose factors start as the top-rank singular part of W, trained on the frozen residual.",
    hparams=dict(LORA_HPARAMS),
    apply=low_rank_apply(lambda: METHOD, PiSSALayer),
)
