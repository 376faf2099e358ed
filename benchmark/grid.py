"""A validated grid as cells: the names every layer shares (a row's id, a cell, its fingerprint).

A cell is (model, dataset, seed) where model is a backbone + PEFT method or a fully trained
baseline. The Snakefile, the CLI, the engine and the report all expand cells here, so they can
never disagree. Nothing here reads files or builds models: config.py validates a grid first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

# Keys of a method/baseline entry that describe the row, not the method's hyper-parameters; `train`
# holds the row's own training settings, over the grid's `train`; `prompt` a SAM-family row's prompt
# mode (benchmark.prompting; absent: text, so rows written before it keep their fingerprints).
ROW_KEYS = ("id", "label", "train", "prompt")
# Keys of `tune` besides the one training setting it lists values for.
TUNE_KEYS = ("rows", "epochs")
# Training settings that change how fast a cell runs, never its result (tests/test_engine.py
# trains with 0 and 2 DataLoader workers and compares bit for bit): not part of the fingerprint.
RESULT_FREE_TRAIN_KEYS = ("workers", "activation_checkpointing")
# Training settings of the lean step (engine.step) that change a cell's floats slightly (fused
# attention, compiled kernels, micro-batch sums: about 1e-6 relative) and, for grad_accumulation,
# a trained BatchNorm's running statistics: part of the fingerprint, but only when not at this
# value, so the fingerprints of grids written before these settings existed do not change.
# activation_checkpointing recomputes the same operations in the same order (gradients bit for bit
# equal, tests/test_lean_step.py): result-free, as workers.
STEP_DEFAULTS = {"attention": "eager", "activation_checkpointing": False, "grad_accumulation": 1, "compile": False}



@dataclass(frozen=True)
class Cell:
    """One unit of work: trained once, evaluated once, written to results/cells/<id>/."""

    id: str
    seed: int
    dataset: str
    group: str  # "baseline", "zero-shot" or "peft"
    entry: dict  # the method or baseline entry of the config (id, label, name, hparams, train)
    backbone: str | None  # key into config["backbones"]; None for baselines
    tuned: bool = False  # a tuned row's table cell: trains with the value chosen on validation
    trial_of: str | None = None  # a tuning trial: the tuning key (row and dataset) it is a trial of
    n_train: int | None = None  # trains on a nested subset of this many of the dataset's training images

    def hparams(self) -> dict:
        return {k: v for k, v in self.entry.items() if k not in ROW_KEYS}

    @property
    def column(self) -> str:
        """The dataset column the cell reports in: the dataset, or `<dataset>_n<k>` for a subset."""
        return self.dataset if self.n_train is None else f"{self.dataset}_n{self.n_train}"


def entry_id(entry: dict) -> str:
    """Row id of a method/baseline entry: explicit `id`, else name plus rank (lora_r4) plus the
    placement: `_late6` for the last 6 encoder blocks, `_blocks0-3` for a list of block indices."""
    if "id" in entry:
        return entry["id"]
    row = f"{entry['name']}_r{entry['rank']}" if "rank" in entry else entry["name"]
    blocks = entry.get("blocks")
    if blocks is None:
        return row
    if isinstance(blocks, int):
        return f"{row}_late{blocks}"
    return f"{row}_blocks{'-'.join(str(b) for b in blocks)}"


def row_keys(config: dict) -> list[str]:
    """Every table row of the grid as `paper.rows` names it: `<backbone>/<method id>` or a baseline id."""
    keys = [entry_id(entry) for entry in config["baselines"]]
    for cell in expand_cells(config).values():
        if cell.backbone is not None and f"{cell.backbone}/{entry_id(cell.entry)}" not in keys:
            keys.append(f"{cell.backbone}/{entry_id(cell.entry)}")
    return keys


def _group(entry: dict) -> str:
    return "zero-shot" if entry["name"] == "frozen" else "peft"


def columns(config: dict) -> list[tuple[str, int | None]]:
    """(dataset, training subset size) of every dataset column: each dataset, then its
    `train_subsets`, smallest first (None: all its training images)."""
    return [(name, size) for name, spec in config["datasets"].items()
            for size in (None, *sorted(spec.get("train_subsets", [])))]


def has_size_axis(config: dict) -> bool:
    """Whether any dataset of the grid trains on training subsets too (`train_subsets`)."""
    return any(spec.get("train_subsets") for spec in config["datasets"].values())


def expand_cells(config: dict) -> dict[str, Cell]:
    """Every cell of the grid, keyed by id, in table order (baselines, then backbone x method)."""
    cells: dict[str, Cell] = {}
    for seed in config["seeds"]:
        for dataset, size in columns(config):
            column = dataset if size is None else f"{dataset}_n{size}"
            for entry in config["baselines"]:
                cell = Cell(f"{entry_id(entry)}-{column}-s{seed}", seed, dataset, "baseline", entry, None,
                            is_tuned(config, entry, "baseline"), n_train=size)
                cells[cell.id] = cell
            for backbone, spec in config["backbones"].items():
                if dataset not in spec.get("datasets", config["datasets"]):
                    continue
                for entry in config["methods"]:
                    if entry_id(entry) not in spec.get("methods", [entry_id(e) for e in config["methods"]]):
                        continue
                    cell_id = f"{backbone}-{entry_id(entry)}-{column}-s{seed}"
                    cells[cell_id] = Cell(cell_id, seed, dataset, _group(entry), entry, backbone,
                                          is_tuned(config, entry, _group(entry)), n_train=size)
    return cells


def row_train(config: dict, entry: dict) -> dict:
    """The training settings of a row: the grid's `train` with the row's own `train` on top."""
    return {**config["train"], **entry.get("train", {})}


def cell_config(config: dict, cell: Cell) -> dict:
    """The grid as `cell` sees it: its `train` is the cell's row's (and trial's) settings."""
    return {**config, "train": row_train(config, cell.entry)}


def train_overrides(config: dict, entry: dict) -> dict:
    """The row's settings that differ from the grid's, for every table to say so."""
    return {k: v for k, v in entry.get("train", {}).items() if config["train"].get(k) != v}


def tuned_param(config: dict) -> str | None:
    """The training setting a grid's `tune` lists values for (config.py checks there is one)."""
    tune = config.get("tune")
    return None if not tune else next(key for key in tune if key not in TUNE_KEYS)


def is_tuned(config: dict, entry: dict, group: str) -> bool:
    """Whether a row is tuned: the grid tunes, the row trains, is among `tune.rows`, and does not
    fix the tuned setting itself."""
    param = tuned_param(config)
    if param is None or group == "zero-shot" or param in entry.get("train", {}):
        return False
    rows = config["tune"].get("rows", "all")
    return rows == "all" or entry_id(entry) in rows


def tuning_key(cell: Cell) -> str:
    """What one choice is made for: a row on a dataset column, over its seeds."""
    return f"{cell.backbone}-{entry_id(cell.entry)}-{cell.column}" if cell.backbone else f"{entry_id(cell.entry)}-{cell.column}"


def expand_trials(config: dict) -> dict[str, Cell]:
    """The tuning trials of the grid: for every tuned table cell, one cell per value of the tuned
    setting (at `tune.epochs` when the trials screen at a shorter budget), id `<cell>-<param><value>`."""
    param = tuned_param(config)
    if param is None:
        return {}
    tune = config["tune"]
    screen = {"epochs": tune["epochs"]} if "epochs" in tune else {}
    trials: dict[str, Cell] = {}
    for cell in expand_cells(config).values():
        if not cell.tuned:
            continue
        for value in tune[param]:
            entry = {**cell.entry, "train": {**cell.entry.get("train", {}), param: value, **screen}}
            trial = Cell(f"{cell.id}-{param}{value:g}", cell.seed, cell.dataset, cell.group, entry, cell.backbone,
                         trial_of=tuning_key(cell), n_train=cell.n_train)
            trials[trial.id] = trial
    return trials


def all_cells(config: dict) -> dict[str, Cell]:
    """Every cell a run of the grid trains: the tuning trials, then the table cells."""
    return {**expand_trials(config), **expand_cells(config)}


def backbone_spec(config: dict, key: str) -> dict:
    """A backbone's model settings, without the lists of rows and datasets it runs (which select
    cells but do not change any one cell)."""
    return {k: v for k, v in config["backbones"][key].items() if k not in ("methods", "datasets")}


def result_train(train: dict) -> dict:
    """The training settings a cell's result depends on: without the result-free ones, and without
    a lean-step setting at its STEP_DEFAULTS value (absent from grids before it existed)."""
    return {k: v for k, v in train.items()
            if k not in RESULT_FREE_TRAIN_KEYS and not (k in STEP_DEFAULTS and v == STEP_DEFAULTS[k])}


def fingerprint(cell: Cell, config: dict) -> str:
    """Hash of everything that determines a cell's result; a changed config invalidates old files.
    The row's settings count as they act (merged over the grid's), so a trial and a table cell that
    train with the same settings have the same fingerprint, and a row without settings of its own
    keeps the fingerprint it had before rows could have them."""
    relevant = {
        "entry": {k: v for k, v in cell.entry.items() if k != "train"},
        "seed": cell.seed,
        "dataset": config["datasets"][cell.dataset],
        **({} if cell.n_train is None else {"n_train": cell.n_train}),
        "backbone": backbone_spec(config, cell.backbone) if cell.backbone else None,
        "train": result_train(row_train(config, cell.entry)),
        "input_size": config["input_size"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
