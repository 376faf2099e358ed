"""Loading user-provided checkpoints into backbones: read, resize, compare keys, report.

SAM, MedSAM and SAM2 weights cannot be downloaded here, so every such checkpoint comes from a
path the user gives. A wrong file must fail with a message that says what does not fit, never
load half a model silently; a right file loaded at another input size (SAM's 1024 checkpoints
at the paper's 512) gets its size-dependent tables resized, and the report says which.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Resizer = Callable[[str, Tensor, torch.Size], Tensor | None]
SHOWN = 5


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, hint: str) -> dict[str, Tensor]:
    """The tensors of a .pth/.pt checkpoint; `hint` (where to get the file) goes into the error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}. {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return state


def resize_pos_embed(table: Tensor, size: tuple[int, int]) -> Tensor:
    """SAM's absolute positional embedding (1, H, W, C) bilinearly resized to (1, h, w, C).

    Bilinear with align_corners=False (SAMed's choice); for the 64 -> 32 halving of a 1024
    checkpoint at 512 this is exactly the 2 x 2 average that the official SALT code's
    adaptive_avg_pool2d gives, and it also serves sizes that are no integer fraction of 1024.
    """
    resized = F.interpolate(table.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1).to(table.dtype)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """A relative-position table (L, C) linearly resized to (length, C): the interpolation SAM's
    get_rel_pos would apply on every forward, done once, so the model computes the same function."""
    resized = F.interpolate(table.T.unsqueeze(0).float(), size=length, mode="linear")
    return resized.squeeze(0).T.to(table.dtype)


def sam_resizer(name: str, tensor: Tensor, shape: torch.Size) -> Tensor | None:
    """Resize SAM ViT's input-size-dependent tables; None for anything else."""
    if name.endswith("pos_embed") and tensor.dim() == 4 and tensor.shape[::3] == shape[::3]:
        return resize_pos_embed(tensor, (shape[1], shape[2]))
    if name.endswith((".rel_pos_h", ".rel_pos_w")) and tensor.dim() == 2 and tensor.shape[1] == shape[1]:
        return resize_rel_pos(tensor, shape[0])
    return None


@dataclass
class KeyReport:
    """What a successful load did (a failed one raises instead); `describe()` goes into the
    weights label that every output of a cell carries."""

    path: Path
    digest: str
    loaded: int
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.path.name}, sha256 {self.digest[:12]}",
                 f"{self.loaded} tensors loaded, 0 missing, 0 unexpected"]
        parts += [f"{name} resized {_shape(old)} -> {_shape(new)}" for name, (old, new) in self.resized.items()]
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored (modules this benchmark does not use)")
        return ", ".join(parts)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _examples(names: list[str]) -> str:
    more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def load_checked(
    model: nn.Module,
    state: Mapping[str, Tensor],
    path: Path,
    what: str,
    resize: Resizer | None = None,
    ignore: tuple[str, ...] = (),
    own: tuple[str, ...] = (),
) -> KeyReport:
    """Load `state` into `model` only if it fits; otherwise raise naming what does not.

    ignore: checkpoint-key prefixes that belong to modules the benchmark drops (SAM2's video
    memory); they are counted in the report, not loaded. own: model-key prefixes that no
    checkpoint holds (the TAL); they are neither loaded nor reported missing.
    A checkpoint fits when every remaining model tensor is present with the model's shape
    (after `resize`) and no key is left over.
    """
    expected = {name: t for name, t in model.state_dict().items() if not name.startswith(own)}
    ignored = sorted(name for name in state if name.startswith(ignore))
    kept = {name: t for name, t in state.items() if not name.startswith(ignore)}
    missing = sorted(set(expected) - set(kept))
    unexpected = sorted(set(kept) - set(expected))
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    mismatched: list[str] = []
    loadable: dict[str, Tensor] = {}
    for name in sorted(set(expected) & set(kept)):
        tensor, target = kept[name], expected[name].shape
        if tensor.shape != target and resize is not None:
            fitted = resize(name, tensor, target)
            if fitted is not None:
                resized[name] = (tuple(tensor.shape), tuple(target))
                tensor = fitted
        if tensor.shape != target:
            mismatched.append(f"{name} {_shape(tuple(tensor.shape))} vs {_shape(tuple(target))}")
            continue
        loadable[name] = tensor
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es) (checkpoint vs model): {_examples(mismatched)}")
        if missing:
            problems.append(f"{len(missing)} model tensor(s) missing from the file: {_examples(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s) in the file: {_examples(unexpected)}")
        raise ValueError(f"checkpoint {path} does not fit {what}: " + "; ".join(problems))
    model.load_state_dict(loadable, strict=False)
    return KeyReport(Path(path), sha256(path), len(loadable), resized, ignored)
