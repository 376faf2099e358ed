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
    assert "2 x MACs" in text and "Golub-Reinsch" in text
    assert "| litemedsam/salt_r4 | SALT | 4 | litemedsam | 460,000 | 0.460 |" in text  # the rank tells the SALT rows apart
    assert "| litemedsam/salt_r256 | 80.000 | 93.000 | 13.000 |" in text  # and the row key names them in later tables


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


def test_measured_columns_are_the_mean_over_seeds_and_name_the_device(tmp_path):
    config = make_grid(tmp_path)
    table = build_cost_table(populate(config), Path(config["results_dir"]) / "cells")
    salt = table.iloc[3]  # SALT r4: 10 s per epoch at seed 0, 11 s at seed 1
    assert salt["s / epoch"] == pytest.approx(10.5)
    assert salt["Train img/s"] == pytest.approx((16 / 10 + 16 / 11) / 2)
    assert salt["Peak host RSS MB"] == pytest.approx(1050.0) and math.isnan(salt["Peak GPU reserved MB"])
    assert salt["Adapter bytes"] == 4 * 460_000 and salt["Device"] == "cpu: test host, 2 threads"
    # one device: ranked by training images/s, the zero-shot row (1 s per epoch) fastest
    assert list(table["Speed rank on device"]) == [2, 1, 3, 4, 5]


def test_rows_of_other_devices_are_marked_and_ranked_only_among_themselves(tmp_path):
    from tests.test_report_fixtures import measured

    config = make_grid(tmp_path)
    summaries = populate(config)
    for summary in summaries:
        if summary["method"]["id"] in ("lora_r4", "salt_r4"):
            summary["measured"] = measured(summary["method"]["id"], summary["seed"], device="cuda: Test GPU")
    table = build_cost_table(summaries, Path(config["results_dir"]) / "cells")
    ranks = dict(zip(table["Model"] + table.index.astype(str), table["Speed rank on device"]))
    assert ranks == {"U-Net0": 2, "LiteMedSAM (zero-shot)1": 1, "LoRA2": 1, "SALT3": 2, "SALT4": 3}
    text = write_cost_table(table, tmp_path / "out")[0].read_text()
    assert "Devices: [A] cpu: test host, 2 threads; [B] cuda: Test GPU." in text
    assert "| litemedsam/lora_r4 | [B] | 8.5 |" in text and "| unet | [A] | 2.5 |" in text
