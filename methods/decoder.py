"""Decoder-only tuning: the image encoder frozen, the mask decoder and the prompt path trained.

peft-sam's "frozen encoder" row (Teuber, Archit and Pape, MIDL 2025): its PEFT rows all train SAM's
mask decoder and prompt encoder, and this one trains nothing else. The prompt path here is the
prompt encoder plus the TAL (which the engine trains for every method). The encoder stays wholly
frozen (`frozen_encoder`): the backbone's encoder norms and positional embedding, which other rows
train, do not train here. Module names are those every SAM-family cell model has
(benchmark/models/prompted.py: `prompt_encoder`, `mask_decoder`).

With the encoder frozen and augmentation off, the engine computes each training image's embedding
once and reuses it every epoch (benchmark/models/embedding_cache.py), so after the first epoch a
step costs the decoder's alone.
"""
from __future__ import annotations

from torch import nn

from methods.base import Method, freeze, resolve_hparams

TRAINED = ("prompt_encoder.", "mask_decoder.")


def apply(model: nn.Module, components: dict[str, str], spec: dict) -> list[str]:
    resolve_hparams(METHOD, spec)
    chosen = [p for name, p in model.named_parameters() if name.startswith(TRAINED)]
    if not chosen:
        raise ValueError(f"method 'decoder': the model has no parameter under {list(TRAINED)}")
    freeze(model)
    for parameter in chosen:
        parameter.requires_grad_(True)
    return []


METHOD = Method(
    name="decoder",
    label="Decoder-only",
    description="Decoder-only: image encoder frozen; mask decoder and prompt encoder trained.",
    hparams={},
    apply=apply,
    frozen_encoder=True,
)
