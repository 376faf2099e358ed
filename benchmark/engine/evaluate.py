"""Held-out evaluation: merged model, logits > 0, per-image Dice and HD95 at network resolution."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.data.dataset import VesselDataset
from benchmark.metrics import score


@torch.no_grad()
def evaluate(model: nn.Module, dataset: VesselDataset, device: torch.device, batch_size: int) -> list[dict]:
    """One row per test image: id, dice, hd95 (NaN where HD95 is undefined)."""
    model.eval()
    rows = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        logits = model(torch.stack([it["image"] for it in items]).to(device))
        for item, prediction in zip(items, (logits[:, 0] > 0).cpu().numpy()):
            rows.append({"id": item["id"], **score(prediction, item["mask"][0].numpy() > 0.5)})
    return rows
