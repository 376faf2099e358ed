"""What a cell summary says about its regulariser and about how far the singular-value scales and
shifts moved (docs/official_protocol.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from benchmark.data.synthetic import generate_image
from benchmark.engine.losses import SegmentationObjective
from benchmark.engine.scales import regularisers, scale_shift_movement
from benchmark.engine.train import set_train_mode
from benchmark.models import build_backbone, text

LITE = {"name": "litemedsam", "weights": "pretrained", "text_encoder": text.MINILM, "prompt": "Vein",
        "tal_norm": "layer", "train_norms": True}
STEPS, LR = 2, 3e-3


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    pairs = [generate_image("bright_speckle", 256, rng) for _ in range(2)]
    images = torch.stack([torch.from_numpy(image).float().permute(2, 0, 1) / 255 for image, _ in pairs])
    masks = torch.stack([torch.from_numpy(mask > 0).float()[None] for _, mask in pairs])
    return images, masks


def test_movement_reports_what_training_did_to_alpha_and_beta(batch, tmp_path_factory):
    """On real LiteMedSAM weights, two AdamW steps move every trained alpha and beta by at most
    two learning-rate steps, and the summary's statistics say so per component."""
    torch.manual_seed(0)
    backbone = build_backbone(LITE, tmp_path_factory.mktemp("cache"))
    model = backbone.model
    methods.apply_method(model, {"name": "svd", "reg": "eq5", "targets": ["attn.qkv"]}, backbone.components)
    set_train_mode(model)
    assert scale_shift_movement(model)["attn.qkv"]["abs_alpha_minus_1"] == {"median": 0.0, "max": 0.0}
    objective = SegmentationObjective(0.01)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    images, masks = batch
    for _ in range(STEPS):
        loss, _seg, _reg = objective(model, model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    movement = scale_shift_movement(model)
    assert set(movement) == {"attn.qkv"} and movement["attn.qkv"]["layers"] == 10
    alphas = torch.cat([layer.alpha.detach().flatten() for layer in methods.adapted_layers(model).values()])
    moved = movement["attn.qkv"]["abs_alpha_minus_1"]
    assert moved == {"median": float((alphas - 1).abs().median()), "max": float((alphas - 1).abs().max())}
    assert 0 < moved["median"] <= moved["max"] <= STEPS * LR * 1.01
    assert regularisers(model) == ["||alpha * sigma + beta - sigma|| (eq. 5, scale/shift term)"]


def test_summary_names_each_regulariser():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    methods.apply_method(model, {"name": "svd", "reg": "eq5", "targets": ["lin"]}, {"lin": r"\d"})
    assert regularisers(model) == ["||alpha * sigma + beta - sigma|| (eq. 5, scale/shift term)"]
    lora = torch.nn.Sequential(torch.nn.Linear(8, 8))
    methods.apply_method(lora, {"name": "lora", "targets": ["lin"]}, {"lin": r"\d"})
    assert regularisers(lora) == [] and scale_shift_movement(lora) == {}
