"""Fully trained segmentation networks of Table 1, looked up by name (the contract is base.py).

Importing the package registers every built-in baseline, in Table 1 order, by its module: a
baseline's module (and MONAI or segmentation-models-pytorch with it) is imported when a grid
first names it.
"""
from __future__ import annotations

from baselines.base import REGISTRY, Baseline, build_baseline, get_baseline, register

for _name in ("unet", "unetr", "regunet", "segnet", "deeplabv3plus", "segformer"):
    REGISTRY.register_later(_name, f"baselines.{_name}:BASELINE")

__all__ = ["REGISTRY", "Baseline", "build_baseline", "get_baseline", "register"]
