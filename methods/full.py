"""Full fine-tuning: every parameter trainable, no adapted layers (the upper bound PEFT is measured against)."""
from __future__ import annotations

from torch import nn

from methods.base import Method, resolve_hparams


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    resolve_hparams(METHOD, spec)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return []


METHOD = Method(
    name="full",
    label="Full fine-tuning",
    description="Full fine-tuning: every parameter of the model trainable.",
    hparams={},
    apply=apply,
)
