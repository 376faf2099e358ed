"""Statistics beside Table 1: is SALT's per-image Dice different from each other PEFT method's?

Per dataset and backbone, every SALT row (method name "salt") is compared with every other PEFT
row of the same backbone by a two-sided paired Wilcoxon signed-rank test on per-image Dice,
images paired by (seed, image id) over the seeds both rows ran. Holm's correction runs over the
comparisons of each dataset, since a claim like "SALT beats LoRA on DRIVE" is read per dataset.
Rows are compared only with rows of the same prompt (a box-prompted SALT with a box-prompted LoRA),
so an oracle-prompted row is never tested against a prompt-free one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.io import write_text
from benchmark.report import markdown
from benchmark.report.rows import by_row, on_dataset, prompt_tag, prompt_text
from benchmark.report.stats import ALPHA, holm, wilcoxon_paired

COLUMNS = ("dataset", "backbone", "salt", "other", "n_pairs", "n_nonzero", "seeds", "median_diff",
           "statistic", "p", "p_holm", "note")
EXPLANATION = (
    "Two-sided paired Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero differences dropped) on "
    "per-image Dice, SALT minus the other PEFT row of the same backbone; images paired by (seed, image id) "
    f"over the seeds both rows ran. p_holm: Holm's step-down correction over the comparisons of each dataset; "
    f"alpha = {ALPHA}. With n non-zero differences the smallest possible two-sided p is 2 / 2^n, so with "
    "fewer than 6 no test can reach 0.05; such rows say so in a note under their dataset's table."
)


def read_per_image(cells_dir: Path, cell: str) -> pd.DataFrame:
    """per_image.csv of one cell (id, dice, hd95); a missing file names the cell."""
    path = Path(cells_dir) / cell / "per_image.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: per-image results of cell {cell!r} are missing")
    return pd.read_csv(path, dtype={"id": str})


def _dice_by_image(cells: list[dict], cells_dir: Path) -> pd.Series:
    """Per-image Dice indexed by (seed, image id) over a row's cells on one dataset."""
    frames = [read_per_image(cells_dir, cell["cell"]).assign(seed=cell["seed"]) for cell in cells]
    return pd.concat(frames).set_index(["seed", "id"])["dice"]


def _title(cells: list[dict]) -> str:
    method = cells[0]["method"]
    return f"{method['label']} ({method['id']})" + prompt_tag(cells[0])


def _comparisons(peft: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(SALT row, other row) pairs of the same prompt; two SALT rows are compared once, in table order."""
    keys = list(peft)
    salt = [key for key in keys if peft[key][0]["method"]["name"] == "salt"]
    pairs = []
    for key in salt:
        for other in keys:
            same_prompt = prompt_text(peft[key][0]) == prompt_text(peft[other][0])
            if other != key and same_prompt and not (other in salt and salt.index(other) < salt.index(key)):
                pairs.append((key, other))
    return pairs


def build_table1_stats(summaries: list[dict], cells_dir: Path) -> pd.DataFrame:
    """One row per comparison, datasets in order of first appearance."""
    datasets = list(dict.fromkeys(s["dataset"]["name"] for s in summaries))
    peft_rows = {key: cells for key, cells in by_row(summaries).items() if cells[0]["method"]["group"] == "peft"}
    records = []
    for dataset in datasets:
        first = len(records)
        for backbone in dict.fromkeys(cells[0]["backbone"] for cells in peft_rows.values()):
            rows = {key: on_dataset(cells, dataset) for key, cells in peft_rows.items()
                    if cells[0]["backbone"] == backbone and on_dataset(cells, dataset)}
            for salt, other in _comparisons(rows):
                a, b = _dice_by_image(rows[salt], cells_dir), _dice_by_image(rows[other], cells_dir)
                common = a.index.intersection(b.index)
                test = wilcoxon_paired(a.loc[common].to_numpy(), b.loc[common].to_numpy())
                seeds = sorted({seed for seed, _ in common})
                records.append({
                    "dataset": dataset, "backbone": backbone, "salt": _title(rows[salt]), "other": _title(rows[other]),
                    "n_pairs": test.n, "n_nonzero": test.n_nonzero, "seeds": " ".join(map(str, seeds)),
                    "median_diff": test.median_diff, "statistic": test.statistic, "p": test.p, "p_holm": None,
                    "note": test.note,
                })
        adjusted = holm([record["p"] for record in records[first:]])
        for record, p_holm in zip(records[first:], adjusted):
            record["p_holm"] = p_holm
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def write_table1_stats(df: pd.DataFrame, out_dir: Path, labels: dict[str, str], notes: list[str] = ()) -> list[Path]:
    """table1_stats.csv (raw numbers) and table1_stats.md; labels: dataset key -> label; `notes`: the
    rows trained with settings of their own."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "table1_stats.csv", out_dir / "table1_stats.md"
    write_text(csv_path, df.to_csv(index=False))
    lines = ["# Table 1 statistics: SALT vs the other PEFT rows (paired Wilcoxon, Holm)", ""]
    lines += [line for text in (EXPLANATION, *notes) for line in (markdown.paragraph(text), "")]
    if df.empty:
        lines.append("This grid has no SALT row beside another PEFT row of the same backbone: nothing to compare.")
    columns = ["Backbone", "SALT", "vs", "n pairs (non-zero)", "seeds", "median ΔDice (SALT − other)", "W", "p",
               "p (Holm)", "note"]
    for dataset in dict.fromkeys(df["dataset"]):  # a table per dataset, as Holm's correction runs
        part = df[df["dataset"] == dataset]
        markers, legend = markdown.footnotes(part["note"])
        lines += [f"## {labels.get(dataset, dataset)}", "", *markdown.table(columns, (
            [r.backbone, r.salt, r.other, f"{r.n_pairs} ({r.n_nonzero})", r.seeds, markdown.number(r.median_diff, "+.4f"),
             markdown.number(r.statistic, "g"), markdown.number(r.p, ".4g"), markdown.number(r.p_holm, ".4g"),
             markers.get(r.note, "")]
            for r in part.itertuples())), ""]
        lines += [line for text in legend for line in (text, "")]
    write_text(md_path, "\n".join(lines).rstrip("\n") + "\n")
    return [md_path, csv_path]
