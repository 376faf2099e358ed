"""What every SAM-family backbone hands the engine: the model and how methods may touch it."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class Backbone:
    """A built model plus the facts the engine and methods need about it.

    components: component name -> regex (re.fullmatch on module names) that methods target.
    extra_trainable: parameter-name prefixes the paper trains besides adapters (TAL, norms, ...).
    weights: human-readable provenance of the weights, copied into every output.
    """

    name: str
    model: nn.Module
    components: dict[str, str]
    extra_trainable: list[str]
    input_size: int
    weights: str


def norm_parameter_names(model: nn.Module, roots: tuple[str, ...]) -> list[str]:
    """Parameters of LayerNorm-type modules under `roots`.

    Selected by type, not by the substring "norm" in names: SAM's neck LayerNorm2d is called
    `neck.1`. BatchNorm is left out: in LiteMedSAM it sits in the frozen convolutional stem,
    whose statistics must not drift.
    """
    names = []
    for module_name, module in model.named_modules():
        if not module_name.startswith(roots):
            continue
        if isinstance(module, nn.LayerNorm) or type(module).__name__ == "LayerNorm2d":
            names += [f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False)]
    return names
