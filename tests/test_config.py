"""Bad configs fail with one clear message before any job runs; good ones expand into cells."""
from __future__ import annotations

import pytest
import yaml

from benchmark.config import validate

from benchmark.errors import ConfigError
from benchmark.grid import expand_cells

from tests.conftest import tiny_grid


def test_defaults_are_filled_and_cells_expand(tmp_path):
    grid = tiny_grid(tmp_path, backbones={"lite": {"name": "litemedsam"}},
                     methods=[{"name": "frozen"}, {"name": "lora", "rank": 4}, {"id": "salt_a", "name": "salt"}],
                     seeds=[0, 1])
    config = validate(grid)
    assert config["train"]["weight_decay"] == 0.01 and config["train"]["reg_weight"] == 0.01
    assert config["backbones"]["lite"]["prompt"] == "Vein" and config["backbones"]["lite"]["tal_norm"] == "batch"
    cells = expand_cells(config)
    assert list(cells)[:4] == ["unet_tiny-bright-s0", "lite-frozen-bright-s0", "lite-lora_r4-bright-s0", "lite-salt_a-bright-s0"]
    assert len(cells) == 2 * 4
    assert cells["lite-frozen-bright-s1"].group == "zero-shot"
    assert cells["lite-lora_r4-bright-s0"].hparams() == {"name": "lora", "rank": 4}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g["train"].update(epochs=-1), "train.epochs"),
        (lambda g: g["train"].update(learning_rate=1), "learning_rate"),
        (lambda g: g.update(methods=[{"name": "lorax"}], backbones={"b": {"name": "litemedsam"}}), "known methods"),
        (lambda g: g.update(methods=[{"name": "lora", "rnak": 4}], backbones={"b": {"name": "litemedsam"}}), "rnak"),
        (lambda g: g.update(baselines=[{"name": "unet2"}]), "known baselines"),
        (lambda g: g.update(backbones={"b": {"name": "sam_vit_q"}}), "unknown backbone"),
        (lambda g: g.update(methods=[{"name": "lora"}]), "no backbone"),
        (lambda g: g["datasets"].update(real={"kind": "salt", "root": "/nonexistent/drive"}), "/nonexistent/drive"),
        (lambda g: g["datasets"]["bright"].update(modality="purple"), "purple"),
        (lambda g: g["datasets"]["bright"].update(kind="mnist"), r"datasets\.bright\.kind: 'mnist' is not one of"),
        (lambda g: g.update(baselines=[{"name": "unet"}, {"name": "unet"}]), "used twice"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, change, message):
    grid = tiny_grid(tmp_path)
    change(grid)
    with pytest.raises(ConfigError, match=message):
        validate(grid)


def test_backbone_subsets_select_cells(tmp_path):
    grid = tiny_grid(tmp_path, backbones={"lite": {"name": "litemedsam"},
                                          "med": {"name": "litemedsam", "methods": ["frozen"], "datasets": ["dark"]}},
                     methods=[{"name": "frozen"}, {"name": "lora", "rank": 4}])
    grid["datasets"]["dark"] = {**grid["datasets"]["bright"], "modality": "dark_fundus"}
    cells = expand_cells(validate(grid))
    assert [c for c in cells if c.startswith("med-")] == ["med-frozen-dark-s0"]
    assert len([c for c in cells if c.startswith("lite-")]) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g["backbones"]["lite"].update(methods=["lora_r8"]), r"backbones.lite.methods: \['lora_r8'\]"),
        (lambda g: g["backbones"]["lite"].update(datasets=["drive"]), r"backbones.lite.datasets: \['drive'\]"),
        (lambda g: g.update(paper={"rows": {"lite/dora": "table1/lora_r4"}}), "'lite/dora' is not a row"),
        (lambda g: g.update(paper={"rows": {"lite/frozen": "table1/sam_zero_shots"}}), "no published row"),
        (lambda g: g.update(paper={"rows": {"unet_tiny": "table9/unet"}}), "paper.rows.unet_tiny"),
        (lambda g: g.update(paper={"datasets": {"dark": "DRIVE"}}), r"paper.datasets: \['dark'\]"),
        (lambda g: g.update(paper={"datasets": {"bright": "CHASE"}}), "paper.datasets.bright"),
    ],
)
def test_bad_subsets_and_paper_mappings(tmp_path, change, message):
    grid = tiny_grid(tmp_path, backbones={"lite": {"name": "litemedsam"}}, methods=[{"name": "frozen"}])
    change(grid)
    with pytest.raises(ConfigError, match=message):
        validate(grid)


def test_paths_are_skipped_only_when_asked(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["datasets"]["drive"] = {"kind": "drive", "root": "/nonexistent/DRIVE"}
    with pytest.raises(ConfigError, match="/nonexistent/DRIVE"):
        validate(grid)
    config = validate(grid, check_paths=False)
    assert config["datasets"]["drive"]["validation"] is True


def test_numbers_written_as_yaml_1_1_strings_are_numbers(tmp_path):
    grid = tiny_grid(tmp_path)
    text = yaml.safe_dump(grid).replace("lr: ", "lr: 1e-3 #", 1)
    assert yaml.safe_load(text)["train"]["lr"] == "1e-3"  # what PyYAML (and Snakemake) hand us
    config = validate({**yaml.safe_load(text), "seeds": ["0"]})
    assert config["train"]["lr"] == 0.001 and config["seeds"] == [0]
    grid["train"].update(weight_decay="0.01", epochs=" 2 ")
    config = validate(grid)
    assert config["train"]["weight_decay"] == 0.01 and config["train"]["epochs"] == 2


@pytest.mark.parametrize(("key", "value", "message"), [
    ("lr", "fast", r"config invalid at train.lr: 'fast' is not of type 'number'"),
    ("epochs", "2.5", r"config invalid at train.epochs: '2.5' is not of type 'integer'"),
    ("lr", "nan", r"config invalid at train.lr: 'nan' is not of type 'number'"),
])
def test_strings_that_are_no_number_are_named(tmp_path, key, value, message):
    grid = tiny_grid(tmp_path)
    grid["train"][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(grid)


def _row_names(config: dict) -> dict[str, str]:
    import baselines
    import methods

    return {entry["id"] if "id" in entry else entry["name"]: (methods.get_method if section == "methods" else baselines.get_baseline)(
            entry["name"]).row_label(entry) for section in ("methods", "baselines") for entry in config[section]}


def test_rows_without_a_label_are_named_from_their_method_and_settings(tmp_path):
    grid = tiny_grid(tmp_path, backbones={"lite": {"name": "litemedsam"}}, methods=[
        {"id": "hra_r4", "name": "peft", "tuner": "hra", "r": 4},
        {"id": "hra_r8", "name": "peft", "tuner": "hra", "r": 8},  # peft's default r for HRA: nothing sets it apart
        {"id": "oft_b16", "name": "peft", "tuner": "oft", "oft_block_size": 16, "r": 0},
        {"id": "lora_a8", "name": "lora", "rank": 4, "lora_alpha": 8},  # a built-in's label stays as it was
        {"id": "peft_lora", "name": "peft", "tuner": "lora", "r": 4, "label": "LoRA (peft)"}])
    assert _row_names(validate(grid)) == {"hra_r4": "HRA (peft) r4", "hra_r8": "HRA (peft)", "oft_b16": "OFT (peft) oft_block_size=16",
                                          "lora_a8": "LoRA", "peft_lora": "LoRA (peft)", "unet_tiny": "U-Net"}


def test_the_default_grids_rows_keep_their_names():
    from benchmark.config import load_config

    assert _row_names(load_config("config/default.yaml", check_paths=False)) == {
        "frozen": "MedSAM zero-shot (LiteMedSAM stand-in)", "frozen_box_image": "MedSAM zero-shot (LiteMedSAM stand-in)",
        "frozen_box_mask": "MedSAM zero-shot (LiteMedSAM stand-in)", "svd": "S-SAM", "lora_r4": "LoRA", "lora_r64": "LoRA",
        "salt_r4": "SALT", "salt_r64": "SALT", "unet": "U-Net"}


@pytest.mark.parametrize(("entries", "message"), [
    ([{"id": "hra_a", "name": "peft", "tuner": "hra", "r": 4}, {"id": "hra_b", "name": "peft", "tuner": "hra", "r": 4, "targets": ["mlp"]}],
     "methods entries 'hra_a' and 'hra_b' would print alike in Table 1 (backbones.lite: 'HRA (peft) r4', rank –, prompt text); "
     "give one of them a `label`"),
    ([{"id": "lora_a", "name": "lora", "rank": 4}, {"id": "lora_b", "name": "lora", "rank": 4, "lora_alpha": 8}],
     "methods entries 'lora_a' and 'lora_b' would print alike in Table 1 (backbones.lite: 'LoRA', rank 4, prompt text)"),
    ([{"id": "mine", "name": "lora", "rank": 4, "label": "SALT"}, {"id": "salt_r4", "name": "salt", "rank": 4}],
     "methods entries 'mine' and 'salt_r4' would print alike"),
])
def test_two_rows_that_would_print_alike_are_refused_naming_both(tmp_path, entries, message):
    grid = tiny_grid(tmp_path, backbones={"lite": {"name": "litemedsam"}}, methods=entries)
    with pytest.raises(ConfigError) as error:
        validate(grid)
    assert str(error.value).startswith(message)
    entries[1]["label"] = "mine, second"
    validate(grid)


def test_rows_print_alike_only_within_one_backbone_or_the_baselines(tmp_path):
    lora = [{"id": "lora_a", "name": "lora", "rank": 4}, {"id": "lora_b", "name": "lora", "rank": 4, "lora_alpha": 8}]
    grid = tiny_grid(tmp_path, backbones={"a": {"name": "litemedsam", "methods": ["lora_a"]},
                                          "b": {"name": "litemedsam", "methods": ["lora_b"]}}, methods=lora)
    validate(grid)
    grid = tiny_grid(tmp_path, baselines=[{"id": "unet_a", "name": "unet"}, {"id": "unet_b", "name": "unet", "num_res_units": 1}])
    with pytest.raises(ConfigError, match=r"^baselines entries 'unet_a' and 'unet_b' would print alike in Table 1 "
                                          r"\(baselines: 'U-Net', rank –\)"):
        validate(grid)
