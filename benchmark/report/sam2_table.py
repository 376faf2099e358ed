"""The SAM2 table of Fig. 4b (Model, Rank, Trainable Params, Dice / HD95 per dataset) over the
grid's cells on SAM2 backbones. A grid without one still gets the file, saying so, so that the
workflow's outputs do not depend on the grid. The markdown is laid out as Table 1's (a table per
dataset, weights as tags); the CSV keeps Fig. 4b's columns."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.io import write_text
from benchmark.report import markdown
from benchmark.report.rows import by_row, distinct, on_dataset
from benchmark.report.table1 import (DASH, MISSING, SEED_SPREAD, count_text, dataset_sections, over_seeds,
                                     tagged_weights)

SAM2_PREFIX = "sam2"


def sam2_summaries(config: dict, summaries: list[dict]) -> list[dict]:
    """Cells whose backbone architecture (config backbones.<key>.name) starts with "sam2"."""
    backbones = config["backbones"]
    return [s for s in summaries
            if s["backbone"] in backbones and backbones[s["backbone"]]["name"].startswith(SAM2_PREFIX)]


def build_sam2_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per (backbone, method); counts printed as the paper prints them (0.2M, 44.6M)."""
    datasets = {s["dataset"]["name"]: s["dataset"]["label"] for s in summaries}
    records = []
    for cells in by_row(summaries).values():
        method = cells[0]["method"]
        trainable = cells[0]["params"]["trainable"]
        record = {"Model": method["label"], "Rank": DASH if method.get("rank") is None else str(method["rank"]),
                  "Trainable Params": DASH if trainable == 0 else count_text(int(trainable))}
        for name, label in datasets.items():
            runs = [cell["metrics"] for cell in on_dataset(cells, name)]
            record[f"{label} Dice"] = over_seeds([r["dice_mean"] for r in runs], 3) if runs else MISSING
            record[f"{label} HD95"] = over_seeds([r["hd95_mean"] for r in runs], 2) if runs else MISSING
        record["Backbone"] = cells[0]["backbone"]
        record["Weights"] = distinct([cell["weights"] for cell in cells])
        record["Data"] = distinct([cell["dataset"]["data"] for cell in cells])
        records.append(record)
    return pd.DataFrame.from_records(records)


def write_sam2_table(config: dict, summaries: list[dict], out_dir: Path, notes: list[str] = ()) -> list[Path]:
    """sam2_table.md and sam2_table.csv (header only when the grid has no SAM2 cell); `notes`: the
    rows trained with settings of their own."""
    out_dir = Path(out_dir)
    md_path, csv_path = out_dir / "sam2_table.md", out_dir / "sam2_table.csv"
    chosen = sam2_summaries(config, summaries)
    lines = ["# SAM2 table (Fig. 4b layout, reproduced by saltbench)", ""]
    if not chosen:
        df = pd.DataFrame(columns=["Model", "Rank", "Trainable Params", "Backbone", "Weights", "Data"])
        lines.append(markdown.paragraph(f"This grid (`{config.get('name', 'grid')}`) has no SAM2 backbone (no "
                                        f"backbone whose name starts with `{SAM2_PREFIX}`): nothing to put in this table."))
    else:
        df = build_sam2_table(chosen)
        tagged, weights = tagged_weights(df)
        data = dict.fromkeys(f"Data, {s['dataset']['label']}: {s['dataset']['data']}." for s in chosen)
        lines += [line for part in (*weights, *data, SEED_SPREAD, *notes) for line in (markdown.paragraph(part), "")]
        lines += dataset_sections(tagged, ["Model", "Rank", "Trainable Params"])
    write_text(csv_path, df.to_csv(index=False))
    write_text(md_path, "\n".join(lines).rstrip("\n") + "\n")
    return [md_path, csv_path]
