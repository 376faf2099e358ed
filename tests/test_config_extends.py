"""`extends:` makes a grid a variant of another: mappings merge key by key, lists replace, and the
shipped variant (config/paper_official.yaml) differs from config/paper.yaml only where it says."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.config import load_config, resolve_extends, validate
from benchmark.data.sources import data_label
from benchmark.errors import ConfigError
from tests.conftest import tiny_grid

REPO = Path(__file__).resolve().parents[1]


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: value}


def test_mappings_merge_and_lists_replace(tmp_path):
    base = tiny_grid(tmp_path)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    variant = {"extends": "base.yaml", "name": "variant", "train": {"lr": 0.5}, "seeds": [3]}
    config = validate(variant, tmp_path)
    assert config["name"] == "variant" and config["seeds"] == [3]
    assert config["train"]["lr"] == 0.5 and config["train"]["epochs"] == base["train"]["epochs"]
    assert config["datasets"] == validate(base, tmp_path)["datasets"] and "extends" not in config


def test_a_key_set_to_null_is_removed_from_the_base(tmp_path):
    base = tiny_grid(tmp_path)
    base["datasets"]["dark"] = {**base["datasets"]["bright"], "modality": "dark_fundus"}
    base["train"]["lr_gamma"] = 0.3
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    config = validate({"extends": "base.yaml", "datasets": {"dark": None}, "train": {"lr_gamma": None}}, tmp_path)
    assert list(config["datasets"]) == ["bright"]
    assert config["train"]["lr_gamma"] == validate(tiny_grid(tmp_path))["train"]["lr_gamma"] != 0.3  # the default


def test_the_peft_field_grid_is_the_default_grid_with_other_rows():
    field, default = load_config("config/peft_field.yaml"), load_config("config/default.yaml")
    assert list(field["backbones"]) == ["litemedsam"] and field["baselines"] == []
    assert field["paper"] == {"datasets": {}, "rows": {}}  # the default grid's mapping removed, the schema's default
    assert field["datasets"] == default["datasets"] and field["train"] == default["train"]
    assert {m["name"] for m in field["methods"]} == {"lora", "peft", "milora", "svft", "salt"}


def test_chains_are_followed_and_circles_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**tiny_grid(tmp_path), "name": "a"}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a.yaml", "name": "b", "train": {"lr": 0.2}}))
    config = validate({"extends": "b.yaml", "train": {"epochs": 3}}, tmp_path)
    assert (config["name"], config["train"]["lr"], config["train"]["epochs"]) == ("b", 0.2, 3)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"extends": "d.yaml"}))
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"extends": "c.yaml"}))
    with pytest.raises(ConfigError, match=r"extends: c.yaml is extended in a circle"):
        resolve_extends({"extends": "c.yaml"}, tmp_path)


@pytest.mark.parametrize(("extends", "message"), [
    ("nowhere.yaml", r"extends: nowhere.yaml: no such config file"),
    (["a.yaml"], r"extends must be the path of another grid config"),
])
def test_bad_extends_is_named(tmp_path, extends, message):
    with pytest.raises(ConfigError, match=message):
        validate({"extends": extends}, tmp_path)


def test_paper_official_differs_from_paper_only_where_it_says():
    paper = _flatten(load_config(REPO / "config" / "paper.yaml", check_paths=False))
    official = _flatten(load_config(REPO / "config" / "paper_official.yaml", check_paths=False))
    changed = {key: (paper.get(key), official.get(key)) for key in paper.keys() | official.keys()
               if paper.get(key) != official.get(key)}
    assert changed == {
        "name": ("paper", "paper_official"),
        "results_dir": ("results_paper", "results_paper_official"),
        "figures_dir": ("figures/paper", "figures/paper_official"),
        "train.batch_size": (5, 2),
        "train.reg_weight": (0.01, 0.0),
        "train.lr_step_epochs": (50, 200),
        "train.lr_gamma": (0.5, 0.2),
        "train.crop": (True, False),
    }


def test_paper_smoke_keeps_papers_models_methods_and_training():
    """The smoke grid changes weights, data, rows, epochs and the device rule; every other setting
    of a SAM ViT-B cell (size, text encoder, TAL, trained set, method hyper-parameters, training)
    is paper.yaml's."""
    paper = load_config(REPO / "config" / "paper.yaml", check_paths=False)
    smoke = load_config(REPO / "config" / "paper_smoke.yaml", check_paths=False)
    assert list(smoke["datasets"]) == ["chase"] and list(smoke["backbones"]) == ["sam_vit_b"]
    assert smoke["backbones"]["sam_vit_b"]["methods"] == ["sam_zero_shot", "svd", "lora_r4", "salt_r4"]
    assert [b["id"] for b in smoke["baselines"]] == ["unet"]
    assert (smoke["device"], smoke["allow_cpu"], smoke["train"]["epochs"]) == ("auto", True, 1)
    assert {k: v for k, v in smoke["train"].items() if k != "epochs"} == \
        {k: v for k, v in paper["train"].items() if k != "epochs"}
    assert smoke["methods"] == paper["methods"] and smoke["input_size"] == paper["input_size"] == 512
    ours, theirs = smoke["backbones"]["sam_vit_b"], paper["backbones"]["sam_vit_b"]
    changed = {key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key)}
    assert changed == {"weights", "checkpoint", "text_checkpoint", "methods"}
    assert (ours["weights"], ours["text_checkpoint"], "checkpoint" in ours) == ("random", "random", False)
    assert smoke["paper"]["datasets"] == {"chase": "DRIVE"}
    assert data_label(smoke["datasets"]["chase"]).endswith("split file benchmark/data/splits/chase_db1_smoke.csv")
