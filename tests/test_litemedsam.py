"""LiteMedSAM with the paper's text-prompt path, on its real pretrained weights."""
from __future__ import annotations

import json
import os

import pytest
import torch

import methods
from benchmark.config import validate
from benchmark.engine.cell import run_cell
from benchmark.models import build_backbone, litemedsam, text
from tests.conftest import tiny_grid

LITE = {"name": "litemedsam", "weights": "pretrained", "text_encoder": text.MINILM, "prompt": "Vein",
        "tal_norm": "layer", "train_norms": True}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_text_embedding_is_computed_once_and_cached(cache_dir, monkeypatch):
    first = text.text_embedding(text.MINILM, "Vein", cache_dir)
    assert first.shape == (384,) and torch.isfinite(first).all()

    def refuse(prompt: str) -> torch.Tensor:
        raise AssertionError("the encoder ran although a cached embedding exists")

    monkeypatch.setitem(text.ENCODERS, text.MINILM, (refuse, 384))
    assert torch.equal(text.text_embedding(text.MINILM, "Vein", cache_dir), first)
    with pytest.raises(AssertionError):
        text.text_embedding(text.MINILM, "Artery", cache_dir)


def test_pretrained_forward_and_trainable_set(cache_dir):
    backbone = build_backbone(LITE, cache_dir)
    assert "sha256 79d8c9dca6db" in backbone.weights
    model = backbone.model
    frozen_total = sum(p.numel() for p in model.parameters())
    assert frozen_total == 9_791_300 + (384 * 256 + 256) + 2 * 256  # LiteMedSAM + TAL (linear + LayerNorm)
    adapted = methods.apply_method(model, {"name": "salt", "rank": 4}, backbone.components)
    assert len(adapted) == 10 * 4  # 10 TinyViT blocks x (qkv, proj, fc1, fc2)
    for name, p in model.named_parameters():
        if name.startswith(tuple(backbone.extra_trainable)):
            p.requires_grad_(True)
    logits = model(torch.rand(1, 3, 256, 256))
    assert logits.shape == (1, 1, 256, 256)
    logits.mean().backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert reached <= trainable
    assert any(n.endswith(".X") for n in reached) and any(n.startswith("tal.") for n in reached)
    assert not any(n.startswith("image_encoder.layers.0.") for n in trainable)


def test_missing_checkpoint_is_named(cache_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        litemedsam.build({**LITE, "checkpoint": str(tmp_path / "nowhere.pth")}, cache_dir)


def test_tiny_salt_cell_end_to_end(tmp_path):
    grid = tiny_grid(
        tmp_path,
        input_size=256,
        datasets={"dark": {"kind": "synthetic", "modality": "dark_fundus", "n_train": 2, "n_test": 1, "size": 256}},
        baselines=[],
        backbones={"lite": LITE},
        methods=[{"name": "salt", "rank": 4}],
        train={"epochs": 1, "batch_size": 2, "lr": 1e-3, "augment": False},
    )
    summary = json.loads(run_cell(validate(grid), "lite-salt_r4-dark-s0").read_text())
    assert summary["weights"].startswith("LiteMedSAM pretrained")
    assert summary["method"]["group"] == "peft" and summary["trained"]["epochs"] == 1
    assert 0 < summary["params"]["trainable"] < summary["params"]["total"]
    assert summary["metrics"]["n_images"] == 1
    # one AdamW step at lr 1e-3 moves every alpha by about the learning rate, and the summary says so
    moved = summary["trained"]["scale_shift_movement"]
    assert set(moved) == {"attn.qkv", "attn.proj", "mlp"} and moved["attn.qkv"]["layers"] == 10
    assert 0 < moved["attn.qkv"]["abs_alpha_minus_1"]["median"] <= moved["attn.qkv"]["abs_alpha_minus_1"]["max"] <= 1.1e-3
    assert summary["provenance"]["torch_threads"] == len(os.sched_getaffinity(0))  # threads: 0 = every core
    assert summary["regulariser"] == {"weight": 0.01, "forms": ["||alpha * sigma_r + beta - sigma_r|| + ||X Y|| (eq. 5)"]}
    params = summary["params"]
    assert params["trainable_pct_with_text_encoder"] == pytest.approx(
        100 * params["trainable"] / (params["total"] + params["text_encoder_parameters"]))
    cost = json.loads((tmp_path / "results" / "cells" / "lite-salt_r4-dark-s0" / "cost.json").read_text())
    training = cost["training"]  # SALT: a weight rebuild per batch, no per-image branch, a one-time SVD
    assert training["gflops_rebuild_per_batch"] > 0 and training["gflops_adapters_per_image"] == pytest.approx(0, abs=1e-6)
    assert training["gflops_added_per_image"] == pytest.approx(training["gflops_rebuild_per_batch"] / 2)
    assert training["gflops_svd_once"] > 0 and training["batch_size"] == 2
    assert training["gflops_merged_per_image"] == pytest.approx(cost["gflops_inference"], rel=1e-3)
