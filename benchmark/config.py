"""Grid configs: schema validation, defaults, semantic checks, and expansion into cells.

A cell is (model, dataset, seed) where model is a backbone + PEFT method or a fully trained
baseline. The Snakefile and the CLI both expand cells here, so they can never disagree.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
# Keys of a method/baseline entry that describe the row, not the method's hyper-parameters.
ROW_KEYS = ("id", "label")


class ConfigError(ValueError):
    """A config that cannot run; raised before any job starts."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: trained once, evaluated once, written to results/cells/<id>/."""

    id: str
    seed: int
    dataset: str
    group: str  # "baseline", "zero-shot" or "peft"
    entry: dict  # the method or baseline entry of the config (id, label, name, hparams)
    backbone: str | None  # key into config["backbones"]; None for baselines

    def hparams(self) -> dict:
        return {k: v for k, v in self.entry.items() if k not in ROW_KEYS}


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(value: object, schema: dict) -> None:
    """Insert schema defaults in place (jsonschema validates but never fills)."""
    if not isinstance(value, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        _fill_defaults(value.get(key), sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(value) - set(schema.get("properties", {})):
            _fill_defaults(value[key], extra)


def entry_id(entry: dict) -> str:
    """Row id of a method/baseline entry: explicit `id`, else name plus rank (lora_r4)."""
    if "id" in entry:
        return entry["id"]
    return f"{entry['name']}_r{entry['rank']}" if "rank" in entry else entry["name"]


def _check_entries(config: dict) -> None:
    import baselines
    import methods
    from benchmark.models import BACKBONES

    for key, backbone in config["backbones"].items():
        if backbone["name"] not in BACKBONES:
            raise ConfigError(f"backbones.{key}: unknown backbone {backbone['name']!r}; known: {', '.join(sorted(BACKBONES))}")
    if config["methods"] and not config["backbones"]:
        raise ConfigError("methods are listed but no backbone is: add a `backbones:` section")
    seen: set[str] = set()
    for section, lookup in (("methods", methods.get_method), ("baselines", baselines.get_baseline)):
        for entry in config[section]:
            try:
                plugin = lookup(entry["name"])
            except (KeyError, ValueError) as error:
                raise ConfigError(f"{section}: {error}") from None
            unknown = sorted(set(entry) - set(ROW_KEYS) - {"name"} - set(plugin.hparams))
            if unknown:
                raise ConfigError(
                    f"{section} entry {entry_id(entry)!r}: unknown key(s) {unknown}; "
                    f"{entry['name']} accepts {', '.join(sorted(plugin.hparams)) or 'no hyper-parameters'}"
                )
            row = entry_id(entry)
            if row in seen:
                raise ConfigError(f"{section}: row id {row!r} is used twice; give one entry an explicit `id`")
            seen.add(row)


def _check_datasets(config: dict) -> None:
    from benchmark.data.sources import READERS, config_problem

    select_on_val = config["train"]["selection"] == "validation"
    for name, ds in config["datasets"].items():
        problem = config_problem(ds)
        if problem:
            raise ConfigError(f"datasets.{name}: {problem}")
        if ds["kind"] == "synthetic":
            missing = [k for k in ("modality", "n_train", "n_test") if k not in ds]
            if missing:
                raise ConfigError(f"datasets.{name}: a synthetic dataset needs {missing}")
            from benchmark.data.synthetic import MODALITIES

            if ds["modality"] not in MODALITIES:
                raise ConfigError(f"datasets.{name}: unknown modality {ds['modality']!r}; known: {', '.join(MODALITIES)}")
            ds.setdefault("n_val", max(1, ds["n_train"] // 4) if select_on_val else 0)
            continue
        if "root" not in ds:
            raise ConfigError(f"datasets.{name}: kind {ds['kind']!r} needs a `root` folder")
        if "validation" in READERS[ds["kind"]].options:
            # model selection needs the split's validation images held out of training
            ds.setdefault("validation", select_on_val)


def _check_subsets(config: dict) -> None:
    """A backbone's `methods` / `datasets` lists must name rows and datasets of this grid."""
    method_ids = [entry_id(entry) for entry in config["methods"]]
    for key, backbone in config["backbones"].items():
        for field, known in (("methods", method_ids), ("datasets", list(config["datasets"]))):
            unknown = [name for name in backbone.get(field, []) if name not in known]
            if unknown:
                raise ConfigError(f"backbones.{key}.{field}: {unknown} not in this grid; known: {', '.join(known)}")


def row_keys(config: dict) -> list[str]:
    """Every table row of the grid as `paper.rows` names it: `<backbone>/<method id>` or a baseline id."""
    keys = [entry_id(entry) for entry in config["baselines"]]
    for cell in expand_cells(config).values():
        if cell.backbone is not None and f"{cell.backbone}/{entry_id(cell.entry)}" not in keys:
            keys.append(f"{cell.backbone}/{entry_id(cell.entry)}")
    return keys


def _check_paper(config: dict) -> None:
    """`paper:` may only map rows and datasets the grid has, to published rows that exist."""
    from benchmark.report.published import published

    unknown = [key for key in config["paper"]["datasets"] if key not in config["datasets"]]
    if unknown:
        raise ConfigError(f"paper.datasets: {unknown} not in this grid; known: {', '.join(config['datasets'])}")
    rows = row_keys(config)
    for key, target in config["paper"]["rows"].items():
        if key not in rows:
            raise ConfigError(f"paper.rows: {key!r} is not a row of this grid; rows: {', '.join(rows)}")
        try:
            published(*target.split("/", 1))
        except KeyError as error:
            raise ConfigError(f"paper.rows.{key}: {error.args[0]}") from None


def validate(config: dict, base: Path = Path("."), check_paths: bool = True) -> dict:
    """Schema-check a raw config, fill defaults and check names; returns the completed copy.

    `check_paths=False` skips the existence of data folders and checkpoints (a dry run lists the
    cells of a grid whose files are not downloaded yet)."""
    config = copy.deepcopy(config)
    try:
        jsonschema.validate(config, _schema())
    except jsonschema.ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"config invalid at {where}: {error.message}") from None
    _fill_defaults(config, _schema())
    _check_entries(config)
    from benchmark.config_checks import check_ranks, require_paths  # here: that module imports this one

    check_ranks(config)  # every method entry fits the layers it targets (built on the meta device)
    _check_datasets(config)
    _check_subsets(config)
    _check_paper(config)
    if check_paths:
        require_paths(config, base)  # every missing folder and checkpoint in one message
    return config


def load_config(path: str | Path, check_paths: bool = True) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    return validate(raw, Path("."), check_paths=check_paths)


def _group(entry: dict) -> str:
    return "zero-shot" if entry["name"] == "frozen" else "peft"


def expand_cells(config: dict) -> dict[str, Cell]:
    """Every cell of the grid, keyed by id, in table order (baselines, then backbone x method)."""
    cells: dict[str, Cell] = {}
    for seed in config["seeds"]:
        for dataset in config["datasets"]:
            for entry in config["baselines"]:
                cell = Cell(f"{entry_id(entry)}-{dataset}-s{seed}", seed, dataset, "baseline", entry, None)
                cells[cell.id] = cell
            for backbone, spec in config["backbones"].items():
                if dataset not in spec.get("datasets", config["datasets"]):
                    continue
                for entry in config["methods"]:
                    if entry_id(entry) not in spec.get("methods", [entry_id(e) for e in config["methods"]]):
                        continue
                    cell_id = f"{backbone}-{entry_id(entry)}-{dataset}-s{seed}"
                    cells[cell_id] = Cell(cell_id, seed, dataset, _group(entry), entry, backbone)
    return cells


def backbone_spec(config: dict, key: str) -> dict:
    """A backbone's model settings, without the lists of rows and datasets it runs (which select
    cells but do not change any one cell)."""
    return {k: v for k, v in config["backbones"][key].items() if k not in ("methods", "datasets")}


def fingerprint(cell: Cell, config: dict) -> str:
    """Hash of everything that determines a cell's result; a changed config invalidates old files."""
    relevant = {
        "entry": cell.entry,
        "seed": cell.seed,
        "dataset": config["datasets"][cell.dataset],
        "backbone": backbone_spec(config, cell.backbone) if cell.backbone else None,
        "train": config["train"],
        "input_size": config["input_size"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
