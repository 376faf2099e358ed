"""The grid's cost table: per row, trainable parameters over both denominators and the GFLOPs its
cells counted (merged inference, a training step with the adapters unmerged, the one-time SVD).

Every number is read from the cells' cost.json, written by the cell that trained the row; a row's
cells share their layers (cost is cached per architecture and method), so the first cell of a row
stands for all of its datasets and seeds."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.cost.counting import GFLOPS_CONVENTION
from benchmark.cost.training import TRAINING_CONVENTION
from benchmark.io import write_text
from benchmark.report import markdown
from benchmark.report.rows import by_row

COLUMNS = ["Model", "Backbone", "Trainable", "% of model", "% with text encoder", "GFLOPs inference",
           "GFLOPs train step", "GFLOPs added", "GFLOPs adapters", "GFLOPs rebuild / batch", "GFLOPs SVD once",
           "Batch", "Counter", "Scaled singular values r"]


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


def build_cost_table(summaries: list[dict], cells_dir: Path) -> pd.DataFrame:
    """One row per table row (baseline, or backbone x method), in the grid's order."""
    records = []
    for cells in by_row(summaries).values():
        cost = _read_cost(cells_dir, cells[0]["cell"])
        training = cost.get("training") or {}
        records.append({
            "Model": cells[0]["method"]["label"],
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
        })
    return pd.DataFrame.from_records(records, columns=COLUMNS)


EXPLANATION = (
    f"Inference: {GFLOPS_CONVENTION}. Training: {TRAINING_CONVENTION}. A row without adapters (baselines, "
    "zero-shot) trains or runs the inference model itself, so it adds nothing. % of model divides by every "
    "parameter of the segmentation model; % with text encoder adds the frozen text encoder to the denominator, "
    "as the official SALT code does (– for models without one). Scaled singular values r: SALT's top-r count "
    "per adapted component, min-max over its layers / the layers' r_max (chosen per layer by sv_energy)."
)


def write_cost_table(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """cost.md and cost.csv under out_dir."""
    out_dir = Path(out_dir)
    md_path, csv_path = out_dir / "cost.md", out_dir / "cost.csv"
    write_text(csv_path, df.to_csv(index=False))
    specs = {"Trainable": ",d", "% of model": ".3f", "% with text encoder": ".3f", "Batch": ".0f"}
    rows = ([markdown.number(None if pd.isna(value) else value, specs.get(column, ".3f"))
             if column not in ("Model", "Backbone", "Counter", "Scaled singular values r") else value for column, value in record.items()]
            for record in df.to_dict("records"))
    lines = ["# Cost per row: trainable parameters and GFLOPs per image", "", EXPLANATION, "",
             *markdown.table(COLUMNS, rows)]
    write_text(md_path, "\n".join(lines) + "\n")
    return [md_path, csv_path]
