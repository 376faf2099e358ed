"""Held-out evaluation: merged model, logits > 0, per-image Dice and HD95 at network resolution (as the
paper) or at each image's native resolution (logits un-padded and resized back before thresholding)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.dataset import VesselDataset
from benchmark.data.prompts import stack_prompts, to_device
from benchmark.data.transforms import resized_shape
from benchmark.engine.precision import autocast
from benchmark.metrics import score
from benchmark.models.prompted import segment

RESOLUTIONS = ("network", "native")


def resolution_convention(resolution: str, size: int) -> str:
    """The sentence a cell summary quotes for the resolution its metrics were computed at."""
    if resolution == "network":
        return f"network input resolution ({size} x {size}, resized and padded)"
    return (f"native image resolution (logits of the {size} x {size} input un-padded, resized bilinearly to "
            "the image's own size, thresholded at 0; compared with the original mask)")


def native_logits(logits: torch.Tensor, orig_size: tuple[int, int], size: int) -> torch.Tensor:
    """Undo resize_pad on one S x S logit map: drop the padding, resize bilinearly to (H, W)."""
    height, width = orig_size
    content_h, content_w = resized_shape(height, width, size)
    content = logits[:content_h, :content_w][None, None].float()
    return F.interpolate(content, size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def native_prediction(logits: torch.Tensor, orig_size: tuple[int, int], size: int) -> np.ndarray:
    """The mask at the image's own size: native_logits thresholded at 0."""
    return (native_logits(logits, orig_size, size) > 0).numpy()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: VesselDataset, device: torch.device, batch_size: int,
             resolution: str = "network", precision: str = "fp32",
             keep: dict[str, np.ndarray] | None = None) -> list[dict]:
    """One row per test image: id, dice, hd95 (NaN where HD95 is undefined), at `resolution`.
    The forward pass runs in `precision`; logits are thresholded and scored in float32. With
    `keep`, each image's scored binary prediction is stored there under its id."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown metrics resolution {resolution!r}; allowed: {', '.join(RESOLUTIONS)}")
    model.eval()
    rows = []
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        items = [dataset[i] for i in indices]
        images = torch.stack([it["image"] for it in items]).to(device)
        with autocast(precision, device):
            prompts = stack_prompts([it["prompt"] for it in items]) if "prompt" in items[0] else None
            logits = segment(model, images, to_device(prompts, device))  # each image with its own prompt
        logits = logits[:, 0].float().cpu()
        for index, item, item_logits in zip(indices, items, logits):
            if resolution == "network":
                prediction, truth = (item_logits > 0).numpy(), item["mask"][0].numpy() > 0.5
            else:
                prediction = native_prediction(item_logits, item["orig_size"], dataset.size)
                truth = dataset.native_mask(index)
            rows.append({"id": item["id"], **score(prediction, truth)})
            if keep is not None:
                keep[item["id"]] = prediction
    return rows
