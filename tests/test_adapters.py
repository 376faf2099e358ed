"""Adapter-only checkpoints: exact round trips into a fresh backbone, and clear refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_methods import COMPONENTS, Toy, randomise, toy, toy_input

import methods
from benchmark.grid import ROW_KEYS
from benchmark.engine.adapters import (
    FORMAT,
    AdapterMismatchError,
    frozen_fingerprint,
    load_adapter,
    read_metadata,
    save_adapter,
)

TARGETS = ["attn.qkv", "attn.proj", "mlp", "neck"]
SPECS = {
    "salt": {"id": "salt_r2", "name": "salt", "rank": 2, "sv_rank": 0.5, "targets": TARGETS},
    "svd": {"name": "svd", "targets": TARGETS},
    "lora": {"name": "lora", "rank": 3, "targets": TARGETS},
    "dora": {"name": "dora", "rank": 3, "targets": TARGETS},
    "pissa": {"name": "pissa", "rank": 3, "targets": TARGETS},
    "full": {"name": "full"},
}


def adapted(spec: dict, model: Toy | None = None) -> Toy:
    """A toy backbone with the method applied and, as the engine does, a norm trained besides."""
    model = toy() if model is None else model
    methods.apply_method(model, {k: v for k, v in spec.items() if k not in ROW_KEYS}, COMPONENTS)
    model.blocks[0].norm.weight.requires_grad_(True)
    return model


def trained(spec: dict) -> Toy:
    model = adapted(spec)
    with torch.no_grad():
        for layer in methods.adapted_layers(model).values():
            randomise(layer)
        model.blocks[0].norm.weight.add_(0.5)
    return model


@pytest.mark.parametrize("name", sorted(SPECS))
def test_round_trip_reproduces_outputs_exactly(tmp_path: Path, name: str) -> None:
    source, x = trained(SPECS[name]), toy_input()
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, source, method=SPECS[name], backbone="toy", weights="toy weights (seed 1)")
    fresh = adapted(SPECS[name])
    assert not torch.equal(fresh(x), source(x))
    meta = load_adapter(fresh, path, method=SPECS[name], backbone="toy", weights="toy weights (seed 1)")
    assert torch.equal(fresh(x), source(x))
    assert meta["method"] == SPECS[name]


def test_file_holds_only_trainable_tensors_and_the_metadata(tmp_path: Path) -> None:
    model = trained(SPECS["salt"])
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, method=SPECS["salt"], backbone="toy", weights="w")
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(load_file(str(path))) == expected
    assert not any(key.endswith((".U", ".Vh", ".sigma", ".weight")) for key in expected - {"blocks.0.norm.weight"})
    meta = read_metadata(path)
    assert meta["format"] == FORMAT and meta["backbone"] == "toy" and meta["weights"] == "w"
    assert meta["frozen_sha256"] == frozen_fingerprint(adapted(SPECS["salt"])), "training must not change it"
    assert meta["layers"]["blocks.1.mlp.fc2"] == {"component": "mlp", "class": "SALTLayer", "shape": [24, 48]}
    assert meta["layers"]["neck.0"] == {"component": "neck", "class": "SALTLayer", "shape": [8, 24, 3, 3]}
    assert len(meta["layers"]) == 9


def test_spec_defaults_and_row_keys_do_not_count_as_differences(tmp_path: Path) -> None:
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, trained(SPECS["salt"]), method=SPECS["salt"], backbone="toy", weights="w")
    implicit = {"name": "salt", "rank": 2, "targets": TARGETS, "label": "SALT r2"}
    load_adapter(adapted(implicit), path, method=implicit)


@pytest.fixture
def salt_file(tmp_path: Path) -> Path:
    path = tmp_path / "salt.safetensors"
    save_adapter(path, trained(SPECS["salt"]), method=SPECS["salt"], backbone="toy", weights="w")
    return path


def test_another_method_is_refused_naming_file_and_difference(salt_file: Path) -> None:
    with pytest.raises(AdapterMismatchError, match=r"salt\.safetensors: trained with method 'salt', not 'lora'"):
        load_adapter(adapted(SPECS["lora"]), salt_file, method=SPECS["lora"])
    other_rank = {**SPECS["salt"], "rank": 4}
    with pytest.raises(AdapterMismatchError, match=r"salt\.safetensors: trained with another salt spec: rank: checkpoint 2, model 4$"):
        load_adapter(adapted(other_rank), salt_file, method=other_rank)


def test_layers_of_another_method_or_shape_are_refused_before_loading(salt_file: Path) -> None:
    lora = adapted(SPECS["lora"])
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    with pytest.raises(AdapterMismatchError, match=r"adapted layers differ from the model's: blocks\.0\.attn\.proj: .*'SALTLayer'.*'LoRALayer'"):
        load_adapter(lora, salt_file)
    assert all(torch.equal(before[k], v) for k, v in lora.state_dict().items())
    torch.manual_seed(1)
    wider = adapted(SPECS["salt"], Toy(dim=16))
    with pytest.raises(AdapterMismatchError, match=r"'shape': \[72, 24\].*'shape': \[48, 16\]"):
        load_adapter(wider, salt_file)


def test_other_frozen_weights_are_refused(salt_file: Path) -> None:
    """Same architecture, another draw of the frozen backbone: outputs would silently differ."""
    torch.manual_seed(7)
    with pytest.raises(AdapterMismatchError, match=r"salt\.safetensors: this model's frozen weights differ"):
        load_adapter(adapted(SPECS["salt"], Toy()), salt_file)


def test_missing_trainable_tensors_are_refused(salt_file: Path) -> None:
    model = adapted(SPECS["salt"])
    model.blocks[1].norm.bias.requires_grad_(True)
    with pytest.raises(AdapterMismatchError, match=r"tensors do not fit this model: missing blocks\.1\.norm\.bias"):
        load_adapter(model, salt_file)


def test_other_backbone_or_weights_are_refused(salt_file: Path) -> None:
    with pytest.raises(AdapterMismatchError, match=r"trained on backbone 'toy', not 'litemedsam'"):
        load_adapter(adapted(SPECS["salt"]), salt_file, backbone="litemedsam")
    with pytest.raises(AdapterMismatchError, match=r"trained on weights 'w', not 'random'"):
        load_adapter(adapted(SPECS["salt"]), salt_file, weights="random")


def test_files_that_are_not_adapters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"adapter checkpoint not found: .*none\.safetensors"):
        read_metadata(tmp_path / "none.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(AdapterMismatchError, match=r"garbage\.safetensors: not a safetensors file"):
        read_metadata(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": json.dumps("pt")})
    with pytest.raises(AdapterMismatchError, match=r"foreign\.safetensors: not a saltbench adapter checkpoint"):
        read_metadata(foreign)
