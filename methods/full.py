"""Full fine-tuning: every parameter trainable, no adapted layers (the upper bound PEFT is measured against).

With `blocks` it is peft-sam's "late full fine-tuning" (its ClassicalSurgery): only the chosen
encoder blocks are trained, every parameter in them; the rest of the model stays frozen except
what the backbone trains besides adapters (the engine's extra trainable set).
"""
from __future__ import annotations

from torch import nn

from methods.base import Method, chosen_blocks, freeze, in_blocks, resolve_hparams


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    blocks = chosen_blocks(model, components, hparams["blocks"])
    freeze(model)
    for name, parameter in model.named_parameters():
        if in_blocks(name, blocks):
            parameter.requires_grad_(True)
    return []


METHOD = Method(
    name="full",
    label="Full fine-tuning",
    description="Full fine-tuning: every parameter of the model trainable (blocks: only those encoder blocks).",
    hparams={"blocks": None},
    apply=apply,
)
