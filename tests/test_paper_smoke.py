"""config/paper_smoke.yaml through the real Snakefile on the CPU: Table 1's SAM ViT-B path (512 px,
CLIP ViT-B/32 text prompt, BatchNorm TAL, norms and pos_embed trained, augmentation and crop,
selection last, bf16) from the dataset check to every table, figure and the HTML report, on six
real CHASE_DB1 images with random weights (issue #15).

The config is used as shipped: the run directory holds links to the repository's `config/` and
`benchmark/` and a `../shared` beside it, so its relative paths (`extends: config/paper.yaml`,
`../shared/data/CHASE_DB1`, the smoke split file) resolve as they do from the repository root.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from benchmark.predictions import read_predictions
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
CHASE = SHARED_DATA / "CHASE_DB1"
ROWS = {"unet": "U-Net", "sam_vit_b-sam_zero_shot": "SAM w/ text prompts (zero-shot)", "sam_vit_b-svd": "S-SAM",
        "sam_vit_b-lora_r4": "LoRA", "sam_vit_b-salt_r4": "SALT"}
ADAPTED = {"sam_zero_shot": 0, "svd": 24, "lora_r4": 48, "salt_r4": 24}  # 12 blocks x (qkv, proj[, mlp lin1, lin2])

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHASE.is_dir(), reason=f"{CHASE} is absent")]


def _snakemake(run: Path, *args: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--configfile", "config/paper_smoke.yaml", *args],
        cwd=run, capture_output=True, text=True, timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def _csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_paper_smoke_runs_the_papers_path_to_table1(tmp_path):
    run = tmp_path / "repo"
    run.mkdir()
    for name in ("config", "benchmark"):
        (run / name).symlink_to(REPO / name)
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    _snakemake(run, "--cores", "1", "--resources", "gpu=1")
    _snakemake(run, "--report", "report.html")

    figures = run / "figures" / "paper_smoke"
    table = _csv(figures / "table1.csv")
    assert [row["Model"] for row in table] == list(ROWS.values())
    assert all(0.0 <= float(row["CHASE_DB1 Dice"]) <= 1.0 for row in table)
    published = _csv(figures / "vs_published.csv")
    compared = [row for row in published if row["status"] == "compared"]  # the others: published rows not run
    assert {row["row"] for row in compared} == {"unet", "sam_vit_b/sam_zero_shot", "sam_vit_b/svd",
                                                "sam_vit_b/lora_r4", "sam_vit_b/salt_r4"}
    assert {row["published_row"] for row in published if row["status"] == "not run by this grid"} >= {"table1/salt_r256"}
    # CHASE_DB1 against DRIVE, random weights: no score compares; U-Net's count is its architecture's and may
    assert all(row["comparable"].startswith("not comparable") for row in compared if row["metric"] in ("Dice", "HD95"))
    assert len(_csv(figures / "cost.csv")) == len(ROWS)
    for name in ("qualitative.png", "training_curves.png"):
        assert (figures / name).stat().st_size > 10_000
    assert "qualitative.png" in (run / "report.html").read_text(errors="replace")

    for prefix in ROWS:
        cell = run / "results_paper_smoke" / "cells" / f"{prefix}-chase-s0"
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["provenance"]["config"]["input_size"] == 512
        assert "512 x 512" in summary["conventions"]["resolution"]
        assert summary["trained"]["n_images"] == {"train": 4, "val": 0, "test": 2}
        assert summary["provenance"]["config"]["train"]["selection"] == "last"
        predictions = read_predictions(cell / "predictions.npz")
        assert sorted(predictions) == ["Image_11L", "Image_11R"]
        assert all(mask.shape == (512, 512) for mask in predictions.values())
        if prefix == "unet":
            continue
        method = summary["method"]["id"]
        backbone = summary["provenance"]["config"]["backbone"]
        assert (backbone["tal_norm"], backbone["text_encoder"], backbone["weights"]) == ("batch", "clip-vit-b-32", "random")
        assert summary["trained"]["adapted_modules"] == ADAPTED[method]
        if method == "sam_zero_shot":
            assert summary["trained"]["epochs"] == 0 and summary["trained"]["extra_trainable"] == []
            continue
        assert summary["trained"]["epochs"] == 1
        trained = summary["trained"]["extra_trainable"]
        assert "image_encoder.pos_embed" in trained
        assert {"tal.linear.weight", "tal.norm.weight", "tal.norm.bias"} <= set(trained)
        # weight and bias of: 2 norms in each of 12 encoder blocks, 4 in each of 2 decoder layers, the
        # decoder's final norm and the TAL's
        assert sum(".norm" in name for name in trained) == 2 * (2 * 12 + 4 * 2 + 1 + 1)
        with safe_open(str(cell / "adapter.safetensors"), "pt") as adapter:
            keys = set(adapter.keys())
            assert set(trained) <= keys
            assert len(json.loads(adapter.metadata()["layers"])) == ADAPTED[method]
            # the TAL is a BatchNorm: its running statistics are saved and moved in the training step
            assert {"tal.norm.running_mean", "tal.norm.running_var"} <= keys
            assert adapter.get_tensor("tal.norm.running_mean").abs().sum() > 0
