"""The paper's claims checked on hand-made results whose verdict is known (supported, contradicted,
inconclusive, not tested), and the training-set-size axis: nested subsets, the same for every row,
no test image in any training subset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.config import validate
from benchmark.data.layout import Pair
from benchmark.data.subsets import nested_subset
from benchmark.errors import ConfigError, DatasetError
from benchmark.grid import expand_cells
from benchmark.paper.claims import CLAIMS
from benchmark.report.claims import (CONTRADICTED, INCONCLUSIVE, NOT_TESTED, SUPPORTED, check_claims, conditions,
                                     write_claims)
from tests.conftest import tiny_grid

IMAGES = [f"img{i:02d}" for i in range(12)]


def _cell(root: Path, cell: str, method: str, rank: int | None, dice: list[float], hd95: float = 20.0,
          architecture: str = "sam_vit_b", dataset: str = "d1", n_train: int | None = None,
          trainable: int = 1000, pct: float = 1.0, added: float | None = None) -> dict:
    """A summary (the fields the checks read) with its per_image.csv and cost.json."""
    folder = root / cell
    folder.mkdir(parents=True)
    (folder / "per_image.csv").write_text("id,dice,hd95\n" + "".join(f"{i},{d},{hd95}\n" for i, d in zip(IMAGES, dice)))
    training = None if added is None else {"gflops_added_per_image": added}
    (folder / "cost.json").write_text(json.dumps({"training": training}))
    column = dataset if n_train is None else f"{dataset}_n{n_train}"
    return {"cell": cell, "backbone": architecture, "architecture": architecture, "weights": "test weights", "seed": 0,
            "method": {"id": f"{method}_r{rank}" if rank else method, "label": method.upper(), "group": "peft",
                       "name": method, "rank": rank},
            "dataset": {"name": column, "label": column, "data": "hand-made", "n_train_subset": n_train},
            "metrics": {"dice_mean": sum(dice) / len(dice), "hd95_mean": hd95},
            "params": {"trainable": trainable, "trainable_pct": pct, "trainable_pct_with_text_encoder": pct},
            "trained": {"epochs": 2, "n_images": {"train": n_train or 16}}}


def _verdicts(summaries: list[dict], root: Path) -> dict[str, dict]:
    return {record["claim"]: record for record in check_claims(summaries, root)}


def _level(value: float, spread: float = 0.01) -> list[float]:
    return [round(value + spread * ((i % 4) - 1.5), 4) for i in range(len(IMAGES))]


def test_salt_beating_lora_by_three_points_on_twelve_images_is_supported(tmp_path):
    summaries = [_cell(tmp_path, "salt", "salt", 4, [d + 0.03 for d in _level(0.7)]),
                 _cell(tmp_path, "lora", "lora", 4, _level(0.7))]
    record = _verdicts(summaries, tmp_path)["salt_beats_lora"]
    assert record["verdict"] == SUPPORTED and "+3.0 Dice points" in record["numbers"]
    assert "Wilcoxon" in record["statistic"]


def test_lora_beating_salt_contradicts_and_a_small_gain_contradicts_the_magnitude(tmp_path):
    worse = [_cell(tmp_path / "a", "salt", "salt", 4, _level(0.6)), _cell(tmp_path / "a", "lora", "lora", 4, _level(0.7))]
    assert _verdicts(worse, tmp_path / "a")["salt_beats_lora"]["verdict"] == CONTRADICTED
    small = [_cell(tmp_path / "b", "salt", "salt", 4, [d + 0.005 for d in _level(0.7)]),
             _cell(tmp_path / "b", "lora", "lora", 4, _level(0.7))]
    record = _verdicts(small, tmp_path / "b")["salt_beats_lora"]
    assert record["verdict"] == CONTRADICTED and "less than the claimed 2" in record["numbers"]


def test_too_few_or_mixed_differences_are_inconclusive(tmp_path):
    mixed = [0.7 + (0.05 if i % 2 else -0.05) for i in range(len(IMAGES))]
    summaries = [_cell(tmp_path, "salt", "salt", 4, mixed), _cell(tmp_path, "lora", "lora", 4, _level(0.7, 0.0))]
    record = _verdicts(summaries, tmp_path)["salt_beats_lora"]
    assert record["verdict"] == INCONCLUSIVE and "more test images or seeds" in record["needs"]


def test_a_grid_without_the_rows_leaves_a_claim_not_tested_and_says_what_it_needs(tmp_path):
    summaries = [_cell(tmp_path, "lora", "lora", 4, _level(0.7))]
    verdicts = _verdicts(summaries, tmp_path)
    assert verdicts["salt_beats_lora"]["verdict"] == NOT_TESTED
    assert "a salt row and a lora row" in verdicts["salt_beats_lora"]["needs"]
    assert verdicts["low_resource"]["verdict"] == NOT_TESTED and "train_subsets" in verdicts["low_resource"]["needs"]
    assert verdicts["salt_r256_share"]["verdict"] == NOT_TESTED
    assert set(verdicts) == {claim.id for claim in CLAIMS}


def test_shares_are_checked_on_sam_vit_b_only_within_their_tolerance(tmp_path):
    summaries = [_cell(tmp_path, "salt256", "salt", 256, _level(0.7), pct=4.1),
                 _cell(tmp_path, "lora256", "lora", 256, _level(0.7), pct=20.0),
                 _cell(tmp_path, "lite", "salt", 256, _level(0.7), architecture="litemedsam", pct=3.9)]
    verdicts = _verdicts(summaries, tmp_path)
    assert verdicts["salt_r256_share"]["verdict"] == SUPPORTED and "Δ +0.20 points" in verdicts["salt_r256_share"]["numbers"]
    assert verdicts["lora_r256_share"]["verdict"] == CONTRADICTED


def test_gflops_linear_in_rank_for_lora_and_flat_for_salt(tmp_path):
    summaries = [_cell(tmp_path, "l4", "lora", 4, _level(0.7), added=1.24), _cell(tmp_path, "l64", "lora", 64, _level(0.7), added=19.8),
                 _cell(tmp_path, "l256", "lora", 256, _level(0.7), added=79.2),
                 _cell(tmp_path, "s4", "salt", 4, _level(0.7), added=22.88), _cell(tmp_path, "s256", "salt", 256, _level(0.7), added=23.52)]
    verdicts = _verdicts(summaries, tmp_path)
    assert verdicts["lora_gflops_linear"]["verdict"] == SUPPORTED and "R^2 1.0000" in verdicts["lora_gflops_linear"]["numbers"]
    assert verdicts["salt_gflops_flat"]["verdict"] == SUPPORTED
    flat_lora = [_cell(tmp_path / "x", "l4", "lora", 4, _level(0.7), added=10.0), _cell(tmp_path / "x", "l64", "lora", 64, _level(0.7), added=11.0)]
    assert _verdicts(flat_lora, tmp_path / "x")["lora_gflops_linear"]["verdict"] == CONTRADICTED


def test_the_low_resource_claim_reads_dice_across_training_set_sizes(tmp_path):
    def grid(root, salt_small, lora_small):
        return [_cell(root, "s", "salt", 4, _level(0.80)), _cell(root, "s4", "salt", 4, _level(salt_small), n_train=4),
                _cell(root, "l", "lora", 4, _level(0.80)), _cell(root, "l4", "lora", 4, _level(lora_small), n_train=4)]

    assert _verdicts(grid(tmp_path / "a", 0.78, 0.70), tmp_path / "a")["low_resource"]["verdict"] == SUPPORTED
    assert _verdicts(grid(tmp_path / "b", 0.65, 0.70), tmp_path / "b")["low_resource"]["verdict"] == CONTRADICTED
    record = _verdicts(grid(tmp_path / "c", 0.78, 0.775), tmp_path / "c")["low_resource"]
    assert record["verdict"] == INCONCLUSIVE and "drops" in record["numbers"]


def test_the_note_says_a_verdict_on_synthetic_data_is_not_one_on_the_paper(tmp_path):
    config = validate(tiny_grid(tmp_path))
    summaries = [_cell(Path(config["results_dir"]) / "cells", "salt", "salt", 4, _level(0.7), architecture="litemedsam")]
    text = conditions(config, summaries)
    assert "not about the paper's experiments: synthetic data; stand-in backbones (litemedsam)" in text
    assert "one lr (0.001) for every row" in text
    md, csv = write_claims(config, summaries, tmp_path / "figures")[1], tmp_path / "figures" / "claims.csv"
    assert md.read_text().count("**not tested**") >= 1 and len(csv.read_text().splitlines()) == len(CLAIMS) + 1
    assert max(len(line) for line in md.read_text().splitlines()) <= 120


def _pairs(n_train: int = 10) -> list[Pair]:
    return ([Pair(f"t{i}", Path(f"t{i}.png"), Path(f"t{i}.png"), "train") for i in range(n_train)]
            + [Pair(f"v{i}", Path(f"v{i}.png"), Path(f"v{i}.png"), "val") for i in range(2)]
            + [Pair(f"x{i}", Path(f"x{i}.png"), Path(f"x{i}.png"), "test") for i in range(3)])


def test_training_subsets_are_nested_seeded_and_leave_validation_and_test_alone():
    pairs = _pairs()
    small, large = nested_subset(pairs, 3, seed=0), nested_subset(pairs, 6, seed=0)
    train = lambda subset: {p.id for p in subset if p.split == "train"}  # noqa: E731
    assert len(train(small)) == 3 and train(small) < train(large)
    assert train(nested_subset(list(reversed(pairs)), 3, seed=0)) == train(small), "independent of the listing order"
    assert train(nested_subset(pairs, 3, seed=1)) != train(small)
    for subset in (small, large):
        assert [p for p in subset if p.split != "train"] == [p for p in pairs if p.split != "train"]
        assert not {p.id for p in subset if p.split == "train"} & {p.id for p in pairs if p.split == "test"}
    with pytest.raises(DatasetError, match="a training subset of 11 images was asked for, but the dataset has 10"):
        nested_subset(pairs, 11, seed=0)


def test_the_size_axis_makes_columns_of_its_own_for_every_row(tmp_path):
    grid = tiny_grid(tmp_path)
    grid["datasets"]["bright"]["train_subsets"] = [2]
    grid["baselines"].append({**grid["baselines"][0], "id": "unet_b", "label": "U-Net B"})
    cells = expand_cells(validate(grid))
    assert list(cells) == ["unet_tiny-bright-s0", "unet_b-bright-s0", "unet_tiny-bright_n2-s0", "unet_b-bright_n2-s0"]
    assert {c.n_train for c in cells.values()} == {None, 2} and {c.dataset for c in cells.values()} == {"bright"}
    grid["datasets"]["bright"]["train_subsets"] = [4]
    with pytest.raises(ConfigError, match=r"train_subsets \[4\] are not smaller than its 4 training images"):
        validate(grid)
