"""Grid configs: loading, schema validation, defaults and semantic checks, before any job starts.

What a validated grid holds (its rows and cells) is grid.py; the checks that look at the disk are
config_checks.py, those that build models method_checks.py. This module runs them in order and
raises ConfigError. It imports a registry, and torch, only when the grid names something in it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import jsonschema
import yaml

from benchmark.config_checks import require_paths
from benchmark.errors import ConfigError, UnknownNameError
from benchmark.grid import ROW_KEYS, TUNE_KEYS, entry_id, row_keys, row_train
from benchmark.paper.published import published
from benchmark.prompting import entry_prompt, parse_prompt

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    return _read_yaml(SCHEMA_PATH)


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


def _number(text: str, kinds: set[str]) -> int | float | None:
    """`text` as the number a schema asks for, or None: "1e-3" and "0.001" are numbers, "5" an
    integer, "five" and "2.5" (for an integer) are not."""
    try:
        value = float(text)
    except ValueError:
        return None
    if "integer" in kinds and value.is_integer() and not any(c in text.lower() for c in ".e"):
        return int(value)
    return value if "number" in kinds and value == value and abs(value) != float("inf") else None


def _coerce_numbers(value: object, schema: dict) -> object:
    """Numbers written as strings, where the schema wants a number, become numbers.

    YAML 1.1 (PyYAML, and Snakemake's config loader) reads `lr: 1e-3` as the string "1e-3": a
    float needs a dot there. Users write it that way, so it is accepted, as is a quoted "0.001";
    a string that is no number is left for the schema to name."""
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    if isinstance(value, str) and kinds & {"number", "integer"}:
        number = _number(value.strip(), kinds)
        return value if number is None else number
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {key: _coerce_numbers(sub, properties[key] if key in properties else extra if isinstance(extra, dict) else {})
                for key, sub in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce_numbers(sub, schema["items"]) for sub in value]
    return value


def _lookup(section: str) -> Callable[[str], object]:
    """The registry lookup of a grid section, imported when the section has entries."""
    if section == "methods":
        import methods

        return methods.get_method
    import baselines

    return baselines.get_baseline


def _check_entries(config: dict) -> None:
    for key, backbone in config["backbones"].items():
        from benchmark.models import get_backbone

        try:
            get_backbone(backbone["name"])
        except UnknownNameError as error:
            raise ConfigError(f"backbones.{key}: {error}") from None
    if config["methods"] and not config["backbones"]:
        raise ConfigError("methods are listed but no backbone is: add a `backbones:` section")
    seen: set[str] = set()
    for section in ("methods", "baselines"):
        for entry in config[section]:
            try:
                plugin = _lookup(section)(entry["name"])
            except (KeyError, ValueError) as error:
                raise ConfigError(f"{section}: {error}") from None
            try:
                spec = {key: value for key, value in entry.items() if key not in ROW_KEYS}
                accepted = plugin.hparams_for(spec) if section == "methods" else plugin.hparams
            except ValueError as error:
                raise ConfigError(f"{section} entry {entry_id(entry)!r}: {error}") from None
            unknown = sorted(set(entry) - set(ROW_KEYS) - {"name"} - set(accepted))
            if unknown:
                raise ConfigError(
                    f"{section} entry {entry_id(entry)!r}: unknown key(s) {unknown}; "
                    f"{entry['name']} accepts {', '.join(sorted(accepted)) or 'no hyper-parameters'}"
                )
            row = entry_id(entry)
            if row in seen:
                raise ConfigError(f"{section}: row id {row!r} is used twice; give one entry an explicit `id`")
            seen.add(row)


def _check_prompts(config: dict) -> None:
    """Every method row's `prompt` is checked and written out in full (a stated `mode: text` is
    dropped: the default, so that it fingerprints as a row without one); baselines take none."""
    for entry in config["baselines"]:
        if "prompt" in entry:
            raise ConfigError(f"baselines entry {entry_id(entry)!r}: prompt is for SAM-family rows (methods); "
                              "a baseline segments the image without any prompt")
    for entry in config["methods"]:
        if "prompt" not in entry:
            continue
        try:
            spec = parse_prompt(entry["prompt"])
        except ValueError as error:
            raise ConfigError(f"methods entry {entry_id(entry)!r}: {error}") from None
        if spec.mode == "text":
            del entry["prompt"]
        else:
            entry["prompt"] = spec.as_config()


def _check_row_names(config: dict) -> None:
    """No two rows of one table block may print alike: Table 1 names a row by its label and rank
    (a row without a `label` is named from its method and settings), and shows the baselines and
    each backbone's rows under that backbone, so two "peft" rows could not be told apart."""
    blocks = {"baselines": [("baselines", entry) for entry in config["baselines"]]}
    for key, backbone in config["backbones"].items():
        runs = backbone.get("methods")
        blocks[f"backbones.{key}"] = [("methods", e) for e in config["methods"] if runs is None or entry_id(e) in runs]
    for where, entries in blocks.items():
        seen: dict[tuple[str, str], str] = {}
        for section, entry in entries:
            prompt = entry_prompt(entry).describe() if section == "methods" else None  # baselines take none
            printed = (_lookup(section)(entry["name"]).row_label(entry), "–" if entry.get("rank") is None else str(entry["rank"]),
                       prompt)
            if printed in seen:
                raise ConfigError(f"{section} entries {seen[printed]!r} and {entry_id(entry)!r} would print alike in "
                                  f"Table 1 ({where}: {printed[0]!r}, rank {printed[1]}"
                                  f"{'' if prompt is None else f', prompt {prompt}'}); give one of them a `label`")
            seen[printed] = entry_id(entry)


def _check_datasets(config: dict) -> None:
    from benchmark.data.sources import config_problem, get_reader

    # a tuned grid chooses its rows' settings on validation even where the test epoch is the last
    select_on_val = config["train"]["selection"] == "validation" or bool(config.get("tune"))
    for name, ds in config["datasets"].items():
        problem = config_problem(ds)
        if problem:
            raise ConfigError(f"datasets.{name}: {problem}")
        if ds["kind"] == "synthetic":
            missing = [k for k in ("modality", "n_train", "n_test") if k not in ds]
            if missing:
                raise ConfigError(f"datasets.{name}: a synthetic dataset needs {missing}")
            too_large = [n for n in ds.get("train_subsets", []) if n >= ds["n_train"]]
            if too_large:
                raise ConfigError(f"datasets.{name}: train_subsets {too_large} are not smaller than its {ds['n_train']} "
                                  "training images (the whole set is always a column of its own)")
            from benchmark.data.synthetic import MODALITIES

            if ds["modality"] not in MODALITIES:
                raise ConfigError(f"datasets.{name}: unknown modality {ds['modality']!r}; known: {', '.join(MODALITIES)}")
            ds.setdefault("n_val", max(1, ds["n_train"] // 4) if select_on_val else 0)
            continue
        if "root" not in ds:
            raise ConfigError(f"datasets.{name}: kind {ds['kind']!r} needs a `root` folder")
        if "validation" in get_reader(ds["kind"]).options:
            # model selection needs the split's validation images held out of training
            ds.setdefault("validation", select_on_val)


def _row_train_schema() -> dict:
    """The grid's `train` schema without its defaults: a row's `train` states only what differs."""
    schema = copy.deepcopy(_schema()["properties"]["train"])
    for sub in schema["properties"].values():
        sub.pop("default", None)
    return schema


def _check_row_train(config: dict) -> None:
    """A row's own `train` is validated as the grid's is, and named with its row."""
    schema = _row_train_schema()
    for section in ("methods", "baselines"):
        for entry in config[section]:
            if "train" not in entry:
                continue
            entry["train"] = _coerce_numbers(entry["train"], schema)
            try:
                jsonschema.validate(entry["train"], schema)
            except jsonschema.ValidationError as error:
                where = ".".join(str(p) for p in error.absolute_path)
                raise ConfigError(f"{section} entry {entry_id(entry)!r}: train{'.' + where if where else ''}: "
                                  f"{error.message}") from None


def _check_step(config: dict) -> None:
    """Every row's micro-batches must hold at least one image: grad_accumulation <= batch_size."""
    for section in ("methods", "baselines"):
        for entry in config[section]:
            train = row_train(config, entry)
            if train["grad_accumulation"] > train["batch_size"]:
                where = "train" if "train" not in entry else f"{section} entry {entry_id(entry)!r}: train"
                raise ConfigError(f"{where}: grad_accumulation {train['grad_accumulation']} is larger than batch_size "
                                  f"{train['batch_size']}: a micro-batch would hold no image; use at most "
                                  f"{train['batch_size']}")


def _check_tune(config: dict) -> None:
    """`tune` names one numeric training setting, rows of this grid that train, and a screening
    budget no longer than the grid's; and its datasets can be selected on without test images."""
    tune = config.get("tune")
    if not tune:
        return
    params = [key for key in tune if key not in TUNE_KEYS]
    numeric = [key for key, sub in _row_train_schema()["properties"].items() if "number" in str(sub.get("type"))]
    if len(params) != 1 or params[0] not in numeric:
        raise ConfigError(f"tune: list values for exactly one numeric training setting ({', '.join(numeric)}); "
                          f"got {params or 'none'}")
    if tune.get("epochs", 0) > config["train"]["epochs"]:
        raise ConfigError(f"tune.epochs {tune['epochs']} is longer than train.epochs {config['train']['epochs']}: "
                          "trials screen at a shorter budget, never a longer one")
    trained = {entry_id(e): e for e in config["baselines"]} | {entry_id(e): e for e in config["methods"] if e["name"] != "frozen"}
    if tune["rows"] != "all":
        unknown = [row for row in tune["rows"] if row not in trained]
        if unknown:
            raise ConfigError(f"tune.rows: {unknown} are not rows of this grid that train; rows: {', '.join(trained)}")
    for name, ds in config["datasets"].items():
        if ds["kind"] == "synthetic" and ds.get("n_val") == 0:
            raise ConfigError(f"datasets.{name}: n_val is 0, but a tuned grid chooses on validation images; give it "
                              "some (n_val), or the choice would have to read test images")
        if ds.get("validation") is False:
            raise ConfigError(f"datasets.{name}: validation is false, so its validation images train and a tuned grid "
                              "would have nothing but test images to choose on; set validation: true")


def _check_subsets(config: dict) -> None:
    """A backbone's `methods` / `datasets` lists must name rows and datasets of this grid."""
    method_ids = [entry_id(entry) for entry in config["methods"]]
    for key, backbone in config["backbones"].items():
        for field, known in (("methods", method_ids), ("datasets", list(config["datasets"]))):
            unknown = [name for name in backbone.get(field, []) if name not in known]
            if unknown:
                raise ConfigError(f"backbones.{key}.{field}: {unknown} not in this grid; known: {', '.join(known)}")


def _check_paper(config: dict) -> None:
    """`paper:` may only map rows and datasets the grid has, to published rows that exist."""
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


def _merged(base: object, override: object) -> object:
    """`override` on top of `base`: mappings merge key by key, anything else (lists too) replaces,
    and a key set to null in `override` is removed (as in a JSON merge patch, RFC 7386), so that a
    variant can drop a dataset, backbone or published-row mapping of its base; a removed setting
    takes the schema's default."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merged(base.get(key), value)
        return merged
    return copy.deepcopy(override)


def resolve_extends(config: dict, base: Path = Path("."), seen: tuple[Path, ...] = ()) -> dict:
    """A grid with `extends: other.yaml` is that grid with this one's keys on top (_merged), so a
    variant (config/paper_official.yaml) states only what differs and cannot drift from its base.
    The path is relative to `base`, as every path of a grid; chains are followed, circles refused."""
    if "extends" not in config:
        return config
    target = config["extends"]
    if not isinstance(target, str):
        raise ConfigError(f"extends must be the path of another grid config, got {target!r}")
    path = (base / target).resolve()
    if path in seen:
        raise ConfigError(f"extends: {target} is extended in a circle: {' -> '.join(str(p) for p in (*seen, path))}")
    if not path.is_file():
        raise ConfigError(f"extends: {target}: no such config file (relative paths are taken from {base.resolve()})")
    parent = _read_yaml(path) or {}
    if not isinstance(parent, dict):
        raise ConfigError(f"extends: {target} is not a grid config (a YAML mapping)")
    own = {key: value for key, value in config.items() if key != "extends"}
    return _merged(resolve_extends(parent, base, (*seen, path)), own)


def validate(config: dict, base: Path = Path("."), check_paths: bool = True) -> dict:
    """Resolve `extends`, schema-check the raw config, fill defaults and check names; returns the
    completed copy.

    `check_paths=False` skips the existence of data folders and checkpoints (a dry run lists the
    cells of a grid whose files are not downloaded yet)."""
    config = _coerce_numbers(resolve_extends(copy.deepcopy(config), base), _schema())
    try:
        jsonschema.validate(config, _schema())
    except jsonschema.ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"config invalid at {where}: {error.message}") from None
    _fill_defaults(config, _schema())
    _check_prompts(config)
    _check_entries(config)
    _check_row_names(config)
    _check_row_train(config)
    _check_step(config)
    _check_tune(config)
    if config["methods"]:
        from benchmark.method_checks import check_devices, check_ranks

        check_ranks(config)  # every method entry fits the layers it targets (built on the meta device)
        check_devices(config)  # and can run on the grid's device (QLoRA's 4-bit layers)
    _check_datasets(config)
    _check_subsets(config)
    _check_paper(config)
    if check_paths:
        require_paths(config, base)  # every missing folder and checkpoint in one message
    return config


def _read_yaml(path: Path) -> object:
    """yaml.safe_load through libyaml where PyYAML has it (the same documents, several times
    faster: the schema and a grid with its `extends` are read on every command)."""
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_config(path: str | Path, check_paths: bool = True) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = _read_yaml(path) or {}
    return validate(raw, Path("."), check_paths=check_paths)
