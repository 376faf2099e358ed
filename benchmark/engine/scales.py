"""How far a trained model's singular-value scales and shifts moved from their start (alpha = 1, beta = 0).

A regulariser can pin them (over a CHASE_DB1 run of 48 steps, eq. 5 at reg_weight 0.01 kept the
median |alpha - 1| of SALT's qkv layers at 4e-4 against 1.5e-2 without it; docs/official_protocol.md),
and a Dice score alone does not show whether the scales trained at all. Reported per
adapted component (attn.qkv, attn.proj, mlp, ...), over every entry of every layer of that kind.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

import methods


def _stats(values: torch.Tensor) -> dict[str, float]:
    return {"median": float(values.median()), "max": float(values.max())}


def scale_shift_movement(model: nn.Module) -> dict[str, dict[str, dict[str, float]]]:
    """{component: {"abs_alpha_minus_1": {median, max}, "abs_beta": {median, max}, "layers": n}}
    for layers with alpha and beta; {} when the method has none (LoRA, full, baselines)."""
    alphas: dict[str, list[torch.Tensor]] = defaultdict(list)
    betas: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, layer in methods.adapted_layers(model).items():
        alpha, beta = getattr(layer, "alpha", None), getattr(layer, "beta", None)
        if isinstance(alpha, torch.Tensor) and isinstance(beta, torch.Tensor):
            kind = layer.component or name
            alphas[kind].append((alpha.detach().float() - 1).abs().flatten().cpu())
            betas[kind].append(beta.detach().float().abs().flatten().cpu())
    return {kind: {"abs_alpha_minus_1": _stats(torch.cat(alphas[kind])), "abs_beta": _stats(torch.cat(betas[kind])),
                   "layers": len(alphas[kind])}
            for kind in sorted(alphas)}


def regularisers(model: nn.Module) -> list[str]:
    """The distinct penalties the adapted layers add, in words (empty: the method has none)."""
    return sorted({layer.regulariser for layer in methods.adapted_layers(model).values()} - {"none"})


def singular_value_ranks(model: nn.Module) -> dict[str, dict]:
    """SALT's r (how many top singular values are scaled and shifted) per adapted layer, grouped by
    component: what `sv_energy` chose from each layer's spectrum. {} for methods without it."""
    chosen: dict[str, dict[str, int]] = defaultdict(dict)
    for name, layer in methods.adapted_layers(model).items():
        r, sigma = getattr(layer, "r", None), getattr(layer, "sigma", None)
        if isinstance(r, int) and isinstance(sigma, torch.Tensor):
            chosen[layer.component or name][name] = r
    return {kind: {"min": min(ranks.values()), "median": float(torch.tensor(list(ranks.values())).float().median()),
                   "max": max(ranks.values()), "r_max": max(int(methods.adapted_layers(model)[n].sigma.numel()) for n in ranks),
                   "per_layer": ranks}
            for kind, ranks in sorted(chosen.items())}


def layer_notes(model: nn.Module) -> list[str]:
    """What the adapted layers say about how they were trained or evaluated (e.g. AdaLoRA without its budget schedule)."""
    return sorted({layer.note for layer in methods.adapted_layers(model).values() if layer.note})
