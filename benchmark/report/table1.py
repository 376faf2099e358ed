"""Table 1 of the SALT paper (Dice / HD95 per dataset, per method) rebuilt from cell summaries.

A pure function of `results/cells/*/summary.json`: rerunning it on the same files gives the same
table, so the table can be regenerated without retraining anything.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.io import write_text
from benchmark.report import latex, markdown
from benchmark.report.rows import distinct, is_oracle, prompt_text, seed_stats
from benchmark.summary import validate_summary

GROUPS = {"baseline": "Traditional DL Methods", "zero-shot": "Zero-shot", "peft": "PEFT methods"}
DASH = "–"
MISSING = "n/a"
SEED_SPREAD = "Cells with several seeds show mean ± sample std (ddof=1) over seeds."
ORACLE_NOTE = ("Prompt: what each SAM-family row was asked with (docs/prompts.md). Rows marked (oracle) were "
               "prompted at test time with a box or points built from the test image's ground truth: they know "
               "where the vessels are and are not comparable with the prompt-free rows (text, whole-image box, "
               "baselines), whatever their Dice.")
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
            "Prompt": distinct([prompt_text(cell) if cell["method"]["group"] != "baseline" else DASH for cell in cells]),
            "Oracle": "yes" if any(is_oracle(cell) for cell in cells) else "no",
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


def _weights(df: pd.DataFrame) -> list[str]:
    """The rows' weights descriptions, each once, in table order."""
    return list(dict.fromkeys(df["Weights"]))


def _with_weights(note: str, weights: list[str]) -> list[str]:
    """The note's paragraphs with the weights paragraphs after the first, which names the grid."""
    paragraphs = [part.strip() for part in note.strip().split("\n\n") if part.strip()]
    return [*paragraphs[:1], *weights, *paragraphs[1:]]


def tagged_weights(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`df` with its Weights column as tags (W1, W2, ...) and a baseline's backbone as a dash, and
    the paragraphs that spell each tag out once: a weights description is a paragraph long."""
    tags = {text: f"W{index}" for index, text in enumerate(_weights(df), 1)}
    baseline = df["Group"] == "baseline" if "Group" in df else pd.Series(False, index=df.index)
    tagged = df.assign(Weights=[tags[text] for text in df["Weights"]], Backbone=df["Backbone"].where(~baseline, DASH))
    return tagged, [f"Weights {tag}: {text}." for text, tag in tags.items()]


def dataset_sections(df: pd.DataFrame, first: list[str]) -> list[str]:
    """A markdown table per dataset of `df` ("<label> Dice" / "<label> HD95" columns; "Average"
    last, when there), each with the rows that ran on it: `first` columns, Dice, HD95, Backbone and
    Weights, grouped as Table 1 when `df` has a Group column. Tables of every dataset side by side
    would not fit 120 columns."""
    columns = [*first, "Dice", "HD95", "Backbone", "Weights"]
    lines: list[str] = []
    for label in [column.removesuffix(" Dice") for column in df.columns if column.endswith(" Dice")]:
        ran = df[(df[f"{label} Dice"] != MISSING) | (df[f"{label} HD95"] != MISSING)]
        table = ran.rename(columns={f"{label} Dice": "Dice", f"{label} HD95": "HD95"})
        lines += [f"## {'Average over datasets' if label == 'Average' else label}", "", *markdown.table(columns, [])]
        if "Group" in table:
            for group, members in _grouped(table, columns):
                lines.append(markdown.row([f"**{group}**"] + [""] * (len(columns) - 1)))
                lines.extend(markdown.row(cells) for cells in members)
        else:
            lines.extend(markdown.row(cells) for cells in table[columns].itertuples(index=False))
        lines.append("")
    return lines


def _markdown(df: pd.DataFrame, note: str) -> str:
    """Readable in a 120-column terminal: a table per dataset and one of the averages, each row
    named by its Model, Rank, %Trainable, backbone key and a weights tag; the weights and data
    descriptions are in the note, once (the CSV and the LaTeX keep every column on every row)."""
    tagged, weights = tagged_weights(df)
    lines = ["# Table 1: Dice and HD95 per dataset (reproduced by saltbench)", ""]
    for part in [*_with_weights(note, weights), SEED_SPREAD, *_oracle_note(df)]:
        lines += [markdown.paragraph(part), ""]
    return "\n".join(lines + dataset_sections(tagged, ["Model", "Rank", "Prompt", "%Trainable"]))


def _oracle_note(df: pd.DataFrame) -> list[str]:
    """The paragraph on oracle prompts, for a table that has a row with one."""
    return [ORACLE_NOTE] if (df["Oracle"] == "yes").any() else []


def _latex(df: pd.DataFrame, note: str) -> str:
    """The paper's layout, every column; the note (markdown code marks dropped) is the caption."""
    columns = [column for column in df.columns if column not in ("Group", "Oracle")]
    text = " ".join(_with_weights(note, ["Weights: " + "; ".join(_weights(df)) + "."]) + _oracle_note(df))
    caption = f"Table 1 reproduced by saltbench. {text.replace('`', '')} {SEED_SPREAD}"
    return latex.booktabs(columns, _grouped(df, columns), " ".join(caption.split()), "tab:saltbench-table1")


def write_table1(df: pd.DataFrame, out_dir: Path, note: str) -> None:
    """table1.csv (all columns, Group included), table1.md (a table per dataset, 120 columns wide)
    and table1.tex (paper layout with group rows). `note`: paragraphs, the first naming the grid;
    the rows' weights are added to it here."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "table1.csv", df.to_csv(index=False))
    write_text(out_dir / "table1.md", _markdown(df, note))
    write_text(out_dir / "table1.tex", _latex(df, note))
