"""Table 1 from fabricated cell summaries: order, seed aggregation, averages, files, errors."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report.table1 import build_table1, write_table1
from benchmark.summary import load_summaries

DATASETS = {
    "synth_bright": ("Bright", "synthetic bright (seed 0)"),
    "synth_dark": ("Dark", "synthetic dark (seed 0)"),
}
METHODS = {
    "unet": ("U-Net", None, "baseline", 6_500_000, 100.0),
    "zeroshot": ("MedSAM", None, "zero-shot", 0, 0.0),
    "salt_r4": ("SALT", 4, "peft", 12_345, 0.126),
    "lora_r4": ("LoRA", 4, "peft", 1_500_000, 0.64),
}
# (method, dataset, seed, dice_mean, hd95_mean); input order is deliberately not table order.
RUNS = [
    ("salt_r4", "synth_bright", 0, 0.70, 10.0),
    ("salt_r4", "synth_bright", 1, 0.72, 12.0),
    ("salt_r4", "synth_dark", 0, 0.60, 20.0),
    ("salt_r4", "synth_dark", 1, 0.64, 24.0),
    ("lora_r4", "synth_bright", 0, 0.80, 5.0),
    ("zeroshot", "synth_bright", 0, 0.01, math.nan),
    ("zeroshot", "synth_dark", 0, 0.03, None),
    ("unet", "synth_bright", 0, 0.50, 30.0),
    ("unet", "synth_dark", 0, 0.40, 40.0),
]


def summary(method: str, dataset: str, seed: int, dice_mean: float, hd95_mean: float | None) -> dict:
    label, rank, group, trainable, pct = METHODS[method]
    return {
        "cell": f"litemedsam-{method}-{dataset}-s{seed}",
        "backbone": "litemedsam",
        "weights": "LiteMedSAM pretrained",
        "method": {"id": method, "name": method.split("_")[0], "label": label, "rank": rank, "group": group},
        "dataset": {"name": dataset, "label": DATASETS[dataset][0], "data": DATASETS[dataset][1]},
        "seed": seed,
        "params": {"trainable": trainable, "total": 9_800_000, "trainable_pct": pct},
        "metrics": {
            "dice_mean": dice_mean,
            "dice_std": 0.05,
            "hd95_mean": hd95_mean,
            "hd95_std": 1.0,
            "n_images": 6,
            "hd95_undefined": 6 if hd95_mean is None or math.isnan(hd95_mean) else 0,
        },
    }


@pytest.fixture
def cells_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cells"
    for run in RUNS:
        record = summary(*run)
        (root / record["cell"]).mkdir(parents=True)
        (root / record["cell"] / "summary.json").write_text(json.dumps(record))
    return root


@pytest.fixture
def table() -> pd.DataFrame:
    return build_table1([summary(*run) for run in RUNS]).set_index("Model")


def test_rows_ordered_baseline_zero_shot_peft_then_first_appearance(table):
    assert list(table.index) == ["U-Net", "MedSAM", "SALT", "LoRA"]
    assert list(table["Group"]) == ["baseline", "zero-shot", "peft", "peft"]


def test_columns_follow_dataset_first_appearance(table):
    assert list(table.columns) == [
        "Rank", "Prompt", "Oracle", "%Trainable", "Bright Dice", "Bright HD95", "Dark Dice", "Dark HD95",
        "Average Dice", "Average HD95", "Backbone", "Weights", "Data", "Group",
    ]


def test_rank_and_trainable(table):
    assert table.loc["U-Net", "Rank"] == "–"
    assert table.loc["SALT", "Rank"] == "4"
    assert table.loc["U-Net", "%Trainable"] == "100% / 6.5M"
    assert table.loc["SALT", "%Trainable"] == "0.13% / 12.3K"
    assert table.loc["LoRA", "%Trainable"] == "0.64% / 1.5M"
    assert table.loc["MedSAM", "%Trainable"] == "–"


def test_several_seeds_show_mean_and_sample_std(table):
    assert table.loc["SALT", "Bright Dice"] == f"0.710 ± {np.std([0.70, 0.72], ddof=1):.3f}"
    assert table.loc["SALT", "Bright Dice"] == "0.710 ± 0.014"
    assert table.loc["SALT", "Bright HD95"] == "11.00 ± 1.41"
    assert table.loc["SALT", "Dark HD95"] == "22.00 ± 2.83"


def test_single_seed_shows_plain_value(table):
    assert table.loc["U-Net", "Bright Dice"] == "0.500"
    assert table.loc["U-Net", "Dark HD95"] == "40.00"


def test_averages_are_means_of_per_dataset_seed_means(table):
    salt_dice = np.mean([np.mean([0.70, 0.72]), np.mean([0.60, 0.64])])
    salt_hd95 = np.mean([np.mean([10.0, 12.0]), np.mean([20.0, 24.0])])
    assert table.loc["SALT", "Average Dice"] == f"{salt_dice:.3f}" == "0.665"
    assert table.loc["SALT", "Average HD95"] == f"{salt_hd95:.2f}" == "16.50"
    assert table.loc["U-Net", "Average Dice"] == "0.450"
    assert table.loc["U-Net", "Average HD95"] == "35.00"


def test_undefined_hd95_is_dash_and_excluded(table):
    assert table.loc["MedSAM", "Bright HD95"] == "–"
    assert table.loc["MedSAM", "Dark HD95"] == "–"
    assert table.loc["MedSAM", "Average HD95"] == "–"
    assert table.loc["MedSAM", "Average Dice"] == "0.020"


def test_missing_dataset_is_na_and_average_says_so(table):
    assert table.loc["LoRA", "Dark Dice"] == "n/a"
    assert table.loc["LoRA", "Dark HD95"] == "n/a"
    assert table.loc["LoRA", "Average Dice"] == "0.800 (1/2 datasets)"
    assert table.loc["LoRA", "Average HD95"] == "5.00 (1/2 datasets)"


def test_provenance_columns(table):
    assert table.loc["SALT", "Backbone"] == "litemedsam"
    assert table.loc["SALT", "Weights"] == "LiteMedSAM pretrained"
    assert table.loc["SALT", "Data"] == "synthetic bright (seed 0); synthetic dark (seed 0)"
    assert table.loc["LoRA", "Data"] == "synthetic bright (seed 0)"


def test_load_then_write(cells_dir, tmp_path):
    summaries = load_summaries(cells_dir)
    assert len(summaries) == len(RUNS)
    df = build_table1(summaries)
    out = tmp_path / "figures"
    write_table1(df, out, note="Dice: MONAI convention. HD95: MONAI convention.")

    csv = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == list(df.columns)
    assert list(csv["Model"]) == list(df["Model"])
    assert csv.loc[csv["Model"] == "SALT", "Bright Dice"].item() == "0.710 ± 0.014"

    md = (out / "table1.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0].startswith("# Table 1")
    assert "Dice: MONAI convention. HD95: MONAI convention." in md
    titles = ["**Traditional DL Methods**", "**Zero-shot**", "**PEFT methods**"]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(f"| {t} |")) for t in titles]
    assert positions == sorted(positions)
    unet = next(i for i, line in enumerate(lines) if line.startswith("| U-Net |"))
    salt = next(i for i, line in enumerate(lines) if line.startswith("| SALT |"))
    assert positions[0] < unet < positions[1] < positions[2] < salt
    assert "| Group |" not in md
    assert not list(out.glob(".*tmp"))


def test_malformed_json_names_the_file(cells_dir):
    broken = cells_dir / "litemedsam-unet-synth_dark-s0" / "summary.json"
    broken.write_text('{"cell": "litemedsam-unet-synth_dark-s0", ')
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        load_summaries(cells_dir)


def test_missing_key_names_the_file_and_key(cells_dir):
    path = cells_dir / "litemedsam-unet-synth_dark-s0" / "summary.json"
    record = json.loads(path.read_text())
    del record["method"]["group"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: missing key 'method.group'"):
        load_summaries(cells_dir)


def test_unknown_group_is_rejected():
    record = summary("unet", "synth_bright", 0, 0.5, 30.0)
    record["method"]["group"] = "adapter"
    with pytest.raises(ValueError, match="litemedsam-unet-synth_bright-s0.*'adapter'"):
        build_table1([record])


def test_duplicate_run_is_rejected():
    first = summary("unet", "synth_bright", 0, 0.5, 30.0)
    second = dict(first, cell="copy-of-unet")
    with pytest.raises(ValueError, match="copy-of-unet"):
        build_table1([first, second])


def test_empty_cells_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_summaries(tmp_path)


def test_latex_table_has_booktabs_structure_and_escapes(tmp_path):
    df = build_table1([summary(*run) for run in RUNS])
    write_table1(df, tmp_path, note="Grid `tiny`: 50% of 10_000 & more.")
    tex = (tmp_path / "table1.tex").read_text(encoding="utf-8")
    lines = tex.splitlines()
    columns = [column for column in df.columns if column not in ("Group", "Oracle")]
    assert rf"\begin{{tabular}}{{{'l' * len(columns)}}}" in lines
    top, bottom = lines.index(r"\toprule"), lines.index(r"\bottomrule")
    assert lines[top + 1] == r"Model & Rank & Prompt & \%Trainable & Bright Dice & Bright HD95 & Dark Dice & Dark HD95 & " \
        r"Average Dice & Average HD95 & Backbone & Weights & Data \\"
    titles = [rf"\multicolumn{{{len(columns)}}}{{l}}{{\textbf{{{t}}}}} \\"
              for t in ("Traditional DL Methods", "Zero-shot", "PEFT methods")]
    positions = [lines.index(title) for title in titles]
    assert positions == sorted(positions) and all(lines[p - 1] == r"\midrule" for p in positions)
    body = [line for line in lines[top + 2:bottom] if line != r"\midrule" and line not in titles]
    assert len(body) == len(df)  # the markdown table's rows, one line each
    assert all(line.count(" & ") == len(columns) - 1 and line.endswith(r" \\") for line in body)
    salt = next(line for line in body if line.startswith("SALT &"))
    assert r"0.710 $\pm$ 0.014" in salt and r"0.13\% / 12.3K" in salt
    assert r"\caption{Table 1 reproduced by saltbench. Grid tiny: 50\% of 10\_000 \& more." in tex
    assert r"\end{tabular}" in lines and r"\end{table}" in lines and "booktabs" in lines[0]
