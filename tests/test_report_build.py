"""The one entry point: every report file of a grid from its cells' files, by function and by CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.report.build import write_grid_figures
from tests.test_report_fixtures import make_grid, populate

OUTPUTS = ["table1.md", "table1.csv", "table1.tex", "table1_stats.md", "table1_stats.csv", "vs_published.md",
           "vs_published.csv", "sam2_table.md", "sam2_table.csv", "cost.md", "cost.csv", "ablation_bubble.png",
           "pareto.png", "qualitative.png", "training_curves.png"]
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
