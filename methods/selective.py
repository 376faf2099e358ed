"""Selective tuning: train chosen kinds of the encoder blocks' own parameters, add nothing.

`kinds` lists one or more of the three kinds the peft-sam benchmark (Teuber, Archit and Pape, MIDL 2025) compares, each over
every parameter of that kind inside the image encoder's transformer blocks (all blocks, or those
`blocks` chooses), as its SelectiveSurgery classes pick them:

- bias (BitFit, Ben Zaken et al., ACL 2022): every `bias` tensor in a block: the attention and MLP
  linear layers' and the LayerNorms'.
- layernorm: every nn.LayerNorm's weight and bias in a block (SAM's norm1 and norm2).
- attention: every parameter of the block's attention module `<block>.attn` (qkv, proj and, in
  SAM, the relative-position tables rel_pos_h / rel_pos_w).

No layer is replaced, so there is nothing to merge; the trained tensors are the model's own.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from methods.base import Method, block_of, chosen_blocks, encoder_blocks, freeze, resolve_hparams


def _is_bias(model: nn.Module, name: str) -> bool:
    return name.rpartition(".")[2] == "bias"


def _is_layernorm(model: nn.Module, name: str) -> bool:
    return isinstance(model.get_submodule(name.rpartition(".")[0]), nn.LayerNorm)


def _is_attention(model: nn.Module, name: str) -> bool:
    return name.startswith(f"{block_of(name)}.attn.")


KINDS: dict[str, Callable[[nn.Module, str], bool]] = {
    "bias": _is_bias,
    "layernorm": _is_layernorm,
    "attention": _is_attention,
}


def selected_parameters(model: nn.Module, components: dict[str, str], kinds: list[str], blocks: object = None) -> list[str]:
    """Names of the parameters of any of `kinds` inside the chosen encoder blocks, in model order."""
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)) or not kinds or set(kinds) - set(KINDS):
        raise ValueError(f"method 'selective': kinds must be a non-empty list of {sorted(KINDS)}, got {kinds!r}")
    chosen = set(chosen_blocks(model, components, blocks) or encoder_blocks(model, components))
    if not chosen:
        raise ValueError("method 'selective': the model has no encoder blocks (no module named ...blocks.N "
                         "holds a component of the backbone)")
    names = [name for name, _ in model.named_parameters()
             if block_of(name) in chosen and any(KINDS[kind](model, name) for kind in kinds)]
    if not names:
        raise ValueError(f"method 'selective': no {'/'.join(kinds)} parameter in the chosen encoder blocks")
    return names


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    hparams = resolve_hparams(METHOD, spec)
    names = selected_parameters(model, components, hparams["kinds"], hparams["blocks"])
    freeze(model)
    parameters = dict(model.named_parameters())
    for name in names:
        parameters[name].requires_grad_(True)
    return []


METHOD = Method(
    name="selective",
    label="Selective tuning",
    description="Selective tuning of the encoder blocks' own parameters: kinds bias (BitFit), layernorm, attention.",
    hparams={"kinds": ["bias"], "blocks": None},
    apply=apply,
)
