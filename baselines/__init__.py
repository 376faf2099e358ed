"""Fully trained segmentation networks of Table 1, looked up by name (the contract is base.py).

Importing the package registers every built-in baseline, in Table 1 order.
"""
from __future__ import annotations

from baselines import unet, unetr, regunet, segnet, deeplabv3plus, segformer  # noqa: I001  (register in Table 1 order)
from baselines.base import REGISTRY, Baseline, build_baseline, get_baseline, register

__all__ = [
    "REGISTRY", "Baseline", "build_baseline", "get_baseline", "register",
    "deeplabv3plus", "regunet", "segformer", "segnet", "unet", "unetr",
]
