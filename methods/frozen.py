"""Zero-shot baseline: nothing is adapted or trained (the paper's "SAM w/ prompts" and MedSAM rows)."""
from __future__ import annotations

from torch import nn

from methods.base import Method, freeze, resolve_hparams


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    resolve_hparams(METHOD, spec)
    freeze(model)
    return []


METHOD = Method(
    name="frozen",
    label="Zero-shot (frozen)",
    description="No adaptation: every weight frozen (zero-shot evaluation).",
    hparams={},
    apply=apply,
)
