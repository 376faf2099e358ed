"""The baseline contract and registry: what every fully trained network of Table 1 provides.

Each baseline maps an image in [0,1] (B x 3 x S x S) to mask logits (B x 1 x S x S), the same
contract as the SAM-family models, so one engine trains and evaluates both.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmark.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Baseline:
    """name: config key; label: row name in tables; hparams: accepted keys with defaults."""

    name: str
    label: str
    description: str
    hparams: dict[str, object]
    build: Callable[[dict, int], nn.Module]

    def row_label(self, entry: Mapping[str, object]) -> str:
        """The name tables give a grid entry of this baseline: its own `label`, else the baseline's."""
        return str(entry.get("label", self.label))


REGISTRY: Registry[Baseline] = Registry("baseline", Baseline)


def register(baseline: Baseline) -> Baseline:
    return REGISTRY.register(baseline.name, baseline)


def get_baseline(name: str) -> Baseline:
    """The baseline a config names; UnknownNameError listing the known baselines otherwise."""
    return REGISTRY.lookup(name)


def build_baseline(name: str, hparams: dict, input_size: int) -> nn.Module:
    """Build with the baseline's defaults overridden by `hparams` (already schema-checked keys)."""
    baseline = get_baseline(name)
    return baseline.build({**baseline.hparams, **hparams}, input_size)
