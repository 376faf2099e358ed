"""The summary format: every field of a cell's summary.json, declared once, with its writer and reader.

The engine writes a summary only through `write_summary`, which refuses one whose fields differ from
the declaration below (a field added in the engine but not here, or a field forgotten). Tables,
figures and cost read summaries only through `read_summary` / `as_summary`, which hand back records
that refuse a field the format does not declare, `.get()` included: a renamed or misspelled field
fails in the report's tests instead of silently printing an empty column.

Sections whose keys are open by nature (a method entry's hyper-parameters, the train settings, the
package versions) are declared as `OpenRecord`s: their named keys are documented, others pass.
FORMAT is the version written into every summary; a summary without one was written by saltbench
before the format had a version (format 1): it lacks `tuning`, `train_overrides` and
`dataset.n_train_subset` (a row then had no settings of its own, a cell all its training images) and
is read with those as None, {} and None. Format 2 lacks `prompt` (every SAM-family row was then
text-prompted): it is read as the text prompt, or as no prompt for a baseline. Format 3 added
`prompt` and `trained.step` (how the step ran: attention, checkpointing, compile, micro-batches);
format 1 and 2 summaries are read with `trained.step` as None.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict, get_type_hints

from benchmark.errors import SummaryFormatError
from benchmark.io import write_json
from benchmark.prompting import summary_prompt

FORMAT = 3
READABLE = (1, 2, 3)


class OpenRecord(TypedDict, total=False):
    """A section whose keys vary (hyper-parameters, settings, versions): not checked."""


class MethodRecord(TypedDict):
    """The row's method or baseline entry (its hyper-parameters are further, open keys)."""

    id: str
    label: str
    group: str  # "baseline", "zero-shot" or "peft"
    name: str
    rank: int | None


class PromptRecord(TypedDict):
    """What the model was asked with (benchmark.prompting) and whether the ground truth built it."""

    mode: str  # "text", "box", "points", "text+box"; "none" for a baseline
    box: str | None  # "image" or "mask" for a box mode
    jitter: int
    positive: int
    negative: int
    oracle: bool  # the test-time prompt was built from the ground truth
    description: str


class DatasetRecord(TypedDict):
    name: str  # the dataset column: the dataset key, or <key>_n<k> for a training subset
    label: str
    data: str  # how every output names the data (benchmark.data.sources.data_label)
    n_train_subset: int | None  # trained on a nested subset of this many training images (train_subsets)


class Params(TypedDict):
    trainable: int
    total: int
    trainable_pct: float
    trainable_pct_with_text_encoder: float | None
    text_encoder_parameters: int | None
    denominator: str
    image_encoder_megabytes: dict | None


class StepRecord(TypedDict):
    """How the training step ran (engine.step.step_record; the settings are also under
    provenance.config.train): format 3 on."""

    attention: str  # "eager", "sdpa", or why sdpa changed nothing on this backbone
    sdpa_modules: int  # segment-anything attention modules that ran fused
    checkpointed_blocks: int  # encoder blocks recomputed in the backward pass (0: none)
    compiled: bool
    grad_accumulation: int  # micro-batches per optimizer step (1: none)
    trained_batchnorms: list[str]  # BatchNorms that train (the TAL's with tal_norm: batch)
    batchnorm_note: str  # what micro-batches change for them; empty without accumulation or BatchNorm


class Trained(TypedDict):
    adapted_modules: int
    extra_trainable: list[str]
    epochs: int
    final_loss: float | None
    selection: str
    selected_epoch: int
    val_dice: float | None
    n_images: OpenRecord  # split -> images
    scale_shift_movement: OpenRecord
    singular_value_ranks: OpenRecord
    notes: OpenRecord
    embedding_cache: OpenRecord
    step: StepRecord | None  # None in summaries of format 1 and 2


class Regulariser(TypedDict):
    weight: float
    forms: OpenRecord


class Metrics(TypedDict):
    dice_mean: float
    dice_std: float
    hd95_mean: float
    hd95_std: float
    n_images: int
    hd95_undefined: int


class StepMemory(TypedDict):
    kind: str
    steps: int
    p99_mb: float | None
    mean_mb: float | None


class Measured(TypedDict):
    """What training and evaluation cost, measured while the cell ran (benchmark.cost.measure)."""

    device: str
    epochs: int
    seconds_per_epoch_median: float | None
    train_seconds_total: float
    train_images_per_s: float | None
    eval_seconds: float
    peak_host_rss_mb: float | None
    peak_allocated_mb: float | None
    peak_reserved_mb: float | None
    step_memory: StepMemory
    adapter_bytes: int | None
    convention: str


class Conventions(TypedDict):
    dice: str
    hd95: str
    resolution: str


class SettingsRecord(TypedDict):
    """The settings the cell ran with, as the validated grid gave them."""

    train: OpenRecord
    dataset: OpenRecord
    input_size: int
    backbone: OpenRecord | None


class Provenance(TypedDict):
    config: SettingsRecord
    versions: OpenRecord
    git_commit: str
    device: str
    gpu: OpenRecord | None
    host: str
    slurm_job: str | None
    precision: str
    torch_threads: int
    train_seconds: float
    wall_seconds_last_run: float
    peak_memory: OpenRecord
    started: str
    finished: str


class Tuning(TypedDict):
    """A tuning trial's value, or a tuned row's choice (benchmark.tuning)."""

    role: str  # "trial" or "selected"
    of: str  # the tuning key: the row on the dataset
    param: str  # the training setting tuned
    value: float  # the trial's value, or the chosen one
    values: list[float]
    trial_epochs: int
    final_epochs: int
    reused_trial: str | None  # the trial whose outputs a selected cell took (it trained with exactly its settings)
    diverged_epoch: int | None  # a trial whose loss diverged stops there and scores 0


class Summary(TypedDict):
    """A cell's summary.json."""

    format: int
    cell: str
    fingerprint: str
    backbone: str
    architecture: str
    weights: str
    method: MethodRecord
    prompt: PromptRecord
    dataset: DatasetRecord
    seed: int
    params: Params
    trained: Trained
    inference: str
    regulariser: Regulariser
    metrics: Metrics
    measured: Measured
    conventions: Conventions
    provenance: Provenance
    tuning: Tuning | None
    train_overrides: OpenRecord  # the row's training settings that differ from the grid's


OPEN = (OpenRecord, MethodRecord)  # MethodRecord: its named keys plus the entry's hyper-parameters


def _sections(record: type) -> dict[str, type | None]:
    """Field -> the TypedDict of its value (None for a plain value)."""
    hints = get_type_hints(record)
    sections = {}
    for name, hint in hints.items():
        options = getattr(hint, "__args__", (hint,))
        sections[name] = next((o for o in options if isinstance(o, type) and hasattr(o, "__required_keys__")), None)
    return sections


def fields(record: type = Summary) -> tuple[str, ...]:
    """The declared fields of a section, in declaration order."""
    return tuple(get_type_hints(record))


class Record(dict):
    """A summary section read back: a dict that refuses a field its format does not declare."""

    def __init__(self, values: dict, record: type, where: str) -> None:
        sections = _sections(record)
        super().__init__({key: _wrap(value, sections.get(key), f"{where}.{key}") for key, value in values.items()})
        self._record, self._where, self._declared = record, where, tuple(sections)

    def _check(self, key: Any) -> None:
        if self._record not in OPEN and key not in self._declared:
            raise SummaryFormatError(f"the summary format (version {FORMAT}) has no field {key!r} in {self._where}; "
                                     f"its fields: {', '.join(self._declared)}")

    def __getitem__(self, key: Any) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)


def _wrap(value: Any, record: type | None, where: str) -> Any:
    return Record(value, record, where) if record is not None and isinstance(value, dict) else value


def _problems(values: dict, record: type, where: str) -> list[str]:
    """Fields missing from or not declared in `values`, recursively (open sections unchecked)."""
    if record is OpenRecord:
        return []
    sections = _sections(record)
    problems = [f"{where}: no field {name!r}" for name in sections if name not in values]
    if record not in OPEN:
        problems += [f"{where}: undeclared field {name!r}" for name in values if name not in sections]
    for name, section in sections.items():
        if section is not None and isinstance(values.get(name), dict):
            problems += _problems(values[name], section, f"{where}.{name}")
    return problems


def write_summary(path: Path, summary: dict) -> None:
    """Write `summary` (with format FORMAT) atomically, after checking it has exactly the declared fields."""
    summary = {"format": FORMAT, **summary}
    problems = _problems(summary, Summary, "summary")
    if problems:
        raise SummaryFormatError("a summary that does not match benchmark.summary.Summary: " + "; ".join(problems))
    write_json(path, summary)


def as_summary(values: dict, where: str = "summary") -> Summary:
    """A summary (as read from JSON) as a checked record; an unreadable format version is an error."""
    version = values.get("format", 1)
    if version not in READABLE:
        raise SummaryFormatError(f"{where} has summary format {version!r}; this saltbench reads {READABLE} "
                                 "(rerun the cell with this version)")
    if version == 1:
        dataset = values.get("dataset")
        values = {"format": 1, **values, "tuning": None, "train_overrides": {},
                  **({"dataset": {**dataset, "n_train_subset": None}} if isinstance(dataset, dict) else {})}
    if version in (1, 2) and isinstance(values.get("method"), dict):
        values = {**values, "prompt": summary_prompt(values)}
    if version in (1, 2) and isinstance(values.get("trained"), dict):
        values = {**values, "trained": {**values["trained"], "step": None}}
    return Record(values, Summary, where)  # type: ignore[return-value]


def read_summary(path: Path) -> Summary:
    """The summary at `path`, as a record that refuses undeclared fields."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed summary.json ({error})") from error
    validate_summary(values, str(path))
    return as_summary(values, str(path))


# What every table needs of a summary, even one written by hand (tests, other tools): checked first,
# so that a missing one is named with its file instead of failing deep inside a table.
REQUIRED = ("cell", "backbone", "weights", "seed", "method.id", "method.label", "method.group", "dataset.name",
            "dataset.label", "dataset.data", "params.trainable", "params.trainable_pct", "metrics.dice_mean",
            "metrics.hd95_mean")
GROUPS = ("baseline", "zero-shot", "peft")


def validate_summary(summary: object, source: str) -> None:
    """Fail early, naming the file or cell, instead of deep inside the table code."""
    if not isinstance(summary, dict):
        raise ValueError(f"{source}: a cell summary must be a JSON object, got {type(summary).__name__}")
    for dotted in REQUIRED:
        node: object = summary
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{source}: missing key '{dotted}'")
            node = dict.__getitem__(node, part)
    group = summary["method"]["group"]
    if group not in GROUPS:
        raise ValueError(f"{source}: method.group is {group!r}, expected one of {sorted(GROUPS)}")


def load_summaries(cells_dir: Path) -> list[Summary]:
    """Every `<cell>/summary.json` under cells_dir, in sorted cell order for a stable table."""
    cells_dir = Path(cells_dir)
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"cells directory not found: {cells_dir}")
    paths = sorted(cells_dir.glob("*/summary.json"))
    if not paths:
        raise FileNotFoundError(f"no */summary.json under {cells_dir}")
    return [read_summary(path) for path in paths]
