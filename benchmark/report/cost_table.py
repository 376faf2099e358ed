"""The grid's cost table: per row, trainable parameters over both denominators, the GFLOPs its
cells counted (merged inference, a training step with the adapters unmerged, the one-time SVD), and
what its cells measured while they ran (time, images/s, memory, adapter size, device).

Counts are read from the cells' cost.json, written by the cell that trained the row; a row's cells
share their layers (cost is cached per architecture and method), so the first cell of a row stands
for all of its datasets and seeds. Measured figures are the mean over the row's cells (its datasets
and seeds) of each summary's `measured` section; speed is ranked only among rows of one device."""
from __future__ import annotations

import json
import math
import string
from pathlib import Path

import numpy as np

import pandas as pd

from benchmark.cost.counting import GFLOPS_CONVENTION
from benchmark.cost.training import TRAINING_CONVENTION
from benchmark.io import write_text
from benchmark.report import markdown
from benchmark.report.rows import by_row, distinct
from benchmark.report.table1 import DASH

COLUMNS = ["Row", "Model", "Rank", "Backbone", "Trainable", "% of model", "% with text encoder", "GFLOPs inference",
           "GFLOPs train step", "GFLOPs added", "GFLOPs adapters", "GFLOPs rebuild / batch", "GFLOPs SVD once",
           "Batch", "Counter", "Scaled singular values r"]
# measured column -> the summary's `measured` key (a nested key as a tuple)
MEASURED = {"s / epoch": ("seconds_per_epoch_median",), "Train s": ("train_seconds_total",),
            "Train img/s": ("train_images_per_s",), "Eval s": ("eval_seconds",), "Peak host RSS MB": ("peak_host_rss_mb",),
            "Peak GPU allocated MB": ("peak_allocated_mb",), "Peak GPU reserved MB": ("peak_reserved_mb",),
            "Step memory p99 MB": ("step_memory", "p99_mb"), "Step memory mean MB": ("step_memory", "mean_mb"),
            "Adapter bytes": ("adapter_bytes",)}
COLUMNS += ["Device", *MEASURED, "Speed rank on device"]


def _read_cost(cells_dir: Path, cell: str) -> dict:
    path = Path(cells_dir) / cell / "cost.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: re-run cell {cell} (saltbench cell) to count its cost")
    return json.loads(path.read_text())


def scaled_singular_values(summary: dict) -> str:
    """SALT's r per adapted component as `component min-max/r_max` (one value when every layer has the
    same): what sv_energy chose from each layer's spectrum; "–" for methods without it."""
    ranks = summary.get("trained", {}).get("singular_value_ranks") or {}
    spans = (f"{kind} {r['min']}" + (f"-{r['max']}" if r["max"] != r["min"] else "") + f"/{r['r_max']}"
             for kind, r in ranks.items())
    return ", ".join(spans) or "–"


def _measured_mean(cells: list[dict], keys: tuple[str, ...]) -> float:
    """Mean over the cells that measured it; NaN where none did (no accelerator, or summaries
    written before cells measured their cost)."""
    values = []
    for cell in cells:
        value = cell.get("measured") or {}
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return float(np.mean(values)) if values else math.nan


def _device(cells: list[dict]) -> str:
    """The device the row's cells ran on; "mixed: ..." when they differ (then the row is not ranked)."""
    names = distinct([(cell.get("measured") or cell.get("provenance") or {}).get("device", "unknown") for cell in cells])
    return names if ";" not in names else f"mixed: {names}"


def _rank_within_devices(df: pd.DataFrame) -> pd.Series:
    """1 = most training images per second among the rows of the same device; a mixed row is not ranked."""
    speed = df["Train img/s"].where(~df["Device"].str.startswith("mixed:"))
    return speed.groupby(df["Device"]).rank(ascending=False, method="min")


def device_marks(df: pd.DataFrame) -> dict[str, str]:
    """A letter per device ([A], [B], ...): rows of different letters are not compared."""
    return {name: f"[{string.ascii_uppercase[i % 26]}]" for i, name in enumerate(dict.fromkeys(df["Device"]))}


def build_cost_table(summaries: list[dict], cells_dir: Path) -> pd.DataFrame:
    """One row per table row (baseline, or backbone x method), in the grid's order."""
    records = []
    for key, cells in by_row(summaries).items():
        cost = _read_cost(cells_dir, cells[0]["cell"])
        training = cost.get("training") or {}
        method = cells[0]["method"]
        records.append({
            "Row": key,
            "Model": method["label"],
            "Rank": DASH if method.get("rank") is None else str(method["rank"]),
            "Backbone": cells[0]["backbone"],
            "Trainable": cost["trainable"],
            "% of model": cost["pct_model"],
            "% with text encoder": cost["pct_with_text"],
            "GFLOPs inference": cost["gflops_inference"],
            "GFLOPs train step": training.get("gflops_step_per_image", cost["gflops_inference"]),
            "GFLOPs added": training.get("gflops_added_per_image", 0.0),
            "GFLOPs adapters": training.get("gflops_adapters_per_image", 0.0),
            "GFLOPs rebuild / batch": training.get("gflops_rebuild_per_batch", 0.0),
            "GFLOPs SVD once": training.get("gflops_svd_once", 0.0),
            "Batch": training.get("batch_size"),
            "Counter": cost["counter"],
            "Scaled singular values r": scaled_singular_values(cells[0]),
            "Device": _device(cells),
            **{column: _measured_mean(cells, keys) for column, keys in MEASURED.items()},
        })
    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    df["Speed rank on device"] = _rank_within_devices(df)
    return df


EXPLANATION = (
    f"Inference: {GFLOPS_CONVENTION}. Training: {TRAINING_CONVENTION}. A row without adapters (baselines, "
    "zero-shot) trains or runs the inference model itself, so it adds nothing. % of model divides by every "
    "parameter of the segmentation model; % with text encoder adds the frozen text encoder to the denominator, "
    "as the official SALT code does (– for models without one). Measured columns: the mean over the row's cells "
    "(datasets and seeds) of what each cell measured in its own run: seconds per epoch (median over epochs) and in "
    "total for the training steps (validation excluded), training images/s, seconds of the test evaluation, peak "
    "host RSS, on CUDA the peak allocated and reserved accelerator memory, per-step memory (sampled after every "
    "step: accelerator reserved on CUDA, host RSS on a CPU) as 99th percentile and mean, and the adapter file's "
    "size. Speed rank: 1 = most training images/s among rows of the same device; rows of different devices "
    "([A], [B], ...) are not ranked against each other. Times depend on the host's load when the cell ran. "
    "Scaled singular values r: SALT's top-r count per adapted component, min-max over its layers / the layers' "
    "r_max (chosen per layer by sv_energy)."
)


# The markdown's tables: a 27-column table is unreadable. Each after the first names its rows by
# their key (`<backbone>/<id>`, a baseline's id), which the first spells out.
SECTIONS = {
    "Parameters": ["Row", "Model", "Rank", "Backbone", "Trainable", "% of model", "% with text encoder",
                   "Scaled singular values r"],
    "GFLOPs per image": ["Row", "GFLOPs inference", "GFLOPs train step", "GFLOPs added", "GFLOPs adapters",
                         "GFLOPs rebuild / batch", "GFLOPs SVD once", "Batch", "Counter"],
    "Time (mean over the row's cells)": ["Row", "Device", "s / epoch", "Train s", "Train img/s", "Eval s",
                                         "Speed rank on device"],
    "Memory in MB (mean over the row's cells) and adapter size": ["Row", *(c for c in MEASURED if c.endswith("MB")),
                                                                  "Adapter bytes"],
}
SPECS = {"Trainable": ",d", "% of model": ".3f", "% with text encoder": ".3f", "Batch": ".0f", "s / epoch": ".1f",
         "Train s": ".1f", "Train img/s": ".2f", "Eval s": ".1f", "Adapter bytes": ",.0f", "Speed rank on device": ".0f",
         **{column: ",.0f" for column in MEASURED if column.endswith("MB")}}
TEXT = ("Row", "Model", "Rank", "Backbone", "Counter", "Device", "Scaled singular values r")


def _cell(column: str, value: object) -> str:
    if column in TEXT:
        return str(value)
    return markdown.number(None if pd.isna(value) else value, SPECS.get(column, ".3f"))


def write_cost_table(df: pd.DataFrame, out_dir: Path, notes: list[str] = ()) -> list[Path]:
    """cost.md and cost.csv under out_dir; `notes`: the rows trained with settings of their own."""
    out_dir = Path(out_dir)
    md_path, csv_path = out_dir / "cost.md", out_dir / "cost.csv"
    write_text(csv_path, df.to_csv(index=False))
    marks = device_marks(df)
    shown = df.assign(Device=[marks[name] for name in df["Device"]])
    lines = ["# Cost per row: trainable parameters, GFLOPs per image, measured time and memory", ""]
    lines += [line for text in (EXPLANATION, *notes) for line in (markdown.paragraph(text), "")]
    for title, columns in SECTIONS.items():
        lines += [f"## {title}", ""]
        if "Device" in columns:
            lines += [markdown.paragraph("Devices: " + "; ".join(f"{mark} {name}" for name, mark in marks.items()) + "."), ""]
        header = [column.removeprefix("GFLOPs ").removesuffix(" MB") for column in columns]
        lines += [*markdown.table(header, ([_cell(c, record[c]) for c in columns] for record in shown.to_dict("records"))), ""]
    write_text(md_path, "\n".join(lines).rstrip("\n") + "\n")
    return [md_path, csv_path]
