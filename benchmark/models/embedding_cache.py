"""A frozen image encoder's output computed once per training image and reused every epoch.

When no parameter of the image encoder trains (decoder-only, or a row that trains only the TAL)
and the training images are not augmented, the encoder maps each image to the same features in
every epoch; computing them again is most of a step's cost (peft-sam's frozen-encoder row trains at
a decoder's cost for this reason). The cache is keyed by the image's bytes (SHA-1), so it never
serves another image's features whatever the batch order, and each missing image is encoded on its
own (batch of one), so its features do not depend on which images shared its batch: every epoch
and a resumed run see the same features to the bit (an uncached run, which encodes whole batches,
agrees to float rounding).
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils import _pytree as pytree

Encoder = nn.Module


class EmbeddingCache:
    """image batch -> the encoder's output for it, each image's share computed once."""

    def __init__(self) -> None:
        self.store: dict[bytes, object] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, encoder: Encoder, image: torch.Tensor, pixels: torch.Tensor) -> object:
        """The encoder's output on `pixels` (the normalised `image`), batch-first like the encoder's."""
        if any(isinstance(m, _BatchNorm) and m.training for m in encoder.modules()):
            raise RuntimeError("embedding cache: a BatchNorm of the image encoder is in training mode, so its "
                               "output depends on the batch; frozen BatchNorms must be in eval mode "
                               "(engine.train.set_train_mode)")
        keys = [hashlib.sha1(one.detach().cpu().contiguous().numpy().tobytes()).digest() for one in image]
        for index, key in enumerate(keys):
            if key in self.store:
                self.hits += 1
                continue
            self.misses += 1
            with torch.no_grad():
                self.store[key] = pytree.tree_map(_detached, encoder(pixels[index:index + 1]))
        outputs = [self.store[key] for key in keys]
        return pytree.tree_map(lambda *parts: _batched(parts), *outputs)

    def megabytes(self) -> float:
        tensors = [leaf for value in self.store.values() for leaf in pytree.tree_leaves(value)
                   if isinstance(leaf, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def report(self) -> dict:
        return {"used": True, "images": len(self.store), "hits": self.hits, "misses": self.misses,
                "megabytes": round(self.megabytes(), 1)}

    def __deepcopy__(self, memo: dict) -> EmbeddingCache:
        """Copies of the model (validation scores a merged copy) share the store: same frozen
        encoder, and the keys are the images themselves."""
        return self


def _detached(leaf: object) -> object:
    return leaf.detach() if isinstance(leaf, torch.Tensor) else leaf


def _batched(parts: tuple) -> object:
    """Concatenate one image's outputs back into a batch; non-tensor leaves (flags) are shared."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return parts[0]


def _stochastic(module: nn.Module) -> bool:
    """Dropout or drop-path that is active in training mode: the encoder's output is then random."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    return float(getattr(module, "drop_prob", 0.0) or 0.0) > 0


def why_not_cached(model: nn.Module, augment: bool) -> str | None:
    """None when the image encoder's output can be cached for training; else the reason it cannot."""
    if not hasattr(model, "embedding_cache"):
        return "the model has no separate image encoder (a baseline)"
    if augment:
        return "training images are augmented (train.augment), so each epoch's features differ"
    encoder = model.image_encoder
    if any(p.requires_grad for p in encoder.parameters()):
        return "the image encoder trains"
    if any(_stochastic(m) for m in encoder.modules()):
        return "the image encoder has dropout or drop-path active in training"
    return None
