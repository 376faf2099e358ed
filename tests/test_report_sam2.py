"""figures/sam2_table: Fig. 4b's layout over the SAM2 cells only, and a file that says so when the
grid has none."""
from __future__ import annotations

import pandas as pd

from benchmark.grid import expand_cells
from benchmark.report.sam2_table import build_sam2_table, sam2_summaries, write_sam2_table
from tests.test_report_fixtures import cell_summary, make_grid

SAM2 = {"name": "sam2_hiera_t", "weights": "random", "input_size": 256, "methods": ["lora_r4", "salt_r4"]}


def _summaries(config: dict) -> list[dict]:
    summaries = []
    for cell in expand_cells(config).values():
        dice = {"lora_r4": 0.815, "salt_r4": 0.804}.get(cell.entry["id"], 0.5) + 0.01 * cell.seed
        summary = cell_summary(config, cell, [dice], [50.0 + cell.seed])
        summaries.append(summary)
    return summaries


def test_rows_are_the_sam2_cells_in_fig_4b_layout(tmp_path):
    config = make_grid(tmp_path, backbones={"litemedsam": {"name": "litemedsam"}, "hiera": SAM2})
    chosen = sam2_summaries(config, _summaries(config))
    assert {s["backbone"] for s in chosen} == {"hiera"}
    df = build_sam2_table(chosen)
    assert list(df.columns) == ["Model", "Rank", "Trainable Params", "Bright Dice", "Bright HD95", "Dark Dice",
                                "Dark HD95", "Backbone", "Weights", "Data"]
    assert list(df["Model"]) == ["LoRA", "SALT"] and list(df["Rank"]) == ["4", "4"]
    assert list(df["Trainable Params"]) == ["1.5M", "460K"]
    assert df.loc[1, "Bright Dice"] == "0.809 ± 0.007"  # seeds 0 and 1: 0.804, 0.814
    assert df.loc[1, "Dark HD95"] == "50.50 ± 0.71"

    md_path, csv_path = write_sam2_table(config, _summaries(config), tmp_path / "out")
    assert (md_path.name, csv_path.name) == ("sam2_table.md", "sam2_table.csv")
    assert "| SALT | 4 | 460K | 0.809 ± 0.007 |" in md_path.read_text()
    assert list(pd.read_csv(csv_path, dtype=str)["Model"]) == ["LoRA", "SALT"]


def test_grid_without_sam2_still_writes_both_files(tmp_path):
    config = make_grid(tmp_path)
    md_path, csv_path = write_sam2_table(config, _summaries(config), tmp_path / "out")
    assert "has no SAM2 backbone" in md_path.read_text()
    csv = pd.read_csv(csv_path)
    assert csv.empty and list(csv.columns)[:3] == ["Model", "Rank", "Trainable Params"]
