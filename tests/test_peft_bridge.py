"""The peft bridge: any Hugging Face peft tuner through the plugin contract, by peft's own classes."""
from __future__ import annotations

import copy

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

import methods
from benchmark.config import validate
from benchmark.cost.parameters import count_parameters
from benchmark.engine.adapters import load_adapter, save_adapter
from benchmark.errors import ConfigError
from methods import AdaptedLayer, apply_method, merge_model, regularization
from methods.peft import PeftLayer, tuner_names
from tests.conftest import tiny_grid
from tests.test_methods import ALL_TARGETS, COMPONENTS, toy, toy_input

LINEAR_TARGETS = ["attn.qkv", "attn.proj", "mlp"]
SPECS = {
    "lora": {"tuner": "lora", "r": 3, "lora_alpha": 6},
    "adalora": {"tuner": "adalora", "init_r": 3, "target_r": 2, "total_step": 10},
    "vera": {"tuner": "vera", "r": 8},
    "loha": {"tuner": "loha", "r": 3},
    "lokr": {"tuner": "lokr", "r": 3},
    "ia3": {"tuner": "ia3", "feedforward_modules": []},
}


def adapted_toy(tuner: str, targets: list[str] | None = None) -> nn.Module:
    model = toy()
    targets = targets or (LINEAR_TARGETS if tuner == "vera" else ALL_TARGETS)
    apply_method(model, {"name": "peft", "targets": targets, **SPECS[tuner]}, COMPONENTS)
    return model


@torch.no_grad()
def randomise(model: nn.Module) -> None:
    """Every trainable tensor away from its init (LoRA's B starts at zero: the update would be zero)."""
    generator = torch.Generator().manual_seed(3)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=generator) * 0.2)


@pytest.mark.parametrize("tuner", sorted(SPECS))
def test_each_tuner_is_peft_s_layer_and_merges_to_the_same_function(tuner: str) -> None:
    model, x = adapted_toy(tuner), toy_input()
    layers = methods.adapted_layers(model)
    assert layers and all(isinstance(layer, PeftLayer) and isinstance(layer.tuned, BaseTunerLayer)
                          for layer in layers.values())
    randomise(model)
    unmerged = model(x).detach()
    merged = merge_model(model)
    assert not methods.adapted_layers(merged), "every tested tuner merges"
    assert [type(m) for m in merged.modules()] == [type(m) for m in toy().modules()]
    torch.testing.assert_close(merged(x), unmerged, atol=1e-5, rtol=1e-5)
    assert not torch.equal(unmerged, toy()(x)), "randomised adapters must change the output"


@pytest.mark.parametrize("tuner", sorted(SPECS))
def test_gradients_reach_only_peft_s_trainable_tensors_and_counts_add_up(tuner: str) -> None:
    model = adapted_toy(tuner)
    randomise(model)
    (model(toy_input()).square().mean() + regularization(model)).backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trainable and with_grad == trainable
    assert all(".tuned." in name for name in trainable), sorted(trainable)
    peft_own = [(name, p) for layer in methods.adapted_layers(model).values()
                for name, p in layer.tuned.named_parameters() if not name.startswith("base_layer.")]
    trained = sum(p.numel() for _, p in peft_own if p.requires_grad)
    added = sum(p.numel() for _, p in peft_own)  # AdaLoRA also keeps a frozen `ranknum`
    frozen_total = count_parameters(toy())[1]
    assert count_parameters(model) == (trained, frozen_total + added), "the frozen weight is counted once"


def test_peft_lora_equals_the_built_in_lora_on_the_same_values() -> None:
    built_in, bridged, x = toy(), toy(), toy_input()
    apply_method(built_in, {"name": "lora", "rank": 3, "lora_alpha": 6, "targets": ALL_TARGETS}, COMPONENTS)
    apply_method(bridged, {"name": "peft", "targets": ALL_TARGETS, **SPECS["lora"]}, COMPONENTS)
    ours, theirs = methods.adapted_layers(built_in), methods.adapted_layers(bridged)
    assert list(ours) == list(theirs)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, layer in ours.items():
            layer.lora_B.normal_(0.0, 0.3, generator=generator)
            peft_a = theirs[name].tuned.lora_A["default"].weight
            peft_b = theirs[name].tuned.lora_B["default"].weight
            peft_a.copy_(layer.lora_A.reshape(peft_a.shape))
            peft_b.copy_(layer.lora_B.reshape(peft_b.shape))
    assert count_parameters(built_in) == count_parameters(bridged)
    torch.testing.assert_close(bridged(x), built_in(x), atol=1e-5, rtol=1e-5)
    for name in ours:
        torch.testing.assert_close(theirs[name].adapted_weight(), ours[name].adapted_weight(), atol=1e-6, rtol=1e-5)


def test_adalora_regulariser_is_peft_s_orthogonality_penalty() -> None:
    model = adapted_toy("adalora")
    randomise(model)
    penalties = []
    for layer in methods.adapted_layers(model).values():
        p, q = layer.tuned.lora_A["default"], layer.tuned.lora_B["default"]
        penalties += [torch.linalg.norm(p @ p.T - torch.eye(p.shape[0])), torch.linalg.norm(q.T @ q - torch.eye(q.shape[1]))]
    direct = 0.5 * torch.stack(penalties).mean()  # AdaLoraConfig's default orth_reg_weight, mean over P and Q
    torch.testing.assert_close(regularization(model), direct)
    assert any("budget schedule" in layer.note for layer in methods.adapted_layers(model).values())


def test_adapter_only_checkpoint_reproduces_a_peft_model(tmp_path) -> None:
    spec = {"name": "peft", "targets": ALL_TARGETS, **SPECS["loha"]}
    trained = adapted_toy("loha")
    randomise(trained)
    save_adapter(tmp_path / "adapter.safetensors", trained, method=spec, backbone="toy", weights="random")
    fresh = adapted_toy("loha")
    load_adapter(fresh, tmp_path / "adapter.safetensors", method=spec, backbone="toy", weights="random")
    x = toy_input()
    assert torch.equal(fresh(x), trained(x))


def test_a_layer_peft_cannot_merge_is_evaluated_unmerged(monkeypatch) -> None:
    model = adapted_toy("lora")
    layer = next(iter(methods.adapted_layers(model).values()))
    monkeypatch.setattr(layer, "mergeable", False)
    merged = merge_model(copy.deepcopy(model))
    assert len(methods.adapted_layers(merged)) == 1


@pytest.mark.parametrize(("spec", "message"), [
    ({"tuner": "lorax"}, r"unknown tuner 'lorax'; peft .* offers: .*adalora.*loha.*lokr.*lora"),
    ({"tuner": "lora", "rank": 4}, r"unknown key\(s\) \['rank'\]; peft's LoraConfig takes: .*lora_alpha.*\br\b"),
    ({"tuner": "lora", "target_modules": ["x"]}, r"unknown key\(s\) \['target_modules'\]"),
    ({"tuner": "vera", "r": 4, "targets": ALL_TARGETS}, r"tuner 'vera' on .*neck: peft says: "),
])
def test_bad_bridge_specs_are_named_and_leave_the_model_untouched(spec: dict, message: str) -> None:
    model = toy()
    before = [type(m) for m in model.modules()]
    with pytest.raises(ValueError, match=message):
        apply_method(model, {"name": "peft", **spec}, COMPONENTS)
    assert [type(m) for m in model.modules()] == before
    assert not any(isinstance(m, (AdaptedLayer, BaseTunerLayer)) for m in model.modules())


def test_a_grid_with_a_bad_tuner_fails_validation(tmp_path) -> None:
    grid = tiny_grid(tmp_path, baselines=[], input_size=256, methods=[{"name": "peft", "tuner": "lorax"}],
                     backbones={"lite": {"name": "litemedsam", "weights": "random", "tal_norm": "layer"}})
    with pytest.raises(ConfigError, match="unknown tuner 'lorax'"):
        validate(grid)


def test_every_tested_tuner_is_offered() -> None:
    assert set(SPECS) <= set(tuner_names())
    assert "prefix_tuning" not in tuner_names(), "prompt-learning tuners adapt no layer"


def test_boft_says_in_its_notes_when_peft_trains_another_butterfly_factor_and_prints_nothing(capfd) -> None:
    """peft's BOFT tries to compile a CUDA extension for each layer and, without it, warns twice on
    stderr and trains boft_n_butterfly_factor 1 whatever the spec says. The warnings are noise; the
    changed factor is not, so the layers' note says it."""
    import warnings

    model = toy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_method(model, {"name": "peft", "targets": LINEAR_TARGETS, "tuner": "boft", "boft_block_size": 4,
                             "boft_block_num": 0, "boft_n_butterfly_factor": 2}, COMPONENTS)
    layers = methods.adapted_layers(model).values()
    assert [str(w.message) for w in caught] == [] and capfd.readouterr().err == ""
    without_extension = not all(layer.tuned.fbd_cuda_available for layer in layers)
    expected = ("BOFT trained with boft_n_butterfly_factor 1, not 2: peft's CUDA extension (fbd_cuda) could not be "
                "built on this host, and without it peft uses 1") if without_extension else ""
    assert {layer.note for layer in layers} == {expected}
