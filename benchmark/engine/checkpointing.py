"""`train.activation_checkpointing`: each image-encoder block keeps only its input for the backward
pass and recomputes its activations there (non-reentrant torch.utils.checkpoint).

The block's class is swapped for a subclass whose forward runs the original one under checkpoint,
so parameter and module names (what PEFT methods, checkpoints and adapters key on) do not change.
Gradients are those of the plain forward: the recomputation repeats the same operations on the same
inputs with the same RNG state (dropout included). Checkpointing applies only while gradients are
recorded in training mode; evaluation runs the plain forward. Layers that rebuild their weight in
forward (SALT, S-SAM, DoRA) rebuild it once per step, not twice (methods.rebuild).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from methods import rebuild

_SUBCLASSES: dict[type, type] = {}


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    plain = super(type(self), self).forward
    if not (self.training and torch.is_grad_enabled()):
        return plain(*args, **kwargs)
    return checkpoint(plain, *args, use_reentrant=False,
                      context_fn=lambda: (rebuild.phase("forward"), rebuild.phase("recompute")), **kwargs)


def checkpoint_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The blocks to checkpoint: every `blocks` list of an image encoder (SAM ViT's `blocks`, SAM2
    Hiera's `trunk.blocks`, TinyViT's `layers[i].blocks`), including LiteMedSAM's first-stage MBConv
    blocks, which methods.base.encoder_blocks leaves out because no PEFT method adapts them."""
    blocks = []
    for name, module in encoder.named_modules():
        if name.rsplit(".", 1)[-1] == "blocks" and isinstance(module, nn.ModuleList):
            blocks += list(module)
    return blocks


def _plain_class(block: nn.Module) -> type:
    cls = type(block)
    return cls.__bases__[0] if cls in _SUBCLASSES.values() else cls


def set_checkpointing(encoder: nn.Module, enabled: bool) -> int:
    """Checkpoint each block of `encoder` (or undo it), in place; the number of blocks."""
    blocks = checkpoint_blocks(encoder)
    for block in blocks:
        plain = _plain_class(block)
        if enabled and plain not in _SUBCLASSES:
            _SUBCLASSES[plain] = type(f"Checkpointed{plain.__name__}", (plain,),
                                      {"forward": _checkpointed_forward, "__module__": __name__})
        block.__class__ = _SUBCLASSES[plain] if enabled else plain
    return len(blocks)
