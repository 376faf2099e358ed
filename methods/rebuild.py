"""One weight rebuild per training step, also under activation checkpointing.

SALT, S-SAM and DoRA rebuild their layer's weight in forward (AdaptedLayer.forward). An activation-
checkpointed block (benchmark.engine.checkpointing) runs its forward twice per step: once in the
forward pass, keeping only its input, and again in the backward pass to recompute what the backward
needs. A rebuild inside would run twice too. Instead, in the checkpointed forward pass the weight is
built with its own autograd state kept as without checkpointing (an inner saved-tensor hook pair
takes precedence over the checkpoint's), and the recomputation reuses that very tensor: the block's
recomputed graph saves the same tensors in the same order, and the rebuild runs once per step.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

_PHASE: list[str] = []  # innermost last: "forward" or "recompute" of a checkpointed block
_BUILT: "weakref.WeakKeyDictionary[nn.Module, Tensor]" = weakref.WeakKeyDictionary()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark the forward pass ("forward") or the backward's recomputation ("recompute") of a
    checkpointed block."""
    _PHASE.append(name)
    try:
        yield
    finally:
        _PHASE.pop()


def _keep(tensor: Tensor) -> Tensor:
    return tensor


def rebuilt(layer: nn.Module, build: Callable[[], Tensor]) -> Tensor:
    """`build()`, or in a checkpointed block's recomputation the tensor the forward pass built."""
    current = _PHASE[-1] if _PHASE else None
    if current == "recompute" and layer in _BUILT:
        return _BUILT.pop(layer)
    if current != "forward":
        return build()
    with torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
        weight = build()
    _BUILT[layer] = weight
    return weight
