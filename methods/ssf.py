"""SSF (Lian et al., NeurIPS 2022): scale and shift the features after each targeted operation.

y = gamma ⊙ (W x + b) + beta, one gamma and one beta per output channel (2 * out parameters per
layer). SSF's point is that this is a linear re-parameterisation: for inference it is folded
into the preceding layer, W' = diag(gamma) W and b' = gamma ⊙ b + beta, so the merged model has
exactly the frozen model's layers (a layer without a bias gains one, b' = beta).

gamma ~ N(1, init_std²) and beta ~ N(0, init_std²) as SSF's code draws them (0.02); peft-sam's
ScaleShiftLayer draws with 0.2. peft-sam also scales and shifts after each block's two
LayerNorms and the patch embedding; here SSF acts on the targeted nn.Linear / nn.Conv2d
components (the backbone's norms are trained as the extra trainable set instead).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import DEFAULT_TARGETS, AdaptedLayer, Method, adapt, resolve_hparams


class SSFLayer(AdaptedLayer):
    """A frozen layer whose output channels are scaled by gamma and shifted by beta."""

    def __init__(self, base: nn.Module, init_std: float = 0.02, layer_name: str = "") -> None:
        super().__init__(base, layer_name)
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or init_std < 0:
            raise ValueError(f"{self.layer_name}: SSF init_std must be a non-negative number, got {init_std!r}")
        out_dim = self.matrix_shape[0]
        factory = {"dtype": self.weight.dtype, "device": self.weight.device}
        self.gamma = nn.Parameter(torch.empty(out_dim, **factory))
        self.beta = nn.Parameter(torch.empty(out_dim, **factory))
        nn.init.normal_(self.gamma, 1.0, init_std)
        nn.init.normal_(self.beta, 0.0, init_std)

    def channel_view(self, vector: Tensor) -> Tensor:
        """A per-output-channel vector shaped to broadcast over the layer's output (last dim for a
        Linear, dim 1 for a Conv2d)."""
        return vector if self.conv_args is None else vector[:, None, None]

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer_forward(x, self.weight)
        return y * self.channel_view(self.gamma) + self.channel_view(self.beta)

    def adapted_weight(self) -> Tensor:
        """diag(gamma) W: each output row (channel) scaled."""
        return self.weight * self.gamma.reshape(-1, *([1] * (self.weight.dim() - 1)))

    def adapted_bias(self) -> Tensor:
        """gamma ⊙ b + beta (beta alone where the layer has no bias)."""
        return self.beta if self.bias is None else self.gamma * self.bias + self.beta

    @torch.no_grad()
    def merge(self) -> nn.Linear | nn.Conv2d:
        """The plain layer with W' = diag(gamma) W and b' = gamma ⊙ b + beta."""
        layer = super().merge()
        layer.bias = nn.Parameter(self.adapted_bias().detach().clone(), requires_grad=False)
        return layer

    def extra_repr(self) -> str:
        out_dim, in_dim = self.matrix_shape
        return f"{self.layer_name}: {out_dim}x{in_dim}, scale and shift of {out_dim} channels"


HPARAMS: dict[str, object] = {"targets": list(DEFAULT_TARGETS), "blocks": None, "init_std": 0.02}


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    return adapt(model, components, hparams["targets"],
                 lambda name, _component, module: SSFLayer(module, hparams["init_std"], layer_name=name),
                 hparams["blocks"])


METHOD = Method(
    name="ssf",
    label="SSF",
    description="SSF: a trainable scale and shift of every output channel of the targeted layers, folded into them for inference.",
    hparams=HPARAMS,
    apply=apply,
)
