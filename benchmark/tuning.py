"""Choosing each tuned row's setting on validation: every tuned (row, dataset) trains one trial
cell per value and seed (grid.expand_trials); this picks the value with the best mean validation
Dice over seeds and writes it, with every trial's score, to results/tuning/<key>.json, which the
row's table cells then train with (or reuse, when a trial already ran with exactly their settings).

Only `trained.val_dice` of the trials' summaries is read: the test scores of a trial never reach
the choice (tests/test_tuning.py changes only the test masks and shows the choice does not move).
"""
from __future__ import annotations

import math
from pathlib import Path

from benchmark.data.layout import split_pairs
from benchmark.errors import DatasetError
from benchmark.grid import Cell, expand_trials, tuned_param, tuning_key
from benchmark.io import read_json_object, write_json
from benchmark.summary import read_summary

RULE = ("the value with the best mean validation Dice over seeds is chosen (ties: the smaller value); "
        "a diverged trial scores 0; test scores are never read")


def require_validation(config: dict, name: str, pairs: list) -> None:
    """A tuned grid's dataset must have validation images: without them the choice could only be
    made on test images. Checked by the dataset job, before any cell trains."""
    if config.get("tune") and not split_pairs(pairs, "val"):
        raise DatasetError(f"dataset {name!r} has no validation images, but this grid tunes {tuned_param(config)} "
                           "and chooses on validation Dice; give it some (val rows in data_split.csv, "
                           "`validation: true` with a split file that has val rows) or remove `tune`")


def selection_path(config: dict, key: str) -> Path:
    return Path(config["results_dir"]) / "tuning" / f"{key}.json"


def trial_score(summary: dict) -> float:
    """A trial's validation Dice at the epoch the grid's protocol evaluates; 0 for a diverged trial."""
    value = summary["trained"]["val_dice"]
    if (summary.get("tuning") or {}).get("diverged_epoch") is not None or value is None or math.isnan(value):
        return 0.0
    return float(value)


def choose(scores: dict[float, list[float]]) -> float:
    """The value with the best mean score; ties go to the smaller value."""
    means = {value: sum(values) / len(values) for value, values in scores.items()}
    best = max(means.values())
    return min(value for value, mean in means.items() if mean == best)


def trials_of(config: dict, key: str) -> list[Cell]:
    trials = [cell for cell in expand_trials(config).values() if tuning_key(cell) == key]
    if not trials:
        raise KeyError(f"no tuning trials for {key!r} in this grid")
    return trials


def select(config: dict, key: str) -> dict:
    """Read the finished trials of `key`, choose, and write the selection file; returns its content."""
    param = tuned_param(config)
    cells_dir = Path(config["results_dir"]) / "cells"
    scores: dict[float, list[float]] = {}
    records = []
    for trial in trials_of(config, key):
        summary = read_summary(cells_dir / trial.id / "summary.json")
        value = trial.entry["train"][param]
        score = trial_score(summary)
        scores.setdefault(value, []).append(score)
        records.append({"cell": trial.id, "value": value, "seed": trial.seed, "val_dice": score,
                        "diverged_epoch": (summary.get("tuning") or {}).get("diverged_epoch")})
    chosen = choose(scores)
    selection = {"key": key, "param": param, "values": sorted(scores), "chosen": chosen,
                 "mean_val_dice": {str(value): sum(v) / len(v) for value, v in sorted(scores.items())},
                 "trial_epochs": config["tune"].get("epochs", config["train"]["epochs"]),
                 "final_epochs": config["train"]["epochs"], "rule": RULE, "trials": records}
    write_json(selection_path(config, key), selection)
    return selection


def read_selection(config: dict, key: str) -> dict:
    path = selection_path(config, key)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the tuning trials of {key} have not been selected yet "
                                f"(saltbench select --key {key}, which Snakemake runs before this cell)")
    return read_json_object(path)
