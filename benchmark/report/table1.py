"""Table 1 of the SALT paper (Dice / HD95 per dataset, per method) rebuilt from cell summaries.

A pure function of `results/cells/*/summary.json`: rerunning it on the same files gives the same
table, so the table can be regenerated without retraining anything.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.io import write_text
from benchmark.report import latex, markdown
from benchmark.report.rows import distinct, seed_stats
from benchmark.summary import validate_summary

GROUPS = {"baseline": "Traditional DL Methods", "zero-shot": "Zero-shot", "peft": "PEFT methods"}
DASH = "–"
MISSING = "n/a"
SEED_SPREAD = "Cells with several seeds show mean ± sample std (ddof=1) over seeds."
def over_seeds(values: list, decimals: int) -> str:
    """One seed: the value; several: mean ± std over seeds; none defined (HD95 may be NaN or null
    where it is undefined): a dash."""
    mean, std, n = seed_stats(values)
    if n == 0:
        return DASH
    if std is None:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def count_text(n: int) -> str:
    """Parameter counts as the paper prints them: 12.3K, 6.5M, 1M."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale * 0.99995:
            return f"{n / scale:.1f}".removesuffix(".0") + suffix
    return str(n)


def _trainable(params: dict) -> str:
    """'0.13% / 12.3K'; a dash for zero-shot rows, which train nothing, as in the paper.

    Percentages below 0.005 keep one significant digit rather than printing as 0%.
    """
    if params["trainable"] == 0:
        return DASH
    value = float(params["trainable_pct"])
    pct = f"{value:.2f}".rstrip("0").rstrip(".") if value >= 0.005 else f"{value:.1g}"
    return f"{pct}% / {count_text(int(params['trainable']))}"


def _average(per_dataset: list[float], n_datasets: int, decimals: int) -> str:
    """Mean over datasets; flags when fewer than all datasets went into it."""
    if not per_dataset:
        return DASH
    text = f"{np.mean(per_dataset):.{decimals}f}"
    if len(per_dataset) < n_datasets:
        text += f" ({len(per_dataset)}/{n_datasets} datasets)"
    return text


def build_table1(summaries: list[dict]) -> pd.DataFrame:
    """One row per (backbone, method.id), grouped baseline, zero-shot, PEFT as in the paper.

    Per-dataset cells are seed means (± std with several seeds); the averages are means over
    datasets of those seed means, HD95 over the datasets where it is defined. The extra "Group"
    column carries the method group for the markdown separators and for CSV readers.
    """
    if not summaries:
        raise ValueError("no cell summaries to build Table 1 from")
    datasets: dict[str, str] = {}
    rows: dict[tuple[str, str], list[dict]] = {}
    seen: dict[tuple[str, str, str, object], str] = {}
    for summary in summaries:
        validate_summary(summary, f"cell {summary.get('cell')!r}" if isinstance(summary, dict) else "summary")
        key = (summary["backbone"], summary["method"]["id"])
        dataset = summary["dataset"]["name"]
        run = (*key, dataset, summary["seed"])
        if run in seen:
            raise ValueError(f"cells {seen[run]!r} and {summary['cell']!r} are the same run {run}")
        seen[run] = summary["cell"]
        datasets.setdefault(dataset, summary["dataset"]["label"])
        rows.setdefault(key, []).append(summary)

    ordered = sorted(rows.items(), key=lambda item: list(GROUPS).index(item[1][0]["method"]["group"]))
    records = []
    for (backbone, _), cells in ordered:
        method = cells[0]["method"]
        groups = {cell["method"]["group"] for cell in cells}
        if len(groups) > 1:
            raise ValueError(f"method {method['id']!r} on {backbone!r} has several groups: {sorted(groups)}")
        record = {
            "Model": method["label"],
            "Rank": DASH if method.get("rank") is None else str(method["rank"]),
            "%Trainable": distinct([_trainable(cell["params"]) for cell in cells]),
        }
        dice_means, hd95_means = [], []
        for dataset, label in datasets.items():
            runs = [cell["metrics"] for cell in cells if cell["dataset"]["name"] == dataset]
            if not runs:
                record[f"{label} Dice"] = record[f"{label} HD95"] = MISSING
                continue
            dice_values = [run["dice_mean"] for run in runs]
            hd95_values = [run["hd95_mean"] for run in runs]
            record[f"{label} Dice"] = over_seeds(dice_values, 3)
            record[f"{label} HD95"] = over_seeds(hd95_values, 2)
            for means, values in ((dice_means, dice_values), (hd95_means, hd95_values)):
                mean, _, n = seed_stats(values)
                if n:
                    means.append(mean)
        record["Average Dice"] = _average(dice_means, len(datasets), 3)
        record["Average HD95"] = _average(hd95_means, len(datasets), 2)
        record["Backbone"] = backbone
        record["Weights"] = distinct([cell["weights"] for cell in cells])
        record["Data"] = distinct([cell["dataset"]["data"] for cell in cells])
        record["Group"] = method["group"]
        records.append(record)
    return pd.DataFrame.from_records(records)


def _grouped(df: pd.DataFrame, columns: list[str]) -> list[tuple[str, list[list[str]]]]:
    """(group title, rows) in the paper's group order, empty groups left out."""
    groups = []
    for group, title in GROUPS.items():
        members = df[df["Group"] == group]
        if not members.empty:
            groups.append((title, [[row[column] for column in columns] for _, row in members.iterrows()]))
    return groups


def _markdown(df: pd.DataFrame, note: str) -> str:
    columns = [column for column in df.columns if column != "Group"]
    lines = ["# Table 1: Dice and HD95 per dataset (reproduced by saltbench)", "", note.strip(), "", SEED_SPREAD, ""]
    lines += markdown.table(columns, [])
    for title, rows in _grouped(df, columns):
        lines.append(markdown.row([f"**{title}**"] + [""] * (len(columns) - 1)))
        lines.extend(markdown.row(cells) for cells in rows)
    return "\n".join(lines) + "\n"


def _latex(df: pd.DataFrame, note: str) -> str:
    """The markdown table's rows and columns; the note (markdown code marks dropped) is the caption."""
    columns = [column for column in df.columns if column != "Group"]
    caption = f"Table 1 reproduced by saltbench. {note.strip().replace('`', '')} {SEED_SPREAD}"
    return latex.booktabs(columns, _grouped(df, columns), " ".join(caption.split()), "tab:saltbench-table1")


def write_table1(df: pd.DataFrame, out_dir: Path, note: str) -> None:
    """table1.csv (all columns, Group included), table1.md and table1.tex (paper layout with group rows)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "table1.csv", df.to_csv(index=False))
    write_text(out_dir / "table1.md", _markdown(df, note))
    write_text(out_dir / "table1.tex", _latex(df, note))
