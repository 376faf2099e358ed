"""figures/vs_published on hand-made numbers: means over seeds, deltas, tolerance flags, the
"not comparable" verdicts, unmapped rows and published rows the grid did not run."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from benchmark.grid import expand_cells
from benchmark.report.vs_published import NO_COUNTERPART, NOT_RUN, build_vs_published, write_vs_published
from tests.test_report_fixtures import cell_summary, make_grid

PAPER = {"datasets": {"bright": "DRIVE", "dark": "ROSE"},
         "rows": {"unet": "table1/unet", "litemedsam/salt_r4": "table1/salt_r4",
                  "litemedsam/salt_r256": "ablation/salt_lora_r256_sv200"}}
# (row, dataset) -> per-seed (dice_mean, hd95_mean)
NUMBERS = {
    ("litemedsam/salt_r4", "bright"): [(0.70, 14.0), (0.74, 18.0)],   # vs DRIVE 0.72 / 16.04
    ("litemedsam/salt_r4", "dark"): [(0.55, 20.0), (0.57, 22.0)],     # vs ROSE 0.66 / 12.19
    ("unet", "bright"): [(0.20, 84.0), (0.20, 84.0)],                 # vs DRIVE 0.18 / 84.43
}


@pytest.fixture
def grid(tmp_path) -> tuple[dict, list[dict]]:
    config = make_grid(tmp_path, paper=PAPER)
    summaries = []
    for cell in expand_cells(config).values():
        summary = cell_summary(config, cell, [0.5], [10.0])
        key = summary["method"]["id"] if cell.backbone is None else f"{cell.backbone}/{summary['method']['id']}"
        if (key, cell.dataset) in NUMBERS:
            dice, hd95 = NUMBERS[(key, cell.dataset)][cell.seed]
            summary["metrics"].update(dice_mean=dice, hd95_mean=hd95)
        summaries.append(summary)
    return config, summaries


def _pick(df: pd.DataFrame, row: str, dataset: str, metric: str) -> pd.Series:
    [index] = df.index[(df["row"] == row) & (df["dataset"] == dataset) & (df["metric"] == metric)]
    return df.loc[index]


def test_dice_mean_delta_and_flags(grid):
    config, summaries = grid
    df = build_vs_published(config, summaries)
    bright = _pick(df, "litemedsam/salt_r4", "bright", "Dice")
    assert (bright["paper_dataset"], bright["published"], bright["n_seeds"]) == ("DRIVE", 0.72, 2)
    assert bright["ours"] == pytest.approx(0.72) and bright["delta"] == pytest.approx(0.0)
    assert bright["ours_std"] == pytest.approx(0.0282843, abs=1e-6)
    assert bright["flag"] == "within"
    dark = _pick(df, "litemedsam/salt_r4", "dark", "Dice")
    assert dark["delta"] == pytest.approx(-0.10) and dark["flag"] == "OUTSIDE"
    assert _pick(df, "unet", "bright", "Dice")["delta"] == pytest.approx(0.02)


def test_hd95_relative_tolerance(grid):
    config, summaries = grid
    df = build_vs_published(config, summaries)
    inside = _pick(df, "litemedsam/salt_r4", "bright", "HD95")  # 16.0 vs 16.04, band 4.01
    assert inside["delta"] == pytest.approx(-0.04) and inside["flag"] == "within"
    assert inside["tolerance"] == "±25% (±4.01)"
    outside = _pick(df, "litemedsam/salt_r4", "dark", "HD95")  # 21.0 vs 12.19, band 3.05
    assert outside["delta"] == pytest.approx(8.81) and outside["flag"] == "OUTSIDE"


def test_parameter_rows_use_print_precision(grid):
    config, summaries = grid
    df = build_vs_published(config, summaries)
    pct = _pick(df, "litemedsam/salt_r4", "all", "trainable %")  # 0.46% vs printed 0.46
    assert pct["flag"] == "within" and pct["tolerance"] == "±0.005 pp (print precision)"
    count = _pick(df, "litemedsam/salt_r4", "all", "trainable count (M)")  # 0.46M vs 1.1M
    assert count["delta"] == pytest.approx(-0.64) and count["flag"] == "OUTSIDE"
    assert _pick(df, "unet", "all", "trainable count (M)")["flag"] == "within"  # 6.5M vs 6.5
    ablation = _pick(df, "litemedsam/salt_r256", "all", "trainable count (M)")
    assert ablation["flag"] == "no published value"  # section 4.4 gives percentages only
    assert _pick(df, "litemedsam/salt_r256", "all", "trainable %")["flag"] == "within"  # 5.84
    assert _pick(df, "litemedsam/salt_r256", "dark", "Dice")["flag"] == "no published value"  # ablation: DRIVE only


def test_synthetic_data_and_stand_in_are_not_comparable(grid):
    config, summaries = grid
    df = build_vs_published(config, summaries)
    assert _pick(df, "litemedsam/salt_r4", "bright", "Dice")["comparable"] == \
        "not comparable: synthetic data / LiteMedSAM stand-in"
    assert _pick(df, "unet", "bright", "Dice")["comparable"] == "not comparable: synthetic data"
    assert _pick(df, "unet", "all", "trainable %")["comparable"] == "yes"
    row = _pick(df, "litemedsam/salt_r4", "bright", "Dice")
    assert row["weights"] == "litemedsam pretrained (test weights)" and row["data"] == "SYNTHETIC bright (test fixture)"


def test_real_data_and_paper_model_are_comparable(grid):
    config, summaries = grid
    config = copy.deepcopy(config)
    config["datasets"]["bright"]["kind"] = "drive"
    config["datasets"]["dark"]["kind"] = "chase_db1"
    config["backbones"]["litemedsam"].update(name="sam_vit_b", variant="sam")
    df = build_vs_published(config, summaries)
    assert _pick(df, "litemedsam/salt_r4", "bright", "Dice")["comparable"] == "yes"
    assert _pick(df, "litemedsam/salt_r4", "dark", "Dice")["comparable"] == "not comparable: chase_db1 data, not ROSE"
    config["backbones"]["litemedsam"]["weights"] = "random"
    assert _pick(build_vs_published(config, summaries), "litemedsam/salt_r4", "bright", "Dice")["comparable"] == \
        "not comparable: random weights"


def test_unmapped_and_not_run_rows_are_listed(grid, tmp_path):
    config, summaries = grid
    df = build_vs_published(config, summaries)
    assert list(df.loc[df["status"] == NO_COUNTERPART, "row"]) == ["litemedsam/frozen", "litemedsam/lora_r4"]
    not_run = list(df.loc[df["status"] == NOT_RUN, "published_row"])
    assert "table1/lora_r4" in not_run and "ablation/salt_lora_r4" in not_run
    assert not {"table1/unet", "table1/salt_r4", "ablation/salt_lora_r256_sv200"} & set(not_run)

    md_path, csv_path = write_vs_published(config, df, tmp_path / "out")
    assert (md_path.name, csv_path.name) == ("vs_published.md", "vs_published.csv")
    md = md_path.read_text()
    assert "Dice: ±0.05 absolute" in md and "HD95: ±25% of the published value" in md
    assert "not comparable: synthetic data / LiteMedSAM stand-in" in md
    assert "## Rows of this grid with no published counterpart" in md
    assert "- litemedsam/lora_r4 (LoRA 4): no published counterpart" in md
    assert "## Published rows this grid did not run" in md
    assert "| bright (DRIVE) | Dice | 0.720 ± 0.028 | 0.720 | +0.000 | ±0.05 | within |" in md
    csv = pd.read_csv(csv_path)
    assert len(csv) == len(df) and set(csv["status"]) == {"compared", NO_COUNTERPART, NOT_RUN}


def test_grid_without_paper_section_compares_nothing(tmp_path):
    config = make_grid(tmp_path)
    summaries = [cell_summary(config, cell, [0.5], [1.0]) for cell in expand_cells(config).values()]
    df = build_vs_published(config, summaries)
    assert "compared" not in set(df["status"])
    md_path, _ = write_vs_published(config, df, tmp_path / "out")
    assert "nothing is compared" in md_path.read_text()


def test_every_line_states_the_prompt_and_an_oracle_row_is_not_comparable_because_of_it(grid, tmp_path):
    config, summaries = grid
    oracle = {"mode": "box", "box": "mask", "jitter": 0, "positive": 0, "negative": 0, "oracle": True,
              "description": "ground-truth box (oracle)"}
    boxed = [{**s, "prompt": oracle} if s["method"]["id"] == "salt_r4" else s for s in summaries]
    df = build_vs_published(config, boxed)
    salt = _pick(df, "litemedsam/salt_r4", "bright", "Dice")
    assert (salt["prompt"], salt["oracle"]) == ("ground-truth box (oracle)", "yes")
    assert "prompted by ground-truth box (oracle)" in salt["comparable"]
    unet = _pick(df, "unet", "bright", "Dice")
    assert unet["oracle"] == "no" and "prompted" not in unet["comparable"]
    write_vs_published(config, df, tmp_path)
    text = " ".join((tmp_path / "vs_published.md").read_text().split())  # paragraphs are wrapped at 120 columns
    assert "Our prompt: ground-truth box (oracle). It is an oracle prompt" in text
