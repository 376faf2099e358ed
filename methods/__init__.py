"""PEFT methods as plugins, looked up by the name a config gives (contract: methods/README.md).

A method is a `Method(...)` registered from one of three places: a module of this package that
defines `METHOD` and is named as configs name the method (listed on import, imported when a grid
first names it, so a new built-in is one dropped-in file and a grid pays only for the methods it
uses: the peft bridge imports peft, QLoRA bitsandbytes); an installed package exposing it under
the entry-point group "saltbench.methods" (imported when named, too); or a module / .py file
listed in the environment variable SALTBENCH_PLUGINS, which reaches Snakemake's jobs without
installing anything. The model-level helpers below work for every method; counting parameters is
benchmark.cost.parameters'.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from benchmark.registry import Registry
from methods.base import DEFAULT_TARGETS, AdaptedLayer, Method, matrix_to_weight, replace_modules, weight_matrix

ENTRY_POINT_GROUP = "saltbench.methods"
PLUGINS_ENV = "SALTBENCH_PLUGINS"
_NOT_METHODS = {"base", "svd_cache"}

REGISTRY: Registry[Method] = Registry("method", Method)


def register(method: Method) -> Method:
    """Add a method; a second, different method under a taken name is an error, not an override."""
    if not isinstance(method, Method):
        raise TypeError(f"register() expects a methods.Method, got {type(method).__name__}")
    return REGISTRY.register(method.name, method)


def get_method(name: str) -> Method:
    """The method a config names; UnknownNameError listing the known methods otherwise."""
    return REGISTRY.lookup(name)


def _register_package_modules() -> None:
    """Every public module of this package except base and svd_cache is a method file, named as
    configs name its method; imported on first lookup."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            REGISTRY.register_later(info.name, f"{__name__}.{info.name}:METHOD")


def load_entry_points() -> list[str]:
    """Register the methods installed packages expose under ENTRY_POINT_GROUP, each imported on
    first lookup; their names."""
    names = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        REGISTRY.register_later(entry_point.name, entry_point.value, entry_point.load)
        names.append(entry_point.name)
    return names


def _import_plugin(item: str) -> ModuleType:
    """A module name (importable from sys.path / PYTHONPATH) or a path to a .py file."""
    if not item.endswith(".py"):
        try:
            return importlib.import_module(item)
        except Exception as error:  # a plugin may raise anything while importing; name it
            raise ImportError(f"{PLUGINS_ENV}: cannot import plugin module {item!r}: "
                              f"{type(error).__name__}: {error}") from error
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{PLUGINS_ENV}: plugin file not found: {path}")
    name = "saltbench_plugin_" + re.sub(r"\W", "_", str(path))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ImportError(f"{PLUGINS_ENV}: plugin file {path} raised while importing: "
                              f"{type(error).__name__}: {error}") from error
    return sys.modules[name]


def load_plugins(value: str | None = None) -> list[str]:
    """Register the METHOD of every comma-separated module or .py file in `value`
    (default: the SALTBENCH_PLUGINS environment variable); their names. Loading twice is harmless."""
    value = os.environ.get(PLUGINS_ENV, "") if value is None else value
    names = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        module = _import_plugin(item)
        method = getattr(module, "METHOD", None)
        if not isinstance(method, Method):
            raise TypeError(f"{PLUGINS_ENV}: plugin {item!r} must define METHOD = methods.Method(...)")
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


_register_package_modules()
load_entry_points()
load_plugins()

__all__ = [
    "DEFAULT_TARGETS",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "REGISTRY",
    "AdaptedLayer",
    "Method",
    "adapted_layers",
    "adapter_state_dict",
    "apply_method",
    "get_method",
    "load_entry_points",
    "load_plugins",
    "matrix_to_weight",
    "merge_model",
    "register",
    "regularization",
    "weight_matrix",
]
