"""Adapter-only checkpoints: the trained tensors plus what they were trained on, in one safetensors file.

The file holds exactly what training changed (train.trainable_state: adapter tensors, the extra
trainable norms / TAL and trainable BatchNorm statistics) and, as metadata, the method spec, the
backbone, its weights label, every adapted layer's component, class and weight shape, and a
SHA-256 of the frozen parameters. Loading checks all of it before touching the model, so an
adapter for another method, backbone, shape or frozen weights (another checkpoint, or another
seed of `weights: random`) fails with a message that names the file and the difference instead
of loading half-way or silently giving other outputs.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import methods
from benchmark.errors import AdapterMismatchError
from benchmark.grid import ROW_KEYS
from methods.base import resolve_hparams
from benchmark.engine.train import trainable_state
from benchmark.io import atomic_write

FORMAT = "saltbench-adapter/1"
_SHOWN = 5


def describe_layers(model: nn.Module) -> dict[str, dict]:
    """Adapted layer name -> its component, class and base weight shape."""
    return {
        name: {"component": layer.component, "class": type(layer).__name__, "shape": list(layer.weight.shape)}
        for name, layer in methods.adapted_layers(model).items()
    }


def frozen_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every frozen parameter: the part of
    the model an adapter-only checkpoint leaves out and must find unchanged."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            continue
        tensor = parameter.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(path: Path, model: nn.Module, *, method: Mapping, backbone: str | None, weights: str) -> None:
    """Write the trainable tensors of `model` and their metadata to `path` (atomically)."""
    tensors = {name: t.contiguous().cpu() for name, t in trainable_state(model).items()}
    meta = {"format": FORMAT, "method": dict(method), "backbone": backbone, "weights": weights,
            "layers": describe_layers(model), "frozen_sha256": frozen_fingerprint(model)}
    encoded = {key: json.dumps(value) for key, value in meta.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=encoded))


def read_metadata(path: Path) -> dict:
    """The decoded metadata of an adapter file; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise AdapterMismatchError(f"{path}: not a safetensors file ({error})") from None
    if raw.get("format") != json.dumps(FORMAT):
        raise AdapterMismatchError(f"{path}: not a saltbench adapter checkpoint (no format {FORMAT!r} in its metadata)")
    return {key: json.loads(value) for key, value in raw.items()}


def _canonical(spec: Mapping) -> dict:
    """A method spec without row keys and with the method's defaults filled, so that
    {name: salt, rank: 4} and {name: salt, rank: 4, sv_rank: 0.5} compare equal."""
    spec = {key: value for key, value in spec.items() if key not in ROW_KEYS}
    if spec.get("name") in methods.REGISTRY:
        return {"name": spec["name"], **resolve_hparams(methods.get_method(spec["name"]), spec)}
    return spec


def _differences(expected: Mapping, found: Mapping) -> list[str]:
    keys = sorted(set(expected) | set(found))
    return [f"{key}: checkpoint {found.get(key, '(absent)')!r}, model {expected.get(key, '(absent)')!r}"
            for key in keys if expected.get(key) != found.get(key)]


def _check(path: Path, what: str, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise AdapterMismatchError(f"{path}: {what}: " + "; ".join(problems[:_SHOWN]) + more)


def load_adapter(
    model: nn.Module,
    path: Path,
    *,
    method: Mapping | None = None,
    backbone: str | None = None,
    weights: str | None = None,
) -> dict:
    """Load an adapter into `model`, already adapted with the same method; returns the metadata.

    `method`, `backbone` and `weights`, when given, must equal what the checkpoint was trained
    with. The model's adapted layers and trainable tensors must match the file's exactly.
    """
    path = Path(path)
    meta = read_metadata(path)
    if method is not None:
        wanted, trained = _canonical(method), _canonical(meta["method"])
        if wanted.get("name") != trained.get("name"):
            raise AdapterMismatchError(f"{path}: trained with method {trained.get('name')!r}, not {wanted.get('name')!r}")
        _check(path, f"trained with another {wanted['name']} spec", _differences(wanted, trained))
    for key, given in (("backbone", backbone), ("weights", weights)):
        if given is not None and given != meta[key]:
            raise AdapterMismatchError(f"{path}: trained on {key} {meta[key]!r}, not {given!r}")
    layers = describe_layers(model)
    _check(path, "adapted layers differ from the model's", _differences(layers, meta["layers"]))
    tensors = load_file(str(path))
    expected = trainable_state(model)
    problems = [f"missing {name}" for name in sorted(set(expected) - set(tensors))]
    problems += [f"unexpected {name}" for name in sorted(set(tensors) - set(expected))]
    problems += [
        f"{name}: shape {list(tensors[name].shape)} in checkpoint, {list(expected[name].shape)} in model"
        for name in sorted(set(tensors) & set(expected))
        if tensors[name].shape != expected[name].shape
    ]
    _check(path, "tensors do not fit this model", problems)
    if frozen_fingerprint(model) != meta["frozen_sha256"]:
        raise AdapterMismatchError(
            f"{path}: this model's frozen weights differ from those the adapter was trained on "
            "(another checkpoint, or another seed for weights: random)"
        )
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)
    return meta
