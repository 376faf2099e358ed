"""How many parameters a model has and trains, per backbone component: what every count of the
suite (summaries, Table 1's Params column, the accounting tables) is computed with.

A 4-bit weight (bitsandbytes Params4bit, QLoRA) is counted as the weights it stands for: its tensor
packs two weights per byte, and its quantization state keeps the shape.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor, nn

OTHER = "other"


def quant_state(tensor: Tensor) -> object | None:
    """The quantization state of a 4-bit quantized weight (bitsandbytes Params4bit, QLoRA): its
    shape, scales and code book; None for any other tensor."""
    return getattr(tensor, "quant_state", None) if getattr(tensor, "bnb_quantized", False) else None


def parameter_numel(parameter: Tensor) -> int:
    """The parameter's count of weights: a 4-bit weight packs two weights per byte, so its tensor's
    numel is half; its quant state keeps the shape."""
    state = quant_state(parameter)
    return parameter.numel() if state is None else state.shape.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; SVD buffers are not parameters and are not counted."""
    parameters = list(model.parameters())
    return (sum(parameter_numel(p) for p in parameters if p.requires_grad),
            sum(parameter_numel(p) for p in parameters))


def count_by_component(model: nn.Module, components: Mapping[str, str]) -> dict[str, int]:
    """Trainable parameters per backbone component, in `components` order, plus OTHER ("other")
    for trainable parameters outside every component (norms, TAL, ...).

    A parameter belongs to the component whose pattern fully matches its module or the nearest
    enclosing module, so adapter tensors count where their adapted layer sits.
    """
    patterns = {name: re.compile(pattern) for name, pattern in components.items()}

    def owner(module: str) -> str:
        while module:
            for component, pattern in patterns.items():
                if pattern.fullmatch(module):
                    return component
            module = module.rpartition(".")[0]
        return OTHER

    counts = dict.fromkeys([*components, OTHER], 0)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            counts[owner(name.rpartition(".")[0])] += parameter.numel()
    return counts
