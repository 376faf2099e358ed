"""AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck adapter in parallel with each block's MLP.

    x_out = x' + MLP(LN(x')) + s * up(ReLU(down(LN(x'))))

down: d -> `bottleneck` and up: `bottleneck` -> d, both with biases; up starts at zero, so the
model is the frozen one at the start; s is a fixed scale, or one trainable scalar (started at 1)
with `scale: learnable`, peft-sam's choice. 2 d k + k + d (+ 1) parameters per block.

How it fits the contract (an adapted layer is one nn.Linear): the adapter is attached to the
*last* Linear of each block's MLP (the `mlp` component's last match in the block), whose output
it adds to, and it reads the MLP's input through a forward pre-hook on the *first* Linear of that
MLP, which sees exactly LN(x') (SAM's lin1, Hiera's layers.0; TinyViT's fc1 after the MLP's own
norm). So every frozen key stays where it was and the adapter's tensors sit under the last
Linear's name. The parallel branch is not a linear function of that Linear's input, so it cannot
be folded into any weight: the layer stays as it is at inference (merge() returns it), and the
cell summary's `inference` says so.

peft-sam's AdaptFormer also adds LN(x') itself to the MLP's output (its `residual`); the paper's
equation does not, nor does this layer.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.base import AdaptedLayer, Method, adapt, block_of, match_targets, resolve_hparams


class AdaptFormerLayer(AdaptedLayer):
    """The MLP's last Linear plus the parallel bottleneck fed with the MLP's input."""

    note = "AdaptFormer's parallel adapter cannot be merged into a weight: evaluated unmerged"
    mergeable = False

    def __init__(self, base: nn.Module, bottleneck: int = 64, scale: float | str = "learnable",
                 dropout: float = 0.0, layer_name: str = "") -> None:
        super().__init__(base, layer_name)
        if self.conv_args is not None:
            raise ValueError(f"{self.layer_name}: AdaptFormer adapts a block's MLP of nn.Linear layers, not a Conv2d")
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
            raise ValueError(f"{self.layer_name}: AdaptFormer bottleneck must be a positive integer, got {bottleneck!r}")
        if scale != "learnable" and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ValueError(f"{self.layer_name}: AdaptFormer scale must be a number or 'learnable', got {scale!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.layer_name}: AdaptFormer dropout must be in [0, 1), got {dropout!r}")
        dim = self.matrix_shape[0]
        factory = {"dtype": self.weight.dtype, "device": self.weight.device}
        self.down = nn.Linear(dim, bottleneck, **factory)
        self.up = nn.Linear(bottleneck, dim, **factory)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        for tensor in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)
        self.scale = nn.Parameter(torch.ones((), **factory)) if scale == "learnable" else float(scale)
        self.dropout = nn.Dropout(dropout)
        self.mlp_input: Tensor | None = None

    def remember_input(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        """Forward pre-hook of the MLP's first Linear: keep LN(x') for the parallel branch."""
        self.mlp_input = args[0]

    def branch(self, h: Tensor) -> Tensor:
        """s * up(ReLU(down(h)))."""
        return self.scale * self.up(self.dropout(F.relu(self.down(h))))

    def forward(self, x: Tensor) -> Tensor:
        if self.mlp_input is None:
            raise RuntimeError(f"{self.layer_name}: AdaptFormer ran without its MLP's input (the first MLP Linear "
                               "did not run before this one)")
        h, self.mlp_input = self.mlp_input, None
        return self.layer_forward(x, self.weight) + self.branch(h)

    def adapted_weight(self) -> Tensor:
        raise NotImplementedError(f"{self.layer_name}: AdaptFormer's parallel branch is not a weight of this layer")

    def merge(self) -> nn.Module:
        """Not mergeable: the layer stays as it is (and the summary says so)."""
        return self

    def extra_repr(self) -> str:
        scale = "learnable" if isinstance(self.scale, nn.Parameter) else f"{self.scale:g}"
        return f"{self.layer_name}: d={self.matrix_shape[0]}, bottleneck={self.down.out_features}, scale={scale}"


HPARAMS: dict[str, object] = {"blocks": None, "bottleneck": 64, "scale": "learnable", "dropout": 0.0}


def mlp_ends(model: nn.Module, components: dict[str, str], blocks: object) -> dict[str, str]:
    """The last `mlp` Linear of each chosen block -> the first one (whose input is the MLP's)."""
    per_block: dict[str, list[str]] = {}
    for name in match_targets(model, components, ["mlp"], blocks):
        block = block_of(name)
        if block is None:
            raise ValueError(f"AdaptFormer: mlp layer {name!r} is not inside an encoder block")
        per_block.setdefault(block, []).append(name)
    ends = {names[-1]: names[0] for names in per_block.values()}
    single = [last for last, first in ends.items() if last == first]
    if single:
        raise ValueError(f"AdaptFormer needs an MLP of at least two Linear layers per block; one only at {single}")
    return ends


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    ends = mlp_ends(model, components, hparams["blocks"])
    last_only = {"mlp": "|".join(name.replace(".", r"\.") for name in ends)}

    def build(name: str, _component: str, module: nn.Module) -> AdaptedLayer:
        return AdaptFormerLayer(module, hparams["bottleneck"], hparams["scale"], hparams["dropout"], layer_name=name)

    adapted = adapt(model, last_only, ["mlp"], build)
    for last, first in ends.items():
        model.get_submodule(first).register_forward_pre_hook(model.get_submodule(last).remember_input)
    return adapted


METHOD = Method(
    name="adaptformer",
    label="AdaptFormer",
    description="AdaptFormer: a scaled bottleneck adapter in parallel with each block's MLP; not mergeable.",
    hparams=HPARAMS,
    apply=apply,
)
