"""The one entry point: every report file of a grid from its cells' files, by function and by CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.report.build import write_grid_figures
from tests.test_report_fixtures import METHODS, make_grid, populate

OUTPUTS = ["table1.md", "table1.csv", "table1.tex", "table1_stats.md", "table1_stats.csv", "vs_published.md",
           "vs_published.csv", "sam2_table.md", "sam2_table.csv", "cost.md", "cost.csv", "ablation_bubble.png",
           "pareto.png", "qualitative.png", "training_curves.png", "claims.csv", "claims.md"]
PAPER = {"datasets": {"bright": "DRIVE"}, "rows": {"litemedsam/salt_r4": "table1/salt_r4",
                                                   "litemedsam/salt_r256": "ablation/salt_lora_r256_sv200"}}


def test_write_grid_figures_writes_every_output(tmp_path):
    config = make_grid(tmp_path, paper=PAPER)
    populate(config)
    paths = write_grid_figures(config)
    assert [p.name for p in paths] == OUTPUTS
    assert all(p.parent == Path(config["figures_dir"]) and p.stat().st_size > 0 for p in paths)
    assert sorted(p.name for p in Path(config["figures_dir"]).iterdir()) == sorted(OUTPUTS)  # no temporary files
    assert "| bright (DRIVE) | Dice |" in (Path(config["figures_dir"]) / "vs_published.md").read_text()


def test_missing_cell_is_named(tmp_path):
    config = make_grid(tmp_path)
    populate(config)
    shutil.rmtree(Path(config["results_dir"]) / "cells" / "litemedsam-salt_r4-dark-s1")
    with pytest.raises(FileNotFoundError, match="litemedsam-salt_r4-dark-s1"):
        write_grid_figures(config)


def test_cli_figures(tmp_path, capsys):
    config = make_grid(tmp_path)
    populate(config)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["figures", "--config", str(path)])
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == OUTPUTS


def test_every_markdown_report_reads_in_120_columns(tmp_path):
    """Table 1, its statistics, vs published, the SAM2 and cost tables of a grid shaped as the default
    one (long dataset labels and row names, two backbones, several seeds): no line wider than 120
    characters, the weights spelled out once and the rows tagged with them."""
    sam2 = {"name": "sam2_hiera_t", "weights": "random", "input_size": 256, "methods": ["lora_r4", "salt_r4"],
            "datasets": ["bright"]}
    datasets = {name: {"kind": "synthetic", "modality": modality, "n_train": 4, "n_test": 7, "size": 64, "label": label}
                for name, modality, label in (("bright", "bright_speckle", "Synthetic bright (OCT-A/DSA-like)"),
                                              ("dark", "dark_fundus", "Synthetic dark (fundus/X-ray-like)"))}
    methods = [{"id": "frozen", "name": "frozen", "label": "MedSAM zero-shot (LiteMedSAM stand-in)"}, *METHODS[1:]]
    config = make_grid(tmp_path, paper=PAPER, datasets=datasets, methods=methods,
                       backbones={"litemedsam": {"name": "litemedsam"}, "sam2_t": sam2})
    populate(config)
    written = [path for path in write_grid_figures(config) if path.suffix == ".md"]
    assert [path.name for path in written] == ["table1.md", "table1_stats.md", "vs_published.md", "sam2_table.md", "cost.md",
                                               "claims.md"]
    for path in written:
        wide = [line for line in path.read_text().splitlines() if len(line) > 120]
        assert wide == [], f"{path.name}: {wide[0]}"
    table = (Path(config["figures_dir"]) / "table1.md").read_text()
    assert table.count("litemedsam pretrained (test weights)") == 1 and "Weights W2: litemedsam pretrained" in table
    assert "| SALT | 256 | text | 5.84% / 5.8M | 0.807 ± 0.004 | 7.73 ± 0.14 | litemedsam | W2 |" in table
