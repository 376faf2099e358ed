"""Thin SVDs of frozen weights, cached on disk and shared by every cell, method and seed of a grid.

S-SAM, SALT and PiSSA factorise each adapted weight once, in float64: seconds per SAM ViT-B matrix
on a CPU, minutes per cell. The factors depend only on the weight, so they are stored under a key
that hashes the weight's bytes with its shape, dtype and device kind (a changed checkpoint gives new
keys) and reused by the next cell. A cache file is trusted only if it reads back whole, carries its
own key and its tensors hash to the digest written with them; anything else is recomputed and
rewritten, with a message. Caching is off unless a caller names a directory (`cached_in`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from benchmark.io import atomic_write

VERSION = "1"  # bump when thin_svd changes what it returns for the same weight
NAMES = ("U", "sigma", "Vh")
_directory: Path | None = None

Factors = tuple[Tensor, Tensor, Tensor]


@contextmanager
def cached_in(directory: Path | None) -> Iterator[None]:
    """Within the block, thin SVDs are read from and written to `directory` (None: no caching)."""
    global _directory
    previous, _directory = _directory, None if directory is None else Path(directory)
    try:
        yield
    finally:
        _directory = previous


def _bytes_digest(tensors: list[Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weight_key(matrix: Tensor) -> str:
    """What determines the factors: the weight's bytes, shape, dtype, device kind and VERSION."""
    header = f"v{VERSION}|{tuple(matrix.shape)}|{matrix.dtype}|{matrix.device.type}|"
    return hashlib.sha256(header.encode() + _bytes_digest([matrix]).encode()).hexdigest()[:32]


def _read(path: Path, key: str, matrix: Tensor) -> Factors | str:
    """The factors in `path`, or why they cannot be trusted."""
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        return f"unreadable ({error})"
    if sorted(tensors) != sorted(NAMES) or metadata.get("key") != key:
        return "not this weight's factors"
    u, sigma, vh = (tensors[name] for name in NAMES)
    rows, cols = matrix.shape
    rank = min(rows, cols)
    if u.shape != (rows, rank) or sigma.shape != (rank,) or vh.shape != (rank, cols) or u.dtype != matrix.dtype:
        return "shapes or dtype do not fit the weight"
    if metadata.get("digest") != _bytes_digest([u, sigma, vh]):
        return "its tensors do not hash to the digest stored with them"
    return u.to(matrix.device), sigma.to(matrix.device), vh.to(matrix.device)


def _write(path: Path, key: str, factors: Factors) -> None:
    """Atomically: a killed writer leaves no partial file under the final name."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in zip(NAMES, factors)}
    metadata = {"key": key, "digest": _bytes_digest(list(tensors.values()))}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def cached(matrix: Tensor, compute: Callable[[Tensor], Factors]) -> Factors:
    """compute(matrix), or its cached result when caching is on and a trusted file exists."""
    if _directory is None or matrix.device.type == "meta":
        return compute(matrix)
    key = weight_key(matrix)
    path = _directory / f"svd-{key}.safetensors"
    if path.exists():
        found = _read(path, key, matrix)
        if not isinstance(found, str):
            return found
        print(f"SVD cache {path}: {found}; recomputing it", flush=True)
    factors = compute(matrix)
    _write(path, key, factors)
    return factors
