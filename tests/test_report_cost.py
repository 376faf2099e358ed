"""The grid's cost table: one row per table row, numbers read from the cells' cost.json."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report.cost_table import build_cost_table, scaled_singular_values, write_cost_table
from tests.test_report_fixtures import TEXT_PARAMETERS, make_grid, populate


def test_one_row_per_table_row_with_both_denominators(tmp_path):
    config = make_grid(tmp_path)
    table = build_cost_table(populate(config), Path(config["results_dir"]) / "cells")
    assert list(table["Model"]) == ["U-Net", "LiteMedSAM (zero-shot)", "LoRA", "SALT", "SALT"]
    salt = table.iloc[3]
    assert salt["Trainable"] == 460_000
    assert salt["% of model"] == pytest.approx(0.46)
    assert salt["% with text encoder"] == pytest.approx(100 * 460_000 / (100_000_000 + TEXT_PARAMETERS))
    assert (salt["GFLOPs train step"], salt["GFLOPs added"], salt["GFLOPs SVD once"]) == (92.0, 12.0, 390.0)
    unet = table.iloc[0]  # no adapters: a step's forward is the model itself, nothing added
    assert math.isnan(unet["% with text encoder"])
    assert (unet["GFLOPs train step"], unet["GFLOPs added"]) == (6.0, 0.0)


def test_written_files_round_trip_and_name_the_conventions(tmp_path):
    config = make_grid(tmp_path)
    table = build_cost_table(populate(config), Path(config["results_dir"]) / "cells")
    md, csv = write_cost_table(table, tmp_path / "out")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)
    text = md.read_text()
    assert "2 x MACs" in text and "Golub-Reinsch" in text and "| SALT | litemedsam | 460,000 | 0.460 |" in text


def test_a_cell_without_cost_json_is_named(tmp_path):
    config = make_grid(tmp_path)
    summaries = populate(config)
    (Path(config["results_dir"]) / "cells" / "unet-bright-s0" / "cost.json").unlink()
    with pytest.raises(FileNotFoundError, match="unet-bright-s0/cost.json"):
        build_cost_table(summaries, Path(config["results_dir"]) / "cells")


def test_salt_s_ranks_chosen_per_layer_are_shown_per_component():
    chosen = {"attn.qkv": {"min": 31, "median": 40.0, "max": 64, "r_max": 64, "per_layer": {}},
              "mlp": {"min": 12, "median": 12.0, "max": 12, "r_max": 64, "per_layer": {}}}
    assert scaled_singular_values({"trained": {"singular_value_ranks": chosen}}) == "attn.qkv 31-64/64, mlp 12/64"
    assert scaled_singular_values({"trained": {"singular_value_ranks": {}}}) == "–"
