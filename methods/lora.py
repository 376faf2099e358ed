"""LoRA (Hu et al., ICLR 2022): W' = W + (lora_alpha / rank) * B A.

A (rank x in) starts kaiming-uniform(a=sqrt(5)) and B (out x rank) at zero, as in
huggingface/peft, so W' == W at the start; outputs match peft's LoRA on the same values. Forward
never builds the dense update: for a Linear it runs x -> A -> B; for a Conv2d, a conv with A
reshaped to (rank, in, kh, kw) (same stride, padding, dilation) followed by a 1x1 conv with B.
rank * (in*kh*kw + out) parameters per layer.

SAM's fused qkv projection (one Linear, in -> 3 * in) is adapted as one matrix with one A and
one B, as the SALT paper's LoRA baseline does, not as separate q and v adapters (SAMed-style);
so the update of q, k and v shares one rank-r subspace of the input.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.base import (
    DEFAULT_TARGETS,
    ApplyFn,
    AdaptedLayer,
    Method,
    adapt,
    component_overrides,
    matrix_to_weight,
    resolve_hparams,
)


class LoRALayer(AdaptedLayer):
    """Frozen layer plus a scaled low-rank branch; dropout acts on the branch input only."""

    def __init__(
        self,
        base: nn.Module,
        rank: int = 4,
        lora_alpha: float | None = None,
        dropout: float = 0.0,
        layer_name: str = "",
    ) -> None:
        super().__init__(base, layer_name)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"{self.layer_name}: LoRA rank must be a positive integer, got {rank!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.layer_name}: LoRA dropout must be in [0, 1), got {dropout!r}")
        alpha = rank if lora_alpha is None else lora_alpha
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
            raise ValueError(f"{self.layer_name}: lora_alpha must be a positive number, got {lora_alpha!r}")
        out_dim, in_dim = self.matrix_shape
        factory = {"dtype": self.weight.dtype, "device": self.weight.device}
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_dim, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(out_dim, rank, **factory))
        self.dropout = nn.Dropout(dropout)

    def adapted_weight(self) -> Tensor:
        delta = matrix_to_weight(self.lora_B @ self.lora_A, self.weight.shape)
        return self.weight + self.scaling * delta

    def forward(self, x: Tensor) -> Tensor:
        frozen = self.layer_forward(x, self.weight)
        return frozen + self.scaling * self.low_rank(self.dropout(x), self.lora_A, self.lora_B)

    def low_rank(self, x: Tensor, down: Tensor, up: Tensor) -> Tensor:
        """x through `down` (rank x in*kh*kw) then `up` (out x rank) with the base layer's geometry,
        never building the dense out x in product."""
        if self.conv_args is None:
            return F.linear(F.linear(x, down), up)
        kernel = down.reshape(down.shape[0], *self.weight.shape[1:])
        return F.conv2d(F.conv2d(x, kernel, None, **self.conv_args), up[:, :, None, None])

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, rank={self.rank}, scaling={self.scaling:g}"


HPARAMS: dict[str, object] = {
    "targets": list(DEFAULT_TARGETS),
    "blocks": None,
    "rank": 4,
    "lora_alpha": None,
    "dropout": 0.0,
    "ranks": {},
}


def low_rank_apply(method: Callable[[], Method], layer_class: type[AdaptedLayer]) -> ApplyFn:
    """The apply of every LoRA-shaped method (lora, pissa): a rank per component, lora_alpha, dropout.

    lora_alpha None means "equal to each layer's rank" (scaling 1), also under `ranks` overrides.
    `method` is called at apply time, so a module can pass `lambda: METHOD` before defining it.
    """

    def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
        hparams = resolve_hparams(method(), spec)
        ranks = component_overrides(hparams, "ranks")

        def build(name: str, component: str, module: nn.Module) -> AdaptedLayer:
            rank = ranks.get(component, hparams["rank"])
            return layer_class(module, rank, hparams["lora_alpha"], hparams["dropout"], layer_name=name)

        return adapt(model, components, hparams["targets"], build, hparams["blocks"])

    return apply


METHOD = Method(
    name="lora",
    label="LoRA",
    description="LoRA: frozen weight plus a trainable low-rank update (lora_alpha / rank) * B A.",
    hparams=HPARAMS,
    apply=low_rank_apply(lambda: METHOD, LoRALayer),
)
