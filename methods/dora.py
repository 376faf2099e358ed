"""DoRA (Liu et al., ICML 2024): LoRA on the direction of W, plus a trainable magnitude per output.

    W' = m * (W + s B A) / ||W + s B A||_row,    s = lora_alpha / rank

||.||_row is the norm of each output row of the out x (in*kh*kw) matrix (DoRA's column norm in
its in x out notation). m starts at ||W||_row and B at zero, so W' == W at the start. The norm
is detached from the graph, as DoRA section 4.3 recommends and huggingface/peft does: it changes
gradients, not outputs. rank * (in*kh*kw + out) + out parameters per layer. No dropout: with
dropout DoRA's output is no longer a function of one merged weight.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import (
    DEFAULT_TARGETS,
    AdaptedLayer,
    Method,
    adapt,
    component_overrides,
    matrix_to_weight,
    resolve_hparams,
    weight_matrix,
)
from methods.lora import LoRALayer


class DoRALayer(LoRALayer):
    """A LoRA branch that steers the direction of each output row; `magnitude` sets its length."""

    def __init__(self, base: nn.Module, rank: int = 4, lora_alpha: float | None = None, layer_name: str = "") -> None:
        super().__init__(base, rank, lora_alpha, 0.0, layer_name)
        self.magnitude = nn.Parameter(torch.linalg.vector_norm(weight_matrix(self).detach(), dim=1))

    def adapted_weight(self) -> Tensor:
        direction = weight_matrix(self) + self.scaling * (self.lora_B @ self.lora_A)
        norm = torch.linalg.vector_norm(direction, dim=1).detach()
        return matrix_to_weight(direction * (self.magnitude / norm)[:, None], self.weight.shape)

    def forward(self, x: Tensor) -> Tensor:
        """Through the rebuilt weight, as AdaptedLayer (LoRALayer's separate branch cannot apply the
        per-row magnitude); the rebuild runs in float32 under autocast."""
        return AdaptedLayer.forward(self, x)


HPARAMS: dict[str, object] = {
    "targets": list(DEFAULT_TARGETS),
    "blocks": None,
    "rank": 4,
    "lora_alpha": None,
    "ranks": {},
}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    """lora_alpha None means "equal to each layer's rank" (s = 1), also under `ranks` overrides."""
    hparams = resolve_hparams(METHOD, spec)
    ranks = component_overrides(hparams, "ranks")

    def build(name: str, component: str, module: nn.Module) -> DoRALayer:
        return DoRALayer(module, ranks.get(component, hparams["rank"]), hparams["lora_alpha"], layer_name=name)

    return adapt(model, components, hparams["targets"], build, hparams["blocks"])


METHOD = Method(
    name="dora",
    label="DoRA",
    description="DoRA: LoRA on the direction of each weight row plus a trainable magnitude per output.",
    hparams=HPARAMS,
    apply=apply,
)
