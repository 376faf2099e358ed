"""FacT (Jie and Deng, AAAI 2023): every weight increment of the encoder as one tensor, factorised.

The paper tensorises the increments of all of a ViT's d x d weights (q, k, v, o and the MLP's
4 d x d pieces per block: 12 L slices) into one d x d x 12L tensor and factorises it with factors
shared by every slice. In its row-vector convention (h = x W, W is in x out), slice j is

    FacT-TT:  dW_j = s * U Sigma_j V^T            U, V (d x r) shared, Sigma_j (r x r) per slice
    FacT-TK:  dW_j = s * U (sum_k P[j, k] C_k) V^T  U, V (d x r), C (r x r x r) shared, P (12L x r)

Here the slices are the d x d blocks of every targeted layer's in x out weight, d being the
greatest common divisor of the targeted layers' dimensions: the width in SAM ViT-B (768: qkv
gives 3 slices, proj 1, lin1 and lin2 4 each, the paper's 12 per block); in encoders whose
stages differ in width (TinyViT: 128, 160, 320) a common divisor (32), so that one U and V
serve every stage. U and V (and TK's C) are one pair of tensors held by every adapted layer (counted
once, saved once, under the first layer's name); each layer holds its own slices' cores (TT) or
rows of P (TK). U is drawn as the paper's code draws its input projection (xavier-uniform), V
starts at zero, so the model starts as the frozen one. Forward runs x -> U -> cores -> V, never
building dW; merged, W' = W + dW^T in the layer's out x in form.

peft-sam's FacT differs: it adapts only q and v, and draws a new U, V for every block.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.base import DEFAULT_TARGETS, AdaptedLayer, Method, adapt, match_targets, resolve_hparams

FORMS = ("tt", "tk")


class FacTLayer(AdaptedLayer):
    """A frozen Linear whose d x d slices are updated through the shared factors U, V."""

    def __init__(self, base: nn.Module, shared: nn.ParameterDict, form: str, scale: float, dropout: float,
                 layer_name: str = "") -> None:
        super().__init__(base, layer_name)
        if self.conv_args is not None:
            raise ValueError(f"{self.layer_name}: FacT adapts nn.Linear layers, not a Conv2d")
        dim, rank = shared["U"].shape
        out_dim, in_dim = self.matrix_shape
        if out_dim % dim or in_dim % dim:
            raise ValueError(f"{self.layer_name}: FacT needs dimensions that are multiples of d = {dim} "
                             f"(the shared factors' width), got {out_dim} x {in_dim}")
        self.form, self.scale, self.dim = form, scale, dim
        self.slices = (in_dim // dim, out_dim // dim)  # input chunks b, output chunks a
        self.U, self.V = shared["U"], shared["V"]
        factory = {"dtype": self.weight.dtype, "device": self.weight.device}
        if form == "tt":
            self.cores = nn.Parameter(torch.empty(*self.slices, rank, rank, **factory))
            nn.init.uniform_(self.cores, -1 / math.sqrt(rank), 1 / math.sqrt(rank))
        else:
            self.C = shared["C"]
            self.P = nn.Parameter(torch.empty(*self.slices, self.C.shape[2], **factory))
            nn.init.uniform_(self.P, -1 / math.sqrt(rank), 1 / math.sqrt(rank))
        self.dropout = nn.Dropout(dropout)

    def slice_cores(self) -> Tensor:
        """The r x r core of every slice (b, a): Sigma_j (TT) or sum_k P[j, k] C_k (TK)."""
        if self.form == "tt":
            return self.cores
        return torch.einsum("bak,rqk->barq", self.P, self.C)

    def delta(self, x: Tensor) -> Tensor:
        """x dW: chunk b of the input through U, its slices' cores, then V^T into output chunk a."""
        chunks = x.reshape(*x.shape[:-1], self.slices[0], self.dim) @ self.U  # ..., b, r
        mixed = self.dropout(torch.einsum("...br,barq->...aq", chunks, self.slice_cores()))
        return self.scale * (mixed @ self.V.T).reshape(*x.shape[:-1], -1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias) + self.delta(x)

    def adapted_weight(self) -> Tensor:
        """W + dW^T: dW (in x out) assembled from the slices s U core_(b, a) V^T."""
        blocks = torch.einsum("ir,barq,jq->biaj", self.U, self.slice_cores(), self.V)
        delta = self.scale * blocks.reshape(self.slices[0] * self.dim, self.slices[1] * self.dim)
        return self.weight + delta.T

    def extra_repr(self) -> str:
        return f"{self.layer_name}: FacT-{self.form.upper()}, {self.slices[0]}x{self.slices[1]} slices of d={self.dim}"


HPARAMS: dict[str, object] = {
    "targets": list(DEFAULT_TARGETS), "blocks": None, "form": "tt", "rank": 8, "scale": 1.0, "dropout": 0.0,
}


def shared_factors(dim: int, rank: int, form: str, like: Tensor) -> nn.ParameterDict:
    """U (xavier-uniform), V (zero) and, for TK, the core C (r x r x r): one set for the whole model."""
    factory = {"dtype": like.dtype, "device": like.device}
    shared = nn.ParameterDict({"U": torch.empty(dim, rank, **factory), "V": torch.zeros(dim, rank, **factory)})
    nn.init.xavier_uniform_(shared["U"])
    if form == "tk":
        shared["C"] = nn.Parameter(torch.empty(rank, rank, rank, **factory))
        nn.init.uniform_(shared["C"], -1 / math.sqrt(rank), 1 / math.sqrt(rank))
    return shared


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    form, rank = hparams["form"], hparams["rank"]
    if form not in FORMS:
        raise ValueError(f"method 'fact': form must be one of {list(FORMS)}, got {form!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"method 'fact': rank must be a positive integer, got {rank!r}")
    for key, low in (("scale", None), ("dropout", 0.0)):
        value = hparams[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (low is not None and not 0 <= value < 1):
            raise ValueError(f"method 'fact': {key} must be a number{' in [0, 1)' if low is not None else ''}, got {value!r}")
    matched = match_targets(model, components, hparams["targets"], hparams["blocks"])
    layers = [model.get_submodule(name) for name in matched]
    dim = math.gcd(*(size for layer in layers for size in layer.weight.shape[:2]))
    shared = shared_factors(dim, rank, form, layers[0].weight)
    return adapt(model, components, hparams["targets"],
                 lambda name, _c, module: FacTLayer(module, shared, form, float(hparams["scale"]), hparams["dropout"], name),
                 hparams["blocks"])


METHOD = Method(
    name="fact",
    label="FacT",
    description="FacT: the encoder's weight increments as one tensor, FacT-TT or FacT-TK, factors U, V shared by all layers.",
    hparams=HPARAMS,
    apply=apply,
)
