"""QLoRA: LoRA over 4-bit NF4 encoder linears (bitsandbytes), against a direct implementation of
y = dequant(W_nf4) x + b + (alpha / r) B A x; frozen 4-bit weights, honest counts and memory,
never merged, and a config error (not a silent fp32 LoRA) where 4-bit layers cannot run."""
from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

import methods
from benchmark.config import validate
from benchmark.cost.counting import count_macs
from benchmark.cost.parameters import count_parameters
from benchmark.cost.training import encoder_megabytes
from benchmark.errors import ConfigError
from methods import qlora
from methods.qlora import QLoRALayer
from tests.conftest import tiny_grid
from tests.test_methods import COMPONENTS, Toy, toy, toy_input

SPEC = {"name": "qlora", "rank": 4, "lora_alpha": 8, "targets": ["attn.qkv", "mlp"]}


def _qlora_toy() -> nn.Module:
    model = toy()
    methods.apply_method(model, dict(SPEC), COMPONENTS)
    torch.manual_seed(2)
    for layer in methods.adapted_layers(model).values():  # B starts at zero: give the update a value
        nn.init.normal_(layer.tuned.lora_B["default"].weight, std=0.1)
    return model


def test_every_block_linear_is_4bit_nf4_and_only_targets_get_lora():
    model = _qlora_toy()
    for index in range(2):
        block = model.blocks[index]
        for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            layer = block.get_submodule(name)
            base = layer.tuned.get_base_layer() if isinstance(layer, QLoRALayer) else layer
            assert isinstance(base, bnb.nn.Linear4bit), name
            assert base.weight.dtype == torch.uint8 and base.weight.quant_state.quant_type == "nf4"
        assert isinstance(block.attn.qkv, QLoRALayer) and not isinstance(block.attn.proj, QLoRALayer)
    assert type(model.neck[0]) is nn.Conv2d  # outside the blocks, not a Linear: untouched


def test_forward_is_the_dequantized_weight_plus_the_lora_update():
    model = _qlora_toy()
    for name, layer in methods.adapted_layers(model).items():
        base = layer.tuned.get_base_layer()
        x = torch.randn(2, 16, base.in_features)
        weight = bnb.functional.dequantize_4bit(base.weight.data, base.weight.quant_state)
        a, b = layer.tuned.lora_A["default"].weight, layer.tuned.lora_B["default"].weight
        direct = x @ weight.T + base.bias + (8 / 4) * (x @ a.T) @ b.T
        torch.testing.assert_close(layer(x), direct, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(layer.adapted_weight(), weight + 2.0 * b @ a, rtol=1e-5, atol=1e-6)


def test_the_weights_really_are_4bit_approximations_of_the_originals():
    plain, model = toy(), _qlora_toy()
    original = plain.blocks[0].attn.qkv.weight
    base = model.blocks[0].attn.qkv.tuned.get_base_layer()
    weight = bnb.functional.dequantize_4bit(base.weight.data, base.weight.quant_state)
    error = (weight - original).norm() / original.norm()
    assert 0.01 < error < 0.15  # NF4 with absmax over blocks of 64: a few percent, never exact
    assert base.weight.numel() == original.numel() // 2  # two 4-bit weights per byte


def test_gradients_reach_only_the_lora_pairs():
    model = _qlora_toy()
    model(toy_input()).square().mean().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_A." in name or ".lora_B." in name for name in with_grad)
    assert all(not p.requires_grad for p in model.parameters() if p.dtype == torch.uint8)


def test_counts_are_lora_counts_and_the_4bit_weights_count_as_weights():
    lora = toy()
    methods.apply_method(lora, {**SPEC, "name": "lora"}, COMPONENTS)
    assert count_parameters(_qlora_toy()) == count_parameters(lora)


def test_qlora_is_evaluated_unmerged_and_says_so():
    model = _qlora_toy()
    x = toy_input()
    before = model(x)
    merged = methods.merge_model(model)
    assert all(isinstance(layer, QLoRALayer) for layer in methods.adapted_layers(merged).values())
    assert torch.equal(merged(x), before)
    assert any("evaluated unmerged" in layer.note for layer in methods.adapted_layers(merged).values())


def test_the_encoder_memory_is_reported_as_stored_and_at_float32():
    holder = nn.Module()
    holder.image_encoder = Toy(dim=128)  # 1 MB of block linears: the sizes survive rounding to 0.01 MB
    holder.image_encoder.register_buffer("index_table", torch.arange(50_000))  # int64, as TinyViT's bias indices
    plain = encoder_megabytes(holder)
    assert plain["as_stored"] == plain["at_float32"]  # a float32 model with integer buffers: nothing to save
    methods.apply_method(holder.image_encoder, {**SPEC, "targets": ["attn.qkv"]}, COMPONENTS)
    holder.image_encoder.requires_grad_(False)  # only the sizes matter here
    quantized = encoder_megabytes(holder)
    # float32 size grows only by the LoRA pairs; the 4-bit linears shrink about 8x (plus their scales)
    assert quantized["at_float32"] > plain["at_float32"]
    assert quantized["as_stored"] < 0.5 * quantized["at_float32"]


def test_a_4bit_layer_is_counted_as_the_linear_it_stands_for():
    linear = nn.Linear(256, 512)
    four_bit = qlora.quantized(linear, "nf4", False, torch.float32)
    for rows in (1, 64):  # one row runs bitsandbytes' gemv kernel, several its gemm
        x = torch.randn(1, rows, 256)
        assert count_macs(four_bit, x) == count_macs(linear, x) == (rows * 256 * 512, "fvcore")


def test_a_device_without_4bit_kernels_fails_validation_naming_it(tmp_path, monkeypatch):
    def no_kernels(*args, **kwargs):
        raise NotImplementedError("no 4-bit kernel for this device")

    grid = tiny_grid(tmp_path, baselines=[], input_size=256, methods=[{"name": "qlora", "rank": 4}],
                     backbones={"litemedsam": {"name": "litemedsam", "tal_norm": "layer"}})
    qlora.check_device.cache_clear()
    monkeypatch.setattr(qlora, "quantized", no_kernels)
    try:
        with pytest.raises(ConfigError, match=r"'qlora_r4': bitsandbytes .* cannot run 4-bit \(NF4\) layers on cpu.*"
                                              r"not replaced by float32 LoRA"):
            validate(grid)
    finally:
        qlora.check_device.cache_clear()
    monkeypatch.undo()
    assert validate(grid)["methods"][0]["name"] == "qlora"  # where they run (this CPU), the grid is valid
