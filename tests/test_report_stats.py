"""Holm's correction against hand-computed values, the paired Wilcoxon test against scipy and by
hand, and the pairing of per-image Dice by (seed, image id) in figures/table1_stats."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.grid import expand_cells
from benchmark.report.stats import holm, min_two_sided_p, wilcoxon_paired
from benchmark.report.table1_stats import build_table1_stats, write_table1_stats
from tests.test_report_fixtures import cell_summary, make_grid, write_cell


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_nan():
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    adjusted = holm([0.2, math.nan, 0.01])  # m = 2: 0.01 x 2 = 0.02, 0.2 x 1 = 0.2
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]) == []


A = np.array([0.80, 0.70, 0.90, 0.60, 0.75, 0.85, 0.65])
DIFF = np.array([0.05, -0.02, 0.03, 0.015, 0.04, -0.01, 0.06])


def test_wilcoxon_hand_computed_and_scipy():
    b = A - DIFF
    test = wilcoxon_paired(A, b)
    # |d| ranks 1..7: negatives are 0.01 (1) and 0.02 (3): W- = 4 = min(W+, W-). Exact two-sided p:
    # 7 of the 128 sign patterns have a rank sum <= 4 (sums 0, 1, 2, 3, 3, 4, 4), so p = 2 * 7 / 128.
    assert test.statistic == 4.0
    assert test.p == pytest.approx(14 / 128)
    reference = stats.wilcoxon(A, b, alternative="two-sided")
    assert (test.statistic, test.p) == (pytest.approx(reference.statistic), pytest.approx(reference.pvalue))
    assert test.n == test.n_nonzero == 7
    assert test.median_diff == pytest.approx(0.03)
    assert test.note == ""


def test_small_n_says_no_test_can_reject():
    assert min_two_sided_p(5) == 0.0625 and min_two_sided_p(6) == 0.03125
    test = wilcoxon_paired(A[:5], A[:5] - DIFF[:5])
    assert "smallest possible two-sided p is 0.0625 > 0.05" in test.note
    assert wilcoxon_paired(A, A).note == "no non-zero difference: nothing to test"
    assert math.isnan(wilcoxon_paired(A, A).p)


def _write(config: dict, cell_id: str, ids: list[str], dice: list[float]) -> dict:
    cell = expand_cells(config)[cell_id]
    summary = cell_summary(config, cell, dice, [1.0] * len(dice))
    write_cell(Path(config["results_dir"]) / "cells", summary, ids, dice, [1.0] * len(dice))
    return summary


def test_pairs_by_seed_and_image_over_common_seeds(tmp_path):
    config = make_grid(tmp_path, datasets={"bright": {"kind": "synthetic", "modality": "bright_speckle",
                                                      "n_train": 4, "n_test": 7}})
    ids = [f"i{k}" for k in range(7)]
    salt0 = [0.80, 0.70, 0.90, 0.60, 0.75, 0.85, 0.65]
    summaries = [
        _write(config, "litemedsam-salt_r4-bright-s0", ids, salt0),
        _write(config, "litemedsam-salt_r4-bright-s1", ids, [0.5] * 7),
        # LoRA ran seed 0 only, image order shuffled, and one image (i6) missing
        _write(config, "litemedsam-lora_r4-bright-s0", ids[::-1][1:], list((A - DIFF)[::-1][1:])),
    ]
    df = build_table1_stats(summaries, Path(config["results_dir"]) / "cells")
    assert list(df["other"]) == ["LoRA (lora_r4)"]
    row = df.iloc[0]
    assert (row["n_pairs"], row["seeds"]) == (6, "0")
    reference = stats.wilcoxon(A[:6], (A - DIFF)[:6], alternative="two-sided")
    assert row["p"] == pytest.approx(reference.pvalue)
    assert row["p_holm"] == pytest.approx(reference.pvalue)  # one comparison: Holm changes nothing


def test_holm_runs_per_dataset_and_files_are_written(tmp_path):
    from tests.test_report_fixtures import populate

    config = make_grid(tmp_path)
    summaries = populate(config)
    df = build_table1_stats(summaries, Path(config["results_dir"]) / "cells")
    # per dataset: salt_r4 vs lora_r4, salt_r4 vs salt_r256, salt_r256 vs lora_r4 (SALT pair once); zero-shot excluded
    assert list(df["dataset"]) == ["bright"] * 3 + ["dark"] * 3
    assert list(df["salt"][:3]) == ["SALT (salt_r4)", "SALT (salt_r4)", "SALT (salt_r256)"]
    assert list(df["other"][:3]) == ["LoRA (lora_r4)", "SALT (salt_r256)", "LoRA (lora_r4)"]
    assert set(df["n_pairs"]) == {14}  # 7 images x 2 seeds
    for dataset in ("bright", "dark"):
        part = df[df["dataset"] == dataset]
        assert list(part["p_holm"]) == pytest.approx(holm(list(part["p"])))
    paths = write_table1_stats(df, tmp_path / "out", {"bright": "Bright", "dark": "Dark"})
    assert [p.name for p in paths] == ["table1_stats.md", "table1_stats.csv"]
    assert list(pd.read_csv(paths[1])["p_holm"]) == pytest.approx(list(df["p_holm"]))
    md = paths[0].read_text()
    bright = md.split("## Bright\n", 1)[1].split("## Dark\n", 1)[0]  # a table per dataset, as Holm runs
    assert "| litemedsam | SALT (salt_r4) | LoRA (lora_r4) | 14 (14) | 0 1 |" in bright
    assert "Holm" in md and "2 / 2^n" in md


def test_missing_per_image_names_the_cell(tmp_path):
    config = make_grid(tmp_path, datasets={"bright": {"kind": "synthetic", "modality": "bright_speckle",
                                                      "n_train": 4, "n_test": 7}})
    ids = [f"i{k}" for k in range(7)]
    summaries = [_write(config, "litemedsam-salt_r4-bright-s0", ids, list(A)),
                 _write(config, "litemedsam-lora_r4-bright-s0", ids, list(A - DIFF))]
    (Path(config["results_dir"]) / "cells" / "litemedsam-lora_r4-bright-s0" / "per_image.csv").unlink()
    with pytest.raises(FileNotFoundError, match="litemedsam-lora_r4-bright-s0"):
        build_table1_stats(summaries, Path(config["results_dir"]) / "cells")
