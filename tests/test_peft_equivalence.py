"""lora and dora against Hugging Face peft on the same weights and adapter values (peft is a test dependency)."""
from __future__ import annotations

import pytest
import torch
from test_methods import ATOL, COMPONENTS, RTOL, randomise, toy, toy_input

import methods
from benchmark.cost.parameters import count_parameters

peft = pytest.importorskip("peft", reason="peft is the reference implementation these tests compare against")

TARGETS = ["attn.qkv", "attn.proj", "mlp", "neck"]
PATTERN = "|".join(f"(?:{COMPONENTS[t]})" for t in TARGETS)


def pair(name: str, use_dora: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and peft's adaptation of the same toy backbone (linear and conv layers), with our
    randomised adapter values copied into peft's layers."""
    ours = toy()
    methods.apply_method(ours, {"name": name, "rank": 3, "lora_alpha": 6, "targets": TARGETS}, COMPONENTS)
    config = peft.LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0, target_modules=PATTERN, use_dora=use_dora)
    reference = peft.get_peft_model(toy(), config)
    adapted = methods.adapted_layers(ours)
    assert len(adapted) == 9
    with torch.no_grad():
        for layer_name, layer in adapted.items():
            randomise(layer)
            theirs = reference.base_model.model.get_submodule(layer_name)
            down, up = theirs.lora_A["default"].weight, theirs.lora_B["default"].weight
            down.copy_(layer.lora_A.reshape(down.shape))
            up.copy_(layer.lora_B.reshape(up.shape))
            if use_dora:
                magnitude = theirs.lora_magnitude_vector["default"].weight
                magnitude.copy_(layer.magnitude.reshape(magnitude.shape))
    return ours, reference


@pytest.mark.parametrize(("name", "use_dora"), [("lora", False), ("dora", True)])
def test_outputs_match_peft(name: str, use_dora: bool) -> None:
    ours, reference = pair(name, use_dora)
    ours.eval()
    reference.eval()
    x = toy_input()
    expected = reference(x)
    assert not torch.allclose(expected, toy()(x), atol=1e-3), "the adapters must change the output"
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)
    merged_reference = reference.merge_and_unload()
    torch.testing.assert_close(methods.merge_model(ours)(x), merged_reference(x), atol=ATOL, rtol=RTOL)


def test_trainable_parameter_count_matches_peft() -> None:
    for name, use_dora in (("lora", False), ("dora", True)):
        ours, reference = pair(name, use_dora)
        assert count_parameters(ours)[0] == reference.get_nb_trainable_parameters()[0]
