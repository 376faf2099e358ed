"""PEFT methods as plugins, looked up by the name a config gives.

A method is a module in this package that defines `METHOD = Method(...)` (found on import, so a
new method is one dropped-in file), or an object an installed package exposes under the entry
point group "saltbench.methods". The model-level helpers below work for every method.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from importlib import metadata

import torch
from torch import Tensor, nn

from methods.base import DEFAULT_TARGETS, AdaptedLayer, Method, matrix_to_weight, replace_modules, weight_matrix

ENTRY_POINT_GROUP = "saltbench.methods"
_NOT_METHODS = {"base"}

REGISTRY: dict[str, Method] = {}


class UnknownMethodError(KeyError, ValueError):
    """A method name nobody registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(method: Method) -> Method:
    """Add a method; a second, different method under a taken name is an error, not an override."""
    if not isinstance(method, Method):
        raise TypeError(f"register() expects a methods.Method, got {type(method).__name__}")
    known = REGISTRY.get(method.name)
    if known is not None and known is not method:
        raise ValueError(f"a different method is already registered as {method.name!r}")
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(REGISTRY))}") from None


def _register_package_modules() -> None:
    """Every public module of this package except base is a method file."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name.startswith("_") or info.name in _NOT_METHODS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not isinstance(getattr(module, "METHOD", None), Method):
            raise TypeError(f"{module.__file__}: a method module must define METHOD = methods.Method(...)")
        register(module.METHOD)


def load_entry_points() -> list[str]:
    """Register methods that installed packages expose under ENTRY_POINT_GROUP; their names."""
    names = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        method = entry_point.load()
        if not isinstance(method, Method):
            raise TypeError(f"entry point {entry_point.name!r} ({entry_point.value}) is not a methods.Method")
        names.append(register(method).name)
    return names


def apply_method(model: nn.Module, spec: dict, components: dict[str, str]) -> list[str]:
    """Adapt `model` in place as `spec` (a config mapping with a "name") says; the replaced module names.

    The model is frozen first (full unfreezes everything); parameters the backbone wants trained
    besides adapters (norms, TAL) are the caller's to unfreeze afterwards.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"method spec must be a mapping with a 'name' key, got {spec!r}")
    return get_method(spec["name"]).apply(model, components, dict(spec))


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLayer]:
    return {name: module for name, module in model.named_modules() if isinstance(module, AdaptedLayer)}


def regularization(model: nn.Module) -> Tensor:
    """Sum of every adapted layer's penalty (eq. 5 for SALT); a zero scalar when there is none."""
    terms = [layer.regularization() for layer in adapted_layers(model).values()]
    if not terms:
        first = next(model.parameters(), None)
        return torch.zeros((), device=None if first is None else first.device)
    return sum(terms[1:], terms[0])


def merge_model(model: nn.Module) -> nn.Module:
    """Fold every adapted layer into a plain one, in place, for inference; returns the model."""
    if isinstance(model, AdaptedLayer):
        return model.merge()
    replace_modules(model, {name: layer.merge() for name, layer in adapted_layers(model).items()})
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Every trainable parameter under its full name: what an adapter-only checkpoint holds."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; SVD buffers are not parameters and are not counted."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


_register_package_modules()
load_entry_points()

__all__ = [
    "DEFAULT_TARGETS",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "AdaptedLayer",
    "Method",
    "UnknownMethodError",
    "adapted_layers",
    "adapter_state_dict",
    "apply_method",
    "count_parameters",
    "get_method",
    "load_entry_points",
    "matrix_to_weight",
    "merge_model",
    "register",
    "regularization",
    "weight_matrix",
]
