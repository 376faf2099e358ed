"""Fair comparisons: a row's own training settings, and a tuning budget chosen on validation.

Rows may carry `train:` (validated like the grid's, merged for that row only, part of its
fingerprint, recorded and noted in the tables); a grid's `tune:` trains one trial cell per value
and seed for every tuned (row, dataset), chooses on mean validation Dice, and the row's table cells
use the choice. The choice never reads a test score: changing only the test masks changes the
reported test Dice and leaves every choice where it was."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.config import validate
from benchmark.data.synthetic import write_dataset
from benchmark.engine.cell import run_cell
from benchmark.errors import ConfigError
from benchmark.grid import expand_cells, expand_trials, fingerprint, tuning_key
from benchmark.report.settings import settings_notes
from benchmark.report.tuning import write_tuning
from benchmark.summary import load_summaries, read_summary
from benchmark.tuning import choose, select
from tests.conftest import tiny_grid

LRS = [1.0e-4, 3.0e-2]


def _tuned(tmp_path: Path, **overrides) -> dict:
    grid = tiny_grid(tmp_path, tune={"lr": LRS, "rows": "all"},
                     train={"epochs": 2, "batch_size": 2, "lr": 1.0e-3, "lr_step_epochs": 5, "augment": False})
    grid["datasets"]["bright"]["n_val"] = 2
    grid.update(overrides)
    return validate(grid)


def _run_grid(config: dict) -> dict[str, dict]:
    """What Snakemake does, in order: the trials, the choices, the table cells."""
    for trial in expand_trials(config):
        run_cell(config, trial)
    selections = {key: select(config, key) for key in {c.trial_of for c in expand_trials(config).values()}}
    for cell in expand_cells(config):
        run_cell(config, cell)
    return selections


def test_a_row_may_carry_its_own_training_settings(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["baselines"].append({**grid["baselines"][0], "id": "unet_slow", "label": "U-Net (slow)",
                              "train": {"lr": "1e-4", "epochs": 1}})
    config = validate(grid)
    cells = expand_cells(config)
    plain, slow = cells["unet_tiny-bright-s0"], cells["unet_slow-bright-s0"]
    assert slow.entry["train"] == {"lr": 1.0e-4, "epochs": 1}, "numbers written as 1e-4 are numbers"
    assert fingerprint(plain, config) == fingerprint(plain, validate(tiny_grid(tmp_path))), \
        "a row without settings of its own keeps the fingerprint it had"
    assert fingerprint(slow, config) != fingerprint(
        type(slow)(slow.id, 0, "bright", "baseline", {**slow.entry, "train": {"lr": 1.0e-4}}, None), config)
    summary = read_summary(run_cell(config, slow.id))
    assert summary["provenance"]["config"]["train"]["lr"] == 1.0e-4 and summary["trained"]["epochs"] == 1
    assert summary["train_overrides"] == {"lr": 1.0e-4, "epochs": 1}
    run_cell(config, plain.id)
    notes = settings_notes(config, load_summaries(Path(config["results_dir"]) / "cells"))
    assert notes == ["Rows with training settings of their own (not tuned): U-Net (slow): lr 0.0001, epochs 1."]


@pytest.mark.parametrize("train, message", [
    ({"lr": -1.0}, r"baselines entry 'unet_tiny': train\.lr: -1\.0 is less than or equal to the minimum of 0"),
    ({"learning_rate": 1.0e-3}, r"baselines entry 'unet_tiny': train: Additional properties are not allowed "
                                r"\('learning_rate' was unexpected\)"),
    ({"precision": "fp8"}, r"baselines entry 'unet_tiny': train\.precision: 'fp8' is not one of"),
])
def test_a_bad_row_setting_is_named_with_its_row(tmp_path, train, message):
    grid = tiny_grid(tmp_path)
    grid["baselines"][0]["train"] = train
    with pytest.raises(ConfigError, match=message):
        validate(grid)


@pytest.mark.parametrize("change, message", [
    (lambda g: g["datasets"]["bright"].update(n_val=0), "n_val is 0, but a tuned grid chooses on validation images"),
    (lambda g: g["tune"].update(rows=["unet_big"]), r"tune.rows: \['unet_big'\] are not rows of this grid that train"),
    (lambda g: g["tune"].update(weight_decay=[0.0, 0.1]), "exactly one numeric training setting"),
    (lambda g: g["tune"].update(epochs=9), "tune.epochs 9 is longer than train.epochs 2"),
    (lambda g: g["tune"].update(lr=[1.0e-3]), "should be non-empty|is too short"),
])
def test_a_tuned_grid_that_cannot_choose_on_validation_is_refused(tmp_path, change, message):
    grid = tiny_grid(tmp_path, tune={"lr": LRS, "rows": "all"})
    change(grid)
    with pytest.raises(ConfigError, match=message):
        validate(grid)


def test_ties_go_to_the_smaller_value():
    assert choose({1e-2: [0.5, 0.7], 1e-3: [0.6, 0.6], 3e-3: [0.2, 0.1]}) == 1e-3
    assert choose({3e-3: [0.4], 1e-3: [0.3]}) == 3e-3


def test_a_tuned_grid_trains_trials_chooses_on_validation_and_reuses_the_identical_trial(tmp_path):
    config = _tuned(tmp_path)
    trials = expand_trials(config)
    assert list(trials) == ["unet_tiny-bright-s0-lr0.0001", "unet_tiny-bright-s0-lr0.03"]
    selections = _run_grid(config)
    selection = selections["unet_tiny-bright"]
    scores = {value: float(np.mean([t["val_dice"] for t in selection["trials"] if t["value"] == value])) for value in LRS}
    assert selection["chosen"] == max(scores, key=scores.get)
    cell_id = "unet_tiny-bright-s0"
    summary = read_summary(Path(config["results_dir"]) / "cells" / cell_id / "summary.json")
    assert summary["tuning"]["role"] == "selected" and summary["tuning"]["value"] == selection["chosen"]
    trial = f"{cell_id}-lr{selection['chosen']:g}"
    assert summary["tuning"]["reused_trial"] == trial, "the trial trained with exactly its settings: not trained twice"
    cells = Path(config["results_dir"]) / "cells"
    assert (cells / cell_id / "per_image.csv").read_bytes() == (cells / trial / "per_image.csv").read_bytes()
    assert summary["provenance"]["config"]["train"]["lr"] == selection["chosen"]
    assert summary["train_overrides"] == {"lr": selection["chosen"]}
    notes = settings_notes(config, [summary])
    assert notes[0].startswith("Tuning: lr tuned over 2 values (0.0001, 0.03) on validation Dice for every trained row")
    assert f"U-Net: {selection['chosen']:g} on bright" in notes[0]
    table, picture = write_tuning(config, tmp_path / "figures")
    lines = table.read_text().splitlines()
    assert lines[0] == "row,dataset,param,value,seed,val_dice,test_dice,chosen,diverged_epoch,cell"
    assert len(lines) == 3 and sum(line.split(",")[7] == "True" for line in lines[1:]) == 1
    assert picture.stat().st_size > 10_000


def test_screening_trials_are_shorter_and_the_choice_then_trains_the_full_budget(tmp_path):
    config = _tuned(tmp_path, tune={"lr": LRS, "rows": ["unet_tiny"], "epochs": 1})
    _run_grid(config)
    cells = Path(config["results_dir"]) / "cells"
    assert all(read_summary(cells / t / "summary.json")["trained"]["epochs"] == 1 for t in expand_trials(config))
    summary = read_summary(cells / "unet_tiny-bright-s0" / "summary.json")
    assert summary["trained"]["epochs"] == 2 and summary["tuning"]["reused_trial"] is None
    assert (summary["tuning"]["trial_epochs"], summary["tuning"]["final_epochs"]) == (1, 2)


def _salt_copy(root: Path, source: Path, invert_test_masks: bool) -> Path:
    shutil.copytree(source, root)
    if invert_test_masks:
        for line in (root / "data_split.csv").read_text().splitlines()[1:]:
            name, split = line.split(",")[:2]
            if split == "test":
                mask = root / "masks" / name
                values = np.asarray(Image.open(mask))
                Image.fromarray((255 - values).astype(np.uint8)).save(mask)
    return root


def test_the_choice_never_reads_a_test_score(tmp_path):
    """Two grids that differ only in their test masks: every choice and validation score is the
    same, the reported test Dice is not."""
    source = tmp_path / "generated"
    write_dataset(source, "bright_speckle", 4, 2, size=64, seed=0, n_val=2)
    outcomes = []
    for name, invert in (("original", False), ("inverted", True)):
        root = _salt_copy(tmp_path / name / "data", source, invert)
        config = _tuned(tmp_path / name, datasets={"bright": {"kind": "salt", "root": str(root)}})
        selections = _run_grid(config)
        test_dice = {s["cell"]: s["metrics"]["dice_mean"] for s in load_summaries(Path(config["results_dir"]) / "cells")}
        outcomes.append((json.dumps(selections, sort_keys=True), test_dice))
    (choices, dice), (choices_inverted, dice_inverted) = outcomes
    assert choices == choices_inverted, "the choices and the validation scores behind them are identical"
    assert all(dice[cell] != dice_inverted[cell] for cell in dice), "while every reported test Dice moved"


def test_tuning_keys_name_the_row_and_the_dataset(tmp_path):
    config = _tuned(tmp_path)
    assert {tuning_key(cell) for cell in expand_trials(config).values()} == {"unet_tiny-bright"}


def test_a_diverged_trial_stops_scores_zero_and_the_grid_goes_on(tmp_path):
    config = _tuned(tmp_path, tune={"lr": [1.0e-3, 1.0e12], "rows": "all"})
    selection = _run_grid(config)["unet_tiny-bright"]
    diverged = next(t for t in selection["trials"] if t["value"] == 1.0e12)
    assert diverged["diverged_epoch"] is not None and diverged["val_dice"] == 0.0
    assert selection["chosen"] == 1.0e-3


def test_a_tuned_dataset_without_validation_images_is_refused_before_training(tmp_path):
    source = tmp_path / "data"
    write_dataset(source, "bright_speckle", 4, 2, size=64, seed=0, n_val=0)
    config = _tuned(tmp_path, datasets={"bright": {"kind": "salt", "root": str(source)}})
    from benchmark.cli import main

    with pytest.raises(SystemExit, match="has no validation images, but this grid tunes lr"):
        main(["data", "--config", str(_write(tmp_path, config)), "--dataset", "bright"])


def _write(tmp_path: Path, config: dict) -> Path:
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
