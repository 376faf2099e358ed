"""Rows of the report tables: which cells make one row, and their mean over seeds."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from benchmark.prompting import summary_prompt


def row_key(summary: dict) -> str:
    """The key a config's `paper.rows` uses: a baseline's id, else "<backbone key>/<method id>"."""
    method = summary["method"]
    return method["id"] if method["group"] == "baseline" else f"{summary['backbone']}/{method['id']}"


def by_row(summaries: list[dict]) -> dict[str, list[dict]]:
    """Cells per row key, rows in order of first appearance (the grid's table order)."""
    rows: dict[str, list[dict]] = {}
    for summary in summaries:
        rows.setdefault(row_key(summary), []).append(summary)
    return rows


def on_dataset(cells: list[dict], dataset: str) -> list[dict]:
    return [cell for cell in cells if cell["dataset"]["name"] == dataset]


def seed_stats(values: list) -> tuple[float | None, float | None, int]:
    """(mean, sample std or None with one value, n) over the defined values (NaN/None dropped:
    an undefined HD95 is not a number to average)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return None, None, 0
    std = float(np.std(kept, ddof=1)) if len(kept) > 1 else None
    return float(np.mean(kept)), std, len(kept)


def distinct(values: list[str]) -> str:
    """Distinct values in first-seen order, joined: provenance columns never hide a mix."""
    return "; ".join(dict.fromkeys(values))


def prompt_text(summary: dict) -> str:
    """The row's prompt in words ("text", "ground-truth box (oracle)"; benchmark.prompting)."""
    return summary_prompt(summary)["description"]


def is_oracle(summary: dict) -> bool:
    """Whether the row's test-time prompt was built from the ground truth."""
    return bool(summary_prompt(summary)["oracle"])


def prompted(summary: dict) -> bool:
    """Whether a SAM-family row was asked by a box or points (with or without text) rather than by
    text alone, as the paper asks; baselines take no prompt."""
    return summary_prompt(summary)["mode"] not in ("text", "none")


def prompt_tag(summary: dict) -> str:
    """" [ground-truth box (oracle)]" after a prompted row's name in figures and statistics; "" otherwise."""
    return f" [{prompt_text(summary)}]" if prompted(summary) else ""


def row_label(summary: dict, with_backbone: bool) -> str:
    """A row as Table 1 names it, in one string for figure legends and panel titles: its Model
    text, its rank ("LoRA r4"), a box or point prompt in words (oracle prompts say so), and with
    several backbones in the grid, its Backbone key."""
    method = summary["method"]
    label = method["label"] + ("" if method.get("rank") is None else f" r{method['rank']}")
    if prompted(summary):
        label += f" ({prompt_text(summary)})"
    return f"{label} [{summary['backbone']}]" if with_backbone and method["group"] != "baseline" else label


def table_order(summaries: list[dict]) -> dict[str, list[dict]]:
    """Cells per row key in Table 1's order: baselines, zero-shot rows, PEFT rows, each in grid order."""
    groups = ("baseline", "zero-shot", "peft")
    return dict(sorted(by_row(summaries).items(), key=lambda item: groups.index(item[1][0]["method"]["group"])))


def csv_text(records: list[dict], columns: tuple[str, ...]) -> str:
    """Records as CSV text with exactly `columns` (other keys left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
