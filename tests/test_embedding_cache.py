"""The frozen encoder's features cached across epochs: same model function, encoder run once per
image, used only where it is exact, and recorded in the summary."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import methods
from benchmark.models.cell_model import build_cell_model
from benchmark.config import validate
from benchmark.engine.cell import run_cell
from benchmark.engine.train import set_train_mode, train
from benchmark.grid import expand_cells
from benchmark.models.embedding_cache import EmbeddingCache, why_not_cached
from tests.conftest import tiny_grid


def _grid(tmp_path, methods_=None, augment=False, epochs=2):
    grid = tiny_grid(tmp_path, baselines=[], input_size=256,
                     backbones={"litemedsam": {"name": "litemedsam", "tal_norm": "layer"}},
                     methods=methods_ or [{"name": "decoder"}])
    grid["datasets"]["bright"].update(size=256, n_train=3, n_test=1)
    grid["train"] = {**grid["train"], "epochs": epochs, "augment": augment, "threads": 1}
    return validate(grid)


@pytest.fixture(scope="module")
def decoder_model(tmp_path_factory):
    config = _grid(tmp_path_factory.mktemp("grid"))
    cell = expand_cells(config)["litemedsam-decoder-bright-s0"]
    return build_cell_model(cell, config).model


def _encoder_calls(model: nn.Module) -> list[int]:
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def test_decoder_only_trains_no_encoder_parameter_but_the_decoder_and_prompt_path(decoder_model):
    trainable = {name for name, p in decoder_model.named_parameters() if p.requires_grad}
    assert not [name for name in trainable if name.startswith("image_encoder.")]
    assert any(name.startswith("mask_decoder.") for name in trainable)
    assert any(name.startswith("prompt_encoder.") for name in trainable)
    assert any(name.startswith("tal.") for name in trainable)
    # the backbone's extra set still trains the decoder's own norms
    assert "mask_decoder.transformer.norm_final_attn.weight" in trainable


def test_cached_forward_and_gradients_equal_the_uncached_model_and_each_image_is_encoded_once(decoder_model):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 256, 256)
    model = decoder_model
    set_train_mode(model)  # as training runs it: frozen BatchNorms (TinyViT's stem) in eval mode
    calls = _encoder_calls(model)
    model.embedding_cache = None
    plain = model(images[:2])
    plain.square().mean().backward()
    # the prompt encoder's point and mask paths take no part in a text-prompted forward: no gradient
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert any(name.startswith("mask_decoder.") for name in plain_grads)
    model.zero_grad(set_to_none=True)
    calls.clear()

    model.embedding_cache = EmbeddingCache()
    cached = model(images[:2])
    assert calls == [1, 1]  # each missing image on its own
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-5)
    cached.square().mean().backward()
    cached_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert cached_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    model.zero_grad(set_to_none=True)

    again = model(images[[1, 2, 0]])  # another order, one new image
    assert calls == [1, 1, 1]
    torch.testing.assert_close(again[0], cached[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again[2], cached[0], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # each stored feature is the encoder's output on that image alone, to the bit
        alone = model.image_encoder((images[2:3] - model.pixel_mean) / model.pixel_std)
    assert any(torch.equal(alone, stored) for stored in model.embedding_cache.store.values())
    assert model.embedding_cache.report() == {"used": True, "images": 3, "hits": 2, "misses": 3,
                                              "megabytes": pytest.approx(3 * 256 * 64 * 64 * 4 / 2**20, abs=0.1)}
    model.train()
    with pytest.raises(RuntimeError, match="BatchNorm of the image encoder is in training mode"):
        model(images[:1])
    model.embedding_cache = None


def test_the_cache_is_refused_where_the_features_would_change(tmp_path, decoder_model):
    assert why_not_cached(decoder_model, augment=False) is None
    assert "augmented" in why_not_cached(decoder_model, augment=True)
    assert "baseline" in why_not_cached(nn.Linear(2, 2), augment=False)
    config = _grid(tmp_path, [{"name": "lora", "rank": 2}])
    lora = build_cell_model(expand_cells(config)["litemedsam-lora_r2-bright-s0"], config).model
    assert why_not_cached(lora, augment=False) == "the image encoder trains"
    decoder_model.image_encoder.add_module("dropout_probe", nn.Dropout(0.1))
    try:
        assert "dropout" in why_not_cached(decoder_model, augment=False)
    finally:
        del decoder_model.image_encoder.dropout_probe


def test_a_resumed_cached_run_repeats_the_uninterrupted_run(tmp_path):
    config = _grid(tmp_path)
    cell = expand_cells(config)["litemedsam-decoder-bright-s0"]
    from benchmark.engine.cell import cell_datasets

    train_set = cell_datasets(cell, config)["train"]
    cpu = torch.device("cpu")

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        model = build_cell_model(cell, config).model
        model.embedding_cache = EmbeddingCache()
        return model

    whole, _, _ = train(fresh(), train_set, config["train"], tmp_path / "whole", 0, cpu, "f")
    train(fresh(), train_set, {**config["train"], "epochs": 1}, tmp_path / "parts", 0, cpu, "f")
    resumed, _, _ = train(fresh(), train_set, config["train"], tmp_path / "parts", 0, cpu, "f")
    assert [row["loss"] for row in resumed] == [row["loss"] for row in whole]


def test_a_decoder_cell_records_its_cache(tmp_path):
    """Training and validation images are each encoded once; every later epoch reads them all."""
    config = _grid(tmp_path)
    summary = json.loads(run_cell(config, "litemedsam-decoder-bright-s0").read_text())
    cache, images = summary["trained"]["embedding_cache"], summary["trained"]["n_images"]
    seen = images["train"] + images["val"]
    assert cache["used"] and cache["images"] == cache["misses"] == seen
    assert cache["hits"] == (summary["trained"]["epochs"] - 1) * seen
    assert methods.get_method("decoder").frozen_encoder
